-- Known-agent routing (routing.known_agent_within): the agent who last accepted a task of
-- each customer. The customer is a SHA-256 of channel type and address, never the address
-- itself. Rows older than store.retention_days are deleted. Times: Unix milliseconds.
CREATE TABLE known_agents (
    customer_key TEXT    PRIMARY KEY,
    worker_sid   TEXT    NOT NULL,
    accepted_at  BIGINT  NOT NULL
);
CREATE INDEX known_agents_accepted_at ON known_agents (accepted_at);

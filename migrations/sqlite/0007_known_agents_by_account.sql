-- Several Twilio accounts ([accounts.NAME]): a customer's known agent is per account, since
-- an agent of one account's Flex never takes another's tasks. Rows written before carry
-- account_sid '' until start-up gives them to the deployment's one account.
CREATE TABLE known_agents_by_account (
    account_sid  TEXT    NOT NULL,
    customer_key TEXT    NOT NULL,
    worker_sid   TEXT    NOT NULL,
    accepted_at  INTEGER NOT NULL,
    PRIMARY KEY (account_sid, customer_key)
);
INSERT INTO known_agents_by_account (account_sid, customer_key, worker_sid, accepted_at)
    SELECT '', customer_key, worker_sid, accepted_at FROM known_agents;
DROP TABLE known_agents;
ALTER TABLE known_agents_by_account RENAME TO known_agents;
CREATE INDEX known_agents_accepted_at ON known_agents (accepted_at);

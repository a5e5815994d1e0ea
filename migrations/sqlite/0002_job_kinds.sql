-- Jobs of several kinds. A job is now one durable action: its `kind` says which, and
-- `job_key` is unique within the kind: the conversation SID, for every kind (one job of
-- each kind per conversation). The UNIQUE index also finds a conversation's jobs, so no
-- other index on a random key is added: each one costs a random page write per new job,
-- on the webhook's critical path. `input` is the kind's own JSON: for `interaction` jobs it is the routing input,
-- exactly as `routing_input` held it, so every existing row keeps working.
-- `state` is checked by flexhook, not here: kinds add their own finished states.
CREATE TABLE jobs_v2 (
    id                      INTEGER PRIMARY KEY,
    kind                    TEXT    NOT NULL,
    job_key                 TEXT    NOT NULL,
    conversation_sid        TEXT    NOT NULL,
    account_sid             TEXT    NOT NULL,
    chat_service_sid        TEXT,
    webhook_sid             TEXT,
    first_message_sid       TEXT,
    input                   TEXT    NOT NULL,
    state                   TEXT    NOT NULL,
    attempts                INTEGER NOT NULL DEFAULT 0,
    next_attempt_at         INTEGER NOT NULL,
    lease_owner             TEXT,
    lease_until             INTEGER,
    needs_lookup            INTEGER NOT NULL DEFAULT 0,
    interaction_sid         TEXT,
    interaction_channel_sid TEXT,
    task_sid                TEXT,
    last_error_code         INTEGER,
    last_error_status       INTEGER,
    last_error_message      TEXT,
    webhook_removed         INTEGER NOT NULL DEFAULT 0,
    age_from                INTEGER NOT NULL,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    UNIQUE (kind, job_key)
);

INSERT INTO jobs_v2 (
    id, kind, job_key, conversation_sid, account_sid, chat_service_sid, webhook_sid,
    first_message_sid, input, state, attempts, next_attempt_at, lease_owner, lease_until,
    needs_lookup, interaction_sid, interaction_channel_sid, task_sid, last_error_code,
    last_error_status, last_error_message, webhook_removed, age_from, created_at, updated_at)
SELECT
    id, 'interaction', conversation_sid, conversation_sid, account_sid, chat_service_sid,
    webhook_sid, first_message_sid, routing_input, state, attempts, next_attempt_at,
    lease_owner, lease_until, needs_lookup, interaction_sid, interaction_channel_sid, task_sid,
    last_error_code, last_error_status, last_error_message, webhook_removed, age_from,
    created_at, updated_at
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;

CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_updated ON jobs (state, updated_at);
-- TaskRouter's events name a task: find its conversation's jobs by it.
CREATE INDEX jobs_task ON jobs (task_sid) WHERE task_sid IS NOT NULL;

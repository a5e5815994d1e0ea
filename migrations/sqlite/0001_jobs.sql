-- One job per conversation: the outbox of Flex interactions to create.
-- Times are milliseconds since the Unix epoch. The message body is never stored.
-- A rowid table with a UNIQUE key (not WITHOUT ROWID on the random SID): rows are appended
-- in arrival order, so a burst of new conversations dirties few pages.
CREATE TABLE jobs (
    id                      INTEGER PRIMARY KEY,
    conversation_sid        TEXT    NOT NULL UNIQUE,
    account_sid             TEXT    NOT NULL,
    chat_service_sid        TEXT,
    webhook_sid             TEXT,
    first_message_sid       TEXT,
    routing_input           TEXT    NOT NULL,
    state                   TEXT    NOT NULL CHECK (state IN ('pending', 'created', 'dead')),
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
    updated_at              INTEGER NOT NULL
);

CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_updated ON jobs (state, updated_at);

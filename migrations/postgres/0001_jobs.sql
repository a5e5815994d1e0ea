-- flexhook's store on PostgreSQL: the same tables as SQLite's after its migrations, for
-- several instances sharing one database. Times are milliseconds since the Unix epoch, from
-- the database's clock (so that clock skew between instances cannot hand a job to two).
CREATE TABLE jobs (
    id                      BIGSERIAL PRIMARY KEY,
    kind                    TEXT    NOT NULL,
    job_key                 TEXT    NOT NULL,
    conversation_sid        TEXT    NOT NULL,
    account_sid             TEXT    NOT NULL,
    chat_service_sid        TEXT,
    webhook_sid             TEXT,
    first_message_sid       TEXT,
    input                   TEXT    NOT NULL,
    state                   TEXT    NOT NULL,
    attempts                BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at         BIGINT  NOT NULL,
    lease_owner             TEXT,
    lease_until             BIGINT,
    needs_lookup            BOOLEAN NOT NULL DEFAULT FALSE,
    interaction_sid         TEXT,
    interaction_channel_sid TEXT,
    task_sid                TEXT,
    last_error_code         BIGINT,
    last_error_status       BIGINT,
    last_error_message      TEXT,
    outcome                 TEXT,
    webhook_removed         BOOLEAN NOT NULL DEFAULT FALSE,
    age_from                BIGINT  NOT NULL,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL,
    UNIQUE (kind, job_key)
);

CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_updated ON jobs (state, updated_at);
CREATE INDEX jobs_task ON jobs (task_sid) WHERE task_sid IS NOT NULL;

CREATE TABLE workspace_callbacks (
    workspace_sid   TEXT    PRIMARY KEY,
    previous_url    TEXT,
    previous_filter TEXT,
    connected_at    BIGINT  NOT NULL
);

-- One budget of Interactions API creates per account, shared by every instance: the next
-- free slot, handed out in order by one atomic statement.
CREATE TABLE rate_limits (
    account_sid  TEXT   PRIMARY KEY,
    next_slot_ms BIGINT NOT NULL
);

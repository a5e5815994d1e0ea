-- The reconciler's sweeps, one row per account: a lease, so that one sweep runs at a time
-- whatever the number of instances (or a `flexhook reconcile` beside them), and what the
-- last one found. Times are milliseconds since the Unix epoch.
CREATE TABLE reconcile_sweeps (
    account_sid     TEXT    PRIMARY KEY,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_started_at BIGINT,
    last_success_at BIGINT,
    -- When the last successful sweep started: the next one looks back to a little before.
    last_since      BIGINT,
    last_findings   TEXT,
    last_error      TEXT
);

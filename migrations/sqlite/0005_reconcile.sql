-- The reconciler's sweeps, one row per account: a lease, so that one sweep runs at a time
-- whatever the number of instances (or a `flexhook reconcile` beside them), and what the
-- last one found. Times are milliseconds since the Unix epoch.
CREATE TABLE reconcile_sweeps (
    account_sid     TEXT    PRIMARY KEY,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_started_at INTEGER,
    last_success_at INTEGER,
    -- When the last successful sweep started: the next one looks back to a little before.
    last_since      INTEGER,
    last_findings   TEXT,
    last_error      TEXT
);

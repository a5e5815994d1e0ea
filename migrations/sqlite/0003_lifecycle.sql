-- The lifecycle: what a finished job did, in words ("closed after workflow.timeout",
-- "kept open: task WT… is assigned"), and the workspace event callbacks that
-- `flexhook taskrouter connect` replaced, so that `disconnect` can restore them.
ALTER TABLE jobs ADD COLUMN outcome TEXT;

CREATE TABLE workspace_callbacks (
    workspace_sid   TEXT    PRIMARY KEY,
    previous_url    TEXT,
    previous_filter TEXT,
    connected_at    INTEGER NOT NULL
);

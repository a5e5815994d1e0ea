-- Flags that shared `needs_lookup` and `last_error` get columns of their own, so that no
-- later write can clear them by accident:
-- create_accepted: Flex accepted this interaction job's create (a 2xx it could not read, or
--   Twilio's 45353): the create is never sent again, only its task looked up.
-- message_sent: a reply or close job's message was, or may have been, posted: never again,
--   across retries, kept-open and re-arms alike.
-- recheck: a task of the conversation ended while its close job was pending or in flight:
--   the job does not settle for `kept_open` on a live-task list read before that end.
ALTER TABLE jobs ADD COLUMN create_accepted BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE jobs ADD COLUMN message_sent BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE jobs ADD COLUMN recheck BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE jobs SET create_accepted = TRUE
WHERE kind = 'interaction' AND needs_lookup AND last_error_status BETWEEN 200 AND 299;
UPDATE jobs SET message_sent = TRUE, needs_lookup = FALSE
WHERE kind IN ('close', 'reply') AND needs_lookup;

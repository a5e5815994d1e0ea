//! The columns of a new job, as both backends insert it: one list, one way to bind them,
//! and one reading of which rows the insert made. Each backend adds only its own times.

use std::collections::HashSet;

use super::{Inserted, NewJob};

/// The `INSERT INTO jobs (…)` of a new job; the last four are its times.
pub(super) const NEW_JOB_INSERT: &str = "INSERT INTO jobs (kind, job_key, conversation_sid, \
    account_sid, chat_service_sid, webhook_sid, first_message_sid, input, state, \
    next_attempt_at, age_from, created_at, updated_at) ";

/// Binds a new job's columns up to `state` (pending) to a `push_values` row; the caller
/// adds the four times.
macro_rules! bind_new_job {
    ($row:expr, $job:expr) => {{
        let job = $job;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        $row.push_bind(job.kind.as_str())
            .push_bind(job.key.clone())
            .push_bind(job.conversation_sid.as_str().to_owned())
            .push_bind(job.account_sid.as_str().to_owned())
            .push_bind(owned(job.chat_service_sid.as_ref().map(|s| s.as_str())))
            .push_bind(owned(job.webhook_sid.as_ref().map(|s| s.as_str())))
            .push_bind(owned(job.first_message_sid.as_ref().map(|s| s.as_str())))
            .push_bind(job.input.clone())
            .push_bind("pending")
    }};
}

pub(super) use bind_new_job;

/// Which of `jobs` the insert made, from the `(kind, job_key)` rows it returned. The same
/// key twice in one batch: only its first occurrence made the job.
pub(super) fn outcomes(jobs: &[NewJob], mut inserted: HashSet<(String, String)>) -> Vec<Inserted> {
    jobs.iter()
        .map(|j| {
            if inserted.remove(&(j.kind.as_str().to_owned(), j.key.clone())) {
                Inserted::New
            } else {
                Inserted::Known
            }
        })
        .collect()
}

/// The first job of each kind and key, in order: one statement may not touch a row twice
/// (PostgreSQL refuses an upsert that would), and the later ones are `Known` anyway.
pub(super) fn distinct(jobs: &[NewJob]) -> Vec<&NewJob> {
    if jobs.len() < 2 {
        return jobs.iter().collect();
    }
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    jobs.iter()
        .filter(|j| seen.insert((j.kind.as_str(), j.key.clone())))
        .collect()
}

/// The conflict clause of a new-job insert: a job of the key is left alone, unless it is an
/// interaction job a rule `ignored`, which is due again with `input` (the backend's way of
/// keeping the stored facts with the new message's `at_ms`). Returns the rows made or
/// re-armed.
pub(super) fn rearm_ignored(input: &str) -> String {
    format!(
        " ON CONFLICT (kind, job_key) DO UPDATE SET state = 'pending', input = {input}, \
         attempts = 0, next_attempt_at = excluded.next_attempt_at, needs_lookup = FALSE, \
         create_accepted = FALSE, outcome = NULL, last_error_code = NULL, \
         last_error_status = NULL, last_error_message = NULL, lease_owner = NULL, \
         lease_until = NULL, age_from = excluded.age_from, updated_at = excluded.updated_at \
         WHERE jobs.state = 'ignored' RETURNING kind, job_key"
    )
}

/// What re-arming a finished lifecycle job resets: due again with no attempts, errors or
/// lease; `message_sent` stays.
pub(super) const REARM: &str = "state = 'pending', attempts = 0, needs_lookup = FALSE, \
    outcome = NULL, last_error_code = NULL, last_error_status = NULL, \
    last_error_message = NULL, lease_owner = NULL, lease_until = NULL, recheck = FALSE";

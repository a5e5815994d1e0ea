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
        $row.push_bind(job.action.kind().as_str())
            .push_bind(job.key())
            .push_bind(job.conversation_sid.as_str().to_owned())
            .push_bind(job.account_sid.as_str().to_owned())
            .push_bind(owned(job.chat_service_sid.as_ref().map(|s| s.as_str())))
            .push_bind(owned(job.webhook_sid.as_ref().map(|s| s.as_str())))
            .push_bind(owned(job.first_message_sid.as_ref().map(|s| s.as_str())))
            .push_bind(job.action.to_stored())
            .push_bind("pending")
    }};
}

pub(super) use bind_new_job;

/// Which of `jobs` the insert made, from the `(kind, job_key)` rows it returned. The same
/// key twice in one batch: only its first occurrence made the job.
pub(super) fn outcomes(jobs: &[NewJob], mut inserted: HashSet<(String, String)>) -> Vec<Inserted> {
    jobs.iter()
        .map(|j| {
            if inserted.remove(&(j.action.kind().as_str().to_owned(), j.key())) {
                Inserted::New
            } else {
                Inserted::Known
            }
        })
        .collect()
}

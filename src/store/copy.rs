//! Copying jobs between stores (`flexhook store copy`): every column but the row id and the
//! lease, inserted only if absent, so that a copy can be run again safely.

/// The columns a copied job carries over.
pub(super) const COLUMNS: &str = "kind, job_key, conversation_sid, account_sid, \
    chat_service_sid, webhook_sid, first_message_sid, input, state, attempts, next_attempt_at, \
    needs_lookup, create_accepted, message_sent, interaction_sid, interaction_channel_sid, task_sid, last_error_code, \
    last_error_status, last_error_message, outcome, webhook_removed, age_from, created_at, \
    updated_at";

/// Rows per statement: 25 parameters each stays under SQLite's 999-variable floor.
pub(super) const ROWS_PER_STATEMENT: usize = 39;

/// Binds one job's [`COLUMNS`], in order, to a `push_values` row.
macro_rules! bind_job_columns {
    ($row:expr, $job:expr) => {{
        let job = $job;
        let sid = |s: Option<&str>| s.map(str::to_owned);
        let error = job.last_error.as_ref();
        $row.push_bind(job.kind.as_str())
            .push_bind(job.key.clone())
            .push_bind(job.conversation_sid.to_string())
            .push_bind(job.account_sid.to_string())
            .push_bind(sid(job.chat_service_sid.as_ref().map(|s| s.as_str())))
            .push_bind(sid(job.webhook_sid.as_ref().map(|s| s.as_str())))
            .push_bind(sid(job.first_message_sid.as_ref().map(|s| s.as_str())))
            .push_bind(job.input.clone())
            .push_bind(job.state.as_str())
            .push_bind(i64::from(job.attempts))
            .push_bind(job.next_attempt_at)
            .push_bind(job.create_may_have_gone_out)
            .push_bind(job.create_accepted)
            .push_bind(job.message_sent)
            .push_bind(sid(job.interaction_sid.as_ref().map(|s| s.as_str())))
            .push_bind(sid(job
                .interaction_channel_sid
                .as_ref()
                .map(|s| s.as_str())))
            .push_bind(sid(job.task_sid.as_ref().map(|s| s.as_str())))
            .push_bind(error.and_then(|e| e.code))
            .push_bind(error.and_then(|e| e.status).map(i64::from))
            .push_bind(error.map(|e| e.message.clone()))
            .push_bind(job.outcome.clone())
            .push_bind(job.webhook_removed)
            .push_bind(job.age_from)
            .push_bind(job.created_at)
            .push_bind(job.updated_at);
    }};
}

/// Inserts `jobs` unless their kind and key exist, through `$conn`; the rows inserted.
macro_rules! copy_jobs {
    ($db:ty, $conn:expr, $jobs:expr) => {{
        let mut copied = 0u64;
        for chunk in $jobs.chunks($crate::store::copy::ROWS_PER_STATEMENT) {
            let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(format!(
                "INSERT INTO jobs ({}) ",
                $crate::store::copy::COLUMNS
            ));
            q.push_values(chunk, |mut row, job| {
                $crate::store::copy::bind_job_columns!(row, job);
            });
            q.push(" ON CONFLICT (kind, job_key) DO NOTHING");
            copied += q.build().execute(&mut *$conn).await?.rows_affected();
        }
        Ok(copied)
    }};
}

pub(super) use {bind_job_columns, copy_jobs};

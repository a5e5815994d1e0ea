//! What flexhook remembers: the jobs (durable actions, of several kinds: `job.rs`), their
//! state, and why they failed. A small, backend-neutral interface with one file per
//! backend, chosen by the URL's scheme: SQLite (`sqlite://…`, one instance) and PostgreSQL
//! (`postgres://…`, several instances sharing one database and one rate-limit budget).

/// Runs `$body` with `$pool` and `$sql` (written with `$1`-style parameters, which SQLite
/// reads as `?1`) on whichever backend `$store` is: one statement for both, where the two
/// dialects agree.
macro_rules! on_backend {
    ($store:expr, $text:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let $pool = &s.pool;
                let $sql = $text.replace('$', "?");
                $body
            }
            Store::Postgres(p) => {
                let $pool = &p.pool;
                let $sql: String = $text.to_owned();
                $body
            }
        }
    };
}

mod batch;
mod callbacks;
mod columns;
mod copy;
mod decode;
mod job;
mod postgres;
mod sqlite;
mod stats;
mod sweeps;
mod writable;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::{ConversationSid, DatabaseUrl, InteractionChannelSid, InteractionSid, TaskSid};

pub use batch::JobWriter;
pub use job::{Inserted, Job, JobError, JobKind, JobState, NewJob, Transition};

/// What became of a task's end for its conversation's close job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// A new close job, or one re-armed after `kept_open`: due now.
    Queued,
    /// The close job is pending (perhaps in flight): it looks at the live tasks again.
    Recheck,
    /// Nothing to do: the job is done (closed, dead), or there is none and none is inserted.
    Known,
}

/// A send slot in the shared rate-limit budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Taken: send after this wait.
    Reserved(Duration),
    /// The next free slot is this far away, further than the caller may wait: not taken.
    Full(Duration),
}

/// A workspace's event callback: its URL and `EventsFilter` (`None`: unset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceCallback {
    pub url: Option<String>,
    pub filter: Option<String>,
}
pub use postgres::{PostgresStore, PostgresWriter};
pub use sqlite::{SqliteStore, SqliteWriter};
pub use stats::{Counts, StoreStats};
pub use sweeps::SweepStatus;

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at store.url = {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("database is busy or locked: {0}")]
    Busy(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored job is unreadable: {0}")]
    Corrupt(String),
    #[error("the job writer has stopped")]
    WriterGone,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let text = e.to_string();
        let busy = match &e {
            sqlx::Error::Database(db) => {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                db.code()
                    .is_some_and(|c| c.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
            }
            sqlx::Error::PoolTimedOut => true,
            _ => false,
        };
        if busy {
            Self::Busy(text)
        } else {
            Self::Database(text)
        }
    }
}

/// The store, whatever its backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// The group-commit writer's own connection, whatever the backend.
#[derive(Debug)]
pub enum Writer {
    Sqlite(SqliteWriter),
    Postgres(PostgresWriter),
}

impl Writer {
    /// Like [`Store::insert_batch`], on this writer's connection.
    pub async fn insert_batch(&mut self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        match self {
            Self::Sqlite(w) => w.insert_batch(jobs).await,
            Self::Postgres(w) => w.insert_batch(jobs).await,
        }
    }
}

/// Open-time options shared by backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub busy_timeout: Duration,
}

impl Store {
    /// Opens the store named by `url` (its scheme picks the backend) and migrates it.
    pub async fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        match url.scheme() {
            "sqlite" => Ok(Self::Sqlite(SqliteStore::open(url, options).await?)),
            "postgres" | "postgresql" => {
                Ok(Self::Postgres(PostgresStore::open(url, options).await?))
            }
            _ => Err(StoreError::Open {
                url: url.redacted(),
                reason: "unsupported scheme: use sqlite://path/to/file.db or postgres://…".into(),
            }),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Reserves the account's next Interactions API slot in the budget every instance
    /// shares, if it is at most `max_wait` away; `None` when the budget is this process's
    /// own (SQLite: one instance).
    pub async fn reserve_slot(
        &self,
        account: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Option<Slot>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(p) => {
                let (taken, wait) = p.reserve_slot(account, ms(interval), ms(max_wait)).await?;
                let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
                Ok(Some(if taken {
                    Slot::Reserved(wait)
                } else {
                    Slot::Full(wait)
                }))
            }
        }
    }

    /// Inserts each job unless its conversation already has one; one transaction for all.
    pub async fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        match self {
            Self::Sqlite(s) => s.insert_batch(jobs).await,
            Self::Postgres(p) => p.insert_batch(jobs).await,
        }
    }

    /// A dedicated connection for the group-commit writer.
    pub async fn writer(&self) -> Result<Writer, StoreError> {
        match self {
            Self::Sqlite(s) => Ok(Writer::Sqlite(s.writer().await?)),
            Self::Postgres(p) => Ok(Writer::Postgres(p.writer().await?)),
        }
    }

    /// Takes up to `limit` due pending jobs for `owner` until `lease_until`. PostgreSQL
    /// reads "now" and the lease's end from its own clock (the same lease length).
    pub async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_due(owner, now, lease_until, limit).await,
            Self::Postgres(p) => p.claim_due(owner, lease_until - now, limit).await,
        }
    }

    /// Records an attempt's outcome, if `owner` still holds the lease. `false`: it did not.
    pub async fn record(
        &self,
        job: i64,
        owner: &str,
        transition: &Transition,
    ) -> Result<bool, StoreError> {
        self.record_with(job, owner, transition, &[]).await
    }

    /// Like [`Store::record`], and inserts `follow_ups` (unless present) in the same
    /// transaction: they exist if and only if the outcome is recorded.
    pub async fn record_with(
        &self,
        job: i64,
        owner: &str,
        transition: &Transition,
        follow_ups: &[NewJob],
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.record(job, owner, transition, follow_ups, now_ms()).await,
            Self::Postgres(p) => {
                // A retry's due time, as a delay from the database's clock.
                let retry_in = match transition {
                    Transition::Retry {
                        next_attempt_at, ..
                    } => (next_attempt_at - now_ms()).max(0),
                    _ => 0,
                };
                p.record(job, owner, transition, retry_in, follow_ups).await
            }
        }
    }

    /// Arms the conversation's close job for a task that ended: a job still pending (perhaps
    /// in flight) is told to look again ([`Armed::Recheck`]: it will not settle for
    /// `kept_open` on a list read before this end), one that finished `kept_open` is re-armed
    /// with `job`'s input, and, with `insert`, a missing one is inserted. `task` and
    /// `interaction` (KD, UO) are kept with the job. A finished job's `message_sent` stays.
    pub async fn arm_close(
        &self,
        job: &NewJob,
        task: Option<&TaskSid>,
        interaction: Option<(&InteractionSid, &InteractionChannelSid)>,
        insert: bool,
    ) -> Result<Armed, StoreError> {
        let task = task.map(TaskSid::as_str);
        let interaction = interaction.map(|(kd, uo)| (kd.as_str(), uo.as_str()));
        match self {
            Self::Sqlite(s) => s.arm_close(job, task, interaction, insert).await,
            Self::Postgres(p) => p.arm_close(job, task, interaction, insert).await,
        }
    }

    /// Write-ahead before a create is sent: until an outcome is recorded, the job counts as
    /// possibly created, so whoever claims it next looks for its task first, and not before
    /// `lookup_delay` past this claim's lease, by when a create sent under it has reached
    /// Twilio and its task has had time to show. `false`: the lease is no longer `owner`'s,
    /// and nothing may be sent.
    pub async fn mark_attempt_started(
        &self,
        job: i64,
        owner: &str,
        lookup_delay: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_attempt_started(job, owner, ms(lookup_delay)).await,
            Self::Postgres(p) => p.mark_attempt_started(job, owner, ms(lookup_delay)).await,
        }
    }

    /// Write-ahead before a reply or close job posts its message (`sent = true`): from then
    /// on it counts as posted and is never posted again. `sent = false` takes it back after
    /// Twilio surely did not take it (a refusal, a refused connection). `false`: the lease is
    /// no longer `owner`'s.
    pub async fn mark_message(
        &self,
        job: i64,
        owner: &str,
        sent: bool,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_message(job, owner, sent).await,
            Self::Postgres(p) => p.mark_message(job, owner, sent).await,
        }
    }

    /// Replaces a leased job's input (facts looked up once, kept for every retry); `false`:
    /// the lease is no longer `owner`'s.
    pub async fn update_input(
        &self,
        job: i64,
        owner: &str,
        input: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.update_input(job, owner, input).await,
            Self::Postgres(p) => p.update_input(job, owner, input).await,
        }
    }

    pub async fn mark_webhook_removed(&self, job: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_webhook_removed(job, now_ms()).await,
            Self::Postgres(p) => p.mark_webhook_removed(job).await,
        }
    }

    /// When the earliest pending job falls due (it may be in the past, or leased).
    pub async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.next_due_at().await,
            Self::Postgres(p) => Ok(p.next_due_in().await?.map(|d| now_ms() + d)),
        }
    }

    /// The conversation's interaction job.
    pub async fn get(&self, conversation: &ConversationSid) -> Result<Option<Job>, StoreError> {
        self.find(JobKind::Interaction, conversation.as_str()).await
    }

    /// The job of `kind` with `key`.
    pub async fn find(&self, kind: JobKind, key: &str) -> Result<Option<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.find(kind, key).await,
            Self::Postgres(p) => p.find(kind, key).await,
        }
    }

    /// Every job of a conversation, oldest first.
    pub async fn for_conversation(
        &self,
        conversation: &ConversationSid,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.for_conversation(conversation).await,
            Self::Postgres(p) => p.for_conversation(conversation).await,
        }
    }

    /// The jobs whose task is `task`, oldest first (TaskRouter's events name tasks).
    pub async fn for_task(&self, task: &TaskSid) -> Result<Vec<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.for_task(task).await,
            Self::Postgres(p) => p.for_task(task).await,
        }
    }

    /// Jobs, newest first, optionally of one state and one kind.
    pub async fn list(
        &self,
        state: Option<JobState>,
        kind: Option<JobKind>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.list(state, kind, limit).await,
            Self::Postgres(p) => p.list(state, kind, limit).await,
        }
    }

    /// Moves dead jobs back to pending, due now, with a fresh max-age clock: the
    /// conversation's, or with `None` all of them.
    pub async fn retry_dead(
        &self,
        conversation: Option<&ConversationSid>,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.retry_dead(conversation, now_ms()).await,
            Self::Postgres(p) => p.retry_dead(conversation).await,
        }
    }

    /// Deletes finished and dead jobs last touched before `before`.
    pub async fn purge_finished(&self, before: i64) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.purge_finished(before).await,
            Self::Postgres(p) => p.purge_finished((now_ms() - before).max(0)).await,
        }
    }

    /// Every job, oldest first (for `flexhook store copy`).
    pub async fn all_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut jobs = self.list(None, None, usize::MAX).await?;
        jobs.reverse();
        Ok(jobs)
    }

    /// Inserts copies of `jobs` from another store, each unless its kind and key exist here;
    /// how many were new. States, SIDs, errors and times are kept; leases are not.
    pub async fn copy_in(&self, jobs: &[Job]) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.copy_in(jobs).await,
            Self::Postgres(p) => p.copy_in(jobs).await,
        }
    }

    /// Pending and dead jobs by kind, and the oldest pending job's age (for the metrics).
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        match self {
            Self::Sqlite(s) => s.stats(now_ms()).await,
            Self::Postgres(p) => p.stats().await,
        }
    }

    /// A cheap round-trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ping().await,
            Self::Postgres(p) => p.ping().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

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
mod contract;
mod copy;
mod decode;
mod job;
mod known_agents;
mod postgres;
mod sqlite;
mod stats;
mod sweeps;
mod writable;

use std::time::Duration;

use crate::clock::Clock;
use crate::domain::{Backend, ConversationSid, DatabaseUrl};

pub use batch::JobWriter;
pub use job::{ErrorOrigin, Inserted, Job, JobError, JobKind, JobState, NewJob, Transition};

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
pub use known_agents::KnownAgent;
pub use postgres::{PostgresStore, PostgresWriter};
pub use sqlite::{SqliteStore, SqliteWriter};
pub use stats::{Counts, StoreStats};
pub use sweeps::SweepStatus;

/// Milliseconds since the Unix epoch by the system clock, for the callers that do not read
/// the store's own clock ([`Store::now_ms`]) yet.
pub use crate::clock::system_ms as now_ms;

/// A duration in whole milliseconds.
pub use crate::clock::millis as ms;

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

/// The store, whatever its backend: its operations are the storage contract
/// (`contract.rs`), each handed to the backend.
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
    /// What "now" is: [`Clock::system`], or a test's [`Clock::manual`].
    pub clock: Clock,
}

impl Store {
    /// Opens the store named by `url` (its scheme picks the backend) and migrates it.
    pub async fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        match url.backend() {
            Some(Backend::Sqlite) => Ok(Self::Sqlite(SqliteStore::open(url, options).await?)),
            Some(Backend::Postgres) => Ok(Self::Postgres(PostgresStore::open(url, options).await?)),
            None => Err(StoreError::Open {
                url: url.redacted(),
                reason: "unsupported scheme: use sqlite://path/to/file.db or postgres://…".into(),
            }),
        }
    }

    /// Milliseconds since the Unix epoch, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock().now_ms()
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

    /// The conversation's interaction job.
    pub async fn get(&self, conversation: &ConversationSid) -> Result<Option<Job>, StoreError> {
        self.find(JobKind::Interaction, conversation.as_str()).await
    }

    /// Every job, oldest first (for `flexhook store copy`).
    pub async fn all_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut jobs = self.list(None, None, None, usize::MAX).await?;
        jobs.reverse();
        Ok(jobs)
    }
}

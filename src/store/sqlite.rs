//! The SQLite backend: one file, WAL, `synchronous=FULL`, migrations embedded.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Acquire, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::contract::Storage;
use super::{
    stats, Armed, Inserted, Job, JobKind, JobState, NewJob, Slot, StoreError, StoreOptions,
    StoreStats, Transition, Writer,
};
use crate::clock::{from_millis, millis, Clock};
use crate::domain::{
    Backend, ConversationSid, DatabaseUrl, InteractionChannelSid, InteractionSid, TaskSid,
};

/// Rows per INSERT statement: 13 parameters each stays under SQLite's 999-variable floor.
const ROWS_PER_STATEMENT: usize = 70;

mod outcome;

use outcome::update_outcome;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// "Now", for every statement: SQLite has no clock instances share.
    clock: Clock,
}

impl SqliteStore {
    pub async fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            url: url.redacted(),
            reason,
        };
        let url = url.expose();
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(open_err(
                "an in-memory database forgets every job on restart; use a file".into(),
            ));
        }
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| open_err(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            // Checkpoint the WAL every ~40 MB instead of every 4 MB: the checkpoint runs
            // inside a committing writer, and the writer is the webhook's critical path.
            .pragma("wal_autocheckpoint", "10000");
        if let Some(dir) = Path::new(connect.get_filename()).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    open_err(format!("cannot create directory {}: {e}", dir.display()))
                })?;
            }
        }
        super::writable::check(Path::new(connect.get_filename())).map_err(open_err)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(options.busy_timeout.max(std::time::Duration::from_secs(1)))
            .connect_with(connect)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("migration failed: {e}")))?;
        Ok(Self {
            pool,
            clock: options.clock.clone(),
        })
    }
}

impl Storage for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_batch(&mut conn, jobs).await
    }

    /// A connection of its own for the group-commit writer: a warm page cache, and no
    /// trip through the pool for every batch.
    async fn writer(&self) -> Result<Writer, StoreError> {
        Ok(Writer::Sqlite(SqliteWriter {
            conn: self.pool.acquire().await?.detach(),
        }))
    }

    /// One instance: the budget is this process's own.
    async fn reserve_slot(
        &self,
        _account: &str,
        _interval: Duration,
        _max_wait: Duration,
    ) -> Result<Option<Slot>, StoreError> {
        Ok(None)
    }

    async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        account: Option<&str>,
    ) -> Result<Vec<Job>, StoreError> {
        let now = self.clock.now_ms();
        let rows = sqlx::query(
            "UPDATE jobs SET lease_owner = ?1, lease_until = ?2, recheck = 0 \
             WHERE id IN ( \
                 SELECT id FROM jobs \
                 WHERE state = 'pending' AND next_attempt_at <= ?3 \
                   AND (lease_until IS NULL OR lease_until <= ?3) \
                   AND (?5 IS NULL OR account_sid = ?5) \
                 ORDER BY next_attempt_at LIMIT ?4) \
             RETURNING *",
        )
        .bind(owner)
        .bind(now.saturating_add(millis(lease)))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn record_with(
        &self,
        job: i64,
        owner: &str,
        transition: &Transition,
        follow_ups: &[NewJob],
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        // Without follow-ups, one autocommit statement: an explicit transaction would hold
        // the write lock across round trips, and the webhooks' writer waits for it.
        if follow_ups.is_empty() {
            let mut conn = self.pool.acquire().await?;
            return Ok(update_outcome(&mut conn, job, owner, transition, now).await? == 1);
        }
        let mut tx = self.pool.begin().await?;
        if update_outcome(&mut tx, job, owner, transition, now).await? != 1 {
            return Ok(false);
        }
        // The follow-ups exist if and only if the outcome is recorded.
        insert_batch_in(&mut tx, follow_ups).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn arm_close(
        &self,
        job: &NewJob,
        task: Option<&TaskSid>,
        interaction: Option<(&InteractionSid, &InteractionChannelSid)>,
        insert: bool,
    ) -> Result<Armed, StoreError> {
        let now = self.clock.now_ms();
        let task = task.map(TaskSid::as_str);
        let interaction = interaction.map(|(kd, uo)| (kd.as_str(), uo.as_str()));
        let recheck = sqlx::query(
            "UPDATE jobs SET recheck = 1, input = ?1, task_sid = ?2, \
             interaction_sid = COALESCE(?3, interaction_sid), \
             interaction_channel_sid = COALESCE(?4, interaction_channel_sid), updated_at = ?5 \
             WHERE kind = ?6 AND job_key = ?7 AND state = 'pending'",
        )
        .bind(&job.input)
        .bind(task)
        .bind(interaction.map(|(kd, _)| kd))
        .bind(interaction.map(|(_, uo)| uo))
        .bind(now)
        .bind(job.kind.as_str())
        .bind(&job.key)
        .execute(&self.pool)
        .await?;
        if recheck.rows_affected() == 1 {
            return Ok(Armed::Recheck);
        }
        let rearm = super::columns::REARM;
        let query = if insert {
            format!(
                "INSERT INTO jobs (kind, job_key, conversation_sid, account_sid, chat_service_sid, \
                 webhook_sid, first_message_sid, input, state, next_attempt_at, age_from, \
                 created_at, updated_at, task_sid, interaction_sid, interaction_channel_sid) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9, ?9, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (kind, job_key) DO UPDATE SET input = excluded.input, {rearm}, \
                 next_attempt_at = excluded.next_attempt_at, age_from = excluded.age_from, \
                 updated_at = excluded.updated_at, task_sid = excluded.task_sid, \
                 interaction_sid = excluded.interaction_sid, \
                 interaction_channel_sid = excluded.interaction_channel_sid \
                 WHERE jobs.state = 'kept_open' \
                 RETURNING id"
            )
        } else {
            // Bound like the insert above: SQLite takes the unused numbers (?3 to ?7).
            format!(
                "UPDATE jobs SET input = ?8, {rearm}, next_attempt_at = ?9, age_from = ?9, \
                 updated_at = ?9, task_sid = ?10, interaction_sid = COALESCE(?11, interaction_sid), \
                 interaction_channel_sid = COALESCE(?12, interaction_channel_sid) \
                 WHERE kind = ?1 AND job_key = ?2 AND state = 'kept_open' \
                 RETURNING id"
            )
        };
        let row = sqlx::query(&query)
            .bind(job.kind.as_str())
            .bind(&job.key)
            .bind(job.conversation_sid.as_str())
            .bind(job.account_sid.as_str())
            .bind(job.chat_service_sid.as_ref().map(|s| s.as_str()))
            .bind(job.webhook_sid.as_ref().map(|s| s.as_str()))
            .bind(job.first_message_sid.as_ref().map(|s| s.as_str()))
            .bind(&job.input)
            .bind(now)
            .bind(task)
            .bind(interaction.map(|(kd, _)| kd))
            .bind(interaction.map(|(_, uo)| uo))
            .fetch_optional(&self.pool)
            .await?;
        Ok(if row.is_some() {
            Armed::Queued
        } else {
            Armed::Known
        })
    }

    async fn update_input(&self, job: i64, owner: &str, input: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET input = ?1 WHERE id = ?2 AND lease_owner = ?3 AND state = 'pending'",
        )
        .bind(input)
        .bind(job)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn mark_attempt_started(
        &self,
        job: i64,
        owner: &str,
        lookup_delay: Duration,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET needs_lookup = 1, next_attempt_at = lease_until + ?3 \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending'",
        )
        .bind(job)
        .bind(owner)
        .bind(millis(lookup_delay))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn mark_message(&self, job: i64, owner: &str, sent: bool) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET message_sent = ?3 \
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'pending'",
        )
        .bind(job)
        .bind(owner)
        .bind(sent)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn mark_webhook_removed(&self, job: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET webhook_removed = 1, updated_at = ?1 WHERE id = ?2")
            .bind(self.clock.now_ms())
            .bind(job)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn next_due_in(&self, account: Option<&str>) -> Result<Option<Duration>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) - ?1 FROM jobs \
             WHERE state = 'pending' AND (?2 IS NULL OR account_sid = ?2)",
        )
        .bind(self.clock.now_ms())
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(from_millis))
    }

    async fn find(&self, kind: JobKind, key: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE kind = ?1 AND job_key = ?2")
            .bind(kind.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn for_conversation(
        &self,
        conversation: &ConversationSid,
    ) -> Result<Vec<Job>, StoreError> {
        // A job's key is the conversation SID, or (an episode's) that SID, `/` and more: the
        // UNIQUE (kind, job_key) index finds them all, one lookup and one range per kind
        // (BINARY collation: `/` sorts right before `0`).
        let kinds = JobKind::ALL
            .iter()
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT * FROM jobs WHERE kind IN ({kinds}) AND job_key = ?1 \
             UNION ALL SELECT * FROM jobs WHERE kind IN ({kinds}) AND job_key >= ?2 AND job_key < ?3 \
             ORDER BY id"
        ))
        .bind(conversation.as_str())
        .bind(format!("{conversation}/"))
        .bind(format!("{conversation}0"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn for_task(&self, task: &TaskSid) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE task_sid = ?1 ORDER BY id")
            .bind(task.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn list(
        &self,
        state: Option<JobState>,
        kind: Option<JobKind>,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2) \
             AND (?4 IS NULL OR account_sid = ?4) ORDER BY id DESC LIMIT ?3",
        )
        .bind(state.map(JobState::as_str))
        .bind(kind.map(JobKind::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_dead(&self, conversation: Option<&ConversationSid>) -> Result<u64, StoreError> {
        let now = self.clock.now_ms();
        // A dead interaction job may have died after an ambiguous failure: look for its task
        // first. Other kinds keep `message_sent`, which says alone whether they posted.
        let set = "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?1, \
                   needs_lookup = (kind = 'interaction'), age_from = ?1, updated_at = ?1, lease_owner = NULL, \
                   lease_until = NULL WHERE state = 'dead'";
        let result = match conversation {
            Some(c) => {
                sqlx::query(&format!("{set} AND conversation_sid = ?2"))
                    .bind(now)
                    .bind(c.as_str())
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query(set).bind(now).execute(&self.pool).await?,
        };
        Ok(result.rows_affected())
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM jobs WHERE state <> 'pending' AND updated_at < ?1")
            .bind(self.clock.now_ms().saturating_sub(millis(older_than)))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn copy_in(&self, jobs: &[Job]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let copied: Result<u64, StoreError> = super::copy::copy_jobs!(Sqlite, tx, jobs);
        tx.commit().await?;
        copied
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let rows = sqlx::query_as::<_, stats::Row>(&stats::query("?1"))
            .bind(self.clock.now_ms())
            .fetch_all(&self.pool)
            .await?;
        Ok(StoreStats::from_rows(rows))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Reads the jobs table itself: `SELECT 1` would answer without the database.
        sqlx::query("SELECT 1 FROM jobs LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// The group-commit writer's own connection.
#[derive(Debug)]
pub struct SqliteWriter {
    conn: SqliteConnection,
}

impl SqliteWriter {
    pub async fn insert_batch(&mut self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        insert_batch(&mut self.conn, jobs).await
    }
}

/// Inserts each job unless one of its kind has its key, in one transaction; reports which
/// made a new job.
async fn insert_batch(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> Result<Vec<Inserted>, StoreError> {
    let mut tx = conn.begin().await?;
    let outcomes = insert_batch_in(&mut tx, jobs).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// [`insert_batch`] inside a transaction the caller commits.
async fn insert_batch_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    jobs: &[NewJob],
) -> Result<Vec<Inserted>, StoreError> {
    let mut inserted: HashSet<(String, String)> = HashSet::new();
    for chunk in super::columns::distinct(jobs).chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(super::columns::NEW_JOB_INSERT);
        q.push_values(chunk, |mut row, job| {
            super::columns::bind_new_job!(row, job)
                .push_bind(job.received_at)
                .push_bind(job.received_at)
                .push_bind(job.received_at)
                .push_bind(job.received_at);
        });
        // An `ignored` interaction job is decided again for this later message, at its
        // time: the first message's facts are kept, with the new message's time.
        q.push(super::columns::rearm_ignored(
            "json_set(jobs.input, '$.at_ms', json_extract(excluded.input, '$.at_ms'))",
        ));
        let rows = q.build().fetch_all(&mut **tx).await?;
        for row in rows {
            inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }
    Ok(super::columns::outcomes(jobs, inserted))
}

impl super::decode::Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }
}

fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    super::decode::job(row)
}

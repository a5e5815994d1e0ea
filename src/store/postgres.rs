//! The PostgreSQL backend, for several instances on one database. Claims take rows with
//! `FOR UPDATE SKIP LOCKED` under per-claim lease tokens, and every time (leases, due times,
//! timestamps) comes from the database's clock, so clock skew between instances cannot hand
//! one job to two of them. The store's clock only adds its offset (zero but in tests), passed
//! to every statement as a parameter. The Interactions API budget is kept here too
//! (`rate_limits`).

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Acquire, Postgres, QueryBuilder, Row};

use super::contract::Storage;
use super::{
    stats, Armed, Inserted, Job, JobKind, JobState, NewJob, Slot, StoreError, StoreOptions,
    StoreStats, Transition, Writer,
};
use crate::clock::{from_millis, millis, Clock};
use crate::domain::{
    Backend, ConversationSid, DatabaseUrl, InteractionChannelSid, InteractionSid, TaskSid,
};

/// The database's clock, in milliseconds since the Unix epoch.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// "Now": the database's clock plus the store clock's offset, bound as parameter `$n`.
fn now(n: usize) -> String {
    format!("({NOW_MS} + ${n})")
}

/// Rows per INSERT statement (13 parameters each, far under PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 500;

mod outcome;
mod rate_limit;

use outcome::update_outcome;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// Only its offset is read: "now" is the database's.
    clock: Clock,
}

impl PostgresStore {
    pub async fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            url: url.redacted(),
            reason,
        };
        let statement_timeout = options.busy_timeout.as_millis().max(1).to_string();
        let (driver_url, ignored) = url.for_postgres_driver();
        for name in ignored {
            tracing::warn!(
                parameter = %name,
                "store.url: the query parameter is not supported by the PostgreSQL driver and is ignored"
            );
        }
        let connect = PgConnectOptions::from_str(&driver_url)
            .map_err(|e| open_err(e.to_string()))?
            .application_name("flexhook")
            // No statement may hold a webhook past its answer deadline.
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(options.busy_timeout.max(Duration::from_secs(1)))
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

    /// The store clock's offset, for [`now`].
    fn offset(&self) -> i64 {
        self.clock.offset_ms()
    }
}

impl Storage for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_batch(&mut conn, jobs, self.offset()).await
    }

    async fn writer(&self) -> Result<Writer, StoreError> {
        Ok(Writer::Postgres(PostgresWriter {
            conn: self.pool.acquire().await?.detach(),
            clock: self.clock.clone(),
        }))
    }

    async fn reserve_slot(
        &self,
        account: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Option<Slot>, StoreError> {
        self.reserve_shared_slot(account, interval, max_wait)
            .await
            .map(Some)
    }

    /// Leases are timed by the database's clock.
    async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        account: Option<&str>,
    ) -> Result<Vec<Job>, StoreError> {
        let now = now(4);
        let rows = sqlx::query(&format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = {now} + $2, recheck = FALSE \
             WHERE id IN ( \
                 SELECT id FROM jobs \
                 WHERE state = 'pending' AND next_attempt_at <= {now} \
                   AND (lease_until IS NULL OR lease_until <= {now}) \
                   AND ($5::TEXT IS NULL OR account_sid = $5::TEXT) \
                 ORDER BY next_attempt_at LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING *"
        ))
        .bind(owner)
        .bind(millis(lease))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.offset())
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
        let mut tx = self.pool.begin().await?;
        if update_outcome(&mut tx, job, owner, transition, self.offset()).await? != 1 {
            return Ok(false);
        }
        if !follow_ups.is_empty() {
            insert_batch_in(&mut tx, follow_ups, self.offset()).await?;
        }
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
        let task = task.map(TaskSid::as_str);
        let interaction = interaction.map(|(kd, uo)| (kd.as_str(), uo.as_str()));
        let recheck = sqlx::query(&format!(
            "UPDATE jobs SET recheck = TRUE, input = $1, task_sid = $2, \
             interaction_sid = COALESCE($3, interaction_sid), \
             interaction_channel_sid = COALESCE($4, interaction_channel_sid), \
             updated_at = {} \
             WHERE kind = $5 AND job_key = $6 AND state = 'pending'",
            now(7)
        ))
        .bind(&job.input)
        .bind(task)
        .bind(interaction.map(|(kd, _)| kd))
        .bind(interaction.map(|(_, uo)| uo))
        .bind(job.kind.as_str())
        .bind(&job.key)
        .bind(self.offset())
        .execute(&self.pool)
        .await?;
        if recheck.rows_affected() == 1 {
            return Ok(Armed::Recheck);
        }
        let rearm = super::columns::REARM;
        let row = if insert {
            let now = now(12);
            sqlx::query(&format!(
                "INSERT INTO jobs (kind, job_key, conversation_sid, account_sid, chat_service_sid, \
                 webhook_sid, first_message_sid, input, state, next_attempt_at, age_from, \
                 created_at, updated_at, task_sid, interaction_sid, interaction_channel_sid) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', {now}, {now}, {now}, \
                 {now}, $9, $10, $11) \
                 ON CONFLICT (kind, job_key) DO UPDATE SET input = EXCLUDED.input, {rearm}, \
                 next_attempt_at = EXCLUDED.next_attempt_at, age_from = EXCLUDED.age_from, \
                 updated_at = EXCLUDED.updated_at, task_sid = EXCLUDED.task_sid, \
                 interaction_sid = EXCLUDED.interaction_sid, \
                 interaction_channel_sid = EXCLUDED.interaction_channel_sid \
                 WHERE jobs.state = 'kept_open' \
                 RETURNING id"
            ))
            .bind(job.kind.as_str())
            .bind(&job.key)
            .bind(job.conversation_sid.as_str())
            .bind(job.account_sid.as_str())
            .bind(job.chat_service_sid.as_ref().map(|s| s.as_str()))
            .bind(job.webhook_sid.as_ref().map(|s| s.as_str()))
            .bind(job.first_message_sid.as_ref().map(|s| s.as_str()))
            .bind(&job.input)
            .bind(task)
            .bind(interaction.map(|(kd, _)| kd))
            .bind(interaction.map(|(_, uo)| uo))
            .bind(self.offset())
            .fetch_optional(&self.pool)
            .await?
        } else {
            let now = now(7);
            sqlx::query(&format!(
                "UPDATE jobs SET input = $3, {rearm}, next_attempt_at = {now}, \
                 age_from = {now}, updated_at = {now}, task_sid = $4, \
                 interaction_sid = COALESCE($5, interaction_sid), \
                 interaction_channel_sid = COALESCE($6, interaction_channel_sid) \
                 WHERE kind = $1 AND job_key = $2 AND state = 'kept_open' \
                 RETURNING id"
            ))
            .bind(job.kind.as_str())
            .bind(&job.key)
            .bind(&job.input)
            .bind(task)
            .bind(interaction.map(|(kd, _)| kd))
            .bind(interaction.map(|(_, uo)| uo))
            .bind(self.offset())
            .fetch_optional(&self.pool)
            .await?
        };
        Ok(if row.is_some() {
            Armed::Queued
        } else {
            Armed::Known
        })
    }

    async fn update_input(&self, job: i64, owner: &str, input: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE jobs SET input = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'pending'",
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
            "UPDATE jobs SET needs_lookup = TRUE, next_attempt_at = lease_until + $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
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
            "UPDATE jobs SET message_sent = $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
        )
        .bind(job)
        .bind(owner)
        .bind(sent)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn mark_webhook_removed(&self, job: i64) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE jobs SET webhook_removed = TRUE, updated_at = {} WHERE id = $1",
            now(2)
        ))
        .bind(job)
        .bind(self.offset())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due_in(&self, account: Option<&str>) -> Result<Option<Duration>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) - {} \
             FROM jobs WHERE state = 'pending' AND ($2::TEXT IS NULL OR account_sid = $2::TEXT)",
            now(1)
        ))
        .bind(self.offset())
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.map(from_millis))
    }

    async fn find(&self, kind: JobKind, key: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE kind = $1 AND job_key = $2")
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
        // A job's key is the conversation SID, or (an episode's) that SID, `/` and more. A
        // range would depend on the database's collation, so an episode's key is matched
        // by its prefix: SIDs hold neither `%` nor `_`.
        let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE kind = ANY($1) AND (job_key = $2 OR job_key LIKE $3) \
             ORDER BY id",
        )
        .bind(kinds)
        .bind(conversation.as_str())
        .bind(format!("{conversation}/%"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn for_task(&self, task: &TaskSid) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE task_sid = $1 ORDER BY id")
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
            "SELECT * FROM jobs WHERE ($1::TEXT IS NULL OR state = $1) \
             AND ($2::TEXT IS NULL OR kind = $2) AND ($4::TEXT IS NULL OR account_sid = $4) \
             ORDER BY id DESC LIMIT $3",
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
        // A dead interaction job may have died after an ambiguous failure: look for its task
        // first. Other kinds keep `message_sent`, which says alone whether they posted.
        let now = now(2);
        let result = sqlx::query(&format!(
            "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = {now}, \
             needs_lookup = (kind = 'interaction'), age_from = {now}, updated_at = {now}, \
             lease_owner = NULL, lease_until = NULL \
             WHERE state = 'dead' AND ($1::TEXT IS NULL OR conversation_sid = $1)"
        ))
        .bind(conversation.map(ConversationSid::as_str))
        .bind(self.offset())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        let result = sqlx::query(&format!(
            "DELETE FROM jobs WHERE state <> 'pending' AND updated_at < {} - $1",
            now(2)
        ))
        .bind(millis(older_than))
        .bind(self.offset())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn copy_in(&self, jobs: &[Job]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let copied: Result<u64, StoreError> = super::copy::copy_jobs!(Postgres, tx, jobs);
        tx.commit().await?;
        copied
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let rows = sqlx::query_as::<_, stats::Row>(&stats::query(&now(1)))
            .bind(self.offset())
            .fetch_all(&self.pool)
            .await?;
        Ok(StoreStats::from_rows(rows))
    }

    async fn ping(&self) -> Result<(), StoreError> {
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
pub struct PostgresWriter {
    conn: PgConnection,
    clock: Clock,
}

impl PostgresWriter {
    pub async fn insert_batch(&mut self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError> {
        insert_batch(&mut self.conn, jobs, self.clock.offset_ms()).await
    }
}

async fn insert_batch(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    offset: i64,
) -> Result<Vec<Inserted>, StoreError> {
    let mut tx = conn.begin().await?;
    let outcomes = insert_batch_in(&mut tx, jobs, offset).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Inserts each job unless one of its kind has its key; times from the database's clock,
/// moved by `offset`.
async fn insert_batch_in(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    jobs: &[NewJob],
    offset: i64,
) -> Result<Vec<Inserted>, StoreError> {
    let mut inserted: HashSet<(String, String)> = HashSet::new();
    for chunk in super::columns::distinct(jobs).chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(super::columns::NEW_JOB_INSERT);
        q.push_values(chunk, |mut row, job| {
            let row = super::columns::bind_new_job!(row, job);
            for _ in 0..4 {
                row.push(format!("{NOW_MS} + "))
                    .push_bind_unseparated(offset);
            }
        });
        // An `ignored` interaction job is decided again for this later message, at its
        // time: the first message's facts are kept, with the new message's time.
        q.push(super::columns::rearm_ignored(
            "(jobs.input::jsonb || jsonb_build_object('at_ms', (excluded.input::jsonb) -> 'at_ms'))::text",
        ));
        let rows = q.build().fetch_all(&mut **tx).await?;
        for row in rows {
            inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
    }
    Ok(super::columns::outcomes(jobs, inserted))
}

impl super::decode::Columns for PgRow {
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

fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    super::decode::job(row)
}

//! The reconciler's bookkeeping: one row per account with a lease (one sweep at a time,
//! across instances and the CLI alike), and what the last sweep found. The same SQL on
//! both backends; times are the caller's milliseconds.

use std::collections::HashSet;

use sqlx::Row;

use super::{Job, Store, StoreError};

/// What a finished sweep left for the next one, and for `flexhook check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStatus {
    pub last_started_at: Option<i64>,
    pub last_success_at: Option<i64>,
    /// When the last successful sweep started: the next one looks back to a little before.
    pub last_since: Option<i64>,
    /// The last successful sweep's findings, as JSON.
    pub last_findings: Option<String>,
    pub last_error: Option<String>,
}

impl Store {
    /// Takes the account's sweep lease until `now + lease_ms`, unless another sweep holds
    /// it. `None`: another sweep runs; else what the last one left.
    pub async fn sweep_begin(
        &self,
        account: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<SweepStatus>, StoreError> {
        let insert = "INSERT INTO reconcile_sweeps (account_sid) VALUES ($1) \
                      ON CONFLICT (account_sid) DO NOTHING";
        on_backend!(self, insert, |pool, sql| {
            sqlx::query(&sql).bind(account).execute(pool).await?;
        });
        let take = "UPDATE reconcile_sweeps SET lease_owner = $2, lease_until = $3 + $4, \
                    last_started_at = $3 \
                    WHERE account_sid = $1 AND (lease_until IS NULL OR lease_until <= $3) \
                    RETURNING last_started_at, last_success_at, last_since, last_findings, \
                    last_error";
        let row = on_backend!(self, take, |pool, sql| {
            sqlx::query(&sql)
                .bind(account)
                .bind(owner)
                .bind(now)
                .bind(lease_ms)
                .fetch_optional(pool)
                .await?
                .map(|r| status(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Releases the lease; with `Ok((anchor, findings))` records a success and where the
    /// next sweep looks back from (`None`: nowhere yet), with `Err(error)` a failure (the
    /// anchor stays where it was).
    pub async fn sweep_end(
        &self,
        account: &str,
        owner: &str,
        now: i64,
        outcome: Result<(Option<i64>, &str), &str>,
    ) -> Result<(), StoreError> {
        match outcome {
            Ok((started, findings)) => {
                let done = "UPDATE reconcile_sweeps SET lease_owner = NULL, lease_until = NULL, \
                            last_success_at = $3, last_since = $4, last_findings = $5, \
                            last_error = NULL WHERE account_sid = $1 AND lease_owner = $2";
                on_backend!(self, done, |pool, sql| {
                    sqlx::query(&sql)
                        .bind(account)
                        .bind(owner)
                        .bind(now)
                        .bind(started)
                        .bind(findings)
                        .execute(pool)
                        .await?;
                });
            }
            Err(error) => {
                let failed = "UPDATE reconcile_sweeps SET lease_owner = NULL, \
                              lease_until = NULL, last_error = $3 \
                              WHERE account_sid = $1 AND lease_owner = $2";
                on_backend!(self, failed, |pool, sql| {
                    sqlx::query(&sql)
                        .bind(account)
                        .bind(owner)
                        .bind(error)
                        .execute(pool)
                        .await?;
                });
            }
        }
        Ok(())
    }

    /// What the account's last sweep left, if it ever swept.
    pub async fn sweep_status(&self, account: &str) -> Result<Option<SweepStatus>, StoreError> {
        let read = "SELECT last_started_at, last_success_at, last_since, last_findings, \
                    last_error FROM reconcile_sweeps WHERE account_sid = $1";
        on_backend!(self, read, |pool, sql| {
            sqlx::query(&sql)
                .bind(account)
                .fetch_optional(pool)
                .await?
                .map(|r| status(&r))
                .transpose()
        })
    }

    /// Which of `conversations` have an interaction job.
    pub async fn known_interactions(
        &self,
        conversations: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut known = HashSet::new();
        for chunk in conversations.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let text = format!(
                "SELECT job_key FROM jobs WHERE kind = 'interaction' AND job_key IN ({})",
                params.join(", ")
            );
            on_backend!(self, text, |pool, sql| {
                let mut q = sqlx::query(&sql);
                for key in chunk {
                    q = q.bind(key);
                }
                for row in q.fetch_all(pool).await? {
                    known.insert(row.try_get::<String, _>(0)?);
                }
            });
        }
        Ok(known)
    }

    /// `account`'s interaction jobs handed off before `before` whose conversation webhook
    /// is still there (its removal failed), oldest first.
    pub async fn stale_webhooks(
        &self,
        account: &str,
        before: i64,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let text = "SELECT * FROM jobs WHERE kind = 'interaction' AND state = 'created' \
                    AND webhook_sid IS NOT NULL AND webhook_removed = FALSE \
                    AND updated_at < $1 AND account_sid = $3 ORDER BY id LIMIT $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_backend!(self, text, |pool, sql| {
            sqlx::query(&sql)
                .bind(before)
                .bind(limit)
                .bind(account)
                .fetch_all(pool)
                .await?
                .iter()
                .map(super::decode::job)
                .collect()
        })
    }
}

fn status<R: Row>(row: &R) -> Result<SweepStatus, StoreError>
where
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(SweepStatus {
        last_started_at: row.try_get(0)?,
        last_success_at: row.try_get(1)?,
        last_since: row.try_get(2)?,
        last_findings: row.try_get(3)?,
        last_error: row.try_get(4)?,
    })
}

//! Known-agent routing's memory: per account and customer (by [`CustomerAddress::key`],
//! never the address), the agent who last accepted one of their tasks and when. One row
//! per account and customer, the same SQL on both backends; rows older than
//! `store.retention_days` go with the worker's purge.

use std::time::Duration;

use super::{Store, StoreError};
use crate::clock::millis;
use crate::domain::{AccountSid, CustomerAddress, WorkerSid};

/// The agent who last accepted a task of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAgent {
    pub worker_sid: WorkerSid,
    /// When, Unix ms by the store's clock.
    pub at_ms: i64,
}

impl Store {
    /// Remembers that `worker` accepted a task of `customer` now. A later acceptance
    /// replaces an earlier one; an older one, delivered late, does not.
    pub async fn remember_agent(
        &self,
        account: &AccountSid,
        customer: &CustomerAddress,
        worker: &WorkerSid,
    ) -> Result<(), StoreError> {
        let upsert = "INSERT INTO known_agents (account_sid, customer_key, worker_sid, accepted_at) \
                      VALUES ($1, $2, $3, $4) ON CONFLICT (account_sid, customer_key) DO UPDATE SET \
                      worker_sid = excluded.worker_sid, accepted_at = excluded.accepted_at \
                      WHERE known_agents.accepted_at <= excluded.accepted_at";
        on_backend!(self, upsert, |pool, sql| {
            sqlx::query(&sql)
                .bind(account.as_str())
                .bind(customer.key())
                .bind(worker.as_str())
                .bind(self.now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The agent of `account` who last accepted a task of `customer`, if that was at most
    /// `within` ago.
    pub async fn known_agent(
        &self,
        account: &AccountSid,
        customer: &CustomerAddress,
        within: Duration,
    ) -> Result<Option<KnownAgent>, StoreError> {
        let read = "SELECT worker_sid, accepted_at FROM known_agents \
                    WHERE account_sid = $1 AND customer_key = $2 AND accepted_at >= $3";
        let since = self.now_ms().saturating_sub(millis(within));
        let row: Option<(String, i64)> = on_backend!(self, read, |pool, sql| {
            sqlx::query_as(&sql)
                .bind(account.as_str())
                .bind(customer.key())
                .bind(since)
                .fetch_optional(pool)
                .await?
        });
        // A row that is not a worker's SID was not written by this code: as good as none.
        Ok(row.and_then(|(worker, at_ms)| {
            WorkerSid::parse(&worker)
                .ok()
                .map(|worker_sid| KnownAgent { worker_sid, at_ms })
        }))
    }

    /// Gives the rows written before accounts were kept (account `''`) to `account`, the
    /// deployment's one account; how many. Run at start-up.
    pub async fn adopt_agents(&self, account: &AccountSid) -> Result<u64, StoreError> {
        let update = "UPDATE known_agents SET account_sid = $1 WHERE account_sid = ''";
        let done = on_backend!(self, update, |pool, sql| {
            sqlx::query(&sql)
                .bind(account.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }

    /// Forgets the acceptances older than `older_than`; how many.
    pub async fn forget_agents(&self, older_than: Duration) -> Result<u64, StoreError> {
        let delete = "DELETE FROM known_agents WHERE accepted_at < $1";
        let before = self.now_ms().saturating_sub(millis(older_than));
        let done = on_backend!(self, delete, |pool, sql| {
            sqlx::query(&sql)
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done)
    }
}

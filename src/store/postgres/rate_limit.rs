//! The Interactions API budget every instance shares: one row per account holds its next
//! free send slot, handed out in order by one atomic statement.

use sqlx::Row;

use super::{PostgresStore, NOW_MS};
use crate::store::StoreError;

impl PostgresStore {
    /// Reserves the account's next send slot, `interval_ms` after the previous one, in one
    /// atomic statement shared by every instance: slots are handed out in order, so no
    /// waiter starves. A slot more than `max_wait_ms` away is not taken (it would pile up
    /// reservations nobody uses). Returns whether it was taken, and the wait in milliseconds.
    pub async fn reserve_slot(
        &self,
        account: &str,
        interval_ms: i64,
        max_wait_ms: i64,
    ) -> Result<(bool, i64), StoreError> {
        let reserved = sqlx::query(&format!(
            "INSERT INTO rate_limits AS r (account_sid, next_slot_ms) \
             VALUES ($1, {NOW_MS} + $2) \
             ON CONFLICT (account_sid) DO UPDATE \
             SET next_slot_ms = GREATEST(r.next_slot_ms, {NOW_MS}) + $2 \
             WHERE GREATEST(r.next_slot_ms, {NOW_MS}) - {NOW_MS} <= $3 \
             RETURNING next_slot_ms - $2 - {NOW_MS}"
        ))
        .bind(account)
        .bind(interval_ms)
        .bind(max_wait_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = reserved {
            return Ok((true, row.try_get::<i64, _>(0)?.max(0)));
        }
        let row = sqlx::query(&format!(
            "SELECT next_slot_ms - {NOW_MS} FROM rate_limits WHERE account_sid = $1"
        ))
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok((false, row.try_get::<i64, _>(0)?.max(0)))
    }
}

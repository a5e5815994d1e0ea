//! The Interactions API budget every instance shares: one row per account holds its next
//! free send slot, handed out in order by one atomic statement.

use std::time::Duration;

use sqlx::Row;

use super::{now, PostgresStore};
use crate::clock::{from_millis, millis};
use crate::store::{Slot, StoreError};

impl PostgresStore {
    /// Reserves the account's next send slot, `interval` after the previous one, in one
    /// atomic statement shared by every instance: slots are handed out in order, so no
    /// waiter starves. A slot more than `max_wait` away is not taken (it would pile up
    /// reservations nobody uses).
    pub(super) async fn reserve_shared_slot(
        &self,
        account: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Slot, StoreError> {
        let now4 = now(4);
        let reserved = sqlx::query(&format!(
            "INSERT INTO rate_limits AS r (account_sid, next_slot_ms) \
             VALUES ($1, {now4} + $2) \
             ON CONFLICT (account_sid) DO UPDATE \
             SET next_slot_ms = GREATEST(r.next_slot_ms, {now4}) + $2 \
             WHERE GREATEST(r.next_slot_ms, {now4}) - {now4} <= $3 \
             RETURNING next_slot_ms - $2 - {now4}"
        ))
        .bind(account)
        .bind(millis(interval))
        .bind(millis(max_wait))
        .bind(self.offset())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = reserved {
            return Ok(Slot::Reserved(from_millis(row.try_get::<i64, _>(0)?)));
        }
        let row = sqlx::query(&format!(
            "SELECT next_slot_ms - {} FROM rate_limits WHERE account_sid = $1",
            now(2)
        ))
        .bind(account)
        .bind(self.offset())
        .fetch_one(&self.pool)
        .await?;
        Ok(Slot::Full(from_millis(row.try_get::<i64, _>(0)?)))
    }
}

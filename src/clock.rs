//! The time flexhook's jobs are timed by: the system clock, plus an offset that only a
//! test moves. The store owns one (chosen in `StoreOptions` when it is opened), so leases,
//! due times and ages can be moved forward without sleeping; PostgreSQL adds the same
//! offset to the database's own clock, which its instances share.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, and how far a test has moved them.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock, which nothing can move. Shared by the clones, so a test
    /// that advances its handle moves the store's clock too.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock, as production runs.
    pub fn system() -> Self {
        Self { offset: None }
    }

    /// The system clock, which [`Clock::advance`] moves forward: for tests.
    pub fn manual() -> Self {
        Self {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves this clock, and every clone of it, `by` into the future.
    ///
    /// # Panics
    /// On [`Clock::system`]: production time is not for moving.
    pub fn advance(&self, by: Duration) {
        let offset = self
            .offset
            .as_ref()
            .expect("only a Clock::manual() can be advanced");
        offset.fetch_add(millis(by), Ordering::SeqCst);
    }

    /// How far this clock is ahead of the system's, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset
            .as_ref()
            .map_or(0, |offset| offset.load(Ordering::SeqCst))
    }

    /// Milliseconds since the Unix epoch, by this clock.
    pub fn now_ms(&self) -> i64 {
        system_ms().saturating_add(self.offset_ms())
    }
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds as a duration; a time already past (negative) is no wait at all.
pub fn from_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_with_its_clones_and_the_system_clock_does_not_move() {
        let clock = Clock::manual();
        let store_side = clock.clone();
        let before = store_side.now_ms();
        clock.advance(Duration::from_secs(60));
        assert_eq!(store_side.offset_ms(), 60_000);
        assert!(store_side.now_ms() - before >= 60_000);
        assert_eq!(Clock::system().offset_ms(), 0);
        assert!(
            std::panic::catch_unwind(|| Clock::system().advance(Duration::from_secs(1))).is_err()
        );
    }
}

//! The outbound pace of `POST /v1/Interactions`: a token bucket per account
//! (`flex.max_creates_per_second`), with a burst of one, at [`spacing`] so that no
//! one-second window ever holds more than the rate (Twilio allows 20).
//!
//! Waiters queue first-come first-served: the bucket alone does not promise fairness, and
//! a starved job could outlive its lease.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::AccountSid;

/// How far apart creates at `rate` per second go: a millisecond more than `1 / rate` s. At
/// exactly `1 / rate`, `rate + 1` creates fit in a second closed at both ends (the first and
/// the last on its edges); one millisecond more puts the last one past it, and still lets
/// `rate` of them fit. The PostgreSQL slots (`Store::reserve_slot`) use it too.
pub fn spacing(rate: u32) -> Duration {
    Duration::from_secs(1) / rate.max(1) + Duration::from_millis(1)
}

#[derive(Debug)]
pub struct CreateRateLimit {
    limiter: DefaultKeyedRateLimiter<AccountSid>,
    queues: Mutex<HashMap<AccountSid, Arc<tokio::sync::Mutex<()>>>>,
}

impl CreateRateLimit {
    pub fn per_second(rate: u32) -> Self {
        let quota = Quota::with_period(spacing(rate))
            .expect("a spacing is never zero")
            .allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(quota),
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Waits, in arrival order, until this account may create one more interaction.
    pub async fn until_ready(&self, account: &AccountSid) {
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.entry(account.clone()).or_default().clone()
        };
        // tokio's Mutex hands the lock out in FIFO order.
        let _turn = queue.lock().await;
        self.limiter.until_key_ready(account).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;
    use std::time::Instant;

    #[test]
    fn no_second_holds_more_creates_than_the_rate_and_the_rate_still_fits() {
        let second = Duration::from_secs(1);
        for rate in 1..=20 {
            // `rate + 1` creates, `rate` gaps apart: past a second, both edges counted.
            assert!(spacing(rate) * rate > second, "rate {rate}");
            // `rate` creates, `rate - 1` gaps apart: within a second.
            assert!(spacing(rate) * (rate - 1) < second, "rate {rate}");
        }
    }

    /// Polls `waiter` once, so that it takes its place in the queue, then lets it finish on
    /// its own task.
    async fn arrive(
        mut waiter: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let first = std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx))).await;
        first.is_pending().then(|| tokio::spawn(waiter))
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order_at_the_configured_pace() {
        let limit = Arc::new(CreateRateLimit::per_second(20));
        let account = AccountSid::parse("AC00000000000000000000000000000000").unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let (limit, account, order) = (limit.clone(), account.clone(), order.clone());
            // Each waiter arrives (is polled into the queue) before the next: the order is
            // known without spacing arrivals in time. The pace is governor's, on the real
            // clock (not tokio's), so it is measured in real time below.
            tasks.extend(
                arrive(Box::pin(async move {
                    limit.until_ready(&account).await;
                    order.lock().unwrap().push(i);
                }))
                .await,
            );
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
        // Ten permits at 20/s with a burst of one need at least 9 intervals of 51 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(440),
            "{:?}",
            started.elapsed()
        );
    }
}

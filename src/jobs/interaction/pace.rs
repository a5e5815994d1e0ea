//! The outbound pace of the Interactions API (creates and invites): a token bucket per account
//! (`flex.max_creates_per_second`), with a burst of one, at [`spacing`] so that no
//! one-second window ever holds more than the rate (Twilio allows 20). With PostgreSQL the
//! budget is shared by every instance through slots reserved in the database.
//!
//! Waiters queue first-come first-served: the bucket alone does not promise fairness, and
//! a starved job could outlive its lease.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::AccountSid;
use crate::jobs::{Claim, Context};
use crate::store::{ms, ErrorOrigin, Job, JobError, Slot, Transition};

/// Right before a request that may make a task (a create, an invite): marks the attempt
/// write-ahead (from here on a crash leaves the job marked as possibly done, so the next
/// attempt looks first), waits for the account's turn, and checks the lease one last time,
/// so that a lost lease, or a turn that comes too late, sends nothing. `Err(None)`: the
/// lease was lost; `Err(Some(retry))`: nothing was sent, try again then.
pub(in crate::jobs) async fn clear_to_send(
    cx: &Context,
    job: &Job,
    claim: &Claim,
) -> Result<(), Option<Transition>> {
    let lookup_delay = cx.settings.retry.lookup_delay;
    match cx
        .store
        .mark_attempt_started(job.id, &claim.lease, lookup_delay)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(None),
        Err(e) => {
            tracing::warn!(error = %e, "could not mark the attempt; trying later");
            let gone_out = job.create_may_have_gone_out;
            return Err(Some(cx.store_failed(job, &e.to_string(), gone_out)));
        }
    }
    // The permit comes last, right before the send, so that nothing slow between the two
    // can bunch permitted requests together on the wire.
    let waiting = cx.metrics.waiting_for_rate_limit();
    let paced = pace(cx, job, claim.send_by).await;
    drop(waiting);
    paced.map_err(Some)?;
    // A starved process may wake up past its lease even so.
    if Instant::now() > claim.send_by {
        return Err(Some(out_of_lease(job)));
    }
    Ok(())
}

/// Missed rate-limit slots an attempt takes another for before it tries again later.
const MAX_LATE_SLOTS: usize = 5;

/// Nothing was sent: a create started now could outlast the claim's lease, and once the
/// lease ends another claim may look for the task, miss it and create a second one.
pub(super) fn out_of_lease(job: &Job) -> Transition {
    nothing_sent(job, Duration::ZERO, JobError::flexhook(ErrorOrigin::Lease, "nothing sent: the turn to create came too late in the claim's lease (worker.lease_secs) for the request to end within it"))
}

/// A retry of an attempt that sent nothing, due in `retry_in`: the job's flag stays as it
/// was.
fn nothing_sent(job: &Job, retry_in: Duration, error: JobError) -> Transition {
    Transition::Retry {
        retry_in,
        error,
        create_may_have_gone_out: job.create_may_have_gone_out,
        accepted: false,
    }
}

/// Waits for this account's turn to create, at most until `send_by`; past it, nothing is
/// sent and the job is tried again under a new claim. With PostgreSQL the budget is shared
/// by every instance: a slot is reserved in the database and waited for; when the next free
/// slot is further away than half the lease (or than `send_by`), none is taken and the job
/// is tried again closer to it (nothing was sent).
pub(in crate::jobs) async fn pace(
    cx: &Context,
    job: &Job,
    send_by: Instant,
) -> Result<(), Transition> {
    let interval = spacing(cx.settings.max_creates_per_second);
    let max_wait = cx.settings.lease / 2;
    // A slot woken up from late (a starved process) has passed: sending then would bunch
    // with the slots after it. Take a new one, a few times at most.
    for _ in 0..MAX_LATE_SLOTS {
        let left = send_by.saturating_duration_since(Instant::now());
        match cx
            .store
            .reserve_slot(job.account_sid.as_str(), interval, max_wait.min(left))
            .await
        {
            Ok(None) => {
                // Given up in time, a turn is not taken: the next waiter gets it.
                let turn = cx.limiter.until_ready(&job.account_sid);
                return tokio::time::timeout_at(send_by.into(), turn)
                    .await
                    .map_err(|_| out_of_lease(job));
            }
            Ok(Some(Slot::Reserved(wait))) => {
                let due = Instant::now() + wait;
                tokio::time::sleep(wait).await;
                let late = Instant::now().saturating_duration_since(due);
                if late <= interval / 2 {
                    return Ok(());
                }
                tracing::debug!(late_ms = ms(late), "rate-limit slot missed; taking another");
            }
            Ok(Some(Slot::Full(wait))) => {
                let error = JobError::flexhook(
                    ErrorOrigin::Pacing,
                    format!(
                        "the shared rate limit's next slot is {} ms away, past what the lease allows",
                        wait.as_millis()
                    ),
                );
                return Err(nothing_sent(job, wait.saturating_sub(max_wait), error));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reserve a rate-limit slot; trying later");
                return Err(cx.store_failed(job, &e.to_string(), job.create_may_have_gone_out));
            }
        }
    }
    let error = JobError::flexhook(
        ErrorOrigin::Pacing,
        "this process kept waking up too late for its rate-limit slots",
    );
    Err(nothing_sent(job, interval, error))
}

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

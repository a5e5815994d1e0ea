//! The background worker: claims due jobs (with a lease, so a crashed instance's jobs come
//! back), runs each through its kind (`crate::jobs`) in an attempt (`attempt.rs`), and
//! purges finished jobs past their retention.

mod attempt;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::{AccountConfig, ValidSettings};
use crate::jobs::{self, Backoff, Claim, Context, CreateRateLimit, RetryPolicy};
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::store::{ms, Store};
use crate::twilio::TwilioClient;

/// The worker's knobs, from `worker.*`, the account's `[flex]` settings and
/// `store.retention_days`.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub poll_interval: Duration,
    /// `twilio.request_timeout_ms`: how long a create can take, answered or not.
    pub request_timeout: Duration,
    pub retention: Duration,
    /// What the kinds need, the lease among them.
    pub jobs: jobs::Settings,
}

impl WorkerOptions {
    /// `account`'s worker's knobs.
    pub fn from_settings(s: &ValidSettings, account: &AccountConfig) -> Self {
        let w = &s.worker;
        Self {
            concurrency: w.concurrency,
            poll_interval: w.poll_interval,
            request_timeout: account.twilio.request_timeout,
            retention: s.store.retention,
            jobs: jobs::Settings {
                retry: RetryPolicy {
                    backoff: Backoff {
                        base: w.retry_base,
                        cap: w.retry_cap,
                    },
                    max_age: w.max_age,
                    lookup_delay: w.lookup_delay,
                },
                lease: w.lease,
                remove_webhook: account.flex.remove_webhook_after_handoff,
                max_creates_per_second: account.flex.max_creates_per_second,
                lifecycle: s.lifecycle.clone(),
                public_base_url: s.server.public_base_url.clone(),
            },
        }
    }
}

pub(crate) struct Worker {
    /// What the jobs' runs use; its settings are `config.jobs`.
    jobs: Context,
    config: WorkerOptions,
    /// The account SID whose jobs it claims (`None`, dry-run: every job).
    claims_for: Option<String>,
    /// Whether it purges finished jobs (one worker of the process does).
    purges: bool,
    /// Distinguishes this process's leases from another instance's.
    owner: String,
    claims: AtomicU64,
}

/// Controls the running workers, one per account.
#[derive(Debug)]
pub struct WorkerHandle {
    cancel: CancellationToken,
    joins: Vec<JoinHandle<JoinSet<()>>>,
    running: Arc<AtomicBool>,
}

impl WorkerHandle {
    /// Whether every account's loop is still running (for readiness).
    pub fn running(&self) -> Arc<AtomicBool> {
        self.running.clone()
    }

    /// Stops claiming, lets in-flight jobs finish within `grace` (one budget for every
    /// account's), then returns.
    pub async fn stop(self, grace: Duration) {
        self.cancel.cancel();
        let deadline = Instant::now() + grace;
        for join in self.joins {
            match join.await {
                Ok(in_flight) => {
                    drain(
                        in_flight,
                        deadline.saturating_duration_since(Instant::now()),
                    )
                    .await
                }
                Err(e) => tracing::error!(error = %e, "worker task failed"),
            }
        }
    }
}

/// Lets the attempts in flight finish within `grace`; abandons the rest.
async fn drain(mut in_flight: JoinSet<()>, grace: Duration) {
    let pending = in_flight.len();
    if pending > 0 {
        tracing::info!(
            jobs = pending,
            grace_ms = ms(grace),
            "worker stopping: waiting for jobs in flight"
        );
        let drained = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Their leases expire and their intent flag makes the next claim look first.
            tracing::warn!(
                jobs = in_flight.len(),
                "jobs still in flight at shutdown were abandoned"
            );
            in_flight.abort_all();
        }
    }
    tracing::info!("worker stopped");
}

/// One account's worker: what its jobs run with, and whose jobs it claims.
pub struct AccountWorker {
    /// The account's configured name (logs, the `account` label).
    pub name: String,
    /// The account SID whose jobs it claims; `None` (dry-run): every job.
    pub claims_for: Option<String>,
    pub client: TwilioClient,
    pub router: Router,
    pub options: WorkerOptions,
}

/// Starts one worker per account, each with its own claims, concurrency and pace, so that
/// one account's backlog or outage never holds another's jobs. `wake` is notified when new
/// jobs are committed; it wakes every account's worker.
pub fn spawn(
    store: Store,
    accounts: Vec<AccountWorker>,
    wake: Arc<Notify>,
    metrics: Metrics,
) -> WorkerHandle {
    let cancel = CancellationToken::new();
    let running = Arc::new(AtomicBool::new(true));
    let single = accounts.len() == 1;
    let mut wakes = Vec::new();
    let mut joins = Vec::new();
    for (i, account) in accounts.into_iter().enumerate() {
        let own_wake = if single {
            wake.clone()
        } else {
            Arc::new(Notify::new())
        };
        wakes.push(own_wake.clone());
        let worker = Arc::new(Worker {
            jobs: Context {
                limiter: CreateRateLimit::per_second(account.options.jobs.max_creates_per_second),
                settings: account.options.jobs.clone(),
                store: store.clone(),
                client: account.client,
                router: account.router,
                metrics: metrics.clone(),
                account: account.name,
            },
            claims_for: account.claims_for,
            purges: i == 0,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            claims: AtomicU64::new(0),
            config: account.options,
        });
        joins.push(tokio::spawn({
            let cancel = cancel.clone();
            let running = running.clone();
            async move {
                let in_flight = worker.run(own_wake, cancel).await;
                running.store(false, Ordering::SeqCst);
                in_flight
            }
        }));
    }
    if !single {
        // Each worker looks for its own account's jobs when woken.
        tokio::spawn({
            let cancel = cancel.clone();
            async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = wake.notified() => wakes.iter().for_each(|w| w.notify_one()),
                    }
                }
            }
        });
    }
    WorkerHandle {
        cancel,
        joins,
        running,
    }
}

impl Worker {
    /// Claims and starts jobs until cancelled; returns the attempts still in flight.
    async fn run(self: Arc<Self>, wake: Arc<Notify>, cancel: CancellationToken) -> JoinSet<()> {
        tracing::info!(owner = %self.owner, account = %self.jobs.account, dry_run = self.jobs.client.is_dry_run(), "worker started");
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut purge = tokio::time::interval(Duration::from_secs(3600));
        loop {
            while let Some(done) = in_flight.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "job attempt panicked");
                }
            }
            let room = self.config.concurrency.saturating_sub(in_flight.len());
            let lease_len = self.config.jobs.lease;
            if room > 0 {
                // Read before the lease's own clock: the claim ends no earlier than this.
                let claimed = Instant::now();
                // Each claim gets its own lease token: an attempt whose lease was taken over,
                // even by this same process, can then never send or record anything.
                let lease = format!(
                    "{}#{}",
                    self.owner,
                    self.claims.fetch_add(1, Ordering::Relaxed)
                );
                let account = self.claims_for.as_deref();
                match self
                    .jobs
                    .store
                    .claim_due(&lease, lease_len, room, account)
                    .await
                {
                    Ok(jobs) => {
                        let claim = Claim {
                            lease,
                            send_by: claimed
                                + lease_len.saturating_sub(self.config.request_timeout),
                        };
                        for job in jobs {
                            in_flight.spawn(self.clone().attempt(job, claim.clone()));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim jobs"),
                }
            }
            let wait = self.next_wake(in_flight.len()).await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.notified() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "job attempt panicked");
                    }
                }
                () = tokio::time::sleep(wait) => {}
                _ = purge.tick(), if self.purges => self.purge().await,
            }
        }
        in_flight
    }

    /// How long to sleep when nothing wakes the worker: until the next job is due, at most
    /// the poll interval (other instances and the CLI add jobs without telling us).
    async fn next_wake(&self, in_flight: usize) -> Duration {
        let poll = self.config.poll_interval;
        if in_flight >= self.config.concurrency {
            return poll;
        }
        match self
            .jobs
            .store
            .next_due_in(self.claims_for.as_deref())
            .await
        {
            Ok(Some(until)) => until.clamp(Duration::from_millis(20), poll),
            Ok(None) => poll,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next due job");
                poll
            }
        }
    }

    async fn purge(&self) {
        match self.jobs.store.purge_finished(self.config.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "purged finished jobs past store.retention_days"),
            Err(e) => tracing::warn!(error = %e, "could not purge finished jobs"),
        }
        match self.jobs.store.forget_agents(self.config.retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                customers = n,
                "forgot the agents of customers past store.retention_days"
            ),
            Err(e) => tracing::warn!(error = %e, "could not forget old known agents"),
        }
    }
}

//! What flexhook counts, for `GET /metrics` (Prometheus / OpenMetrics text, encoded by
//! `prometheus-client`). One [`Metrics`] per running app, shared by the routes, the worker
//! and the Twilio client; a CLI command gets one nobody reads.
//!
//! Label values are bounded by construction: every label is a `&'static str` chosen from a
//! fixed list (routes, event types, outcomes, job kinds, APIs), an HTTP status, a Twilio
//! error code, or an `account`: a configured account's name, or [`NO_ACCOUNT`]. No SID,
//! address or body ever becomes a label.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::WebhookRoute;
use crate::reconcile::FindingKind;
use crate::store::{JobError, JobKind, StoreStats};

mod labels;

use labels::{
    error_code_label, AccountLabel, ApiCallLabels, ApiLabel, BuildLabels, JobLabels, KindLabel,
    RouteLabel, WebhookLabels,
};
pub use labels::{event_label, EventLabel, WebhookOutcome, NO_ACCOUNT, OTHER_EVENT, UNKNOWN_EVENT};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The webhook routes' `route` labels, from the routes' table.
const ROUTES: [&str; WebhookRoute::ALL.len()] = WebhookRoute::LABELS;

/// Every metric family, registered once.
struct Families {
    webhooks: Family<WebhookLabels, Counter>,
    webhook_duration: Family<RouteLabel, Histogram>,
    jobs: Family<JobLabels, Counter>,
    twilio_requests: Family<ApiCallLabels, Counter>,
    twilio_duration: Family<ApiLabel, Histogram>,
    jobs_pending: Family<KindLabel, Gauge>,
    jobs_dead: Family<KindLabel, Gauge>,
    jobs_dead_last_hour: Family<KindLabel, Gauge>,
    oldest_pending_age: Family<AccountLabel, Gauge<f64, AtomicU64>>,
    rate_limit_waiting: Gauge,
    ready: Gauge,
    reconcile_findings: Family<KindLabel, Counter>,
    reconcile_last_success: Family<AccountLabel, Gauge<f64, AtomicU64>>,
    reconcile_duration: Family<AccountLabel, Histogram>,
}

/// The registry and its families. Cheap to clone: every clone counts into the same ones.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    families: Arc<Families>,
    hot: Arc<Handles>,
    /// The `account` label's values: each configured account's name, then [`NO_ACCOUNT`].
    accounts: Arc<[String]>,
    /// Each configured account's SID, in the same order (`None`: dry-run, every job's).
    sids: Arc<[Option<String>]>,
}

/// Series the webhook path counts into, kept as handles: a series is looked up in its
/// family (a lock, a hash of its labels) once, not for every webhook.
struct Handles {
    /// Indexed by [`webhook_slot`]; each filled on its first webhook.
    webhooks: Box<[OnceLock<Counter>]>,
    /// `webhook_duration` of each account (and [`NO_ACCOUNT`]) and each of [`ROUTES`].
    durations: Box<[Histogram]>,
}

/// Where a webhook's counter sits in [`Handles::webhooks`].
fn webhook_slot(account: usize, route: usize, event: EventLabel, outcome: WebhookOutcome) -> usize {
    ((account * ROUTES.len() + route) * EventLabel::COUNT + usize::from(event.0))
        * WebhookOutcome::ALL.len()
        + outcome as usize
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new("none", &[crate::config::DEFAULT_ACCOUNT])
    }
}

/// Latency buckets in seconds: 0.5 ms to about 16 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    /// A fresh registry; `store` (`sqlite` or `postgres`) goes into `flexhook_build_info`;
    /// `accounts`: the configured accounts' names, the `account` label's values.
    pub fn new(store: &'static str, accounts: &[&str]) -> Self {
        let accounts: Arc<[String]> = accounts
            .iter()
            .map(|a| (*a).to_owned())
            .chain(std::iter::once(NO_ACCOUNT.to_owned()))
            .collect();
        let mut registry = Registry::with_prefix("flexhook");
        let families = Families {
            webhooks: Family::default(),
            webhook_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            jobs: Family::default(),
            twilio_requests: Family::default(),
            twilio_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            jobs_pending: Family::default(),
            jobs_dead: Family::default(),
            jobs_dead_last_hour: Family::default(),
            oldest_pending_age: Family::default(),
            rate_limit_waiting: Gauge::default(),
            ready: Gauge::default(),
            reconcile_findings: Family::default(),
            reconcile_last_success: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.0, 14))
            }),
        };
        registry.register(
            "webhooks",
            "Webhooks answered, by account, route, event type and outcome",
            families.webhooks.clone(),
        );
        registry.register_with_unit(
            "webhook_duration",
            "Time to answer a webhook, from its first byte read to its answer",
            Unit::Seconds,
            families.webhook_duration.clone(),
        );
        registry.register(
            "jobs",
            "Job attempts recorded, by account, kind, outcome (created, adopted, closed, \
             kept_open, sent, set, watching, invited, ignored, conversation_closed, retried, \
             dead) and error code",
            families.jobs.clone(),
        );
        registry.register(
            "twilio_requests",
            "Requests sent to Twilio, by account, API, HTTP status and Twilio error code",
            families.twilio_requests.clone(),
        );
        registry.register_with_unit(
            "twilio_request_duration",
            "Time from sending a request to Twilio to its whole answer, by account and API",
            Unit::Seconds,
            families.twilio_duration.clone(),
        );
        registry.register(
            "jobs_pending",
            "Jobs waiting to be done (including those being attempted), by account and kind, read from the store at scrape time",
            families.jobs_pending.clone(),
        );
        registry.register(
            "jobs_dead",
            "Dead jobs kept in the store (store.retention_days), by account and kind, read at scrape time",
            families.jobs_dead.clone(),
        );
        registry.register(
            "jobs_dead_last_hour",
            "Jobs that went dead in the last hour (their last attempt was then), by account and kind, read at scrape time",
            families.jobs_dead_last_hour.clone(),
        );
        registry.register_with_unit(
            "oldest_pending_job_age",
            "Age of the oldest pending job (0 when none), by account, read from the store at scrape time",
            Unit::Seconds,
            families.oldest_pending_age.clone(),
        );
        registry.register(
            "rate_limit_queue_depth",
            "Interaction creates and invites of this process waiting for their account's rate limit (max_creates_per_second), every account together",
            families.rate_limit_waiting.clone(),
        );
        registry.register(
            "ready",
            "1 when /readyz would answer 200 (the store answers and the worker runs), else 0",
            families.ready.clone(),
        );
        registry.register(
            "reconcile_findings",
            "What reconciliation sweeps found, by account and kind (missed, orphaned, \
             kept_open, stale_webhook, dead); a dead job is counted by every sweep that \
             reports it",
            families.reconcile_findings.clone(),
        );
        registry.register_with_unit(
            "reconcile_last_success_timestamp",
            "When the last successful reconciliation sweep of this process ended, by account, \
             Unix time (0 before the first)",
            Unit::Seconds,
            families.reconcile_last_success.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconciliation sweep took, successful or not, by account",
            Unit::Seconds,
            families.reconcile_duration.clone(),
        );
        registry.register(
            "build",
            "The running version and its store backend",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                store,
            }),
        );
        let hot = Handles {
            webhooks: (0..accounts.len()
                * ROUTES.len()
                * EventLabel::COUNT
                * WebhookOutcome::ALL.len())
                .map(|_| OnceLock::new())
                .collect(),
            durations: accounts
                .iter()
                .flat_map(|account| {
                    ROUTES.map(|route| {
                        families.webhook_duration.get_or_create_owned(&RouteLabel {
                            account: account.clone(),
                            route,
                        })
                    })
                })
                .collect(),
        };
        let metrics = Self {
            registry: Arc::new(registry),
            families: Arc::new(families),
            hot: Arc::new(hot),
            accounts,
            sids: Arc::new([]),
        };
        metrics.zero_alerting_series();
        metrics
    }

    /// Series the alerts and dashboard read exist from the start, at 0, so that `rate()`
    /// and `increase()` see their first increment.
    fn zero_alerting_series(&self) {
        let f = &self.families;
        for account in self.accounts.iter() {
            for route in ROUTES {
                f.webhooks
                    .get_or_create(&WebhookLabels {
                        account: account.clone(),
                        route,
                        event: UNKNOWN_EVENT,
                        outcome: WebhookOutcome::BadSignature.as_str(),
                    })
                    .inc_by(0);
            }
        }
        for account in self.accounts.iter() {
            for kind in FindingKind::ALL {
                f.reconcile_findings
                    .get_or_create(&KindLabel {
                        account: account.clone(),
                        kind: kind.as_str(),
                    })
                    .inc_by(0);
            }
            for kind in JobKind::ALL {
                let label = KindLabel {
                    account: account.clone(),
                    kind: kind.as_str(),
                };
                f.jobs_pending.get_or_create(&label).set(0);
                f.jobs_dead.get_or_create(&label).set(0);
                f.jobs_dead_last_hour.get_or_create(&label).set(0);
            }
            let label = AccountLabel {
                account: account.clone(),
            };
            let _ = f.oldest_pending_age.get_or_create(&label);
            if *account != NO_ACCOUNT {
                // 0 until a sweep succeeds, so that "no sweep for too long" can fire.
                let _ = f.reconcile_last_success.get_or_create(&label);
                let _ = f.reconcile_duration.get_or_create(&label);
            }
        }
    }

    /// Each configured account's SID, in the order of its name (`None`: dry-run, every
    /// job's): the store's gauges count a job under its account's name, and a job of an
    /// account no longer configured under [`NO_ACCOUNT`].
    pub fn with_sids(mut self, sids: Vec<Option<String>>) -> Self {
        self.sids = sids.into();
        self
    }

    /// Whether a job of account `sid` counts under the label value at `index`.
    fn counts_under(&self, index: usize, sid: &str) -> bool {
        let configured = self.accounts.len() - 1;
        let position = if self.sids.len() == 1 && self.sids[0].is_none() {
            Some(0)
        } else {
            self.sids.iter().position(|s| s.as_deref() == Some(sid))
        };
        position.unwrap_or(configured) == index
    }

    /// The `account` label of the account at `index` of the configured ones (`None`, or
    /// past them: [`NO_ACCOUNT`]), and its index among the label's values.
    fn account(&self, index: Option<usize>) -> usize {
        let unknown = self.accounts.len() - 1;
        index.filter(|i| *i < unknown).unwrap_or(unknown)
    }

    /// One webhook answered after `elapsed`; `account`: the index of the configured
    /// account it was checked as (`None`: refused before its account was known).
    pub fn webhook(
        &self,
        account: Option<usize>,
        route: &'static str,
        event: EventLabel,
        outcome: WebhookOutcome,
        elapsed: Duration,
    ) {
        let a = self.account(account);
        let labels = || WebhookLabels {
            account: self.accounts[a].clone(),
            route,
            event: event.as_str(),
            outcome: outcome.as_str(),
        };
        let Some(r) = ROUTES.iter().position(|known| *known == route) else {
            // Not one of the webhook routes: counted all the same, the slow way.
            let f = &self.families;
            f.webhooks.get_or_create(&labels()).inc();
            f.webhook_duration
                .get_or_create(&RouteLabel {
                    account: self.accounts[a].clone(),
                    route,
                })
                .observe(elapsed.as_secs_f64());
            return;
        };
        self.hot.webhooks[webhook_slot(a, r, event, outcome)]
            .get_or_init(|| self.families.webhooks.get_or_create_owned(&labels()))
            .inc();
        self.hot.durations[a * ROUTES.len() + r].observe(elapsed.as_secs_f64());
    }

    /// One job attempt's outcome of `account` (its name), once recorded. `error` for
    /// `retried` and `dead`.
    pub fn job(
        &self,
        account: &str,
        kind: JobKind,
        outcome: &'static str,
        error: Option<&JobError>,
    ) {
        self.families
            .jobs
            .get_or_create(&JobLabels {
                account: account.to_owned(),
                kind: kind.as_str(),
                outcome,
                code: error.map_or_else(String::new, error_code_label),
            })
            .inc();
    }

    /// One request of `account` (its name) to Twilio: its HTTP status (`None`: no answer)
    /// and Twilio's error code.
    pub fn twilio_request(
        &self,
        account: &str,
        api: &'static str,
        status: Option<u16>,
        code: Option<i64>,
        elapsed: Duration,
    ) {
        let f = &self.families;
        f.twilio_requests
            .get_or_create(&ApiCallLabels {
                account: account.to_owned(),
                api,
                status: status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                code: code.map(|c| c.to_string()).unwrap_or_default(),
            })
            .inc();
        f.twilio_duration
            .get_or_create(&ApiLabel {
                account: account.to_owned(),
                api,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// What `account`'s Twilio client reports its requests to.
    pub fn for_account(&self, account: &str) -> AccountRequests {
        AccountRequests {
            metrics: self.clone(),
            account: account.to_owned(),
        }
    }

    /// Counts one create waiting for the rate limit until the guard is dropped.
    pub fn waiting_for_rate_limit(&self) -> RateLimitWait {
        self.families.rate_limit_waiting.inc();
        RateLimitWait(self.families.rate_limit_waiting.clone())
    }

    /// The store's gauges, as of now, by account. When the store cannot be read they keep
    /// their last values (and `flexhook_ready` says why): zeros would look like a healthy
    /// queue.
    pub fn set_store(&self, stats: &StoreStats) {
        let f = &self.families;
        for (index, account) in self.accounts.iter().enumerate() {
            let of = |sid: &str| self.counts_under(index, sid);
            for kind in JobKind::ALL {
                let label = KindLabel {
                    account: account.clone(),
                    kind: kind.as_str(),
                };
                let counts = stats.counts_where(kind, of);
                f.jobs_pending.get_or_create(&label).set(counts.pending);
                f.jobs_dead.get_or_create(&label).set(counts.dead);
                f.jobs_dead_last_hour
                    .get_or_create(&label)
                    .set(counts.dead_last_hour);
            }
            let age = stats.oldest_pending_age_where(of).unwrap_or_default();
            f.oldest_pending_age
                .get_or_create(&AccountLabel {
                    account: account.clone(),
                })
                .set(age.as_secs_f64());
        }
    }

    /// One sweep of `account` (its name) found a finding of `kind` (a
    /// [`FindingKind::as_str`]).
    pub fn reconcile_finding(&self, account: &str, kind: &'static str) {
        self.families
            .reconcile_findings
            .get_or_create(&KindLabel {
                account: account.to_owned(),
                kind,
            })
            .inc();
    }

    /// One sweep of `account` that took `elapsed`; `ended_at` (Unix seconds) when it
    /// succeeded.
    pub fn reconcile_sweep(&self, account: &str, elapsed: Duration, ended_at: Option<f64>) {
        let f = &self.families;
        let label = AccountLabel {
            account: account.to_owned(),
        };
        f.reconcile_duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        if let Some(at) = ended_at {
            f.reconcile_last_success.get_or_create(&label).set(at);
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.families.ready.set(i64::from(ready));
    }

    /// Every family, in OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Decrements `flexhook_rate_limit_queue_depth` when dropped.
#[must_use]
pub struct RateLimitWait(Gauge);

impl Drop for RateLimitWait {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One account's Twilio requests, counted with its `account` label.
pub struct AccountRequests {
    metrics: Metrics,
    account: String,
}

/// The Twilio client reports each request here (it knows nothing of the metrics).
impl crate::twilio::RequestObserver for AccountRequests {
    fn request(
        &self,
        api: crate::twilio::Api,
        status: Option<u16>,
        code: Option<i64>,
        elapsed: Duration,
    ) {
        self.metrics
            .twilio_request(&self.account, api.label(), status, code, elapsed);
    }
}

#[cfg(test)]
mod tests;

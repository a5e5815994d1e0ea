//! Reconciliation: compare what *is* (Twilio's conversations, task events, channels) with
//! what the store says *should be*, and act on the difference, sweep after sweep, so that a
//! webhook or a TaskRouter event that never reached flexhook loses no customer.
//!
//! A sweep, per account, under a lease in the store (one at a time across instances):
//! 1. **missed**: active conversations created since the last sweep (a little before),
//!    that carry flexhook's conversation webhook and have no job, get their interaction
//!    job, with the facts the webhook would have given;
//! 2. **orphaned**: task-ended events since then whose conversation flexhook handed off,
//!    whose channel is still open and which has no close job, get their close job;
//!    **parked**: with task ends watched (`lifecycle.reengage = "flexhook"` or
//!    `lifecycle.close_after`), task ends (`task.completed` included) whose channel an
//!    agent left or parked and whose episode has no watch job get their watch job;
//! 3. **kept_open**: close jobs kept open for a task that is no longer live are re-armed;
//! 4. **stale_webhook**: conversation webhooks whose removal failed are removed;
//! 5. **dead**: dead jobs are reported with the command that retries them.
//!
//! Everything it queues is an ordinary job: the same exactly-once path, rate limit and
//! rules as the webhook's.

mod finding;
mod missed;
mod periodic;
mod tasks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use finding::{summarize, Finding, FindingKind, Sweep};
pub use periodic::{spawn, ReconcileHandle};

use crate::config::{AccountConfig, LifecycleConfig, ReconcileConfig};
use crate::domain::{AccountSid, WebhookRoute, WorkspaceSid};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::twilio::{TwilioClient, TwilioError};

/// How long a sweep may hold the account's lease: past it, another may start.
const LEASE: Duration = Duration::from_secs(15 * 60);
/// How old a conversation must be before its missing job counts as missed: its first
/// webhook may still be on its way. Shorter than [`OVERLAP`], so the next sweep sees it.
const WEBHOOK_GRACE: Duration = Duration::from_secs(2 * 60);
/// How far before the last successful sweep's start the next one looks: a conversation or
/// an event that Twilio lists a little late is still seen.
const OVERLAP: Duration = Duration::from_secs(5 * 60);
/// Jobs of one kind looked at per sweep (kept open, stale webhooks, dead).
const BATCH: usize = 500;
/// A webhook removal the worker has just tried is left to it this long.
const REMOVAL_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("another sweep of this account is running (its lease is in the store)")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Twilio: {0}")]
    Twilio(#[from] TwilioError),
}

/// The account, workspace and URL a sweep compares against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The account's configured name (its logs and metrics carry it).
    pub name: String,
    pub account: AccountSid,
    pub workspace: WorkspaceSid,
    /// `server.public_base_url` + `/webhooks/conversations`: how flexhook's conversation
    /// webhooks are told from Studio's or another system's. `None`: missed first messages
    /// cannot be told, and are not looked for.
    pub webhook_url: Option<String>,
    /// `flex.remove_webhook_after_handoff`.
    pub remove_webhook: bool,
}

impl Target {
    /// A live account's target (`None` in dry-run: there is no account to compare).
    /// `public_base_url`: as resolved at start-up (an ngrok tunnel's, say).
    pub fn of(account: &AccountConfig, public_base_url: Option<&str>) -> Option<Self> {
        Some(Self {
            name: account.name.clone(),
            account: account.twilio.account_sid.clone()?,
            workspace: account.flex.workspace_sid.clone(),
            webhook_url: public_base_url.map(|base| WebhookRoute::Conversations.url(base)),
            remove_webhook: account.flex.remove_webhook_after_handoff,
        })
    }
}

pub struct Reconciler {
    store: Store,
    client: TwilioClient,
    lifecycle: Lifecycle,
    /// Woken when a sweep queues an interaction job.
    wake: Arc<Notify>,
    metrics: Option<Metrics>,
    target: Target,
    config: ReconcileConfig,
    owner: String,
}

impl Reconciler {
    /// `wake`: the worker's, woken when a sweep queues a job; `lifecycle`: `lifecycle.*`,
    /// so that task ends are read as the lifecycle reads them.
    pub fn new(
        store: Store,
        client: TwilioClient,
        wake: Arc<Notify>,
        lifecycle: &LifecycleConfig,
        target: Target,
        config: ReconcileConfig,
    ) -> Self {
        Self {
            lifecycle: Lifecycle::new(store.clone(), lifecycle, wake.clone()),
            store,
            client,
            wake,
            metrics: None,
            target,
            config,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
        }
    }

    /// Counts its sweeps and findings under its account's name.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Its account's configured name.
    pub fn account_name(&self) -> &str {
        &self.target.name
    }

    /// One sweep now. `since`: look back this far instead of to the last sweep;
    /// `dry_run`: find, and do nothing.
    pub async fn sweep(
        &self,
        since: Option<Duration>,
        dry_run: bool,
    ) -> Result<Sweep, ReconcileError> {
        let began = Instant::now();
        let started = self.store.now_ms();
        let account = self.target.account.as_str();
        let Some(last) = self
            .store
            .sweep_begin(account, &self.owner, started, ms(LEASE))
            .await?
        else {
            return Err(ReconcileError::Busy);
        };
        let lookback_from = started - ms(self.config.lookback);
        let from = match (since, last.last_since) {
            (Some(d), _) => started - ms(d),
            (None, Some(previous)) => (previous - ms(OVERLAP)).max(lookback_from),
            (None, None) => lookback_from,
        };
        let swept = self.sweep_from(from, dry_run).await;
        let ended = self.store.now_ms();
        let recorded = match &swept {
            Ok(sweep) => {
                let findings = serde_json::to_string(&sweep.findings).unwrap_or_default();
                // A dry run changes nothing, where the next sweep looks back from included.
                let anchor = if dry_run {
                    last.last_since
                } else {
                    Some(started)
                };
                self.store
                    .sweep_end(account, &self.owner, ended, Ok((anchor, &findings)))
                    .await
            }
            Err(e) => {
                self.store
                    .sweep_end(account, &self.owner, ended, Err(&e.to_string()))
                    .await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record the sweep; its lease runs out on its own");
        }
        if let Some(metrics) = &self.metrics {
            let name = &self.target.name;
            metrics.reconcile_sweep(
                name,
                began.elapsed(),
                swept.is_ok().then(|| ended as f64 / 1000.0),
            );
            if let Ok(sweep) = &swept {
                for finding in &sweep.findings {
                    metrics.reconcile_finding(name, finding.kind.as_str());
                }
            }
        }
        swept
    }

    async fn sweep_from(&self, from: i64, dry_run: bool) -> Result<Sweep, ReconcileError> {
        let since = rfc3339(from);
        let mut sweep = Sweep {
            since: from,
            dry_run,
            conversations: 0,
            known: 0,
            findings: Vec::new(),
        };
        self.missed(&since, dry_run, &mut sweep).await?;
        self.task_ends(&since, dry_run, &mut sweep.findings).await?;
        self.kept_open(dry_run, &mut sweep.findings).await?;
        if self.target.remove_webhook {
            self.stale_webhooks(dry_run, &mut sweep.findings).await?;
        }
        self.dead(&mut sweep.findings).await?;
        for finding in &sweep.findings {
            // Dead jobs are reported by every sweep until retried: not a new warning each time.
            if finding.kind == FindingKind::Dead {
                tracing::info!(
                    conversation = %finding.conversation,
                    why = %finding.why,
                    "reconcile: found a dead job"
                );
                continue;
            }
            tracing::warn!(
                kind = %finding.kind,
                conversation = %finding.conversation,
                why = %finding.why,
                action = %finding.action,
                dry_run,
                "reconcile: found"
            );
        }
        Ok(sweep)
    }
}

/// Whether Twilio says the resource is gone (404): the conversation or channel went away
/// between the list and the look.
fn gone(e: &TwilioError) -> bool {
    e.status() == Some(404)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 in UTC, to the second (Twilio's `StartDate`).
fn rfc3339(at_ms: i64) -> String {
    jiff::Timestamp::from_second(at_ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn parse_ms(text: &str) -> Option<i64> {
    let t: jiff::Timestamp = text.trim().parse().ok()?;
    Some(t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_go_out_as_rfc3339_and_come_back() {
        assert_eq!(rfc3339(1_764_928_800_123), "2025-12-05T10:00:00Z");
        assert_eq!(parse_ms("2025-12-05T10:00:00Z"), Some(1_764_928_800_000));
        assert_eq!(parse_ms("not a date"), None);
    }
}

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
//! 3. **kept_open**: close jobs kept open for a task that is no longer live are re-armed;
//! 4. **stale_webhook**: conversation webhooks whose removal failed are removed;
//! 5. **dead**: dead jobs are reported with the command that retries them.
//!
//! Everything it queues is an ordinary job: the same exactly-once path, rate limit and
//! rules as the webhook's.

mod finding;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use finding::{summarize, Finding, FindingKind, Sweep};

use crate::config::{ReconcileConfig, ValidSettings};
use crate::domain::{AccountSid, ChannelType, CustomerAddress, WorkspaceSid};
use crate::event::task::TASK_ENDED_EVENTS;
use crate::lifecycle::{Lifecycle, Outcome};
use crate::metrics::Metrics;
use crate::routing::RoutingInput;
use crate::store::{now_ms, Action, Inserted, Job, JobKind, JobState, NewJob, Store, StoreError};
use crate::twilio::reconcile::{ConversationWebhook, ListedConversation};
use crate::twilio::{TwilioClient, TwilioError};

/// How long a sweep may hold the account's lease: past it, another may start.
const LEASE: Duration = Duration::from_secs(15 * 60);
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
    /// The live account's target (`None` in dry-run: there is no account to compare).
    /// `public_base_url`: as resolved at start-up (an ngrok tunnel's, say).
    pub fn of(settings: &ValidSettings, public_base_url: Option<&str>) -> Option<Self> {
        Some(Self {
            account: settings.twilio.account_sid.clone()?,
            workspace: settings.flex.workspace_sid.clone(),
            webhook_url: public_base_url
                .map(|base| format!("{}/webhooks/conversations", base.trim_end_matches('/'))),
            remove_webhook: settings.flex.remove_webhook_after_handoff,
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
    /// `wake`: the worker's, woken when a sweep queues a job; `adopt_flex_tasks`:
    /// `lifecycle.adopt_flex_tasks`, so that task ends are read as the lifecycle reads them.
    pub fn new(
        store: Store,
        client: TwilioClient,
        wake: Arc<Notify>,
        adopt_flex_tasks: bool,
        target: Target,
        config: ReconcileConfig,
    ) -> Self {
        Self {
            lifecycle: Lifecycle::new(store.clone(), adopt_flex_tasks, wake.clone()),
            store,
            client,
            wake,
            metrics: None,
            target,
            config,
            owner: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One sweep now. `since`: look back this far instead of to the last sweep;
    /// `dry_run`: find, and do nothing.
    pub async fn sweep(
        &self,
        since: Option<Duration>,
        dry_run: bool,
    ) -> Result<Sweep, ReconcileError> {
        let began = Instant::now();
        let started = now_ms();
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
        let ended = now_ms();
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
            metrics.reconcile_sweep(
                began.elapsed(),
                swept.is_ok().then(|| ended as f64 / 1000.0),
            );
            if let Ok(sweep) = &swept {
                for finding in &sweep.findings {
                    metrics.reconcile_finding(finding.kind.as_str());
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
        self.orphaned(&since, dry_run, &mut sweep.findings).await?;
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

    /// Conversations whose first message never reached flexhook.
    async fn missed(
        &self,
        since: &str,
        dry_run: bool,
        sweep: &mut Sweep,
    ) -> Result<(), ReconcileError> {
        let Some(ours) = &self.target.webhook_url else {
            tracing::debug!(
                "server.public_base_url is unknown: missed first messages are not looked for"
            );
            return Ok(());
        };
        let mut pages = self.client.active_conversations_since(since);
        while let Some(listed) = pages.next_page().await? {
            let keys: Vec<String> = listed.iter().map(|c| c.sid.to_string()).collect();
            let known = self.store.known_interactions(&keys).await?;
            sweep.conversations += listed.len();
            sweep.known += known.len();
            for conversation in listed {
                if known.contains(conversation.sid.as_str()) {
                    continue;
                }
                if let Some(finding) = self.missed_one(conversation, ours, dry_run).await? {
                    sweep.findings.push(finding);
                }
            }
        }
        Ok(())
    }

    /// One conversation flexhook does not know: a finding when it carries flexhook's webhook.
    async fn missed_one(
        &self,
        conversation: ListedConversation,
        ours: &str,
        dry_run: bool,
    ) -> Result<Option<Finding>, ReconcileError> {
        let job = match self.missed_job(&conversation, ours).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(None),
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let finding = |action: &str| Finding {
            kind: FindingKind::Missed,
            conversation: conversation.sid.clone(),
            why: "active, with flexhook's webhook, and no job: its first message never arrived"
                .into(),
            action: action.into(),
        };
        if dry_run {
            return Ok(Some(finding("would queue its interaction job")));
        }
        // Insert-if-absent: a webhook that arrives meanwhile makes the same one job.
        if self.store.insert_batch(&[job]).await?.first() == Some(&Inserted::New) {
            self.wake.notify_one();
            return Ok(Some(finding("queued its interaction job")));
        }
        Ok(None)
    }

    /// The job the webhook would have queued, if the conversation carries flexhook's
    /// webhook (`None`: Studio's, another system's, or none).
    async fn missed_job(
        &self,
        conversation: &ListedConversation,
        ours: &str,
    ) -> Result<Option<NewJob>, TwilioError> {
        let service = conversation.chat_service_sid.as_ref();
        let webhooks = self
            .client
            .conversation_webhooks(service, &conversation.sid)
            .await?;
        let Some(webhook) = webhooks.iter().find(|w| is_ours(w, ours)) else {
            return Ok(None);
        };
        let binding = self
            .client
            .customer_binding(service, &conversation.sid)
            .await?;
        let first = match &binding {
            Some(b) => {
                self.client
                    .first_message_by(service, &conversation.sid, &b.address)
                    .await?
            }
            None => None,
        };
        let customer = binding
            .as_ref()
            .map(|b| CustomerAddress::new(b.address.clone()));
        let proxy_address = binding.as_ref().and_then(|b| b.proxy_address.clone());
        // Schedules are judged at the first customer message, as the webhook would have.
        let at_ms = first
            .as_ref()
            .and_then(|m| m.date_created.as_deref())
            .or(conversation.date_created.as_deref())
            .and_then(parse_ms);
        let routing = RoutingInput {
            channel_type: customer
                .as_ref()
                .map_or(ChannelType::Web, CustomerAddress::channel_type),
            customer_address: customer,
            address: webhook
                .url
                .as_deref()
                .and_then(address_parameter)
                .or_else(|| proxy_address.clone()),
            proxy_address,
            source: None,
            attributes: None,
            at_ms: Some(at_ms.unwrap_or_else(now_ms)),
            body: None,
        };
        Ok(Some(NewJob {
            conversation_sid: conversation.sid.clone(),
            account_sid: self.target.account.clone(),
            chat_service_sid: conversation.chat_service_sid.clone(),
            webhook_sid: Some(webhook.sid.clone()),
            first_message_sid: first.and_then(|m| m.sid),
            action: Action::CreateInteraction(routing),
            received_at: now_ms(),
        }))
    }

    /// Tasks that ended with nobody on them whose event never reached flexhook.
    async fn orphaned(
        &self,
        since: &str,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        for event_type in TASK_ENDED_EVENTS {
            let events = self
                .client
                .task_events_since(&self.target.workspace, event_type, since)
                .await?;
            for event in events {
                if event.account_sid != self.target.account
                    || event.workspace_sid != self.target.workspace
                {
                    continue;
                }
                let Ok(target) = self.lifecycle.resolve(&event).await? else {
                    continue;
                };
                if self
                    .store
                    .find(JobKind::Close, target.conversation.as_str())
                    .await?
                    .is_some()
                {
                    // Its event arrived (or another task's did): the close job has it.
                    continue;
                }
                let (interaction, channel) = &target.interaction;
                match self
                    .client
                    .interaction_channel_status(interaction, channel)
                    .await
                {
                    // Closed, or left or parked by an agent on purpose: not an orphan.
                    Ok(Some(status)) if status == "closed" || status == "inactive" => continue,
                    Ok(_) => {}
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
                let why = format!(
                    "task {} ended ({}) and its event never arrived; the channel is still open",
                    target.task, event.event_type
                );
                let action = if dry_run {
                    "would queue its close job".to_owned()
                } else {
                    match self.lifecycle.arm(&target, true).await? {
                        Outcome::Queued(_) => {
                            "queued its close job (it looks for live tasks first)".to_owned()
                        }
                        _ => continue,
                    }
                };
                findings.push(Finding {
                    kind: FindingKind::Orphaned,
                    conversation: target.conversation,
                    why,
                    action,
                });
            }
        }
        Ok(())
    }

    /// Close jobs kept open for a task that is no longer live.
    async fn kept_open(
        &self,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        let kept = self
            .store
            .list(Some(JobState::KeptOpen), Some(JobKind::Close), BATCH)
            .await?;
        for job in kept {
            let Action::CloseOrphan(close) = &job.action else {
                continue;
            };
            let live = self
                .client
                .live_tasks_for_conversation(&close.workspace_sid, &job.conversation_sid)
                .await?;
            if !live.is_empty() {
                continue;
            }
            let why = "kept open for a task that is no longer live".to_owned();
            let action = if dry_run {
                "would look at it again".to_owned()
            } else {
                let again = NewJob {
                    conversation_sid: job.conversation_sid.clone(),
                    account_sid: job.account_sid.clone(),
                    chat_service_sid: job.chat_service_sid.clone(),
                    webhook_sid: None,
                    first_message_sid: None,
                    action: job.action.clone(),
                    received_at: now_ms(),
                };
                let interaction = Some((&close.interaction_sid, &close.channel_sid));
                self.store
                    .arm_close(&again, Some(&close.task_sid), interaction, false)
                    .await?;
                self.wake.notify_one();
                "re-armed its close job".to_owned()
            };
            findings.push(Finding {
                kind: FindingKind::KeptOpen,
                conversation: job.conversation_sid,
                why,
                action,
            });
        }
        Ok(())
    }

    /// Conversation webhooks whose removal after the hand-off failed.
    async fn stale_webhooks(
        &self,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        let stale = self
            .store
            .stale_webhooks(now_ms() - ms(REMOVAL_GRACE), BATCH)
            .await?;
        for job in stale {
            let Some(webhook) = &job.webhook_sid else {
                continue;
            };
            let why = format!("webhook {webhook} survived the hand-off");
            let action = if dry_run {
                "would remove it".to_owned()
            } else {
                match self
                    .client
                    .delete_conversation_webhook(
                        job.chat_service_sid.as_ref(),
                        &job.conversation_sid,
                        webhook,
                    )
                    .await
                {
                    Ok(_) => {
                        self.store.mark_webhook_removed(job.id).await?;
                        "removed it".to_owned()
                    }
                    Err(e) => format!("could not remove it: {e}"),
                }
            };
            findings.push(Finding {
                kind: FindingKind::StaleWebhook,
                conversation: job.conversation_sid,
                why,
                action,
            });
        }
        Ok(())
    }

    /// Dead jobs, with Twilio's error and the command that retries them.
    async fn dead(&self, findings: &mut Vec<Finding>) -> Result<(), ReconcileError> {
        for job in self.store.list(Some(JobState::Dead), None, BATCH).await? {
            findings.push(dead_finding(job));
        }
        Ok(())
    }
}

fn dead_finding(job: Job) -> Finding {
    let error = job
        .last_error
        .as_ref()
        .map_or_else(|| "no error recorded".to_owned(), |e| e.message.clone());
    Finding {
        kind: FindingKind::Dead,
        why: format!("{} job is dead: {error}", job.kind),
        action: format!(
            "retry it with `flexhook jobs retry {}`",
            job.conversation_sid
        ),
        conversation: job.conversation_sid,
    }
}

/// Whether `webhook` is flexhook's: a plain webhook whose URL is `ours`, with any query.
fn is_ours(webhook: &ConversationWebhook, ours: &str) -> bool {
    webhook.target == "webhook"
        && webhook.url.as_deref().is_some_and(|url| {
            url.strip_prefix(ours)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
        })
}

/// `?address=` of flexhook's webhook URL, read as the route reads it (a raw `+` is a `+`).
fn address_parameter(url: &str) -> Option<String> {
    crate::routes::address_param(url.split_once('?')?.1)
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

/// Controls the periodic sweep.
#[derive(Debug)]
pub struct ReconcileHandle {
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

impl ReconcileHandle {
    /// Stops sweeping; a sweep under way is abandoned (its lease runs out).
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

/// Sweeps at start-up, then every `interval`.
pub fn spawn(reconciler: Reconciler, interval: Duration) -> ReconcileHandle {
    let cancel = CancellationToken::new();
    let join = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let dry_run = reconciler.config.dry_run;
            loop {
                let swept = tokio::select! {
                    () = cancel.cancelled() => break,
                    swept = reconciler.sweep(None, dry_run) => swept,
                };
                match swept {
                    Ok(sweep) => {
                        tracing::info!(summary = %sweep.summary(), "reconcile: sweep done")
                    }
                    Err(ReconcileError::Busy) => {
                        tracing::debug!("reconcile: another instance is sweeping");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconcile: sweep failed; the next one looks back further")
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    });
    ReconcileHandle { cancel, join }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(target: &str, url: Option<&str>) -> ConversationWebhook {
        ConversationWebhook {
            sid: crate::domain::WebhookSid::parse("WH00000000000000000000000000000001").unwrap(),
            target: target.into(),
            url: url.map(str::to_owned),
        }
    }

    #[test]
    fn only_flexhook_s_own_webhook_is_ours() {
        let ours = "https://flexhook.example.com/webhooks/conversations";
        assert!(is_ours(&webhook("webhook", Some(ours)), ours));
        let with_address = format!("{ours}?address=whatsapp:+15550001111");
        assert!(is_ours(&webhook("webhook", Some(&with_address)), ours));
        assert!(!is_ours(&webhook("studio", None), ours));
        assert!(!is_ours(
            &webhook(
                "webhook",
                Some("https://other.example.com/webhooks/conversations")
            ),
            ours
        ));
        assert!(!is_ours(
            &webhook("webhook", Some(&format!("{ours}-v2"))),
            ours
        ));
    }

    #[test]
    fn the_address_parameter_keeps_a_raw_plus() {
        let url = "https://x/webhooks/conversations?address=whatsapp:+15550001111";
        assert_eq!(
            address_parameter(url).as_deref(),
            Some("whatsapp:+15550001111")
        );
        let escaped = "https://x/webhooks/conversations?a=1&address=whatsapp%3A%2B1555";
        assert_eq!(
            address_parameter(escaped).as_deref(),
            Some("whatsapp:+1555")
        );
        assert_eq!(address_parameter("https://x/webhooks/conversations"), None);
    }

    #[test]
    fn times_go_out_as_rfc3339_and_come_back() {
        assert_eq!(rfc3339(1_764_928_800_123), "2025-12-05T10:00:00Z");
        assert_eq!(parse_ms("2025-12-05T10:00:00Z"), Some(1_764_928_800_000));
        assert_eq!(parse_ms("not a date"), None);
    }
}

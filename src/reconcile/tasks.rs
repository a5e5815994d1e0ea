//! What task ends leave behind: orphans and parked channels whose TaskRouter event never
//! came, conversations kept open for a task that is gone, webhooks that outlived the
//! hand-off, and dead jobs.

use super::{gone, ms, Finding, FindingKind, ReconcileError, Reconciler, BATCH, REMOVAL_GRACE};
use crate::event::task::{TaskEvent, TASK_COMPLETED, TASK_ENDED_EVENTS};
use crate::jobs::webhook::{self, RemovalError};
use crate::jobs::Action;
use crate::lifecycle::Outcome;
use crate::store::{Job, JobKind, JobState};

impl Reconciler {
    /// Task ends whose event never reached flexhook: a task that ended with nobody on it
    /// leaves an orphan to close; with task ends watched, one whose channel an agent left or
    /// parked leaves an episode to watch.
    pub(super) async fn task_ends(
        &self,
        since: &str,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        let watches = self.lifecycle.watches_ends();
        let completed = watches.then_some(TASK_COMPLETED);
        for event_type in TASK_ENDED_EVENTS.into_iter().chain(completed) {
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
                if let Some(finding) = self.task_end(&event, watches, dry_run).await? {
                    findings.push(finding);
                }
            }
        }
        Ok(())
    }

    /// What one task end whose event may never have arrived still needs.
    async fn task_end(
        &self,
        event: &TaskEvent,
        watches: bool,
        dry_run: bool,
    ) -> Result<Option<Finding>, ReconcileError> {
        let Ok(target) = self.lifecycle.resolve(event).await? else {
            return Ok(None);
        };
        // Its event arrived (or another task's did) when the conversation has its close job,
        // and the episode its watch job.
        let unclosed = event.may_orphan()
            && self
                .store
                .find(JobKind::Close, target.conversation.as_str())
                .await?
                .is_none();
        let unwatched = watches && !self.lifecycle.watched(&target, event).await?;
        if !unclosed && !unwatched {
            return Ok(None);
        }
        let (interaction, channel) = &target.interaction;
        let status = match self
            .client
            .interaction_channel_status(interaction, channel)
            .await
        {
            Ok(status) => status,
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (kind, why, action) = match status.as_deref() {
            Some("closed") => return Ok(None),
            // Left or parked by an agent on purpose: not an orphan, but an episode to watch.
            Some("inactive") if unwatched => {
                let action = if dry_run {
                    "would queue its watch job"
                } else if self.lifecycle.watch(&target, event).await? {
                    "queued its watch job, which looks after the parked channel"
                } else {
                    // Its event arrived meanwhile: the watch job is the event's.
                    return Ok(None);
                };
                let why = "its event never arrived; an agent left or parked the channel";
                (FindingKind::Parked, why, action.to_owned())
            }
            Some("inactive") => return Ok(None),
            _ if unclosed => {
                let action = if dry_run {
                    "would queue its close job".to_owned()
                } else {
                    match self.lifecycle.arm(&target, true).await? {
                        Outcome::Queued(_) => {
                            "queued its close job (it looks for live tasks first)".to_owned()
                        }
                        _ => return Ok(None),
                    }
                };
                let why = "its event never arrived; the channel is still open";
                (FindingKind::Orphaned, why, action)
            }
            _ => return Ok(None),
        };
        Ok(Some(Finding {
            kind,
            conversation: target.conversation,
            why: format!(
                "task {} ended ({}) and {why}",
                target.task, event.event_type
            ),
            action,
        }))
    }

    /// Close jobs kept open for a task that is no longer live.
    pub(super) async fn kept_open(
        &self,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        let kept = self
            .store
            .list(
                Some(JobState::KeptOpen),
                Some(JobKind::Close),
                Some(self.target.account.as_str()),
                BATCH,
            )
            .await?;
        for job in kept {
            let Ok(Action::CloseOrphan(close)) = Action::of(&job) else {
                continue;
            };
            let live = self
                .client
                .live_tasks_for_conversation(&close.workspace_sid, &job.conversation_sid)
                .await?;
            if !live.is_empty() {
                continue;
            }
            // Left or parked by an agent: kept open on purpose, not for a task.
            match self
                .client
                .interaction_channel_status(&close.interaction_sid, &close.channel_sid)
                .await
            {
                Ok(Some(status)) if status == "inactive" => continue,
                Ok(_) => {}
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
            let why = "kept open for a task that is no longer live".to_owned();
            let action = if dry_run {
                "would look at it again".to_owned()
            } else {
                let again = Action::CloseOrphan(close.clone()).job(
                    &job.conversation_sid,
                    &job.account_sid,
                    job.chat_service_sid.as_ref(),
                    self.store.now_ms(),
                );
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
    pub(super) async fn stale_webhooks(
        &self,
        dry_run: bool,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ReconcileError> {
        let stale = self
            .store
            .stale_webhooks(
                self.target.account.as_str(),
                self.store.now_ms() - ms(REMOVAL_GRACE),
                BATCH,
            )
            .await?;
        for job in stale {
            let Some(sid) = &job.webhook_sid else {
                continue;
            };
            let why = format!("webhook {sid} survived the hand-off");
            let action = if dry_run {
                "would remove it".to_owned()
            } else {
                match webhook::remove(&self.client, &self.store, &job).await {
                    Ok(_) => "removed it".to_owned(),
                    Err(RemovalError::Twilio(e)) => format!("could not remove it: {e}"),
                    Err(RemovalError::Record(e)) => return Err(e.into()),
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
    pub(super) async fn dead(&self, findings: &mut Vec<Finding>) -> Result<(), ReconcileError> {
        let account = Some(self.target.account.as_str());
        for job in self
            .store
            .list(Some(JobState::Dead), None, account, BATCH)
            .await?
        {
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

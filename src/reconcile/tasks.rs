//! What task ends leave behind: orphans whose TaskRouter event never came, conversations
//! kept open for a task that is gone, webhooks that outlived the hand-off, and dead jobs.

use super::{gone, ms, Finding, FindingKind, ReconcileError, Reconciler, BATCH, REMOVAL_GRACE};
use crate::event::task::TASK_ENDED_EVENTS;
use crate::jobs::webhook::{self, RemovalError};
use crate::jobs::Action;
use crate::lifecycle::Outcome;
use crate::store::{Job, JobKind, JobState};

impl Reconciler {
    /// Tasks that ended with nobody on them whose event never reached flexhook.
    pub(super) async fn orphaned(
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

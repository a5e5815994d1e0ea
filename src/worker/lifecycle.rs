//! The lifecycle's jobs. `timers`: set the conversation's close timers after the hand-off.
//! `close`: a task ended with nobody on it; unless another task of the conversation is
//! still live, tell the customer (at most once) and close the interaction channel.
//! `reply`: a routing rule's message to the customer, at most once.

use super::Worker;
use crate::config::iso8601;
use crate::store::{
    now_ms, Action, CloseInput, Job, JobState, NewJob, ReplyInput, TimersInput, Transition,
};
use crate::twilio::TwilioError;

impl Worker {
    /// The conversation's timers job, when `lifecycle.*_after` are set: part of the hand-off.
    pub(super) fn timers_job(&self, job: &Job) -> Option<NewJob> {
        let lifecycle = &self.config.lifecycle;
        lifecycle.sets_timers().then(|| NewJob {
            conversation_sid: job.conversation_sid.clone(),
            account_sid: job.account_sid.clone(),
            chat_service_sid: job.chat_service_sid.clone(),
            webhook_sid: None,
            first_message_sid: None,
            action: Action::SetTimers(TimersInput {
                closed: lifecycle.close_after.map(iso8601),
                inactive: lifecycle.inactive_after.map(iso8601),
            }),
            received_at: now_ms(),
        })
    }

    /// A routing rule's reply to this job's conversation, as a job of its own.
    pub(super) fn reply_job(&self, job: &Job, rule: &str, text: &str) -> NewJob {
        NewJob {
            conversation_sid: job.conversation_sid.clone(),
            account_sid: job.account_sid.clone(),
            chat_service_sid: job.chat_service_sid.clone(),
            webhook_sid: None,
            first_message_sid: None,
            action: Action::Reply(ReplyInput {
                rule: rule.to_owned(),
                text: text.to_owned(),
            }),
            received_at: now_ms(),
        }
    }

    /// Posts a rule's reply, at most once: the message is marked before it is sent, and a
    /// job so marked is never sent again.
    pub(super) async fn send_reply(
        &self,
        job: &Job,
        reply: &ReplyInput,
        lease: &str,
    ) -> Option<Transition> {
        if job.message_sent {
            return Some(Transition::Finished {
                state: JobState::Sent,
                outcome: format!(
                    "rule `{}`'s reply: an earlier attempt may have sent it, so it was not sent again",
                    reply.rule
                ),
            });
        }
        if let Err(stop) = self.mark_message(job, lease).await {
            return stop;
        }
        let posted = self
            .client
            .post_conversation_message(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                &self.config.lifecycle.message_author,
                &reply.text,
            )
            .await;
        Some(match posted {
            Ok(()) => Transition::Finished {
                state: JobState::Sent,
                outcome: format!("rule `{}`'s reply sent", reply.rule),
            },
            Err(e) => {
                self.unmark_unless_sent(job, lease, &e).await;
                self.failed(job, &e, false)
            }
        })
    }

    /// Write-ahead before a message is posted. `Err(None)`: the lease was lost, nothing may
    /// be sent; `Err(Some(retry))`: the store failed, nothing was sent.
    async fn mark_message(&self, job: &Job, lease: &str) -> Result<(), Option<Transition>> {
        match self.store.mark_message(job.id, lease, true).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(None),
            Err(e) => {
                tracing::warn!(error = %e, "could not mark the message; trying later");
                Err(Some(self.store_failed(job, &e.to_string(), false)))
            }
        }
    }

    /// Takes the mark back when Twilio surely did not take the message (a refusal, a refused
    /// connection), so that a retry, or `flexhook jobs retry`, really sends it. Kept when it
    /// may have gone out (a 5xx, a timeout, a 2xx it answered unreadably), or when the store
    /// cannot be told: then it is never sent again.
    async fn unmark_unless_sent(&self, job: &Job, lease: &str, e: &TwilioError) {
        if !e.surely_not_processed() {
            return;
        }
        if let Err(err) = self.store.mark_message(job.id, lease, false).await {
            tracing::warn!(error = %err, "could not take back the message's mark; it will not be sent again");
        }
    }

    /// Setting timers twice sets the same values: a retry needs no lookup.
    pub(super) async fn set_timers(&self, job: &Job, timers: &TimersInput) -> Transition {
        let set = self
            .client
            .set_conversation_timers(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                timers.closed.as_deref(),
                timers.inactive.as_deref(),
            )
            .await;
        match set {
            Ok(()) => Transition::Finished {
                state: JobState::Set,
                outcome: format!(
                    "Timers.Closed={} Timers.Inactive={}",
                    timers.closed.as_deref().unwrap_or("-"),
                    timers.inactive.as_deref().unwrap_or("-")
                ),
            },
            Err(e) => self.failed(job, &e, false),
        }
    }

    /// `None` when the lease was lost before anything was sent. The job's `message_sent`
    /// says the customer's message may have gone out: it is never sent again, across
    /// retries, `kept_open` and re-arms.
    pub(super) async fn close_orphan(
        &self,
        job: &Job,
        close: &CloseInput,
        lease: &str,
    ) -> Option<Transition> {
        let message_sent = job.message_sent;
        // Never cut off an agent: a transfer or a second task may still have the customer.
        match self
            .client
            .live_tasks_for_conversation(&close.workspace_sid, &job.conversation_sid)
            .await
        {
            Ok(tasks) => {
                if let Some(live) = tasks.iter().find(|t| t.task_sid != close.task_sid) {
                    return Some(Transition::Finished {
                        state: JobState::KeptOpen,
                        outcome: format!(
                            "kept open: task {} is {}",
                            live.task_sid, live.assignment_status
                        ),
                    });
                }
            }
            Err(e) => return Some(self.failed(job, &e, false)),
        }

        let mut note = String::new();
        if let (Some(text), false) = (&self.config.lifecycle.orphan_message, message_sent) {
            // Write-ahead: from here on the message counts as sent, whatever happens.
            if let Err(stop) = self.mark_message(job, lease).await {
                return stop;
            }
            let posted = self
                .client
                .post_conversation_message(
                    job.chat_service_sid.as_ref(),
                    &job.conversation_sid,
                    &self.config.lifecycle.message_author,
                    text,
                )
                .await;
            match posted {
                Ok(()) => note.push_str("; the customer was told"),
                // Surely not sent (429, refused connection): it may be sent on the retry.
                Err(e) if e.is_retryable() => {
                    self.unmark_unless_sent(job, lease, &e).await;
                    return Some(self.failed(job, &e, false));
                }
                Err(e) => {
                    self.unmark_unless_sent(job, lease, &e).await;
                    tracing::warn!(code = e.code(), error = %e, "could not tell the customer; closing anyway");
                    note.push_str(&format!("; the message failed: {e}"));
                }
            }
        }
        let why = match &close.reason {
            Some(reason) => format!("{} ({reason})", close.event),
            None => close.event.clone(),
        };
        let closed = self
            .client
            .close_interaction_channel(&close.interaction_sid, &close.channel_sid)
            .await;
        Some(match closed {
            Ok(()) => Transition::Finished {
                state: JobState::Closed,
                outcome: format!("closed after {why}{note}"),
            },
            Err(e @ TwilioError::Api(_)) if !e.is_retryable() => {
                // A channel that is already closed counts as done.
                match self
                    .client
                    .interaction_channel_status(&close.interaction_sid, &close.channel_sid)
                    .await
                {
                    Ok(Some(status)) if status == "closed" => Transition::Finished {
                        state: JobState::Closed,
                        outcome: format!("already closed after {why}{note}"),
                    },
                    _ => self.failed(job, &e, false),
                }
            }
            Err(e) => self.failed(job, &e, false),
        })
    }
}

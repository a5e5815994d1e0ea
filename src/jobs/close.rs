//! The `close` kind: a task ended with nobody on it (`crate::lifecycle` arms the job); unless
//! another task of the conversation is still live, or an agent left or parked the channel
//! (`inactive`), tell the customer (at most once) and close the interaction channel.
//!
//! Already done: `message_sent`, set before the customer's message is posted
//! ([`super::message`]); it stays across retries, `kept_open` and re-arms, so the message is
//! never posted twice. Ends `closed` or `kept_open` (or `conversation_closed`, `dead`); a
//! `kept_open` job is re-armed by the conversation's next task end. No follow-ups.

use serde::{Deserialize, Serialize};

use super::{message, Claim, Context, Kind, Outcome};
use crate::domain::{
    ConversationSid, InteractionChannelSid, InteractionSid, TaskSid, WorkspaceSid,
};
use crate::store::{Job, JobKind, JobState, Transition};
use crate::twilio::TwilioError;

/// What a close job knows of the task that ended and of the interaction to close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInput {
    pub workspace_sid: WorkspaceSid,
    pub task_sid: TaskSid,
    /// The TaskRouter event that ended the task, e.g. `workflow.timeout`.
    pub event: String,
    pub reason: Option<String>,
    pub interaction_sid: InteractionSid,
    pub channel_sid: InteractionChannelSid,
}

pub(crate) struct Close;

impl Kind for Close {
    type Input = CloseInput;
    const KIND: JobKind = JobKind::Close;
    const ENDS: &'static [JobState] = &[
        JobState::Closed,
        JobState::KeptOpen,
        JobState::ConversationClosed,
        JobState::Dead,
    ];

    /// One per conversation, re-armed (not duplicated) when an earlier one kept it open.
    fn key(conversation: &ConversationSid, _: &CloseInput) -> String {
        conversation.to_string()
    }

    async fn run(cx: &Context, job: &Job, close: CloseInput, claim: &Claim) -> Option<Outcome> {
        close_orphan(cx, job, &close, &claim.lease)
            .await
            .map(Into::into)
    }
}

/// `None` when the lease was lost before anything was sent.
async fn close_orphan(
    cx: &Context,
    job: &Job,
    close: &CloseInput,
    lease: &str,
) -> Option<Transition> {
    // Never cut off an agent: a transfer or a second task may still have the customer.
    match cx
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
        Err(e) => return Some(cx.failed(job, &e, false)),
    }

    // Never close what an agent left or parked (`inactive`): the conversation waits for the
    // customer's reply, which Flex (or, with lifecycle.reengage = "flexhook", flexhook)
    // routes. A status that cannot be read for good does not stop an orphan's close.
    match cx
        .client
        .interaction_channel_status(&close.interaction_sid, &close.channel_sid)
        .await
    {
        Ok(Some(status)) if status == "inactive" => {
            return Some(Transition::Finished {
                state: JobState::KeptOpen,
                outcome: format!(
                    "kept open: channel {} is inactive (an agent left or parked it)",
                    close.channel_sid
                ),
            })
        }
        Err(e) if e.is_retryable() => return Some(cx.failed(job, &e, false)),
        _ => {}
    }

    let mut note = String::new();
    if let (Some(text), false) = (&cx.settings.lifecycle.orphan_message, job.message_sent) {
        // Write-ahead: from here on the message counts as sent, whatever happens.
        if let Err(stop) = message::mark(cx, job, lease).await {
            return stop;
        }
        let posted = cx
            .client
            .post_conversation_message(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                &cx.settings.lifecycle.message_author,
                text,
            )
            .await;
        match posted {
            Ok(()) => note.push_str("; the customer was told"),
            // Surely not sent (429, refused connection): it may be sent on the retry.
            Err(e) if e.is_retryable() => {
                message::unmark_unless_sent(cx, job, lease, &e).await;
                return Some(cx.failed(job, &e, false));
            }
            Err(e) => {
                message::unmark_unless_sent(cx, job, lease, &e).await;
                tracing::warn!(code = e.code(), error = %e, "could not tell the customer; closing anyway");
                note.push_str(&format!("; the message failed: {e}"));
            }
        }
    }
    let why = match &close.reason {
        Some(reason) => format!("{} ({reason})", close.event),
        None => close.event.clone(),
    };
    let closed = cx
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
            match cx
                .client
                .interaction_channel_status(&close.interaction_sid, &close.channel_sid)
                .await
            {
                Ok(Some(status)) if status == "closed" => Transition::Finished {
                    state: JobState::Closed,
                    outcome: format!("already closed after {why}{note}"),
                },
                _ => cx.failed(job, &e, false),
            }
        }
        Err(e) => cx.failed(job, &e, false),
    })
}

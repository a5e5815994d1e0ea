//! The `invite` kind (`lifecycle.reengage = "flexhook"`): the customer replied to a
//! conversation whose channel an agent left or parked; unless a task already has them,
//! route the reply by flexhook's rules, as the first message was, and invite a new task to
//! the channel (`POST /v1/Interactions/{KD}/Channels/{UO}/Invites`), with the attributes
//! resent, since Flex does not carry them over, and the agent who knew the customer.
//!
//! Already done: `create_may_have_gone_out`, set write-ahead before the invite is sent; the
//! next attempt finds the task it made among the live tasks and sends nothing. Ends
//! `invited` or `ignored` (or `conversation_closed`, `dead`); once invited, the episode's
//! webhook, which brought the reply, is removed, and the hand-off's timers are set again.

use serde::{Deserialize, Serialize};

use super::interaction::{complete_facts, pace, routing};
use super::webhook::{self, RemovalError};
use super::{ignored, Claim, Context, Kind, Outcome};
use crate::config::iso8601;
use crate::domain::{ConversationSid, TaskSid};
use crate::store::{Job, JobKind, JobState, Transition};
use crate::twilio::InteractionRequest;

/// The episode the reply belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInput {
    /// The task whose end began the episode (the re-attached webhook's `?reengage=`).
    pub task_sid: TaskSid,
}

pub(crate) struct Invite;

impl Kind for Invite {
    type Input = InviteInput;
    const KIND: JobKind = JobKind::Invite;
    const ENDS: &'static [JobState] = &[
        JobState::Invited,
        JobState::Ignored,
        JobState::ConversationClosed,
        JobState::Dead,
    ];

    /// One per episode: every reply of the episode, and every delivery of it, is this job.
    fn key(conversation: &ConversationSid, invite: &InviteInput) -> String {
        format!("{conversation}/{}", invite.task_sid)
    }

    async fn run(cx: &Context, job: &Job, invite: InviteInput, claim: &Claim) -> Option<Outcome> {
        invite_task(cx, job, &invite, claim).await.map(Into::into)
    }

    /// Invited: the episode's webhook has done its work.
    async fn after_record(cx: &Context, job: &Job, transition: &Transition) {
        let invited = matches!(
            transition,
            Transition::Finished {
                state: JobState::Invited,
                ..
            }
        );
        if !invited {
            return;
        }
        let lifecycle = &cx.settings.lifecycle;
        if let Some(close_after) = lifecycle.close_after {
            // The episode is over: the hand-off's timers again, instead of the parked ones.
            if let Err(e) = cx
                .client
                .set_conversation_timers(
                    job.chat_service_sid.as_ref(),
                    &job.conversation_sid,
                    Some(&iso8601(close_after)),
                    lifecycle.inactive_after.map(iso8601).as_deref(),
                )
                .await
            {
                tracing::warn!(error = %e, "could not set the conversation's timers again after the invite");
            }
        }
        match webhook::remove(&cx.client, &cx.store, job).await {
            Ok(_) => {}
            Err(RemovalError::Twilio(e)) => {
                tracing::warn!(error = %e, "could not remove the episode's webhook; later replies are answered as known")
            }
            Err(RemovalError::Record(e)) => {
                tracing::warn!(error = %e, "could not record the episode webhook's removal")
            }
        }
    }
}

/// `None` when the lease was lost before anything was sent.
async fn invite_task(
    cx: &Context,
    job: &Job,
    invite: &InviteInput,
    claim: &Claim,
) -> Option<Transition> {
    let gone_out = job.create_may_have_gone_out;
    let handoff = match cx.store.get(&job.conversation_sid).await {
        Ok(Some(handoff)) => handoff,
        Ok(None) => return Some(ignored("no hand-off of this conversation is known".into())),
        Err(e) => return Some(cx.store_failed(job, &e.to_string(), gone_out)),
    };
    let (Some(interaction), Some(channel), Some(first)) = (
        handoff.interaction_sid.clone(),
        handoff.interaction_channel_sid.clone(),
        routing(&handoff),
    ) else {
        return Some(ignored(
            "the hand-off's interaction and channel are unknown".into(),
        ));
    };
    match cx
        .client
        .interaction_channel_status(&interaction, &channel)
        .await
    {
        Ok(Some(status)) if status == "inactive" => {}
        Ok(status) => {
            return Some(ignored(format!(
                "channel {channel} is {}, not left or parked: Flex has the reply",
                status.as_deref().unwrap_or("of unknown status")
            )))
        }
        Err(e) => return Some(cx.failed(job, &e, gone_out)),
    }
    match cx
        .client
        .live_tasks_for_conversation(cx.router.workspace_sid(), &job.conversation_sid)
        .await
    {
        Ok(tasks) => {
            if let Some(live) = tasks.iter().find(|t| t.task_sid != invite.task_sid) {
                let (state, why) = if gone_out {
                    (JobState::Invited, "an earlier attempt's invite made")
                } else {
                    (JobState::Ignored, "a task has the customer:")
                };
                return Some(Transition::Finished {
                    state,
                    outcome: format!("{why} task {} ({})", live.task_sid, live.assignment_status),
                });
            }
        }
        Err(e) => return Some(cx.failed(job, &e, gone_out)),
    }
    // The first message's facts, with the agent who knew the customer looked up afresh.
    let facts = crate::routing::RoutingInput {
        last_worker: None,
        ..first
    };
    let facts = match complete_facts(cx, job, facts, &claim.lease, false).await {
        Ok(f) => f,
        Err(stop) => return stop,
    };
    let decision = cx
        .router
        .decide(&job.conversation_sid, &facts, cx.store.now_ms());
    if decision.ignore {
        return Some(ignored(format!(
            "rule `{}` creates no task",
            decision.rule.as_deref().unwrap_or_default()
        )));
    }
    let request = InteractionRequest::new(
        &job.conversation_sid,
        facts.channel_type,
        facts.customer_address.as_ref(),
        &decision.route,
    );
    if let Err(stop) = pace::clear_to_send(cx, job, claim).await {
        return stop;
    }
    Some(
        match cx
            .client
            .invite_to_channel(&interaction, &channel, &request)
            .await
        {
            Ok(()) => Transition::Finished {
                state: JobState::Invited,
                outcome: format!(
                    "reply after task {}: invited a task to channel {channel} ({})",
                    invite.task_sid,
                    decision
                        .rule
                        .map_or_else(|| "the default route".to_owned(), |r| format!("rule `{r}`"))
                ),
            },
            Err(e) => cx.failed(job, &e, e.may_have_been_processed()),
        },
    )
}

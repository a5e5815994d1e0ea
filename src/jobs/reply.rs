//! The `reply` kind: post a routing rule's reply to the customer, at most once (a follow-up
//! of the interaction job whose rule asked for it).
//!
//! Already done: `message_sent`, set before the message is posted ([`super::message`]); a
//! job so marked finishes `sent` without posting again. Ends `sent` (or
//! `conversation_closed`, `dead`); no follow-ups.

use serde::{Deserialize, Serialize};

use super::{message, Action, Claim, Context, Kind, Outcome};
use crate::domain::ConversationSid;
use crate::store::{Job, JobKind, JobState, NewJob, Transition};

/// A routing rule's reply to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyInput {
    pub rule: String,
    pub text: String,
}

pub(crate) struct Reply;

impl Kind for Reply {
    type Input = ReplyInput;
    const KIND: JobKind = JobKind::Reply;
    const ENDS: &'static [JobState] =
        &[JobState::Sent, JobState::ConversationClosed, JobState::Dead];

    /// One reply per conversation, whatever the rule or the reason: a conversation a rule
    /// ignored is decided again at each later message, and the customer who writes three
    /// times out of hours is told so once, not three times.
    fn key(conversation: &ConversationSid, _: &ReplyInput) -> String {
        conversation.to_string()
    }

    async fn run(cx: &Context, job: &Job, reply: ReplyInput, claim: &Claim) -> Option<Outcome> {
        let lease = claim.lease.as_str();
        if job.message_sent {
            return Some(
                Transition::Finished {
                    state: JobState::Sent,
                    outcome: format!(
                        "rule `{}`'s reply: an earlier attempt may have sent it, so it was not sent again",
                        reply.rule
                    ),
                }
                .into(),
            );
        }
        if let Err(stop) = message::mark(cx, job, lease).await {
            return stop.map(Into::into);
        }
        let posted = cx
            .client
            .post_conversation_message(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                &cx.settings.lifecycle.message_author,
                &reply.text,
            )
            .await;
        let transition = match posted {
            Ok(()) => Transition::Finished {
                state: JobState::Sent,
                outcome: format!("rule `{}`'s reply sent", reply.rule),
            },
            Err(e) => {
                message::unmark_unless_sent(cx, job, lease, &e).await;
                cx.failed(job, &e, false)
            }
        };
        Some(transition.into())
    }
}

/// A routing rule's reply to `job`'s conversation, as a job of its own.
pub(super) fn after(job: &Job, rule: &str, text: &str, now: i64) -> NewJob {
    Action::Reply(ReplyInput {
        rule: rule.to_owned(),
        text: text.to_owned(),
    })
    .after(job, now)
}

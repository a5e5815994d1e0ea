//! The `timers` kind: set the conversation's `Timers.Closed` / `Timers.Inactive` once it is
//! handed off (a follow-up of its interaction job, when `lifecycle.*_after` are set).
//!
//! Already done: nothing to remember. Setting timers twice sets the same values, so a retry
//! simply sets them again. Ends `set` (or `conversation_closed`, `dead`); no follow-ups.

use serde::{Deserialize, Serialize};

use super::{Action, Claim, Context, Kind, Outcome};
use crate::config::{iso8601, LifecycleConfig};
use crate::domain::ConversationSid;
use crate::store::{Job, JobKind, JobState, NewJob, Transition};

/// The conversation's timers, as ISO 8601 durations (`PT24H`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimersInput {
    pub closed: Option<String>,
    pub inactive: Option<String>,
}

pub(crate) struct Timers;

impl Kind for Timers {
    type Input = TimersInput;
    const KIND: JobKind = JobKind::Timers;
    const ENDS: &'static [JobState] =
        &[JobState::Set, JobState::ConversationClosed, JobState::Dead];

    /// Once per conversation: its hand-off happens once.
    fn key(conversation: &ConversationSid, _: &TimersInput) -> String {
        conversation.to_string()
    }

    async fn run(cx: &Context, job: &Job, timers: TimersInput, _: &Claim) -> Option<Outcome> {
        let set = cx
            .client
            .set_conversation_timers(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                timers.closed.as_deref(),
                timers.inactive.as_deref(),
            )
            .await;
        let transition = match set {
            Ok(()) => Transition::Finished {
                state: JobState::Set,
                outcome: format!(
                    "Timers.Closed={} Timers.Inactive={}",
                    timers.closed.as_deref().unwrap_or("-"),
                    timers.inactive.as_deref().unwrap_or("-")
                ),
            },
            Err(e) => cx.failed(job, &e, false),
        };
        Some(transition.into())
    }
}

/// The timers job that follows `job`'s hand-off, when `lifecycle.*_after` are set.
pub(super) fn after(job: &Job, lifecycle: &LifecycleConfig, now: i64) -> Option<NewJob> {
    let timers = TimersInput {
        closed: lifecycle.close_after.map(iso8601),
        inactive: lifecycle.inactive_after.map(iso8601),
    };
    lifecycle
        .sets_timers()
        .then(|| Action::SetTimers(timers).after(job, now))
}

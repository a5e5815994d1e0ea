//! The `timers` kind: set the conversation's `Timers.Closed` / `Timers.Inactive` once it is
//! handed off (a follow-up of its interaction job, when `lifecycle.*_after` are set).
//!
//! Already done: nothing to remember. Setting timers twice sets the same values, so a retry
//! simply sets them again. Ends `set`, or `ignored` when a later step of the conversation
//! already set its close timer (or `conversation_closed`, `dead`); no follow-ups.
//!
//! Late (Twilio failed for longer than the agent took to leave), it leaves `Timers.Closed`
//! alone once a watch has lifted it to [`super::watch::PARKED_CLOSE`]: the parked value, or
//! the one the next episode's invite set again, knows better than the hand-off's.

use serde::{Deserialize, Serialize};

use super::{ignored, Action, Claim, Context, Kind, Outcome};
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
    const ENDS: &'static [JobState] = &[
        JobState::Set,
        JobState::Ignored,
        JobState::ConversationClosed,
        JobState::Dead,
    ];

    /// Once per conversation: its hand-off happens once.
    fn key(conversation: &ConversationSid, _: &TimersInput) -> String {
        conversation.to_string()
    }

    async fn run(cx: &Context, job: &Job, mut timers: TimersInput, _: &Claim) -> Option<Outcome> {
        match lifted(cx, job).await {
            Ok(false) => {}
            Ok(true) => {
                if timers.inactive.is_none() {
                    return Some(ignored(LEFT_ALONE.to_owned()).into());
                }
                timers.closed = None;
            }
            Err(stop) => return Some(stop.into()),
        }
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
                outcome: match &timers.closed {
                    Some(closed) => format!(
                        "Timers.Closed={closed} Timers.Inactive={}",
                        timers.inactive.as_deref().unwrap_or("-")
                    ),
                    None => format!(
                        "Timers.Inactive={}; {LEFT_ALONE}",
                        timers.inactive.as_deref().unwrap_or("-")
                    ),
                },
            },
            Err(e) => cx.failed(job, &e, false),
        };
        Some(transition.into())
    }
}

/// Why a late timers job leaves `Timers.Closed` as it is.
const LEFT_ALONE: &str =
    "Timers.Closed left alone: a watch lifted it while the customer was parked";

/// Whether a watch of this conversation already lifted its close timer: it ended
/// `watching`, which with `lifecycle.close_after` set means `Timers.Closed` is the parked
/// value, or the next episode's. Asked once the job is late, after a failed attempt: the
/// first one follows the hand-off at once. A store failure is retried.
async fn lifted(cx: &Context, job: &Job) -> Result<bool, Transition> {
    if cx.settings.lifecycle.close_after.is_none() || job.attempts == 0 {
        return Ok(false);
    }
    match cx.store.for_conversation(&job.conversation_sid).await {
        Ok(jobs) => Ok(jobs
            .iter()
            .any(|j| j.kind == JobKind::Watch && j.state == JobState::Watching)),
        Err(e) => Err(cx.store_failed(job, &e.to_string(), false)),
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

//! The `watch` kind (`lifecycle.reengage = "flexhook"`, or `lifecycle.close_after` set): a
//! task of a conversation flexhook handed off ended; if an agent left or parked its channel
//! (`inactive`) and no other task has the customer, lift the hand-off's `Timers.Closed`
//! (to [`PARKED_CLOSE`]), and with "flexhook" give the conversation a webhook again, whose
//! URL names the episode (`?reengage=WT…`, the task that ended), so that the customer's
//! reply reaches flexhook (`crate::intake`) and becomes one `invite` job.
//!
//! Already done: a webhook with the episode's URL, found in the conversation's list before
//! one is added, so a retry after an unclear answer adds no second. Ends `watching` or
//! `ignored` (or `conversation_closed`, `dead`); no follow-ups.

use serde::{Deserialize, Serialize};

use super::{ignored, Claim, Context, Kind, Outcome};
use crate::config::Reengage;
use crate::domain::{
    ConversationSid, InteractionChannelSid, InteractionSid, TaskSid, WebhookRoute, WorkspaceSid,
};
use crate::store::{Job, JobKind, JobState, Transition};

/// The URL query that marks a re-attached webhook's deliveries: the episode's ended task.
pub const EPISODE_PARAM: &str = "reengage";

/// `Timers.Closed` of a conversation an agent left or parked, when `lifecycle.close_after`
/// is set: the 90 days Flex keeps such a conversation open, so that flexhook's own timer
/// never closes it first. The invite of its next episode sets `close_after` again.
pub const PARKED_CLOSE: &str = "P90D";

/// The episode that ended, and the channel an agent may have left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchInput {
    pub workspace_sid: WorkspaceSid,
    /// The task that ended: it names the episode.
    pub task_sid: TaskSid,
    pub interaction_sid: InteractionSid,
    pub channel_sid: InteractionChannelSid,
}

pub(crate) struct Watch;

impl Kind for Watch {
    type Input = WatchInput;
    const KIND: JobKind = JobKind::Watch;
    const ENDS: &'static [JobState] = &[
        JobState::Watching,
        JobState::Ignored,
        JobState::ConversationClosed,
        JobState::Dead,
    ];

    /// One per episode: the conversation and the task that ended.
    fn key(conversation: &ConversationSid, watch: &WatchInput) -> String {
        format!("{conversation}/{}", watch.task_sid)
    }

    async fn run(cx: &Context, job: &Job, watch: WatchInput, _: &Claim) -> Option<Outcome> {
        Some(watch_channel(cx, job, &watch).await.into())
    }
}

/// The webhook URL of an episode: flexhook's conversations route, marked with the task.
pub fn episode_url(base: &str, task: &TaskSid) -> String {
    format!(
        "{}?{EPISODE_PARAM}={task}",
        WebhookRoute::Conversations.url(base)
    )
}

async fn watch_channel(cx: &Context, job: &Job, watch: &WatchInput) -> Transition {
    match cx
        .client
        .interaction_channel_status(&watch.interaction_sid, &watch.channel_sid)
        .await
    {
        Ok(Some(status)) if status == "inactive" => {}
        Ok(status) => {
            return ignored(format!(
                "channel {} is {}, not left or parked: nothing to watch",
                watch.channel_sid,
                status.as_deref().unwrap_or("of unknown status")
            ))
        }
        // Gone, or not Flex's to show: nothing to look after.
        Err(e) if !e.is_retryable() => {
            return ignored(format!(
                "channel {} could not be read: {e}",
                watch.channel_sid
            ))
        }
        Err(e) => return cx.failed(job, &e, false),
    }
    match cx
        .client
        .live_tasks_for_conversation(&watch.workspace_sid, &job.conversation_sid)
        .await
    {
        Ok(tasks) => {
            if let Some(live) = tasks.iter().find(|t| t.task_sid != watch.task_sid) {
                return ignored(format!(
                    "task {} is {}: an agent has the customer",
                    live.task_sid, live.assignment_status
                ));
            }
        }
        Err(e) => return cx.failed(job, &e, false),
    }
    let mut done = vec![format!(
        "channel left or parked after task {}",
        watch.task_sid
    )];
    if cx.settings.lifecycle.close_after.is_some() {
        // The hand-off's Timers.Closed would close the parked conversation once it has
        // been quiet that long: it waits as long as Flex keeps a parked one instead.
        if let Err(e) = cx
            .client
            .set_conversation_timers(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                Some(PARKED_CLOSE),
                None,
            )
            .await
        {
            return cx.failed(job, &e, false);
        }
        done.push(format!("Timers.Closed={PARKED_CLOSE} while parked"));
    }
    if cx.settings.lifecycle.reengage == Reengage::Flexhook {
        match listen(cx, job, watch).await {
            Ok(what) => done.push(what),
            Err(stop) => return stop,
        }
    }
    Transition::Finished {
        state: JobState::Watching,
        outcome: done.join("; "),
    }
}

/// The episode's webhook, found or added: what was done.
async fn listen(cx: &Context, job: &Job, watch: &WatchInput) -> Result<String, Transition> {
    let Some(base) = &cx.settings.public_base_url else {
        return Ok("server.public_base_url is unknown: no webhook to re-attach".into());
    };
    let url = episode_url(base, &watch.task_sid);
    let service = job.chat_service_sid.as_ref();
    let hooks = cx
        .client
        .conversation_webhooks(service, &job.conversation_sid)
        .await
        .map_err(|e| cx.failed(job, &e, false))?;
    if let Some(hook) = hooks.iter().find(|h| h.url.as_deref() == Some(&url)) {
        return Ok(format!(
            "webhook {} already listens for the reply",
            hook.sid
        ));
    }
    match cx
        .client
        .add_conversation_webhook(service, &job.conversation_sid, &url)
        .await
    {
        Ok(sid) => Ok(format!(
            "webhook {} listens for the reply",
            sid.map_or_else(|| "(no SID)".to_owned(), |s| s.to_string())
        )),
        Err(e) => Err(cx.failed(job, &e, e.may_have_been_processed())),
    }
}

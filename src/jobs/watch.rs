//! The `watch` kind (`lifecycle.reengage = "flexhook"`): a task of a conversation flexhook
//! handed off ended; if an agent left or parked its channel (`inactive`) and no other task
//! has the customer, give the conversation a webhook again, whose URL names the episode
//! (`?reengage=WT…`, the task that ended), so that the customer's reply reaches flexhook
//! (`crate::intake`) and becomes one `invite` job.
//!
//! Already done: a webhook with the episode's URL, found in the conversation's list before
//! one is added, so a retry after an unclear answer adds no second. Ends `watching` or
//! `ignored` (or `conversation_closed`, `dead`); no follow-ups.

use serde::{Deserialize, Serialize};

use super::{Claim, Context, Kind, Outcome};
use crate::domain::{
    ConversationSid, InteractionChannelSid, InteractionSid, TaskSid, WebhookRoute, WorkspaceSid,
};
use crate::store::{Job, JobKind, JobState, Transition};

/// The URL query that marks a re-attached webhook's deliveries: the episode's ended task.
pub const EPISODE_PARAM: &str = "reengage";

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

fn ignored(outcome: String) -> Transition {
    Transition::Finished {
        state: JobState::Ignored,
        outcome,
    }
}

async fn watch_channel(cx: &Context, job: &Job, watch: &WatchInput) -> Transition {
    let Some(base) = &cx.settings.public_base_url else {
        return ignored("server.public_base_url is unknown: no webhook to re-attach".into());
    };
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
    let url = episode_url(base, &watch.task_sid);
    let service = job.chat_service_sid.as_ref();
    match cx
        .client
        .conversation_webhooks(service, &job.conversation_sid)
        .await
    {
        Ok(hooks) => {
            if let Some(hook) = hooks.iter().find(|h| h.url.as_deref() == Some(&url)) {
                return Transition::Finished {
                    state: JobState::Watching,
                    outcome: format!("webhook {} already listens for the reply", hook.sid),
                };
            }
        }
        Err(e) => return cx.failed(job, &e, false),
    }
    match cx
        .client
        .add_conversation_webhook(service, &job.conversation_sid, &url)
        .await
    {
        Ok(sid) => Transition::Finished {
            state: JobState::Watching,
            outcome: format!(
                "channel left or parked after task {}: webhook {} listens for the reply",
                watch.task_sid,
                sid.map_or_else(|| "(no SID)".to_owned(), |s| s.to_string())
            ),
        },
        Err(e) => cx.failed(job, &e, e.may_have_been_processed()),
    }
}

//! What a TaskRouter event that ended a task means for its conversation: when the task was
//! flexhook's (its own, or another task of a conversation flexhook handed off, such as a
//! transfer's; with `lifecycle.adopt_flex_tasks`, any Flex interaction's), a durable close
//! job for the conversation, inserted only if absent (or re-armed if an earlier one kept the
//! conversation open). The job itself decides, later,
//! whether anyone still has the customer (`jobs/close.rs`).

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::LifecycleConfig;
use crate::domain::{ConversationSid, InteractionChannelSid, InteractionSid, TaskSid};
use crate::event::task::TaskEvent;
use crate::jobs::{Action, CloseInput, WatchInput};
use crate::store::{Armed, Inserted, JobKind, NewJob, Store, StoreError};

/// What became of a task-ended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A close job is queued for the conversation (new, re-armed after `kept_open`, or told
    /// to look at the live tasks again).
    Queued(ConversationSid),
    /// The conversation already has its close job (a repeated or second event).
    AlreadyQueued(ConversationSid),
    /// Not a task flexhook knows, and adoption is off.
    UnknownTask,
    /// Nothing useful can be done with it; why.
    Unusable(String),
}

/// A task's end, resolved: the conversation it leaves, and the close job it asks for.
#[derive(Debug, Clone)]
pub struct CloseTarget {
    pub conversation: ConversationSid,
    pub task: TaskSid,
    /// The interaction and channel to close.
    pub interaction: (InteractionSid, InteractionChannelSid),
    pub job: NewJob,
}

#[derive(Debug)]
pub struct Lifecycle {
    store: Store,
    adopt_flex_tasks: bool,
    wake: Arc<Notify>,
    /// `lifecycle.reengage = "flexhook"` or `lifecycle.close_after`: every task end also
    /// asks for the episode's watch job, which looks after a channel an agent left or
    /// parked (its timers; with "flexhook", its reply).
    watch_ends: bool,
}

impl Lifecycle {
    /// As `lifecycle.*` says: whether to adopt Flex's tasks, and to watch task ends.
    pub fn new(store: Store, config: &LifecycleConfig, wake: Arc<Notify>) -> Self {
        Self {
            store,
            adopt_flex_tasks: config.adopt_flex_tasks,
            wake,
            watch_ends: config.watches_ends(),
        }
    }

    /// Whether every task end asks for the episode's watch job.
    pub fn watches_ends(&self) -> bool {
        self.watch_ends
    }

    /// Queues the conversation's close job for an event that ended its task: a task that
    /// ended without an agent inserts one; a completed task only re-arms one that it (or
    /// another task) kept open, since an agent had the customer until then.
    pub async fn task_ended(&self, event: &TaskEvent) -> Result<Outcome, StoreError> {
        match self.resolve(event).await? {
            Ok(target) => {
                if self.watch_ends {
                    self.watch(&target, event).await?;
                }
                self.arm(&target, event.may_orphan()).await
            }
            Err(outcome) => Ok(outcome),
        }
    }

    /// Which conversation a task's end is about, and its close job; `Err` with the outcome
    /// when it is none of flexhook's, or nothing can be done with it.
    pub async fn resolve(
        &self,
        event: &TaskEvent,
    ) -> Result<Result<CloseTarget, Outcome>, StoreError> {
        let Some(task) = &event.task_sid else {
            return Ok(Err(Outcome::Unusable("the event names no TaskSid".into())));
        };
        let mut ours = self
            .store
            .for_task(task)
            .await?
            .into_iter()
            .find(|j| j.kind == JobKind::Interaction);
        if ours.is_none() {
            // Another task of a conversation flexhook handed off (a transfer, say): Flex's
            // attributes name the conversation.
            if let Some(conversation) = event
                .flex_attributes()
                .ok()
                .and_then(|a| a.conversation_sid)
            {
                ours = self.store.get(&conversation).await?;
            }
        }
        let (conversation, service, interaction) = match ours {
            Some(job) => {
                // An adopted task may have been stored without its interaction: Flex's
                // attributes then say which it is.
                let attributes = event.flex_attributes().unwrap_or_default();
                let interaction = job
                    .interaction_sid
                    .clone()
                    .or(attributes.interaction_sid)
                    .zip(
                        job.interaction_channel_sid
                            .clone()
                            .or(attributes.channel_sid),
                    );
                (job.conversation_sid, job.chat_service_sid, interaction)
            }
            None if self.adopt_flex_tasks => {
                let attributes = match event.flex_attributes() {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(Outcome::Unusable(e.to_string()))),
                };
                let Some(conversation) = attributes.conversation_sid else {
                    return Ok(Err(Outcome::UnknownTask));
                };
                let interaction = attributes.interaction_sid.zip(attributes.channel_sid);
                (conversation, None, interaction)
            }
            None => return Ok(Err(Outcome::UnknownTask)),
        };
        let Some((interaction_sid, channel_sid)) = interaction else {
            return Ok(Err(Outcome::Unusable(format!(
                "the interaction of conversation {conversation} is unknown: its task carries no flexInteractionSid and flexInteractionChannelSid"
            ))));
        };
        let job = Action::CloseOrphan(CloseInput {
            workspace_sid: event.workspace_sid.clone(),
            task_sid: task.clone(),
            event: event.event_type.clone(),
            reason: event.reason.clone(),
            interaction_sid: interaction_sid.clone(),
            channel_sid: channel_sid.clone(),
        })
        .job(
            &conversation,
            &event.account_sid,
            service.as_ref(),
            self.store.now_ms(),
        );
        Ok(Ok(CloseTarget {
            conversation,
            task: task.clone(),
            interaction: (interaction_sid, channel_sid),
            job,
        }))
    }

    /// The episode's watch job, unless it has one: the task ended, so the channel may be
    /// left or parked. Whether it was new.
    pub async fn watch(&self, target: &CloseTarget, event: &TaskEvent) -> Result<bool, StoreError> {
        let watch = watch_of(target, event).job(
            &target.conversation,
            &event.account_sid,
            target.job.chat_service_sid.as_ref(),
            self.store.now_ms(),
        );
        let new = self.store.insert_batch(&[watch]).await?.first() == Some(&Inserted::New);
        if new {
            self.wake.notify_one();
        }
        Ok(new)
    }

    /// Whether the episode the event ended already has its watch job.
    pub async fn watched(
        &self,
        target: &CloseTarget,
        event: &TaskEvent,
    ) -> Result<bool, StoreError> {
        let key = watch_of(target, event).key(&target.conversation);
        Ok(self.store.find(JobKind::Watch, &key).await?.is_some())
    }

    /// Arms the target's close job (see [`Store::arm_close`]); `insert`: a missing one is
    /// inserted, as for a task that ended without an agent.
    pub async fn arm(&self, target: &CloseTarget, insert: bool) -> Result<Outcome, StoreError> {
        let (interaction, channel) = &target.interaction;
        let armed = self
            .store
            .arm_close(
                &target.job,
                Some(&target.task),
                Some((interaction, channel)),
                insert,
            )
            .await?;
        let conversation = target.conversation.clone();
        Ok(match armed {
            Armed::Queued | Armed::Recheck => {
                self.wake.notify_one();
                Outcome::Queued(conversation)
            }
            Armed::Known => Outcome::AlreadyQueued(conversation),
        })
    }
}

/// What the episode's watch job does: look at the channel of the task that ended.
fn watch_of(target: &CloseTarget, event: &TaskEvent) -> Action {
    let (interaction_sid, channel_sid) = target.interaction.clone();
    Action::Watch(WatchInput {
        workspace_sid: event.workspace_sid.clone(),
        task_sid: target.task.clone(),
        interaction_sid,
        channel_sid,
    })
}

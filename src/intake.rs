//! Deciding what a verified message means for its conversation: already known (answer at
//! once, from memory), or new (a job, committed before Twilio gets its 200).

use std::time::Duration;

use quick_cache::sync::Cache;

use crate::domain::{ConversationSid, TaskSid};
use crate::event::MessageAdded;
use crate::jobs::{Action, InviteInput};
use crate::routing::RoutingInput;
use crate::store::{Inserted, JobState, JobWriter, NewJob, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The conversation already has a job (a later message, or a repeated delivery).
    Known,
    /// This message made the conversation's job.
    NewJob,
}

impl From<Inserted> for Decision {
    fn from(inserted: Inserted) -> Self {
        match inserted {
            Inserted::New => Decision::NewJob,
            Inserted::Known => Decision::Known,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the job was not committed within {0:?}")]
    Timeout(Duration),
}

/// The hot path: a memory of known conversations in front of the store's writer.
pub struct Intake {
    known: Cache<ConversationSid, ()>,
    writer: JobWriter,
    ack_timeout: Duration,
    /// `routing.allow_body`: keep first messages' bodies for `{body}` placeholders.
    allow_body: bool,
    /// Set when a rule may turn a conversation away (`action = "ignore"`): its later
    /// messages must reach the store, which decides again for them, so a conversation is
    /// remembered only once its task exists. Another instance's worker may be the one that
    /// ignores it, so no instance remembers it any sooner.
    remember_only_created: Option<Store>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// `remember_only_created`: the store, when a rule may ignore a conversation.
    pub fn new(
        writer: JobWriter,
        capacity: usize,
        ack_timeout: Duration,
        allow_body: bool,
        remember_only_created: Option<Store>,
    ) -> Self {
        Self {
            known: Cache::new(capacity.max(1)),
            writer,
            ack_timeout,
            allow_body,
            remember_only_created,
        }
    }

    /// Whether the conversation already has a job, as far as memory knows: the hot path.
    pub fn is_known(&self, conversation: &ConversationSid) -> bool {
        self.known.get(conversation).is_some()
    }

    /// Known conversations answer from memory; the rest go through an insert-if-absent,
    /// which is also what makes concurrent first deliveries produce one job. A conversation
    /// a rule ignored is due again (the store re-arms it): this later message is decided at
    /// its own time.
    /// `address`: the webhook URL's `?address=`, the address the customer wrote to.
    pub async fn accept(
        &self,
        message: &MessageAdded,
        address: Option<&str>,
    ) -> Result<Decision, IntakeError> {
        let conversation = &message.conversation_sid;
        if self.is_known(conversation) {
            return Ok(Decision::Known);
        }
        let action = Action::CreateInteraction(RoutingInput::from_event(
            message,
            address,
            self.allow_body,
            self.writer.now_ms(),
        ));
        let job = NewJob {
            webhook_sid: message.webhook_sid.clone(),
            first_message_sid: message.message_sid.clone(),
            ..action.job(
                conversation,
                &message.account_sid,
                message.chat_service_sid.as_ref(),
                self.writer.now_ms(),
            )
        };
        let inserted = self.commit(job).await?;
        if self.remember(conversation, inserted).await {
            self.known.insert(conversation.clone(), ());
        }
        Ok(inserted.into())
    }

    /// A reply that came through an episode's webhook (`?reengage=WT…`): the episode's one
    /// invite job, inserted if absent, committed before the answer. Never remembered: the
    /// episode's webhook goes once the invite is sent.
    pub async fn reply(
        &self,
        message: &MessageAdded,
        episode: &TaskSid,
    ) -> Result<Decision, IntakeError> {
        let action = Action::Invite(InviteInput {
            task_sid: episode.clone(),
        });
        let job = NewJob {
            webhook_sid: message.webhook_sid.clone(),
            first_message_sid: message.message_sid.clone(),
            ..action.job(
                &message.conversation_sid,
                &message.account_sid,
                message.chat_service_sid.as_ref(),
                self.writer.now_ms(),
            )
        };
        Ok(self.commit(job).await?.into())
    }

    /// Inserts `job` if absent, committed within `server.ack_timeout_ms`.
    async fn commit(&self, job: NewJob) -> Result<Inserted, IntakeError> {
        tokio::time::timeout(self.ack_timeout, self.writer.insert(job))
            .await
            .map_err(|_| IntakeError::Timeout(self.ack_timeout))?
            .map_err(IntakeError::from)
    }

    /// Whether a later message of the conversation can be answered from memory from now on.
    async fn remember(&self, conversation: &ConversationSid, inserted: Inserted) -> bool {
        let Some(store) = &self.remember_only_created else {
            return true;
        };
        if inserted == Inserted::New {
            return false;
        }
        let read = tokio::time::timeout(self.ack_timeout, store.get(conversation)).await;
        matches!(read, Ok(Ok(Some(job))) if job.state == JobState::Created)
    }
}

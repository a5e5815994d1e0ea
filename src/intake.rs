//! Deciding what a verified message means for its conversation: already known (answer at
//! once, from memory), or new (a job, committed before Twilio gets its 200).

use std::time::Duration;

use quick_cache::sync::Cache;

use crate::domain::ConversationSid;
use crate::event::MessageAdded;
use crate::routing::RoutingInput;
use crate::store::{now_ms, Action, Inserted, JobWriter, NewJob, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The conversation already has a job (a later message, or a repeated delivery).
    Known,
    /// This message made the conversation's job.
    NewJob,
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
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Intake {
    pub fn new(
        writer: JobWriter,
        capacity: usize,
        ack_timeout: Duration,
        allow_body: bool,
    ) -> Self {
        Self {
            known: Cache::new(capacity.max(1)),
            writer,
            ack_timeout,
            allow_body,
        }
    }

    /// Whether the conversation already has a job, as far as memory knows: the hot path.
    pub fn is_known(&self, conversation: &ConversationSid) -> bool {
        self.known.get(conversation).is_some()
    }

    /// Known conversations answer from memory; the rest go through an insert-if-absent,
    /// which is also what makes concurrent first deliveries produce one job.
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
        let job = NewJob {
            conversation_sid: conversation.clone(),
            account_sid: message.account_sid.clone(),
            chat_service_sid: message.chat_service_sid.clone(),
            webhook_sid: message.webhook_sid.clone(),
            first_message_sid: message.message_sid.clone(),
            action: Action::CreateInteraction(RoutingInput::from_event(
                message,
                address,
                self.allow_body,
                now_ms(),
            )),
            received_at: now_ms(),
        };
        let inserted = tokio::time::timeout(self.ack_timeout, self.writer.insert(job))
            .await
            .map_err(|_| IntakeError::Timeout(self.ack_timeout))??;
        self.known.insert(conversation.clone(), ());
        Ok(match inserted {
            Inserted::New => Decision::NewJob,
            Inserted::Known => Decision::Known,
        })
    }
}

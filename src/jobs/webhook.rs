//! Removing a hand-off's conversation-scoped webhook and recording that it is gone: the
//! interaction job's after-record step, and the reconciler's sweep for a removal that
//! failed, take this one way.

use crate::store::{Job, Store, StoreError};
use crate::twilio::{TwilioClient, TwilioError, WebhookRemoval};

/// Why a webhook's removal is not both done and recorded.
#[derive(Debug, thiserror::Error)]
pub enum RemovalError {
    /// Twilio did not remove it; the store still lists it, so the next sweep tries again.
    #[error(transparent)]
    Twilio(#[from] TwilioError),
    /// Twilio removed it and the store could not record that: the next sweep asks Twilio
    /// again, which answers that it is already gone.
    #[error("removed, but the removal is not recorded: {0}")]
    Record(#[from] StoreError),
}

/// Removes `job`'s conversation webhook and records the removal; `None` when the job
/// names no webhook.
pub async fn remove(
    client: &TwilioClient,
    store: &Store,
    job: &Job,
) -> Result<Option<WebhookRemoval>, RemovalError> {
    let Some(webhook) = job.webhook_sid.as_ref() else {
        return Ok(None);
    };
    let removal = client
        .delete_conversation_webhook(
            job.chat_service_sid.as_ref(),
            &job.conversation_sid,
            webhook,
        )
        .await?;
    store.mark_webhook_removed(job.id).await?;
    Ok(Some(removal))
}

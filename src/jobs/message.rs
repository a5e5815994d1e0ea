//! A message to the customer, posted at most once (by the `reply` and `close` kinds): the
//! job's `message_sent` is set before the message is posted, and a job so marked never
//! posts it again.

use super::Context;
use crate::store::{Job, Transition};
use crate::twilio::TwilioError;

/// Write-ahead before a message is posted. `Err(None)`: the lease was lost, nothing may be
/// sent; `Err(Some(retry))`: the store failed, nothing was sent.
pub(super) async fn mark(cx: &Context, job: &Job, lease: &str) -> Result<(), Option<Transition>> {
    match cx.store.mark_message(job.id, lease, true).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(None),
        Err(e) => {
            tracing::warn!(error = %e, "could not mark the message; trying later");
            Err(Some(cx.store_failed(job, &e.to_string(), false)))
        }
    }
}

/// Takes the mark back when Twilio surely did not take the message (a refusal, a refused
/// connection), so that a retry, or `flexhook jobs retry`, really sends it. Kept when it may
/// have gone out (a 5xx, a timeout, a 2xx it answered unreadably), or when the store cannot
/// be told: then it is never sent again.
pub(super) async fn unmark_unless_sent(cx: &Context, job: &Job, lease: &str, e: &TwilioError) {
    if !e.surely_not_processed() {
        return;
    }
    if let Err(err) = cx.store.mark_message(job.id, lease, false).await {
        tracing::warn!(error = %err, "could not take back the message's mark; it will not be sent again");
    }
}

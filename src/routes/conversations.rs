//! `POST /webhooks/conversations`: verified webhook → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::{web, HttpResponse};
use tracing::Instrument;

use super::error::WebhookError;
use super::state::AppState;
use super::verified::VerifiedWebhook;
use crate::domain::CustomerAddress;
use crate::event::{self, Event};
use crate::intake::{Decision, IntakeError};

pub async fn conversations_webhook(
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let event = event::parse(&webhook.payload).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: malformed payload");
        WebhookError::from(e)
    })?;
    webhook.check_account(event.account_sid())?;

    let message = match event {
        Event::MessageAdded(m) => m,
        Event::Other { event_type, .. } => {
            tracing::debug!(%event_type, "event acknowledged, nothing to do");
            return Ok(HttpResponse::Ok().finish());
        }
    };
    let span = tracing::info_span!(
        "webhook",
        conversation = %message.conversation_sid,
        message_sid = message.message_sid.as_ref().map(|s| s.as_str()),
        retry_count = message.retry_count,
        idempotency_token = webhook.idempotency_token.as_deref(),
    );
    async move {
        match state.intake.accept(&message, webhook.address.as_deref()).await {
            Ok(Decision::NewJob) => {
                tracing::info!(
                    author = message.customer_address().map(CustomerAddress::for_logs),
                    "new conversation: job queued"
                );
                Ok(HttpResponse::Ok().finish())
            }
            Ok(Decision::Known) => Ok(HttpResponse::Ok().finish()),
            Err(e) => {
                match &e {
                    IntakeError::Timeout(_) => {
                        tracing::error!(error = %e, "webhook answered 503: the store is too slow")
                    }
                    IntakeError::Store(s) => {
                        tracing::error!(error = %s, "webhook answered 503: the job could not be stored")
                    }
                }
                Err(WebhookError::Unavailable)
            }
        }
    }
    .instrument(span)
    .await
}

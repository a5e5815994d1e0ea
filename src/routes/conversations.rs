//! `POST /webhooks/conversations`: verified webhook → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::WebhookError;
use super::observed::seen;
use super::state::AppState;
use super::verified::VerifiedWebhook;
use crate::domain::CustomerAddress;
use crate::event::{self, Event};
use crate::intake::{Decision, IntakeError};
use crate::metrics::{event_label, WebhookOutcome};

pub async fn conversations_webhook(
    req: HttpRequest,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let event = event::parse(&webhook.payload).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: malformed payload");
        WebhookError::from(e)
    })?;
    let label = event_label(event.event_type());
    seen(&req, label, None);
    webhook.check_account(event.account_sid())?;

    let message = match event {
        Event::MessageAdded(m) => m,
        Event::Other { event_type, .. } => {
            tracing::debug!(%event_type, "event acknowledged, nothing to do");
            seen(&req, label, Some(WebhookOutcome::Ignored));
            return Ok(HttpResponse::Ok().finish());
        }
    };
    // The `webhook` span (routes::observed) carries the request id; these join it.
    let span = tracing::Span::current();
    span.record("conversation", message.conversation_sid.as_str());
    if let Some(sid) = &message.message_sid {
        span.record("message_sid", sid.as_str());
    }
    span.record("retry_count", message.retry_count);
    match state
        .intake
        .accept(&message, webhook.address.as_deref())
        .await
    {
        Ok(Decision::NewJob) => {
            tracing::info!(
                author = message.customer_address().map(CustomerAddress::for_logs),
                "new conversation: job queued"
            );
            seen(&req, label, Some(WebhookOutcome::Accepted));
            Ok(HttpResponse::Ok().finish())
        }
        Ok(Decision::Known) => {
            seen(&req, label, Some(WebhookOutcome::Known));
            Ok(HttpResponse::Ok().finish())
        }
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

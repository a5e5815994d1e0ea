//! `POST /webhooks/conversations`: verified webhook → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use tracing::Instrument;

use super::error::WebhookError;
use super::observed::{seen, span};
use super::state::AppState;
use super::verified::{check_account, VerifiedWebhook};
use crate::domain::CustomerAddress;
use crate::event::{self, Event, MessageAdded};
use crate::intake::{Decision, IntakeError};
use crate::metrics::{event_label, EventLabel, WebhookOutcome};

pub async fn conversations_webhook(
    req: HttpRequest,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let read = event::read(&webhook.payload).map_err(|e| malformed(&req, e))?;
    let head = read.head();
    let label = event_label(&head.event_type);
    if let Err(refused) = check_account(&req, &state.webhook_auth, &head.account_sid) {
        seen(&req, label, None);
        return Err(refused);
    }
    let ignored = |event_type: &str| {
        span(&req).in_scope(|| tracing::debug!(%event_type, "event acknowledged, nothing to do"));
        seen(&req, label, Some(WebhookOutcome::Ignored));
        Ok(HttpResponse::Ok().finish())
    };
    let Some(conversation) = &head.conversation_sid else {
        return ignored(&head.event_type);
    };
    // A later message of a known conversation (the hot path) is answered from memory here,
    // from its head alone: it logs nothing, so it opens no span.
    if state.intake.is_known(conversation) {
        seen(&req, label, Some(WebhookOutcome::Known));
        return Ok(HttpResponse::new(StatusCode::OK));
    }
    // The event's type, for a refusal below.
    seen(&req, label, None);
    let message = match read.into_event().map_err(|e| malformed(&req, e))? {
        Event::MessageAdded(message) => message,
        Event::Other(head) => return ignored(&head.event_type),
    };
    // The span joins what it logs, and carries what it learns of the message. Boxed so that
    // the handler's future, allocated for every request, stays small.
    let span = span(&req);
    Box::pin(first_message(req, label, message, webhook, state).instrument(span)).await
}

fn malformed(req: &HttpRequest, e: event::EventError) -> WebhookError {
    span(req).in_scope(|| tracing::warn!(error = %e, "webhook refused: malformed payload"));
    WebhookError::from(e)
}

/// A conversation not known from memory: the insert-if-absent.
async fn first_message(
    req: HttpRequest,
    label: EventLabel,
    message: Box<MessageAdded>,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
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

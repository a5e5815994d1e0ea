//! `POST /webhooks/conversations`: verified webhook → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::{web, HttpRequest};
use tracing::Instrument;

use super::error::{Refused, WebhookError};
use super::observed::{span, Answered};
use super::state::AppState;
use super::verified::VerifiedWebhook;
use crate::domain::CustomerAddress;
use crate::event::{self, Event, MessageAdded};
use crate::intake::{Decision, IntakeError};
use crate::metrics::{event_label, EventLabel, WebhookOutcome};

pub async fn conversations_webhook(
    req: HttpRequest,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<Answered, Refused> {
    let read = event::read(&webhook.payload).map_err(|e| malformed(&req, e))?;
    let head = read.head();
    let event = event_label(&head.event_type);
    let ignored = |event_type: &str| {
        span(&req).in_scope(|| tracing::debug!(%event_type, "event acknowledged, nothing to do"));
        Ok(Answered {
            event,
            outcome: WebhookOutcome::Ignored,
        })
    };
    let Some(conversation) = &head.conversation_sid else {
        return ignored(&head.event_type);
    };
    // A later message of a known conversation (the hot path) is answered from memory here,
    // from its head alone: it logs nothing, so it opens no span.
    if state.intake.is_known(conversation) {
        return Ok(Answered {
            event,
            outcome: WebhookOutcome::Known,
        });
    }
    let message = match read
        .into_event()
        .map_err(|e| Refused::new(event, malformed(&req, e)))?
    {
        Event::MessageAdded(message) => message,
        Event::Other(head) => return ignored(&head.event_type),
    };
    // The span joins what it logs, and carries what it learns of the message. Boxed so that
    // the handler's future, allocated for every request, stays small.
    let span = span(&req);
    Box::pin(first_message(event, message, webhook, state).instrument(span)).await
}

fn malformed(req: &HttpRequest, e: event::EventError) -> WebhookError {
    span(req).in_scope(|| tracing::warn!(error = %e, "webhook refused: malformed payload"));
    WebhookError::from(e)
}

/// A conversation not known from memory: the insert-if-absent.
async fn first_message(
    event: EventLabel,
    message: Box<MessageAdded>,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<Answered, Refused> {
    // The `webhook` span (routes::observed) carries the request id; these join it.
    let span = tracing::Span::current();
    span.record("conversation", message.conversation_sid.as_str());
    if let Some(sid) = &message.message_sid {
        span.record("message_sid", sid.as_str());
    }
    span.record("retry_count", message.retry_count);
    let outcome = match state
        .intake
        .accept(&message, webhook.address.as_deref())
        .await
    {
        Ok(Decision::NewJob) => {
            tracing::info!(
                author = message.customer_address().map(CustomerAddress::for_logs),
                "new conversation: job queued"
            );
            WebhookOutcome::Accepted
        }
        Ok(Decision::Known) => WebhookOutcome::Known,
        Err(e) => {
            match &e {
                IntakeError::Timeout(_) => {
                    tracing::error!(error = %e, "webhook answered 503: the store is too slow")
                }
                IntakeError::Store(s) => {
                    tracing::error!(error = %s, "webhook answered 503: the job could not be stored")
                }
            }
            return Err(Refused::new(event, WebhookError::Unavailable));
        }
    };
    Ok(Answered { event, outcome })
}

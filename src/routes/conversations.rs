//! `POST /webhooks/conversations`: verified webhook → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::{web, HttpRequest};
use tracing::Instrument;

use super::error::{Refused, WebhookError};
use super::observed::{span, Answered};
use super::state::AppState;
use super::verified::VerifiedWebhook;
use crate::domain::{CustomerAddress, TaskSid};
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
    // A reply through a webhook flexhook re-attached to a left or parked conversation.
    let episode = match &webhook.episode {
        Some(episode) => Some(
            TaskSid::parse(episode.trim())
                .map_err(|e| Refused::new(event, malformed_episode(&req, &e)))?,
        ),
        // A later message of a known conversation (the hot path) is answered from memory
        // here, from its head alone: it logs nothing, so it opens no span.
        None if state.intake.is_known(conversation) => {
            return Ok(Answered {
                event,
                outcome: WebhookOutcome::Known,
            })
        }
        None => None,
    };
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
    match episode {
        Some(episode) => Box::pin(reply(event, message, episode, state).instrument(span)).await,
        None => Box::pin(first_message(event, message, webhook, state).instrument(span)).await,
    }
}

fn malformed_episode(req: &HttpRequest, e: &crate::domain::SidError) -> WebhookError {
    span(req)
        .in_scope(|| tracing::warn!(error = %e, "webhook refused: ?reengage= is not a task SID"));
    WebhookError::BadEpisode
}

/// A reply to a left or parked conversation: the episode's invite job, once. flexhook's
/// own messages and the API's (`Source` API) are not the customer's reply.
async fn reply(
    event: EventLabel,
    message: Box<MessageAdded>,
    episode: TaskSid,
    state: web::Data<AppState>,
) -> Result<Answered, Refused> {
    let span = tracing::Span::current();
    span.record("conversation", message.conversation_sid.as_str());
    if message
        .source
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("api"))
    {
        tracing::debug!(%episode, "a message sent through the API is not the customer's reply");
        return Ok(Answered {
            event,
            outcome: WebhookOutcome::Ignored,
        });
    }
    let outcome = match state.intake.reply(&message, &episode).await {
        Ok(Decision::NewJob) => {
            tracing::info!(%episode, "reply to a left or parked conversation: invite job queued");
            WebhookOutcome::Accepted
        }
        Ok(Decision::Known) => WebhookOutcome::Known,
        Err(e) => {
            tracing::error!(error = %e, "webhook answered 503: the invite job could not be stored");
            return Err(Refused::new(event, WebhookError::Unavailable));
        }
    };
    Ok(Answered { event, outcome })
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

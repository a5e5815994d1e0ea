//! `POST /webhooks/taskrouter`: the workspace's event callbacks. An event that ended a
//! task flexhook created (or, with adoption, any Flex interaction's task) queues the
//! conversation's close job; a `reservation.accepted` teaches known-agent routing who
//! handled the task's customer; every other event is acknowledged and ignored.

use actix_web::{web, HttpRequest};
use tracing::Instrument;

use super::error::{Refused, WebhookError};
use super::observed::{span, Answered};
use super::state::AppState;
use super::verified::VerifiedWebhook;
use crate::event::task;
use crate::known_agents::Learned;
use crate::lifecycle::Outcome;
use crate::metrics::{event_label, EventLabel, WebhookOutcome};
use crate::store::StoreError;

pub async fn taskrouter_webhook(
    req: HttpRequest,
    webhook: VerifiedWebhook,
    state: web::Data<AppState>,
) -> Result<Answered, Refused> {
    // Every TaskRouter event logs, if only at `debug`: in its request's span from the start.
    let span = span(&req);
    handle(webhook, state).instrument(span).await
}

async fn handle(webhook: VerifiedWebhook, state: web::Data<AppState>) -> Result<Answered, Refused> {
    let event = task::parse(&webhook.payload).map_err(|e| {
        tracing::warn!(error = %e, "TaskRouter event refused: malformed payload");
        WebhookError::from(e)
    })?;
    let label = event_label(&event.event_type);
    let account = &state.webhook_auth.accounts[webhook.account];
    if event.workspace_sid != account.workspace_sid {
        tracing::warn!(workspace = %event.workspace_sid, account = %account.name, "TaskRouter event refused: WorkspaceSid is not the account's workspace_sid");
        return Err(Refused::new(label, WebhookError::WrongWorkspace));
    }
    if event.event_type == task::RESERVATION_ACCEPTED {
        return learn(&state, &event, label).await;
    }
    if !event.ends_task() {
        tracing::debug!(event_type = %event.event_type, "TaskRouter event acknowledged, nothing to do");
        return Ok(Answered {
            event: label,
            outcome: WebhookOutcome::Ignored,
        });
    }
    // The `webhook` span (routes::observed) carries the request id; these join it.
    let span = tracing::Span::current();
    span.record("event_type", event.event_type.as_str());
    if let Some(task) = &event.task_sid {
        span.record("task", task.as_str());
    }
    let handled = stored(
        &state,
        label,
        "the close job",
        state.lifecycle.task_ended(&event),
    )
    .await?;
    let outcome = match handled {
        Outcome::Queued(conversation) => {
            tracing::info!(%conversation, "task ended: the conversation's close job is queued to look at it");
            WebhookOutcome::Accepted
        }
        Outcome::AlreadyQueued(conversation) => {
            tracing::debug!(%conversation, "the conversation's close job exists already");
            WebhookOutcome::Known
        }
        Outcome::UnknownTask => {
            tracing::debug!("not a task of flexhook's: ignored");
            WebhookOutcome::Ignored
        }
        Outcome::Unusable(why) => {
            tracing::warn!(%why, "TaskRouter event acknowledged, but nothing can be done with it");
            WebhookOutcome::Ignored
        }
    };
    Ok(Answered {
        event: label,
        outcome,
    })
}

/// What the store made of `write`, within `server.ack_timeout_ms`; a 503 when it failed
/// (`what` could not be stored) or took too long, so that TaskRouter tries again.
async fn stored<T>(
    state: &AppState,
    label: EventLabel,
    what: &str,
    write: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, Refused> {
    match tokio::time::timeout(state.ack_timeout, write).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "TaskRouter event answered 503: {what} could not be stored");
            Err(Refused::new(label, WebhookError::Unavailable))
        }
        Err(_) => {
            tracing::error!("TaskRouter event answered 503: the store is too slow");
            Err(Refused::new(label, WebhookError::Unavailable))
        }
    }
}

/// An agent accepted a task: known-agent routing remembers them for the task's customer.
async fn learn(
    state: &AppState,
    event: &task::TaskEvent,
    label: EventLabel,
) -> Result<Answered, Refused> {
    let learned = stored(
        state,
        label,
        "the agent",
        state.known_agents.accepted(event),
    )
    .await?;
    let outcome = match learned {
        Learned::Remembered(customer) => {
            tracing::info!(
                customer = %customer.for_logs(),
                worker = event.worker_sid.as_ref().map(|w| w.as_str()),
                "agent remembered for the customer's next tasks (routing.known_agent_within)"
            );
            WebhookOutcome::Accepted
        }
        Learned::Off => {
            tracing::debug!("reservation.accepted ignored: routing.known_agent_within is off");
            WebhookOutcome::Ignored
        }
        Learned::Unusable(why) => {
            tracing::debug!(%why, "reservation.accepted acknowledged; no agent to remember");
            WebhookOutcome::Ignored
        }
    };
    Ok(Answered {
        event: label,
        outcome,
    })
}

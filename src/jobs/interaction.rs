//! The `interaction` kind, the hand-off: complete the routing facts once (the address the
//! customer wrote to, the conversation's attributes, when a rule needs them; the agent who
//! last handled the customer, with known-agent routing on), decide the
//! route, then adopt a task an earlier attempt may have made, else create the conversation's
//! interaction at the rate limit's pace ([`pace`]).
//!
//! Already done: `create_may_have_gone_out` (set write-ahead before the create is sent, and
//! after an answer that leaves it open) makes the next attempt look for the task first;
//! `create_accepted` (Flex took the create) means it is never sent again. Ends `created` or
//! `ignored` (or `conversation_closed`, `dead`). Follow-ups, recorded with the outcome: the
//! rule's reply and, once created, the conversation's timers; after the record, the
//! conversation-scoped webhook is removed.

pub(crate) mod pace;

use super::webhook::{self, RemovalError};
use super::{reply, timers, Action, Claim, Context, Kind, Outcome};
use crate::domain::ConversationSid;
use crate::routing::{Decision, LastWorker, RoutingInput};
use crate::store::{Job, JobError, JobKind, JobState, NewJob, Transition};
use crate::twilio::{CreatedInteraction, InteractionRequest, TwilioError};

/// An interaction Flex accepted whose SIDs are unknown.
const CREATED_UNKNOWN: Transition = Transition::Created {
    interaction_sid: None,
    interaction_channel_sid: None,
    task_sid: None,
};

/// Twilio's warning 45353: a duplicate channel create was dropped, so the interaction exists.
const DUPLICATE_DROPPED: i64 = 45353;

/// The routing input of an interaction job.
pub fn routing(job: &Job) -> Option<RoutingInput> {
    match Action::of(job) {
        Ok(Action::CreateInteraction(routing)) => Some(routing),
        _ => None,
    }
}

pub(crate) struct Interaction;

impl Kind for Interaction {
    type Input = RoutingInput;
    const KIND: JobKind = JobKind::Interaction;
    const ENDS: &'static [JobState] = &[
        JobState::Created,
        JobState::Ignored,
        JobState::ConversationClosed,
        JobState::Dead,
    ];

    /// One interaction per conversation, ever: concurrent first deliveries make one job.
    /// The store finds a conversation's hand-off by this key (`Store::get`).
    fn key(conversation: &ConversationSid, _: &RoutingInput) -> String {
        conversation.to_string()
    }

    /// What this attempt did; `None` when the lease was lost before anything was sent.
    async fn run(cx: &Context, job: &Job, routing: RoutingInput, claim: &Claim) -> Option<Outcome> {
        let routing = match complete_facts(cx, job, routing, &claim.lease, true).await {
            Ok(r) => r,
            Err(stop) => return stop.map(Into::into),
        };
        let at = routing.at_ms.unwrap_or(job.created_at);
        let decision = cx.router.decide(&job.conversation_sid, &routing, at);
        let mut follow_ups: Vec<NewJob> = Vec::new();
        if let (Some(rule), Some(text)) = (&decision.rule, &decision.reply) {
            follow_ups.push(reply::after(job, rule, text, cx.store.now_ms()));
        }
        if decision.ignore {
            return Some(Outcome {
                transition: Transition::Finished {
                    state: JobState::Ignored,
                    outcome: format!(
                        "no task: rule `{}` replies only",
                        decision.rule.as_deref().unwrap_or_default()
                    ),
                },
                follow_ups,
                adopted: false,
            });
        }
        let (transition, adopted) = hand_off(cx, job, &routing, &decision, claim).await?;
        if matches!(transition, Transition::Created { .. }) {
            follow_ups.extend(timers::after(
                job,
                &cx.settings.lifecycle,
                cx.store.now_ms(),
            ));
        } else {
            follow_ups.clear();
        }
        Some(Outcome {
            transition,
            follow_ups,
            adopted,
        })
    }

    /// Once created, the conversation's later messages need not reach flexhook: its
    /// conversation-scoped webhook is removed (`flex.remove_webhook_after_handoff`).
    async fn after_record(cx: &Context, job: &Job, transition: &Transition) {
        if matches!(transition, Transition::Created { .. }) && cx.settings.remove_webhook {
            remove_webhook(cx, job).await;
        }
    }
}

/// The facts routing needs that the webhook did not carry, looked up once and, with
/// `keep`, kept with the job so that every retry decides alike. `Err(None)`: the lease was
/// lost.
pub(super) async fn complete_facts(
    cx: &Context,
    job: &Job,
    routing: RoutingInput,
    lease: &str,
    keep: bool,
) -> Result<RoutingInput, Option<Transition>> {
    let mut completed = routing.clone();
    let gone_out = job.create_may_have_gone_out;
    if cx.router.needs_address() && completed.address.is_none() {
        if let Some(author) = &completed.customer_address {
            match cx
                .client
                .proxy_address_of(
                    job.chat_service_sid.as_ref(),
                    &job.conversation_sid,
                    author.expose(),
                )
                .await
            {
                Ok(address) => completed.address = address,
                Err(e) if e.is_retryable() => return Err(Some(cx.failed(job, &e, gone_out))),
                Err(e) => {
                    tracing::warn!(error = %e, "could not look up the address the customer wrote to; routing without it")
                }
            }
        }
    }
    if cx.router.needs_attributes() && completed.attributes.is_none() {
        match cx
            .client
            .conversation_attributes(job.chat_service_sid.as_ref(), &job.conversation_sid)
            .await
        {
            Ok(attributes) => completed.attributes = Some(attributes),
            Err(e) if e.is_retryable() => return Err(Some(cx.failed(job, &e, gone_out))),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the conversation's attributes; routing without them");
                completed.attributes = Some(serde_json::json!({}));
            }
        }
    }
    if let (Some(within), None, Some(customer)) = (
        cx.router.known_agent_within(),
        &completed.last_worker,
        &completed.customer_address,
    ) {
        match cx
            .store
            .known_agent(&job.account_sid, customer, within)
            .await
        {
            Ok(known) => completed.last_worker = Some(LastWorker::of(known)),
            Err(e) => return Err(Some(cx.store_failed(job, &e.to_string(), gone_out))),
        }
    }
    if keep && completed != routing {
        let input = Action::CreateInteraction(completed.clone()).input();
        match cx.store.update_input(job.id, lease, &input).await {
            Ok(true) => {}
            Ok(false) => return Err(None),
            Err(e) => return Err(Some(cx.store_failed(job, &e.to_string(), gone_out))),
        }
    }
    Ok(completed)
}

/// Adopts the task an earlier attempt may have made (`true`), else creates the interaction
/// (`false`).
async fn hand_off(
    cx: &Context,
    job: &Job,
    routing: &RoutingInput,
    decision: &Decision,
    claim: &Claim,
) -> Option<(Transition, bool)> {
    if job.create_may_have_gone_out || job.create_accepted {
        let accepted = job.create_accepted;
        match cx
            .client
            .find_task_for_conversation(cx.router.workspace_sid(), &job.conversation_sid)
            .await
        {
            Ok(Some(found)) => {
                tracing::info!(task = %found.task_sid, "found the task an earlier attempt created; adopting it");
                let adopted = Transition::Created {
                    interaction_sid: found.interaction_sid,
                    interaction_channel_sid: found.channel_sid,
                    task_sid: Some(found.task_sid),
                };
                return Some((adopted, true));
            }
            Ok(None) if accepted => {
                tracing::warn!("Flex accepted the create, but TaskRouter shows no task for it; recorded as created without its SIDs, never created twice");
                return Some((CREATED_UNKNOWN, false));
            }
            Ok(None) => tracing::info!("no task for the conversation yet; creating it"),
            Err(e) if accepted => {
                tracing::warn!(error = %e, "Flex accepted the create, but its task could not be looked up; recorded as created without its SIDs, never created twice");
                return Some((CREATED_UNKNOWN, false));
            }
            Err(e) => return Some((cx.failed(job, &e, true), false)),
        }
    }

    let request = InteractionRequest::new(
        &job.conversation_sid,
        routing.channel_type,
        routing.customer_address.as_ref(),
        &decision.route,
    );
    if let Err(stop) = pace::clear_to_send(cx, job, claim).await {
        return stop.map(|wait| (wait, false));
    }
    let created = match cx.client.create_interaction(&request).await {
        Ok(CreatedInteraction {
            interaction_sid,
            channel_sid,
            task_sid,
        }) => Transition::Created {
            interaction_sid,
            interaction_channel_sid: channel_sid,
            task_sid,
        },
        Err(TwilioError::Decode { status, message }) => {
            // A 2xx: Twilio accepted it, so it is never sent again. Which interaction it
            // made, only TaskRouter can now say, once the asynchronous creation is done.
            tracing::warn!(status, %message, "interaction accepted but its answer was unreadable; its task will be looked up");
            accepted(
                cx,
                JobError::twilio(
                    None,
                    Some(status),
                    format!("accepted, but the answer was unreadable: {message}"),
                ),
            )
        }
        Err(e) if e.code() == Some(DUPLICATE_DROPPED) => {
            // Twilio dropped this create as a duplicate of one it already has.
            tracing::warn!(code = e.code(), error = %e, "Flex dropped the create as a duplicate; the interaction exists and its task will be looked up");
            accepted(
                cx,
                JobError::twilio(
                    e.code(),
                    e.status(),
                    format!("a duplicate of an interaction Flex already has: {e}"),
                ),
            )
        }
        Err(e) => cx.failed(job, &e, e.may_have_been_processed()),
    };
    Some((created, false))
}

/// Flex has the interaction: never send the create again, look for its task once Twilio's
/// asynchronous creation has had time.
fn accepted(cx: &Context, error: JobError) -> Transition {
    Transition::Retry {
        retry_in: cx.settings.retry.lookup_delay,
        error,
        create_may_have_gone_out: true,
        accepted: true,
    }
}

async fn remove_webhook(cx: &Context, job: &Job) {
    let webhook = job.webhook_sid.as_ref().map(ToString::to_string);
    match webhook::remove(&cx.client, &cx.store, job).await {
        Ok(None) => {}
        Ok(Some(outcome)) => {
            tracing::info!(
                webhook = webhook.as_deref(),
                ?outcome,
                "conversation webhook removed"
            );
        }
        Err(RemovalError::Record(e)) => {
            tracing::warn!(webhook = webhook.as_deref(), error = %e, "could not record the webhook removal");
        }
        Err(RemovalError::Twilio(e)) => tracing::warn!(
            webhook = webhook.as_deref(),
            code = e.code(),
            error = %e,
            "could not remove the conversation webhook; later messages will still arrive and be ignored"
        ),
    }
}

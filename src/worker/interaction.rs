//! The `interaction` job: complete the routing facts once (the address the customer wrote
//! to, the conversation's attributes, when a rule needs them), decide the route, then adopt
//! a task an earlier attempt may have made, else create the conversation's interaction at
//! the rate limit's pace; once recorded, remove the conversation-scoped webhook. A rule's
//! reply and the conversation's timers are jobs of their own, recorded with the outcome.

use std::time::{Duration, Instant};

use super::attempt::Outcome;
use super::{Claim, Worker};
use crate::routing::{Decision, RoutingInput};
use crate::store::{ms, Action, ErrorOrigin, Job, JobError, JobState, NewJob, Slot, Transition};
use crate::twilio::{CreatedInteraction, InteractionRequest, TwilioError};

/// Missed rate-limit slots an attempt takes another for before it tries again later.
const MAX_LATE_SLOTS: usize = 5;

/// Nothing was sent: a create started now could outlast the claim's lease, and once the
/// lease ends another claim may look for the task, miss it and create a second one.
fn out_of_lease(job: &Job) -> Transition {
    Transition::Retry {
        retry_in: Duration::ZERO,
        error: JobError::flexhook(ErrorOrigin::Lease, "nothing sent: the turn to create came too late in the claim's lease (worker.lease_secs) for the request to end within it"),
        needs_lookup: job.needs_lookup,
        accepted: false,
    }
}

/// An interaction Flex accepted whose SIDs are unknown.
const CREATED_UNKNOWN: Transition = Transition::Created {
    interaction_sid: None,
    interaction_channel_sid: None,
    task_sid: None,
};

/// Twilio's warning 45353: a duplicate channel create was dropped, so the interaction exists.
const DUPLICATE_DROPPED: i64 = 45353;

impl Worker {
    /// What this attempt did; `None` when the lease was lost before anything was sent.
    pub(super) async fn create_interaction(
        &self,
        job: &Job,
        routing: &RoutingInput,
        claim: &Claim,
    ) -> Option<Outcome> {
        let routing = match self.complete_facts(job, routing, &claim.lease).await {
            Ok(r) => r,
            Err(stop) => return stop.map(Into::into),
        };
        let at = routing.at_ms.unwrap_or(job.created_at);
        let decision = self.router.decide(&job.conversation_sid, &routing, at);
        let mut follow_ups: Vec<NewJob> = Vec::new();
        if let (Some(rule), Some(text)) = (&decision.rule, &decision.reply) {
            follow_ups.push(self.reply_job(job, rule, text));
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
        let (transition, adopted) = self.hand_off(job, &routing, &decision, claim).await?;
        if matches!(transition, Transition::Created { .. }) {
            follow_ups.extend(self.timers_job(job));
        } else {
            follow_ups.clear();
        }
        Some(Outcome {
            transition,
            follow_ups,
            adopted,
        })
    }

    /// The facts routing needs that the webhook did not carry, looked up once and kept
    /// with the job so that every retry decides alike. `Err(None)`: the lease was lost.
    async fn complete_facts(
        &self,
        job: &Job,
        routing: &RoutingInput,
        lease: &str,
    ) -> Result<RoutingInput, Option<Transition>> {
        let mut completed = routing.clone();
        if self.router.needs_address() && completed.address.is_none() {
            if let Some(author) = &completed.customer_address {
                match self
                    .client
                    .proxy_address_of(
                        job.chat_service_sid.as_ref(),
                        &job.conversation_sid,
                        author.expose(),
                    )
                    .await
                {
                    Ok(address) => completed.address = address,
                    Err(e) if e.is_retryable() => {
                        return Err(Some(self.failed(job, &e, job.needs_lookup)))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look up the address the customer wrote to; routing without it")
                    }
                }
            }
        }
        if self.router.needs_attributes() && completed.attributes.is_none() {
            match self
                .client
                .conversation_attributes(job.chat_service_sid.as_ref(), &job.conversation_sid)
                .await
            {
                Ok(attributes) => completed.attributes = Some(attributes),
                Err(e) if e.is_retryable() => {
                    return Err(Some(self.failed(job, &e, job.needs_lookup)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the conversation's attributes; routing without them");
                    completed.attributes = Some(serde_json::json!({}));
                }
            }
        }
        if completed != *routing {
            let action = Action::CreateInteraction(completed.clone());
            match self.store.update_action(job.id, lease, &action).await {
                Ok(true) => {}
                Ok(false) => return Err(None),
                Err(e) => {
                    return Err(Some(self.store_failed(
                        job,
                        &e.to_string(),
                        job.needs_lookup,
                    )))
                }
            }
        }
        Ok(completed)
    }

    /// Adopts the task an earlier attempt may have made (`true`), else creates the
    /// interaction (`false`).
    async fn hand_off(
        &self,
        job: &Job,
        routing: &RoutingInput,
        decision: &Decision,
        claim: &Claim,
    ) -> Option<(Transition, bool)> {
        if job.needs_lookup || job.create_accepted {
            let accepted = job.create_accepted;
            match self
                .client
                .find_task_for_conversation(self.router.workspace_sid(), &job.conversation_sid)
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
                Err(e) => return Some((self.failed(job, &e, true), false)),
            }
        }

        // Write-ahead, and a last check of the lease: from here on a crash leaves the job
        // marked as possibly created, and a lost lease sends nothing.
        match self
            .store
            .mark_attempt_started(job.id, &claim.lease, self.config.lookup_delay)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "could not mark the attempt; trying later");
                return Some((
                    self.store_failed(job, &e.to_string(), job.needs_lookup),
                    false,
                ));
            }
        }
        let request = InteractionRequest::new(
            &job.conversation_sid,
            routing.channel_type,
            routing.customer_address.as_ref(),
            &decision.route,
        );
        // The permit comes last, right before the send, so that nothing slow between the
        // two can bunch permitted requests together on the wire.
        let waiting = self.metrics.waiting_for_rate_limit();
        let paced = self.pace(job, claim.send_by).await;
        drop(waiting);
        if let Err(wait) = paced {
            return Some((wait, false));
        }
        // A starved process may wake up past its lease even so.
        if Instant::now() > claim.send_by {
            return Some((out_of_lease(job), false));
        }
        let created = match self.client.create_interaction(&request).await {
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
                self.accepted(JobError::twilio(
                    None,
                    Some(status),
                    format!("accepted, but the answer was unreadable: {message}"),
                ))
            }
            Err(e) if e.code() == Some(DUPLICATE_DROPPED) => {
                // Twilio dropped this create as a duplicate of one it already has.
                tracing::warn!(code = e.code(), error = %e, "Flex dropped the create as a duplicate; the interaction exists and its task will be looked up");
                self.accepted(JobError::twilio(
                    e.code(),
                    e.status(),
                    format!("a duplicate of an interaction Flex already has: {e}"),
                ))
            }
            Err(e) => {
                let ambiguous = e.may_have_been_processed();
                self.failed(job, &e, ambiguous)
            }
        };
        Some((created, false))
    }

    /// Flex has the interaction: never send the create again, look for its task once
    /// Twilio's asynchronous creation has had time.
    fn accepted(&self, error: JobError) -> Transition {
        Transition::Retry {
            retry_in: self.config.lookup_delay,
            error,
            needs_lookup: true,
            accepted: true,
        }
    }

    pub(super) async fn remove_webhook(&self, job: &Job) {
        let Some(webhook) = job.webhook_sid.as_ref() else {
            return;
        };
        if !self.config.remove_webhook {
            return;
        }
        match self
            .client
            .delete_conversation_webhook(
                job.chat_service_sid.as_ref(),
                &job.conversation_sid,
                webhook,
            )
            .await
        {
            Ok(outcome) => {
                tracing::info!(webhook = %webhook, ?outcome, "conversation webhook removed");
                if let Err(e) = self.store.mark_webhook_removed(job.id).await {
                    tracing::warn!(error = %e, "could not record the webhook removal");
                }
            }
            Err(e) => tracing::warn!(
                webhook = %webhook,
                code = e.code(),
                error = %e,
                "could not remove the conversation webhook; later messages will still arrive and be ignored"
            ),
        }
    }

    /// Waits for this account's turn to create, at most until `send_by`; past it, nothing
    /// is sent and the job is tried again under a new claim. With PostgreSQL the budget is
    /// shared by every instance: a slot is reserved in the database and waited for; when the
    /// next free slot is further away than half the lease (or than `send_by`), none is taken
    /// and the job is tried again closer to it (nothing was sent).
    async fn pace(&self, job: &Job, send_by: Instant) -> Result<(), Transition> {
        let interval = super::rate_limit::spacing(self.config.max_creates_per_second);
        let max_wait = self.config.lease / 2;
        // A slot woken up from late (a starved process) has passed: sending then would bunch
        // with the slots after it. Take a new one, a few times at most.
        for _ in 0..MAX_LATE_SLOTS {
            let left = send_by.saturating_duration_since(Instant::now());
            match self
                .store
                .reserve_slot(job.account_sid.as_str(), interval, max_wait.min(left))
                .await
            {
                Ok(None) => {
                    // Given up in time, a turn is not taken: the next waiter gets it.
                    let turn = self.limiter.until_ready(&job.account_sid);
                    return tokio::time::timeout_at(send_by.into(), turn)
                        .await
                        .map_err(|_| out_of_lease(job));
                }
                Ok(Some(Slot::Reserved(wait))) => {
                    let due = Instant::now() + wait;
                    tokio::time::sleep(wait).await;
                    let late = Instant::now().saturating_duration_since(due);
                    if late <= interval / 2 {
                        return Ok(());
                    }
                    tracing::debug!(late_ms = ms(late), "rate-limit slot missed; taking another");
                }
                Ok(Some(Slot::Full(wait))) => {
                    return Err(Transition::Retry {
                        retry_in: wait.saturating_sub(max_wait),
                        error: JobError::flexhook(ErrorOrigin::Pacing, format!(
                            "the shared rate limit's next slot is {} ms away, past what the lease allows",
                            wait.as_millis()
                        )),
                        needs_lookup: job.needs_lookup,
                        accepted: false,
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not reserve a rate-limit slot; trying later");
                    return Err(self.store_failed(job, &e.to_string(), job.needs_lookup));
                }
            }
        }
        Err(Transition::Retry {
            retry_in: interval,
            error: JobError::flexhook(
                ErrorOrigin::Pacing,
                "this process kept waking up too late for its rate-limit slots",
            ),
            needs_lookup: job.needs_lookup,
            accepted: false,
        })
    }
}

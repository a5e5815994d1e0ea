//! One attempt at one job: adopt a task an earlier attempt may have made, else create the
//! interaction; then record the outcome and remove the conversation's webhook.

use std::sync::Arc;

use tracing::Instrument;

use super::Worker;
use crate::store::{ms, now_ms, Job, JobError, Transition};
use crate::twilio::{CreatedInteraction, InteractionRequest, TwilioError};

impl Worker {
    pub(super) async fn attempt(self: Arc<Self>, job: Job, lease: String) {
        let span = tracing::info_span!(
            "job",
            conversation = %job.conversation_sid,
            account = %job.account_sid,
            attempt = job.attempts + 1,
        );
        async move {
            let Some(transition) = self.decide(&job, &lease).await else {
                tracing::warn!("lease lost while waiting to send; another claim owns the job now");
                return;
            };
            log_transition(&job, &transition);
            match self
                .store
                .record(&job.conversation_sid, &lease, &transition)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "lease lost before the outcome was recorded; another worker owns the job"
                    );
                    return;
                }
                Err(e) => {
                    // The lease expires and the intent flag makes the next claim look first.
                    tracing::error!(error = %e, "could not record the outcome");
                    return;
                }
            }
            if matches!(transition, Transition::Created { .. }) {
                self.remove_webhook(&job).await;
            }
        }
        .instrument(span)
        .await;
    }

    /// What this attempt did; `None` when the lease was lost before anything was sent.
    async fn decide(&self, job: &Job, lease: &str) -> Option<Transition> {
        if job.needs_lookup {
            match self
                .client
                .find_task_for_conversation(self.router.workspace_sid(), &job.conversation_sid)
                .await
            {
                Ok(Some(found)) => {
                    tracing::info!(task = %found.task_sid, "found the task an earlier attempt created; adopting it");
                    return Some(Transition::Created {
                        interaction_sid: found.interaction_sid,
                        interaction_channel_sid: found.channel_sid,
                        task_sid: Some(found.task_sid),
                    });
                }
                Ok(None) => tracing::info!("no task for the conversation yet; creating it"),
                Err(e) => return Some(self.failed(job, &e, true)),
            }
        }

        // Write-ahead, and a last check of the lease: from here on a crash leaves the job
        // marked as possibly created, and a lost lease sends nothing.
        match self
            .store
            .mark_attempt_started(&job.conversation_sid, lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "could not mark the attempt; trying later");
                return Some(Transition::Retry {
                    next_attempt_at: now_ms() + ms(self.config.backoff.delay(job.attempts)),
                    error: JobError {
                        code: None,
                        status: None,
                        message: format!("store: {e}"),
                    },
                    needs_lookup: job.needs_lookup,
                });
            }
        }
        let route = self.router.route(&job.conversation_sid, &job.routing);
        let request = InteractionRequest::new(
            &job.conversation_sid,
            job.routing.channel_type,
            job.routing.customer_address.as_ref(),
            &route,
        );
        // The permit comes last, right before the send, so that nothing slow between the
        // two can bunch permitted requests together on the wire.
        self.limiter.until_ready(&job.account_sid).await;
        Some(match self.client.create_interaction(&request).await {
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
                // A 2xx means Twilio accepted it; only its answer was odd.
                tracing::warn!(status, %message, "interaction accepted but its answer was unreadable");
                Transition::Created {
                    interaction_sid: None,
                    interaction_channel_sid: None,
                    task_sid: None,
                }
            }
            Err(e) => {
                let ambiguous = e.may_have_been_processed();
                self.failed(job, &e, ambiguous)
            }
        })
    }

    /// Retry later, or give up: a 4xx other than 429 is permanent, and so is old age.
    fn failed(&self, job: &Job, e: &TwilioError, ambiguous: bool) -> Transition {
        let error = JobError {
            code: e.code(),
            status: e.status(),
            message: e.to_string(),
        };
        if !e.is_retryable() {
            return Transition::Dead { error };
        }
        let now = now_ms();
        if now - job.age_from >= ms(self.config.max_age) {
            return Transition::Dead {
                error: JobError {
                    message: format!(
                        "gave up after {} attempts (worker.max_age_secs): {}",
                        job.attempts + 1,
                        error.message
                    ),
                    ..error
                },
            };
        }
        let mut delay = self.config.backoff.delay(job.attempts);
        if let Some(after) = e.retry_after() {
            delay = delay.max(after);
        }
        if ambiguous {
            // Creation is asynchronous: give the task time to appear before looking for it.
            delay = delay.max(self.config.lookup_delay);
        }
        Transition::Retry {
            next_attempt_at: now + ms(delay),
            error,
            needs_lookup: ambiguous,
        }
    }

    async fn remove_webhook(&self, job: &Job) {
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
                if let Err(e) = self.store.mark_webhook_removed(&job.conversation_sid).await {
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
}

fn log_transition(job: &Job, transition: &Transition) {
    match transition {
        Transition::Created {
            interaction_sid,
            interaction_channel_sid,
            task_sid,
        } => tracing::info!(
            interaction = interaction_sid.as_ref().map(|s| s.as_str()),
            interaction_channel = interaction_channel_sid.as_ref().map(|s| s.as_str()),
            task = task_sid.as_ref().map(|s| s.as_str()),
            "job pending -> created"
        ),
        Transition::Retry {
            next_attempt_at,
            error,
            needs_lookup,
        } => tracing::warn!(
            code = error.code,
            status = error.status,
            error = %error.message,
            retry_in_ms = next_attempt_at - now_ms(),
            lookup_first = needs_lookup,
            "job attempt failed; will retry"
        ),
        Transition::Dead { error } => tracing::error!(
            code = error.code,
            status = error.status,
            error = %error.message,
            attempts = job.attempts + 1,
            "job pending -> dead"
        ),
    }
}

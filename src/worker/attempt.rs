//! One attempt at one job, whatever its kind: the kind's action decides a transition, the
//! store records it under the claim's lease, and the kind's follow-up runs once recorded.

use std::sync::Arc;

use tracing::Instrument;

use super::{Claim, Worker};
use crate::store::{ms, now_ms, Action, Job, JobError, JobState, NewJob, Transition};
use crate::twilio::TwilioError;

/// What an attempt decided, and the jobs it asks for once that is recorded (in the same
/// transaction: they exist if and only if the outcome does).
pub(super) struct Outcome {
    pub transition: Transition,
    pub follow_ups: Vec<NewJob>,
    /// The interaction was not created but found: an earlier attempt's, adopted.
    pub adopted: bool,
}

impl From<Transition> for Outcome {
    fn from(transition: Transition) -> Self {
        Self {
            transition,
            follow_ups: Vec::new(),
            adopted: false,
        }
    }
}

impl Outcome {
    /// The `outcome` label of `flexhook_jobs_total`.
    fn label(&self) -> &'static str {
        match &self.transition {
            Transition::Created { .. } if self.adopted => "adopted",
            Transition::Created { .. } => "created",
            Transition::Retry { .. } => "retried",
            Transition::Finished { state, .. } => state.as_str(),
            Transition::Dead { .. } => "dead",
        }
    }

    fn error(&self) -> Option<&JobError> {
        match &self.transition {
            Transition::Retry { error, .. } | Transition::Dead { error } => Some(error),
            _ => None,
        }
    }
}

impl Worker {
    pub(super) async fn attempt(self: Arc<Self>, job: Job, claim: Claim) {
        let span = tracing::info_span!(
            "job",
            kind = %job.kind,
            conversation = %job.conversation_sid,
            account = %job.account_sid,
            attempt = job.attempts + 1,
        );
        async move {
            let lease = claim.lease.as_str();
            let decided = match &job.action {
                Action::CreateInteraction(routing) => {
                    self.create_interaction(&job, routing, &claim).await
                }
                Action::SetTimers(timers) => Some(self.set_timers(&job, timers).await.into()),
                Action::CloseOrphan(close) => {
                    self.close_orphan(&job, close, lease).await.map(Into::into)
                }
                Action::Reply(reply) => self.send_reply(&job, reply, lease).await.map(Into::into),
            };
            let Some(outcome) = decided else {
                tracing::warn!("lease lost while waiting to send; another claim owns the job now");
                return;
            };
            let transition = &outcome.transition;
            log_transition(&job, transition);
            match self
                .store
                .record_with(job.id, lease, transition, &outcome.follow_ups)
                .await
            {
                Ok(true) => {
                    self.metrics.job(job.kind, outcome.label(), outcome.error());
                }
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
            // The kind's follow-up, once its outcome is durable.
            if let (Action::CreateInteraction(_), Transition::Created { .. }) =
                (&job.action, transition)
            {
                self.remove_webhook(&job).await;
            }
        }
        .instrument(span)
        .await;
    }

    /// Retry after the store failed mid-attempt; `needs_lookup` as it must stay.
    pub(super) fn store_failed(&self, job: &Job, message: &str, needs_lookup: bool) -> Transition {
        Transition::Retry {
            retry_in: self.config.backoff.delay(job.attempts),
            error: JobError::store(message),
            needs_lookup,
            accepted: false,
        }
    }

    /// Retry later, or give up: a 4xx other than 429 is permanent, and so is old age. A
    /// conversation Twilio says is closed (45354) is final, but no failure.
    pub(super) fn failed(&self, job: &Job, e: &TwilioError, ambiguous: bool) -> Transition {
        if e.code() == Some(CONVERSATION_CLOSED) {
            return Transition::Finished {
                state: JobState::ConversationClosed,
                outcome: format!("nothing to do: the conversation is closed ({e})"),
            };
        }
        let error = JobError::twilio(e.code(), e.status(), e.to_string());
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
            // Honoured up to the cap: a `Retry-After: 99999999` must not park the job for
            // three years, past worker.max_age_secs and out of every operator's sight.
            delay = delay.max(after.min(self.config.backoff.cap));
        }
        if ambiguous {
            // Creation is asynchronous: give the task time to appear before looking for it.
            delay = delay.max(self.config.lookup_delay);
        }
        Transition::Retry {
            retry_in: delay,
            error,
            needs_lookup: ambiguous,
            accepted: false,
        }
    }
}

/// Twilio's error 45354: the conversation is closed.
const CONVERSATION_CLOSED: i64 = 45354;

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
            retry_in,
            error,
            needs_lookup,
            accepted,
        } => tracing::warn!(
            code = error.code,
            status = error.status,
            error = %error.message,
            retry_in_ms = ms(*retry_in),
            lookup_first = needs_lookup,
            accepted,
            "job attempt failed; will retry"
        ),
        Transition::Finished { state, outcome } => tracing::info!(
            %outcome,
            "job pending -> {state}"
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

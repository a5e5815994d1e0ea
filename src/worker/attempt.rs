//! One attempt at one claimed job, whatever its kind, in order: read its action, let its
//! kind run it (`crate::jobs`), record the outcome and its follow-up jobs under the claim's
//! lease, count it, then the kind's after-record work.

use std::sync::Arc;

use tracing::Instrument;

use super::Worker;
use crate::jobs::{self, Action, Claim, Outcome};
use crate::store::{ms, Job, JobError, Transition};

impl Worker {
    pub(super) async fn attempt(self: Arc<Self>, job: Job, claim: Claim) {
        let span = tracing::info_span!(
            "job",
            kind = %job.kind,
            conversation = %job.conversation_sid,
            account = %self.jobs.account,
            attempt = job.attempts + 1,
        );
        async move {
            let cx = &self.jobs;
            let decided = match Action::of(&job) {
                Ok(action) => action.run(cx, &job, &claim).await,
                // Nothing a retry could mend: the input is not what the kind stores.
                Err(unreadable) => Some(Outcome::from(Transition::Dead {
                    error: JobError::store(unreadable),
                })),
            };
            let Some(outcome) = decided else {
                tracing::warn!("lease lost while waiting to send; another claim owns the job now");
                return;
            };
            let transition = &outcome.transition;
            debug_assert!(
                !matches!(transition, Transition::Finished { state, .. } if !jobs::ends(job.kind).contains(state)),
                "a {} job cannot end {transition:?}",
                job.kind
            );
            log_transition(&job, transition);
            match cx
                .store
                .record_with(job.id, &claim.lease, transition, &outcome.follow_ups)
                .await
            {
                Ok(true) => {
                    cx.metrics
                        .job(&cx.account, job.kind, outcome.label(), outcome.error())
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
            jobs::after_record(cx, &job, transition).await;
        }
        .instrument(span)
        .await;
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
            retry_in,
            error,
            create_may_have_gone_out,
            accepted,
        } => tracing::warn!(
            code = error.code,
            status = error.status,
            error = %error.message,
            retry_in_ms = ms(*retry_in),
            lookup_first = create_may_have_gone_out,
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

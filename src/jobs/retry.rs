//! When a failed attempt is tried again, and when never: one pure policy for every kind.
//! Given the job's attempts and age, the error's facts, the settings and the time, it says
//! what becomes of the job; the clock and the jitter's randomness are handed in.

use std::time::Duration;

use rand::Rng;

use super::Backoff;
use crate::store::{ms, Job, JobError, JobState, Transition};
use crate::twilio::TwilioError;

/// Twilio's error 45354: the conversation is closed.
const CONVERSATION_CLOSED: i64 = 45354;

/// `worker.retry_*`, `worker.max_age_secs` and `worker.lookup_delay_ms`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Past this age (from the job's `age_from`), a failure is final.
    pub max_age: Duration,
    /// How long Twilio's asynchronous creation may take to show a task.
    pub lookup_delay: Duration,
}

/// Where the failed attempt stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// Attempts before this one.
    pub attempts: u32,
    /// When the max-age clock started.
    pub age_from: i64,
    pub now: i64,
}

impl Attempt {
    pub fn of(job: &Job, now: i64) -> Self {
        Self {
            attempts: job.attempts,
            age_from: job.age_from,
            now,
        }
    }
}

/// What the policy needs to know of an error.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub code: Option<i64>,
    pub status: Option<u16>,
    pub message: String,
    /// Trying again may succeed (a 429, a 5xx, a connection that failed).
    pub retryable: bool,
    /// Twilio's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The request may have been processed: a retry looks before it creates.
    pub ambiguous: bool,
}

impl Failure {
    pub fn of(e: &TwilioError, ambiguous: bool) -> Self {
        Self {
            code: e.code(),
            status: e.status(),
            message: e.to_string(),
            retryable: e.is_retryable(),
            retry_after: e.retry_after(),
            ambiguous,
        }
    }
}

/// Retry later, or give up: a 4xx other than 429 is permanent, and so is old age. A
/// conversation Twilio says is closed (45354) is final, but no failure.
pub(crate) fn after_failure(
    policy: &RetryPolicy,
    at: &Attempt,
    failure: &Failure,
    rng: &mut impl Rng,
) -> Transition {
    if failure.code == Some(CONVERSATION_CLOSED) {
        return Transition::Finished {
            state: JobState::ConversationClosed,
            outcome: format!(
                "nothing to do: the conversation is closed ({})",
                failure.message
            ),
        };
    }
    let error = JobError::twilio(failure.code, failure.status, failure.message.clone());
    if !failure.retryable {
        return Transition::Dead { error };
    }
    if at.now - at.age_from >= ms(policy.max_age) {
        return Transition::Dead {
            error: JobError {
                message: format!(
                    "gave up after {} attempts (worker.max_age_secs): {}",
                    at.attempts + 1,
                    error.message
                ),
                ..error
            },
        };
    }
    let mut delay = policy.backoff.delay(at.attempts, rng);
    if let Some(after) = failure.retry_after {
        // Honoured up to the cap: a `Retry-After: 99999999` must not park the job for
        // three years, past worker.max_age_secs and out of every operator's sight.
        delay = delay.max(after.min(policy.backoff.cap));
    }
    if failure.ambiguous {
        // Creation is asynchronous: give the task time to appear before looking for it.
        delay = delay.max(policy.lookup_delay);
    }
    Transition::Retry {
        retry_in: delay,
        error,
        create_may_have_gone_out: failure.ambiguous,
        accepted: false,
    }
}

/// Retry after the store failed mid-attempt; `create_may_have_gone_out` as it must stay.
pub(crate) fn after_store_failure(
    policy: &RetryPolicy,
    at: &Attempt,
    message: &str,
    create_may_have_gone_out: bool,
    rng: &mut impl Rng,
) -> Transition {
    Transition::Retry {
        retry_in: policy.backoff.delay(at.attempts, rng),
        error: JobError::store(message),
        create_may_have_gone_out,
        accepted: false,
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::mock::StepRng;

    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            max_age: Duration::from_secs(3600),
            lookup_delay: Duration::from_secs(5),
        }
    }

    fn fresh(attempts: u32) -> Attempt {
        Attempt {
            attempts,
            age_from: NOW - 1000,
            now: NOW,
        }
    }

    fn failure(status: u16, code: Option<i64>) -> Failure {
        Failure {
            code,
            status: Some(status),
            message: format!("HTTP {status}"),
            retryable: status == 429 || status >= 500,
            retry_after: None,
            ambiguous: false,
        }
    }

    /// No jitter: every backoff draw is its lowest, zero.
    fn decide(at: &Attempt, failure: &Failure) -> Transition {
        after_failure(&policy(), at, failure, &mut StepRng::new(0, 0))
    }

    fn retry_in(transition: &Transition) -> i64 {
        match transition {
            Transition::Retry { retry_in, .. } => ms(*retry_in),
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn a_4xx_other_than_429_is_dead_and_a_429_or_5xx_is_retried() {
        let dead = decide(&fresh(0), &failure(400, Some(20001)));
        assert!(matches!(&dead, Transition::Dead { error } if error.code == Some(20001)));
        assert!(matches!(
            decide(&fresh(0), &failure(429, None)),
            Transition::Retry { .. }
        ));
        assert!(matches!(
            decide(&fresh(3), &failure(503, None)),
            Transition::Retry { .. }
        ));
    }

    #[test]
    fn past_max_age_a_retryable_error_is_dead_and_says_why() {
        let old = Attempt {
            attempts: 6,
            age_from: NOW - 3_600_000,
            now: NOW,
        };
        let Transition::Dead { error } = decide(&old, &failure(503, None)) else {
            panic!("an old job is not retried");
        };
        assert_eq!(
            error.message,
            "gave up after 7 attempts (worker.max_age_secs): HTTP 503"
        );
        assert_eq!(error.status, Some(503));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let mut busy = failure(429, None);
        busy.retry_after = Some(Duration::from_secs(30));
        assert_eq!(retry_in(&decide(&fresh(0), &busy)), 30_000);
        busy.retry_after = Some(Duration::from_secs(99_999_999));
        assert_eq!(retry_in(&decide(&fresh(0), &busy)), 60_000);
    }

    #[test]
    fn an_ambiguous_error_waits_at_least_the_lookup_delay_and_looks_first() {
        let mut timeout = failure(502, None);
        timeout.ambiguous = true;
        let retry = decide(&fresh(0), &timeout);
        assert_eq!(retry_in(&retry), 5_000);
        assert!(matches!(
            retry,
            Transition::Retry {
                create_may_have_gone_out: true,
                accepted: false,
                ..
            }
        ));
        let plain = decide(&fresh(0), &failure(502, None));
        assert_eq!(retry_in(&plain), 0);
        assert!(matches!(
            plain,
            Transition::Retry {
                create_may_have_gone_out: false,
                ..
            }
        ));
    }

    #[test]
    fn a_closed_conversation_finishes_as_conversation_closed_even_when_old() {
        let old = Attempt {
            attempts: 9,
            age_from: 0,
            now: NOW,
        };
        let closed = decide(&old, &failure(400, Some(CONVERSATION_CLOSED)));
        assert_eq!(
            closed,
            Transition::Finished {
                state: JobState::ConversationClosed,
                outcome: "nothing to do: the conversation is closed (HTTP 400)".into(),
            }
        );
    }

    #[test]
    fn a_store_failure_keeps_the_flag_and_says_it_was_the_store() {
        let retry = after_store_failure(
            &policy(),
            &fresh(0),
            "database is locked",
            true,
            &mut StepRng::new(0, 0),
        );
        let Transition::Retry {
            error,
            create_may_have_gone_out,
            ..
        } = retry
        else {
            panic!("a store failure is retried");
        };
        assert!(create_may_have_gone_out);
        assert_eq!(error.message, "store: database is locked");
    }
}

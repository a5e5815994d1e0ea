//! A Flex API that lies (issue 13): it creates the interaction, then answers in a way that
//! cannot be read, or not in time, or not at all; it rate-limits with odd `Retry-After`s;
//! it says 404 to the webhook removal of a conversation that is already closed. Every
//! conversation still ends with exactly one interaction, counted at the stand-in, and an
//! answer that cannot be read leads to a TaskRouter lookup, never to a second create.

mod common;

use std::time::{Duration, SystemTime};

use common::flex::{Answer, FlexStandIn};
use common::*;
use flexhook::store::{now_ms, Job, JobState, Store};

const CUSTOMER: &str = "whatsapp:+34600111222";

/// The app, with all of Twilio's APIs at the stand-in.
async fn start(env: &Env, flex: &FlexStandIn, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = flex.settings().to_vec();
    settings.extend_from_slice(extra);
    TestApp::start(env, &settings).await
}

/// One first message, answered 200.
async fn first_message(app: &TestApp) -> String {
    let ch = random_sid("CH");
    assert_eq!(app.post_form(&message(&ch, CUSTOMER)).await.status(), 200);
    ch
}

/// The conversation has exactly one interaction at the stand-in, and its job names it.
fn assert_one_interaction_recorded(flex: &FlexStandIn, ch: &str, job: &Job) {
    let created = flex.interactions(ch);
    assert_eq!(
        created.len(),
        1,
        "{ch}: exactly one interaction: {created:?}"
    );
    let created = &created[0];
    assert_eq!(job.state, JobState::Created);
    assert_eq!(
        job.interaction_sid.as_ref().map(|s| s.as_str()),
        Some(created.sid.as_str())
    );
    assert_eq!(
        job.interaction_channel_sid.as_ref().map(|s| s.as_str()),
        Some(created.channel_sid.as_str())
    );
    assert_eq!(
        job.task_sid.as_ref().map(|s| s.as_str()),
        Some(created.task_sid.as_str())
    );
}

/// Flex creates the interaction, then answers `answer`: flexhook looks the task up in
/// TaskRouter and adopts it, with one create request in all.
async fn a_create_answered_unreadably_is_adopted(answer: Answer) {
    let env = Env::new().await;
    let flex = FlexStandIn::lying_once(answer.clone()).await;
    let app = start(&env, &flex, &[]).await;
    let ch = first_message(&app).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    // Stopped, the worker has finished every attempt it started: a second create is counted.
    app.stop().await;

    assert_one_interaction_recorded(&flex, &ch, &job);
    assert_eq!(
        flex.create_requests_for(&ch),
        1,
        "{answer:?}: never a second POST /v1/Interactions"
    );
    assert_eq!(flex.lookups(&ch), 1, "{answer:?}: one TaskRouter lookup");
    assert_eq!(job.attempts, 2, "the create, then the lookup");
    assert!(stored_job(&store, &ch).await.unwrap().webhook_removed);
}

#[tokio::test]
async fn a_200_that_is_not_json_is_looked_up_and_adopted_never_created_twice() {
    a_create_answered_unreadably_is_adopted(Answer::CreatedNotJson).await;
}

#[tokio::test]
async fn a_200_without_a_sid_is_looked_up_and_adopted_never_created_twice() {
    a_create_answered_unreadably_is_adopted(Answer::CreatedWithoutSid).await;
}

#[tokio::test]
async fn a_connection_reset_after_the_create_is_looked_up_and_adopted_never_created_twice() {
    a_create_answered_unreadably_is_adopted(Answer::CreatedThenReset).await;
}

#[tokio::test]
async fn a_200_thirty_seconds_late_past_the_client_timeout_is_looked_up_and_adopted() {
    // twilio.request_timeout_ms is 1000 in these tests.
    a_create_answered_unreadably_is_adopted(Answer::CreatedAfter(Duration::from_secs(30))).await;
}

#[tokio::test]
async fn a_500_after_the_create_is_looked_up_and_adopted_never_created_twice() {
    a_create_answered_unreadably_is_adopted(Answer::CreatedThen500).await;
}

/// Flex accepted the create but TaskRouter never shows its task: the job is created without
/// SIDs rather than sent again, since a 2xx means the interaction exists.
#[tokio::test]
async fn an_unreadable_200_whose_task_never_appears_is_not_created_again() {
    let env = Env::new().await;
    let flex = FlexStandIn::lying_once(Answer::CreatedNotJson).await;
    // TaskRouter is another, empty stand-in: the task is not (yet) visible there.
    let empty = FlexStandIn::lying_once(Answer::Failed500).await;
    let app = start(
        &env,
        &flex,
        &[("twilio.taskrouter_api_base_url", empty.uri())],
    )
    .await;
    let ch = first_message(&app).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    app.stop().await;

    assert_eq!(flex.create_requests_for(&ch), 1);
    assert_eq!(flex.interactions(&ch).len(), 1);
    assert_eq!(empty.lookups(&ch), 1);
    assert_eq!(job.interaction_sid, None);
    assert_eq!(job.task_sid, None);
}

/// The conversation's job once its first attempt is recorded.
async fn after_the_first_attempt(store: &Store, ch: &str) -> Job {
    wait_for_job(store, ch, Duration::from_secs(5), |j| {
        j.attempts == 1 && j.lease_owner.is_none()
    })
    .await
}

/// One create after a 429, which was never processed: one interaction, and no lookup.
async fn created_once_after_a_429(flex: &FlexStandIn, store: &Store, ch: &str) {
    let job = wait_for_state(store, ch, JobState::Created).await;
    assert_eq!(job.attempts, 2);
    assert_one_interaction_recorded(flex, ch, &job);
    assert_eq!(flex.create_requests_for(ch), 2);
    assert_eq!(flex.lookups(ch), 0, "a 429 needs no lookup");
}

#[tokio::test]
async fn a_429_whose_retry_after_is_an_http_date_waits_until_that_date() {
    let env = Env::new().await;
    let until = SystemTime::now() + Duration::from_secs(3);
    let date = httpdate::fmt_http_date(until);
    // The header has whole seconds: this is the instant it names.
    let named = httpdate::parse_http_date(&date).unwrap();
    let named_ms = i64::try_from(
        named
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let flex = FlexStandIn::lying_once(Answer::RateLimited(Some(date.clone()))).await;
    let app = start(&env, &flex, &[("worker.retry_cap_ms", "10000")]).await;
    let ch = first_message(&app).await;
    let store = env.store().await;

    let job = after_the_first_attempt(&store, &ch).await;
    assert_eq!(job.last_error.as_ref().unwrap().code, Some(20429));
    // Both clocks are read in whole milliseconds: 1 ms of rounding.
    assert!(
        job.next_attempt_at >= named_ms - 1,
        "Retry-After: {date} must be honoured: next attempt at {} ms, {} ms early",
        job.next_attempt_at,
        named_ms - job.next_attempt_at
    );
    created_once_after_a_429(&flex, &store, &ch).await;
    assert!(now_ms() >= named_ms);
    app.stop().await;
}

#[tokio::test]
async fn a_429_whose_retry_after_date_is_past_is_tried_again_after_the_backoff() {
    let env = Env::new().await;
    let flex = FlexStandIn::lying_once(Answer::RateLimited(Some(
        "Wed, 21 Oct 2015 07:28:00 GMT".into(),
    )))
    .await;
    let app = start(&env, &flex, &[]).await;
    let ch = first_message(&app).await;
    let store = env.store().await;

    created_once_after_a_429(&flex, &store, &ch).await;
    // worker.retry_cap_ms is 200 here: the backoff's ceiling after one failure is 50 ms.
    let sent: Vec<_> = flex.create_requests().iter().map(|r| r.at).collect();
    let waited = sent[1] - sent[0];
    assert!(
        waited < Duration::from_secs(1),
        "a past date is no reason to wait: {waited:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_by_worker_retry_cap_ms() {
    let env = Env::new().await;
    let flex = FlexStandIn::lying_once(Answer::RateLimited(Some("99999999".into()))).await;
    let app = start(&env, &flex, &[("worker.retry_cap_ms", "700")]).await;
    let ch = first_message(&app).await;
    let store = env.store().await;

    let job = after_the_first_attempt(&store, &ch).await;
    let waits = job.next_attempt_at - job.updated_at;
    assert!(
        (500..=700).contains(&waits),
        "Retry-After: 99999999 (three years) waits worker.retry_cap_ms (700), not {waits} ms"
    );
    created_once_after_a_429(&flex, &store, &ch).await;
    app.stop().await;
}

#[tokio::test]
async fn a_404_for_the_webhook_removal_of_a_closed_conversation_counts_as_removed() {
    let env = Env::new().await;
    let flex = FlexStandIn::start(|_, _| Answer::Created).await;
    flex.answer_webhook_deletes_with(404);
    let app = start(&env, &flex, &[]).await;
    let ch = first_message(&app).await;
    let store = env.store().await;
    let job = wait_for_job(&store, &ch, Duration::from_secs(5), |j| j.webhook_removed).await;
    // A later message of the conversation is known: nothing more is sent.
    let later = with(message(&ch, CUSTOMER), "Index", "1");
    assert_eq!(app.post_form(&later).await.status(), 200);
    app.stop().await;

    assert_one_interaction_recorded(&flex, &ch, &job);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error, None);
    assert_eq!(
        flex.webhook_deletes(),
        [format!(
            "/v1/Services/{SERVICE}/Conversations/{ch}/Webhooks/{WEBHOOK}"
        )],
        "one DELETE, not retried"
    );
    assert_eq!(flex.create_requests_for(&ch), 1);
    let after = stored_job(&store, &ch).await.unwrap();
    assert_eq!((after.state, after.attempts), (JobState::Created, 1));
}

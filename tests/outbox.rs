//! Exactly one interaction per conversation, durably: retries, 429s, ambiguous timeouts,
//! permanent failures, concurrency, restarts and Twilio's rate limit, against wiremock and
//! a real SQLite file.

mod common;

use common::flex::{Answer, FlexStandIn};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flexhook::store::JobState;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

async fn interactions_received(env: &Env) -> usize {
    env.flex
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v1/Interactions")
        .count()
}

#[tokio::test]
async fn two_500s_then_a_200_create_one_interaction_after_retries() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(2)
        .mount(&env.flex)
        .await;
    create_interaction()
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    tasks_are_empty(&env).await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[]).await;

    assert_eq!(
        app.post_form(&message(&ch, "+14155550100")).await.status(),
        200
    );
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(interactions_received(&env).await, 3);
    // Each retry after a 5xx first asked TaskRouter whether the task existed.
    assert_eq!(env.taskrouter.received_requests().await.unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_one_interaction_is_created() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(
            twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "1"),
        )
        .up_to_n_times(1)
        .mount(&env.flex)
        .await;
    create_interaction()
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    // Retry-After is honoured up to worker.retry_cap_ms (200 in these tests).
    let app = TestApp::start(&env, &[("worker.retry_cap_ms", "5000")]).await;

    let sent_at = flexhook::store::now_ms();
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_job(&store, &ch, Duration::from_secs(5), |j| j.attempts == 1).await;
    assert_eq!(job.last_error.as_ref().unwrap().code, Some(20429));
    assert!(
        !job.create_may_have_gone_out,
        "a 429 was never processed: no lookup needed"
    );
    // The 429 came after `sent_at`, so the retry is due at least Retry-After later.
    let waited_at_least = job.next_attempt_at - sent_at;
    assert!(
        waited_at_least >= 1000,
        "Retry-After: 1 must be honoured, got {waited_at_least} ms"
    );
    assert_eq!(
        interactions_received(&env).await,
        1,
        "no retry before Retry-After"
    );

    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert_eq!(job.attempts, 2);
    assert!(env.taskrouter.received_requests().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_timeout_after_flex_received_the_request_adopts_the_task_instead_of_creating_twice() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    // Flex takes the request but answers after our 1 s timeout.
    create_interaction()
        .respond_with(created(&ch).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&env.flex)
        .await;
    let expression = format!("conversationSid == \"{ch}\"");
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .and(query_param("EvaluateTaskAttributes", expression.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tasks": [{
                "sid": "WTfedcba9876543210fedcba9876543210",
                "workspace_sid": WORKSPACE,
                "assignment_status": "pending",
                "attributes": format!(
                    "{{\"conversationSid\":\"{ch}\",\"flexInteractionSid\":\"KDfedcba9876543210fedcba9876543210\",\"flexInteractionChannelSid\":\"UOfedcba9876543210fedcba9876543210\"}}"
                ),
            }],
            "meta": {"page": 0, "page_size": 20, "key": "tasks"}
        })))
        .expect(1)
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[]).await;

    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert_eq!(
        job.task_sid.unwrap().as_str(),
        "WTfedcba9876543210fedcba9876543210"
    );
    assert_eq!(
        job.interaction_sid.unwrap().as_str(),
        "KDfedcba9876543210fedcba9876543210"
    );
    assert_eq!(interactions_received(&env).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_400_with_code_80102_is_dead_at_once_with_that_code() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(
            400,
            80102,
            "Participant already in an interaction",
        ))
        .expect(1)
        .mount(&env.flex)
        .await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Dead).await;
    let error = job.last_error.unwrap();
    assert_eq!(error.code, Some(80102));
    assert_eq!(error.status, Some(400));
    assert!(error
        .message
        .contains("Participant already in an interaction"));
    // Stopped, the worker has finished every attempt it started: a retry is counted.
    app.stop().await;
    let after = stored_job(&store, &ch).await.unwrap();
    assert_eq!(after.state, JobState::Dead);
    assert_eq!(
        after.attempts, job.attempts,
        "no attempt after the dead one"
    );
    assert_eq!(
        interactions_received(&env).await,
        1,
        "no retry after a permanent failure"
    );
    assert!(env
        .conversations
        .received_requests()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_messages_of_one_conversation_create_one_interaction() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = Arc::new(TestApp::start(&env, &[]).await);
    let statuses = deliver_concurrently(&app, vec![ch.clone(); 50]).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let store = env.store().await;
    let created = wait_for_state(&store, &ch, JobState::Created).await;
    // Stopped, the worker has finished every attempt it started: a second create is counted.
    Arc::into_inner(app).unwrap().stop().await;
    assert_eq!(
        stored_job(&store, &ch).await.unwrap().attempts,
        created.attempts
    );
    assert_eq!(interactions_received(&env).await, 1);
}

#[tokio::test]
async fn a_job_left_pending_while_flex_was_down_is_created_exactly_once_after_a_restart() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(503, 20503, "Service Unavailable"))
        .mount(&env.flex)
        .await;
    tasks_are_empty(&env).await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    wait_for_job(&store, &ch, Duration::from_secs(10), |j| j.attempts >= 2).await;
    app.stop().await;
    let job = wait_for_state(&store, &ch, JobState::Pending).await;
    assert_eq!(job.last_error.unwrap().code, Some(20503));

    env.flex.reset().await;
    create_interaction()
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    let app = TestApp::start(&env, &[]).await;
    let created = wait_for_state(&store, &ch, JobState::Created).await;
    // A later message after the restart is still known: no second interaction. Its 200
    // comes after any job it made is committed, so a job made due again would show here.
    let later = with(message(&ch, "+14155550100"), "Index", "1");
    assert_eq!(app.post_form(&later).await.status(), 200);
    let job = stored_job(&store, &ch).await.unwrap();
    assert_eq!(job.state, JobState::Created);
    assert_eq!(job.attempts, created.attempts);
    // Stopped, the worker has finished every attempt it started: a second create is counted.
    app.stop().await;
    assert_eq!(interactions_received(&env).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_new_conversations_at_once_are_all_created_without_a_single_429() {
    let env = Env::new().await;
    // Flex as Twilio documents it: at most 20 creates in any one second, 429 past that.
    let flex = FlexStandIn::start(|_, _| Answer::Created).await;
    flex.limit_per_second(20);
    let app = Arc::new(TestApp::start(&env, &flex.settings()).await);
    let conversations: Vec<String> = (0..200).map(|_| random_sid("CH")).collect();
    let statuses = deliver_concurrently(&app, conversations.clone()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let store = env.store().await;
    for ch in &conversations {
        wait_for_job(&store, ch, Duration::from_secs(40), |j| {
            j.state == JobState::Created
        })
        .await;
    }
    assert_eq!(
        flex.over_the_limit(),
        0,
        "the service must stay under Twilio's limit"
    );
    assert_eq!(flex.create_requests().len(), 200);
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn a_job_failing_past_its_max_age_goes_dead_once_the_app_s_clock_passes_it() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(429, 20429, "Too Many Requests"))
        .mount(&env.flex)
        .await;
    // A 429 loop of a few dozen requests: on a loaded machine one of them may outlast the
    // client's timeout. That attempt is ambiguous and the next one looks for the task
    // first; the lookup must find none (not a 404, which would end the job before its
    // max age), and the timeout is roomier here so that the last failure is the 429.
    tasks_are_empty(&env).await;
    // worker.max_age_secs keeps its default of an hour: only the moved clock reaches it.
    let app = TestApp::start(
        &env,
        &[
            ("twilio.request_timeout_ms", "4000"),
            ("worker.lease_secs", "10"),
        ],
    )
    .await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let retried = wait_for_job(&store, &ch, Duration::from_secs(15), |j| j.attempts >= 3).await;
    assert_eq!(
        retried.state,
        JobState::Pending,
        "within the hour a refused create is retried: {retried:?}"
    );

    env.clock.advance(Duration::from_secs(3600));
    let job = wait_for_state(&store, &ch, JobState::Dead).await;
    let error = job.last_error.clone().unwrap();
    assert_eq!(error.code, Some(20429), "{job:?}");
    assert!(error.message.contains("max_age"), "{}", error.message);
    assert!(job.attempts > retried.attempts);
    app.stop().await;
}

#[tokio::test]
async fn a_locked_database_answers_503_and_the_next_delivery_succeeds() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[("store.busy_timeout_ms", "200")]).await;

    // Another process holds the write lock.
    let lock = env.lock_database().await;
    let response = app.post_form(&message(&ch, "+14155550100")).await;
    assert_eq!(response.status(), 503);
    lock.release().await;

    // Twilio retries; now it is stored and handed off.
    let response = app
        .post_form(&with(message(&ch, "+14155550100"), "RetryCount", "1"))
        .await;
    assert_eq!(response.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    app.stop().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_without_a_lookup() {
    let env = Env::new().await;
    // Nothing listens on this port: the request can never have reached Twilio.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let ch = random_sid("CH");
    let app = TestApp::start(&env, &[("twilio.flex_api_base_url", closed_url.as_str())]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    // Read between attempts, not during one (whose write-ahead mark is set until its end).
    let job = wait_for_job(&store, &ch, Duration::from_secs(10), |j| {
        j.attempts >= 2 && j.lease_owner.is_none()
    })
    .await;
    assert_eq!(job.state, JobState::Pending);
    assert!(
        !job.create_may_have_gone_out,
        "a refused connection sent nothing"
    );
    let error = job.last_error.unwrap();
    assert_eq!(error.code, None);
    assert!(error.message.contains("connect"), "{}", error.message);
    assert!(env.taskrouter.received_requests().await.unwrap().is_empty());
    app.stop().await;
}

/// A claim whose turn at the rate limit comes after its lease has ended must not send: by
/// then the job may be claimed again, look for its task, miss it (nothing was sent yet) and
/// create it, and the late claim would create a second. The settings check keeps queues
/// shorter than half the lease; load does not (a pool acquire of 2 s did it in
/// tests/cluster.rs), so the settings are set past that check here to make it certain.
#[tokio::test]
async fn a_turn_at_the_rate_limit_that_comes_after_the_lease_sends_nothing() {
    let env = Env::new().await;
    let flex = FlexStandIn::start(|_, _| Answer::Created).await;
    let mut extra = flex.settings().to_vec();
    extra.push(("twilio.request_timeout_ms", "200"));
    let mut settings = env.settings(&extra);
    // One create a second, three jobs at once, a lease of one second: the third job's turn
    // comes two seconds after its claim.
    settings
        .accounts
        .iter_mut()
        .for_each(|a| a.flex.max_creates_per_second = 1);
    settings.worker.lease = Duration::from_secs(1);
    settings.worker.concurrency = 4;
    let app = Arc::new(TestApp::start_with_settings(settings).await);
    let conversations: Vec<String> = (0..3).map(|_| random_sid("CH")).collect();
    let statuses = deliver_concurrently(&app, conversations.clone()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let store = env.store().await;
    for ch in &conversations {
        wait_for_state(&store, ch, JobState::Created).await;
    }
    // Every attempt has ended: a late create is counted.
    Arc::into_inner(app).unwrap().stop().await;
    for ch in &conversations {
        assert_eq!(flex.interactions(ch).len(), 1, "{ch}: one interaction");
    }
    assert_eq!(
        flex.create_requests().len(),
        3,
        "no create sent out of lease"
    );
}

/// TaskRouter lists one task for the conversation, as Flex made it.
async fn task_exists(env: &Env, ch: &str, task: &str) {
    let expression = format!("conversationSid == \"{ch}\"");
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .and(query_param("EvaluateTaskAttributes", expression.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tasks": [{
                "sid": task,
                "workspace_sid": WORKSPACE,
                "assignment_status": "pending",
                "attributes": format!("{{\"conversationSid\":\"{ch}\"}}"),
            }],
            "meta": {"page": 0, "page_size": 20, "key": "tasks"}
        })))
        .mount(&env.taskrouter)
        .await;
}

#[tokio::test]
async fn twilio_s_duplicate_channel_warning_45353_adopts_the_interaction_and_never_creates_again() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    let task = random_sid("WT");
    create_interaction()
        .respond_with(twilio_error(
            400,
            45353,
            "Duplicate channel create request dropped",
        ))
        .mount(&env.flex)
        .await;
    task_exists(&env, &ch, &task).await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert_eq!(job.task_sid.unwrap().as_str(), task);
    app.stop().await;
    assert_eq!(interactions_received(&env).await, 1, "never created again");
}

#[tokio::test]
async fn a_45353_whose_task_never_shows_is_recorded_created_and_never_sent_again() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(
            409,
            45353,
            "Duplicate channel create request dropped",
        ))
        .mount(&env.flex)
        .await;
    tasks_are_empty(&env).await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert!(job.task_sid.is_none(), "{job:?}");
    app.stop().await;
    assert_eq!(interactions_received(&env).await, 1);
}

#[tokio::test]
async fn a_closed_conversation_45354_is_its_own_final_outcome_not_a_dead_job() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(twilio_error(400, 45354, "Conversation is closed"))
        .mount(&env.flex)
        .await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    let job = wait_for_job(&store, &ch, Duration::from_secs(15), |j| {
        j.state != JobState::Pending
    })
    .await;
    assert_eq!(job.state, JobState::ConversationClosed, "{job:?}");
    assert!(job.outcome.unwrap().contains("45354"));
    let stats = store.stats().await.unwrap();
    app.stop().await;
    assert_eq!(
        stats.counts(flexhook::store::JobKind::Interaction).dead,
        0,
        "not a dead job to alert on"
    );
    assert_eq!(interactions_received(&env).await, 1, "final: never retried");
}

//! Seeing every conversation through: TaskRouter events close orphaned conversations
//! (after telling the customer, at most once), never while another task has the customer;
//! close timers are set at the hand-off. Signed event callbacks against the real app, with
//! wiremock standing in for Flex, Conversations and TaskRouter.

mod common;

use std::time::Duration;

use common::*;
use flexhook::domain::ConversationSid;
use flexhook::store::{Job, JobKind, JobState, Store};
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, Request, ResponseTemplate};

const TASKROUTER: &str = "/webhooks/taskrouter";
const ORPHAN_MESSAGE: &str = "Sorry, nobody could take your conversation. Please write again.";

/// One conversation, handed off to Flex: its interaction, channel and task.
struct Handoff {
    ch: String,
    kd: String,
    uo: String,
    wt: String,
}

impl Handoff {
    fn new() -> Self {
        Self {
            ch: random_sid("CH"),
            kd: random_sid("KD"),
            uo: random_sid("UO"),
            wt: random_sid("WT"),
        }
    }

    fn created(&self) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": self.kd,
            "channel": {"type": "sms", "sid": self.uo},
            "routing": {"properties": {"sid": self.wt, "workspace_sid": WORKSPACE}},
        }))
    }

    fn close_path(&self) -> String {
        format!("/v1/Interactions/{}/Channels/{}", self.kd, self.uo)
    }

    fn messages_path(&self) -> String {
        format!("/v1/Services/{SERVICE}/Conversations/{}/Messages", self.ch)
    }

    /// Studio-like attributes, as Flex writes them into an interaction's task.
    fn flex_attributes(&self) -> String {
        serde_json::json!({
            "conversationSid": self.ch,
            "flexInteractionSid": self.kd,
            "flexInteractionChannelSid": self.uo,
            "from": "+14155550100",
        })
        .to_string()
    }
}

/// The form TaskRouter posts to the workspace's event callback.
fn task_event(event_type: &str, task: &str, attributes: &str) -> Vec<(String, String)> {
    [
        ("EventType", event_type),
        ("AccountSid", ACCOUNT),
        ("WorkspaceSid", WORKSPACE),
        ("WorkspaceName", "Flex Task Assignment"),
        ("ResourceType", "task"),
        ("ResourceSid", task),
        ("TaskSid", task),
        ("TaskAttributes", attributes),
        ("TaskAssignmentStatus", "canceled"),
        ("EventDescription", "Task timed out of Workflow"),
        ("Timestamp", "1763800000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A signed event callback to `POST /webhooks/taskrouter`; its status.
async fn send_event(app: &TestApp, event_type: &str, task: &str, attributes: &str) -> u16 {
    app.post_signed(task_event(event_type, task, attributes))
        .to(TASKROUTER)
        .send()
        .await
        .status()
        .as_u16()
}

/// Mounts Flex accepting the create, webhooks removable, and the rest of the lifecycle:
/// no other live task, messages posted, channels closed.
async fn flex_and_conversations(env: &Env, h: &Handoff) {
    create_interaction()
        .and(body_string_contains(h.ch.as_str()))
        .respond_with(h.created())
        .mount(&env.flex)
        .await;
    webhooks_are_removable(env).await;
    no_live_tasks(env).await;
    Mock::given(method("POST"))
        .and(path(h.messages_path().as_str()))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("IM")})),
        )
        .mount(&env.conversations)
        .await;
    Mock::given(method("POST"))
        .and(path(h.close_path().as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"sid": h.uo, "status": "closed"})),
        )
        .mount(&env.flex)
        .await;
}

/// TaskRouter's list of the conversation's live tasks.
fn live_task_list() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .and(query_param(
            "AssignmentStatus",
            "pending,reserved,assigned,wrapping",
        ))
}

/// One page of that list.
fn live_task_page(tasks: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "tasks": tasks,
        "meta": {"page": 0, "page_size": 50, "key": "tasks", "next_page_url": null},
    }))
}

async fn live_tasks(env: &Env, tasks: serde_json::Value) {
    live_task_list()
        .respond_with(live_task_page(tasks))
        .mount(&env.taskrouter)
        .await;
}

async fn no_live_tasks(env: &Env) {
    live_tasks(env, serde_json::json!([])).await;
}

/// The customer's first message, handed off: waits for the interaction job to be created.
async fn hand_off(env: &Env, app: &TestApp, h: &Handoff) -> Store {
    assert_eq!(
        app.post_form(&message(&h.ch, "+14155550100"))
            .await
            .status(),
        200
    );
    let store = env.store().await;
    wait_for_state(&store, &h.ch, JobState::Created).await;
    store
}

async fn wait_until_finished(store: &Store, kind: JobKind, ch: &str) -> Job {
    wait_for_kind(store, kind, ch, |j| j.state != JobState::Pending).await
}

fn requests_to(requests: &[Request], method: &str, path: &str) -> Vec<Request> {
    requests
        .iter()
        .filter(|r| r.method.as_str() == method && r.url.path() == path)
        .cloned()
        .collect()
}

fn form_field(request: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn sent_messages(env: &Env, h: &Handoff) -> Vec<Request> {
    requests_to(
        &env.conversations.received_requests().await.unwrap(),
        "POST",
        &h.messages_path(),
    )
}

async fn close_requests(env: &Env, h: &Handoff) -> Vec<Request> {
    requests_to(
        &env.flex.received_requests().await.unwrap(),
        "POST",
        &h.close_path(),
    )
}

/// Neither told nor closed.
async fn assert_untouched(env: &Env, h: &Handoff) {
    assert!(sent_messages(env, h).await.is_empty(), "no message");
    assert!(close_requests(env, h).await.is_empty(), "no close");
}

fn with_message() -> [(&'static str, &'static str); 1] {
    [("lifecycle.orphan_message", ORPHAN_MESSAGE)]
}

#[tokio::test]
async fn a_workflow_timeout_tells_the_customer_once_and_closes_the_channel_once() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    assert_eq!(send_event(&app, "workflow.timeout", &h.wt, "{}").await, 200);
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed, "{job:?}");
    let outcome = job.outcome.unwrap();
    assert!(outcome.contains("workflow.timeout"), "{outcome}");
    assert!(outcome.contains("the customer was told"), "{outcome}");
    app.stop().await;

    let messages = sent_messages(&env, &h).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        form_field(&messages[0], "Author").as_deref(),
        Some("system")
    );
    assert_eq!(
        form_field(&messages[0], "Body").as_deref(),
        Some(ORPHAN_MESSAGE)
    );
    let closes = close_requests(&env, &h).await;
    assert_eq!(closes.len(), 1);
    assert_eq!(form_field(&closes[0], "Status").as_deref(), Some("closed"));
    // Before closing, TaskRouter was asked for the conversation's other live tasks.
    let lookups: Vec<Request> = env.taskrouter.received_requests().await.unwrap();
    let expression = format!("conversationSid == \"{}\"", h.ch);
    assert!(lookups.iter().any(|r| r
        .url
        .query_pairs()
        .any(|(k, v)| k == "EvaluateTaskAttributes" && v == expression)));
}

#[tokio::test]
async fn repeated_events_and_a_timeout_followed_by_its_cancel_close_once_and_tell_once() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    for event_type in ["workflow.timeout", "workflow.timeout", "task.canceled"] {
        assert_eq!(
            send_event(&app, event_type, &h.wt, "{}").await,
            200,
            "{event_type}"
        );
    }
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed);
    // A late duplicate, after the close: still nothing more.
    assert_eq!(send_event(&app, "task.canceled", &h.wt, "{}").await, 200);
    app.stop().await;

    assert_eq!(sent_messages(&env, &h).await.len(), 1);
    assert_eq!(close_requests(&env, &h).await.len(), 1);
    let jobs = store
        .for_conversation(&ConversationSid::parse(&h.ch).unwrap())
        .await
        .unwrap();
    let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
    assert_eq!(kinds, [JobKind::Interaction, JobKind::Close]);
}

#[tokio::test]
async fn a_conversation_another_task_still_has_is_kept_open() {
    let env = Env::new().await;
    let h = Handoff::new();
    let transfer = random_sid("WT");
    create_interaction()
        .respond_with(h.created())
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    live_tasks(
        &env,
        serde_json::json!([
            {"sid": h.wt, "assignment_status": "canceled"},
            {"sid": transfer, "assignment_status": "assigned"},
        ]),
    )
    .await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    assert_eq!(send_event(&app, "task.canceled", &h.wt, "{}").await, 200);
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::KeptOpen);
    assert_eq!(
        job.outcome.as_deref(),
        Some(format!("kept open: task {transfer} is assigned").as_str())
    );
    app.stop().await;
    assert!(
        sent_messages(&env, &h).await.is_empty(),
        "the agent still has the customer"
    );
    assert!(close_requests(&env, &h).await.is_empty());
}

#[tokio::test]
async fn a_kept_open_conversation_is_closed_when_its_last_task_ends() {
    let env = Env::new().await;
    let h = Handoff::new();
    let transfer = random_sid("WT");
    flex_and_conversations(&env, &h).await;
    // The first lookup finds the transfer still live; later ones find nothing.
    env.taskrouter.reset().await;
    live_tasks(
        &env,
        serde_json::json!([{"sid": transfer, "assignment_status": "reserved"}]),
    )
    .await;
    let app = TestApp::start(&env, &[]).await;
    let store = hand_off(&env, &app, &h).await;

    send_event(&app, "task.canceled", &h.wt, "{}").await;
    let kept = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(kept.state, JobState::KeptOpen);

    env.taskrouter.reset().await;
    no_live_tasks(&env).await;
    // The transfer's task is not the one flexhook created, but Flex's attributes name the
    // conversation flexhook handed off: its end re-arms the close job.
    assert_eq!(
        send_event(&app, "workflow.timeout", &transfer, &h.flex_attributes(),).await,
        200
    );
    let closed = wait_for_kind(&store, JobKind::Close, &h.ch, |j| {
        j.state == JobState::Closed
    })
    .await;
    assert!(closed.outcome.unwrap().contains("workflow.timeout"));
    assert_eq!(closed.task_sid.unwrap().as_str(), transfer);
    // A late event for the first task changes nothing: the conversation is closed.
    send_event(&app, "task.deleted", &h.wt, "{}").await;
    app.stop().await;
    assert_eq!(close_requests(&env, &h).await.len(), 1);
    assert!(
        sent_messages(&env, &h).await.is_empty(),
        "no orphan_message is configured"
    );
    let job = store.find(JobKind::Close, &h.ch).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Closed);
}

#[tokio::test]
async fn an_event_for_a_task_flexhook_does_not_know_does_nothing() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    // A task of a conversation flexhook never saw, even with Flex's attributes: adoption is
    // off by default.
    let stranger = Handoff::new();
    assert_eq!(
        send_event(
            &app,
            "task.canceled",
            &stranger.wt,
            &stranger.flex_attributes(),
        )
        .await,
        200
    );
    assert!(store
        .find(JobKind::Close, &stranger.ch)
        .await
        .unwrap()
        .is_none());
    assert!(store.find(JobKind::Close, &h.ch).await.unwrap().is_none());
    app.stop().await;
    assert!(close_requests(&env, &stranger).await.is_empty());
    assert!(close_requests(&env, &h).await.is_empty());
}

#[tokio::test]
async fn with_adoption_a_studio_routed_conversation_gets_the_same_safety_net() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &[("lifecycle.adopt_flex_tasks", "true")]).await;
    // No webhook ever reached flexhook: Studio created this task.
    assert_eq!(
        send_event(&app, "workflow.timeout", &h.wt, &h.flex_attributes()).await,
        200
    );
    let store = env.store().await;
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed, "{job:?}");
    assert_eq!(job.task_sid.unwrap().as_str(), h.wt);

    // Attributes that cannot be read: acknowledged, nothing done.
    let other = Handoff::new();
    assert_eq!(
        send_event(&app, "task.canceled", &other.wt, "{not json").await,
        200
    );
    assert!(store
        .find(JobKind::Close, &other.ch)
        .await
        .unwrap()
        .is_none());
    app.stop().await;
    assert_eq!(close_requests(&env, &h).await.len(), 1);
    // Unscoped: the service of a conversation flexhook never saw is unknown.
    assert!(close_requests(&env, &other).await.is_empty());
}

#[tokio::test]
async fn a_flex_500_on_the_close_is_retried_and_the_channel_closed_once() {
    let env = Env::new().await;
    let h = Handoff::new();
    Mock::given(method("POST"))
        .and(path(h.close_path().as_str()))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.flex)
        .await;
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    send_event(&app, "workflow.timeout", &h.wt, "{}").await;
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed, "{job:?}");
    assert_eq!(job.attempts, 2);
    app.stop().await;
    assert_eq!(
        close_requests(&env, &h).await.len(),
        2,
        "one 500, one success"
    );
    assert_eq!(
        sent_messages(&env, &h).await.len(),
        1,
        "the retry does not tell the customer again"
    );
}

#[tokio::test]
async fn a_channel_flex_already_closed_counts_as_closed() {
    let env = Env::new().await;
    let h = Handoff::new();
    Mock::given(method("POST"))
        .and(path(h.close_path().as_str()))
        .respond_with(twilio_error(400, 19025, "Channel validation error"))
        .with_priority(1)
        .mount(&env.flex)
        .await;
    Mock::given(method("GET"))
        .and(path(h.close_path().as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"sid": h.uo, "status": "closed"})),
        )
        .mount(&env.flex)
        .await;
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &[]).await;
    let store = hand_off(&env, &app, &h).await;

    send_event(&app, "task.system-deleted", &h.wt, "{}").await;
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed, "{job:?}");
    assert!(job.outcome.unwrap().starts_with("already closed"));
    app.stop().await;
}

#[tokio::test]
async fn refused_events_do_nothing_and_other_events_are_acknowledged() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;
    let event = || task_event("workflow.timeout", &h.wt, "{}");

    let forged = app
        .post_signed(event())
        .to(TASKROUTER)
        .signed_with_token("not-the-token")
        .send()
        .await;
    assert_eq!(forged.status(), 403);
    let unsigned = app
        .post_signed(event())
        .to(TASKROUTER)
        .unsigned()
        .send()
        .await;
    assert_eq!(unsigned.status(), 403);
    let other_account = with(event(), "AccountSid", &random_sid("AC"));
    let response = app.post_signed(other_account).to(TASKROUTER).send().await;
    assert_eq!(response.status(), 403);
    let other_workspace = with(event(), "WorkspaceSid", &random_sid("WS"));
    let response = app.post_signed(other_workspace).to(TASKROUTER).send().await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        "WorkspaceSid does not match this service's workspace"
    );
    let malformed = without(event(), "WorkspaceSid");
    assert_eq!(
        app.post_signed(malformed)
            .to(TASKROUTER)
            .send()
            .await
            .status(),
        400
    );
    for ignored in ["task.created", "reservation.accepted", "task.completed"] {
        assert_eq!(
            send_event(&app, ignored, &h.wt, "{}").await,
            200,
            "{ignored}"
        );
    }
    assert!(store.find(JobKind::Close, &h.ch).await.unwrap().is_none());
    app.stop().await;
    assert_untouched(&env, &h).await;
}

#[tokio::test]
async fn a_store_that_cannot_take_the_close_job_answers_503() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &[("store.busy_timeout_ms", "200")]).await;
    let store = hand_off(&env, &app, &h).await;

    let lock = env.lock_database().await;
    assert_eq!(send_event(&app, "workflow.timeout", &h.wt, "{}").await, 503);
    lock.release().await;
    // TaskRouter retries; now it is stored and done.
    assert_eq!(send_event(&app, "workflow.timeout", &h.wt, "{}").await, 200);
    let job = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(job.state, JobState::Closed);
    app.stop().await;
}

async fn timer_updates(env: &Env, h: &Handoff) -> Vec<Request> {
    let conversation = format!("/v1/Services/{SERVICE}/Conversations/{}", h.ch);
    requests_to(
        &env.conversations.received_requests().await.unwrap(),
        "POST",
        &conversation,
    )
}

#[tokio::test]
async fn close_timers_are_set_at_the_hand_off_when_configured() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    Mock::given(method("POST"))
        .and(path(
            format!("/v1/Services/{SERVICE}/Conversations/{}", h.ch).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": h.ch})))
        .mount(&env.conversations)
        .await;
    let app = TestApp::start(
        &env,
        &[
            ("lifecycle.close_after", "24h"),
            ("lifecycle.inactive_after", "90m"),
        ],
    )
    .await;
    let store = hand_off(&env, &app, &h).await;
    let job = wait_until_finished(&store, JobKind::Timers, &h.ch).await;
    assert_eq!(job.state, JobState::Set, "{job:?}");
    app.stop().await;

    let updates = timer_updates(&env, &h).await;
    assert_eq!(updates.len(), 1);
    assert_eq!(
        form_field(&updates[0], "Timers.Closed").as_deref(),
        Some("PT24H")
    );
    assert_eq!(
        form_field(&updates[0], "Timers.Inactive").as_deref(),
        Some("PT1H30M")
    );
}

#[tokio::test]
async fn no_timers_are_set_unless_configured_and_tasks_are_named_like_studios() {
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &[]).await;
    let store = hand_off(&env, &app, &h).await;
    app.stop().await;
    assert!(store.find(JobKind::Timers, &h.ch).await.unwrap().is_none());
    assert!(timer_updates(&env, &h).await.is_empty());

    let creates = requests_to(
        &env.flex.received_requests().await.unwrap(),
        "POST",
        "/v1/Interactions",
    );
    let routing = form_json(&creates[0].body, "Routing");
    let attributes = &routing["properties"]["attributes"];
    for key in ["name", "customerName", "from", "customerAddress"] {
        assert_eq!(attributes[key], "+14155550100", "{key}");
    }
    assert_eq!(attributes["channelType"], "sms");
    assert_eq!(attributes["conversationSid"], h.ch.as_str());
}

/// Answers as `template`, and says when a request has arrived (before any delay).
struct Noticed {
    template: ResponseTemplate,
    arrived: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl wiremock::Respond for Noticed {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrived
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.template.clone()
    }
}

/// The live-task list answers `tasks` once, after `delay`, before the answers of a lower
/// `priority` (a higher number); the flag says when that list was asked for.
async fn live_tasks_once(
    env: &Env,
    tasks: serde_json::Value,
    delay: Duration,
    priority: u8,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let arrived = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    live_task_list()
        .respond_with(Noticed {
            template: live_task_page(tasks).set_delay(delay),
            arrived: arrived.clone(),
        })
        .up_to_n_times(1)
        .with_priority(priority)
        .mount(&env.taskrouter)
        .await;
    arrived
}

#[tokio::test]
async fn a_kept_open_conversation_is_closed_when_the_task_that_kept_it_open_completes() {
    // A cold transfer: the first agent's task wraps up while the transfer's task times out
    // in its workflow. The wrap-up keeps the conversation open; when that agent completes,
    // nobody is left, so the customer is told and the channel closed.
    let env = Env::new().await;
    let h = Handoff::new();
    let transfer = random_sid("WT");
    flex_and_conversations(&env, &h).await;
    live_tasks_once(
        &env,
        serde_json::json!([{"sid": h.wt, "assignment_status": "wrapping"}]),
        Duration::ZERO,
        1,
    )
    .await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    let transfer_attributes = h.flex_attributes();
    assert_eq!(
        send_event(&app, "workflow.timeout", &transfer, &transfer_attributes).await,
        200
    );
    let kept = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(kept.state, JobState::KeptOpen, "{kept:?}");
    assert!(kept.outcome.unwrap().contains("wrapping"));

    assert_eq!(send_event(&app, "task.completed", &h.wt, "{}").await, 200);
    let closed = wait_for_kind(&store, JobKind::Close, &h.ch, |j| {
        j.state == JobState::Closed
    })
    .await;
    assert!(closed.outcome.unwrap().contains("task.completed"));
    app.stop().await;
    assert_eq!(close_requests(&env, &h).await.len(), 1);
    assert_eq!(sent_messages(&env, &h).await.len(), 1);
}

#[tokio::test]
async fn a_completed_task_with_no_kept_open_close_job_is_left_alone() {
    // The usual end: an agent handled the customer and completed the task.
    let env = Env::new().await;
    let h = Handoff::new();
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;
    assert_eq!(
        send_event(&app, "task.completed", &h.wt, &h.flex_attributes()).await,
        200
    );
    // A close job is queued before the event's 200 (`task_ended` runs within the request),
    // so a wrongly queued one would be in the store by now; none means none can run.
    assert!(store.find(JobKind::Close, &h.ch).await.unwrap().is_none());
    app.stop().await;
    assert_untouched(&env, &h).await;
}

#[tokio::test]
async fn a_task_that_ends_while_its_close_job_is_in_flight_is_looked_at_again() {
    // The close job reads the live tasks and sees the transfer still assigned; before it
    // records `kept_open`, the transfer's own end arrives. That end must not be lost.
    let env = Env::new().await;
    let h = Handoff::new();
    let transfer = random_sid("WT");
    flex_and_conversations(&env, &h).await;
    let asked = live_tasks_once(
        &env,
        serde_json::json!([{"sid": transfer, "assignment_status": "assigned"}]),
        Duration::from_millis(700),
        1,
    )
    .await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    assert_eq!(send_event(&app, "workflow.timeout", &h.wt, "{}").await, 200);
    // The close job is now waiting on its (slow) live-task list.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !asked.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "no live-task lookup");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        send_event(&app, "task.canceled", &transfer, &h.flex_attributes()).await,
        200
    );
    let closed = wait_for_kind(&store, JobKind::Close, &h.ch, |j| {
        j.state == JobState::Closed
    })
    .await;
    assert!(closed.outcome.is_some());
    app.stop().await;
    assert_eq!(close_requests(&env, &h).await.len(), 1);
    assert_eq!(sent_messages(&env, &h).await.len(), 1);
}

#[tokio::test]
async fn the_orphan_message_is_sent_once_across_a_retry_a_kept_open_and_a_re_arm() {
    let env = Env::new().await;
    let h = Handoff::new();
    let transfer = random_sid("WT");
    // The first close fails after the customer was told; by the retry a transfer has the
    // customer; when the transfer times out, the job is re-armed and closes.
    Mock::given(method("POST"))
        .and(path(h.close_path().as_str()))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.flex)
        .await;
    flex_and_conversations(&env, &h).await;
    live_tasks_once(&env, serde_json::json!([]), Duration::ZERO, 1).await;
    live_tasks_once(
        &env,
        serde_json::json!([{"sid": transfer, "assignment_status": "assigned"}]),
        Duration::ZERO,
        2,
    )
    .await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    send_event(&app, "workflow.timeout", &h.wt, "{}").await;
    let kept = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(kept.state, JobState::KeptOpen, "{kept:?}");
    send_event(&app, "workflow.timeout", &transfer, &h.flex_attributes()).await;
    let closed = wait_for_kind(&store, JobKind::Close, &h.ch, |j| {
        j.state == JobState::Closed
    })
    .await;
    assert!(closed.outcome.is_some());
    app.stop().await;
    assert_eq!(
        close_requests(&env, &h).await.len(),
        2,
        "one 500, one close"
    );
    assert_eq!(
        sent_messages(&env, &h).await.len(),
        1,
        "told once, across the retry, the kept-open and the re-arm"
    );
}

#[tokio::test]
async fn a_retried_dead_close_job_really_tells_the_customer() {
    let env = Env::new().await;
    let h = Handoff::new();
    // TaskRouter refuses the live-task list once (a 4xx: the job dies before it told the
    // customer anything); the operator fixes it and retries.
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .respond_with(twilio_error(403, 20403, "Forbidden"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.taskrouter)
        .await;
    flex_and_conversations(&env, &h).await;
    let app = TestApp::start(&env, &with_message()).await;
    let store = hand_off(&env, &app, &h).await;

    send_event(&app, "workflow.timeout", &h.wt, "{}").await;
    let dead = wait_until_finished(&store, JobKind::Close, &h.ch).await;
    assert_eq!(dead.state, JobState::Dead, "{dead:?}");
    assert!(sent_messages(&env, &h).await.is_empty());
    let ch = ConversationSid::parse(&h.ch).unwrap();
    assert_eq!(store.retry_dead(Some(&ch)).await.unwrap(), 1);
    let closed = wait_for_kind(&store, JobKind::Close, &h.ch, |j| {
        j.state == JobState::Closed
    })
    .await;
    assert!(closed.outcome.unwrap().contains("the customer was told"));
    app.stop().await;
    assert_eq!(sent_messages(&env, &h).await.len(), 1);
    assert_eq!(close_requests(&env, &h).await.len(), 1);
}

//! Replies to conversations an agent left or parked (`lifecycle.reengage`), on the real app
//! with wiremock standing in for Flex, Conversations and TaskRouter: with "flexhook", the
//! task's end gives the conversation a webhook again, and the customer's reply becomes
//! exactly one invite, across repeated deliveries and a restart; with "flex", flexhook does
//! nothing. A left channel is never closed as an orphan.

mod common;

use common::*;
use flexhook::store::{Job, JobKind, JobState, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const BASE: &str = "https://flexhook.example.com";
const TASKROUTER: &str = "/webhooks/taskrouter";
const CUSTOMER: &str = "whatsapp:+34600111222";
const AGENT: &str = "WK11111111111111111111111111111111";

/// One conversation handed off, then left by its agent.
struct Left {
    ch: String,
    kd: String,
    uo: String,
    wt: String,
}

impl Left {
    fn new() -> Self {
        Self {
            ch: random_sid("CH"),
            kd: random_sid("KD"),
            uo: random_sid("UO"),
            wt: random_sid("WT"),
        }
    }

    fn channel(&self) -> String {
        format!("/v1/Interactions/{}/Channels/{}", self.kd, self.uo)
    }

    fn webhooks(&self) -> String {
        format!("/v1/Services/{SERVICE}/Conversations/{}/Webhooks", self.ch)
    }

    /// The episode's webhook URL, as the watch job must give it.
    fn episode_path(&self) -> String {
        format!("/webhooks/conversations?reengage={}", self.wt)
    }

    /// What TaskRouter posts when the agent's task ends.
    fn completed(&self) -> Vec<(String, String)> {
        let attributes = serde_json::json!({
            "conversationSid": self.ch,
            "flexInteractionSid": self.kd,
            "flexInteractionChannelSid": self.uo,
            "customerAddress": CUSTOMER,
        })
        .to_string();
        [
            ("EventType", "task.completed"),
            ("AccountSid", ACCOUNT),
            ("WorkspaceSid", WORKSPACE),
            ("TaskSid", self.wt.as_str()),
            ("TaskAttributes", attributes.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// Flex creates the interaction, its channel is `status`, and invites are accepted;
/// webhooks can be listed (none), added and removed; no task is live.
async fn twilio(env: &Env, left: &Left, status: &str) {
    create_interaction()
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": left.kd,
            "channel": {"type": "whatsapp", "sid": left.uo},
            "routing": {"properties": {"sid": left.wt, "workspace_sid": WORKSPACE}},
        })))
        .mount(&env.flex)
        .await;
    Mock::given(method("GET"))
        .and(path(left.channel()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"sid": left.uo, "status": status})),
        )
        .mount(&env.flex)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/Invites", left.channel())))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("KG")})),
        )
        .mount(&env.flex)
        .await;
    Mock::given(method("POST"))
        .and(path(left.channel()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"sid": left.uo, "status": "closed"})),
        )
        .mount(&env.flex)
        .await;
    webhooks_are_removable(env).await;
    Mock::given(method("GET"))
        .and(path(left.webhooks()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"webhooks": [], "meta": {"next_page_url": null}}),
            ),
        )
        .mount(&env.conversations)
        .await;
    Mock::given(method("POST"))
        .and(path(left.webhooks()))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("WH")})),
        )
        .mount(&env.conversations)
        .await;
    live_tasks(&env.taskrouter, serde_json::json!([])).await;
}

async fn live_tasks(taskrouter: &MockServer, tasks: serde_json::Value) {
    taskrouter.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"tasks": tasks, "meta": {"next_page_url": null}}),
            ),
        )
        .mount(taskrouter)
        .await;
}

fn requests<'a>(all: &'a [Request], verb: &str, at: &str) -> Vec<&'a Request> {
    all.iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .collect()
}

async fn invites(env: &Env, left: &Left) -> Vec<Request> {
    let all = env.flex.received_requests().await.unwrap();
    requests(&all, "POST", &format!("{}/Invites", left.channel()))
        .into_iter()
        .cloned()
        .collect()
}

async fn webhook_adds(env: &Env, left: &Left) -> Vec<Request> {
    let all = env.conversations.received_requests().await.unwrap();
    requests(&all, "POST", &left.webhooks())
        .into_iter()
        .cloned()
        .collect()
}

fn reengaging() -> Vec<(&'static str, &'static str)> {
    vec![
        ("server.public_base_url", BASE),
        ("lifecycle.reengage", "flexhook"),
    ]
}

/// The customer's reply through the episode's webhook, delivery `retry` of it.
async fn reply(app: &TestApp, left: &Left, message_sid: &str, retry: u32) -> u16 {
    let body = with(
        with(message(&left.ch, CUSTOMER), "MessageSid", message_sid),
        "RetryCount",
        &retry.to_string(),
    );
    app.post_signed(body)
        .to(&left.episode_path())
        .called_at(BASE)
        .send()
        .await
        .status()
        .as_u16()
}

async fn hand_off_and_leave(env: &Env, app: &TestApp, left: &Left) -> Store {
    hand_off_and_leave_in(env.store().await, app, left).await
}

/// The same, with the job's store (SQLite's file, or a PostgreSQL database) given.
async fn hand_off_and_leave_in(store: Store, app: &TestApp, left: &Left) -> Store {
    hand_off(&store, app, left).await;
    // The hand-off's timers (when set) are set long before an agent leaves.
    if store
        .find(JobKind::Timers, &left.ch)
        .await
        .unwrap()
        .is_some()
    {
        wait_for_kind(&store, JobKind::Timers, &left.ch, |j| {
            j.state == JobState::Set
        })
        .await;
    }
    leave(app, left).await;
    store
}

/// The customer's first message, and its interaction created.
async fn hand_off(store: &Store, app: &TestApp, left: &Left) {
    let first = app
        .post_signed(message(&left.ch, CUSTOMER))
        .called_at(BASE)
        .send()
        .await;
    assert_eq!(first.status(), 200);
    wait_for_state(store, &left.ch, JobState::Created).await;
}

/// The agent who had the customer accepted, then left: the task completes.
async fn leave(app: &TestApp, left: &Left) {
    let accepted = [
        ("EventType", "reservation.accepted"),
        ("AccountSid", ACCOUNT),
        ("WorkspaceSid", WORKSPACE),
        ("TaskSid", left.wt.as_str()),
        ("WorkerSid", AGENT),
        (
            "TaskAttributes",
            &serde_json::json!({"customerAddress": CUSTOMER}).to_string(),
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<Vec<_>>();
    for event in [accepted, left.completed()] {
        let response = app
            .post_signed(event)
            .to(TASKROUTER)
            .called_at(BASE)
            .send()
            .await;
        assert_eq!(response.status(), 200);
    }
}

async fn episode_job(store: &Store, kind: JobKind, left: &Left, state: JobState) -> Job {
    let key = format!("{}/{}", left.ch, left.wt);
    wait_for_kind(store, kind, &key, |j| j.state == state).await
}

#[tokio::test]
async fn a_reply_to_a_left_channel_makes_one_invite_with_the_attributes_resent_across_deliveries_and_a_restart(
) {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    let app = TestApp::start(&env, &reengaging()).await;
    let store = hand_off_and_leave(&env, &app, &left).await;

    // The task's end gives the conversation a webhook for the episode.
    let watch = episode_job(&store, JobKind::Watch, &left, JobState::Watching).await;
    assert!(watch.outcome.unwrap().contains("listens for the reply"));
    let adds = webhook_adds(&env, &left).await;
    assert_eq!(adds.len(), 1);
    assert_eq!(
        form_value(&adds[0].body, "Configuration.Url"),
        format!("{BASE}{}", left.episode_path())
    );
    assert_eq!(
        form_value(&adds[0].body, "Configuration.Filters"),
        "onMessageAdded"
    );

    // The reply, delivered three times.
    let sid = random_sid("IM");
    for retry in 0..3 {
        assert_eq!(reply(&app, &left, &sid, retry).await, 200);
    }
    // The invite is recorded first; its webhook's removal follows, and is recorded then.
    let key = format!("{}/{}", left.ch, left.wt);
    let invite = wait_for_kind(&store, JobKind::Invite, &key, |j| {
        j.state != JobState::Pending && j.webhook_removed
    })
    .await;
    assert_eq!(invite.state, JobState::Invited, "{invite:?}");
    app.stop().await;

    // A restart, and Twilio delivers it once more.
    let app = TestApp::start(&env, &reengaging()).await;
    assert_eq!(reply(&app, &left, &sid, 3).await, 200);
    let sent = invites(&env, &left).await;
    assert_eq!(sent.len(), 1, "exactly one invite");
    let routing = form_json(&sent[0].body, "Routing");
    let properties = &routing["properties"];
    assert_eq!(properties["workspace_sid"], WORKSPACE);
    assert_eq!(properties["workflow_sid"], WORKFLOW);
    let attributes = &properties["attributes"];
    assert_eq!(
        attributes["conversationSid"],
        left.ch.as_str(),
        "{attributes}"
    );
    assert_eq!(
        attributes["customerAddress"], CUSTOMER,
        "resent: {attributes}"
    );
    assert_eq!(attributes["channelType"], "whatsapp");
    assert_eq!(
        attributes["lastWorkerSid"], AGENT,
        "the agent who left: {attributes}"
    );

    // The invited task is live; another reply through the episode's webhook invites none.
    live_tasks(
        &env.taskrouter,
        serde_json::json!([{"sid": random_sid("WT"), "assignment_status": "pending"}]),
    )
    .await;
    assert_eq!(reply(&app, &left, &random_sid("IM"), 0).await, 200);
    app.stop().await;
    assert_eq!(invites(&env, &left).await.len(), 1, "still one invite");
    let closes = requests(
        &env.flex.received_requests().await.unwrap(),
        "POST",
        &left.channel(),
    )
    .len();
    assert_eq!(closes, 0, "a left channel is not closed");
}

#[tokio::test]
async fn with_reengage_flex_flexhook_neither_watches_nor_invites() {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    let app = TestApp::start(
        &env,
        &[
            ("server.public_base_url", BASE),
            ("flex.remove_webhook_after_handoff", "false"),
        ],
    )
    .await;
    let store = hand_off_and_leave(&env, &app, &left).await;
    // The conversation's own webhook still delivers the reply: a later message, known.
    let later = app
        .post_signed(message(&left.ch, CUSTOMER))
        .called_at(BASE)
        .send()
        .await;
    assert_eq!(later.status(), 200);
    app.stop().await;
    let key = format!("{}/{}", left.ch, left.wt);
    assert!(store.find(JobKind::Watch, &key).await.unwrap().is_none());
    assert!(store.find(JobKind::Invite, &key).await.unwrap().is_none());
    assert!(webhook_adds(&env, &left).await.is_empty());
    assert!(invites(&env, &left).await.is_empty());
}

#[tokio::test]
async fn a_channel_still_active_gets_no_webhook_and_an_orphaned_left_one_is_not_closed() {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "active").await;
    let app = TestApp::start(&env, &reengaging()).await;
    let store = hand_off_and_leave(&env, &app, &left).await;
    let watch = episode_job(&store, JobKind::Watch, &left, JobState::Ignored).await;
    assert!(watch.outcome.unwrap().contains("is active"));
    assert!(webhook_adds(&env, &left).await.is_empty());
    app.stop().await;

    // Another conversation, left by its agent; then its task times out as if orphaned.
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    let app = TestApp::start(&env, &[]).await;
    let first = app.post_signed(message(&left.ch, CUSTOMER)).send().await;
    assert_eq!(first.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &left.ch, JobState::Created).await;
    let timeout = with(
        with(left.completed(), "EventType", "workflow.timeout"),
        "TaskSid",
        &left.wt,
    );
    let response = app.post_signed(timeout).to(TASKROUTER).send().await;
    assert_eq!(response.status(), 200);
    let close = wait_for_kind(&store, JobKind::Close, &left.ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    assert_eq!(close.state, JobState::KeptOpen, "{close:?}");
    assert!(close.outcome.unwrap().contains("inactive"));
    app.stop().await;
    let closes = requests(
        &env.flex.received_requests().await.unwrap(),
        "POST",
        &left.channel(),
    )
    .len();
    assert_eq!(closes, 0);
}

/// One form field of a request's body.
fn form_value(body: &[u8], field: &str) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {field} in {}", String::from_utf8_lossy(body)))
}

async fn timers_settable(env: &Env, left: &Left) {
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/Services/{SERVICE}/Conversations/{}",
            left.ch
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": left.ch})))
        .mount(&env.conversations)
        .await;
}

#[tokio::test]
async fn a_parked_conversation_s_close_timer_is_lifted_and_set_again_once_the_reply_is_invited() {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    timers_settable(&env, &left).await;
    let mut settings = reengaging();
    settings.push(("lifecycle.close_after", "24h"));
    let app = TestApp::start(&env, &settings).await;
    let store = hand_off_and_leave(&env, &app, &left).await;
    wait_for_kind(&store, JobKind::Timers, &left.ch, |j| {
        j.state == JobState::Set
    })
    .await;
    let watch = episode_job(&store, JobKind::Watch, &left, JobState::Watching).await;
    assert!(watch.outcome.unwrap().contains("P90D"));
    assert_eq!(
        closed_timers(&env, &left.ch).await,
        ["PT24H", "P90D"],
        "lifted while parked"
    );

    assert_eq!(reply(&app, &left, &random_sid("IM"), 0).await, 200);
    episode_job(&store, JobKind::Invite, &left, JobState::Invited).await;
    app.stop().await;
    assert_eq!(
        closed_timers(&env, &left.ch).await,
        ["PT24H", "P90D", "PT24H"],
        "the hand-off's timer again once a task has the customer"
    );
}

#[tokio::test]
async fn a_late_hand_off_timers_job_leaves_the_lifted_close_timer_alone() {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    // Twilio refuses the hand-off's timers until after the watch has lifted them: the timers
    // job is still being retried when the agent leaves, and after.
    let back = Arc::new(AtomicBool::new(false));
    let is_back = back.clone();
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/Services/{SERVICE}/Conversations/{}",
            left.ch
        )))
        .respond_with(move |r: &Request| {
            if form_value(&r.body, "Timers.Closed") == "P90D" || is_back.load(Ordering::SeqCst) {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": r.url.path()}))
            } else {
                twilio_error(500, 20500, "Internal Server Error")
            }
        })
        .mount(&env.conversations)
        .await;
    let mut settings = reengaging();
    settings.push(("lifecycle.close_after", "24h"));
    let app = TestApp::start(&env, &settings).await;
    let store = env.store().await;
    hand_off(&store, &app, &left).await;
    let failing = wait_for_kind(&store, JobKind::Timers, &left.ch, |j| j.attempts >= 2).await;
    assert_eq!(failing.state, JobState::Pending, "{failing:?}");

    leave(&app, &left).await;
    episode_job(&store, JobKind::Watch, &left, JobState::Watching).await;
    back.store(true, Ordering::SeqCst);
    let timers = wait_for_kind(&store, JobKind::Timers, &left.ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    app.stop().await;
    assert_eq!(timers.state, JobState::Ignored, "{timers:?}");
    assert!(timers.outcome.unwrap().contains("left alone"));
    let sent = closed_timers(&env, &left.ch).await;
    assert_eq!(
        sent.last().map(String::as_str),
        Some("P90D"),
        "the hand-off's late PT24H came after the lift: {sent:?}"
    );
    assert!(
        sent[..sent.len() - 1].iter().all(|t| t == "PT24H"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn with_reengage_flex_a_parked_conversation_s_close_timer_is_still_lifted() {
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    timers_settable(&env, &left).await;
    let app = TestApp::start(
        &env,
        &[
            ("server.public_base_url", BASE),
            ("lifecycle.close_after", "24h"),
        ],
    )
    .await;
    let store = hand_off_and_leave(&env, &app, &left).await;
    let watch = episode_job(&store, JobKind::Watch, &left, JobState::Watching).await;
    app.stop().await;
    assert!(watch.outcome.unwrap().contains("P90D"));
    assert_eq!(closed_timers(&env, &left.ch).await, ["PT24H", "P90D"]);
    assert!(
        webhook_adds(&env, &left).await.is_empty(),
        "Flex routes the reply"
    );
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_make_one_invite_of_a_reply_delivered_to_both() {
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let env = Env::new().await;
    let left = Left::new();
    twilio(&env, &left, "inactive").await;
    let mut settings = reengaging();
    settings.push(("store.url", url.as_str()));
    let (a, b) = tokio::join!(
        TestApp::start(&env, &settings),
        TestApp::start(&env, &settings)
    );
    let store = Store::open(
        &flexhook::domain::DatabaseUrl::new(url.clone()),
        &flexhook::store::StoreOptions {
            busy_timeout: std::time::Duration::from_secs(5),
            clock: env.clock.clone(),
        },
    )
    .await
    .unwrap();
    let store = hand_off_and_leave_in(store, &a, &left).await;
    episode_job(&store, JobKind::Watch, &left, JobState::Watching).await;

    // Twilio delivers the reply to one instance, retries on the other, and so on.
    let sid = random_sid("IM");
    let answers = tokio::join!(
        reply(&a, &left, &sid, 0),
        reply(&b, &left, &sid, 1),
        reply(&a, &left, &sid, 2),
        reply(&b, &left, &sid, 3),
    );
    assert_eq!(answers, (200, 200, 200, 200));
    episode_job(&store, JobKind::Invite, &left, JobState::Invited).await;
    a.stop().await;
    b.stop().await;
    assert_eq!(
        invites(&env, &left).await.len(),
        1,
        "one invite for both instances"
    );
    assert_eq!(
        webhook_adds(&env, &left).await.len(),
        1,
        "one watch for both"
    );
    store.close().await;
}

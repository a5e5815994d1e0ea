//! Known-agent routing on the real app: a TaskRouter `reservation.accepted` teaches flexhook
//! who handled a customer, and that customer's next conversations, within
//! `routing.known_agent_within`, carry `lastWorkerSid` and `lastWorkerAt` to Flex. Time is
//! moved with the app's clock; wiremock stands in for Flex and Conversations.

mod common;

use std::time::Duration;

use common::*;
use flexhook::store::JobState;

const TASKROUTER: &str = "/webhooks/taskrouter";
const CUSTOMER: &str = "whatsapp:+34600111222";
const OTHER_CUSTOMER: &str = "whatsapp:+34600999888";
const AGENT: &str = "WK11111111111111111111111111111111";

const RULES: &str = r#"
[[routing.rules]]
name = "back-to-their-agent"
match = { known_agent = true }
set = { attributes = { preferred = "{last_worker_sid}" } }
"#;

/// An agent accepted a task of `customer`, as TaskRouter posts it to the event callback.
fn accepted(customer: &str, worker: &str) -> Vec<(String, String)> {
    let attributes = serde_json::json!({
        "conversationSid": random_sid("CH"),
        "customerAddress": customer,
        "channelType": "whatsapp",
        "from": customer,
    })
    .to_string();
    [
        ("EventType", "reservation.accepted".to_owned()),
        ("AccountSid", ACCOUNT.to_owned()),
        ("WorkspaceSid", WORKSPACE.to_owned()),
        ("ResourceType", "reservation".to_owned()),
        ("ResourceSid", random_sid("WR")),
        ("TaskSid", random_sid("WT")),
        ("WorkerSid", worker.to_owned()),
        ("WorkerName", "Ana".to_owned()),
        ("ReservationSid", random_sid("WR")),
        ("TaskAttributes", attributes),
        ("Timestamp", "1764950000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn post_accepted(app: &TestApp, customer: &str, worker: &str) {
    let response = app
        .post_signed(accepted(customer, worker))
        .to(TASKROUTER)
        .send()
        .await;
    assert_eq!(response.status(), 200);
}

/// A new conversation of `customer`, handed off; the task attributes Flex was sent.
async fn new_conversation(env: &Env, app: &TestApp, customer: &str) -> serde_json::Value {
    let ch = random_sid("CH");
    assert_eq!(app.post_form(&message(&ch, customer)).await.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    store.close().await;
    let requests = env.flex.received_requests().await.unwrap();
    let create = requests
        .iter()
        .rev()
        .find(|r| {
            r.url.path() == "/v1/Interactions"
                && form_json(&r.body, "Channel")["properties"]["media_channel_sid"] == ch.as_str()
        })
        .expect("the conversation's create");
    form_json(&create.body, "Routing")["properties"]["attributes"].clone()
}

async fn flex_creates(env: &Env) {
    create_interaction()
        .respond_with(created("CH00000000000000000000000000000000"))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(env).await;
}

#[tokio::test]
async fn a_returning_customer_s_task_names_the_agent_who_took_them_until_known_agent_within_passes()
{
    let env = Env::new().await;
    flex_creates(&env).await;
    let app =
        TestApp::start_with_config(&env, &[("routing.known_agent_within", "7d")], Some(RULES))
            .await;

    // Before any agent took them: nothing known.
    let first = new_conversation(&env, &app, CUSTOMER).await;
    assert!(first.get("lastWorkerSid").is_none(), "{first}");

    post_accepted(&app, CUSTOMER, AGENT).await;
    let again = new_conversation(&env, &app, CUSTOMER).await;
    assert_eq!(again["lastWorkerSid"], AGENT, "{again}");
    assert_eq!(again["knownAgent"], true, "{again}");
    assert_eq!(
        again["preferred"], AGENT,
        "{{last_worker_sid}} is filled in"
    );
    let at: jiff::Timestamp = again["lastWorkerAt"].as_str().unwrap().parse().unwrap();
    let age = jiff::Timestamp::now().as_second() - at.as_second();
    assert!(
        (0..60).contains(&age),
        "lastWorkerAt is when it was accepted: {again}"
    );

    let other = new_conversation(&env, &app, OTHER_CUSTOMER).await;
    assert!(
        other.get("lastWorkerSid").is_none(),
        "another customer's: {other}"
    );
    assert!(other.get("preferred").is_none(), "{other}");

    // Six days on, still within; eight days on, not.
    env.clock.advance(Duration::from_secs(6 * 86_400));
    let within = new_conversation(&env, &app, CUSTOMER).await;
    assert_eq!(within["lastWorkerSid"], AGENT, "{within}");
    env.clock.advance(Duration::from_secs(2 * 86_400));
    let later = new_conversation(&env, &app, CUSTOMER).await;
    assert!(
        later.get("lastWorkerSid").is_none(),
        "past known_agent_within: {later}"
    );
    assert!(later.get("lastWorkerAt").is_none(), "{later}");
    assert!(later.get("knownAgent").is_none(), "{later}");
    app.stop().await;
}

#[tokio::test]
async fn the_latest_agent_wins_and_the_store_keeps_no_address_only_a_key() {
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start(&env, &[]).await;
    post_accepted(&app, CUSTOMER, AGENT).await;
    let second = "WK22222222222222222222222222222222";
    post_accepted(&app, CUSTOMER, second).await;
    let attributes = new_conversation(&env, &app, CUSTOMER).await;
    assert_eq!(attributes["lastWorkerSid"], second, "{attributes}");
    app.stop().await;

    let db = sqlx_dump(
        &env,
        "SELECT customer_key || ' ' || worker_sid FROM known_agents",
    )
    .await;
    assert_eq!(db.len(), 1, "one row per customer: {db:?}");
    assert!(
        !db[0].contains("600111222"),
        "no address in the store: {db:?}"
    );
}

#[tokio::test]
async fn with_known_agent_within_empty_nothing_is_stored_and_no_task_carries_an_agent() {
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start(&env, &[("routing.known_agent_within", "")]).await;
    post_accepted(&app, CUSTOMER, AGENT).await;
    let attributes = new_conversation(&env, &app, CUSTOMER).await;
    assert!(attributes.get("lastWorkerSid").is_none(), "{attributes}");
    app.stop().await;
    let db = sqlx_dump(&env, "SELECT worker_sid FROM known_agents").await;
    assert!(db.is_empty(), "{db:?}");
}

#[tokio::test]
async fn an_accepted_reservation_without_a_customer_or_of_another_workspace_teaches_nothing() {
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start(&env, &[]).await;
    let mut no_customer = accepted(CUSTOMER, AGENT);
    for (k, v) in &mut no_customer {
        if k == "TaskAttributes" {
            *v = r#"{"channelType":"web"}"#.into();
        }
    }
    let response = app.post_signed(no_customer).to(TASKROUTER).send().await;
    assert_eq!(response.status(), 200, "acknowledged, nothing to remember");
    let mut elsewhere = accepted(CUSTOMER, AGENT);
    for (k, v) in &mut elsewhere {
        if k == "WorkspaceSid" {
            *v = "WS99999999999999999999999999999999".into();
        }
    }
    let response = app.post_signed(elsewhere).to(TASKROUTER).send().await;
    assert_eq!(
        response.status(),
        403,
        "another workspace's events are refused"
    );
    let attributes = new_conversation(&env, &app, CUSTOMER).await;
    assert!(attributes.get("lastWorkerSid").is_none(), "{attributes}");
    app.stop().await;
}

/// The first column of every row `query` returns, read from the test's database file.
async fn sqlx_dump(env: &Env, query: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut db = sqlx::SqliteConnection::connect(&env.db_url())
        .await
        .unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(query).fetch_all(&mut db).await.unwrap();
    rows.into_iter().map(|(v,)| v).collect()
}

#[tokio::test]
async fn a_store_that_cannot_take_the_agent_answers_503_so_taskrouter_tries_again() {
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start(&env, &[("store.busy_timeout_ms", "200")]).await;
    let lock = env.lock_database().await;
    let response = app
        .post_signed(accepted(CUSTOMER, AGENT))
        .to(TASKROUTER)
        .send()
        .await;
    assert_eq!(response.status(), 503);
    lock.release().await;

    post_accepted(&app, CUSTOMER, AGENT).await;
    let attributes = new_conversation(&env, &app, CUSTOMER).await;
    assert_eq!(attributes["lastWorkerSid"], AGENT, "{attributes}");
    app.stop().await;
}

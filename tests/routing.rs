//! Routing rules on the real app: the route a rule gives reaches Flex, a rule's reply is
//! posted once however often Twilio delivers, an out-of-hours rule creates no task, and the
//! address the customer wrote to comes from `?address=`, the binding, or a participant
//! lookup. wiremock stands in for Twilio.

mod common;

use common::*;
use flexhook::store::{JobKind, JobState};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, ResponseTemplate};

const ES_WORKFLOW: &str = "WW22222222222222222222222222222222";
const CLOSED_REPLY: &str = "We're closed. We open Monday to Friday 9:00-18:00.";

/// `common::message` is sent on Sunday 2026-11-22 10:00Z: closed by this schedule.
const RULES: &str = r#"
[[routing.schedules]]
name = "weekdays"
timezone = "Europe/Madrid"
open = ["mon-fri 09:00-18:00"]

[[routing.rules]]
name = "vip"
match = { attributes = { vip = true } }
set = { priority = 50, attributes = { tier = "{attributes.tier}" } }

[[routing.rules]]
name = "spanish-line"
match = { address = ["whatsapp:+15550003333"] }
set = { workflow_sid = "WW22222222222222222222222222222222", attributes = { team = "es", line = "{address}" } }

[[routing.rules]]
name = "closed"
when = "closed:weekdays"
reply = "We're closed. We open Monday to Friday 9:00-18:00."
action = "ignore"
"#;

/// The same rules, but out of hours the task is still created after the reply.
fn route_when_closed() -> String {
    RULES.replace("action = \"ignore\"", "action = \"route\"")
}

async fn messages_posted(env: &Env, ch: &str) -> Vec<Request> {
    let messages = format!("/v1/Services/{SERVICE}/Conversations/{ch}/Messages");
    env.conversations
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == messages)
        .collect()
}

async fn creates(env: &Env) -> Vec<Request> {
    env.flex
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1/Interactions")
        .collect()
}

async fn replies_accepted(env: &Env) {
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("IM")})),
        )
        .mount(&env.conversations)
        .await;
}

#[tokio::test]
async fn out_of_hours_the_reply_is_posted_once_and_no_task_is_created() {
    let env = Env::new().await;
    create_interaction()
        .respond_with(created("CH0"))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    replies_accepted(&env).await;
    let app = TestApp::start_with_config(&env, &[], Some(RULES)).await;
    let ch = random_sid("CH");
    let first = message(&ch, "+14155550100");
    // Twilio's retries of the first delivery, and a later message.
    for delivery in [
        first.clone(),
        with(first.clone(), "RetryCount", "1"),
        with(first.clone(), "RetryCount", "2"),
        with(message(&ch, "+14155550100"), "Index", "1"),
    ] {
        assert_eq!(app.post_form(&delivery).await.status(), 200);
    }
    let store = env.store().await;
    let reply = wait_for_kind(&store, JobKind::Reply, &ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    assert_eq!(reply.state, JobState::Sent, "{reply:?}");
    let job = wait_for_state(&store, &ch, JobState::Ignored).await;
    assert!(job.outcome.unwrap().contains("`closed`"));
    app.stop().await;
    let posted = messages_posted(&env, &ch).await;
    assert_eq!(posted.len(), 1, "one reply, however often Twilio delivers");
    let body: Vec<(String, String)> = form_urlencoded::parse(&posted[0].body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert!(
        body.contains(&("Body".to_owned(), CLOSED_REPLY.to_owned())),
        "{body:?}"
    );
    assert!(creates(&env).await.is_empty(), "no task out of hours");
}

#[tokio::test]
async fn a_rule_may_reply_and_still_create_the_task() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    replies_accepted(&env).await;
    let app = TestApp::start_with_config(&env, &[], Some(&route_when_closed())).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    wait_for_kind(&store, JobKind::Reply, &ch, |j| j.state == JobState::Sent).await;
    app.stop().await;
    assert_eq!(messages_posted(&env, &ch).await.len(), 1);
    assert_eq!(creates(&env).await.len(), 1);
}

#[tokio::test]
async fn the_address_from_the_webhook_url_picks_the_rule_and_its_route_reaches_flex() {
    the_address_in_this_webhook_url_picks_the_spanish_line(
        "/webhooks/conversations?address=whatsapp%3A%2B15550003333",
    )
    .await;
}

/// As the README writes it, and as Twilio calls it: a raw `+` in `?address=` is a `+` (an
/// address never holds a space), and the signature still covers the URL as written.
#[tokio::test]
async fn a_raw_plus_in_the_address_of_the_webhook_url_is_a_plus_not_a_space() {
    the_address_in_this_webhook_url_picks_the_spanish_line(
        "/webhooks/conversations?address=whatsapp:+15550003333",
    )
    .await;
}

/// A signed first message to `route` is routed by the `spanish-line` address rule.
async fn the_address_in_this_webhook_url_picks_the_spanish_line(route: &str) {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start_with_config(&env, &[], Some(&route_when_closed())).await;
    replies_accepted(&env).await;
    // The address configuration's URL carries the address (`flexhook address connect`).
    let response = app
        .post_signed(message(&ch, "whatsapp:+34600111222"))
        .to(route)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    app.stop().await;
    let sent = creates(&env).await;
    let routing = form_json(&sent[0].body, "Routing");
    let p = &routing["properties"];
    assert_eq!(p["workflow_sid"], ES_WORKFLOW);
    assert_eq!(p["attributes"]["team"], "es");
    assert_eq!(p["attributes"]["line"], "whatsapp:+15550003333");
    assert!(
        messages_posted(&env, &ch).await.is_empty(),
        "the Spanish line matched first: no reply"
    );
}

#[tokio::test]
async fn without_the_address_in_the_payload_the_worker_looks_up_the_participant_once() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let participants = format!("/v1/Services/{SERVICE}/Conversations/{ch}/Participants");
    Mock::given(method("GET"))
        .and(path(participants.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "participants": [
                {"sid": random_sid("MB"), "messaging_binding": null},
                {"sid": random_sid("MB"), "messaging_binding": {
                    "type": "whatsapp", "address": "whatsapp:+34600111222",
                    "proxy_address": "whatsapp:+15550003333"}},
            ],
            "meta": {"page": 0, "page_size": 50, "key": "participants", "next_page_url": null},
        })))
        .expect(1)
        .mount(&env.conversations)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"sid": ch, "attributes": "{}"})),
        )
        .mount(&env.conversations)
        .await;
    let app = TestApp::start_with_config(&env, &[], Some(&route_when_closed())).await;
    replies_accepted(&env).await;
    let bare = without(
        message(&ch, "whatsapp:+34600111222"),
        "MessagingBinding.ProxyAddress",
    );
    assert_eq!(app.post_form(&bare).await.status(), 200);
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    app.stop().await;
    assert_eq!(
        flexhook::jobs::routing(&job).unwrap().address.as_deref(),
        Some("whatsapp:+15550003333"),
        "the looked-up address is kept with the job"
    );
    let routing = form_json(&creates(&env).await[0].body, "Routing");
    assert_eq!(routing["properties"]["workflow_sid"], ES_WORKFLOW);
}

#[tokio::test]
async fn the_conversations_attributes_are_read_for_rules_that_match_on_them() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let conversation = format!("/v1/Services/{SERVICE}/Conversations/{ch}");
    Mock::given(method("GET"))
        .and(path(conversation.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "sid": ch, "attributes": "{\"vip\": true, \"tier\": \"gold\"}",
        })))
        .expect(1)
        .mount(&env.conversations)
        .await;
    let app = TestApp::start_with_config(&env, &[], Some(RULES)).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    app.stop().await;
    let routing = form_json(&creates(&env).await[0].body, "Routing");
    assert_eq!(routing["properties"]["priority"], 50);
    assert_eq!(routing["properties"]["attributes"]["tier"], "gold");
}

#[tokio::test]
async fn a_customer_turned_away_out_of_hours_who_writes_again_in_hours_gets_a_task() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(created(&ch))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    replies_accepted(&env).await;
    let app = TestApp::start_with_config(&env, &[], Some(RULES)).await;
    let store = env.store().await;
    // Sunday 10:00Z: closed. The customer is told so, and no task is made.
    assert_eq!(
        app.post_form(&message(&ch, "+14155550100")).await.status(),
        200
    );
    wait_for_state(&store, &ch, JobState::Ignored).await;
    wait_for_kind(&store, JobKind::Reply, &ch, |j| j.state == JobState::Sent).await;
    // Sunday 20:00Z: still closed. Decided again: no second reply, still no task.
    let evening = with(
        message(&ch, "+14155550100"),
        "DateCreated",
        "2026-11-22T20:00:00Z",
    );
    assert_eq!(
        app.post_form(&with(evening, "Index", "1")).await.status(),
        200
    );
    let again = wait_for_state(&store, &ch, JobState::Ignored).await;
    assert!(again.outcome.unwrap().contains("`closed`"));
    assert!(creates(&env).await.is_empty());
    // Monday 10:00Z, 11:00 in Madrid: open. The conversation gets its task now.
    let monday = with(
        message(&ch, "+14155550100"),
        "DateCreated",
        "2026-11-23T10:00:00Z",
    );
    assert_eq!(
        app.post_form(&with(monday, "Index", "2")).await.status(),
        200
    );
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert!(job.task_sid.is_some());
    // Later messages of the routed conversation change nothing.
    let later = with(
        message(&ch, "+14155550100"),
        "DateCreated",
        "2026-11-23T10:05:00Z",
    );
    assert_eq!(
        app.post_form(&with(later, "Index", "3")).await.status(),
        200
    );
    app.stop().await;
    assert_eq!(creates(&env).await.len(), 1, "one task");
    assert_eq!(messages_posted(&env, &ch).await.len(), 1, "one reply");
}

#[tokio::test]
async fn flex_s_acceptance_survives_a_failed_fact_lookup_and_the_create_is_never_sent_again() {
    // Flex accepts the create but its answer is unreadable; the address the customer wrote
    // to (a rule needs it) is looked up again on the retry and that lookup fails with a
    // 503; TaskRouter never shows the task. The create must still never be sent again.
    let env = Env::new().await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>OK</html>"))
        .mount(&env.flex)
        .await;
    tasks_are_empty(&env).await;
    webhooks_are_removable(&env).await;
    let participants = format!("/v1/Services/{SERVICE}/Conversations/{ch}/Participants");
    let none = serde_json::json!({
        "participants": [],
        "meta": {"page": 0, "page_size": 50, "key": "participants", "next_page_url": null},
    });
    Mock::given(method("GET"))
        .and(path(participants.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(none.clone()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.conversations)
        .await;
    Mock::given(method("GET"))
        .and(path(participants.as_str()))
        .respond_with(twilio_error(503, 20503, "Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&env.conversations)
        .await;
    Mock::given(method("GET"))
        .and(path(participants.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(none))
        .mount(&env.conversations)
        .await;
    let app = TestApp::start_with_config(&env, &[], Some(&route_when_closed())).await;
    let first = without(
        message(&ch, "+14155550100"),
        "MessagingBinding.ProxyAddress",
    );
    assert_eq!(app.post_form(&first).await.status(), 200);
    let store = env.store().await;
    let job = wait_for_state(&store, &ch, JobState::Created).await;
    assert!(job.task_sid.is_none(), "{job:?}");
    app.stop().await;
    assert_eq!(
        creates(&env).await.len(),
        1,
        "accepted once, never sent again"
    );
}

#[tokio::test]
async fn a_retried_dead_reply_is_really_sent() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    webhooks_are_removable(&env).await;
    // Conversations refuses the reply once (a 4xx: the job dies, nothing was posted).
    Mock::given(method("POST"))
        .respond_with(twilio_error(400, 50413, "Invalid author"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.conversations)
        .await;
    replies_accepted(&env).await;
    let app = TestApp::start_with_config(&env, &[], Some(RULES)).await;
    assert_eq!(
        app.post_form(&message(&ch, "+14155550100")).await.status(),
        200
    );
    let store = env.store().await;
    let dead = wait_for_kind(&store, JobKind::Reply, &ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    assert_eq!(dead.state, JobState::Dead, "{dead:?}");
    let conversation = flexhook::domain::ConversationSid::parse(&ch).unwrap();
    assert_eq!(store.retry_dead(Some(&conversation)).await.unwrap(), 1);
    let sent = wait_for_kind(&store, JobKind::Reply, &ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    assert_eq!(sent.state, JobState::Sent, "{sent:?}");
    assert!(sent.outcome.unwrap().ends_with("reply sent"));
    app.stop().await;
    assert_eq!(
        messages_posted(&env, &ch).await.len(),
        2,
        "refused once, then really sent"
    );
}

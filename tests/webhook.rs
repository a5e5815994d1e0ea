//! The webhook, black-box: a signed first message → one interaction → one webhook DELETE;
//! everything unsigned or foreign is refused and sends nothing.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use flexhook::signature::Algorithm;
use flexhook::store::JobState;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

fn basic_auth() -> String {
    let raw = format!("{ACCOUNT}:{TOKEN}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn mount_happy_path(env: &Env, conversation: &str) {
    create_interaction()
        .respond_with(created(conversation))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(env).await;
}

async fn flex_requests(env: &Env) -> Vec<wiremock::Request> {
    env.flex.received_requests().await.unwrap()
}

#[tokio::test]
async fn a_signed_first_message_creates_one_interaction_then_removes_the_webhook() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[("flex.task_attributes", r#"{"team":"support"}"#)]).await;
    let ch = random_sid("CH");
    create_interaction()
        .and(header("authorization", basic_auth().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(created(&ch))
        .expect(1)
        .mount(&env.flex)
        .await;
    let delete_path = format!("/v1/Services/{SERVICE}/Conversations/{ch}/Webhooks/{WEBHOOK}");
    Mock::given(method("DELETE"))
        .and(path(delete_path.as_str()))
        .and(header("authorization", basic_auth().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&env.conversations)
        .await;

    let response = app.post_form(&message(&ch, "whatsapp:+34600111222")).await;
    assert_eq!(response.status(), 200);

    let store = env.store().await;
    let job = wait_for_job(&store, &ch, Duration::from_secs(10), |j| {
        j.state == JobState::Created && j.webhook_removed
    })
    .await;
    assert_eq!(
        job.interaction_sid.unwrap().as_str(),
        "KD0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        job.interaction_channel_sid.unwrap().as_str(),
        "UO0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        job.task_sid.unwrap().as_str(),
        "WT0123456789abcdef0123456789abcdef"
    );

    let requests = flex_requests(&env).await;
    let channel = form_json(&requests[0].body, "Channel");
    assert_eq!(channel["type"], "whatsapp");
    assert_eq!(channel["initiated_by"], "customer");
    assert_eq!(channel["properties"]["media_channel_sid"], ch.as_str());
    let routing = form_json(&requests[0].body, "Routing");
    let p = &routing["properties"];
    assert_eq!(p["workspace_sid"], WORKSPACE);
    assert_eq!(p["workflow_sid"], WORKFLOW);
    assert_eq!(p["task_channel_unique_name"], "chat");
    assert_eq!(p["attributes"]["from"], "whatsapp:+34600111222");
    assert_eq!(p["attributes"]["customerAddress"], "whatsapp:+34600111222");
    assert_eq!(p["attributes"]["conversationSid"], ch.as_str());
    assert_eq!(p["attributes"]["channelType"], "whatsapp");
    assert_eq!(p["attributes"]["team"], "support");
    app.stop().await;
}

#[tokio::test]
async fn later_messages_and_repeated_deliveries_of_a_conversation_create_nothing() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let first = message(&ch, "+14155550100");
    assert_eq!(app.post_form(&first).await.status(), 200);
    // Twilio's retry of the same delivery, before the job is even done.
    let retry = with(first.clone(), "RetryCount", "1");
    assert_eq!(app.post_form(&retry).await.status(), 200);
    let store = env.store().await;
    let created = wait_for_state(&store, &ch, JobState::Created).await;
    for i in 1..4 {
        let later = with(message(&ch, "+14155550100"), "Index", &i.to_string());
        assert_eq!(app.post_form(&later).await.status(), 200);
    }
    // A 200 comes after its job is committed: a later message that made the job due again
    // would show here.
    let job = stored_job(&store, &ch).await.unwrap();
    assert_eq!(job.state, JobState::Created);
    assert_eq!(job.attempts, created.attempts);
    // Stopped, the worker has finished every attempt it started: a second create is counted.
    app.stop().await;
    assert_eq!(flex_requests(&env).await.len(), 1);
}

/// Each refusal: its status, and no job, so that the worker has nothing to send to Flex.
/// Returns the reason given.
async fn assert_refused(env: &Env, ch: &str, response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let text = response.text().await.unwrap();
    let job = stored_job(&env.store().await, ch).await;
    assert!(job.is_none(), "no job may be stored: {job:?}");
    text
}

/// Stops the app, so that the worker has finished anything it started, then checks that
/// nothing reached Flex.
async fn stop_then_assert_nothing_reached_flex(app: TestApp, env: &Env) {
    app.stop().await;
    let requests = flex_requests(env).await;
    assert!(requests.is_empty(), "nothing may reach Flex: {requests:?}");
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let params = message(&ch, "+14155550100");
    let response = app
        .post_signed(params.clone())
        .tampered(with(params, "Author", "+14155550199"))
        .send()
        .await;
    let reason = assert_refused(&env, &ch, response, 403).await;
    assert_eq!(reason, "invalid signature");
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn a_request_signed_with_another_token_is_refused() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let response = app
        .post_signed(message(&ch, "+14155550100"))
        .signed_with_token("some-other-token")
        .send()
        .await;
    assert_refused(&env, &ch, response, 403).await;
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn a_request_without_a_signature_is_refused() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let response = app
        .post_signed(message(&ch, "+14155550100"))
        .unsigned()
        .send()
        .await;
    let reason = assert_refused(&env, &ch, response, 403).await;
    assert_eq!(reason, "missing X-Twilio-Signature header");
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn a_correctly_signed_message_from_another_account_is_refused() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let params = with(
        message(&ch, "+14155550100"),
        "AccountSid",
        "AC99999999999999999999999999999999",
    );
    let response = app.post_form(&params).await;
    let reason = assert_refused(&env, &ch, response, 403).await;
    assert!(reason.contains("AccountSid"), "{reason}");
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn bodies_too_large_of_the_wrong_type_or_malformed_get_their_own_status() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[("server.max_body_bytes", "2048")]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;

    let big = with(message(&ch, "+14155550100"), "Body", &"x".repeat(4096));
    let response = app.post_form(&big).await;
    assert_refused(&env, &ch, response, 413).await;

    let text = Body::Raw {
        content_type: "text/plain",
        bytes: b"hello".to_vec(),
    };
    let response = app
        .post_signed(text)
        .with_signature("irrelevant")
        .send()
        .await;
    assert_refused(&env, &ch, response, 415).await;

    // Signed correctly, but the ConversationSid is not a conversation SID.
    let bad = with(
        message(&ch, "+14155550100"),
        "ConversationSid",
        "CHnot-a-sid",
    );
    let response = app.post_form(&bad).await;
    let reason = assert_refused(&env, &ch, response, 400).await;
    assert!(reason.contains("ConversationSid"), "{reason}");
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn events_other_than_message_added_are_acknowledged_and_ignored() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let params = with(
        message(&ch, "+14155550100"),
        "EventType",
        "onParticipantAdded",
    );
    let response = app.post_form(&params).await;
    assert_refused(&env, &ch, response, 200).await;
    stop_then_assert_nothing_reached_flex(app, &env).await;
}

#[tokio::test]
async fn a_json_body_signed_with_body_sha256_is_accepted() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let body = serde_json::json!({"conversation": {
        "EventType": "onMessageAdded", "AccountSid": ACCOUNT, "ChannelSid": ch,
        "InstanceSid": SERVICE, "From": "web-visitor-7", "Body": "hi", "Index": "0", "Source": "SDK"
    }})
    .to_string();
    let response = app.post_signed(Body::Json(body.clone())).send().await;
    assert_eq!(response.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    let requests = flex_requests(&env).await;
    assert_eq!(form_json(&requests[0].body, "Channel")["type"], "web");

    // The same body with one byte changed no longer matches its bodySHA256.
    let ch2 = random_sid("CH");
    let tampered = body.replace(&ch, &ch2);
    let response = app
        .post_signed(Body::Json(body))
        .tampered(Body::Json(tampered))
        .send()
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        "bodySHA256 does not match the body"
    );
    app.stop().await;
}

#[tokio::test]
async fn shared_keys_and_the_secondary_token_sign_too_and_unknown_keys_are_refused() {
    let env = Env::new().await;
    let app = TestApp::start(
        &env,
        &[
            (
                "twilio.webhook_shared_keys",
                "key_old=old-secret,key_new=new-secret",
            ),
            ("twilio.secondary_auth_token", "previous-token"),
        ],
    )
    .await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;

    let response = app
        .post_signed(message(&ch, "+14155550100"))
        .signed_with_shared_key("key_new", "new-secret", Algorithm::HmacSha256)
        .send()
        .await;
    assert_eq!(response.status(), 200);

    let unknown = app
        .post_signed(message(&random_sid("CH"), "+14155550100"))
        .signed_with_shared_key("key_gone", "new-secret", Algorithm::HmacSha256)
        .send()
        .await;
    assert_eq!(unknown.status(), 403);
    assert_eq!(unknown.text().await.unwrap(), "unknown SharedKey id");

    let ch3 = random_sid("CH");
    let response = app
        .post_signed(message(&ch3, "+14155550100"))
        .signed_with_token("previous-token")
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let store = env.store().await;
    wait_for_state(&store, &ch, JobState::Created).await;
    wait_for_state(&store, &ch3, JobState::Created).await;
    app.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_the_public_base_url_is_what_is_checked() {
    let env = Env::new().await;
    let app = TestApp::start(
        &env,
        &[("server.public_base_url", "https://flexhook.example.com")],
    )
    .await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let response = app
        .post_signed(message(&ch, "+14155550100"))
        .called_at("https://flexhook.example.com")
        .send()
        .await;
    assert_eq!(response.status(), 200);
    // Signed over the URL this service sees locally: not what Twilio would have signed.
    let local = app
        .post_form(&message(&random_sid("CH"), "+14155550100"))
        .await;
    assert_eq!(local.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn forwarded_headers_are_trusted_only_when_configured() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    for (trust, expected) in [("false", 403), ("true", 200)] {
        let app = TestApp::start(&env, &[("server.trust_forwarded_headers", trust)]).await;
        let response = app
            .post_signed(message(&random_sid("CH"), "+14155550100"))
            .called_at("https://abc.tunnel.example")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "abc.tunnel.example")
            .send()
            .await;
        assert_eq!(
            response.status(),
            expected,
            "trust_forwarded_headers={trust}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn flex_answering_500_still_gets_twilio_its_200_and_the_error_code_is_kept() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    create_interaction()
        .respond_with(
            twilio_error(500, 20500, "Internal Server Error").set_delay(Duration::from_millis(300)),
        )
        .mount(&env.flex)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_tasks()))
        .mount(&env.taskrouter)
        .await;
    let response = app.post_form(&message(&ch, "+14155550100")).await;
    assert_eq!(response.status(), 200);
    let store = env.store().await;
    let job = wait_for_job(&store, &ch, Duration::from_secs(10), |j| j.attempts >= 1).await;
    assert_eq!(job.state, JobState::Pending);
    let error = job.last_error.unwrap();
    assert_eq!(error.code, Some(20500));
    assert_eq!(error.status, Some(500));
    assert!(
        job.create_may_have_gone_out,
        "a 5xx may have created the task: look before retrying"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_is_kept_when_removal_is_off_and_unscoped_without_a_service() {
    let env = Env::new().await;
    let ch_kept = random_sid("CH");
    create_interaction()
        .respond_with(ResponseTemplate::new(201).set_body_json(interaction_created(&ch_kept)))
        .mount(&env.flex)
        .await;
    let app = TestApp::start(&env, &[("flex.remove_webhook_after_handoff", "false")]).await;
    app.post_form(&message(&ch_kept, "+14155550100")).await;
    let store = env.store().await;
    wait_for_state(&store, &ch_kept, JobState::Created).await;
    app.stop().await;
    assert!(env
        .conversations
        .received_requests()
        .await
        .unwrap()
        .is_empty());

    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    Mock::given(method("DELETE"))
        .and(path(
            format!("/v1/Conversations/{ch}/Webhooks/{WEBHOOK}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&env.conversations)
        .await;
    app.post_form(&without(message(&ch, "+14155550100"), "ChatServiceSid"))
        .await;
    wait_for_job(&store, &ch, Duration::from_secs(10), |j| j.webhook_removed).await;
    app.stop().await;
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn with_public_base_url_ngrok_the_agents_tunnel_is_the_url_signatures_are_checked_against() {
    let env = Env::new().await;
    let port = free_port();
    let agent = wiremock::MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/tunnels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tunnels": [
                {"public_url": "https://other.ngrok.app", "proto": "https",
                 "config": {"addr": "http://localhost:3000"}},
                {"public_url": "http://abc.ngrok.app", "proto": "http",
                 "config": {"addr": format!("localhost:{port}")}},
                {"public_url": "https://abc.ngrok.app", "proto": "https",
                 "config": {"addr": format!("http://localhost:{port}")}},
            ]
        })))
        .mount(&agent)
        .await;
    let port_text = port.to_string();
    let app = TestApp::start(
        &env,
        &[
            ("server.port", port_text.as_str()),
            ("server.public_base_url", "ngrok"),
            ("server.ngrok_api_url", agent.uri().as_str()),
        ],
    )
    .await;
    let ch = random_sid("CH");
    mount_happy_path(&env, &ch).await;
    let response = app
        .post_signed(message(&ch, "+14155550100"))
        .called_at("https://abc.ngrok.app")
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let elsewhere = app
        .post_signed(message(&random_sid("CH"), "+14155550100"))
        .called_at("https://other.ngrok.app")
        .send()
        .await;
    assert_eq!(elsewhere.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn with_public_base_url_ngrok_and_no_agent_start_up_says_to_run_ngrok_http() {
    let env = Env::new().await;
    let port = free_port().to_string();
    let no_agent = format!("http://127.0.0.1:{}", free_port());
    let err = flexhook::startup::Application::build(env.settings(&[
        ("server.port", port.as_str()),
        ("server.public_base_url", "ngrok"),
        ("server.ngrok_api_url", no_agent.as_str()),
    ]))
    .await
    .err()
    .expect("no agent, no start");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("ngrok http {port}")), "{text}");
}

//! `GET /metrics`: never public by accident (404 unless a token or a port of its own is
//! set; 401 without the token), counts what really happened with bounded labels, reads the
//! store's gauges at scrape time, and every webhook answer carries `X-Request-Id`. The
//! dashboard and alert rules in `deploy/` only query metrics the service really exports.

mod common;

use std::collections::BTreeSet;

use common::*;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

const METRICS_TOKEN: &str = "test-metrics-token-0123456789";
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/flexhook.json");
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");

/// `GET /metrics` on `port`, with `token` as a bearer token: status and text.
async fn scrape_port(port: u16, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The metrics text, with the token, on the webhook port.
async fn scrape(app: &TestApp) -> String {
    let (status, text) = scrape_port(app.port, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The first metrics text (scraped as [`scrape`] does) that satisfies `ready`, within 10 s.
async fn scrape_until(app: &TestApp, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(app).await;
        if ready(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the metrics never got there:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{labels}` (labels exactly as encoded), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
}

/// Every sample name in the text (`flexhook_webhooks_total`, `…_bucket`, …).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn metrics_are_404_unless_a_token_or_a_port_is_set() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    assert_eq!(scrape_port(app.port, None).await.0, 404);
    assert_eq!(
        scrape_port(app.port, Some("anything-at-all-123")).await.0,
        404
    );
    assert_eq!(app.metrics_port, None);
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_port_needs_the_bearer_token() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[("server.metrics_token", METRICS_TOKEN)]).await;
    let (status, _) = scrape_port(app.port, None).await;
    assert_eq!(status, 401);
    let (status, _) = scrape_port(app.port, Some("test-metrics-token-0123456788")).await;
    assert_eq!(status, 401, "a wrong token of the same length is refused");
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer",
        "a 401 says how to authenticate"
    );
    let text = scrape(&app).await;
    assert!(text.contains("flexhook_build_info{"), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text: {text}");
    app.stop().await;
}

#[tokio::test]
async fn a_metrics_port_serves_them_without_a_token_and_the_webhook_port_stays_404() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[("server.metrics_port", "0")]).await;
    let port = app.metrics_port.expect("a metrics port was bound");
    assert_ne!(port, app.port);
    let (status, text) = scrape_port(port, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(sample(&text, "flexhook_ready"), Some(1.0), "{text}");
    assert!(
        text.contains(r#"flexhook_build_info{version=""#) && text.contains(r#"store="sqlite"}"#),
        "{text}"
    );
    assert_eq!(scrape_port(app.port, None).await.0, 404);
    // The metrics port serves nothing else.
    let webhook = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status().as_u16(), 404);
    app.stop().await;
}

#[test]
fn bad_metrics_settings_are_refused_naming_the_key() {
    for (key, value, says) in [
        ("server.metrics_token", "short", "at least 16"),
        (
            "server.metrics_port",
            "8080",
            "must differ from server.port",
        ),
        ("server.metrics_port", "ninety", "not a port number"),
    ] {
        let text = settings_error(&[("server.port", "8080"), (key, value)]);
        assert!(
            text.contains(key) && text.contains(says),
            "{key}={value}: {text}"
        );
    }
}

#[tokio::test]
async fn webhooks_are_counted_by_route_event_and_outcome_with_a_request_id_each() {
    let env = Env::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(interaction_created("CH")))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[("server.metrics_token", METRICS_TOKEN)]).await;
    let conversation = random_sid("CH");
    let address = "+14155550123";

    let first = app
        .post_signed(message(&conversation, address))
        .header("I-Twilio-Idempotency-Token", "delivery-token-1")
        .send()
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["x-request-id"],
        "delivery-token-1",
        "Twilio's idempotency token is the request id"
    );
    let later = app
        .post_signed(message(&conversation, address))
        .send()
        .await;
    assert_eq!(later.status(), 200);
    let generated = later.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    let ignored = app
        .post_signed(with(
            message(&conversation, address),
            "EventType",
            "onParticipantAdded",
        ))
        .send()
        .await;
    assert_eq!(ignored.status(), 200);
    let forged = app
        .post_signed(message(&random_sid("CH"), address))
        .with_signature("bm90IGEgc2lnbmF0dXJl")
        .send()
        .await;
    assert_eq!(forged.status(), 403);
    assert!(
        forged.headers().contains_key("x-request-id"),
        "refusals carry an id too"
    );
    let wrong_account = app
        .post_signed(with(
            message(&random_sid("CH"), address),
            "AccountSid",
            "AC99999999999999999999999999999999",
        ))
        .send()
        .await;
    assert_eq!(wrong_account.status(), 403);
    let unreadable = app
        .post_signed(without(
            message(&random_sid("CH"), address),
            "ConversationSid",
        ))
        .send()
        .await;
    assert_eq!(unreadable.status(), 400);
    wait_for_state(
        &env.store().await,
        &conversation,
        flexhook::store::JobState::Created,
    )
    .await;

    let text = scrape(&app).await;
    for (route, event, outcome, count) in [
        ("conversations", "onMessageAdded", "accepted", 1.0),
        ("conversations", "onMessageAdded", "known", 1.0),
        ("conversations", "onParticipantAdded", "ignored", 1.0),
        ("conversations", "unknown", "bad_signature", 1.0),
        ("conversations", "onMessageAdded", "wrong_account", 1.0),
        ("conversations", "unknown", "bad_request", 1.0),
        ("taskrouter", "unknown", "bad_signature", 0.0),
    ] {
        let name = format!(
            r#"flexhook_webhooks_total{{account="default",route="{route}",event="{event}",outcome="{outcome}"}}"#
        );
        assert_eq!(sample(&text, &name), Some(count), "{name} in\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            r#"flexhook_webhook_duration_seconds_count{account="default",route="conversations"}"#
        ),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_total{account="default",kind="interaction",outcome="created",code=""}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_twilio_requests_total{account="default",api="flex",status="200",code=""}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_twilio_request_duration_seconds_count{account="default",api="flex"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // Bounded labels: no SID, address or token in any label value.
    for secret in [conversation.as_str(), address, "delivery-token-1", ACCOUNT] {
        assert!(!text.contains(secret), "{secret} leaked into\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn failures_count_by_twilio_code_and_the_store_gauges_show_the_backlog() {
    let env = Env::new().await;
    // Flex is down with a Twilio error code; jobs stay pending and are retried.
    Mock::given(method("POST"))
        .respond_with(twilio_error(503, 20003, "Service unavailable"))
        .mount(&env.flex)
        .await;
    // A 503 may have created it: each retry looks it up first, and finds none.
    tasks_are_empty(&env).await;
    let app = TestApp::start(
        &env,
        &[
            ("server.metrics_token", METRICS_TOKEN),
            ("worker.retry_base_ms", "200"),
            ("worker.retry_cap_ms", "400"),
        ],
    )
    .await;
    let conversations: Vec<String> = (0..3).map(|_| random_sid("CH")).collect();
    for ch in &conversations {
        assert_eq!(
            app.post_form(&message(ch, "+14155550100")).await.status(),
            200
        );
    }
    let store = env.store().await;
    // Scraped once every job has been retried and the oldest has been pending a second.
    let text = scrape_until(&app, |text| {
        let retried = sample(
            text,
            r#"flexhook_jobs_total{account="default",kind="interaction",outcome="retried",code="20003"}"#,
        );
        let age = sample(text, r#"flexhook_oldest_pending_job_age_seconds{account="default"}"#);
        retried.is_some_and(|n| n >= 3.0) && age.is_some_and(|a| a >= 1.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_pending{account="default",kind="interaction"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_dead{account="default",kind="interaction"}"#
        ),
        Some(0.0)
    );
    let age = sample(
        &text,
        r#"flexhook_oldest_pending_job_age_seconds{account="default"}"#,
    )
    .unwrap();
    assert!(
        (1.0..60.0).contains(&age),
        "oldest pending age {age}\n{text}"
    );
    let retried = sample(
        &text,
        r#"flexhook_jobs_total{account="default",kind="interaction",outcome="retried",code="20003"}"#,
    )
    .unwrap_or_default();
    assert!(retried >= 3.0, "{text}");
    let calls = sample(
        &text,
        r#"flexhook_twilio_requests_total{account="default",api="flex",status="503",code="20003"}"#,
    )
    .unwrap_or_default();
    assert!(calls >= retried, "every retry was a call: {text}");
    // A retry may be waiting for its turn right now; never more than the three jobs.
    let waiting = sample(&text, "flexhook_rate_limit_queue_depth").unwrap();
    assert!((0.0..=3.0).contains(&waiting), "{text}");

    // A permanent error kills the next attempts: dead, by code, and in the gauges.
    env.flex.reset().await;
    Mock::given(method("POST"))
        .respond_with(twilio_error(400, 20001, "Invalid workflow"))
        .mount(&env.flex)
        .await;
    for ch in &conversations {
        wait_for_state(&store, ch, flexhook::store::JobState::Dead).await;
    }
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_total{account="default",kind="interaction",outcome="dead",code="20001"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_pending{account="default",kind="interaction"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_dead{account="default",kind="interaction"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_jobs_dead_last_hour{account="default",kind="interaction"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_oldest_pending_job_age_seconds{account="default"}"#
        ),
        Some(0.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn taskrouter_events_are_counted_on_their_own_route() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[("server.metrics_token", METRICS_TOKEN)]).await;
    let event = vec![
        ("EventType".to_owned(), "reservation.created".to_owned()),
        ("AccountSid".to_owned(), ACCOUNT.to_owned()),
        ("WorkspaceSid".to_owned(), WORKSPACE.to_owned()),
        ("Sid".to_owned(), random_sid("EV")),
        ("Timestamp".to_owned(), "1700000000".to_owned()),
    ];
    let answer = app
        .post_signed(event)
        .to("/webhooks/taskrouter")
        .send()
        .await;
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("x-request-id"));
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"flexhook_webhooks_total{account="default",route="taskrouter",event="reservation.created",outcome="ignored"}"#
        ),
        Some(1.0),
        "{text}"
    );
    app.stop().await;
}

/// Metric names in a PromQL expression: every `flexhook_…` identifier.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("flexhook_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` string anywhere in a JSON document (Grafana panels' targets).
fn exprs_in_json(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs_in_json(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs_in_json(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_only_query_metrics_the_service_exports() {
    // A scrape after one of everything, so every family has its samples.
    let env = Env::new().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(interaction_created("CH")))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[("server.metrics_token", METRICS_TOKEN)]).await;
    let conversation = random_sid("CH");
    assert_eq!(
        app.post_form(&message(&conversation, "+14155550100"))
            .await
            .status(),
        200
    );
    wait_for_state(
        &env.store().await,
        &conversation,
        flexhook::store::JobState::Created,
    )
    .await;
    let exported = sample_names(&scrape(&app).await);
    app.stop().await;

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut dashboard_exprs = Vec::new();
    exprs_in_json(&dashboard, &mut dashboard_exprs);
    assert!(
        dashboard_exprs.len() >= 6,
        "the dashboard has its panels: {dashboard_exprs:?}"
    );
    // Importable as it is: the data source is an input, not a machine's UID.
    assert!(
        dashboard["__inputs"][0]["type"] == "datasource",
        "{}",
        dashboard["__inputs"]
    );

    let alerts_text = std::fs::read_to_string(ALERTS).unwrap();
    let alerts = &yaml_rust2::YamlLoader::load_from_str(&alerts_text).unwrap()[0];
    let mut alert_exprs = Vec::new();
    let mut alert_names = Vec::new();
    for group in alerts["groups"].as_vec().expect("groups:") {
        for rule in group["rules"].as_vec().expect("rules:") {
            alert_names.push(rule["alert"].as_str().expect("alert:").to_owned());
            alert_exprs.push(rule["expr"].as_str().expect("expr:").to_owned());
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "every alert says what happened: {rule:?}"
            );
        }
    }
    for wanted in [
        "FlexhookOldestPendingJob",
        "FlexhookDeadJobs",
        "FlexhookBadSignatures",
        "FlexhookNotReady",
    ] {
        assert!(
            alert_names.iter().any(|a| a == wanted),
            "{wanted} in {alert_names:?}"
        );
    }

    for expr in dashboard_exprs.iter().chain(&alert_exprs) {
        let names = names_in(expr);
        assert!(!names.is_empty(), "`{expr}` queries no flexhook metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "`{expr}` queries {name}, which flexhook does not export; it exports {exported:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_task_found_after_an_ambiguous_failure_counts_as_adopted_not_created() {
    let env = Env::new().await;
    let ch = random_sid("CH");
    // Flex answers 500: the create may have happened, so the retry looks the task up first.
    create_interaction()
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .expect(1)
        .mount(&env.flex)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tasks": [{
                "sid": "WTfedcba9876543210fedcba9876543210",
                "workspace_sid": WORKSPACE,
                "assignment_status": "pending",
                "attributes": format!("{{\"conversationSid\":\"{ch}\"}}"),
            }],
            "meta": {"page": 0, "page_size": 20, "key": "tasks"}
        })))
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(&env, &[("server.metrics_token", METRICS_TOKEN)]).await;
    assert_eq!(
        app.post_form(&message(&ch, "+14155550100")).await.status(),
        200
    );
    wait_for_state(&env.store().await, &ch, flexhook::store::JobState::Created).await;

    let text = scrape(&app).await;
    let jobs = |outcome: &str, code: &str| {
        let series = format!(
            r#"flexhook_jobs_total{{account="default",kind="interaction",outcome="{outcome}",code="{code}"}}"#
        );
        sample(&text, &series)
    };
    assert_eq!(jobs("retried", "20500"), Some(1.0), "{text}");
    assert_eq!(jobs("adopted", ""), Some(1.0), "{text}");
    assert_eq!(
        jobs("created", ""),
        None,
        "nothing was created twice: {text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"flexhook_twilio_requests_total{account="default",api="taskrouter",status="200",code=""}"#
        ),
        Some(1.0),
        "{text}"
    );
    app.stop().await;
}

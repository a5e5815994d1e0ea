//! `flexhook address`, `flexflow list` and `migrate`, run as the real binary against a
//! wiremock stand-in for Conversations and flex-api.

mod common;

use common::binary::{self, run_blocking, Run, CONFIG_DIR};
use common::twilio_error;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ADDRESS: &str = "whatsapp:+15550001111";
/// The address as one path segment.
const ADDRESS_PATH: &str = "/v1/Configuration/Addresses/whatsapp%3A%2B15550001111";
const IG: &str = "IG0123456789abcdef0123456789abcdef";
const FO: &str = "FO0123456789abcdef0123456789abcdef";
const BASE: &str = "https://flexhook.example.com";
const TARGET: &str =
    "https://flexhook.example.com/webhooks/conversations?address=whatsapp%3A%2B15550001111";

/// `flexhook ARGS` with only these variables, live against `server`, stdin not a terminal.
async fn flexhook(server: &MockServer, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut cmd = binary::flexhook(args);
    cmd.env("FLEXHOOK_CONFIG_DIR", CONFIG_DIR)
        .env(
            "TWILIO_ACCOUNT_SID",
            format!("AC{}", "0123456789abcdef".repeat(2)),
        )
        .env("TWILIO_AUTH_TOKEN", "address-test-token")
        .env("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", server.uri())
        .env("FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL", server.uri())
        .env("FLEXHOOK_SERVER__PUBLIC_BASE_URL", BASE);
    for (name, value) in extra {
        if value.is_empty() {
            cmd.env_remove(name);
        } else {
            cmd.env(name, value);
        }
    }
    run_blocking(cmd).await
}

fn stdout(out: &Run) -> String {
    out.stdout.clone()
}

fn stderr(out: &Run) -> String {
    out.stderr.clone()
}

fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn configuration(auto_creation: Value) -> Value {
    json!({
        "sid": IG, "type": "whatsapp", "address": ADDRESS, "friendly_name": "Support",
        "auto_creation": auto_creation, "address_country": null,
    })
}

fn connected() -> Value {
    configuration(json!({
        "enabled": true, "type": "webhook", "webhook_url": TARGET,
        "webhook_method": "POST", "webhook_filters": ["onMessageAdded"],
    }))
}

async fn posts(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect()
}

#[tokio::test]
async fn connect_creates_the_configuration_and_a_second_connect_changes_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(twilio_error(
            404,
            20404,
            "The requested resource was not found",
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(ResponseTemplate::new(201).set_body_json(connected()))
        .expect(1)
        .mount(&server)
        .await;
    let out = flexhook(
        &server,
        &["address", "connect", ADDRESS, "--type", "whatsapp"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("connected"), "{out:?}");
    let sent = form(&posts(&server).await[0]);
    for (key, value) in [
        ("Type", "whatsapp"),
        ("Address", ADDRESS),
        ("AutoCreation.Enabled", "true"),
        ("AutoCreation.Type", "webhook"),
        ("AutoCreation.WebhookUrl", TARGET),
        ("AutoCreation.WebhookMethod", "post"),
        ("AutoCreation.WebhookFilters", "onMessageAdded"),
    ] {
        assert!(
            sent.contains(&(key.to_owned(), value.to_owned())),
            "{key}={value} in {sent:?}"
        );
    }

    server.reset().await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(connected()))
        .mount(&server)
        .await;
    let out = flexhook(
        &server,
        &["address", "connect", ADDRESS, "--type", "whatsapp"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("nothing to change"), "{out:?}");
    assert!(
        posts(&server).await.is_empty(),
        "the second connect sent nothing"
    );
}

#[tokio::test]
async fn connect_updates_only_the_auto_creation_of_an_existing_configuration() {
    let server = MockServer::start().await;
    let studio = configuration(json!({
        "enabled": true, "type": "studio", "studio_flow_sid": "FW0123456789abcdef0123456789abcdef",
    }));
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(studio))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/Configuration/Addresses/{IG}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(connected()))
        .expect(1)
        .mount(&server)
        .await;
    let dry = flexhook(
        &server,
        &[
            "address",
            "connect",
            ADDRESS,
            "--type",
            "whatsapp",
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert!(dry.status.success(), "{dry:?}");
    assert!(stdout(&dry).contains("studio -> webhook"), "{dry:?}");
    assert!(posts(&server).await.is_empty(), "a dry run sends nothing");
    let out = flexhook(
        &server,
        &["address", "connect", ADDRESS, "--type", "whatsapp"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let sent = form(&posts(&server).await[0]);
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !keys.contains(&"FriendlyName") && !keys.contains(&"Type"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn disconnect_turns_off_only_flexhooks_auto_creation() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(connected()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/Configuration/Addresses/{IG}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(configuration(json!({"enabled": false}))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let out = flexhook(&server, &["address", "disconnect", ADDRESS], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        form(&posts(&server).await[0]),
        [("AutoCreation.Enabled".to_owned(), "false".to_owned())]
    );

    server.reset().await;
    let theirs = configuration(json!({
        "enabled": true, "type": "webhook", "webhook_url": "https://other.example.com/hook",
    }));
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(theirs))
        .mount(&server)
        .await;
    let out = flexhook(&server, &["address", "disconnect", ADDRESS], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("not flexhook's"), "{out:?}");
    assert!(posts(&server).await.is_empty());
}

#[tokio::test]
async fn list_follows_the_pages_to_the_end() {
    let server = MockServer::start().await;
    let page = |n: u32, next: Option<String>| {
        ResponseTemplate::new(200).set_body_json(json!({
            "address_configurations": [configuration(json!({"enabled": false}))
                .as_object().unwrap().clone().into_iter()
                .chain([("address".to_owned(), json!(format!("+1555000000{n}")))])
                .collect::<serde_json::Map<String, Value>>()],
            "meta": {"page": n, "next_page_url": next, "key": "address_configurations"},
        }))
    };
    let next = |n: u32| {
        Some(format!(
            "{}/v1/Configuration/Addresses?PageSize=50&Page={n}&PageToken=PT{n}",
            server.uri()
        ))
    };
    for (n, answer) in [(1, page(1, next(2))), (2, page(2, None))] {
        Mock::given(method("GET"))
            .and(path("/v1/Configuration/Addresses"))
            .and(query_param("Page", n.to_string()))
            .respond_with(answer)
            .expect(2)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/Configuration/Addresses"))
        .and(query_param("Type", "sms"))
        .respond_with(page(0, next(1)))
        .with_priority(10)
        .expect(2)
        .mount(&server)
        .await;
    // Run twice: as a table, then as JSON.
    let out = flexhook(&server, &["address", "list", "--type", "sms"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for n in 0..3 {
        assert!(text.contains(&format!("+1555000000{n}")), "{text}");
    }
    assert!(text.contains("3 address configuration(s)"), "{text}");

    let out = flexhook(
        &server,
        &["address", "list", "--type", "sms", "--json"],
        &[],
    )
    .await;
    let doc: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["address_configurations"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn twilios_errors_are_shown_with_their_code_and_what_they_mean() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(twilio_error(
            404,
            20404,
            "The requested resource was not found",
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(twilio_error(409, 50416, "Address already in use"))
        .mount(&server)
        .await;
    let out = flexhook(&server, &["address", "get", ADDRESS], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("20404: no address configuration for {ADDRESS}")),
        "{out:?}"
    );
    let out = flexhook(
        &server,
        &[
            "address",
            "create",
            "--type",
            "whatsapp",
            "--address",
            ADDRESS,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("50416: Address already in use") && err.contains("Flex Flow"),
        "{err}"
    );
}

#[tokio::test]
async fn create_and_update_send_every_option_as_the_api_names_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(connected()))
        .mount(&server)
        .await;
    let out = flexhook(
        &server,
        &[
            "address",
            "create",
            "--type",
            "sms",
            "--address",
            "+15550001111",
            "--friendly-name",
            "Support",
            "--auto-creation-type",
            "webhook",
            "--webhook-url",
            "https://x.example/h",
            "--webhook-method",
            "GET",
            "--webhook-filter",
            "onMessageAdded",
            "--webhook-filter",
            "onParticipantAdded",
            "--conversation-service-sid",
            "IS0123456789abcdef0123456789abcdef",
            "--address-country",
            "US",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let out = flexhook(
        &server,
        &[
            "address",
            "update",
            IG,
            "--auto-creation-type",
            "studio",
            "--studio-flow-sid",
            "FW0123456789abcdef0123456789abcdef",
            "--studio-retry-count",
            "2",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let sent = posts(&server).await;
    let created = form(&sent[0]);
    assert_eq!(
        created
            .iter()
            .filter(|(k, _)| k == "AutoCreation.WebhookFilters")
            .count(),
        2
    );
    assert!(created.contains(&("AutoCreation.WebhookMethod".into(), "get".into())));
    assert!(created.contains(&("AddressCountry".into(), "US".into())));
    assert_eq!(
        sent[1].url.path(),
        format!("/v1/Configuration/Addresses/{IG}")
    );
    assert!(form(&sent[1]).contains(&("AutoCreation.StudioRetryCount".into(), "2".into())));
}

#[tokio::test]
async fn delete_without_a_terminal_needs_yes() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let out = flexhook(&server, &["address", "delete", ADDRESS], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("--yes"), "{out:?}");
    let out = flexhook(&server, &["address", "delete", ADDRESS, "--yes"], &[]).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn connect_without_a_public_base_url_names_the_setting() {
    let server = MockServer::start().await;
    let out = flexhook(
        &server,
        &["address", "connect", ADDRESS, "--type", "whatsapp"],
        &[("FLEXHOOK_SERVER__PUBLIC_BASE_URL", "")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("server.public_base_url"), "{out:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn flex_flow_holding_the_address(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1/FlexFlows"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "flex_flows": [{
                "sid": FO, "friendly_name": "WhatsApp Flex Flow", "channel_type": "whatsapp",
                "contact_identity": ADDRESS, "enabled": true, "integration_type": "studio",
            }],
            "meta": {"next_page_url": null, "key": "flex_flows"},
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn migrate_prints_the_plan_and_acts_only_with_yes() {
    let server = MockServer::start().await;
    flex_flow_holding_the_address(&server).await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(twilio_error(404, 20404, "not found"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(ResponseTemplate::new(201).set_body_json(connected()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/FlexFlows/{FO}")))
        .and(body_string_contains("Enabled=false"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"sid": FO, "enabled": false})),
        )
        .mount(&server)
        .await;
    let out = flexhook(&server, &["migrate", ADDRESS, "--type", "whatsapp"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(FO) && stdout(&out).contains("--yes"),
        "{out:?}"
    );
    assert!(
        posts(&server).await.is_empty(),
        "the plan alone changes nothing"
    );

    let out = flexhook(
        &server,
        &["migrate", ADDRESS, "--type", "whatsapp", "--yes"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let sent = posts(&server).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].url.path(), "/v1/Configuration/Addresses");
    assert_eq!(sent[1].url.path(), format!("/v1/FlexFlows/{FO}"));
    assert_eq!(form(&sent[1]), [("Enabled".to_owned(), "false".to_owned())]);
    assert!(
        !server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.method.as_str() == "DELETE"),
        "a Flex Flow is never deleted"
    );
}

#[tokio::test]
async fn a_failed_flex_flow_step_says_how_to_undo_the_connect() {
    let server = MockServer::start().await;
    flex_flow_holding_the_address(&server).await;
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(twilio_error(404, 20404, "not found"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(ResponseTemplate::new(201).set_body_json(connected()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/FlexFlows/{FO}")))
        .respond_with(twilio_error(403, 20403, "Forbidden"))
        .mount(&server)
        .await;
    let out = flexhook(
        &server,
        &["migrate", ADDRESS, "--type", "whatsapp", "--yes"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("step 1: done"), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("step 2 failed") && err.contains("20403"),
        "{err}"
    );
    assert!(
        err.contains(&format!("flexhook address delete {ADDRESS} --yes")),
        "{err}"
    );
}

#[tokio::test]
async fn flexflow_list_shows_every_flow() {
    let server = MockServer::start().await;
    flex_flow_holding_the_address(&server).await;
    let out = flexhook(&server, &["flexflow", "list"], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(FO) && stdout(&out).contains(ADDRESS),
        "{out:?}"
    );
    let out = flexhook(&server, &["flexflow", "list", "--json"], &[]).await;
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["flex_flows"][0]["sid"], FO);
}

#[tokio::test]
async fn undoing_a_connect_that_replaced_a_studio_flow_puts_the_flow_back() {
    let server = MockServer::start().await;
    flex_flow_holding_the_address(&server).await;
    let studio = configuration(json!({
        "enabled": true, "type": "studio", "studio_flow_sid": "FW0123456789abcdef0123456789abcdef",
    }));
    Mock::given(method("GET"))
        .and(path(ADDRESS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(studio))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/Configuration/Addresses/{IG}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(connected()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/FlexFlows/{FO}")))
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .mount(&server)
        .await;
    let out = flexhook(
        &server,
        &["migrate", ADDRESS, "--type", "whatsapp", "--yes"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "flexhook address update {ADDRESS} --auto-creation-type 'studio' \
             --studio-flow-sid 'FW0123456789abcdef0123456789abcdef'"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn without_an_account_connect_is_a_dry_run_that_sends_nothing() {
    let server = MockServer::start().await;
    let out = flexhook(
        &server,
        &["address", "connect", ADDRESS, "--type", "whatsapp"],
        &[("TWILIO_ACCOUNT_SID", ""), ("TWILIO_AUTH_TOKEN", "")],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("dry run: nothing was changed"),
        "{out:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

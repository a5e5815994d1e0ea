//! Contract tests: what flexhook sends to Twilio, and how it reads Twilio's answers, checked
//! against Twilio's own OpenAPI spec. The operations flexhook calls are copied from
//! twilio/twilio-oai into `tests/fixtures/twilio/openapi_subset.json` (see the README there);
//! every request below is a real one, captured by wiremock after a real signed webhook.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use common::spec::{
    json_response, match_template, operation, operation_for, response_example, spec,
    success_status, text,
};
use common::*;
use flexhook::store::{Job, JobKind, JobState};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, ResponseTemplate};

const CREATE_INTERACTION: &str = "CreateInteraction";
const DELETE_SERVICE_WEBHOOK: &str = "DeleteServiceConversationScopedWebhook";
const DELETE_WEBHOOK: &str = "DeleteConversationScopedWebhook";
const LIST_TASKS: &str = "ListTask";
const CLOSE_CHANNEL: &str = "UpdateInteractionChannel";
const FETCH_CHANNEL: &str = "FetchInteractionChannel";
const SERVICE_MESSAGE: &str = "CreateServiceConversationMessage";
const MESSAGE: &str = "CreateConversationMessage";
const UPDATE_SERVICE_CONVERSATION: &str = "UpdateServiceConversation";
const UPDATE_CONVERSATION: &str = "UpdateConversation";
const FETCH_WORKSPACE: &str = "FetchWorkspace";
const UPDATE_WORKSPACE: &str = "UpdateWorkspace";

// ---------------------------------------------------------------------------------------
// Reading the fixture
// ---------------------------------------------------------------------------------------

/// The parameters the operation declares `in` path, query…, by name.
fn declared_parameters<'a>(op: &'a Value, location: &str) -> BTreeMap<&'a str, &'a Value> {
    op["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == location)
        .map(|p| (text(&p["name"], "parameter name"), p))
        .collect()
}

/// `^XX[0-9a-fA-F]{N}$`, the only pattern Twilio's specs use for SIDs.
fn matches_sid_pattern(pattern: &str, value: &str) -> bool {
    let inner = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    let (prefix, count) = inner
        .split_once("[0-9a-fA-F]{")
        .and_then(|(prefix, rest)| Some((prefix, rest.strip_suffix('}')?.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    value
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == count && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether a string sent in a path, query or form fits the parameter's schema.
fn assert_fits_schema(name: &str, value: &str, schema: &Value) {
    match schema["type"].as_str() {
        Some("integer") => {
            let n: i64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value} is not the integer the spec declares"));
            if let Some(min) = schema["minimum"].as_i64() {
                assert!(n >= min, "{name}={n} is below the spec's minimum {min}");
            }
            if let Some(max) = schema["maximum"].as_i64() {
                assert!(n <= max, "{name}={n} is above the spec's maximum {max}");
            }
        }
        Some("boolean") => assert!(
            value == "true" || value == "false",
            "{name}={value} is not a boolean"
        ),
        Some("string") => {
            if let Some(allowed) = schema["enum"].as_array() {
                assert!(
                    allowed.iter().any(|a| a == value),
                    "{name}={value} is not one of the spec's {allowed:?}"
                );
            }
            let len = value.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64() {
                assert!(len >= min, "{name}={value} is shorter than {min}");
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                assert!(len <= max, "{name}={value} is longer than {max}");
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                assert!(
                    matches_sid_pattern(pattern, value),
                    "{name}={value} does not match the spec's {pattern}"
                );
            }
        }
        Some("array") | None => {}
        Some(other) => panic!("{name}: schema type {other} is not handled by this test"),
    }
}

/// Each path parameter the operation declares was sent, as the spec says it looks.
fn assert_path_parameters(op: &Value, captured: &BTreeMap<String, String>) {
    let declared = declared_parameters(op, "path");
    let names: BTreeSet<&str> = captured.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        declared.keys().copied().collect::<BTreeSet<&str>>(),
        "path parameters of {}",
        op["operationId"]
    );
    for (name, value) in captured {
        let p = declared[name.as_str()];
        assert_fits_schema(name, value, &p["schema"]);
    }
}

/// The request is authenticated as the operation's `security` requires.
fn assert_authenticated(op: &Value, request: &Request) {
    let requirements = op["security"].as_array().expect("security");
    assert!(
        !requirements.is_empty(),
        "{} has no security",
        op["operationId"]
    );
    let authorization = request
        .headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let satisfied = requirements.iter().any(|requirement| {
        requirement.as_object().unwrap().values().all(|scheme| {
            match (scheme["type"].as_str(), scheme["scheme"].as_str()) {
                (Some("http"), Some("basic")) => authorization
                    .strip_prefix("Basic ")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .is_some_and(|raw| raw == format!("{ACCOUNT}:{TOKEN}").as_bytes()),
                other => panic!("security scheme {other:?} is not handled by this test"),
            }
        })
    });
    assert!(
        satisfied,
        "{} {} is not authenticated as the spec requires: {authorization:?}",
        request.method,
        request.url.path()
    );
}

// ---------------------------------------------------------------------------------------
// Driving flexhook
// ---------------------------------------------------------------------------------------

/// Flex answers `POST /v1/Interactions` with the spec's own example, at the spec's status.
fn spec_created(spec: &Value) -> ResponseTemplate {
    let op = operation(spec, CREATE_INTERACTION);
    ResponseTemplate::new(success_status(op)).set_body_json(response_example(op, None))
}

/// Conversations answers every webhook DELETE with the spec's success status.
async fn webhooks_are_removable_as_specified(env: &Env, spec: &Value) {
    let status = success_status(operation(spec, DELETE_WEBHOOK));
    assert_eq!(
        status,
        success_status(operation(spec, DELETE_SERVICE_WEBHOOK))
    );
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&env.conversations)
        .await;
}

/// Flex fails once with a 500 (so the next attempt looks the task up first), then accepts.
async fn flex_fails_once_then_accepts(env: &Env, spec: &Value) {
    create_interaction()
        .respond_with(twilio_error(500, 20500, "Internal Server Error"))
        .up_to_n_times(1)
        .mount(&env.flex)
        .await;
    create_interaction()
        .respond_with(spec_created(spec))
        .mount(&env.flex)
        .await;
}

async fn interaction_posts(env: &Env) -> usize {
    env.flex
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/Interactions")
        .count()
}

async fn created_and_unhooked(env: &Env, conversation: &str) -> Job {
    let store = env.store().await;
    wait_for_job(&store, conversation, Duration::from_secs(15), |j| {
        j.state == JobState::Created && j.webhook_removed
    })
    .await
}

/// The lookup's task list: the spec's `readFull` example, its one task naming `conversation`
/// (and, as Flex writes them, the interaction and channel of the spec's create example).
fn listed_task_naming(spec: &Value, conversation: &str) -> Value {
    let created = response_example(operation(spec, CREATE_INTERACTION), None);
    let mut page = response_example(operation(spec, LIST_TASKS), Some("readFull")).clone();
    let tasks = page["tasks"].as_array_mut().expect("tasks");
    assert_eq!(tasks.len(), 1, "the spec's readFull example has one task");
    tasks[0]["attributes"] = Value::String(
        json!({
            "conversationSid": conversation,
            "flexInteractionSid": created["sid"],
            "flexInteractionChannelSid": created["channel"]["sid"],
        })
        .to_string(),
    );
    page
}

// ---------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_create_interaction_request_is_a_form_the_spec_declares() {
    let spec = spec();
    let env = Env::new().await;
    Mock::given(method("POST"))
        .respond_with(spec_created(&spec))
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(
        &env,
        &[("flex.priority", "3"), ("flex.task_timeout_secs", "600")],
    )
    .await;
    let ch = random_sid("CH");
    assert_eq!(
        app.post_form(&message(&ch, "whatsapp:+34600111222"))
            .await
            .status(),
        200
    );
    created_and_unhooked(&env, &ch).await;
    app.stop().await;

    let requests = env.flex.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let (op, params) = operation_for(&spec, request.method.as_str(), request.url.path());
    assert_eq!(op["operationId"], CREATE_INTERACTION);
    assert_path_parameters(op, &params);
    assert_authenticated(op, request);
    assert!(
        declared_parameters(op, "query").is_empty() && request.url.query().is_none(),
        "no query string: {}",
        request.url
    );

    let content_type = request
        .headers
        .get("content-type")
        .expect("a content type")
        .to_str()
        .unwrap();
    let media_type = content_type.split(';').next().unwrap().trim();
    assert_eq!(media_type, "application/x-www-form-urlencoded");
    let body = &op["requestBody"]["content"][media_type];
    assert!(body.is_object(), "the spec takes no {media_type} body");
    let properties = body["schema"]["properties"].as_object().unwrap();

    let fields: Vec<(String, String)> = form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names: BTreeSet<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names.len(),
        fields.len(),
        "a field was sent twice: {fields:?}"
    );
    for (name, value) in &fields {
        let property = properties
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a field of the spec's {CREATE_INTERACTION}"));
        assert_fits_schema(name, value, property);
    }
    for required in body["schema"]["required"].as_array().unwrap() {
        let required = text(required, "required field");
        assert!(
            names.contains(required),
            "required field {required} not sent"
        );
    }

    // Channel and Routing are JSON objects sent as strings, and carry at least the keys of the
    // spec's own example request.
    let example = &body["examples"]["create"];
    for field in ["Channel", "Routing"] {
        let sent = form_json(&request.body, field);
        assert!(sent.is_object(), "{field} is not a JSON object: {sent}");
        let shown: Value = serde_json::from_str(text(&example[field], field)).unwrap();
        for key in shown.as_object().expect("example object").keys() {
            assert!(
                sent.get(key).is_some(),
                "{field} lacks {key}, which the spec's example sends: {sent}"
            );
        }
    }
}

#[tokio::test]
async fn the_spec_example_answer_to_create_interaction_fills_the_job_with_its_sids() {
    let spec = spec();
    let example = response_example(operation(&spec, CREATE_INTERACTION), None);
    let env = Env::new().await;
    create_interaction()
        .respond_with(spec_created(&spec))
        .expect(1)
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    app.post_form(&message(&ch, "+14155550100")).await;
    let job = created_and_unhooked(&env, &ch).await;
    app.stop().await;

    let sid = |v: &Value, what: &str| text(v, what).to_owned();
    assert_eq!(
        job.interaction_sid.map(|s| s.as_str().to_owned()),
        Some(sid(&example["sid"], "sid"))
    );
    assert_eq!(
        job.interaction_channel_sid.map(|s| s.as_str().to_owned()),
        Some(sid(&example["channel"]["sid"], "channel.sid"))
    );
    assert_eq!(
        job.task_sid.map(|s| s.as_str().to_owned()),
        Some(sid(
            &example["routing"]["properties"]["sid"],
            "routing.properties.sid"
        ))
    );
}

#[test]
fn every_spec_example_answer_is_read_by_flexhooks_own_parsers() {
    let spec = spec();
    // The parser the worker uses for `POST /v1/Interactions`: each example's SIDs come out.
    let examples = json_response(operation(&spec, CREATE_INTERACTION))["examples"]
        .as_object()
        .expect("the spec has create-interaction examples");
    assert!(!examples.is_empty());
    for (name, example) in examples {
        let body = serde_json::to_vec(example).unwrap();
        let created = flexhook::twilio::parse_created_interaction(&body)
            .unwrap_or_else(|e| panic!("example {name}: {e}"));
        assert_eq!(
            created.interaction_sid.map(|s| s.to_string()).as_deref(),
            example["sid"].as_str(),
            "example {name}"
        );
        assert_eq!(
            created.channel_sid.map(|s| s.to_string()).as_deref(),
            example["channel"]["sid"].as_str(),
            "example {name}"
        );
        assert_eq!(
            created.task_sid.map(|s| s.to_string()).as_deref(),
            example["routing"]["properties"]["sid"].as_str(),
            "example {name}"
        );
    }
    // An answer with every field the schema declares but no values still parses: each
    // field flexhook reads is optional, as the spec says.
    let interaction = &json_response(operation(&spec, CREATE_INTERACTION))["schema"];
    let nulls: serde_json::Map<String, Value> = interaction["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    let created =
        flexhook::twilio::parse_created_interaction(&serde_json::to_vec(&nulls).unwrap()).unwrap();
    assert_eq!(created, flexhook::twilio::CreatedInteraction::default());

    // The parser the task lookup uses for a page of `GET …/Tasks`.
    let lists = json_response(operation(&spec, LIST_TASKS))["examples"]
        .as_object()
        .expect("the spec has task-list examples");
    assert!(!lists.is_empty());
    for (name, example) in lists {
        let body = serde_json::to_vec(example).unwrap();
        let tasks = flexhook::twilio::parse_task_list(&body)
            .unwrap_or_else(|e| panic!("example {name}: {e}"));
        let listed = example["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), listed.len(), "example {name}");
        for (task, raw) in tasks.iter().zip(listed) {
            assert_eq!(Some(task.sid.as_str()), raw["sid"].as_str());
            let expected: Option<Value> = raw["attributes"]
                .as_str()
                .and_then(|a| serde_json::from_str(a).ok());
            assert_eq!(task.attributes, expected, "example {name}");
        }
    }
}

#[tokio::test]
async fn both_webhook_deletes_are_delete_operations_of_the_spec_and_its_204_counts_as_removed() {
    let spec = spec();
    let env = Env::new().await;
    create_interaction()
        .respond_with(spec_created(&spec))
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    let scoped = random_sid("CH");
    let unscoped = random_sid("CH");
    app.post_form(&message(&scoped, "+14155550100")).await;
    app.post_form(&without(
        message(&unscoped, "+14155550101"),
        "ChatServiceSid",
    ))
    .await;
    created_and_unhooked(&env, &scoped).await;
    created_and_unhooked(&env, &unscoped).await;
    app.stop().await;

    let requests = env.conversations.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one DELETE per conversation");
    let mut seen = BTreeSet::new();
    for request in &requests {
        let (op, params) = operation_for(&spec, request.method.as_str(), request.url.path());
        assert_eq!(op["method"], "delete");
        assert_path_parameters(op, &params);
        assert_authenticated(op, request);
        assert!(request.url.query().is_none(), "{}", request.url);
        assert!(request.body.is_empty(), "a DELETE takes no body");
        assert!(op.get("requestBody").is_none());
        assert_eq!(params["Sid"], WEBHOOK);
        let id = text(&op["operationId"], "operationId");
        if id == DELETE_SERVICE_WEBHOOK {
            assert_eq!(params["ConversationSid"], scoped);
            assert_eq!(params["ChatServiceSid"], SERVICE);
        } else {
            assert_eq!(params["ConversationSid"], unscoped);
        }
        seen.insert(id.to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from([DELETE_SERVICE_WEBHOOK.to_owned(), DELETE_WEBHOOK.to_owned()])
    );
}

#[tokio::test]
async fn the_task_lookup_sends_only_query_parameters_the_spec_declares() {
    let spec = spec();
    let list = operation(&spec, LIST_TASKS);
    let env = Env::new().await;
    flex_fails_once_then_accepts(&env, &spec).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(success_status(list))
                .set_body_json(response_example(list, Some("readEmpty"))),
        )
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    app.post_form(&message(&ch, "+14155550100")).await;
    let job = created_and_unhooked(&env, &ch).await;
    app.stop().await;
    // The spec's empty page was read as "no task yet", so the interaction was created.
    assert_eq!(job.attempts, 2);
    assert_eq!(interaction_posts(&env).await, 2);

    let requests = env.taskrouter.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one lookup before the retry");
    let request = &requests[0];
    let (op, params) = operation_for(&spec, request.method.as_str(), request.url.path());
    assert_eq!(op["operationId"], LIST_TASKS);
    assert_path_parameters(op, &params);
    assert_eq!(params["WorkspaceSid"], WORKSPACE);
    assert_authenticated(op, request);

    let declared = declared_parameters(op, "query");
    let query: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert!(!query.is_empty(), "the lookup filters by attributes");
    for (name, value) in &query {
        let p = declared
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not a query parameter of {LIST_TASKS}"));
        assert_fits_schema(name, value, &p["schema"]);
        if p["schema"]["type"] != "array" {
            assert_eq!(
                query.iter().filter(|(k, _)| k == name).count(),
                1,
                "{name} sent twice"
            );
        }
    }
    for (name, p) in &declared {
        if p["required"] == true {
            assert!(query.iter().any(|(k, _)| k == name), "{name} is required");
        }
    }
    let expression = &query
        .iter()
        .find(|(k, _)| k == "EvaluateTaskAttributes")
        .expect("EvaluateTaskAttributes")
        .1;
    assert_eq!(expression, &format!("conversationSid == \"{ch}\""));
}

#[tokio::test]
async fn a_task_listed_as_in_the_spec_example_is_adopted_instead_of_created_twice() {
    let spec = spec();
    let list = operation(&spec, LIST_TASKS);
    let env = Env::new().await;
    flex_fails_once_then_accepts(&env, &spec).await;
    let ch = random_sid("CH");
    let page = listed_task_naming(&spec, &ch);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(success_status(list)).set_body_json(&page))
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let job = created_and_unhooked(&env, &ch).await;
    app.stop().await;

    let created = response_example(operation(&spec, CREATE_INTERACTION), None);
    assert_eq!(
        job.task_sid.map(|s| s.as_str().to_owned()).as_deref(),
        page["tasks"][0]["sid"].as_str()
    );
    assert_eq!(
        job.interaction_sid
            .map(|s| s.as_str().to_owned())
            .as_deref(),
        created["sid"].as_str()
    );
    assert_eq!(
        job.interaction_channel_sid
            .map(|s| s.as_str().to_owned())
            .as_deref(),
        created["channel"]["sid"].as_str()
    );
    assert_eq!(interaction_posts(&env).await, 1, "no second create");
}

/// The schema of `tasks[].attributes` says a list may leave attributes null ("only displayed
/// in FETCH action that returns a single resource"), while the list already matched
/// EvaluateTaskAttributes: flexhook adopts the task and fetches it for its interaction SIDs.
#[tokio::test]
async fn a_listed_task_whose_attributes_are_null_as_the_spec_warns_is_still_adopted() {
    let spec = spec();
    let list = operation(&spec, LIST_TASKS);
    let env = Env::new().await;
    flex_fails_once_then_accepts(&env, &spec).await;
    let ch = random_sid("CH");
    let mut page = listed_task_naming(&spec, &ch);
    page["tasks"][0]["attributes"] = Value::Null;
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .respond_with(ResponseTemplate::new(success_status(list)).set_body_json(&page))
        .mount(&env.taskrouter)
        .await;
    // A FETCH of the one task, as the spec says, would show its attributes.
    let task_sid = text(&page["tasks"][0]["sid"], "sid").to_owned();
    let mut task = listed_task_naming(&spec, &ch)["tasks"][0].clone();
    task["sid"] = Value::String(task_sid.clone());
    let fetched_attributes: Value =
        serde_json::from_str(text(&task["attributes"], "attributes")).unwrap();
    assert!(fetched_attributes["flexInteractionSid"].is_string());
    Mock::given(method("GET"))
        .and(path(
            format!("/v1/Workspaces/{WORKSPACE}/Tasks/{task_sid}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(&task))
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    app.post_form(&message(&ch, "+14155550100")).await;
    let job = created_and_unhooked(&env, &ch).await;
    app.stop().await;
    assert_eq!(
        job.task_sid.map(|s| s.as_str().to_owned()),
        Some(task_sid),
        "the task TaskRouter matched must be adopted"
    );
    assert_eq!(
        job.interaction_sid.map(|s| s.as_str().to_owned()),
        fetched_attributes["flexInteractionSid"]
            .as_str()
            .map(str::to_owned),
        "the interaction comes from the fetched task's attributes"
    );
    assert_eq!(interaction_posts(&env).await, 1, "no second create");
}

#[test]
fn the_default_base_urls_are_the_servers_the_spec_names() {
    let spec = spec();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let config: toml::Table = std::fs::read_to_string(file).unwrap().parse().unwrap();
    let twilio = config["twilio"].as_table().expect("[twilio]");
    for (key, ids) in [
        ("flex_api_base_url", &[CREATE_INTERACTION][..]),
        (
            "conversations_api_base_url",
            &[DELETE_SERVICE_WEBHOOK, DELETE_WEBHOOK][..],
        ),
        ("taskrouter_api_base_url", &[LIST_TASKS][..]),
    ] {
        let default = twilio[key]
            .as_str()
            .unwrap_or_else(|| panic!("twilio.{key} is not a string"));
        for id in ids {
            let servers = operation(&spec, id)["servers"].as_array().expect("servers");
            assert!(!servers.is_empty(), "{id} names no server");
            for server in servers {
                assert_eq!(
                    default,
                    text(&server["url"], "server url"),
                    "twilio.{key} in config/default.toml vs the servers of {id}"
                );
            }
        }
    }
}

#[test]
fn the_path_template_matcher_takes_one_segment_per_parameter() {
    let t = "/v1/Conversations/{ConversationSid}/Webhooks/{Sid}";
    let m = match_template(t, "/v1/Conversations/CH1/Webhooks/WH2").unwrap();
    assert_eq!(m["ConversationSid"], "CH1");
    assert_eq!(m["Sid"], "WH2");
    assert!(match_template(t, "/v1/Conversations/CH1/Webhooks").is_none());
    assert!(match_template(t, "/v1/Conversations//Webhooks/WH2").is_none());
    assert!(match_template(t, "/v1/Conversations/CH1/Webhooks/WH2/x").is_none());
    assert!(match_template(t, "/v1/Services/CH1/Webhooks/WH2").is_none());
    assert!(matches_sid_pattern(
        "^WH[0-9a-fA-F]{32}$",
        "WH0123456789abcdef0123456789abcdef"
    ));
    assert!(!matches_sid_pattern(
        "^WH[0-9a-fA-F]{32}$",
        "IS0123456789abcdef0123456789abcdef"
    ));
    assert!(!matches_sid_pattern("^WH[0-9a-fA-F]{32}$", "WH0123"));
}

// ---------------------------------------------------------------------------------------
// The lifecycle's requests: every one an operation of the spec, sent as it declares
// ---------------------------------------------------------------------------------------

/// Checks one captured request against the operation it is (path parameters,
/// authentication, query parameters and form fields declared, required fields sent, values
/// fitting their schemas); returns the operation's id.
fn assert_request_fits(spec: &Value, request: &Request) -> String {
    let (op, params) = operation_for(spec, request.method.as_str(), request.url.path());
    let id = text(&op["operationId"], "operationId").to_owned();
    assert_path_parameters(op, &params);
    assert_authenticated(op, request);
    let query = declared_parameters(op, "query");
    for (name, value) in request.url.query_pairs() {
        let p = query
            .get(name.as_ref())
            .unwrap_or_else(|| panic!("{id}: query parameter {name} is not in the spec"));
        assert_fits_schema(&name, &value, &p["schema"]);
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body = &op["requestBody"]["content"]["application/x-www-form-urlencoded"];
    if body.is_null() {
        assert!(fields.is_empty(), "{id} takes no body: {fields:?}");
        return id;
    }
    let content_type = request
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{id} is sent as a form"
    );
    let properties = body["schema"]["properties"].as_object().unwrap();
    for (name, value) in &fields {
        let property = properties
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a field of the spec's {id}"));
        assert_fits_schema(name, value, property);
    }
    for required in body["schema"]["required"].as_array().into_iter().flatten() {
        let required = text(required, "required field");
        assert!(
            fields.iter().any(|(k, _)| k == required),
            "{id}: required field {required} not sent"
        );
    }
    id
}

/// Checks every request `servers` received against the spec; the operations they were.
async fn operations_sent(spec: &Value, servers: &[&wiremock::MockServer]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for server in servers {
        for request in server.received_requests().await.unwrap() {
            seen.insert(assert_request_fits(spec, &request));
        }
    }
    seen
}

/// Answers `method` + `path` with the named example of the operation, at its status.
async fn answer_with_example(
    server: &wiremock::MockServer,
    spec: &Value,
    id: &str,
    example: &str,
    http_method: &str,
    at: &str,
) {
    let op = operation(spec, id);
    Mock::given(method(http_method))
        .and(path(at))
        .respond_with(
            ResponseTemplate::new(success_status(op))
                .set_body_json(response_example(op, Some(example))),
        )
        .mount(server)
        .await;
}

/// TaskRouter lists no live task of any conversation, as the spec's `readEmpty` example.
async fn no_live_tasks_as_specified(env: &Env, spec: &Value) {
    let tasks = format!("/v1/Workspaces/{WORKSPACE}/Tasks");
    answer_with_example(
        &env.taskrouter,
        spec,
        LIST_TASKS,
        "readEmpty",
        "GET",
        &tasks,
    )
    .await;
}

#[tokio::test]
async fn the_lifecycle_closes_tells_and_sets_timers_with_requests_the_spec_declares() {
    let spec = spec();
    let env = Env::new().await;
    let created = response_example(operation(&spec, CREATE_INTERACTION), None).clone();
    let (kd, uo) = (
        text(&created["sid"], "sid"),
        text(&created["channel"]["sid"], "channel"),
    );
    let wt = text(&created["routing"]["properties"]["sid"], "task");
    create_interaction()
        .respond_with(spec_created(&spec))
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let channel = format!("/v1/Interactions/{kd}/Channels/{uo}");
    answer_with_example(
        &env.flex,
        &spec,
        CLOSE_CHANNEL,
        "updateStatusClosed",
        "POST",
        &channel,
    )
    .await;
    no_live_tasks_as_specified(&env, &spec).await;
    let (scoped, unscoped) = (random_sid("CH"), random_sid("CH"));
    for (ch, at, message_op, update_op) in [
        (
            &scoped,
            format!("/v1/Services/{SERVICE}/Conversations/{scoped}"),
            SERVICE_MESSAGE,
            UPDATE_SERVICE_CONVERSATION,
        ),
        (
            &unscoped,
            format!("/v1/Conversations/{unscoped}"),
            MESSAGE,
            UPDATE_CONVERSATION,
        ),
    ] {
        let _ = ch;
        answer_with_example(&env.conversations, &spec, update_op, "update", "POST", &at).await;
        answer_with_example(
            &env.conversations,
            &spec,
            message_op,
            "create",
            "POST",
            &format!("{at}/Messages"),
        )
        .await;
    }
    let app = TestApp::start(
        &env,
        &[
            (
                "lifecycle.orphan_message",
                "Sorry, nobody could take your conversation.",
            ),
            ("lifecycle.close_after", "24h"),
            ("lifecycle.inactive_after", "1h"),
            ("lifecycle.adopt_flex_tasks", "true"),
        ],
    )
    .await;
    let store = env.store().await;
    // A hand-off in a known service: its timers, then its orphaning.
    app.post_form(&message(&scoped, "+14155550100")).await;
    created_and_unhooked(&env, &scoped).await;
    let timers = |ch: String| {
        let store = store.clone();
        async move {
            wait_for_kind(&store, JobKind::Timers, &ch, |j| j.state == JobState::Set).await;
        }
    };
    timers(scoped.clone()).await;
    // A conversation without a known service: the unscoped paths.
    app.post_form(&without(
        message(&unscoped, "+14155550101"),
        "ChatServiceSid",
    ))
    .await;
    created_and_unhooked(&env, &unscoped).await;
    timers(unscoped.clone()).await;
    let event = |ch: &str, task: &str| {
        [
            ("EventType", "workflow.timeout"),
            ("AccountSid", ACCOUNT),
            ("WorkspaceSid", WORKSPACE),
            ("TaskSid", task),
            ("TaskAttributes", &json!({"conversationSid": ch, "flexInteractionSid": kd, "flexInteractionChannelSid": uo}).to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
    };
    // The spec's example gives both hand-offs the same task: the second event is for
    // another task of its conversation (a transfer's), found by its attributes.
    let transfer = random_sid("WT");
    for (ch, task) in [(&scoped, wt), (&unscoped, transfer.as_str())] {
        let response = app
            .post_signed(event(ch, task))
            .to("/webhooks/taskrouter")
            .send()
            .await;
        assert_eq!(response.status(), 200);
        wait_for_kind(&store, JobKind::Close, ch, |j| j.state == JobState::Closed).await;
    }
    app.stop().await;

    let seen = operations_sent(&spec, &[&env.flex, &env.conversations, &env.taskrouter]).await;
    for id in [
        CREATE_INTERACTION,
        CLOSE_CHANNEL,
        LIST_TASKS,
        SERVICE_MESSAGE,
        MESSAGE,
        UPDATE_SERVICE_CONVERSATION,
        UPDATE_CONVERSATION,
    ] {
        assert!(seen.contains(id), "{id} was never sent: {seen:?}");
    }
}

#[tokio::test]
async fn a_close_flex_refuses_is_checked_with_a_fetch_the_spec_declares() {
    let spec = spec();
    let env = Env::new().await;
    let created = response_example(operation(&spec, CREATE_INTERACTION), None).clone();
    let (kd, uo) = (
        text(&created["sid"], "sid"),
        text(&created["channel"]["sid"], "channel"),
    );
    create_interaction()
        .respond_with(spec_created(&spec))
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    let channel = format!("/v1/Interactions/{kd}/Channels/{uo}");
    Mock::given(method("POST"))
        .and(path(channel.as_str()))
        .respond_with(twilio_error(400, 19025, "Channel validation error"))
        .mount(&env.flex)
        .await;
    // The spec's fetch example says the channel is closed already.
    let fetch = response_example(operation(&spec, FETCH_CHANNEL), Some("fetch"));
    assert_eq!(fetch["status"], "closed", "the example this test relies on");
    answer_with_example(&env.flex, &spec, FETCH_CHANNEL, "fetch", "GET", &channel).await;
    no_live_tasks_as_specified(&env, &spec).await;
    let app = TestApp::start(&env, &[]).await;
    let ch = random_sid("CH");
    app.post_form(&message(&ch, "+14155550100")).await;
    let job = created_and_unhooked(&env, &ch).await;
    let task = job.task_sid.unwrap().to_string();
    let event: Vec<(String, String)> = [
        ("EventType", "task.canceled"),
        ("AccountSid", ACCOUNT),
        ("WorkspaceSid", WORKSPACE),
        ("TaskSid", task.as_str()),
        ("TaskAttributes", "{}"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    app.post_signed(event)
        .to("/webhooks/taskrouter")
        .send()
        .await;
    let store = env.store().await;
    let closed = wait_for_kind(&store, JobKind::Close, &ch, |j| {
        j.state != JobState::Pending
    })
    .await;
    app.stop().await;
    assert_eq!(closed.state, JobState::Closed, "{closed:?}");
    let mut seen = BTreeSet::new();
    for request in env.flex.received_requests().await.unwrap() {
        seen.insert(assert_request_fits(&spec, &request));
    }
    assert!(seen.contains(FETCH_CHANNEL), "{seen:?}");
}

#[tokio::test]
async fn taskrouter_connect_and_disconnect_send_workspace_updates_the_spec_declares() {
    use clap::Parser;
    let spec = spec();
    let env = Env::new().await;
    let workspace = format!("/v1/Workspaces/{WORKSPACE}");
    // The spec's example workspace already sends its events elsewhere: --replace.
    let fetched = response_example(operation(&spec, FETCH_WORKSPACE), Some("fetch")).clone();
    answer_with_example(
        &env.taskrouter,
        &spec,
        FETCH_WORKSPACE,
        "fetch",
        "GET",
        &workspace,
    )
    .await;
    answer_with_example(
        &env.taskrouter,
        &spec,
        UPDATE_WORKSPACE,
        "update",
        "POST",
        &workspace,
    )
    .await;
    let config = env.dir.path().join("taskrouter.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_base_url = \"https://flexhook.example.com\"\n\
             [twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             taskrouter_api_base_url = \"{}\"\n[flex]\nworkspace_sid = \"{WORKSPACE}\"\n\
             [store]\nurl = \"{}\"\n",
            env.taskrouter.uri(),
            env.db_url()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut argv = vec!["flexhook", "--config", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        flexhook::cli::run(flexhook::cli::Cli::parse_from(argv))
    };
    let code = run(&["taskrouter", "connect", "--replace"]).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    // disconnect acts only while the workspace points at flexhook.
    env.taskrouter.reset().await;
    let mut ours = fetched.clone();
    ours["event_callback_url"] = json!("https://flexhook.example.com/webhooks/taskrouter");
    Mock::given(method("GET"))
        .and(path(workspace.as_str()))
        .respond_with(
            ResponseTemplate::new(success_status(operation(&spec, FETCH_WORKSPACE)))
                .set_body_json(ours),
        )
        .mount(&env.taskrouter)
        .await;
    answer_with_example(
        &env.taskrouter,
        &spec,
        UPDATE_WORKSPACE,
        "update",
        "POST",
        &workspace,
    )
    .await;
    let code = run(&["taskrouter", "disconnect"]).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);

    let requests = env.taskrouter.received_requests().await.unwrap();
    let updates: Vec<&Request> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(
        updates.len(),
        1,
        "the disconnect's update (the connect's was before the reset)"
    );
    for request in &requests {
        let id = assert_request_fits(&spec, request);
        assert!(id == FETCH_WORKSPACE || id == UPDATE_WORKSPACE, "{id}");
    }
    let restored: BTreeMap<String, String> = form_urlencoded::parse(&updates[0].body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        restored.get("EventCallbackUrl").map(String::as_str),
        fetched["event_callback_url"].as_str(),
        "disconnect puts back the spec example's URL"
    );
}

// ---------------------------------------------------------------------------------------
// `flexhook address`, `flexflow list` and `migrate`
// ---------------------------------------------------------------------------------------

const LIST_ADDRESSES: &str = "ListConfigurationAddress";
const CREATE_ADDRESS: &str = "CreateConfigurationAddress";
const FETCH_ADDRESS: &str = "FetchConfigurationAddress";
const UPDATE_ADDRESS: &str = "UpdateConfigurationAddress";
const DELETE_ADDRESS: &str = "DeleteConfigurationAddress";
const LIST_FLEX_FLOWS: &str = "ListFlexFlow";
const UPDATE_FLEX_FLOW: &str = "UpdateFlexFlow";

#[tokio::test]
async fn every_address_and_flex_flow_request_of_the_cli_is_an_operation_of_the_spec() {
    use clap::Parser;
    let spec = spec();
    let env = Env::new().await;
    let address = "whatsapp:+15550001111";
    let encoded = "/v1/Configuration/Addresses/whatsapp%3A%2B15550001111";
    let example = |id: &str, name: &str| {
        let op = operation(&spec, id);
        ResponseTemplate::new(success_status(op)).set_body_json(response_example(op, Some(name)))
    };
    let conversations = &env.conversations;
    Mock::given(method("GET"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(example(LIST_ADDRESSES, "readAll"))
        .mount(conversations)
        .await;
    for (verb, id, name) in [
        ("GET", FETCH_ADDRESS, "fetch"),
        ("POST", UPDATE_ADDRESS, "update"),
    ] {
        Mock::given(method(verb))
            .and(path(encoded))
            .respond_with(example(id, name))
            .mount(conversations)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/Configuration/Addresses"))
        .respond_with(example(CREATE_ADDRESS, "create"))
        .mount(conversations)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/v1/Configuration/Addresses/IG",
        ))
        .respond_with(example(UPDATE_ADDRESS, "update"))
        .mount(conversations)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(success_status(operation(
            &spec,
            DELETE_ADDRESS,
        ))))
        .mount(conversations)
        .await;
    let flows = response_example(operation(&spec, LIST_FLEX_FLOWS), Some("readFull")).clone();
    let flow = flows["flex_flows"][0].clone();
    let mut holding = flows.clone();
    holding["flex_flows"][0]["contact_identity"] = json!(address);
    holding["flex_flows"][0]["enabled"] = json!(true);
    Mock::given(method("GET"))
        .and(path("/v1/FlexFlows"))
        .respond_with(
            ResponseTemplate::new(success_status(operation(&spec, LIST_FLEX_FLOWS)))
                .set_body_json(holding),
        )
        .mount(&env.flex)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/FlexFlows/{}",
            flow["sid"].as_str().unwrap()
        )))
        .respond_with(
            ResponseTemplate::new(success_status(operation(&spec, UPDATE_FLEX_FLOW)))
                .set_body_json(&flow),
        )
        .mount(&env.flex)
        .await;
    let config = env.dir.path().join("address.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_base_url = \"https://flexhook.example.com\"\n\
             [twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             conversations_api_base_url = \"{}\"\nflex_api_base_url = \"{}\"\n",
            conversations.uri(),
            env.flex.uri()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut argv = vec!["flexhook", "--config", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        flexhook::cli::run(flexhook::cli::Cli::parse_from(argv))
    };
    let ig = "IG0123456789abcdef0123456789abcdef";
    for args in [
        &["address", "list", "--type", "whatsapp"][..],
        &["address", "get", address],
        &[
            "address",
            "create",
            "--type",
            "whatsapp",
            "--address",
            address,
            "--friendly-name",
            "Support",
            "--auto-creation-type",
            "webhook",
            "--webhook-url",
            "https://x.example/h",
            "--webhook-method",
            "POST",
            "--webhook-filter",
            "onMessageAdded",
            "--webhook-filter",
            "onParticipantAdded",
            "--conversation-service-sid",
            SERVICE,
            "--address-country",
            "US",
        ],
        &[
            "address",
            "update",
            ig,
            "--auto-creation-type",
            "studio",
            "--studio-flow-sid",
            "FW0123456789abcdef0123456789abcdef",
            "--studio-retry-count",
            "2",
        ],
        &["address", "update", ig, "--disabled"],
        &["address", "delete", address, "--yes"],
        // The spec's example configuration is an sms one.
        &["address", "connect", address, "--type", "sms"],
        &["address", "disconnect", address],
        &["flexflow", "list"],
        &["migrate", address, "--type", "sms", "--yes"],
    ] {
        let code = run(args).await.unwrap();
        assert_eq!(code, std::process::ExitCode::SUCCESS, "{args:?}");
    }
    let seen = operations_sent(&spec, &[conversations, &env.flex]).await;
    for id in [
        LIST_ADDRESSES,
        CREATE_ADDRESS,
        FETCH_ADDRESS,
        UPDATE_ADDRESS,
        DELETE_ADDRESS,
        LIST_FLEX_FLOWS,
        UPDATE_FLEX_FLOW,
    ] {
        assert!(seen.contains(id), "{id} was exercised: {seen:?}");
    }
}

#[tokio::test]
async fn every_request_of_flexhook_check_is_an_operation_of_the_spec() {
    use clap::Parser;
    let spec = spec();
    let env = Env::new().await;
    let workspace = format!("/v1/Workspaces/{WORKSPACE}");
    answer_with_example(
        &env.taskrouter,
        &spec,
        FETCH_WORKSPACE,
        "fetch",
        "GET",
        &workspace,
    )
    .await;
    answer_with_example(
        &env.taskrouter,
        &spec,
        "FetchWorkflow",
        "fetch",
        "GET",
        &format!("{workspace}/Workflows/{WORKFLOW}"),
    )
    .await;
    answer_with_example(
        &env.taskrouter,
        &spec,
        "ListTaskChannel",
        "readFull",
        "GET",
        &format!("{workspace}/TaskChannels"),
    )
    .await;
    answer_with_example(
        &env.conversations,
        &spec,
        "ListConfigurationAddress",
        "readAll",
        "GET",
        "/v1/Configuration/Addresses",
    )
    .await;
    // server.public_base_url answers /healthz (not Twilio: not checked against the spec).
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&env.flex)
        .await;
    let config = env.dir.path().join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_base_url = \"{}\"\n\
             [twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{TOKEN}\"\n\
             taskrouter_api_base_url = \"{}\"\nconversations_api_base_url = \"{}\"\n\
             [flex]\nworkspace_sid = \"{WORKSPACE}\"\nworkflow_sid = \"{WORKFLOW}\"\n",
            env.flex.uri(),
            env.taskrouter.uri(),
            env.conversations.uri()
        ),
    )
    .unwrap();
    let argv = ["flexhook", "--config", config.to_str().unwrap(), "check"];
    // The spec's examples are another workspace's: some lines fail, every request counts.
    flexhook::cli::run(flexhook::cli::Cli::parse_from(argv))
        .await
        .unwrap();

    let seen = operations_sent(&spec, &[&env.taskrouter, &env.conversations]).await;
    for id in [
        FETCH_WORKSPACE,
        "FetchWorkflow",
        "ListTaskChannel",
        "ListConfigurationAddress",
    ] {
        assert!(seen.contains(id), "{id} was never sent: {seen:?}");
    }
}

/// The spec's example answer of `id` (its first example when `name` is `None`), served at
/// `at` on `server`.
async fn serve_example(
    server: &wiremock::MockServer,
    spec: &Value,
    id: &str,
    name: &str,
    at: &str,
) {
    answer_with_example(server, spec, id, name, "GET", at).await;
}

#[tokio::test]
async fn every_request_of_a_reconciliation_sweep_is_an_operation_of_the_spec() {
    use common::twilio_world::{Conversation, World};
    let spec = spec();
    let env = Env::new().await;
    let world = World::default();
    let base = "https://flexhook.example.com";
    let hook = format!("{base}/webhooks/conversations");
    // One conversation of a service, one of the account's default service.
    world.add(Conversation::with_webhook(
        &hook,
        "+14155550100",
        "2026-12-05T09:30:00Z",
    ));
    let mut unscoped = Conversation::with_webhook(&hook, "+14155550101", "2026-12-05T09:31:00Z");
    unscoped.chat_service = None;
    world.add(unscoped);
    world.task_ended(
        "workflow.timeout",
        &random_sid("WT"),
        &random_sid("CH"),
        &random_sid("KD"),
        &random_sid("UO"),
    );
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;
    let settings = env.settings(&[("server.public_base_url", base)]);
    let store = env.store().await;
    let reconciler = flexhook::reconcile::Reconciler::new(
        store.clone(),
        flexhook::twilio::TwilioClient::new(&settings.accounts.first().twilio).unwrap(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
        &settings.lifecycle,
        flexhook::reconcile::Target::of(settings.accounts.first(), Some(base)).unwrap(),
        settings.reconcile.clone(),
    );
    let sweep = reconciler.sweep(None, true).await.unwrap();
    assert_eq!(sweep.findings.len(), 2, "{sweep:?}");

    let seen = operations_sent(&spec, &[&env.taskrouter, &env.conversations]).await;
    for id in [
        "ListConversation",
        "ListServiceConversationScopedWebhook",
        "ListConversationScopedWebhook",
        "ListServiceConversationParticipant",
        "ListConversationParticipant",
        "ListServiceConversationMessage",
        "ListConversationMessage",
        "ListEvent",
    ] {
        assert!(seen.contains(id), "{id} was never sent: {seen:?}");
    }
}

#[tokio::test]
async fn the_spec_example_lists_are_read_as_a_sweep_reads_them() {
    use flexhook::domain::{ChatServiceSid, ConversationSid, WorkspaceSid};
    let spec = spec();
    let env = Env::new().await;
    let ch = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let is = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let scoped = format!("/v1/Services/{is}/Conversations/{ch}");
    serve_example(
        &env.conversations,
        &spec,
        "ListConversation",
        "readFull",
        "/v1/Conversations",
    )
    .await;
    serve_example(
        &env.conversations,
        &spec,
        "ListServiceConversationScopedWebhook",
        "readFull",
        &format!("{scoped}/Webhooks"),
    )
    .await;
    serve_example(
        &env.conversations,
        &spec,
        "ListServiceConversationParticipant",
        "read",
        &format!("{scoped}/Participants"),
    )
    .await;
    serve_example(
        &env.conversations,
        &spec,
        "ListServiceConversationMessage",
        "readFull",
        &format!("{scoped}/Messages"),
    )
    .await;
    serve_example(
        &env.taskrouter,
        &spec,
        "ListEvent",
        "readFull",
        &format!("/v1/Workspaces/{WORKSPACE}/Events"),
    )
    .await;
    let settings = env.settings(&[]);
    let client = flexhook::twilio::TwilioClient::new(&settings.accounts.first().twilio).unwrap();

    let mut pages = client.active_conversations_since("2015-12-16T00:00:00Z");
    let listed = pages.next_page().await.unwrap().unwrap();
    assert!(pages.next_page().await.unwrap().is_none(), "one page");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].sid.as_str(), ch);
    assert_eq!(listed[0].chat_service_sid.as_ref().unwrap().as_str(), is);
    assert_eq!(
        listed[0].date_created.as_deref(),
        Some("2015-12-16T22:18:37Z")
    );

    let (service, conversation) = (
        ChatServiceSid::parse(is).unwrap(),
        ConversationSid::parse(ch).unwrap(),
    );
    let hooks = client
        .conversation_webhooks(Some(&service), &conversation)
        .await
        .unwrap();
    assert!(!hooks.is_empty());
    assert_eq!(hooks[0].target, "webhook");
    assert_eq!(hooks[0].url.as_deref(), Some("https://example.com"));

    let binding = client
        .customer_binding(Some(&service), &conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(binding.address, "+15558675310");
    assert_eq!(binding.proxy_address.as_deref(), Some("+15017122661"));

    let first = client
        .first_message_by(Some(&service), &conversation, "cake_lover")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.date_created.as_deref(), Some("2016-03-24T20:38:21Z"));
    assert!(client
        .first_message_by(Some(&service), &conversation, "nobody")
        .await
        .unwrap()
        .is_none());

    // The example logs a worker's event: no task, so nothing for the lifecycle.
    let events = client
        .task_events_since(
            &WorkspaceSid::parse(WORKSPACE).unwrap(),
            "workflow.timeout",
            "2015-02-07T00:00:00Z",
        )
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_reply_to_a_left_channel_is_watched_and_invited_with_requests_the_spec_declares() {
    const BASE: &str = "https://flexhook.example.com";
    const INVITE: &str = "CreateInteractionChannelInvite";
    const ADD_SERVICE_WEBHOOK: &str = "CreateServiceConversationScopedWebhook";
    const LIST_SERVICE_WEBHOOKS: &str = "ListServiceConversationScopedWebhook";
    const ADD_WEBHOOK: &str = "CreateConversationScopedWebhook";
    const LIST_WEBHOOKS: &str = "ListConversationScopedWebhook";
    let spec = spec();
    let env = Env::new().await;
    let created = response_example(operation(&spec, CREATE_INTERACTION), None).clone();
    let (kd, uo) = (
        text(&created["sid"], "sid"),
        text(&created["channel"]["sid"], "channel"),
    );
    let wt = text(&created["routing"]["properties"]["sid"], "task").to_owned();
    create_interaction()
        .respond_with(spec_created(&spec))
        .mount(&env.flex)
        .await;
    webhooks_are_removable_as_specified(&env, &spec).await;
    no_live_tasks_as_specified(&env, &spec).await;
    let channel = format!("/v1/Interactions/{kd}/Channels/{uo}");
    // The spec's fetch example, left by its agent.
    let fetch = operation(&spec, FETCH_CHANNEL);
    let mut left = response_example(fetch, Some("fetch")).clone();
    left["status"] = json!("inactive");
    Mock::given(method("GET"))
        .and(path(&channel))
        .respond_with(ResponseTemplate::new(success_status(fetch)).set_body_json(left))
        .mount(&env.flex)
        .await;
    answer_with_example(
        &env.flex,
        &spec,
        INVITE,
        "create",
        "POST",
        &format!("{channel}/Invites"),
    )
    .await;
    let (scoped, unscoped) = (random_sid("CH"), random_sid("CH"));
    for (ch, list_op, add_op, hooks) in [
        (
            &scoped,
            LIST_SERVICE_WEBHOOKS,
            ADD_SERVICE_WEBHOOK,
            format!("/v1/Services/{SERVICE}/Conversations/{scoped}/Webhooks"),
        ),
        (
            &unscoped,
            LIST_WEBHOOKS,
            ADD_WEBHOOK,
            format!("/v1/Conversations/{unscoped}/Webhooks"),
        ),
    ] {
        let _ = ch;
        answer_with_example(
            &env.conversations,
            &spec,
            list_op,
            "readFull",
            "GET",
            &hooks,
        )
        .await;
        answer_with_example(&env.conversations, &spec, add_op, "create", "POST", &hooks).await;
    }

    let app = TestApp::start(
        &env,
        &[
            ("server.public_base_url", BASE),
            ("lifecycle.reengage", "flexhook"),
        ],
    )
    .await;
    let store = env.store().await;
    // The spec's example gives both hand-offs the same task: the second conversation's
    // ending task is another of its own (a transfer's), found by its attributes.
    let transfer = random_sid("WT");
    for (ch, task, first) in [
        (&scoped, wt.as_str(), message(&scoped, "+14155550100")),
        (
            &unscoped,
            transfer.as_str(),
            without(message(&unscoped, "+14155550101"), "ChatServiceSid"),
        ),
    ] {
        let response = app.post_signed(first.clone()).called_at(BASE).send().await;
        assert_eq!(response.status(), 200);
        created_and_unhooked(&env, ch).await;
        let completed: Vec<(String, String)> = [
            ("EventType", "task.completed"),
            ("AccountSid", ACCOUNT),
            ("WorkspaceSid", WORKSPACE),
            ("TaskSid", task),
            ("TaskAttributes", &json!({"conversationSid": ch, "flexInteractionSid": kd, "flexInteractionChannelSid": uo}).to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let response = app
            .post_signed(completed)
            .to("/webhooks/taskrouter")
            .called_at(BASE)
            .send()
            .await;
        assert_eq!(response.status(), 200);
        let episode = format!("{ch}/{task}");
        wait_for_kind(&store, JobKind::Watch, &episode, |j| {
            j.state == JobState::Watching
        })
        .await;
        let reply = app
            .post_signed(first)
            .to(&format!("/webhooks/conversations?reengage={task}"))
            .called_at(BASE)
            .send()
            .await;
        assert_eq!(reply.status(), 200);
        wait_for_kind(&store, JobKind::Invite, &episode, |j| {
            j.state == JobState::Invited
        })
        .await;
    }
    app.stop().await;

    let seen = operations_sent(&spec, &[&env.flex, &env.conversations, &env.taskrouter]).await;
    for id in [
        FETCH_CHANNEL,
        LIST_TASKS,
        LIST_SERVICE_WEBHOOKS,
        ADD_SERVICE_WEBHOOK,
        INVITE,
    ] {
        assert!(seen.contains(id), "{id} was never sent: {seen:?}");
    }
}

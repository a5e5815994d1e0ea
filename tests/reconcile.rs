//! Reconciliation on the real app and the real CLI: conversations whose first message never
//! arrived get exactly one interaction each, routed as the webhook would have routed them;
//! orphans whose TaskRouter event never came are closed once; other systems' conversations
//! and the ones flexhook knows are left alone. wiremock serves Twilio's state (the
//! conversations list, webhooks, participants, messages, events, channels) from one world.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::twilio_world::{Conversation, World};
use common::*;
use flexhook::reconcile::{FindingKind, ReconcileError, Reconciler, Sweep, Target};
use flexhook::store::{JobKind, JobState, Store};
use flexhook::twilio::TwilioClient;
use tokio::sync::Notify;
use wiremock::matchers::{body_string_contains, method, path, query_param_contains};
use wiremock::{Mock, Request, ResponseTemplate};

const BASE: &str = "https://flexhook.example.com";
const ES_WORKFLOW: &str = "WW22222222222222222222222222222222";
const SPANISH_LINE: &str = "whatsapp:+15550003333";
const ORPHAN_MESSAGE: &str = "Sorry, nobody could take your conversation.";

const RULES: &str = r#"
[[routing.rules]]
name = "spanish-line"
match = { address = ["whatsapp:+15550003333"] }
set = { workflow_sid = "WW22222222222222222222222222222222", attributes = { team = "es" } }
"#;

fn ours() -> String {
    format!("{BASE}/webhooks/conversations")
}

/// The settings of an app that sweeps at start-up (then every 30 s).
fn sweeping() -> Vec<(&'static str, &'static str)> {
    vec![
        ("server.public_base_url", BASE),
        ("reconcile.interval", "30s"),
        ("lifecycle.orphan_message", ORPHAN_MESSAGE),
    ]
}

/// A sweep run by the test itself, as `flexhook reconcile` runs one.
async fn sweep(env: &Env, store: &Store) -> Sweep {
    sweep_with(env, store, &sweeping()).await
}

/// The same, with these settings.
async fn sweep_with(env: &Env, store: &Store, overrides: &[(&str, &str)]) -> Sweep {
    let settings = env.settings_with_file(overrides, Some(RULES));
    let reconciler = Reconciler::new(
        store.clone(),
        TwilioClient::new(&settings.accounts.first().twilio).unwrap(),
        Arc::new(Notify::new()),
        &settings.lifecycle,
        Target::of(settings.accounts.first(), Some(BASE)).unwrap(),
        settings.reconcile.clone(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match reconciler.sweep(None, false).await {
            Err(ReconcileError::Busy) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            swept => return swept.unwrap(),
        }
    }
}

/// The `POST /v1/Interactions` Flex received, by conversation, with their `Routing`.
async fn creates_by_conversation(env: &Env) -> HashMap<String, Vec<serde_json::Value>> {
    let mut by: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for r in env.flex.received_requests().await.unwrap() {
        if r.method.as_str() == "POST" && r.url.path() == "/v1/Interactions" {
            let channel = form_json(&r.body, "Channel");
            let ch = channel["properties"]["media_channel_sid"]
                .as_str()
                .unwrap()
                .to_owned();
            by.entry(ch)
                .or_default()
                .push(form_json(&r.body, "Routing"));
        }
    }
    by
}

/// Reads of a conversation's webhooks, whether service-scoped or not.
fn webhook_reads(world: &World, ch: &str) -> usize {
    world.reads(&format!("/v1/Conversations/{ch}/Webhooks"))
        + world.reads(&format!(
            "/v1/Services/{SERVICE}/Conversations/{ch}/Webhooks"
        ))
}

async fn wait_until(store: &Store, ch: &str, kind: JobKind, state: JobState) {
    wait_for_kind(store, kind, ch, |j| j.state == state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_whose_first_message_never_arrived_get_one_interaction_each_as_the_webhook_would_route_it(
) {
    let env = Env::new().await;
    create_interaction()
        .respond_with(created("CH0"))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    // One conversation flexhook heard of, while it was up.
    let known = Conversation::with_webhook(&ours(), "+14155550100", "2026-12-05T09:00:00Z");
    let app = TestApp::start_with_config(&env, &[], Some(RULES)).await;
    app.post_form(&message(&known.sid, "+14155550100")).await;
    let store = env.store().await;
    wait_for_state(&store, &known.sid, JobState::Created).await;
    app.stop().await;

    // Then flexhook was down while 50 customers wrote in: half of them to the Spanish line
    // (its webhook URL says so), and two conversations belong to Studio and to another
    // system.
    let world = World::default();
    world.add(known.clone());
    let mut missed = Vec::new();
    for i in 0..50 {
        let url = if i % 2 == 0 {
            format!("{}?address={SPANISH_LINE}", ours())
        } else {
            ours()
        };
        let c = Conversation::with_webhook(&url, "whatsapp:+34600111222", "2026-12-05T09:30:00Z");
        missed.push(c.clone());
        world.add(c);
    }
    let mut studio = Conversation::with_webhook("", "+14155550101", "2026-12-05T09:31:00Z");
    studio.webhook = Some(("studio".into(), String::new()));
    let elsewhere = Conversation::with_webhook(
        "https://other.example.com/webhooks/conversations",
        "+14155550102",
        "2026-12-05T09:32:00Z",
    );
    world.add(studio.clone());
    world.add(elsewhere.clone());
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;

    // flexhook starts again, and sweeps.
    let app = TestApp::start_with_config(&env, &sweeping(), Some(RULES)).await;
    for c in &missed {
        wait_for_state(&store, &c.sid, JobState::Created).await;
    }
    app.stop().await;

    let creates = creates_by_conversation(&env).await;
    for (i, c) in missed.iter().enumerate() {
        let routed = creates.get(&c.sid).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(routed.len(), 1, "{}: exactly one interaction", c.sid);
        let properties = &routed[0]["properties"];
        let workflow = if i % 2 == 0 { ES_WORKFLOW } else { WORKFLOW };
        assert_eq!(properties["workflow_sid"], workflow, "{}", c.sid);
        assert_eq!(
            properties["attributes"]["customerAddress"],
            "whatsapp:+34600111222"
        );
        let job = stored_job(&store, &c.sid).await.unwrap();
        assert_eq!(job.webhook_sid.as_ref().unwrap().as_str(), c.webhook_sid);
        assert!(job.first_message_sid.is_some(), "{job:?}");
        assert!(
            job.webhook_removed,
            "the webhook goes, as after any hand-off"
        );
    }
    assert_eq!(
        creates[&known.sid].len(),
        1,
        "the known one is not created again"
    );
    for other in [&studio, &elsewhere] {
        assert!(
            !creates.contains_key(&other.sid),
            "{} is not flexhook's",
            other.sid
        );
        assert!(stored_job(&store, &other.sid).await.is_none());
    }
    assert_eq!(
        webhook_reads(&world, &known.sid),
        0,
        "a conversation flexhook knows costs no request of its own"
    );

    // A second sweep finds nothing and changes nothing.
    let again = sweep(&env, &store).await;
    assert!(
        again.findings.iter().all(|f| f.kind != FindingKind::Missed),
        "{again:?}"
    );
    assert_eq!(again.known, 51, "{again:?}");
    let reads_before = webhook_reads(&world, &missed[0].sid);
    assert_eq!(reads_before, 1, "each missed one was looked at once");
    assert_eq!(
        creates_by_conversation(&env)
            .await
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        51
    );
}

/// A conversation handed off with its own interaction, channel and task.
struct Handoff {
    ch: String,
    kd: String,
    uo: String,
    wt: String,
}

impl Handoff {
    async fn mount(env: &Env) -> Self {
        let h = Self {
            ch: random_sid("CH"),
            kd: random_sid("KD"),
            uo: random_sid("UO"),
            wt: random_sid("WT"),
        };
        create_interaction()
            .and(body_string_contains(h.ch.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "sid": h.kd,
                "channel": {"type": "sms", "sid": h.uo},
                "routing": {"properties": {"sid": h.wt, "workspace_sid": WORKSPACE}},
            })))
            .mount(&env.flex)
            .await;
        Mock::given(method("POST"))
            .and(path(
                format!("/v1/Interactions/{}/Channels/{}", h.kd, h.uo).as_str(),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"sid": h.uo, "status": "closed"})),
            )
            .mount(&env.flex)
            .await;
        h
    }

    /// The customer's first message, signed, through the public URL.
    async fn first_message(&self, app: &TestApp) {
        let answer = app
            .post_signed(message(&self.ch, "+14155550100"))
            .called_at(BASE)
            .send()
            .await;
        assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    }

    fn requests(&self, requests: &[Request], method: &str, suffix: &str) -> usize {
        requests
            .iter()
            .filter(|r| r.method.as_str() == method && r.url.path().ends_with(suffix))
            .count()
    }

    async fn closes(&self, env: &Env) -> usize {
        let suffix = format!("/Interactions/{}/Channels/{}", self.kd, self.uo);
        self.requests(
            &env.flex.received_requests().await.unwrap(),
            "POST",
            &suffix,
        )
    }

    async fn messages(&self, env: &Env) -> usize {
        let suffix = format!("/Conversations/{}/Messages", self.ch);
        self.requests(
            &env.conversations.received_requests().await.unwrap(),
            "POST",
            &suffix,
        )
    }
}

/// Twilio's state served from one world, with webhooks removable and every Conversations
/// POST (a message, a conversation's timers) taken.
async fn handed_off_world() -> (Env, World) {
    let env = Env::new().await;
    let world = World::default();
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;
    world.serve(&env.flex).await;
    webhooks_are_removable(&env).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("IM")})),
        )
        .mount(&env.conversations)
        .await;
    (env, world)
}

/// TaskRouter's live-task list: `live` for the conversation `ch`, none for any other.
async fn live_tasks(env: &Env, ch: &str, live: serde_json::Value) {
    let list = |tasks: serde_json::Value| {
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tasks": tasks,
            "meta": {"page": 0, "page_size": 50, "key": "tasks", "next_page_url": null},
        }))
    };
    let tasks = format!("/v1/Workspaces/{WORKSPACE}/Tasks");
    Mock::given(method("GET"))
        .and(path(tasks.as_str()))
        .and(query_param_contains("EvaluateTaskAttributes", ch))
        .respond_with(list(live))
        .with_priority(1)
        .mount(&env.taskrouter)
        .await;
    Mock::given(method("GET"))
        .and(path(tasks.as_str()))
        .respond_with(list(serde_json::json!([])))
        .with_priority(2)
        .mount(&env.taskrouter)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_whose_event_never_came_is_closed_once_a_live_one_is_kept_open_and_a_parked_one_left(
) {
    let (env, world) = handed_off_world().await;
    let (orphan, live, parked) = (
        Handoff::mount(&env).await,
        Handoff::mount(&env).await,
        Handoff::mount(&env).await,
    );
    let transfer = random_sid("WT");
    live_tasks(
        &env,
        &live.ch,
        serde_json::json!([{"sid": transfer, "assignment_status": "assigned"}]),
    )
    .await;
    let app = TestApp::start_with_config(&env, &sweeping(), Some(RULES)).await;
    let store = env.store().await;
    for h in [&orphan, &live, &parked] {
        h.first_message(&app).await;
        wait_for_state(&store, &h.ch, JobState::Created).await;
    }
    // Their tasks time out, and TaskRouter's events never reach flexhook. One channel an
    // agent parked on purpose.
    for h in [&orphan, &live, &parked] {
        world.task_ended("workflow.timeout", &h.wt, &h.ch, &h.kd, &h.uo);
        world.channel_status(&h.uo, "active");
    }
    world.channel_status(&parked.uo, "inactive");

    let first = sweep(&env, &store).await;
    let orphaned: Vec<&str> = first
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Orphaned)
        .map(|f| f.conversation.as_str())
        .collect();
    assert_eq!(orphaned.len(), 2, "{first:?}");
    assert!(orphaned.contains(&orphan.ch.as_str()) && orphaned.contains(&live.ch.as_str()));
    wait_until(&store, &orphan.ch, JobKind::Close, JobState::Closed).await;
    wait_until(&store, &live.ch, JobKind::Close, JobState::KeptOpen).await;
    assert!(store
        .find(JobKind::Close, &parked.ch)
        .await
        .unwrap()
        .is_none());

    // Sweeping again finds the same events, and does nothing twice.
    let second = sweep(&env, &store).await;
    assert!(second.findings.is_empty(), "{second:?}");

    // The transfer ends, and that event is lost too: the kept-open one is closed.
    env.taskrouter.reset().await;
    world.serve(&env.taskrouter).await;
    live_tasks(&env, &live.ch, serde_json::json!([])).await;
    let third = sweep(&env, &store).await;
    assert_eq!(
        third
            .findings
            .iter()
            .map(|f| (f.kind, f.conversation.as_str()))
            .collect::<Vec<_>>(),
        [(FindingKind::KeptOpen, live.ch.as_str())]
    );
    wait_until(&store, &live.ch, JobKind::Close, JobState::Closed).await;
    app.stop().await;

    assert_eq!(
        (orphan.closes(&env).await, orphan.messages(&env).await),
        (1, 1)
    );
    assert_eq!((live.closes(&env).await, live.messages(&env).await), (1, 1));
    assert_eq!(
        (parked.closes(&env).await, parked.messages(&env).await),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_channel_whose_task_end_never_came_gets_its_watch_once_and_a_closed_one_none() {
    let (env, world) = handed_off_world().await;
    let (parked, closed) = (Handoff::mount(&env).await, Handoff::mount(&env).await);
    live_tasks(&env, &parked.ch, serde_json::json!([])).await;
    let mut settings = sweeping();
    settings.push(("lifecycle.close_after", "24h"));
    let app = TestApp::start_with_config(&env, &settings, Some(RULES)).await;
    let store = env.store().await;
    for h in [&parked, &closed] {
        h.first_message(&app).await;
        wait_until(&store, &h.ch, JobKind::Timers, JobState::Set).await;
    }
    // Their agents complete their tasks; TaskRouter's events never reach flexhook. One
    // agent parked the channel, the other closed it.
    for h in [&parked, &closed] {
        world.task_ended("task.completed", &h.wt, &h.ch, &h.kd, &h.uo);
    }
    world.channel_status(&parked.uo, "inactive");
    world.channel_status(&closed.uo, "closed");

    let first = sweep_with(&env, &store, &settings).await;
    assert_eq!(
        first
            .findings
            .iter()
            .map(|f| (f.kind, f.conversation.as_str()))
            .collect::<Vec<_>>(),
        [(FindingKind::Parked, parked.ch.as_str())],
        "{first:?}"
    );
    let episode = format!("{}/{}", parked.ch, parked.wt);
    wait_until(&store, &episode, JobKind::Watch, JobState::Watching).await;
    // Sweeping again finds the same events, and does nothing twice.
    let second = sweep_with(&env, &store, &settings).await;
    assert!(second.findings.is_empty(), "{second:?}");
    app.stop().await;

    assert_eq!(closed_timers(&env, &parked.ch).await, ["PT24H", "P90D"]);
    assert_eq!(closed_timers(&env, &closed.ch).await, ["PT24H"]);
    let unwatched = format!("{}/{}", closed.ch, closed.wt);
    assert!(store
        .find(JobKind::Watch, &unwatched)
        .await
        .unwrap()
        .is_none());
    // Neither channel is closed by flexhook: a completed task orphans nothing.
    assert_eq!(
        (parked.closes(&env).await, closed.closes(&env).await),
        (0, 0)
    );
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_sweeping_at_once_make_one_interaction_and_one_close_each() {
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let env = Env::new().await;
    let world = World::default();
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;
    world.serve(&env.flex).await;
    // The missed conversations' creates; the orphan's own answer comes first.
    create_interaction()
        .respond_with(created("CH0"))
        .with_priority(6)
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let orphan = Handoff::mount(&env).await;
    live_tasks(&env, &orphan.ch, serde_json::json!([])).await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": random_sid("IM")})),
        )
        .mount(&env.conversations)
        .await;
    let mut settings = sweeping();
    settings.push(("store.url", url.as_str()));
    // The orphan is handed off while sweeping is off.
    let app = TestApp::start_with_config(&env, &[("store.url", url.as_str())], Some(RULES)).await;
    app.post_form(&message(&orphan.ch, "+14155550100")).await;
    let store = Store::open(
        &flexhook::domain::DatabaseUrl::new(url.clone()),
        &flexhook::store::StoreOptions {
            busy_timeout: Duration::from_secs(5),
            clock: flexhook::clock::Clock::system(),
        },
    )
    .await
    .unwrap();
    wait_for_state(&store, &orphan.ch, JobState::Created).await;
    app.stop().await;
    let missed: Vec<Conversation> = (0..20)
        .map(|_| Conversation::with_webhook(&ours(), "+14155550100", "2026-12-05T09:30:00Z"))
        .collect();
    for c in &missed {
        world.add(c.clone());
    }
    world.task_ended(
        "workflow.timeout",
        &orphan.wt,
        &orphan.ch,
        &orphan.kd,
        &orphan.uo,
    );
    world.task_ended(
        "task.canceled",
        &orphan.wt,
        &orphan.ch,
        &orphan.kd,
        &orphan.uo,
    );
    world.channel_status(&orphan.uo, "active");

    // Two instances start at once, each sweeping at start-up, and a third sweep by hand.
    let (a, b) = tokio::join!(
        TestApp::start_with_config(&env, &settings, Some(RULES)),
        TestApp::start_with_config(&env, &settings, Some(RULES)),
    );
    let by_hand = sweep(&env, &store).await;
    for c in &missed {
        wait_for_state(&store, &c.sid, JobState::Created).await;
    }
    wait_until(&store, &orphan.ch, JobKind::Close, JobState::Closed).await;
    a.stop().await;
    b.stop().await;
    let creates = creates_by_conversation(&env).await;
    for c in &missed {
        assert_eq!(creates.get(&c.sid).map_or(0, Vec::len), 1, "{}", c.sid);
    }
    assert_eq!(
        (orphan.closes(&env).await, orphan.messages(&env).await),
        (1, 1)
    );
    // Whoever swept first found them; a later sweep sees them known.
    let after = sweep(&env, &store).await;
    assert!(
        after.findings.is_empty(),
        "{after:?} (by hand, earlier: {by_hand:?})"
    );
    store.close().await;
}

/// `flexhook reconcile ARGS` against `env`'s stand-ins and store, as an operator runs it.
fn reconcile_cli(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["reconcile"];
    all.extend_from_slice(args);
    flexhook_cli(env, &all)
}

/// `flexhook ARGS` against `env`'s stand-ins and store.
fn flexhook_cli(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut command = flexhook(args);
    command
        .env("FLEXHOOK_ENV", "test")
        .env("FLEXHOOK_CONFIG_DIR", common::binary::CONFIG_DIR)
        .env("FLEXHOOK_STORE__URL", env.db_url())
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("FLEXHOOK_FLEX__WORKSPACE_SID", WORKSPACE)
        .env("FLEXHOOK_FLEX__WORKFLOW_SID", WORKFLOW)
        .env("FLEXHOOK_SERVER__PUBLIC_BASE_URL", BASE)
        .env("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", env.flex.uri())
        .env(
            "FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL",
            env.conversations.uri(),
        )
        .env(
            "FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL",
            env.taskrouter.uri(),
        );
    let out = run(command);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sweeps_once_dry_run_or_not_and_says_by_its_exit_code_what_it_found() {
    let env = Env::new().await;
    // Twilio's lists cannot be read: exit 2.
    let (code, _, stderr) = reconcile_cli(&env, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the sweep failed"), "{stderr}");

    let world = World::default();
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;
    let missed = Conversation::with_webhook(&ours(), "+14155550100", "2026-12-05T09:30:00Z");
    world.add(missed.clone());
    // Created a moment ago: its webhook may be on its way, so a later sweep judges it.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let fresh = Conversation::with_webhook(&ours(), "+14155550103", &now);
    world.add(fresh.clone());

    let (code, stdout, stderr) = reconcile_cli(&env, &["--dry-run", "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let sweep: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(sweep["dry_run"], true);
    assert_eq!(sweep["findings"].as_array().unwrap().len(), 1, "{sweep:#}");
    assert_eq!(sweep["findings"][0]["kind"], "missed");
    assert_eq!(sweep["findings"][0]["conversation"], missed.sid.as_str());
    assert_eq!(sweep["conversations"], 2, "{sweep:#}");
    assert!(sweep["summary"].as_str().unwrap().starts_with("1 missed"));
    let store = env.store().await;
    assert!(
        stored_job(&store, &missed.sid).await.is_none(),
        "a dry run does nothing"
    );

    let (code, stdout, _) = reconcile_cli(&env, &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("missed"), "{stdout}");
    assert!(stdout.contains(&missed.sid), "{stdout}");
    assert!(stdout.contains("queued its interaction job"), "{stdout}");
    let job = stored_job(&store, &missed.sid).await.unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert!(stored_job(&store, &fresh.sid).await.is_none(), "not yet");
    // `flexhook check` reports that sweep and what it found.
    let (_, stdout, _) = flexhook_cli(&env, &["check", "--json"]);
    let lines: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let sweep_line = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["check"] == "the last reconciliation sweep")
        .unwrap_or_else(|| panic!("{lines:#}"));
    assert_eq!(sweep_line["ok"], true, "{sweep_line:#}");
    assert!(
        sweep_line["detail"]
            .as_str()
            .unwrap()
            .ends_with(": 1 missed"),
        "{sweep_line:#}"
    );
    assert!(
        sweep_line["notes"][0]
            .as_str()
            .unwrap()
            .contains(&missed.sid),
        "{sweep_line:#}"
    );

    let (code, stdout, _) = reconcile_cli(&env, &["--since", "1h"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("nothing to do"), "{stdout}");
    let status = store.sweep_status(ACCOUNT).await.unwrap().unwrap();
    assert!(status.last_success_at.is_some() && status.last_error.is_none());

    let (code, _, stderr) = reconcile_cli(&env, &["--since", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
}

#[tokio::test]
async fn the_conversation_list_is_read_a_page_at_a_time_and_only_on_twilio_s_own_host() {
    use wiremock::matchers::query_param;
    let env = Env::new().await;
    let page = |sids: &[&str], next: Option<String>| {
        let conversations: Vec<serde_json::Value> = sids
            .iter()
            .map(|sid| serde_json::json!({"sid": sid, "state": "active"}))
            .collect();
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "conversations": conversations,
            "meta": {"key": "conversations", "next_page_url": next},
        }))
    };
    let (a, b) = (random_sid("CH"), random_sid("CH"));
    let second = format!(
        "{}/v1/Conversations?PageSize=100&Page=1",
        env.conversations.uri()
    );
    Mock::given(method("GET"))
        .and(path("/v1/Conversations"))
        .and(query_param("Page", "1"))
        .respond_with(page(
            &[&b],
            Some("https://elsewhere.example/v1/Conversations?Page=2".into()),
        ))
        .mount(&env.conversations)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/Conversations"))
        .and(query_param("State", "active"))
        .and(query_param("StartDate", "2026-12-05T00:00:00Z"))
        .respond_with(page(&[&a], Some(second)))
        .mount(&env.conversations)
        .await;
    let settings = env.settings(&[]);
    let client = TwilioClient::new(&settings.accounts.first().twilio).unwrap();
    let mut pages = client.active_conversations_since("2026-12-05T00:00:00Z");
    let first = pages.next_page().await.unwrap().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].sid.as_str(), a);
    assert_eq!(
        env.conversations.received_requests().await.unwrap().len(),
        1,
        "the second page is read only when asked for"
    );
    let next = pages.next_page().await;
    let error = next.expect_err("a next page on another host is not followed");
    assert!(error.to_string().contains("elsewhere.example"), "{error}");
}

#[tokio::test]
async fn a_conversation_too_young_to_judge_is_queued_by_the_first_sweep_after_its_grace() {
    let env = Env::new().await;
    let world = World::default();
    world.serve(&env.conversations).await;
    world.serve(&env.taskrouter).await;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let fresh = Conversation::with_webhook(&ours(), "+14155550103", &now);
    world.add(fresh.clone());
    let store = env.store().await;

    let early = sweep(&env, &store).await;
    assert!(
        early.findings.iter().all(|f| f.kind != FindingKind::Missed),
        "its first webhook may still be on its way: {early:?}"
    );
    assert!(stored_job(&store, &fresh.sid).await.is_none());

    // Three minutes on (the store's clock; nothing sleeps), it is old enough to be missed.
    env.clock.advance(Duration::from_secs(3 * 60));
    let later = sweep(&env, &store).await;
    let missed: Vec<_> = later
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Missed)
        .collect();
    assert_eq!(missed.len(), 1, "{later:?}");
    assert_eq!(missed[0].conversation.as_str(), fresh.sid);
    let job = stored_job(&store, &fresh.sid).await.unwrap();
    assert_eq!(job.kind, JobKind::Interaction);
    assert_eq!(job.state, JobState::Pending);
}

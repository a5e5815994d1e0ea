//! Several instances on one PostgreSQL: two real `flexhook serve` processes share a
//! database and a rate-limit budget, under a hostile Flex stand-in, and one of them is
//! killed with SIGKILL mid-run. Needs `FLEXHOOK_TEST_POSTGRES_URL` (`.ci/run` sets it).

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use flexhook::domain::DatabaseUrl;
use flexhook::signature::{compute_signature, Algorithm};
use flexhook::store::{JobState, Store, StoreOptions};
use wiremock::{Request, Respond, ResponseTemplate};

const CONVERSATIONS: usize = 200;
/// Twilio's limit for the Interactions API, per account.
const TWILIO_LIMIT: usize = 20;

/// Flex at its worst: a 500 now and then, a 429 now and then, and 429 past 20 creates in
/// any one second. It counts what it accepted, per conversation and per second.
#[derive(Default)]
struct Hostile {
    requests: AtomicUsize,
    window: Mutex<VecDeque<Instant>>,
    peak: AtomicUsize,
    created: Mutex<HashMap<String, usize>>,
}

#[derive(Clone, Default)]
struct HostileFlex(Arc<Hostile>);

impl Respond for HostileFlex {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // Every request counts toward Twilio's limit, whatever its answer.
        let now = Instant::now();
        let in_window = {
            let mut window = self.0.window.lock().unwrap();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            window.push_back(now);
            window.len()
        };
        self.0.peak.fetch_max(in_window, Ordering::SeqCst);
        if in_window > TWILIO_LIMIT {
            return twilio_error(429, 20429, "Too Many Requests");
        }
        let n = self.0.requests.fetch_add(1, Ordering::SeqCst);
        if n % 7 == 3 {
            return twilio_error(500, 20500, "Internal Server Error");
        }
        if n % 11 == 5 {
            return twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "1");
        }
        let channel = form_json(&request.body, "Channel");
        let ch = channel["properties"]["media_channel_sid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *self
            .0
            .created
            .lock()
            .unwrap()
            .entry(ch.clone())
            .or_default() += 1;
        created(&ch)
    }
}

/// TaskRouter as Flex leaves it: a task for every interaction the Flex stand-in created,
/// found by `EvaluateTaskAttributes=conversationSid == "CH…"`.
#[derive(Clone)]
struct TaskRouterOf(HostileFlex);

impl Respond for TaskRouterOf {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let wanted = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "EvaluateTaskAttributes")
            .and_then(|(_, v)| v.split('"').nth(1).map(str::to_owned))
            .unwrap_or_default();
        let known = self.0 .0.created.lock().unwrap().contains_key(&wanted);
        let tasks: Vec<serde_json::Value> = if known {
            vec![serde_json::json!({
                "sid": format!("WT{}", &wanted[2..]),
                "assignment_status": "pending",
                "attributes": serde_json::json!({"conversationSid": wanted}).to_string(),
            })]
        } else {
            Vec::new()
        };
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "tasks": tasks,
            "meta": {"page": 0, "page_size": 20, "key": "tasks", "next_page_url": null},
        }))
    }
}

/// A running `flexhook serve`, killed when dropped.
struct Instance {
    child: Child,
    port: u16,
}

impl Instance {
    fn start(database: &str, env: &Env) -> Self {
        let mut child = serve_command(env.dir.path(), database)
            .env("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", env.flex.uri())
            .env(
                "FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL",
                env.conversations.uri(),
            )
            .env(
                "FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL",
                env.taskrouter.uri(),
            )
            .env("FLEXHOOK_TWILIO__REQUEST_TIMEOUT_MS", "1000")
            .env("FLEXHOOK_WORKER__LEASE_SECS", "3")
            .env("FLEXHOOK_WORKER__RETRY_BASE_MS", "50")
            .env("FLEXHOOK_WORKER__RETRY_CAP_MS", "500")
            .env("FLEXHOOK_WORKER__LOOKUP_DELAY_MS", "100")
            .env("FLEXHOOK_WORKER__POLL_INTERVAL_MS", "100")
            .env("FLEXHOOK_WORKER__CONCURRENCY", "16")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flexhook serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("flexhook listening") {
                    let port = line
                        .split_whitespace()
                        .find_map(|t| t.strip_prefix("port="))
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(port), Some(tx)) = (port, tx.take()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("flexhook serve reports its port");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/conversations", self.port)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn deliver(client: &reqwest::Client, url: &str, conversation: &str) -> u16 {
    let params = message(conversation, "+14155550100");
    let signature = compute_signature(TOKEN.as_bytes(), Algorithm::HmacSha1, url, &params);
    client
        .post(url)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_and_one_budget_and_survive_a_sigkill() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let env = Env::new().await;
    let flex = HostileFlex::default();
    create_interaction()
        .respond_with(flex.clone())
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(TaskRouterOf(flex.clone()))
        .mount(&env.taskrouter)
        .await;
    let mut first = Instance::start(&database, &env);
    let second = Instance::start(&database, &env);
    let first_pid = first.child.id();

    // Every conversation's first message reaches both instances at once.
    let conversations: Vec<String> = (0..CONVERSATIONS).map(|_| random_sid("CH")).collect();
    let client = reqwest::Client::new();
    let mut deliveries = tokio::task::JoinSet::new();
    for ch in &conversations {
        for url in [first.url(), second.url()] {
            let (client, ch) = (client.clone(), ch.clone());
            deliveries.spawn(async move { deliver(&client, &url, &ch).await });
        }
    }
    while let Some(status) = deliveries.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }

    // SIGKILL one instance while both are creating.
    let store = Store::open(
        &DatabaseUrl::new(database.clone()),
        &StoreOptions {
            busy_timeout: Duration::from_secs(5),
            clock: flexhook::clock::Clock::system(),
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while flex.0.created.lock().unwrap().len() < CONVERSATIONS / 5 {
        assert!(Instant::now() < deadline, "the instances never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let orphaned: Vec<String> = store
        .list(Some(JobState::Pending), None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| {
            // Leases are `{pid}-{random}#{claim}`: the killed instance's own.
            j.lease_owner
                .as_deref()
                .is_some_and(|owner| owner.starts_with(&format!("{first_pid}-")))
        })
        .map(|j| j.conversation_sid.to_string())
        .collect();

    // The survivor finishes everything, the dead instance's jobs once their leases expire.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = store
            .list(Some(JobState::Created), None, usize::MAX)
            .await
            .unwrap()
            .len();
        if done == CONVERSATIONS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {CONVERSATIONS} created in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);

    let created = flex.0.created.lock().unwrap().clone();
    assert_eq!(created.len(), CONVERSATIONS);
    for ch in &conversations {
        assert_eq!(created.get(ch), Some(&1), "{ch}: exactly one interaction");
    }
    let peak = flex.0.peak.load(Ordering::SeqCst);
    assert!(
        peak <= TWILIO_LIMIT,
        "{peak} create requests in one second, over Twilio's {TWILIO_LIMIT}"
    );
    assert!(
        !orphaned.is_empty(),
        "the killed instance held no job when it died: the test proved nothing"
    );
    for ch in &orphaned {
        let job = store
            .get(&flexhook::domain::ConversationSid::parse(ch).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            job.state,
            JobState::Created,
            "{ch}: the dead instance's job"
        );
    }
    store.close().await;
}

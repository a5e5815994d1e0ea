//! PostgreSQL as it fails: an unreachable server, a missing database or a wrong password
//! stop start-up with a message that names the host and the database and never the
//! password; a connection lost while running turns new conversations into 503s (Twilio
//! retries), later messages keep their 200 from memory, and the pool heals by itself.
//! Needs `FLEXHOOK_TEST_POSTGRES_URL` (`.ci/run` sets it).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::binary::run_blocking;
use common::*;
use flexhook::store::JobState;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// `flexhook serve` against `url`, run to its exit (it must fail fast).
fn serve_with_store(url: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = flexhook(&["serve"]);
    serve
        .env("FLEXHOOK_ENV", "local")
        .env("FLEXHOOK_CONFIG_DIR", common::binary::CONFIG_DIR)
        .env("FLEXHOOK_STORE__URL", url)
        .env("FLEXHOOK_SERVER__PORT", "0")
        .current_dir(dir.path());
    let out = run(serve);
    (out.status.success(), out.stderr)
}

#[test]
fn an_unreachable_server_stops_start_up_naming_host_and_database_not_the_password() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (ok, stderr) = serve_with_store(&format!(
        "postgres://flexhook:s3cret-pw@127.0.0.1:{port}/flexhook_prod"
    ));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("store.url"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("flexhook_prod"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password is never shown: {stderr}"
    );
    assert!(!stderr.contains("flexhook listening"), "{stderr}");
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test]
async fn a_wrong_password_stops_start_up_without_showing_it() {
    let Some(fresh) = fresh_postgres_database().await else {
        return;
    };
    let mut wrong = url::Url::parse(&fresh).unwrap();
    let checked = match wrong.password() {
        Some(_) => Ok(()),
        None => Err("the test cluster checks no password (.ci/postgres.sh sets one)".to_owned()),
    };
    if services::available(&services::this_test(), checked).is_none() {
        return;
    }
    wrong.set_password(Some("not-the-pw-4711")).unwrap();
    let database = wrong.path().trim_start_matches('/').to_owned();
    let (ok, stderr) = tokio::task::spawn_blocking(move || serve_with_store(wrong.as_str()))
        .await
        .unwrap();
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains(&database), "names the database: {stderr}");
    assert!(stderr.contains("127.0.0.1"), "names the host: {stderr}");
    assert!(!stderr.contains("not-the-pw-4711"), "{stderr}");
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test]
async fn a_missing_database_stops_start_up_by_name_without_the_password() {
    let Some(fresh) = fresh_postgres_database().await else {
        return;
    };
    let mut missing = url::Url::parse(&fresh).unwrap();
    missing.set_path("no_such_database");
    let password = missing.password().map(str::to_owned);
    let (ok, stderr) = tokio::task::spawn_blocking(move || serve_with_store(missing.as_str()))
        .await
        .unwrap();
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("no_such_database"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    if let Some(password) = password {
        assert!(
            !stderr.contains(&password),
            "the password is never shown: {stderr}"
        );
    }
}

/// A TCP proxy in front of PostgreSQL that can drop every connection and refuse new ones,
/// as a failed-over or restarted database does.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (flag, set) = (down.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                set.lock().await.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            down,
            connections,
        }
    }

    async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn heal(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_answers_503_to_new_conversations_200_to_known_ones_and_heals() {
    let Some(fresh) = fresh_postgres_database().await else {
        return;
    };
    let direct = url::Url::parse(&fresh).unwrap();
    let proxy = Proxy::start(format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    ))
    .await;
    let mut through = direct.clone();
    through.set_port(Some(proxy.port)).unwrap();

    let env = Env::new().await;
    create_interaction()
        .respond_with(created("CH00000000000000000000000000000000"))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start(
        &env,
        &[
            ("store.url", through.as_str()),
            ("store.busy_timeout_ms", "1000"),
        ],
    )
    .await;
    let known = random_sid("CH");
    assert_eq!(
        app.post_form(&message(&known, "+14155550100"))
            .await
            .status(),
        200
    );

    proxy.cut().await;
    let lost = random_sid("CH");
    let response = app.post_form(&message(&lost, "+14155550101")).await;
    assert_eq!(response.status(), 503, "Twilio retries a 503");
    let later = with(message(&known, "+14155550100"), "Index", "1");
    assert_eq!(
        app.post_form(&later).await.status(),
        200,
        "answered from memory"
    );

    proxy.heal();
    // Twilio's retry of the lost conversation's message: the pool has reconnected.
    let retried = with(message(&lost, "+14155550101"), "RetryCount", "1");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.post_form(&retried).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            std::time::Instant::now() < deadline,
            "the store never came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = flexhook::store::Store::open(
        &flexhook::domain::DatabaseUrl::new(fresh),
        &flexhook::store::StoreOptions {
            busy_timeout: Duration::from_secs(5),
            clock: flexhook::clock::Clock::system(),
        },
    )
    .await
    .unwrap();
    for ch in [&known, &lost] {
        wait_for_state(&store, ch, JobState::Created).await;
    }
    app.stop().await;
    store.close().await;
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test]
async fn store_copy_moves_every_job_from_sqlite_to_postgres_and_is_safe_to_rerun() {
    use flexhook::domain::{ConversationSid, DatabaseUrl, InteractionSid, TaskSid};
    use flexhook::store::{JobError, JobKind, Store, StoreOptions, Transition};
    let Some(target) = fresh_postgres_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source_url = format!("sqlite://{}/flexhook.db", dir.path().display());
    let options = StoreOptions {
        busy_timeout: Duration::from_secs(5),
        clock: flexhook::clock::Clock::system(),
    };
    let source = Store::open(&DatabaseUrl::new(&source_url), &options)
        .await
        .unwrap();
    let (created, dead, pending) = (random_sid("CH"), random_sid("CH"), random_sid("CH"));
    let (kd, wt) = (random_sid("KD"), random_sid("WT"));
    // Jobs as the service leaves them: one created with its SIDs, one dead, one pending.
    let new_job = |ch: &str| {
        flexhook::jobs::Action::CreateInteraction(flexhook::routing::RoutingInput {
            customer_address: Some(flexhook::domain::CustomerAddress::new("+14155550100")),
            channel_type: flexhook::domain::ChannelType::Sms,
            proxy_address: None,
            source: None,
            address: None,
            attributes: None,
            at_ms: None,
            body: None,
            last_worker: None,
        })
        .job(
            &ConversationSid::parse(ch).unwrap(),
            &flexhook::domain::AccountSid::parse(ACCOUNT).unwrap(),
            None,
            flexhook::store::now_ms(),
        )
    };
    source
        .insert_batch(&[new_job(&created), new_job(&dead), new_job(&pending)])
        .await
        .unwrap();
    source
        .claim_due("w", Duration::from_secs(60), 2, None)
        .await
        .unwrap();
    let id = |ch: &str| {
        let source = source.clone();
        let ch = ConversationSid::parse(ch).unwrap();
        async move { source.get(&ch).await.unwrap().unwrap().id }
    };
    let done = Transition::Created {
        interaction_sid: Some(InteractionSid::parse(&kd).unwrap()),
        interaction_channel_sid: None,
        task_sid: Some(TaskSid::parse(&wt).unwrap()),
    };
    assert!(source.record(id(&created).await, "w", &done).await.unwrap());
    let refused = Transition::Dead {
        error: JobError::twilio(
            Some(80102),
            Some(400),
            "Participant already in an interaction",
        ),
    };
    assert!(source.record(id(&dead).await, "w", &refused).await.unwrap());
    source.close().await;

    let copy = |from: &str, to: &str| {
        let out = run_blocking(flexhook(&["store", "copy", "--from", from, "--to", to]));
        async move {
            let out = out.await;
            assert!(out.status.success(), "{out:?}");
            out.stdout
        }
    };
    let first = copy(&source_url, &target).await;
    assert!(first.contains("copied 3 of 3 jobs"), "{first}");
    let again = copy(&source_url, &target).await;
    assert!(again.contains("copied 0 of 3 jobs"), "{again}");
    assert!(again.contains("3 already there"), "{again}");

    let copied_url = target.clone();
    let copied = Store::open(&DatabaseUrl::new(target), &options)
        .await
        .unwrap();
    let job = |ch: String| {
        let copied = copied.clone();
        async move {
            copied
                .find(JobKind::Interaction, &ch)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let c = job(created.clone()).await;
    assert_eq!(c.state, JobState::Created);
    assert_eq!(c.interaction_sid.unwrap().as_str(), kd);
    assert_eq!(c.task_sid.unwrap().as_str(), wt);
    assert_eq!(c.attempts, 1);
    let d = job(dead.clone()).await;
    assert_eq!(d.state, JobState::Dead);
    assert_eq!(d.last_error.unwrap().code, Some(80102));
    let p = job(pending.clone()).await;
    assert_eq!(p.state, JobState::Pending);
    assert_eq!(p.lease_owner, None, "leases stay behind");
    assert_eq!(
        flexhook::jobs::routing(&p)
            .unwrap()
            .customer_address
            .as_ref()
            .unwrap()
            .expose(),
        "+14155550100"
    );
    // `flexhook jobs` reads PostgreSQL like SQLite.
    let mut list = flexhook(&["jobs", "list", "--json", "--state", "dead"]);
    list.env("FLEXHOOK_STORE__URL", &copied_url);
    let listed = run_blocking(list).await;
    assert!(listed.status.success(), "{listed:?}");
    let stdout = &listed.stdout;
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains(&dead) && stdout.contains("80102"),
        "{stdout}"
    );
    // The copy takes part in the service like any job: the pending one is claimable.
    let claimed = copied
        .claim_due("w2", Duration::from_secs(1), 10, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].conversation_sid.as_str(), pending);
    copied.close().await;
}

#[test]
fn store_copy_from_a_missing_sqlite_file_fails_instead_of_copying_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(flexhook(&[
        "store",
        "copy",
        "--from",
        &format!("sqlite://{}/typo.db", dir.path().display()),
        "--to",
        &format!("sqlite://{}/other.db", dir.path().display()),
    ]));
    let stderr = &out.stderr;
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no such SQLite file"), "{stderr}");
    assert!(!dir.path().join("typo.db").exists(), "nothing was created");
}

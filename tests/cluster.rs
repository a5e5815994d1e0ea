//! Several instances on one PostgreSQL: two real `flexhook serve` processes share a
//! database and a rate-limit budget, under a hostile Flex stand-in, and one of them is
//! killed with SIGKILL mid-run. Needs `FLEXHOOK_TEST_POSTGRES_URL` (`.ci/run` sets it).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::flex::{Answer, FlexStandIn};
use common::*;
use flexhook::domain::DatabaseUrl;
use flexhook::store::{JobState, Store, StoreOptions};

const CONVERSATIONS: usize = 200;
/// Twilio's limit for the Interactions API, per account.
const TWILIO_LIMIT: usize = 20;

/// Flex at its worst: a 500 now and then, a 429 now and then, and 429 past 20 creates in
/// any one second; TaskRouter shows a task for every interaction it created.
async fn hostile_flex() -> FlexStandIn {
    let requests = AtomicUsize::new(0);
    let flex = FlexStandIn::start(move |_, _| {
        let n = requests.fetch_add(1, Ordering::SeqCst);
        if n % 7 == 3 {
            Answer::Failed500
        } else if n % 11 == 5 {
            Answer::RateLimited(Some("1".into()))
        } else {
            Answer::Created
        }
    })
    .await;
    flex.limit_per_second(TWILIO_LIMIT);
    flex
}

/// A running `flexhook serve` on the shared database, against `flex`.
fn instance(database: &str, config_dir: &Path, flex: &FlexStandIn) -> Served {
    let mut command = serve_command(config_dir, database, flex.uri());
    command
        .env("FLEXHOOK_TWILIO__REQUEST_TIMEOUT_MS", "1000")
        .env("FLEXHOOK_WORKER__CONCURRENCY", "16");
    Served::start(command)
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_and_one_budget_and_survive_a_sigkill() {
    let Some(database) = fresh_postgres_database().await else {
        return;
    };
    let config_dir = tempfile::tempdir().unwrap();
    let flex = hostile_flex().await;
    let first = instance(&database, config_dir.path(), &flex);
    let second = instance(&database, config_dir.path(), &flex);
    let first_pid = first.pid();

    // Every conversation's first message reaches both instances at once.
    let conversations: Vec<String> = (0..CONVERSATIONS).map(|_| random_sid("CH")).collect();
    let mut deliveries = tokio::task::JoinSet::new();
    for ch in &conversations {
        for instance in [&first, &second] {
            let post = instance.post_signed(message(ch, "+14155550100"));
            deliveries.spawn(async move { post.send().await.status() });
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
    while flex.interaction_counts().len() < CONVERSATIONS / 5 {
        assert!(Instant::now() < deadline, "the instances never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.sigkill();
    let orphaned: Vec<String> = store
        .list(Some(JobState::Pending), None, None, usize::MAX)
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
            .list(Some(JobState::Created), None, None, usize::MAX)
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

    let created = flex.interaction_counts();
    assert_eq!(created.len(), CONVERSATIONS);
    for ch in &conversations {
        assert_eq!(created.get(ch), Some(&1), "{ch}: exactly one interaction");
    }
    let peak = flex.peak_creates_per_second();
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

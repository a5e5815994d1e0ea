//! The store against a real SQLite file and a real PostgreSQL: insert-if-absent, leases,
//! retries, purging, on both backends; SQLite's own file handling and migrations.

mod common;

use std::time::Duration;

use flexhook::clock::Clock;
use flexhook::domain::{AccountSid, ChannelType, ConversationSid, CustomerAddress, DatabaseUrl};
use flexhook::jobs::{routing, Action};
use flexhook::routing::RoutingInput;
use flexhook::store::{
    Armed, ErrorOrigin, Inserted, JobError, JobKind, JobState, NewJob, Store, StoreError,
    StoreOptions, Transition,
};

/// Each store gets a clock of its own, which its test moves instead of sleeping.
fn options() -> StoreOptions {
    StoreOptions {
        busy_timeout: Duration::from_secs(2),
        clock: Clock::manual(),
    }
}

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(
        &DatabaseUrl::new(format!(
            "sqlite://{}/nested/dir/jobs.db",
            dir.path().display()
        )),
        &options(),
    )
    .await
    .unwrap()
}

fn sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

fn facts() -> RoutingInput {
    RoutingInput {
        customer_address: Some(CustomerAddress::new("+14155550100")),
        channel_type: ChannelType::Sms,
        proxy_address: None,
        source: Some("SMS".into()),
        address: None,
        attributes: None,
        at_ms: None,
        body: None,
        last_worker: None,
    }
}

/// The job that performs `action` on `conversation`.
fn job_of(conversation: &str, action: Action, at: i64) -> NewJob {
    action.job(
        &ConversationSid::parse(conversation).unwrap(),
        &AccountSid::parse("AC00000000000000000000000000000000").unwrap(),
        None,
        at,
    )
}

fn new_job(conversation: &str, at: i64) -> NewJob {
    job_of(conversation, Action::CreateInteraction(facts()), at)
}

/// The id of a conversation's interaction job.
async fn id_of(store: &Store, conversation: &ConversationSid) -> i64 {
    store.get(conversation).await.unwrap().unwrap().id
}

fn error(code: i64) -> JobError {
    JobError::twilio(Some(code), Some(500), "boom")
}

async fn the_first_insert_of_a_conversation_wins_within_and_across_batches(store: Store) {
    let (a, b) = (sid("CH"), sid("CH"));
    let now = store.now_ms();
    let outcomes = store
        .insert_batch(&[new_job(&a, now), new_job(&b, now), new_job(&a, now)])
        .await
        .unwrap();
    assert_eq!(outcomes, [Inserted::New, Inserted::New, Inserted::Known]);
    let again = store.insert_batch(&[new_job(&b, now)]).await.unwrap();
    assert_eq!(again, [Inserted::Known]);
    let job = store
        .get(&ConversationSid::parse(&a).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(
        routing(&job)
            .unwrap()
            .customer_address
            .as_ref()
            .unwrap()
            .expose(),
        "+14155550100"
    );
    assert_eq!(store.list(None, None, None, 10).await.unwrap().len(), 2);
}

async fn a_batch_larger_than_one_statement_is_inserted_whole(store: Store) {
    let now = store.now_ms();
    let jobs: Vec<NewJob> = (0..300).map(|_| new_job(&sid("CH"), now)).collect();
    let outcomes = store.insert_batch(&jobs).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Inserted::New));
    assert_eq!(
        store
            .list(Some(JobState::Pending), None, None, 1000)
            .await
            .unwrap()
            .len(),
        300
    );
}

async fn a_claimed_job_is_not_claimed_again_until_its_lease_expires(store: Store) {
    let ch = sid("CH");
    let now = store.now_ms();
    store.insert_batch(&[new_job(&ch, now)]).await.unwrap();
    // A short lease, run out by moving the store's clock: PostgreSQL times leases by its
    // own clock, which the store's offset moves as much.
    let first = store
        .claim_due("worker-a", Duration::from_millis(300), 10, None)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(store
        .claim_due("worker-b", Duration::from_secs(60), 10, None)
        .await
        .unwrap()
        .is_empty());
    // The lease ran out: another worker may take it, and the first can no longer record.
    store.clock().advance(Duration::from_millis(400));
    let second = store
        .claim_due("worker-b", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let conversation = ConversationSid::parse(&ch).unwrap();
    assert!(!store
        .mark_attempt_started(
            id_of(&store, &conversation).await,
            "worker-a",
            Duration::ZERO
        )
        .await
        .unwrap());
    let dead = Transition::Dead { error: error(1) };
    assert!(!store
        .record(id_of(&store, &conversation).await, "worker-a", &dead)
        .await
        .unwrap());
    assert!(store
        .mark_attempt_started(
            id_of(&store, &conversation).await,
            "worker-b",
            Duration::ZERO
        )
        .await
        .unwrap());
    let created = Transition::Created {
        interaction_sid: None,
        interaction_channel_sid: None,
        task_sid: None,
    };
    assert!(store
        .record(id_of(&store, &conversation).await, "worker-b", &created)
        .await
        .unwrap());
    assert_eq!(
        store.get(&conversation).await.unwrap().unwrap().state,
        JobState::Created
    );
}

async fn a_retry_is_not_due_before_its_time_and_keeps_the_error(store: Store) {
    let ch = sid("CH");
    let now = store.now_ms();
    store.insert_batch(&[new_job(&ch, now)]).await.unwrap();
    let conversation = ConversationSid::parse(&ch).unwrap();
    store
        .claim_due("w", Duration::from_secs(60), 1, None)
        .await
        .unwrap();
    let retry = Transition::Retry {
        retry_in: Duration::from_millis(500),
        error: error(20500),
        create_may_have_gone_out: true,
        accepted: false,
    };
    assert!(store
        .record(id_of(&store, &conversation).await, "w", &retry)
        .await
        .unwrap());
    assert!(store
        .claim_due("w", Duration::from_secs(60), 1, None)
        .await
        .unwrap()
        .is_empty());
    let due_in = store.next_due_in(None).await.unwrap().unwrap();
    assert!(
        (Duration::from_millis(100)..=Duration::from_millis(600)).contains(&due_in),
        "due in {due_in:?}"
    );
    store.clock().advance(Duration::from_millis(600));
    let job = store
        .claim_due("w", Duration::from_secs(60), 1, None)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.attempts, 1);
    assert!(job.create_may_have_gone_out);
    assert_eq!(job.last_error.unwrap().code, Some(20500));
}

/// Two new interaction jobs, claimed by `w`.
async fn two_claimed_jobs(store: &Store) -> (String, String) {
    let (a, b) = (sid("CH"), sid("CH"));
    let now = store.now_ms();
    store
        .insert_batch(&[new_job(&a, now), new_job(&b, now)])
        .await
        .unwrap();
    store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    (a, b)
}

/// Where an attempt failed comes back with its row: a store failure as the store's (what
/// the metrics label it by), Twilio's answer as Twilio's.
async fn a_failures_origin_reads_back_from_its_row(store: Store) {
    let (a, b) = two_claimed_jobs(&store).await;
    let failures = [
        (
            &a,
            JobError::store("database is locked"),
            ErrorOrigin::Store,
        ),
        (&b, error(20500), ErrorOrigin::Twilio),
    ];
    for (ch, error, origin) in failures {
        let conversation = ConversationSid::parse(ch).unwrap();
        let retry = Transition::Retry {
            retry_in: Duration::ZERO,
            error: error.clone(),
            create_may_have_gone_out: false,
            accepted: false,
        };
        assert!(store
            .record(id_of(&store, &conversation).await, "w", &retry)
            .await
            .unwrap());
        let stored = store.get(&conversation).await.unwrap().unwrap().last_error;
        assert_eq!(stored.as_ref().map(|e| e.origin), Some(origin));
        assert_eq!(stored, Some(error));
    }
}

async fn retrying_dead_jobs_makes_them_due_with_a_lookup_first(store: Store) {
    let (a, b) = two_claimed_jobs(&store).await;
    for ch in [&a, &b] {
        let conversation = ConversationSid::parse(ch).unwrap();
        let dead = Transition::Dead {
            error: error(80102),
        };
        assert!(store
            .record(id_of(&store, &conversation).await, "w", &dead)
            .await
            .unwrap());
    }
    let a_sid = ConversationSid::parse(&a).unwrap();
    assert_eq!(store.retry_dead(Some(&a_sid)).await.unwrap(), 1);
    assert_eq!(
        store.retry_dead(Some(&a_sid)).await.unwrap(),
        0,
        "no longer dead"
    );
    let job = store.get(&a_sid).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.attempts, 0);
    assert!(job.create_may_have_gone_out);
    assert_eq!(
        store
            .list(Some(JobState::Dead), None, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.retry_dead(None).await.unwrap(), 1);
    assert!(store
        .list(Some(JobState::Dead), None, None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn stats_count_pending_and_dead_jobs_by_kind_and_age_the_oldest_pending(store: Store) {
    let empty = store.stats().await.unwrap();
    assert_eq!(empty.counts(JobKind::Interaction).pending, 0);
    assert_eq!(empty.oldest_pending_age, None);

    let (a, b, c) = (sid("CH"), sid("CH"), sid("CH"));
    store
        .insert_batch(&[new_job(&a, store.now_ms()), new_job(&b, store.now_ms())])
        .await
        .unwrap();
    store.clock().advance(Duration::from_millis(300));
    store
        .insert_batch(&[new_job(&c, store.now_ms())])
        .await
        .unwrap();
    // One of the older two dies.
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    let a_job = claimed
        .iter()
        .find(|j| j.conversation_sid.as_str() == a)
        .unwrap();
    let dead = Transition::Dead {
        error: error(20001),
    };
    assert!(store.record(a_job.id, "w", &dead).await.unwrap());

    let stats = store.stats().await.unwrap();
    let interaction = stats.counts(JobKind::Interaction);
    assert_eq!((interaction.pending, interaction.dead), (2, 1));
    assert_eq!(interaction.dead_last_hour, 1);
    assert_eq!(stats.counts(JobKind::Close).pending, 0);
    // b is the oldest pending job: inserted at least 300 ms ago.
    let age = stats.oldest_pending_age.unwrap();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(30)).contains(&age),
        "{age:?}"
    );
}

async fn purging_removes_only_finished_jobs_older_than_the_cutoff(store: Store) {
    let (done, pending) = (sid("CH"), sid("CH"));
    let now = store.now_ms();
    store
        .insert_batch(&[new_job(&done, now), new_job(&pending, now)])
        .await
        .unwrap();
    let done_sid = ConversationSid::parse(&done).unwrap();
    store
        .claim_due("w", Duration::from_secs(60), 1, None)
        .await
        .unwrap();
    store
        .claim_due("w", Duration::from_secs(60), 1, None)
        .await
        .unwrap();
    let created = Transition::Created {
        interaction_sid: None,
        interaction_channel_sid: None,
        task_sid: None,
    };
    assert!(store
        .record(id_of(&store, &done_sid).await, "w", &created)
        .await
        .unwrap());
    assert_eq!(
        store.purge_finished(Duration::from_secs(60)).await.unwrap(),
        0,
        "too recent"
    );
    store.clock().advance(Duration::from_secs(61));
    assert_eq!(
        store.purge_finished(Duration::from_secs(60)).await.unwrap(),
        1
    );
    assert!(store.get(&done_sid).await.unwrap().is_none());
    let pending_sid = ConversationSid::parse(&pending).unwrap();
    assert!(
        store.get(&pending_sid).await.unwrap().is_some(),
        "pending jobs are never purged"
    );
}

#[tokio::test]
async fn jobs_survive_closing_and_reopening_the_file_in_wal_mode() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let ch = sid("CH");
    let store = open(&dir).await;
    store
        .insert_batch(&[new_job(&ch, store.now_ms())])
        .await
        .unwrap();
    store.close().await;
    let store = open(&dir).await;
    assert!(store
        .get(&ConversationSid::parse(&ch).unwrap())
        .await
        .unwrap()
        .is_some());
    let url = format!("sqlite://{}/nested/dir/jobs.db", dir.path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
}

#[tokio::test]
async fn a_store_that_cannot_be_created_names_store_url() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), b"a file, not a directory").unwrap();
    let url = format!("sqlite://{}/blocker/jobs.db", dir.path().display());
    let err = Store::open(&DatabaseUrl::new(url), &options())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }));
    assert!(err.to_string().contains("store.url"), "{err}");
    let memory = Store::open(&DatabaseUrl::new("sqlite::memory:"), &options())
        .await
        .unwrap_err();
    assert!(memory.to_string().contains("in-memory"), "{memory}");
}

/// The columns of the landed (migration 0001) jobs table, as that version wrote them.
const LANDED_ROW: &str = "INSERT INTO jobs (conversation_sid, account_sid, chat_service_sid, \
     webhook_sid, first_message_sid, routing_input, state, attempts, next_attempt_at, \
     needs_lookup, interaction_sid, interaction_channel_sid, task_sid, last_error_code, \
     last_error_status, last_error_message, webhook_removed, age_from, created_at, updated_at) \
     VALUES (?1, 'AC00000000000000000000000000000000', 'IS00000000000000000000000000000000', \
     'WH00000000000000000000000000000000', NULL, ?2, ?3, ?4, 1000, 0, ?5, NULL, ?6, ?7, ?8, \
     ?9, ?10, 1000, 1000, 2000)";

#[tokio::test]
async fn rows_written_before_job_kinds_load_as_interaction_jobs_after_the_migration() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested/dir")).unwrap();
    // The database as the landed version left it: only the first migration applied.
    let landed = dir.path().join("landed-migrations");
    std::fs::create_dir(&landed).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_jobs.sql"
        ),
        landed.join("0001_jobs.sql"),
    )
    .unwrap();
    let url = format!(
        "sqlite://{}/nested/dir/jobs.db?mode=rwc",
        dir.path().display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(landed.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let (created, dead) = (sid("CH"), sid("CH"));
    let task = sid("WT");
    let old_input = r#"{"customer_address":"whatsapp:+34600111222","channel_type":"whatsapp"}"#;
    sqlx::query(LANDED_ROW)
        .bind(&created)
        .bind(old_input)
        .bind("created")
        .bind(1)
        .bind(sid("KD"))
        .bind(&task)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<String>)
        .bind(1)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(LANDED_ROW)
        .bind(&dead)
        .bind(r#"{"customer_address":"+14155550100","channel_type":"sms","proxy_address":"+15550001111","source":"SMS"}"#)
        .bind("dead")
        .bind(3)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(80102)
        .bind(400)
        .bind("Participant already in an interaction")
        .bind(0)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = open(&dir).await;
    let created_sid = ConversationSid::parse(&created).unwrap();
    let job = store.get(&created_sid).await.unwrap().unwrap();
    assert_eq!(job.kind, JobKind::Interaction);
    assert_eq!(job.key, created);
    assert_eq!(job.state, JobState::Created);
    assert_eq!(job.attempts, 1);
    assert!(job.webhook_removed);
    assert_eq!(
        job.task_sid.as_ref().map(|t| t.to_string()),
        Some(task.clone())
    );
    let stored = routing(&job).unwrap();
    assert_eq!(stored.channel_type, ChannelType::Whatsapp);
    assert_eq!(stored.proxy_address, None);

    let dead_sid = ConversationSid::parse(&dead).unwrap();
    let job = store.get(&dead_sid).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    let error = job.last_error.clone().unwrap();
    assert_eq!((error.code, error.status), (Some(80102), Some(400)));
    assert_eq!(error.origin, ErrorOrigin::Twilio);
    assert_eq!(
        routing(&job).unwrap().proxy_address.as_deref(),
        Some("+15550001111")
    );

    // Both still count as the conversations' one interaction job, and can be retried.
    let again = store
        .insert_batch(&[
            new_job(&created, store.now_ms()),
            new_job(&dead, store.now_ms()),
        ])
        .await
        .unwrap();
    assert_eq!(again, [Inserted::Known, Inserted::Known]);
    assert_eq!(
        store
            .list(None, Some(JobKind::Interaction), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.retry_dead(Some(&dead_sid)).await.unwrap(), 1);
    let task_sid = flexhook::domain::TaskSid::parse(&task).unwrap();
    let by_task = store.for_task(&task_sid).await.unwrap();
    assert_eq!(by_task.len(), 1);
    assert_eq!(by_task[0].conversation_sid, created_sid);
}

async fn jobs_are_found_by_task_sid(store: Store) {
    let (ch, other) = (sid("CH"), sid("CH"));
    let now = store.now_ms();
    store
        .insert_batch(&[new_job(&ch, now), new_job(&other, now)])
        .await
        .unwrap();
    store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    let task = flexhook::domain::TaskSid::parse(&sid("WT")).unwrap();
    let conversation = ConversationSid::parse(&ch).unwrap();
    let created = Transition::Created {
        interaction_sid: None,
        interaction_channel_sid: None,
        task_sid: Some(task.clone()),
    };
    assert!(store
        .record(id_of(&store, &conversation).await, "w", &created)
        .await
        .unwrap());
    let found = store.for_task(&task).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].conversation_sid, conversation);
    let unknown = flexhook::domain::TaskSid::parse(&sid("WT")).unwrap();
    assert!(store.for_task(&unknown).await.unwrap().is_empty());

    assert_eq!(
        store
            .for_conversation(&conversation)
            .await
            .unwrap()
            .iter()
            .map(|j| j.kind)
            .collect::<Vec<_>>(),
        [JobKind::Interaction]
    );

    // An episode's jobs are keyed `CH…/WT…`: they are the conversation's too, and only
    // its own.
    let watch = |ended: &str| {
        use flexhook::domain::{InteractionChannelSid, InteractionSid, WorkspaceSid};
        Action::Watch(flexhook::jobs::WatchInput {
            workspace_sid: WorkspaceSid::parse(&sid("WS")).unwrap(),
            task_sid: flexhook::domain::TaskSid::parse(ended).unwrap(),
            interaction_sid: InteractionSid::parse(&sid("KD")).unwrap(),
            channel_sid: InteractionChannelSid::parse(&sid("UO")).unwrap(),
        })
    };
    let now = store.now_ms();
    store
        .insert_batch(&[
            job_of(&ch, watch(task.as_str()), now),
            job_of(&ch, watch(&sid("WT")), now),
            job_of(&other, watch(&sid("WT")), now),
        ])
        .await
        .unwrap();
    let jobs = store.for_conversation(&conversation).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.kind).collect::<Vec<_>>(),
        [JobKind::Interaction, JobKind::Watch, JobKind::Watch]
    );
    assert!(jobs.iter().all(|j| j.conversation_sid == conversation));
    assert_eq!(jobs[1].key, format!("{ch}/{task}"));
}

#[tokio::test]
async fn the_task_lookup_uses_an_index() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir).await;
    let task = sid("WT");
    let url = format!("sqlite://{}/nested/dir/jobs.db", dir.path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as("EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE task_sid = ?1 ORDER BY id")
            .bind(&task)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(
        plan.iter()
            .any(|(_, _, _, detail)| detail.contains("jobs_task")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_conversations_jobs_are_found_through_the_unique_key_without_a_scan() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let ch = sid("CH");
    store
        .insert_batch(&[new_job(&ch, store.now_ms())])
        .await
        .unwrap();
    let conversation = ConversationSid::parse(&ch).unwrap();
    assert_eq!(
        store.for_conversation(&conversation).await.unwrap().len(),
        1
    );
    let url = format!("sqlite://{}/nested/dir/jobs.db", dir.path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // The store's query: the conversation's own keys, and its episodes' (`CH…/…`).
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT * FROM jobs \
         WHERE kind IN ('interaction', 'timers', 'watch') AND job_key = ?1 \
         UNION ALL SELECT * FROM jobs \
         WHERE kind IN ('interaction', 'timers', 'watch') AND job_key >= ?2 AND job_key < ?3 \
         ORDER BY id",
    )
    .bind(&ch)
    .bind(format!("{ch}/"))
    .bind(format!("{ch}0"))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let searches: Vec<&str> = plan
        .iter()
        .map(|(_, _, _, d)| d.as_str())
        .filter(|d| d.contains(" jobs"))
        .collect();
    assert_eq!(searches.len(), 2, "{plan:?}");
    assert!(
        searches.iter().all(|d| d.contains("USING INDEX")),
        "{plan:?}"
    );
    // Only the job key is indexed by a random value: each such index costs a random page
    // write per new conversation on the webhook's critical path.
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        indexes
            .iter()
            .all(|(sql,)| !sql.contains("(conversation_sid")),
        "{indexes:?}"
    );
}

async fn lifecycle_jobs_rearm_only_when_kept_open_and_follow_ups_commit_with_outcomes(
    store: Store,
) {
    use flexhook::domain::{InteractionChannelSid, InteractionSid, TaskSid, WorkspaceSid};
    use flexhook::jobs::{CloseInput, TimersInput};
    use flexhook::store::WorkspaceCallback;
    let ch = sid("CH");
    let conversation = ConversationSid::parse(&ch).unwrap();
    let (kd, uo) = (
        InteractionSid::parse(&sid("KD")).unwrap(),
        InteractionChannelSid::parse(&sid("UO")).unwrap(),
    );
    let close = |task: &TaskSid| {
        let close = Action::CloseOrphan(CloseInput {
            workspace_sid: WorkspaceSid::parse(&sid("WS")).unwrap(),
            task_sid: task.clone(),
            event: "task.canceled".into(),
            reason: None,
            interaction_sid: kd.clone(),
            channel_sid: uo.clone(),
        });
        job_of(&ch, close, store.now_ms())
    };
    let (first, second) = (
        TaskSid::parse(&sid("WT")).unwrap(),
        TaskSid::parse(&sid("WT")).unwrap(),
    );
    let insert = |task: &TaskSid| {
        let job = close(task);
        let store = store.clone();
        let task = task.clone();
        let (kd, uo) = (kd.clone(), uo.clone());
        async move {
            store
                .arm_close(&job, Some(&task), Some((&kd, &uo)), true)
                .await
                .unwrap()
        }
    };
    assert_eq!(insert(&first).await, Armed::Queued);
    assert_eq!(
        insert(&first).await,
        Armed::Recheck,
        "a repeated event, while pending"
    );
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let kept = Transition::Finished {
        state: JobState::KeptOpen,
        outcome: "kept open".into(),
    };
    assert!(store.record(claimed[0].id, "w", &kept).await.unwrap());
    assert_eq!(store.for_task(&first).await.unwrap().len(), 1);
    // The next task's end re-arms the kept-open job, now about that task.
    assert_eq!(insert(&second).await, Armed::Queued);
    let job = store.find(JobKind::Close, &ch).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.outcome.as_deref()),
        (JobState::Pending, None)
    );
    assert_eq!(job.task_sid.as_ref(), Some(&second));
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    let closed = Transition::Finished {
        state: JobState::Closed,
        outcome: "closed".into(),
    };
    let timers = Action::SetTimers(TimersInput {
        closed: Some("PT24H".into()),
        inactive: None,
    });
    let timers = job_of(&ch, timers, store.now_ms());
    assert!(store
        .record_with(claimed[0].id, "w", &closed, std::slice::from_ref(&timers))
        .await
        .unwrap());
    assert_eq!(
        insert(&first).await,
        Armed::Known,
        "a closed job stays closed"
    );
    let kinds: Vec<JobKind> = store
        .for_conversation(&conversation)
        .await
        .unwrap()
        .iter()
        .map(|j| j.kind)
        .collect();
    assert_eq!(kinds, [JobKind::Close, JobKind::Timers]);
    // A lost lease records nothing, and so inserts no follow-up either.
    assert!(!store
        .record_with(claimed[0].id, "w", &closed, &[timers])
        .await
        .unwrap());

    let workspace = WorkspaceSid::parse(&sid("WS")).unwrap();
    let before = WorkspaceCallback {
        url: Some("https://reports.example.com".into()),
        filter: None,
    };
    store.remember_callback(&workspace, &before).await.unwrap();
    let later = WorkspaceCallback {
        url: Some("https://flexhook.example.com/webhooks/taskrouter".into()),
        filter: None,
    };
    store.remember_callback(&workspace, &later).await.unwrap();
    assert_eq!(
        store.remembered_callback(&workspace).await.unwrap(),
        Some(before),
        "the first record is the one to restore"
    );
    store.forget_callback(&workspace).await.unwrap();
    assert_eq!(store.remembered_callback(&workspace).await.unwrap(), None);
}

/// The flags that keep "never twice" (issue 22): a takeover is due only a lookup delay
/// after the lease its create went out under; Flex's acceptance survives later retries; a
/// message stays sent across `kept_open` and re-arms, and a dead close job is retried
/// without one; a task that ends while its close job is in flight turns `kept_open` into
/// another look; an `ignored` interaction job is due again for a later message, with its
/// facts and that message's time.
async fn never_twice_flags_hold_across_retries_re_arms_and_takeovers(store: Store) {
    use flexhook::domain::{InteractionChannelSid, InteractionSid, TaskSid, WorkspaceSid};
    use flexhook::jobs::CloseInput;
    // A takeover: the write-ahead mark makes the job due only after lease + lookup delay.
    let ch = sid("CH");
    let conversation = ConversationSid::parse(&ch).unwrap();
    store
        .insert_batch(&[new_job(&ch, store.now_ms())])
        .await
        .unwrap();
    store
        .claim_due("a", Duration::from_millis(300), 1, None)
        .await
        .unwrap();
    let id = id_of(&store, &conversation).await;
    assert!(store
        .mark_attempt_started(id, "a", Duration::from_millis(700))
        .await
        .unwrap());
    store.clock().advance(Duration::from_millis(400));
    assert!(
        store
            .claim_due("b", Duration::from_secs(60), 1, None)
            .await
            .unwrap()
            .is_empty(),
        "the lease is over, but a create sent under it may not show yet"
    );
    store.clock().advance(Duration::from_millis(800));
    let taken = store
        .claim_due("b", Duration::from_secs(60), 1, None)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].create_may_have_gone_out && !taken[0].create_accepted);
    // Accepted once, kept through a later retry that does not say so.
    let retry = |accepted| Transition::Retry {
        retry_in: Duration::ZERO,
        error: error(20503),
        create_may_have_gone_out: true,
        accepted,
    };
    assert!(store.record(id, "b", &retry(true)).await.unwrap());
    store
        .claim_due("c", Duration::from_secs(60), 1, None)
        .await
        .unwrap();
    assert!(store.record(id, "c", &retry(false)).await.unwrap());
    let job = store.get(&conversation).await.unwrap().unwrap();
    assert!(job.create_accepted, "{job:?}");
    assert_eq!(job.last_error.unwrap().code, Some(20503));

    // A close job's message stays sent across kept_open and a re-arm.
    let close_ch = sid("CH");
    let (kd, uo) = (
        InteractionSid::parse(&sid("KD")).unwrap(),
        InteractionChannelSid::parse(&sid("UO")).unwrap(),
    );
    let close = |task: &TaskSid| {
        let close = Action::CloseOrphan(CloseInput {
            workspace_sid: WorkspaceSid::parse(&sid("WS")).unwrap(),
            task_sid: task.clone(),
            event: "workflow.timeout".into(),
            reason: None,
            interaction_sid: kd.clone(),
            channel_sid: uo.clone(),
        });
        job_of(&close_ch, close, store.now_ms())
    };
    let (t1, t2) = (
        TaskSid::parse(&sid("WT")).unwrap(),
        TaskSid::parse(&sid("WT")).unwrap(),
    );
    let arm = |task: &TaskSid, insert: bool| {
        let (store, job, task) = (store.clone(), close(task), task.clone());
        let (kd, uo) = (kd.clone(), uo.clone());
        async move {
            store
                .arm_close(&job, Some(&task), Some((&kd, &uo)), insert)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        arm(&t1, false).await,
        Armed::Known,
        "a completion inserts nothing"
    );
    assert!(store
        .find(JobKind::Close, &close_ch)
        .await
        .unwrap()
        .is_none());
    assert_eq!(arm(&t1, true).await, Armed::Queued);
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    let close_id = claimed
        .iter()
        .find(|j| j.kind == JobKind::Close)
        .unwrap()
        .id;
    assert!(store.mark_message(close_id, "w", true).await.unwrap());
    // While in flight, another task ends: the attempt's `kept_open` becomes another look.
    assert_eq!(arm(&t2, true).await, Armed::Recheck);
    let kept = Transition::Finished {
        state: JobState::KeptOpen,
        outcome: "kept open: task WT… is assigned".into(),
    };
    assert!(store.record(close_id, "w", &kept).await.unwrap());
    let job = store
        .find(JobKind::Close, &close_ch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Pending, "looked at again: {job:?}");
    assert_eq!(job.task_sid.as_ref(), Some(&t2));
    assert!(job.message_sent);
    // This time it stays kept open; a completion re-arms it, and the message stays sent.
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    assert!(!claimed.is_empty());
    assert!(store.record(close_id, "w", &kept).await.unwrap());
    let job = store
        .find(JobKind::Close, &close_ch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::KeptOpen);
    assert_eq!(arm(&t1, false).await, Armed::Queued);
    let job = store
        .find(JobKind::Close, &close_ch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert!(job.message_sent, "never told twice");
    // Dead, then retried: no lookup, and the message as it was.
    store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    assert!(store.mark_message(close_id, "w", false).await.unwrap());
    let dead = Transition::Dead {
        error: error(20403),
    };
    assert!(store.record(close_id, "w", &dead).await.unwrap());
    let close_conversation = ConversationSid::parse(&close_ch).unwrap();
    assert_eq!(
        store.retry_dead(Some(&close_conversation)).await.unwrap(),
        1
    );
    let job = store
        .find(JobKind::Close, &close_ch)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !job.create_may_have_gone_out && !job.message_sent,
        "{job:?}"
    );

    // An ignored interaction job: a later message makes it due again, with the stored
    // facts and the later message's time; a pending or created one is left alone.
    let ignored_ch = sid("CH");
    let ignored = ConversationSid::parse(&ignored_ch).unwrap();
    let first = RoutingInput {
        at_ms: Some(1_000),
        address: Some("whatsapp:+15550001111".into()),
        ..facts()
    };
    let first = job_of(
        &ignored_ch,
        Action::CreateInteraction(first),
        store.now_ms(),
    );
    store.insert_batch(&[first]).await.unwrap();
    let claimed = store
        .claim_due("w", Duration::from_secs(60), 10, None)
        .await
        .unwrap();
    let ignored_id = claimed.iter().find(|j| j.key == ignored_ch).unwrap().id;
    let no_task = Transition::Finished {
        state: JobState::Ignored,
        outcome: "no task".into(),
    };
    assert!(store.record(ignored_id, "w", &no_task).await.unwrap());
    let later = RoutingInput {
        at_ms: Some(2_000),
        ..facts()
    };
    let later = job_of(
        &ignored_ch,
        Action::CreateInteraction(later),
        store.now_ms(),
    );
    let outcomes = store
        .insert_batch(&[later.clone(), later.clone()])
        .await
        .unwrap();
    assert_eq!(outcomes, [Inserted::New, Inserted::Known]);
    let job = store.get(&ignored).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0));
    let stored = routing(&job).unwrap();
    assert_eq!(stored.at_ms, Some(2_000));
    assert_eq!(stored.address.as_deref(), Some("whatsapp:+15550001111"));
    assert_eq!(
        store.insert_batch(&[later]).await.unwrap(),
        [Inserted::Known]
    );
}

/// One backend's store for one test, with what must outlive it.
struct Backend {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: open(&dir).await,
            _dir: Some(dir),
        }
    }

    /// A fresh database on the cluster `.ci/run` starts, or `None` (said aloud) without it.
    async fn postgres() -> Option<Self> {
        let url = common::fresh_postgres_database().await?;
        let store = Store::open(&DatabaseUrl::new(url), &options())
            .await
            .unwrap();
        Some(Self { store, _dir: None })
    }
}

async fn known_agents_are_kept_by_key_replaced_by_a_later_one_and_forgotten_with_age(store: Store) {
    use flexhook::domain::{AccountSid, CustomerAddress, WorkerSid};
    let acme = AccountSid::parse("AC11111111111111111111111111111111").unwrap();
    let globex = AccountSid::parse("AC22222222222222222222222222222222").unwrap();
    let ana = CustomerAddress::new("whatsapp:+34600111222");
    let bob = CustomerAddress::new("+14155550100");
    let first = WorkerSid::parse("WK11111111111111111111111111111111").unwrap();
    let second = WorkerSid::parse("WK22222222222222222222222222222222").unwrap();
    let day = Duration::from_secs(86_400);

    assert_eq!(store.known_agent(&acme, &ana, day).await.unwrap(), None);
    store.remember_agent(&acme, &ana, &first).await.unwrap();
    let known = store.known_agent(&acme, &ana, day).await.unwrap().unwrap();
    assert_eq!(known.worker_sid, first);
    assert!((known.at_ms - store.now_ms()).abs() < 5_000, "{known:?}");
    assert_eq!(
        store.known_agent(&acme, &bob, day).await.unwrap(),
        None,
        "per customer"
    );
    assert_eq!(
        store.known_agent(&globex, &ana, day).await.unwrap(),
        None,
        "per account: another account's agent never takes this account's tasks"
    );

    store.clock().advance(Duration::from_secs(3600));
    store.remember_agent(&acme, &ana, &second).await.unwrap();
    let known = store.known_agent(&acme, &ana, day).await.unwrap().unwrap();
    assert_eq!(
        known.worker_sid, second,
        "the later acceptance replaces the earlier"
    );
    store.remember_agent(&acme, &bob, &first).await.unwrap();
    // The same customer, known to another account: a row of its own.
    store.remember_agent(&globex, &ana, &first).await.unwrap();
    assert_eq!(
        store
            .known_agent(&acme, &ana, day)
            .await
            .unwrap()
            .unwrap()
            .worker_sid,
        second
    );
    assert_eq!(
        store
            .known_agent(&globex, &ana, day)
            .await
            .unwrap()
            .unwrap()
            .worker_sid,
        first
    );
    // Nothing was written before accounts were kept here: nothing to adopt.
    assert_eq!(store.adopt_agents(&acme).await.unwrap(), 0);

    // Two days on: outside a day's window, still stored until the purge's age.
    store.clock().advance(2 * day);
    assert_eq!(store.known_agent(&acme, &ana, day).await.unwrap(), None);
    assert!(store
        .known_agent(&acme, &ana, 3 * day)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.forget_agents(3 * day).await.unwrap(), 0);
    assert_eq!(store.forget_agents(day).await.unwrap(), 3);
    assert_eq!(
        store.known_agent(&acme, &ana, 30 * day).await.unwrap(),
        None
    );
}

/// Each store test, once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::Backend::sqlite().await;
                    super::$name(backend.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[cfg_attr(not(flexhook_postgres), ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)")]
                async fn $name() {
                    let Some(backend) = super::Backend::postgres().await else { return };
                    super::$name(backend.store.clone()).await;
                    backend.store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    the_first_insert_of_a_conversation_wins_within_and_across_batches,
    a_batch_larger_than_one_statement_is_inserted_whole,
    a_claimed_job_is_not_claimed_again_until_its_lease_expires,
    a_retry_is_not_due_before_its_time_and_keeps_the_error,
    a_failures_origin_reads_back_from_its_row,
    retrying_dead_jobs_makes_them_due_with_a_lookup_first,
    stats_count_pending_and_dead_jobs_by_kind_and_age_the_oldest_pending,
    purging_removes_only_finished_jobs_older_than_the_cutoff,
    jobs_are_found_by_task_sid,
    lifecycle_jobs_rearm_only_when_kept_open_and_follow_ups_commit_with_outcomes,
    never_twice_flags_hold_across_retries_re_arms_and_takeovers,
    known_agents_are_kept_by_key_replaced_by_a_later_one_and_forgotten_with_age,
);

/// Known agents stored before accounts were kept (migrations up to 0006) survive the
/// migration without an account, and become the one account's at its first start-up.
#[tokio::test]
async fn known_agents_of_earlier_versions_are_kept_for_the_deployments_one_account() {
    use flexhook::domain::{AccountSid, CustomerAddress, WorkerSid};
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested/dir")).unwrap();
    let earlier = dir.path().join("earlier-migrations");
    std::fs::create_dir(&earlier).unwrap();
    let all = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    for entry in std::fs::read_dir(all).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "0007" {
            std::fs::copy(entry.path(), earlier.join(&name)).unwrap();
        }
    }
    let url = format!(
        "sqlite://{}/nested/dir/jobs.db?mode=rwc",
        dir.path().display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let customer = CustomerAddress::new("whatsapp:+34600111222");
    let worker = WorkerSid::parse("WK11111111111111111111111111111111").unwrap();
    sqlx::query(
        "INSERT INTO known_agents (customer_key, worker_sid, accepted_at) VALUES (?1, ?2, ?3)",
    )
    .bind(customer.key())
    .bind(worker.as_str())
    .bind(options().clock.now_ms())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = open(&dir).await;
    let ours = AccountSid::parse("AC11111111111111111111111111111111").unwrap();
    let day = Duration::from_secs(86_400);
    assert_eq!(
        store.known_agent(&ours, &customer, day).await.unwrap(),
        None
    );
    assert_eq!(store.adopt_agents(&ours).await.unwrap(), 1);
    assert_eq!(
        store
            .known_agent(&ours, &customer, day)
            .await
            .unwrap()
            .unwrap()
            .worker_sid,
        worker
    );
    assert_eq!(store.adopt_agents(&ours).await.unwrap(), 0, "once");
}

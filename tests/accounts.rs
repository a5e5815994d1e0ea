//! Several Twilio accounts in one deployment (`[accounts.NAME]`), black-box: each account's
//! conversations get exactly one interaction, with its own credentials, workflow and rules;
//! a webhook is checked with the keys of the account it names, and only those; one
//! account's backlog or failing Flex never holds another's creates.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::accounts::{
    credentials_of, two_accounts_toml, TestAccount, ACME, BOTH, GLOBEX, NO_FLAT_ACCOUNT,
};
use common::*;
use flexhook::signature::Algorithm;
use flexhook::store::{JobState, Store};
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, Request, ResponseTemplate};

const METRICS_TOKEN: &str = "accounts-metrics-token-0123456789";

/// Flex creates every interaction it is asked for.
async fn flex_creates(env: &Env) {
    create_interaction()
        .respond_with(created(&random_sid("CH")))
        .mount(&env.flex)
        .await;
    webhooks_are_removable(env).await;
}

/// The account whose conversation a request to Twilio is about (by a conversation SID in
/// its path or body), among `owners`.
fn owner<'a>(
    request: &Request,
    owners: &'a BTreeMap<String, &'a TestAccount>,
) -> Option<&'a TestAccount> {
    let text = format!(
        "{} {}",
        request.url.path(),
        String::from_utf8_lossy(&request.body)
    );
    owners
        .iter()
        .find(|(ch, _)| text.contains(ch.as_str()))
        .map(|(_, account)| *account)
}

/// Every request the stand-ins received that is about one of `owners`' conversations went
/// out with that conversation's account's credentials; how many there were.
async fn assert_sent_as_their_account(env: &Env, owners: &BTreeMap<String, &TestAccount>) -> usize {
    let mut checked = 0;
    for server in [&env.flex, &env.conversations, &env.taskrouter] {
        for request in server.received_requests().await.unwrap() {
            let Some(account) = owner(&request, owners) else {
                continue;
            };
            assert_eq!(
                credentials_of(&request).as_deref(),
                Some(account.credentials().as_str()),
                "{} {} of {}'s conversation went out with other credentials",
                request.method,
                request.url.path(),
                account.name
            );
            checked += 1;
        }
    }
    checked
}

fn creates_for(requests: &[Request], conversation: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path() == "/v1/Interactions")
        .filter(|r| String::from_utf8_lossy(&r.body).contains(conversation))
        .count()
}

#[tokio::test]
async fn each_accounts_conversations_get_one_interaction_with_its_own_credentials_workflow_and_rules(
) {
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start_with_config(&env, &NO_FLAT_ACCOUNT, Some(&two_accounts_toml())).await;
    let store = env.store().await;
    let mut owners = BTreeMap::new();
    for account in BOTH {
        for ch in account.conversations(2) {
            // Delivered twice, as Twilio retries.
            for _ in 0..2 {
                let response = app
                    .post_signed(account.message(&ch))
                    .signed_with_token(account.token)
                    .send()
                    .await;
                assert_eq!(response.status(), 200, "{}", account.name);
            }
            owners.insert(ch, account);
        }
    }
    for ch in owners.keys() {
        wait_for_job(&store, ch, Duration::from_secs(10), |j| {
            j.state == JobState::Created && j.webhook_removed
        })
        .await;
    }
    app.stop().await;

    let requests = env.flex.received_requests().await.unwrap();
    for (ch, account) in &owners {
        assert_eq!(creates_for(&requests, ch), 1, "one interaction for {ch}");
        let create = requests
            .iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains(ch.as_str()))
            .unwrap();
        let routing = &form_json(&create.body, "Routing")["properties"];
        assert_eq!(
            routing["workspace_sid"], account.workspace,
            "{}",
            account.name
        );
        assert_eq!(
            routing["workflow_sid"], account.workflow,
            "{}",
            account.name
        );
        assert_eq!(
            routing["task_channel_unique_name"], account.task_channel,
            "{}",
            account.name
        );
        // `match = { account = ["acme"] }`: acme's rule, and only acme's.
        let brand = &routing["attributes"]["brand"];
        if account.name == "acme" {
            assert_eq!(brand, "acme");
        } else {
            assert!(brand.is_null(), "globex got acme's rule: {routing}");
        }
        let job = stored_job(&store, ch).await.unwrap();
        assert_eq!(job.account_sid.as_str(), account.sid);
    }
    // Creates and webhook removals alike.
    assert_eq!(assert_sent_as_their_account(&env, &owners).await, 8);
}

/// `pairs` as the JSON body Conversations may send.
fn as_json(pairs: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// A task's cancelation in `account`'s name, from `workspace`.
fn task_event(account: &TestAccount, workspace: &str) -> Vec<(String, String)> {
    account.task_event("task.canceled", workspace, &random_sid("WT"), "{}")
}

#[tokio::test]
async fn a_webhook_is_checked_with_the_keys_of_the_account_it_names_and_no_other() {
    const SHARED_KEY: (&str, &str) = ("acme_key", "acme-shared-key-secret-0123");
    let env = Env::new().await;
    flex_creates(&env).await;
    let toml = format!(
        "{}webhook_shared_keys = {{ {} = \"{}\" }}\n{}",
        ACME.table(),
        SHARED_KEY.0,
        SHARED_KEY.1,
        GLOBEX.table()
    );
    let mut overrides = NO_FLAT_ACCOUNT.to_vec();
    overrides.push(("server.metrics_token", METRICS_TOKEN));
    let app = TestApp::start_with_config(&env, &overrides, Some(&toml)).await;
    let store = env.store().await;
    let status = |r: reqwest::Response| r.status().as_u16();

    let refused = random_sid("CH");
    // Signed with acme's token, claiming globex: globex's token does not check it.
    let claims_globex = GLOBEX.message(&refused);
    let sent = app
        .post_signed(claims_globex.clone())
        .signed_with_token(ACME.token);
    assert_eq!(status(sent.send().await), 403, "form");
    let sent = app
        .post_signed(as_json(&claims_globex))
        .signed_with_token(ACME.token);
    assert_eq!(status(sent.send().await), 403, "JSON");
    let sent = app
        .post_signed(claims_globex.clone())
        .signed_with_shared_key(SHARED_KEY.0, SHARED_KEY.1, Algorithm::HmacSha256);
    assert_eq!(
        status(sent.send().await),
        403,
        "acme's SharedKey, globex's event"
    );
    // An account nobody configured, whatever signs it.
    let unknown = with(
        ACME.message(&refused),
        "AccountSid",
        "AC33333333333333333333333333333333",
    );
    let sent = app.post_signed(unknown).signed_with_token(ACME.token);
    assert_eq!(status(sent.send().await), 403, "unknown account");
    // TaskRouter's events alike, and an account's event names its own workspace.
    let sent = app
        .post_signed(task_event(&GLOBEX, GLOBEX.workspace))
        .to("/webhooks/taskrouter")
        .signed_with_token(ACME.token);
    assert_eq!(status(sent.send().await), 403, "TaskRouter, globex's event");
    let sent = app
        .post_signed(task_event(&ACME, GLOBEX.workspace))
        .to("/webhooks/taskrouter")
        .signed_with_token(ACME.token);
    assert_eq!(
        status(sent.send().await),
        403,
        "acme's event, globex's workspace"
    );
    assert!(stored_job(&store, &refused).await.is_none());

    // Each signed with its own: accepted.
    let (acme_ch, globex_ch, shared_ch) = (random_sid("CH"), random_sid("CH"), random_sid("CH"));
    let sent = app
        .post_signed(as_json(&ACME.message(&acme_ch)))
        .signed_with_token(ACME.token);
    assert_eq!(status(sent.send().await), 200);
    let sent = app
        .post_signed(GLOBEX.message(&globex_ch))
        .signed_with_token(GLOBEX.token);
    assert_eq!(status(sent.send().await), 200);
    let sent = app
        .post_signed(ACME.message(&shared_ch))
        .signed_with_shared_key(SHARED_KEY.0, SHARED_KEY.1, Algorithm::HmacSha256);
    assert_eq!(status(sent.send().await), 200);
    for account in BOTH {
        let sent = app
            .post_signed(task_event(account, account.workspace))
            .to("/webhooks/taskrouter")
            .signed_with_token(account.token);
        assert_eq!(status(sent.send().await), 200, "{}", account.name);
    }
    for ch in [&acme_ch, &globex_ch, &shared_ch] {
        wait_for_state(&store, ch, JobState::Created).await;
    }

    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    app.stop().await;
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    for (series, expected) in [
        (
            r#"flexhook_webhooks_total{account="globex",route="conversations",event="unknown",outcome="bad_signature"}"#,
            3,
        ),
        (
            r#"flexhook_webhooks_total{account="unknown",route="conversations",event="unknown",outcome="wrong_account"}"#,
            1,
        ),
        (
            r#"flexhook_webhooks_total{account="acme",route="taskrouter",event="task.canceled",outcome="wrong_account"}"#,
            1,
        ),
        (
            r#"flexhook_webhooks_total{account="acme",route="conversations",event="onMessageAdded",outcome="accepted"}"#,
            2,
        ),
        (
            r#"flexhook_webhooks_total{account="globex",route="conversations",event="onMessageAdded",outcome="accepted"}"#,
            1,
        ),
    ] {
        assert_eq!(count(series), expected, "{series} in:\n{text}");
    }
}

/// How many of `conversations` have a job in `state`.
async fn count_in(store: &Store, conversations: &[String], state: JobState) -> usize {
    let mut n = 0;
    for ch in conversations {
        if stored_job(store, ch)
            .await
            .is_some_and(|j| j.state == state)
        {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn one_accounts_burst_does_not_hold_back_another_accounts_first_create() {
    let env = Env::new().await;
    flex_creates(&env).await;
    let mut overrides = NO_FLAT_ACCOUNT.to_vec();
    overrides.extend([
        ("accounts.acme.max_creates_per_second", "1"),
        ("worker.concurrency", "2"),
    ]);
    let app = TestApp::start_with_config(&env, &overrides, Some(&two_accounts_toml())).await;
    let store = env.store().await;
    let burst = ACME.conversations(12);
    for ch in &burst {
        let sent = app
            .post_signed(ACME.message(ch))
            .signed_with_token(ACME.token);
        assert_eq!(sent.send().await.status(), 200);
    }
    let first = random_sid("CH");
    let sent = app
        .post_signed(GLOBEX.message(&first))
        .signed_with_token(GLOBEX.token);
    assert_eq!(sent.send().await.status(), 200);
    wait_for_state(&store, &first, JobState::Created).await;
    // acme's burst drains at one a second, on its own: most of it is still waiting when
    // globex's first conversation is handed off. One queue for both would have handed
    // off all of acme's first.
    let waiting = count_in(&store, &burst, JobState::Pending).await;
    app.stop().await;
    assert!(
        waiting >= 8,
        "globex's create waited for acme's burst: only {waiting} of 12 still pending"
    );
}

/// Flex answers acme's creates with `status` (ahead of every mock mounted before), and
/// creates any other's.
async fn acme_flex_answers(env: &Env, status: u16) {
    let acme = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            ACME.credentials()
        )
    );
    let answer = if status == 200 {
        created(&random_sid("CH"))
    } else {
        twilio_error(status, 20500, "Internal Server Error")
    };
    create_interaction()
        .and(wiremock::matchers::header("authorization", acme.as_str()))
        .respond_with(answer)
        .with_priority(if status == 200 { 1 } else { 2 })
        .mount(&env.flex)
        .await;
}

#[tokio::test]
async fn one_accounts_flex_failing_for_a_minute_does_not_change_the_others_creates() {
    let env = Env::new().await;
    flex_creates(&env).await;
    acme_flex_answers(&env, 500).await;
    // The look-up after each ambiguous 500 finds no task, in either workspace.
    Mock::given(method("GET"))
        .and(path_regex(r"^/v1/Workspaces/WS[0-9a-f]{32}/Tasks$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_tasks()))
        .mount(&env.taskrouter)
        .await;
    webhooks_are_removable(&env).await;
    let app = TestApp::start_with_config(&env, &NO_FLAT_ACCOUNT, Some(&two_accounts_toml())).await;
    let store = env.store().await;
    let mut owners = BTreeMap::new();
    let send = |account: &'static TestAccount, ch: String| {
        let app = &app;
        async move {
            let sent = app
                .post_signed(account.message(&ch))
                .signed_with_token(account.token);
            assert_eq!(sent.send().await.status(), 200);
            ch
        }
    };
    let failing = ACME.conversations(5);
    for ch in &failing {
        owners.insert(send(&ACME, ch.clone()).await, &ACME);
    }
    let mut served = Vec::new();
    for ch in GLOBEX.conversations(3) {
        served.push(send(&GLOBEX, ch).await);
    }
    for ch in &served {
        wait_for_state(&store, ch, JobState::Created).await;
    }
    // A minute of acme's 500s: its jobs are retried, and stay pending (not dead).
    env.clock.advance(Duration::from_secs(60));
    for ch in GLOBEX.conversations(2) {
        served.push(send(&GLOBEX, ch).await);
    }
    for ch in &served {
        wait_for_state(&store, ch, JobState::Created).await;
        owners.insert(ch.clone(), &GLOBEX);
    }
    for ch in &failing {
        let job = wait_for_job(&store, ch, Duration::from_secs(10), |j| j.attempts >= 2).await;
        assert_eq!(job.state, JobState::Pending, "{job:?}");
    }
    // acme's Flex is back: each of its conversations gets its one interaction.
    let failed = env.flex.received_requests().await.unwrap();
    acme_flex_answers(&env, 200).await;
    for ch in &failing {
        wait_for_state(&store, ch, JobState::Created).await;
    }
    app.stop().await;
    let requests = env.flex.received_requests().await.unwrap();
    for ch in &served {
        assert_eq!(
            creates_for(&requests, ch),
            1,
            "globex's {ch}: one create, first time"
        );
    }
    for ch in &failing {
        assert!(creates_for(&failed, ch) >= 2, "acme's {ch} was tried again");
        assert_eq!(
            creates_for(&requests, ch) - creates_for(&failed, ch),
            1,
            "acme's {ch}: one create once its Flex came back"
        );
    }
    assert!(assert_sent_as_their_account(&env, &owners).await >= 10);
}

#[cfg_attr(
    not(flexhook_postgres),
    ignore = "needs PostgreSQL: set FLEXHOOK_TEST_POSTGRES_URL (.ci/run starts one)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_give_each_accounts_conversations_one_interaction() {
    let Some(url) = fresh_postgres_database().await else {
        return;
    };
    let env = Env::new().await;
    flex_creates(&env).await;
    let mut overrides = NO_FLAT_ACCOUNT.to_vec();
    overrides.push(("store.url", url.as_str()));
    let toml = two_accounts_toml();
    let (a, b) = tokio::join!(
        TestApp::start_with_config(&env, &overrides, Some(&toml)),
        TestApp::start_with_config(&env, &overrides, Some(&toml))
    );
    let store = Store::open(
        &flexhook::domain::DatabaseUrl::new(url.clone()),
        &flexhook::store::StoreOptions {
            busy_timeout: Duration::from_secs(5),
            clock: env.clock.clone(),
        },
    )
    .await
    .unwrap();
    let mut owners = BTreeMap::new();
    for account in BOTH {
        for ch in account.conversations(3) {
            // Twilio delivers to one instance, retries on the other, at once.
            let form = account.message(&ch);
            let (x, y) = tokio::join!(
                a.post_signed(form.clone())
                    .signed_with_token(account.token)
                    .send(),
                b.post_signed(form).signed_with_token(account.token).send()
            );
            assert_eq!((x.status().as_u16(), y.status().as_u16()), (200, 200));
            owners.insert(ch, account);
        }
    }
    for ch in owners.keys() {
        wait_for_state(&store, ch, JobState::Created).await;
    }
    a.stop().await;
    b.stop().await;
    store.close().await;
    let requests = env.flex.received_requests().await.unwrap();
    for (ch, account) in &owners {
        assert_eq!(creates_for(&requests, ch), 1, "{}'s {ch}", account.name);
    }
    assert_eq!(assert_sent_as_their_account(&env, &owners).await, 12);
}

/// A `reservation.accepted` of `account`'s workspace: `worker` took `customer`'s task.
fn accepted(account: &TestAccount, customer: &str, worker: &str) -> Vec<(String, String)> {
    let attributes = json!({"customerAddress": customer, "from": customer}).to_string();
    let mut event = account.task_event(
        "reservation.accepted",
        account.workspace,
        &random_sid("WT"),
        &attributes,
    );
    event.push(("WorkerSid".into(), worker.into()));
    event
}

#[tokio::test]
async fn an_agent_is_known_to_the_customers_of_their_own_account_only() {
    const CUSTOMER: &str = "+14155550100";
    const AGENT: &str = "WK11111111111111111111111111111111";
    let env = Env::new().await;
    flex_creates(&env).await;
    let app = TestApp::start_with_config(&env, &NO_FLAT_ACCOUNT, Some(&two_accounts_toml())).await;
    let store = env.store().await;
    // acme's agent took the customer's task; the same customer then writes to both.
    let sent = app
        .post_signed(accepted(&ACME, CUSTOMER, AGENT))
        .to("/webhooks/taskrouter")
        .signed_with_token(ACME.token);
    assert_eq!(sent.send().await.status(), 200);
    let mut attributes = BTreeMap::new();
    for account in BOTH {
        let ch = random_sid("CH");
        let sent = app
            .post_signed(account.message(&ch))
            .signed_with_token(account.token);
        assert_eq!(sent.send().await.status(), 200);
        wait_for_state(&store, &ch, JobState::Created).await;
        let requests = env.flex.received_requests().await.unwrap();
        let create = requests
            .iter()
            .find(|r| String::from_utf8_lossy(&r.body).contains(ch.as_str()))
            .unwrap();
        attributes.insert(
            account.name,
            form_json(&create.body, "Routing")["properties"]["attributes"].clone(),
        );
    }
    app.stop().await;
    assert_eq!(attributes["acme"]["lastWorkerSid"], AGENT);
    assert_eq!(attributes["acme"]["knownAgent"], true);
    assert!(
        attributes["globex"].get("lastWorkerSid").is_none(),
        "acme's agent offered to globex: {}",
        attributes["globex"]
    );
}

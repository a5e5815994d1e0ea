//! Starts the real app on port 0, with a temp SQLite file and wiremock servers standing in
//! for Twilio's flex-api, conversations and taskrouter.
#![allow(dead_code)]

pub mod flex_standin;
pub mod twilio_world;

use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use flexhook::config::{LoadOptions, Settings};
use flexhook::domain::ConversationSid;
use flexhook::signature::{compute_signature, Algorithm};
use flexhook::startup::Application;
use flexhook::store::{Job, JobState, Store, StoreOptions};
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token-0123456789";
pub const WORKSPACE: &str = "WS0123456789abcdef0123456789abcdef";
pub const WORKFLOW: &str = "WW0123456789abcdef0123456789abcdef";
pub const SERVICE: &str = "IS0123456789abcdef0123456789abcdef";
pub const WEBHOOK: &str = "WH0123456789abcdef0123456789abcdef";
pub const PATH: &str = "/webhooks/conversations";

/// What outlives one run of the app: the database file and the Twilio stand-ins.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub flex: MockServer,
    pub conversations: MockServer,
    pub taskrouter: MockServer,
}

impl Env {
    pub async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            flex: MockServer::start().await,
            conversations: MockServer::start().await,
            taskrouter: MockServer::start().await,
        }
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}/flexhook.db", self.dir.path().display())
    }

    fn overrides(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut o: Vec<(String, String)> = [
            ("server.host", "127.0.0.1".to_owned()),
            ("server.port", "0".to_owned()),
            ("server.shutdown_timeout_secs", "2".to_owned()),
            ("twilio.account_sid", ACCOUNT.to_owned()),
            ("twilio.auth_token", TOKEN.to_owned()),
            ("twilio.flex_api_base_url", self.flex.uri()),
            (
                "twilio.conversations_api_base_url",
                self.conversations.uri(),
            ),
            ("twilio.taskrouter_api_base_url", self.taskrouter.uri()),
            ("twilio.request_timeout_ms", "1000".to_owned()),
            ("flex.workspace_sid", WORKSPACE.to_owned()),
            ("flex.workflow_sid", WORKFLOW.to_owned()),
            ("store.url", self.db_url()),
            ("worker.retry_base_ms", "50".to_owned()),
            ("worker.retry_cap_ms", "200".to_owned()),
            ("worker.lookup_delay_ms", "100".to_owned()),
            ("worker.poll_interval_ms", "100".to_owned()),
            ("worker.lease_secs", "5".to_owned()),
            // Sweeps ask Twilio for lists a test has not mounted: only tests/reconcile.rs
            // turns them on.
            ("reconcile.interval", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        o
    }

    pub fn settings(&self, extra: &[(&str, &str)]) -> flexhook::config::ValidSettings {
        self.settings_with_file(extra, None)
    }

    /// With `toml` as a `--config` file too (for arrays such as `[[routing.rules]]`).
    pub fn settings_with_file(
        &self,
        extra: &[(&str, &str)],
        toml: Option<&str>,
    ) -> flexhook::config::ValidSettings {
        let file = toml.map(|t| {
            let path = self.dir.path().join("extra.toml");
            std::fs::write(&path, t).unwrap();
            path
        });
        Settings::load(&LoadOptions {
            environment: Some("test".into()),
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            file,
            read_env: false,
            overrides: self.overrides(extra),
        })
        .unwrap()
        .validate()
        .unwrap()
    }

    pub async fn store(&self) -> Store {
        Store::open(
            &flexhook::domain::DatabaseUrl::new(self.db_url()),
            &StoreOptions {
                busy_timeout: Duration::from_secs(5),
                clock: flexhook::clock::Clock::system(),
            },
        )
        .await
        .unwrap()
    }
}

/// Why settings with these overrides (on the compiled-in defaults and `config/`, with no
/// environment) fail to load or validate.
pub fn settings_error(overrides: &[(&str, &str)]) -> String {
    let err = Settings::load(&LoadOptions {
        environment: Some("test".into()),
        config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
        read_env: false,
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .and_then(|s| s.validate())
    .map(|_| ())
    .unwrap_err();
    format!("{err:#}")
}

/// A running app.
pub struct TestApp {
    pub port: u16,
    /// `server.metrics_port`'s bound port, when the test set one.
    pub metrics_port: Option<u16>,
    pub address: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
    join: JoinHandle<anyhow::Result<()>>,
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        flexhook::telemetry::init(&flexhook::config::LogSettings {
            format: "pretty".into(),
            filter: "info".into(),
            show_addresses: false,
        });
    }
}

impl TestApp {
    pub async fn start(env: &Env, extra: &[(&str, &str)]) -> Self {
        Self::start_with_config(env, extra, None).await
    }

    /// Started with `toml` as an extra settings file.
    pub async fn start_with_config(env: &Env, extra: &[(&str, &str)], toml: Option<&str>) -> Self {
        Self::start_with_settings(env.settings_with_file(extra, toml)).await
    }

    /// Started with settings as given, even ones validation would refuse.
    pub async fn start_with_settings(settings: flexhook::config::ValidSettings) -> Self {
        init_logs();
        let app = Application::build(settings).await.unwrap();
        let port = app.port();
        let metrics_port = app.metrics_port();
        let handle = app.server_handle();
        let join = tokio::spawn(app.run_until_stopped());
        Self {
            port,
            metrics_port,
            address: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            handle,
            join,
        }
    }

    /// Stops gracefully, as a SIGTERM would.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.join.await.unwrap().unwrap();
    }

    pub fn url(&self) -> String {
        format!("{}{PATH}", self.address)
    }

    /// POSTs a form signed with `token` over this app's URL.
    pub async fn post_form_signed_with(
        &self,
        token: &str,
        params: &[(String, String)],
    ) -> reqwest::Response {
        let signature =
            compute_signature(token.as_bytes(), Algorithm::HmacSha1, &self.url(), params);
        self.client
            .post(self.url())
            .header("X-Twilio-Signature", signature)
            .form(params)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_form(&self, params: &[(String, String)]) -> reqwest::Response {
        self.post_form_signed_with(TOKEN, params).await
    }
}

pub fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// The form Twilio sends for a customer's message.
pub fn message(conversation: &str, author: &str) -> Vec<(String, String)> {
    [
        ("EventType", "onMessageAdded".to_owned()),
        ("AccountSid", ACCOUNT.to_owned()),
        ("ConversationSid", conversation.to_owned()),
        ("ChatServiceSid", SERVICE.to_owned()),
        ("MessageSid", random_sid("IM")),
        ("ParticipantSid", random_sid("MB")),
        ("WebhookSid", WEBHOOK.to_owned()),
        ("Author", author.to_owned()),
        ("Body", "Hello, I need help with my order".to_owned()),
        ("Attributes", "{}".to_owned()),
        ("Index", "0".to_owned()),
        ("Source", "WHATSAPP".to_owned()),
        ("RetryCount", "0".to_owned()),
        ("DateCreated", "2026-11-22T10:00:00Z".to_owned()),
        ("MessagingBinding.Address", author.to_owned()),
        (
            "MessagingBinding.ProxyAddress",
            "whatsapp:+15550001111".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn with(mut params: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    params.retain(|(k, _)| k != key);
    params.push((key.to_owned(), value.to_owned()));
    params
}

pub fn without(mut params: Vec<(String, String)>, key: &str) -> Vec<(String, String)> {
    params.retain(|(k, _)| k != key);
    params
}

/// Waits (at most `within`) until the conversation's job satisfies `done`.
pub async fn wait_for_job(
    store: &Store,
    conversation: &str,
    within: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let sid = ConversationSid::parse(conversation).unwrap();
    let deadline = Instant::now() + within;
    loop {
        let job = store.get(&sid).await.unwrap();
        if let Some(job) = &job {
            if done(job) {
                return job.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "job for {conversation} did not reach the expected state in {within:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (at most 15 s) until the conversation's job of `kind` satisfies `done`.
pub async fn wait_for_kind(
    store: &Store,
    kind: flexhook::store::JobKind,
    conversation: &str,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let job = store.find(kind, conversation).await.unwrap();
        if let Some(job) = &job {
            if done(job) {
                return job.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} job for {conversation} as expected: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn wait_for_state(store: &Store, conversation: &str, state: JobState) -> Job {
    wait_for_job(store, conversation, Duration::from_secs(15), |j| {
        j.state == state
    })
    .await
}

/// The JSON of one form field of a request Flex received.
pub fn form_json(body: &[u8], field: &str) -> serde_json::Value {
    let raw = form_urlencoded::parse(body)
        .find(|(k, _)| k == field)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {field} field in {}", String::from_utf8_lossy(body)));
    serde_json::from_str(&raw).unwrap()
}

/// A successful `POST /v1/Interactions` answer, as in Twilio's spec.
pub fn interaction_created(conversation: &str) -> serde_json::Value {
    serde_json::json!({
        "sid": "KD0123456789abcdef0123456789abcdef",
        "channel": {"type": "whatsapp", "sid": "UO0123456789abcdef0123456789abcdef"},
        "routing": {"properties": {
            "sid": "WT0123456789abcdef0123456789abcdef",
            "workspace_sid": WORKSPACE,
            "workflow_sid": WORKFLOW,
            "attributes": format!("{{\"conversationSid\":\"{conversation}\"}}"),
        }},
        "url": "https://flex-api.twilio.com/v1/Interactions/KD0123456789abcdef0123456789abcdef",
    })
}

/// An empty TaskRouter task list.
pub fn no_tasks() -> serde_json::Value {
    serde_json::json!({"tasks": [], "meta": {"page": 0, "page_size": 20, "key": "tasks"}})
}

/// Delivers every conversation's first message at once; returns the HTTP statuses.
pub async fn deliver_concurrently(
    app: &std::sync::Arc<TestApp>,
    conversations: Vec<String>,
) -> Vec<u16> {
    let mut deliveries = tokio::task::JoinSet::new();
    for ch in conversations {
        let app = app.clone();
        deliveries.spawn(async move {
            app.post_form(&message(&ch, "+14155550100"))
                .await
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = deliveries.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

/// `POST /v1/Interactions`, for a test to answer (and count) as it needs.
pub fn create_interaction() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/Interactions"))
}

/// Flex's 200 to `POST /v1/Interactions` for this conversation.
pub fn created(conversation: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(interaction_created(conversation))
}

/// TaskRouter knows no task for any conversation.
pub async fn tasks_are_empty(env: &Env) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/Workspaces/{WORKSPACE}/Tasks").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(no_tasks()))
        .mount(&env.taskrouter)
        .await;
}

/// Every conversation-scoped webhook DELETE succeeds.
pub async fn webhooks_are_removable(env: &Env) {
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&env.conversations)
        .await;
}

/// Twilio's error JSON, as its REST APIs answer with it.
pub fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

/// What a webhook request carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// `application/x-www-form-urlencoded`: the signature covers the URL and these parameters.
    Form(Vec<(String, String)>),
    /// `application/json`: the URL's `bodySHA256` vouches for these exact bytes, and the
    /// signature covers the URL.
    Json(String),
    /// Any other content type, sent as is; signed like an empty form.
    Raw {
        content_type: &'static str,
        bytes: String,
    },
}

impl From<Vec<(String, String)>> for Body {
    fn from(params: Vec<(String, String)>) -> Self {
        Self::Form(params)
    }
}

impl From<serde_json::Value> for Body {
    fn from(json: serde_json::Value) -> Self {
        Self::Json(json.to_string())
    }
}

/// Who signs a webhook request.
#[derive(Debug, Clone)]
enum Signer {
    /// `X-Twilio-Signature`: HMAC-SHA1 with an auth token.
    Token(String),
    /// A SharedKey: its secret signs, `X-Twilio-Webhooks-Signature-Settings` names it.
    SharedKey {
        id: String,
        secret: String,
        algorithm: Algorithm,
    },
    /// This exact `X-Twilio-Signature`, whatever the request.
    Literal(String),
    /// No `X-Twilio-Signature` at all.
    Nobody,
}

/// A webhook request as Twilio would send it to the app: `POST /webhooks/conversations`,
/// signed with [`TOKEN`] over the app's own URL. Each test changes only what it is about.
#[must_use = "a request does nothing until it is sent"]
pub struct SignedPost<'a> {
    app: &'a TestApp,
    body: Body,
    sent: Option<Body>,
    signer: Signer,
    called_at: Option<String>,
    headers: Vec<(String, String)>,
    path: String,
}

impl TestApp {
    /// `body` to this app's webhook, signed as Twilio signs it; change it with the
    /// [`SignedPost`] methods, then [`SignedPost::send`] it.
    pub fn post_signed(&self, body: impl Into<Body>) -> SignedPost<'_> {
        SignedPost {
            app: self,
            body: body.into(),
            sent: None,
            signer: Signer::Token(TOKEN.to_owned()),
            called_at: None,
            headers: Vec::new(),
            path: PATH.to_owned(),
        }
    }
}

impl SignedPost<'_> {
    /// Signed with this auth token instead of [`TOKEN`].
    pub fn signed_with_token(mut self, token: &str) -> Self {
        self.signer = Signer::Token(token.to_owned());
        self
    }

    /// Signed with a webhook SharedKey, named in `X-Twilio-Webhooks-Signature-Settings`.
    pub fn signed_with_shared_key(mut self, id: &str, secret: &str, algorithm: Algorithm) -> Self {
        self.signer = Signer::SharedKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
            algorithm,
        };
        self
    }

    /// Carries this `X-Twilio-Signature` as is.
    pub fn with_signature(mut self, signature: &str) -> Self {
        self.signer = Signer::Literal(signature.to_owned());
        self
    }

    /// Carries no `X-Twilio-Signature`.
    pub fn unsigned(mut self) -> Self {
        self.signer = Signer::Nobody;
        self
    }

    /// Twilio called `base` (`https://host[:port]`, a proxy's or a tunnel's), so the
    /// signature covers `base` + the path and query, not the URL the app listens on.
    pub fn called_at(mut self, base: &str) -> Self {
        self.called_at = Some(base.trim_end_matches('/').to_owned());
        self
    }

    /// To this route instead of `/webhooks/conversations`.
    pub fn to(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Signed for the body given to [`TestApp::post_signed`], but `body` is what is sent
    /// (with the same URL, `bodySHA256` included), as if changed on the way.
    pub fn tampered(mut self, body: impl Into<Body>) -> Self {
        self.sent = Some(body.into());
        self
    }

    pub async fn send(self) -> reqwest::Response {
        let query = match &self.body {
            Body::Json(json) => format!(
                "?bodySHA256={}",
                flexhook::signature::body_sha256(json.as_bytes())
            ),
            Body::Form(_) | Body::Raw { .. } => String::new(),
        };
        let url = format!("{}{}{query}", self.app.address, self.path);
        let signed_url = match &self.called_at {
            Some(base) => format!("{base}{}{query}", self.path),
            None => url.clone(),
        };
        let signed_params: &[(String, String)] = match &self.body {
            Body::Form(params) => params,
            Body::Json(_) | Body::Raw { .. } => &[],
        };
        let sign = |key: &str, algorithm| {
            compute_signature(key.as_bytes(), algorithm, &signed_url, signed_params)
        };
        let mut request = self.app.client.post(&url);
        match &self.signer {
            Signer::Token(token) => {
                request = request.header("X-Twilio-Signature", sign(token, Algorithm::HmacSha1));
            }
            Signer::SharedKey {
                id,
                secret,
                algorithm,
            } => {
                request = request
                    .header("X-Twilio-Signature", sign(secret, *algorithm))
                    .header(
                        "X-Twilio-Webhooks-Signature-Settings",
                        format!("key={id},algorithm={}", algorithm.name()),
                    );
            }
            Signer::Literal(signature) => {
                request = request.header("X-Twilio-Signature", signature);
            }
            Signer::Nobody => {}
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request = match self.sent.unwrap_or(self.body) {
            Body::Form(params) => request.form(&params),
            Body::Json(json) => request
                .header("content-type", "application/json")
                .body(json),
            Body::Raw {
                content_type,
                bytes,
            } => request.header("content-type", content_type).body(bytes),
        };
        request.send().await.unwrap()
    }
}

/// The conversation's job as stored right now, if it has one.
pub async fn stored_job(store: &Store, conversation: &str) -> Option<Job> {
    store
        .get(&ConversationSid::parse(conversation).unwrap())
        .await
        .unwrap()
}

/// `flexhook serve` as the tests that kill the real binary start it: an empty environment
/// but for the test account, workspace and workflow, settings from `config_dir` (only the
/// compiled-in defaults when it holds none), `store`, and a port of its own on 127.0.0.1
/// (logged as `flexhook listening … port=N`).
pub fn serve_command(config_dir: &std::path::Path, store: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flexhook"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("FLEXHOOK_ENV", "test")
        .env("FLEXHOOK_CONFIG_DIR", config_dir)
        .env("FLEXHOOK_STORE__URL", store)
        .env("FLEXHOOK_SERVER__HOST", "127.0.0.1")
        .env("FLEXHOOK_SERVER__PORT", "0")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("FLEXHOOK_FLEX__WORKSPACE_SID", WORKSPACE)
        .env("FLEXHOOK_FLEX__WORKFLOW_SID", WORKFLOW)
        .env("FLEXHOOK_RECONCILE__INTERVAL", "")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    command
}

/// The variable `.ci/run` sets to its throw-away PostgreSQL cluster.
pub const POSTGRES_URL_VAR: &str = "FLEXHOOK_TEST_POSTGRES_URL";

/// A new, empty database on the test cluster; `None`, said on stderr, when there is none
/// (set `FLEXHOOK_TEST_POSTGRES_URL`, as `.ci/run` does, to run the PostgreSQL tests).
pub async fn fresh_postgres_database() -> Option<String> {
    use sqlx::Connection;
    let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
        // In CI a test that did not run must not show green.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{POSTGRES_URL_VAR} is not set under CI=true: this PostgreSQL test cannot run"
        );
        eprintln!("SKIPPED: {POSTGRES_URL_VAR} is not set, so this PostgreSQL test did not run");
        return None;
    };
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} does not connect: {e}"));
    let name = format!("flexhook_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

//! The in-process app: [`Env`] (a temp SQLite file, wiremock servers standing in for
//! Twilio's flex-api, conversations and taskrouter, and a clock the test may move) and
//! [`TestApp`], the real `Application` started on port 0 in the test's runtime.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use flexhook::clock::Clock;
use flexhook::config::{LoadOptions, Settings};
use flexhook::startup::Application;
use flexhook::store::{Store, StoreOptions};
use tokio::task::JoinHandle;
use wiremock::MockServer;

use super::{ACCOUNT, PATH, TOKEN, WORKFLOW, WORKSPACE};

/// What outlives one run of the app: the database file, the Twilio stand-ins and the clock.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// The time every app started on this environment, and [`Env::store`], run by: the
    /// system's until a test moves it with `clock.advance(…)`.
    pub clock: Clock,
    pub flex: MockServer,
    pub conversations: MockServer,
    pub taskrouter: MockServer,
}

impl Env {
    pub async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: Clock::manual(),
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
        Settings::load(&load_options(self.overrides(extra), file))
            .unwrap()
            .validate()
            .unwrap()
    }

    /// Another process's hold on the database's write lock, until [`WriteLock::release`].
    pub async fn lock_database(&self) -> WriteLock {
        use sqlx::Connection;
        let mut held = sqlx::SqliteConnection::connect(&self.db_url())
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut held)
            .await
            .unwrap();
        WriteLock(held)
    }

    pub async fn store(&self) -> Store {
        Store::open(
            &flexhook::domain::DatabaseUrl::new(self.db_url()),
            &StoreOptions {
                busy_timeout: Duration::from_secs(5),
                clock: self.clock.clone(),
            },
        )
        .await
        .unwrap()
    }
}

/// The database's write lock, held as another process would hold it.
pub struct WriteLock(sqlx::SqliteConnection);

impl WriteLock {
    pub async fn release(mut self) {
        use sqlx::Connection;
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// The test environment's settings: the compiled-in defaults, the repository's `config/`,
/// `file` if any, and `overrides`, with no process environment.
fn load_options(overrides: Vec<(String, String)>, file: Option<std::path::PathBuf>) -> LoadOptions {
    LoadOptions {
        environment: Some("test".into()),
        config_dir: Some(super::binary::CONFIG_DIR.into()),
        file,
        read_env: false,
        overrides,
    }
}

/// Why settings with these overrides (on the compiled-in defaults and `config/`, with no
/// environment) fail to load or validate.
pub fn settings_error(overrides: &[(&str, &str)]) -> String {
    let overrides = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = Settings::load(&load_options(overrides, None))
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
        Self::start_timed(env.settings_with_file(extra, toml), env.clock.clone()).await
    }

    /// Started with settings as given, even ones validation would refuse, on the system
    /// clock.
    pub async fn start_with_settings(settings: flexhook::config::ValidSettings) -> Self {
        Self::start_timed(settings, Clock::system()).await
    }

    /// Started with settings as given, timed by `clock`.
    pub async fn start_timed(settings: flexhook::config::ValidSettings, clock: Clock) -> Self {
        init_logs();
        let app = Application::build_with_clock(settings, clock)
            .await
            .unwrap();
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

    /// The webhook's URL, as the app itself sees it.
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.address)
    }
}

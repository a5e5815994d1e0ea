//! Settings: the compiled-in `config/default.toml`, then `config/<FLEXHOOK_ENV>.toml`
//! (in `FLEXHOOK_CONFIG_DIR`; optional but for `production.toml`), then `--config FILE`,
//! then Twilio's standard variables, then `FLEXHOOK_<SECTION>__<KEY>`.
//!
//! Each `[section]` has a file here: its raw form as read, and the typed, checked form it
//! validates into. A command validates only the sections it uses: `serve` all of them
//! ([`Settings::validate`]), a command that only talks to Twilio just `[twilio]`
//! ([`Settings::twilio`]). Every problem names its key and the variable that sets it.

mod de;
mod flex;
mod lifecycle;
mod log;
mod problems;
mod reconcile;
mod routing;
mod server;
mod store;
mod twilio;
mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use flex::{FlexConfig, FlexSettings};
pub use lifecycle::{iso8601, LifecycleConfig, LifecycleSettings};
pub use log::LogSettings;
pub use problems::{env_vars_for, Problem};
pub use reconcile::{ReconcileConfig, ReconcileSettings};
pub use routing::{
    RoutingConfig, RoutingSettings, RuleConfig, RuleSettings, ScheduleSettings, SetConfig, When,
    PLACEHOLDERS,
};
pub use server::{ClientTimeouts, ServerConfig, ServerSettings};
pub use store::{StoreConfig, StoreSettings};
pub use twilio::{ApiKey, TwilioConfig, TwilioSettings};
pub use worker::{WorkerConfig, WorkerSettings};

use problems::{own_env_var, Problems, ENV_PREFIX, STANDARD_VARS};

const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Which `config/<env>.toml` applies. `local` may dry-run; anything else never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    Local,
    Production,
    Other(String),
}

impl Environment {
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "local" => Self::Local,
            "production" | "prod" => Self::Production,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Production => "production",
            Self::Other(s) => s,
        }
    }
}

/// Where settings come from. `Default` reads the process environment and `./config`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `FLEXHOOK_ENV`; `None` reads it from the environment (default `local`).
    pub environment: Option<String>,
    /// Folder holding `<env>.toml` (default `FLEXHOOK_CONFIG_DIR` or `config`).
    pub config_dir: Option<PathBuf>,
    /// An extra TOML file (`--config FILE`); it must exist.
    pub file: Option<PathBuf>,
    /// Whether environment variables apply (tests turn this off).
    pub read_env: bool,
    /// Key/value pairs applied last, e.g. `("flex.workflow_sid", "WW…")`.
    pub overrides: Vec<(String, String)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            environment: None,
            config_dir: None,
            file: None,
            read_env: true,
            overrides: Vec::new(),
        }
    }
}

/// Everything as read, before validation.
#[derive(Deserialize, Debug, Clone)]
pub struct Settings {
    #[serde(skip, default = "local")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub twilio: TwilioSettings,
    pub flex: FlexSettings,
    pub store: StoreSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub lifecycle: LifecycleSettings,
    pub reconcile: ReconcileSettings,
    #[serde(default)]
    pub routing: RoutingSettings,
}

fn local() -> Environment {
    Environment::Local
}

/// Why `FLEXHOOK_ENV=production` refuses to run without `path`, and how to fix it.
fn no_production_file(path: &Path) -> String {
    let looked_at = match std::path::absolute(path) {
        Ok(full) if path.is_relative() => format!(
            "{} (`{}` is relative to the working directory)",
            full.display(),
            path.display()
        ),
        _ => path.display().to_string(),
    };
    format!(
        "FLEXHOOK_ENV=production needs {looked_at}, which does not exist: set FLEXHOOK_CONFIG_DIR to the folder that holds production.toml (the image's is /app/config)"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the settings: {0}")]
    Load(String),
    #[error("invalid settings:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// What the service runs with: every section, checked and typed.
#[derive(Debug, Clone)]
pub struct ValidSettings {
    pub environment: Environment,
    pub server: ServerConfig,
    pub twilio: TwilioConfig,
    pub flex: FlexConfig,
    pub store: StoreConfig,
    pub worker: WorkerConfig,
    pub log: LogSettings,
    pub lifecycle: LifecycleConfig,
    pub reconcile: ReconcileConfig,
    pub routing: RoutingConfig,
}

impl ValidSettings {
    pub fn is_dry_run(&self) -> bool {
        self.twilio.is_dry_run()
    }
}

impl Settings {
    /// Reads every layer. Fails only when a file is unreadable or a value has the wrong type.
    pub fn load(opts: &LoadOptions) -> Result<Self, ConfigError> {
        let env_var = |name: &str| -> Option<String> {
            if opts.read_env {
                std::env::var(name).ok().filter(|v| !v.is_empty())
            } else {
                None
            }
        };
        let environment = Environment::parse(
            &opts
                .environment
                .clone()
                .or_else(|| env_var("FLEXHOOK_ENV"))
                .unwrap_or_default(),
        );
        let dir = opts
            .config_dir
            .clone()
            .or_else(|| env_var("FLEXHOOK_CONFIG_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config"));
        let env_file = dir.join(format!("{}.toml", environment.name()));
        // production.toml holds the store's path: without it, a command run from another
        // folder would silently open a new, empty store there. Other files are optional.
        if environment == Environment::Production && !env_file.is_file() {
            return Err(ConfigError::Load(no_production_file(&env_file)));
        }

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::File::from(env_file)
                    .format(config::FileFormat::Toml)
                    .required(false),
            );
        if let Some(file) = &opts.file {
            if !file.is_file() {
                return Err(ConfigError::Load(format!(
                    "--config {}: no such file",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        if opts.read_env {
            // Twilio's own variables, as every Twilio tool reads them; FLEXHOOK_* wins over them.
            for (var, key) in STANDARD_VARS {
                if env_var(&own_env_var(key)).is_some() {
                    continue;
                }
                if let Some(v) = env_var(var) {
                    builder = builder
                        .set_override(key, v)
                        .map_err(|e| ConfigError::Load(e.to_string()))?;
                }
            }
            builder = builder.add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator("__"),
            );
        }
        for (key, value) in &opts.overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        Self::read(builder, environment)
    }

    /// The compiled-in defaults, then `text` (TOML), as for `FLEXHOOK_ENV=local` but with no
    /// files and no environment: how `fuzzing` reads arbitrary settings.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        Self::read(builder, Environment::Local)
    }

    fn read(
        builder: config::builder::ConfigBuilder<config::builder::DefaultState>,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        settings.environment = environment;
        Ok(settings)
    }

    /// Checks every section and returns what the service runs with, or every problem at once.
    pub fn validate(self) -> Result<ValidSettings, ConfigError> {
        let mut p = Problems::default();
        let server = self.server.validate(&self.environment, &mut p);
        let twilio = self.twilio.validate(&self.environment, &mut p);
        let flex = self.flex.validate(&mut p);
        let store = self.store.validate(&mut p);
        let worker = self.worker.validate(&mut p);
        let log = self.log.validate(&mut p);
        let lifecycle = self.lifecycle.validate(&mut p);
        let reconcile = self.reconcile.validate(&mut p);
        let routing = self.routing.validate(&mut p);
        self.check_across_sections(&mut p);
        if let (Some(store), Some(flex), Some(worker), Some(lifecycle), Some(routing)) =
            (&store, &flex, &worker, &lifecycle, &routing)
        {
            store.check_retention(&retention_needs(flex, worker, lifecycle, routing), &mut p);
        }
        let sections = server
            .zip(twilio)
            .zip(flex)
            .zip(store)
            .zip(worker)
            .zip(log)
            .zip(lifecycle)
            .zip(reconcile)
            .zip(routing);
        match sections {
            Some((
                (((((((server, twilio), flex), store), worker), log), lifecycle), reconcile),
                routing,
            )) if p.count() == 0 => Ok(ValidSettings {
                environment: self.environment,
                server,
                twilio,
                flex,
                store,
                worker,
                log,
                lifecycle,
                reconcile,
                routing,
            }),
            _ => Err(ConfigError::Invalid(p.0)),
        }
    }

    /// `[twilio]` alone, for commands that only talk to Twilio (no workflow needed).
    pub fn twilio(&self) -> Result<TwilioConfig, ConfigError> {
        let mut p = Problems::default();
        self.twilio
            .validate(&self.environment, &mut p)
            .ok_or(ConfigError::Invalid(p.0))
    }

    /// `flex.workspace_sid` alone, for commands that manage the workspace.
    pub fn workspace_sid(&self) -> Result<crate::domain::WorkspaceSid, ConfigError> {
        let mut p = Problems::default();
        match &self.flex.workspace_sid {
            None => p.add("flex.workspace_sid", "is required"),
            Some(s) => {
                if let Some(sid) = p.check(
                    "flex.workspace_sid",
                    crate::domain::WorkspaceSid::parse(s.trim()),
                ) {
                    return Ok(sid);
                }
            }
        }
        Err(ConfigError::Invalid(p.0))
    }

    /// `[flex]` and `[routing]`, for commands that only decide routes (no credentials).
    pub fn routes(&self) -> Result<(FlexConfig, RoutingConfig), ConfigError> {
        let mut p = Problems::default();
        let flex = self.flex.validate(&mut p);
        let routing = self.routing.validate(&mut p);
        flex.zip(routing).ok_or(ConfigError::Invalid(p.0))
    }

    /// `[reconcile]` alone.
    pub fn reconcile(&self) -> Result<ReconcileConfig, ConfigError> {
        let mut p = Problems::default();
        self.reconcile
            .validate(&mut p)
            .ok_or(ConfigError::Invalid(p.0))
    }

    /// `[store]` alone, for commands that only read and write jobs.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        let mut p = Problems::default();
        self.store.validate(&mut p).ok_or(ConfigError::Invalid(p.0))
    }

    /// Rules that tie two sections together.
    fn check_across_sections(&self, p: &mut Problems) {
        let w = &self.worker;
        if w.lease_secs * 1000 <= self.twilio.request_timeout_ms * 2 {
            p.add(
                "worker.lease_secs",
                "must be longer than two Twilio requests (2 × twilio.request_timeout_ms), or a slow job could be claimed twice",
            );
        }
        // Claimed jobs queue for the rate limit while holding their lease.
        let rate = self.flex.max_creates_per_second.max(1);
        let queue_secs = w.concurrency as u64 / u64::from(rate);
        if queue_secs * 2 >= w.lease_secs {
            p.add(
                "worker.concurrency",
                format!(
                    "{} jobs at flex.max_creates_per_second = {rate} wait up to {queue_secs} s for their turn, too long for worker.lease_secs = {}: lower the concurrency or lengthen the lease",
                    w.concurrency, w.lease_secs
                ),
            );
        }
    }
}

/// What may still need a finished job, and for how long after its last change.
fn retention_needs(
    flex: &FlexConfig,
    worker: &WorkerConfig,
    lifecycle: &LifecycleConfig,
    routing: &RoutingConfig,
) -> Vec<store::RetentionNeed> {
    use store::RetentionNeed;
    const TASK_WAITS: &str = "a task may wait that long for an agent, and when it times out \
                              the lifecycle finds its conversation by the job";
    let mut needs = vec![RetentionNeed {
        key: "worker.max_age_secs".into(),
        lasts: worker.max_age,
        why: "a job is tried that long: keep it longer, so that `flexhook jobs` shows a dead \
              job and `flexhook jobs retry` can revive it",
    }];
    if let Some(close_after) = lifecycle.close_after {
        needs.push(RetentionNeed {
            key: "lifecycle.close_after".into(),
            lasts: close_after,
            why: "a handed-off conversation stays open that long, and its job is what keeps \
                  its later messages from creating a second interaction",
        });
    }
    let flex_timeout = match flex.task_timeout_secs {
        Some(_) => "flex.task_timeout_secs".to_owned(),
        None => "flex.task_timeout_secs (unset: TaskRouter's default)".to_owned(),
    };
    needs.push(RetentionNeed {
        key: flex_timeout,
        lasts: Duration::from_secs(flex.task_timeout_secs_or_default().into()),
        why: TASK_WAITS,
    });
    for rule in &routing.rules {
        if let Some(secs) = rule.set.timeout_secs {
            needs.push(RetentionNeed {
                key: format!("the timeout_secs of routing rule `{}`", rule.name),
                lasts: Duration::from_secs(secs.into()),
                why: TASK_WAITS,
            });
        }
    }
    needs
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    fn load(env: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load(&LoadOptions {
            environment: Some(env.into()),
            config_dir: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config"
            ))),
            file: None,
            read_env: false,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn problems(err: ConfigError) -> Vec<Problem> {
        match err {
            ConfigError::Invalid(p) => p,
            other => panic!("expected validation problems, got {other}"),
        }
    }

    #[test]
    fn local_without_an_account_is_a_dry_run_with_the_development_token() {
        let valid = load("local", &[]).unwrap().validate().unwrap();
        assert!(valid.is_dry_run());
        assert_eq!(valid.server.port, 8080);
        assert_eq!(valid.flex.task_channel, "chat");
        assert!(valid.flex.remove_webhook_after_handoff);
        assert_eq!(valid.flex.max_creates_per_second, 15);
        assert_eq!(valid.store.retention, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn production_without_credentials_names_every_missing_key_and_its_variable() {
        let err = load("production", &[]).unwrap().validate().unwrap_err();
        let text = err.to_string();
        let keys: Vec<String> = problems(err).into_iter().map(|p| p.key).collect();
        assert!(keys.contains(&"twilio.account_sid".to_string()), "{keys:?}");
        assert!(keys.contains(&"twilio.auth_token".to_string()), "{keys:?}");
        assert!(keys.contains(&"flex.workflow_sid".to_string()), "{keys:?}");
        assert!(text.contains("TWILIO_AUTH_TOKEN"), "{text}");
        assert!(text.contains("FLEXHOOK_FLEX__WORKFLOW_SID"), "{text}");
    }

    #[test]
    fn a_malformed_workflow_sid_is_rejected_by_name() {
        let err = load(
            "local",
            &[("flex.workflow_sid", "WS00000000000000000000000000000000")],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        let p = problems(err);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "flex.workflow_sid");
        assert!(p[0].to_string().contains("`WW`"));
    }

    #[test]
    fn live_mode_uses_the_api_key_when_set_and_never_prints_secrets() {
        let valid = load(
            "production",
            &[
                ("twilio.account_sid", "AC00000000000000000000000000000001"),
                ("twilio.auth_token", "tok-secret-1"),
                ("twilio.api_key", "SK00000000000000000000000000000001"),
                ("twilio.api_secret", "api-secret-2"),
                ("flex.workspace_sid", "WS00000000000000000000000000000001"),
                ("flex.workflow_sid", "WW00000000000000000000000000000001"),
                ("server.public_base_url", "https://flexhook.example.com"),
            ],
        )
        .unwrap()
        .validate()
        .unwrap();
        assert!(!valid.is_dry_run());
        let key = valid.twilio.api_key.as_ref().expect("the API key");
        assert_eq!(key.sid, "SK00000000000000000000000000000001");
        let debug = format!("{valid:?}");
        assert!(!debug.contains("tok-secret-1"), "{debug}");
        assert!(!debug.contains("api-secret-2"), "{debug}");
    }

    #[test]
    fn customer_addresses_are_masked_in_logs_unless_log_show_addresses_is_on() {
        let valid = |o: &[(&str, &str)]| load("local", o).unwrap().validate().unwrap();
        assert!(!valid(&[]).log.show_addresses);
        assert!(!load("production", &[]).unwrap().log.show_addresses);
        assert!(valid(&[("log.show_addresses", "true")]).log.show_addresses);
    }

    #[test]
    fn shared_keys_and_task_attributes_parse_from_strings() {
        let s = load(
            "local",
            &[
                (
                    "twilio.webhook_shared_keys",
                    "key_a=secret-a, key_B=secret=b",
                ),
                (
                    "flex.task_attributes",
                    r#"{"skillNeeded":"Spanish","vip":true}"#,
                ),
            ],
        )
        .unwrap();
        let ids: Vec<&String> = s.twilio.webhook_shared_keys.keys().collect();
        assert_eq!(ids, ["key_B", "key_a"]);
        assert_eq!(
            s.twilio.webhook_shared_keys["key_B"].expose_secret(),
            "secret=b"
        );
        assert_eq!(s.flex.task_attributes["skillNeeded"], "Spanish");
    }

    #[test]
    fn task_attributes_that_are_not_an_object_fail_to_load() {
        let err = load("local", &[("flex.task_attributes", "[1,2]")]).unwrap_err();
        assert!(err.to_string().contains("flex.task_attributes"), "{err}");
    }

    #[test]
    fn out_of_range_rate_and_unsupported_store_are_reported() {
        let err = load(
            "local",
            &[
                ("flex.max_creates_per_second", "25"),
                ("store.url", "mysql://u:pw@db/x"),
            ],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("flex.max_creates_per_second"), "{text}");
        assert!(text.contains("store.url"), "{text}");
        assert!(!text.contains(":pw@"), "passwords are redacted: {text}");
    }

    #[test]
    fn a_queue_longer_than_the_lease_allows_is_refused() {
        let err = load(
            "local",
            &[
                ("worker.concurrency", "200"),
                ("flex.max_creates_per_second", "2"),
                ("worker.lease_secs", "60"),
            ],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(problems(err)[0].key, "worker.concurrency");
        assert!(load("local", &[("worker.concurrency", "16")])
            .unwrap()
            .validate()
            .is_ok());
    }

    #[test]
    fn public_base_url_must_be_only_an_origin() {
        let err = load(
            "local",
            &[("server.public_base_url", "https://x.fly.dev/hooks")],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(problems(err)[0].key, "server.public_base_url");
        let ok = load("local", &[("server.public_base_url", "https://x.fly.dev/")])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            ok.server.public_base_url.as_deref(),
            Some("https://x.fly.dev")
        );
    }

    #[test]
    fn public_base_url_ngrok_is_left_to_start_up_and_needs_a_valid_agent_url() {
        let ok = load("local", &[("server.public_base_url", "ngrok")])
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(ok.server.public_base_url, None);
        assert_eq!(
            ok.server.ngrok_api_url.as_deref(),
            Some("http://127.0.0.1:4040")
        );
        let err = load(
            "local",
            &[
                ("server.public_base_url", "ngrok"),
                ("server.ngrok_api_url", "localhost"),
            ],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(problems(err)[0].key, "server.ngrok_api_url");
        let plain = load("local", &[]).unwrap().validate().unwrap();
        assert_eq!(plain.server.ngrok_api_url, None);
    }

    #[test]
    fn a_twilio_only_command_needs_no_workflow_but_still_its_credentials() {
        let no_flex = [
            ("twilio.account_sid", "AC00000000000000000000000000000001"),
            ("twilio.auth_token", "tok"),
            ("server.public_base_url", "https://flexhook.example.com"),
        ];
        let settings = load("production", &no_flex).unwrap();
        let twilio = settings.twilio().unwrap();
        assert_eq!(
            twilio.account_sid.unwrap().as_str(),
            "AC00000000000000000000000000000001"
        );
        let keys: Vec<String> = problems(settings.validate().unwrap_err())
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["flex.workspace_sid", "flex.workflow_sid"]);
        let err = load("production", &[]).unwrap().twilio().unwrap_err();
        let keys: Vec<String> = problems(err).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["twilio.account_sid", "twilio.auth_token"]);
    }

    #[test]
    fn the_store_section_validates_alone_and_redacts_its_password() {
        let err = load("local", &[("store.url", "mysql://u:pw@db/x")])
            .unwrap()
            .store()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("store.url") && text.contains("DATABASE_URL"),
            "{text}"
        );
        assert!(!text.contains(":pw@"), "{text}");
        let store = load("local", &[]).unwrap().store().unwrap();
        assert_eq!(store.url.expose(), "sqlite://data/flexhook-local.db");
    }

    const LIVE: [(&str, &str); 4] = [
        ("twilio.account_sid", "AC00000000000000000000000000000001"),
        ("twilio.auth_token", "tok"),
        ("flex.workspace_sid", "WS00000000000000000000000000000001"),
        ("flex.workflow_sid", "WW00000000000000000000000000000001"),
    ];

    /// The problems of `env` with [`LIVE`] and `extra`, as `(key, text)`.
    fn live_problems(env: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let overrides: Vec<(&str, &str)> = LIVE.iter().chain(extra).copied().collect();
        match load(env, &overrides).unwrap().validate() {
            Ok(_) => Vec::new(),
            Err(e) => problems(e)
                .into_iter()
                .map(|p| (p.key.clone(), p.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_live_account_refuses_the_public_development_token_of_local_toml() {
        let dev = load("local", &[]).unwrap().twilio.auth_token.unwrap();
        let dev = dev.expose_secret();
        // No FLEXHOOK_ENV (local), an account and an API key, no TWILIO_AUTH_TOKEN: the
        // token would silently be local.toml's.
        let err = load(
            "local",
            &[
                ("twilio.account_sid", "AC00000000000000000000000000000001"),
                ("twilio.api_key", "SK00000000000000000000000000000001"),
                ("twilio.api_secret", "api-secret"),
            ],
        )
        .unwrap()
        .validate()
        .unwrap_err();
        let p = problems(err);
        let token = p.iter().find(|p| p.key == "twilio.auth_token");
        let text = token.map(ToString::to_string).unwrap_or_default();
        assert!(
            text.contains("TWILIO_AUTH_TOKEN") && text.contains("development"),
            "{p:?}"
        );
        assert!(
            !text.contains(dev),
            "the token itself is not printed: {text}"
        );
        // As the rotation's other token, too, and in any environment.
        let p = live_problems("production", &[("twilio.secondary_auth_token", dev)]);
        assert!(
            p.iter().any(|(k, _)| k == "twilio.secondary_auth_token"),
            "{p:?}"
        );
        let p = live_problems("staging", &[("twilio.auth_token", dev)]);
        assert!(p.iter().any(|(k, _)| k == "twilio.auth_token"), "{p:?}");
        // Dry-run is what it is for.
        assert!(load("local", &[]).unwrap().validate().unwrap().is_dry_run());
    }

    #[test]
    fn a_retention_shorter_than_what_still_needs_the_jobs_is_refused() {
        let retention = |extra: &[(&str, &str)]| -> Vec<String> {
            live_problems("local", extra)
                .into_iter()
                .filter(|(k, _)| k == "store.retention_days")
                .map(|(_, text)| text)
                .collect()
        };
        let zero = retention(&[("store.retention_days", "0")]);
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert!(
            zero[0].contains("FLEXHOOK_STORE__RETENTION_DAYS"),
            "{zero:?}"
        );
        // A task waits up to TaskRouter's default timeout, a day, for an agent; the
        // lifecycle finds its conversation by the job.
        let one = retention(&[("store.retention_days", "1")]);
        assert!(one.iter().any(|t| t.contains("at least 2")), "{one:?}");
        assert!(retention(&[("store.retention_days", "2")]).is_empty());
        for (key, value, needed) in [
            ("worker.max_age_secs", "172800", "at least 3"),
            ("lifecycle.close_after", "72h", "at least 4"),
            ("flex.task_timeout_secs", "345600", "at least 5"),
        ] {
            let short = retention(&[("store.retention_days", "2"), (key, value)]);
            assert!(
                short.iter().any(|t| t.contains(key) && t.contains(needed)),
                "{key}: {short:?}"
            );
        }
        assert!(retention(&[]).is_empty(), "the default, 30 days, is enough");
    }

    #[test]
    fn production_needs_public_base_url_or_trusted_forwarded_headers() {
        let p = live_problems("production", &[]);
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["server.public_base_url"], "{p:?}");
        for needed in [
            "FLEXHOOK_SERVER__PUBLIC_BASE_URL",
            "server.trust_forwarded_headers",
            "Host",
        ] {
            assert!(p[0].1.contains(needed), "{needed}: {p:?}");
        }
        assert!(live_problems(
            "production",
            &[("server.public_base_url", "https://x.fly.dev")]
        )
        .is_empty());
        assert!(
            live_problems("production", &[("server.trust_forwarded_headers", "true")]).is_empty()
        );
        assert!(live_problems("staging", &[]).is_empty(), "only production");
    }
}

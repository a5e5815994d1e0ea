//! Settings: the compiled-in `config/default.toml`, then `config/<FLEXHOOK_ENV>.toml`
//! (in `FLEXHOOK_CONFIG_DIR`; optional but for `production.toml`), then `--config FILE`,
//! then Twilio's standard variables, then `FLEXHOOK_<SECTION>__<KEY>`.
//!
//! Each `[section]` has a file here: its raw form as read, and the typed, checked form it
//! validates into. A command validates only the sections it uses: `serve` all of them
//! ([`Settings::validate`]), a command that only talks to Twilio just `[twilio]`
//! ([`Settings::twilio`]). Every problem names its key and the variable that sets it.

mod accounts;
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

pub use accounts::{AccountConfig, AccountSettings, Accounts, Keys, RawAccount, DEFAULT_ACCOUNT};
pub use flex::{FlexConfig, FlexSettings};
pub use lifecycle::{iso8601, LifecycleConfig, LifecycleSettings, Reengage};
pub use log::LogSettings;
pub use problems::{env_vars_for, Problem};
pub use reconcile::{ReconcileConfig, ReconcileSettings};
pub use routing::{
    RoutingConfig, RoutingSettings, RuleConfig, RuleSettings, ScheduleSettings, SetConfig, When,
    PLACEHOLDERS,
};
pub use server::{ClientTimeouts, ServerConfig, ServerSettings};
pub use store::{StoreConfig, StoreSettings};
pub use twilio::{Api, ApiKey, BaseUrls, TwilioConfig, TwilioSettings};
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
    /// The account a command works on (the CLI's `--account NAME`); `None`: the only one.
    #[serde(skip)]
    pub account: Option<String>,
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
    /// `[accounts.NAME]`: several Twilio accounts; empty: `[twilio]` + `[flex]` are the one.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, AccountSettings>,
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
    /// `--account` names no account, or is missing while there are several.
    #[error("{0}")]
    Account(String),
}

/// A `[section]` as read, and what it checks into: the typed form its consumers get. Each
/// records every problem it finds against its key, so one start-up reports them all.
trait Section {
    type Valid;
    fn check(&self, environment: &Environment, p: &mut Problems) -> Option<Self::Valid>;
}

/// The sections whose checks do not depend on the environment.
macro_rules! section {
    ($($raw:ty => $valid:ty),* $(,)?) => {$(
        impl Section for $raw {
            type Valid = $valid;
            fn check(&self, _: &Environment, p: &mut Problems) -> Option<$valid> {
                self.validate(p)
            }
        }
    )*};
}

section!(
    StoreSettings => StoreConfig,
    WorkerSettings => WorkerConfig,
    LogSettings => LogSettings,
    LifecycleSettings => LifecycleConfig,
    ReconcileSettings => ReconcileConfig,
    RoutingSettings => RoutingConfig,
);

impl Section for ServerSettings {
    type Valid = ServerConfig;
    fn check(&self, environment: &Environment, p: &mut Problems) -> Option<ServerConfig> {
        self.validate(environment, p)
    }
}

impl Section for TwilioSettings {
    type Valid = TwilioConfig;
    fn check(&self, environment: &Environment, p: &mut Problems) -> Option<TwilioConfig> {
        self.validate(environment, p)
    }
}

/// What the service runs with: every section, checked and typed.
#[derive(Debug, Clone)]
pub struct ValidSettings {
    pub environment: Environment,
    pub server: ServerConfig,
    /// Every Twilio account, each with its credentials and its `[flex]` settings.
    pub accounts: Accounts,
    pub store: StoreConfig,
    pub worker: WorkerConfig,
    pub log: LogSettings,
    pub lifecycle: LifecycleConfig,
    pub reconcile: ReconcileConfig,
    pub routing: RoutingConfig,
}

impl ValidSettings {
    pub fn is_dry_run(&self) -> bool {
        self.accounts.is_dry_run()
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
        let env = &self.environment;
        let server = self.server.check(env, &mut p);
        let accounts = accounts::validate(&self.accounts, &self.twilio, &self.flex, env, &mut p);
        p.dedup();
        let store = self.store.check(env, &mut p);
        let worker = self.worker.check(env, &mut p);
        let log = self.log.check(env, &mut p);
        let lifecycle = self.lifecycle.check(env, &mut p);
        let reconcile = self.reconcile.check(env, &mut p);
        let routing = self.routing.check(env, &mut p);
        self.check_across_sections(&mut p);
        if let (Some(store), Some(accounts), Some(worker), Some(lifecycle), Some(routing)) =
            (&store, &accounts, &worker, &lifecycle, &routing)
        {
            store.check_retention(
                &retention_needs(accounts, worker, lifecycle, routing),
                &mut p,
            );
        }
        if let (Some(accounts), Some(routing)) = (&accounts, &routing) {
            routing.check_accounts(&accounts.names(), &mut p);
        }
        let (
            Some(server),
            Some(accounts),
            Some(store),
            Some(worker),
            Some(log),
            Some(lifecycle),
            Some(reconcile),
            Some(routing),
        ) = (
            server, accounts, store, worker, log, lifecycle, reconcile, routing,
        )
        else {
            return Err(ConfigError::Invalid(p.0));
        };
        if p.count() > 0 {
            return Err(ConfigError::Invalid(p.0));
        }
        Ok(ValidSettings {
            environment: self.environment,
            server,
            accounts,
            store,
            worker,
            log,
            lifecycle,
            reconcile,
            routing,
        })
    }

    /// One section checked alone, for a command that needs nothing else.
    fn alone<S: Section>(&self, section: &S) -> Result<S::Valid, ConfigError> {
        let mut p = Problems::default();
        section
            .check(&self.environment, &mut p)
            .ok_or(ConfigError::Invalid(p.0))
    }

    /// The accounts' names: `default` for the flat `[twilio]` + `[flex]`, else each
    /// `[accounts.NAME]`'s.
    pub fn account_names(&self) -> Vec<&str> {
        if self.accounts.is_empty() {
            vec![DEFAULT_ACCOUNT]
        } else {
            self.accounts.keys().map(String::as_str).collect()
        }
    }

    /// The account a command works on (`wanted`, or the only one), as set.
    fn account(&self, wanted: Option<&str>, p: &mut Problems) -> Result<RawAccount, ConfigError> {
        let name = accounts::select(self.account_names(), wanted, str::to_owned)
            .map_err(ConfigError::Account)?;
        let mut resolved = accounts::resolve(&self.accounts, &self.twilio, &self.flex, p);
        match resolved.iter().position(|a| a.name == name) {
            Some(i) => Ok(resolved.swap_remove(i)),
            // Its name is not one: the problem is recorded.
            None => Err(ConfigError::Invalid(std::mem::take(&mut p.0))),
        }
    }

    /// The chosen account ([`Settings::account`], else the only one) as set, unchecked:
    /// for `check`, which reports each key, and `sign`, which needs only a token.
    pub fn raw_account(&self) -> Result<RawAccount, ConfigError> {
        self.account(self.account.as_deref(), &mut Problems::default())
    }

    /// One account's `[twilio]` alone (`--account NAME`, or the only one), for commands that
    /// only talk to Twilio (no workflow needed).
    pub fn twilio_of(&self, account: Option<&str>) -> Result<(String, TwilioConfig), ConfigError> {
        let mut p = Problems::default();
        let raw = self.account(account, &mut p)?;
        match raw.twilio.validate_at(&self.environment, &raw.keys, &mut p) {
            Some(valid) if p.count() == 0 => Ok((raw.name, valid)),
            _ => Err(ConfigError::Invalid(p.0)),
        }
    }

    /// The chosen account's `[twilio]` ([`Settings::account`], else the only one).
    pub fn twilio(&self) -> Result<TwilioConfig, ConfigError> {
        self.twilio_of(self.account.as_deref())
            .map(|(_, twilio)| twilio)
    }

    /// Each account's name and SID as set (for showing a job's account by name).
    pub fn account_sids(&self) -> Vec<(String, Option<String>)> {
        accounts::resolve(
            &self.accounts,
            &self.twilio,
            &self.flex,
            &mut Problems::default(),
        )
        .into_iter()
        .map(|a| (a.name, a.twilio.account_sid.map(|s| s.trim().to_owned())))
        .collect()
    }

    /// The chosen account's name ([`Settings::account`], else the only one).
    pub fn account_name(&self) -> Result<String, ConfigError> {
        accounts::select(self.account_names(), self.account.as_deref(), str::to_owned)
            .map_err(ConfigError::Account)
    }

    /// One account's workspace SID alone, for commands that manage the workspace.
    pub fn workspace_sid_of(
        &self,
        account: Option<&str>,
    ) -> Result<crate::domain::WorkspaceSid, ConfigError> {
        let mut p = Problems::default();
        let raw = self.account(account, &mut p)?;
        let key = raw.keys.flex("workspace_sid");
        match &raw.flex.workspace_sid {
            None => p.add(&key, "is required"),
            Some(s) => {
                if let Some(sid) = p.check(&key, crate::domain::WorkspaceSid::parse(s.trim())) {
                    return Ok(sid);
                }
            }
        }
        Err(ConfigError::Invalid(p.0))
    }

    /// The chosen account's workspace SID (see [`Settings::workspace_sid_of`]).
    pub fn workspace_sid(&self) -> Result<crate::domain::WorkspaceSid, ConfigError> {
        self.workspace_sid_of(self.account.as_deref())
    }

    /// One account's `[flex]`, and `[routing]`, for commands that only decide routes (no
    /// credentials): its name, its settings, and the rules.
    pub fn routes_of(
        &self,
        account: Option<&str>,
    ) -> Result<(String, FlexConfig, RoutingConfig), ConfigError> {
        let mut p = Problems::default();
        let raw = self.account(account, &mut p)?;
        let flex = raw.flex.validate_at(&raw.keys, &mut p);
        let routing = self.routing.check(&self.environment, &mut p);
        match (flex, routing) {
            (Some(flex), Some(routing)) if p.count() == 0 => Ok((raw.name, flex, routing)),
            _ => Err(ConfigError::Invalid(p.0)),
        }
    }

    /// The chosen account's `[flex]`, and `[routing]` (see [`Settings::routes_of`]).
    pub fn routes(&self) -> Result<(FlexConfig, RoutingConfig), ConfigError> {
        self.routes_of(self.account.as_deref())
            .map(|(_, flex, routing)| (flex, routing))
    }

    /// `[reconcile]` alone.
    pub fn reconcile(&self) -> Result<ReconcileConfig, ConfigError> {
        self.alone(&self.reconcile)
    }

    /// `[store]` alone, for commands that only read and write jobs.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        self.alone(&self.store)
    }

    /// Rules that tie two sections together.
    fn check_across_sections(&self, p: &mut Problems) {
        if self.lifecycle.reengage.trim() == "flexhook" && self.server.public_base_url.is_none() {
            p.add(
                "lifecycle.reengage",
                "is \"flexhook\", which gives a left or parked conversation a webhook to server.public_base_url: set it (or \"ngrok\")",
            );
        }
        let w = &self.worker;
        if w.lease_secs * 1000 <= self.twilio.request_timeout_ms * 2 {
            p.add(
                "worker.lease_secs",
                "must be longer than two Twilio requests (2 × twilio.request_timeout_ms), or a slow job could be claimed twice",
            );
        }
        // Claimed jobs queue for the rate limit while holding their lease: each account's
        // worker claims up to worker.concurrency, at its own pace.
        let accounts = accounts::resolve(
            &self.accounts,
            &self.twilio,
            &self.flex,
            &mut Problems::default(),
        );
        for account in &accounts {
            let rate = account.flex.max_creates_per_second.max(1);
            let queue_secs = w.concurrency as u64 / u64::from(rate);
            if queue_secs * 2 >= w.lease_secs {
                p.add(
                    "worker.concurrency",
                    format!(
                        "{} jobs at {} = {rate} wait up to {queue_secs} s for their turn, too long for worker.lease_secs = {}: lower the concurrency or lengthen the lease",
                        w.concurrency,
                        account.keys.flex("max_creates_per_second"),
                        w.lease_secs
                    ),
                );
                break;
            }
        }
    }
}

/// What may still need a finished job, and for how long after its last change.
fn retention_needs(
    accounts: &Accounts,
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
    for account in accounts {
        let flex = &account.flex;
        let key = if accounts.len() == 1 {
            "flex.task_timeout_secs".to_owned()
        } else {
            format!("the task_timeout_secs of account `{}`", account.name)
        };
        let flex_timeout = match flex.task_timeout_secs {
            Some(_) => key,
            None => format!("{key} (unset: TaskRouter's default)"),
        };
        needs.push(RetentionNeed {
            key: flex_timeout,
            lasts: Duration::from_secs(flex.task_timeout_secs_or_default().into()),
            why: TASK_WAITS,
        });
    }
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
mod tests;

//! Settings: the compiled-in `config/default.toml`, then `config/<FLEXHOOK_ENV>.toml`,
//! then `--config FILE`, then Twilio's standard variables, then `FLEXHOOK_<SECTION>__<KEY>`.
//! Validated once at start-up; every problem names its key and the variable that sets it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::domain::{AccountSid, WorkflowSid, WorkspaceSid};

const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "FLEXHOOK";

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

#[derive(Deserialize, Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "empty_as_none")]
    pub public_base_url: Option<String>,
    pub trust_forwarded_headers: bool,
    pub max_body_bytes: usize,
    pub ack_timeout_ms: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Deserialize, Debug, Clone)]
pub struct TwilioSettings {
    #[serde(deserialize_with = "empty_as_none")]
    pub account_sid: Option<String>,
    #[serde(deserialize_with = "empty_secret_as_none")]
    pub auth_token: Option<SecretString>,
    #[serde(deserialize_with = "empty_secret_as_none")]
    pub secondary_auth_token: Option<SecretString>,
    #[serde(deserialize_with = "empty_as_none")]
    pub api_key: Option<String>,
    #[serde(deserialize_with = "empty_secret_as_none")]
    pub api_secret: Option<SecretString>,
    #[serde(default, deserialize_with = "shared_keys")]
    pub webhook_shared_keys: BTreeMap<String, SecretString>,
    pub flex_api_base_url: String,
    pub conversations_api_base_url: String,
    pub taskrouter_api_base_url: String,
    pub request_timeout_ms: u64,
}

#[derive(Deserialize, Debug, Clone)]
pub struct FlexSettings {
    #[serde(deserialize_with = "empty_as_none")]
    pub workspace_sid: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub workflow_sid: Option<String>,
    pub task_channel: String,
    #[serde(deserialize_with = "json_object")]
    pub task_attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(deserialize_with = "empty_as_none")]
    pub priority: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub task_timeout_secs: Option<String>,
    pub remove_webhook_after_handoff: bool,
    pub max_creates_per_second: u32,
}

#[derive(Deserialize, Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub retention_days: u32,
    pub busy_timeout_ms: u64,
    pub known_cache_capacity: usize,
    pub batch_max: usize,
}

#[derive(Deserialize, Debug, Clone)]
pub struct WorkerSettings {
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub max_age_secs: u64,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub lookup_delay_ms: u64,
    pub concurrency: usize,
}

#[derive(Deserialize, Debug, Clone)]
pub struct LogSettings {
    pub format: String,
    pub filter: String,
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
}

fn local() -> Environment {
    Environment::Local
}

/// A settings problem, naming the key and the variable(s) that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({}): {}",
            self.key,
            env_vars_for(&self.key),
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the settings: {0}")]
    Load(String),
    #[error("invalid settings:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// `flex.workflow_sid` → `FLEXHOOK_FLEX__WORKFLOW_SID`.
fn own_env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.to_ascii_uppercase().replacen('.', "__", 1)
    )
}

/// The variable(s) that set a key, for error messages.
pub fn env_vars_for(key: &str) -> String {
    let own = own_env_var(key);
    let standard = match key {
        "twilio.account_sid" => Some("TWILIO_ACCOUNT_SID"),
        "twilio.auth_token" => Some("TWILIO_AUTH_TOKEN"),
        "twilio.api_key" => Some("TWILIO_API_KEY"),
        "twilio.api_secret" => Some("TWILIO_API_SECRET"),
        "twilio.webhook_shared_keys" => Some("TWILIO_WEBHOOK_SHARED_KEYS"),
        "server.port" => Some("PORT"),
        "store.url" => Some("DATABASE_URL"),
        _ => None,
    };
    match standard {
        Some(s) => format!("set by {own} or {s}"),
        None => format!("set by {own}"),
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

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::File::from(dir.join(format!("{}.toml", environment.name())))
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
            for (var, key) in [
                ("TWILIO_ACCOUNT_SID", "twilio.account_sid"),
                ("TWILIO_AUTH_TOKEN", "twilio.auth_token"),
                ("TWILIO_API_KEY", "twilio.api_key"),
                ("TWILIO_API_SECRET", "twilio.api_secret"),
                ("TWILIO_WEBHOOK_SHARED_KEYS", "twilio.webhook_shared_keys"),
                ("PORT", "server.port"),
                ("DATABASE_URL", "store.url"),
            ] {
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
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut settings: Settings = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        settings.environment = environment;
        Ok(settings)
    }

    /// Checks every key and returns what the service runs with, or every problem at once.
    pub fn validate(self) -> Result<ValidSettings, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_owned(),
                message,
            })
        };

        let account_sid = match &self.twilio.account_sid {
            Some(s) => match AccountSid::parse(s) {
                Ok(sid) => Some(sid),
                Err(e) => {
                    bad("twilio.account_sid", e.to_string());
                    None
                }
            },
            None => None,
        };
        let dry_run = account_sid.is_none();
        if dry_run && self.environment != Environment::Local {
            bad(
                "twilio.account_sid",
                format!(
                    "is required with FLEXHOOK_ENV={} (only `local` may dry-run)",
                    self.environment.name()
                ),
            );
        }
        if self.twilio.auth_token.is_none() {
            bad(
                "twilio.auth_token",
                "is required: it checks the signature of every webhook, and flexhook never runs unprotected".into(),
            );
        }
        match (&self.twilio.api_key, &self.twilio.api_secret) {
            (Some(k), Some(_)) if !k.starts_with("SK") => bad(
                "twilio.api_key",
                format!("`{k}` is not an API key SID (SK…)"),
            ),
            (Some(_), None) => bad(
                "twilio.api_secret",
                "is required when twilio.api_key is set".into(),
            ),
            (None, Some(_)) => bad(
                "twilio.api_key",
                "is required when twilio.api_secret is set".into(),
            ),
            _ => {}
        }
        for (key, url) in [
            ("twilio.flex_api_base_url", &self.twilio.flex_api_base_url),
            (
                "twilio.conversations_api_base_url",
                &self.twilio.conversations_api_base_url,
            ),
            (
                "twilio.taskrouter_api_base_url",
                &self.twilio.taskrouter_api_base_url,
            ),
        ] {
            if let Err(e) = check_base_url(url) {
                bad(key, e);
            }
        }
        let public_base_url = match &self.server.public_base_url {
            Some(u) => match check_base_url(u) {
                Ok(u) => Some(u),
                Err(e) => {
                    bad("server.public_base_url", e);
                    None
                }
            },
            None => None,
        };

        let workspace_sid = required_sid(&self.flex.workspace_sid, "flex.workspace_sid", &mut bad)
            .and_then(|s| {
                WorkspaceSid::parse(&s)
                    .map_err(|e| bad("flex.workspace_sid", e.to_string()))
                    .ok()
            });
        let workflow_sid = required_sid(&self.flex.workflow_sid, "flex.workflow_sid", &mut bad)
            .and_then(|s| {
                WorkflowSid::parse(&s)
                    .map_err(|e| bad("flex.workflow_sid", e.to_string()))
                    .ok()
            });
        if self.flex.task_channel.trim().is_empty() {
            bad(
                "flex.task_channel",
                "must not be empty (Flex's default is `chat`)".into(),
            );
        }
        let priority = parse_optional::<u32>(&self.flex.priority, "flex.priority", &mut bad);
        let task_timeout_secs = parse_optional::<u32>(
            &self.flex.task_timeout_secs,
            "flex.task_timeout_secs",
            &mut bad,
        );
        if self.flex.max_creates_per_second == 0 || self.flex.max_creates_per_second > 20 {
            bad(
                "flex.max_creates_per_second",
                format!(
                    "is {}; it must be between 1 and 20 (Twilio's limit for the Interactions API)",
                    self.flex.max_creates_per_second
                ),
            );
        }
        if self.server.max_body_bytes < 1024 {
            bad("server.max_body_bytes", "must be at least 1024".into());
        }
        if self.server.ack_timeout_ms == 0 || self.server.ack_timeout_ms >= 5000 {
            bad(
                "server.ack_timeout_ms",
                "must be between 1 and 4999: Twilio gives up on a webhook after 5 seconds".into(),
            );
        }
        if self.twilio.request_timeout_ms == 0 {
            bad("twilio.request_timeout_ms", "must be more than 0".into());
        }
        if !self.store.url.starts_with("sqlite:") {
            bad(
                "store.url",
                format!(
                    "`{}` is not supported: use sqlite://path/to/file.db",
                    redact_url(&self.store.url)
                ),
            );
        }
        if self.store.batch_max == 0 {
            bad("store.batch_max", "must be at least 1".into());
        }
        if self.worker.concurrency == 0 {
            bad("worker.concurrency", "must be at least 1".into());
        }
        if self.worker.retry_base_ms == 0 || self.worker.retry_cap_ms < self.worker.retry_base_ms {
            bad(
                "worker.retry_cap_ms",
                "retry_base_ms must be more than 0 and retry_cap_ms at least retry_base_ms".into(),
            );
        }
        if self.worker.lease_secs * 1000 <= self.twilio.request_timeout_ms * 2 {
            bad(
                "worker.lease_secs",
                "must be longer than two Twilio requests (2 × twilio.request_timeout_ms), or a slow job could be claimed twice".into(),
            );
        }
        // Claimed jobs queue for the rate limit while holding their lease.
        let queue_secs =
            self.worker.concurrency as u64 / u64::from(self.flex.max_creates_per_second.max(1));
        if queue_secs * 2 >= self.worker.lease_secs {
            bad(
                "worker.concurrency",
                format!(
                    "{} jobs at flex.max_creates_per_second = {} wait up to {queue_secs} s for their turn, too long for worker.lease_secs = {}: lower the concurrency or lengthen the lease",
                    self.worker.concurrency, self.flex.max_creates_per_second, self.worker.lease_secs
                ),
            );
        }
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            bad(
                "log.format",
                format!("`{}` is not `pretty` or `json`", self.log.format),
            );
        }
        for id in self.twilio.webhook_shared_keys.keys() {
            if id.trim().is_empty() || id.contains(',') || id.contains('=') {
                bad(
                    "twilio.webhook_shared_keys",
                    format!("`{id}` is not a usable key id"),
                );
            }
        }

        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let auth = match (&self.twilio.api_key, &self.twilio.api_secret, &account_sid) {
            (Some(k), Some(s), Some(_)) => Some((k.clone(), s.clone())),
            (_, _, Some(sid)) => Some((
                sid.to_string(),
                self.twilio.auth_token.clone().expect("checked above"),
            )),
            _ => None,
        };
        Ok(ValidSettings {
            mode: match (account_sid, auth) {
                (Some(account_sid), Some((user, password))) => Mode::Live {
                    account_sid,
                    rest_user: user,
                    rest_password: password,
                },
                _ => Mode::DryRun,
            },
            public_base_url,
            workspace_sid: workspace_sid.expect("checked above"),
            workflow_sid: workflow_sid.expect("checked above"),
            priority,
            task_timeout_secs,
            settings: self,
        })
    }
}

/// How flexhook talks to Twilio.
#[derive(Clone)]
pub enum Mode {
    /// REST calls authenticate as `rest_user` (the account SID or an API key).
    Live {
        account_sid: AccountSid,
        rest_user: String,
        rest_password: SecretString,
    },
    /// `FLEXHOOK_ENV=local` without an account: log what would be sent, call nothing.
    DryRun,
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Live {
                account_sid,
                rest_user,
                ..
            } => f
                .debug_struct("Live")
                .field("account_sid", account_sid)
                .field("rest_user", rest_user)
                .field("rest_password", &"[redacted]")
                .finish(),
            Self::DryRun => f.write_str("DryRun"),
        }
    }
}

/// Settings that passed validation, with the checked values in their types.
#[derive(Debug, Clone)]
pub struct ValidSettings {
    pub settings: Settings,
    pub mode: Mode,
    pub public_base_url: Option<String>,
    pub workspace_sid: WorkspaceSid,
    pub workflow_sid: WorkflowSid,
    pub priority: Option<u32>,
    pub task_timeout_secs: Option<u32>,
}

impl ValidSettings {
    pub fn account_sid(&self) -> Option<&AccountSid> {
        match &self.mode {
            Mode::Live { account_sid, .. } => Some(account_sid),
            Mode::DryRun => None,
        }
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.twilio.request_timeout_ms)
    }
}

fn required_sid(
    value: &Option<String>,
    key: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<String> {
    match value {
        Some(v) => Some(v.trim().to_owned()),
        None => {
            bad(key, "is required".into());
            None
        }
    }
}

fn parse_optional<T: std::str::FromStr>(
    value: &Option<String>,
    key: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<T> {
    let v = value.as_deref()?.trim();
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            bad(key, format!("`{v}` is not a whole number"));
            None
        }
    }
}

/// A base URL: http(s), a host, no path beyond `/`, no query. Returned without the trailing `/`.
fn check_base_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{raw}` must be http(s)://host[:port]"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{raw}` must be only scheme://host[:port], without a path or query"
        ));
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()))
}

fn empty_secret_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(empty_as_none(d)?.map(SecretString::from))
}

/// `task_attributes`: a JSON object, written as a string (keeps key case exactly).
fn json_object<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(serde::de::Error::custom(
            "flex.task_attributes must be a JSON object, e.g. '{\"team\":\"support\"}'",
        )),
        Err(e) => Err(serde::de::Error::custom(format!(
            "flex.task_attributes is not valid JSON: {e}"
        ))),
    }
}

/// `webhook_shared_keys`: a table `id = "secret"`, or a string `id1=secret1,id2=secret2`.
fn shared_keys<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Table(HashMap<String, String>),
        List(String),
    }
    let pairs: Vec<(String, String)> = match Raw::deserialize(d)? {
        Raw::Table(t) => t.into_iter().collect(),
        Raw::List(s) => parse_shared_key_list(&s).map_err(serde::de::Error::custom)?,
    };
    Ok(pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.trim().to_owned(), SecretString::from(v)))
        .collect())
}

fn parse_shared_key_list(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                Ok((id.trim().to_owned(), secret.to_owned()))
            }
            _ => Err(
                "twilio.webhook_shared_keys: expected `id1=secret1,id2=secret2` (an entry has no `=`)"
                    .to_owned(),
            ),
        })
        .collect()
}

/// For the CLI: the secret of a shared key, or of the auth token.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
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
        assert_eq!(valid.settings.server.port, 8080);
        assert_eq!(valid.settings.flex.task_channel, "chat");
        assert!(valid.settings.flex.remove_webhook_after_handoff);
        assert_eq!(valid.settings.flex.max_creates_per_second, 15);
        assert_eq!(valid.settings.store.retention_days, 30);
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
            ],
        )
        .unwrap()
        .validate()
        .unwrap();
        match &valid.mode {
            Mode::Live { rest_user, .. } => {
                assert_eq!(rest_user, "SK00000000000000000000000000000001")
            }
            Mode::DryRun => panic!("expected live mode"),
        }
        let debug = format!("{valid:?}");
        assert!(!debug.contains("tok-secret-1"), "{debug}");
        assert!(!debug.contains("api-secret-2"), "{debug}");
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
        assert_eq!(ok.public_base_url.as_deref(), Some("https://x.fly.dev"));
    }
}

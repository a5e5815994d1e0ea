//! `[twilio]`: the account, its credentials, webhook keys and Twilio's base URLs. This is
//! all a command that only talks to Twilio needs.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::accounts::Keys;
use super::de::{empty_as_none, empty_secret_as_none, shared_keys};
use super::problems::Problems;
use super::server::check_base_url;
use super::Environment;
use crate::domain::AccountSid;

/// `config/local.toml`'s auth token: public, so only for dry-run (a test checks the file).
pub(super) const DEVELOPMENT_TOKEN: &str = "local-development-token-not-secret";

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

/// Twilio's REST APIs that flexhook calls: the one list. A new API is a variant here, its
/// `*_api_base_url` field in [`TwilioSettings`], and its default in `config/default.toml`;
/// validation, the client and the metrics' `api` label all follow from this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Flex,
    Conversations,
    TaskRouter,
}

impl Api {
    pub const ALL: [Api; 3] = [Self::Flex, Self::Conversations, Self::TaskRouter];

    /// The `api` label of `flexhook_twilio_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Conversations => "conversations",
            Self::TaskRouter => "taskrouter",
        }
    }

    /// The setting that holds this API's base URL.
    pub fn key(self) -> &'static str {
        match self {
            Self::Flex => "twilio.flex_api_base_url",
            Self::Conversations => "twilio.conversations_api_base_url",
            Self::TaskRouter => "twilio.taskrouter_api_base_url",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Each [`Api`]'s base URL (`scheme://host[:port]`, no trailing `/`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrls([String; Api::ALL.len()]);

impl BaseUrls {
    pub fn get(&self, api: Api) -> &str {
        &self.0[api.index()]
    }
}

/// An API key (SK…) and its secret, for REST calls.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub sid: String,
    pub secret: SecretString,
}

/// `[twilio]`, checked. `Debug` never shows a secret.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `None`: dry-run (only `FLEXHOOK_ENV=local` may have no account).
    pub account_sid: Option<AccountSid>,
    pub auth_token: SecretString,
    pub secondary_auth_token: Option<SecretString>,
    pub api_key: Option<ApiKey>,
    pub webhook_shared_keys: BTreeMap<String, SecretString>,
    pub base_urls: BaseUrls,
    pub request_timeout: Duration,
}

impl TwilioConfig {
    pub fn is_dry_run(&self) -> bool {
        self.account_sid.is_none()
    }
}

impl TwilioSettings {
    /// The base URL of `api` as set.
    fn base_url(&self, api: Api) -> &str {
        match api {
            Api::Flex => &self.flex_api_base_url,
            Api::Conversations => &self.conversations_api_base_url,
            Api::TaskRouter => &self.taskrouter_api_base_url,
        }
    }

    pub(super) fn validate(
        &self,
        environment: &Environment,
        p: &mut Problems,
    ) -> Option<TwilioConfig> {
        self.validate_at(environment, &Keys::FLAT, p)
    }

    /// Checked, each problem named by `keys` (`twilio.*`, or an `[accounts.NAME]` table's).
    pub(super) fn validate_at(
        &self,
        environment: &Environment,
        keys: &Keys,
        p: &mut Problems,
    ) -> Option<TwilioConfig> {
        let before = p.count();
        let account_sid = match &self.account_sid {
            Some(s) => p.check(&keys.twilio("account_sid"), AccountSid::parse(s)),
            None => {
                if keys.is_named() {
                    p.add(
                        &keys.twilio("account_sid"),
                        "is required: it is how a webhook finds its account",
                    );
                } else if *environment != Environment::Local {
                    p.add(
                        "twilio.account_sid",
                        format!(
                            "is required with FLEXHOOK_ENV={} (only `local` may dry-run)",
                            environment.name()
                        ),
                    );
                }
                None
            }
        };
        if self.auth_token.is_none() {
            p.add(
                &keys.twilio("auth_token"),
                "is required: it checks the signature of every webhook, and flexhook never runs unprotected",
            );
        }
        if self.account_sid.is_some() {
            self.refuse_development_token(keys, p);
        }
        let api_key = match (&self.api_key, &self.api_secret) {
            (Some(k), Some(_)) if !k.starts_with("SK") => {
                p.add(
                    &keys.twilio("api_key"),
                    format!("`{k}` is not an API key SID (SK…)"),
                );
                None
            }
            (Some(k), Some(secret)) => Some(ApiKey {
                sid: k.clone(),
                secret: secret.clone(),
            }),
            (Some(_), None) => {
                p.add(
                    &keys.twilio("api_secret"),
                    format!("is required when {} is set", keys.twilio("api_key")),
                );
                None
            }
            (None, Some(_)) => {
                p.add(
                    &keys.twilio("api_key"),
                    format!("is required when {} is set", keys.twilio("api_secret")),
                );
                None
            }
            (None, None) => None,
        };
        let base_urls = Api::ALL.map(|api| p.check(api.key(), check_base_url(self.base_url(api))));
        if self.request_timeout_ms == 0 {
            p.add("twilio.request_timeout_ms", "must be more than 0");
        }
        for id in self.webhook_shared_keys.keys() {
            if id.trim().is_empty() || id.contains(',') || id.contains('=') {
                p.add(
                    &keys.twilio("webhook_shared_keys"),
                    format!("`{id}` is not a usable key id"),
                );
            }
        }
        if p.count() != before {
            return None;
        }
        Some(TwilioConfig {
            account_sid,
            auth_token: self.auth_token.clone()?,
            secondary_auth_token: self.secondary_auth_token.clone(),
            api_key,
            webhook_shared_keys: self.webhook_shared_keys.clone(),
            base_urls: BaseUrls(base_urls.map(Option::unwrap_or_default)),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        })
    }

    /// With an account, webhooks are real: a token anyone can read would let anyone sign one.
    fn refuse_development_token(&self, keys: &Keys, p: &mut Problems) {
        let is_development = |t: &Option<SecretString>| {
            t.as_ref()
                .is_some_and(|t| t.expose_secret() == DEVELOPMENT_TOKEN)
        };
        if is_development(&self.auth_token) {
            p.add(
                &keys.twilio("auth_token"),
                "is config/local.toml's development token, which is public and only for dry-run; \
                 with twilio.account_sid set, set TWILIO_AUTH_TOKEN to the account's auth token \
                 (Twilio Console, Account info)",
            );
        }
        if is_development(&self.secondary_auth_token) {
            p.add(
                &keys.twilio("secondary_auth_token"),
                "is config/local.toml's development token, which is public and only for dry-run; \
                 set it to the account's other auth token during a rotation, or leave it empty",
            );
        }
    }
}

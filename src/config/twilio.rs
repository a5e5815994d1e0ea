//! `[twilio]`: the account, its credentials, webhook keys and Twilio's base URLs. This is
//! all a command that only talks to Twilio needs.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::de::{empty_as_none, empty_secret_as_none, shared_keys};
use super::problems::Problems;
use super::server::check_base_url;
use super::Environment;
use crate::domain::AccountSid;

/// `config/local.toml`'s auth token: public, so only for dry-run (a test checks the file).
const DEVELOPMENT_TOKEN: &str = "local-development-token-not-secret";

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
    pub flex_api_base_url: String,
    pub conversations_api_base_url: String,
    pub taskrouter_api_base_url: String,
    pub request_timeout: Duration,
}

impl TwilioConfig {
    pub fn is_dry_run(&self) -> bool {
        self.account_sid.is_none()
    }
}

impl TwilioSettings {
    pub(super) fn validate(
        &self,
        environment: &Environment,
        p: &mut Problems,
    ) -> Option<TwilioConfig> {
        let before = p.count();
        let account_sid = match &self.account_sid {
            Some(s) => p.check("twilio.account_sid", AccountSid::parse(s)),
            None => {
                if *environment != Environment::Local {
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
                "twilio.auth_token",
                "is required: it checks the signature of every webhook, and flexhook never runs unprotected",
            );
        }
        if self.account_sid.is_some() {
            self.refuse_development_token(p);
        }
        let api_key = match (&self.api_key, &self.api_secret) {
            (Some(k), Some(_)) if !k.starts_with("SK") => {
                p.add(
                    "twilio.api_key",
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
                    "twilio.api_secret",
                    "is required when twilio.api_key is set",
                );
                None
            }
            (None, Some(_)) => {
                p.add(
                    "twilio.api_key",
                    "is required when twilio.api_secret is set",
                );
                None
            }
            (None, None) => None,
        };
        let mut base = |key: &str, url: &str| p.check(key, check_base_url(url));
        let flex_api_base_url = base("twilio.flex_api_base_url", &self.flex_api_base_url);
        let conversations_api_base_url = base(
            "twilio.conversations_api_base_url",
            &self.conversations_api_base_url,
        );
        let taskrouter_api_base_url = base(
            "twilio.taskrouter_api_base_url",
            &self.taskrouter_api_base_url,
        );
        if self.request_timeout_ms == 0 {
            p.add("twilio.request_timeout_ms", "must be more than 0");
        }
        for id in self.webhook_shared_keys.keys() {
            if id.trim().is_empty() || id.contains(',') || id.contains('=') {
                p.add(
                    "twilio.webhook_shared_keys",
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
            flex_api_base_url: flex_api_base_url?,
            conversations_api_base_url: conversations_api_base_url?,
            taskrouter_api_base_url: taskrouter_api_base_url?,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        })
    }

    /// With an account, webhooks are real: a token anyone can read would let anyone sign one.
    fn refuse_development_token(&self, p: &mut Problems) {
        let is_development = |t: &Option<SecretString>| {
            t.as_ref()
                .is_some_and(|t| t.expose_secret() == DEVELOPMENT_TOKEN)
        };
        if is_development(&self.auth_token) {
            p.add(
                "twilio.auth_token",
                "is config/local.toml's development token, which is public and only for dry-run; \
                 with twilio.account_sid set, set TWILIO_AUTH_TOKEN to the account's auth token \
                 (Twilio Console, Account info)",
            );
        }
        if is_development(&self.secondary_auth_token) {
            p.add(
                "twilio.secondary_auth_token",
                "is config/local.toml's development token, which is public and only for dry-run; \
                 set it to the account's other auth token during a rotation, or leave it empty",
            );
        }
    }
}

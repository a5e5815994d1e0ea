//! `[server]`: where flexhook listens, the URL Twilio signs, and its answer deadlines.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::de::{empty_as_none, empty_secret_as_none, optional_port};
use super::problems::Problems;

#[derive(Deserialize, Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    #[serde(deserialize_with = "empty_as_none")]
    pub public_base_url: Option<String>,
    /// The local ngrok agent's API, asked when `public_base_url` is `"ngrok"`.
    pub ngrok_api_url: String,
    pub trust_forwarded_headers: bool,
    pub max_body_bytes: usize,
    pub ack_timeout_ms: u64,
    pub shutdown_timeout_secs: u64,
    #[serde(deserialize_with = "empty_secret_as_none")]
    pub metrics_token: Option<SecretString>,
    #[serde(deserialize_with = "optional_port")]
    pub metrics_port: Option<u16>,
}

/// Shortest `server.metrics_token` accepted: a guessable token is no protection.
const MIN_METRICS_TOKEN_CHARS: usize = 16;

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// `scheme://host[:port]`, without a trailing `/`. `None` with `ngrok_api_url` set
    /// until start-up asks the agent.
    pub public_base_url: Option<String>,
    /// Set when `server.public_base_url = "ngrok"`: the agent to ask at start-up.
    pub ngrok_api_url: Option<String>,
    pub trust_forwarded_headers: bool,
    pub max_body_bytes: usize,
    /// How long a webhook may wait for its job to be committed.
    pub ack_timeout: Duration,
    /// In-flight webhooks and jobs share it on shutdown.
    pub shutdown_timeout: Duration,
    /// `GET /metrics` on the webhook port needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<SecretString>,
    /// `GET /metrics` is also served on this port of its own (0: any free port).
    pub metrics_port: Option<u16>,
}

impl ServerSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<ServerConfig> {
        let before = p.count();
        let ngrok = self.public_base_url.as_deref().map(str::trim) == Some(crate::ngrok::NGROK);
        let public_base_url = match &self.public_base_url {
            Some(_) if ngrok => None,
            Some(u) => p.check("server.public_base_url", check_base_url(u)),
            None => None,
        };
        let ngrok_api_url = if ngrok {
            p.check("server.ngrok_api_url", check_base_url(&self.ngrok_api_url))
        } else {
            None
        };
        if self.max_body_bytes < 1024 {
            p.add("server.max_body_bytes", "must be at least 1024");
        }
        if self.ack_timeout_ms == 0 || self.ack_timeout_ms >= 5000 {
            p.add(
                "server.ack_timeout_ms",
                "must be between 1 and 4999: Twilio gives up on a webhook after 5 seconds",
            );
        }
        if let Some(token) = &self.metrics_token {
            let token = token.expose_secret();
            if token.chars().count() < MIN_METRICS_TOKEN_CHARS
                || token.chars().any(char::is_whitespace)
            {
                p.add(
                    "server.metrics_token",
                    format!(
                        "must be at least {MIN_METRICS_TOKEN_CHARS} characters without spaces, \
                         e.g. the output of `openssl rand -hex 24`"
                    ),
                );
            }
        }
        if self.metrics_port.is_some_and(|m| m != 0 && m == self.port) {
            p.add(
                "server.metrics_port",
                format!(
                    "must differ from server.port ({}): metrics are kept off the webhook port",
                    self.port
                ),
            );
        }
        (p.count() == before).then(|| ServerConfig {
            host: self.host.clone(),
            port: self.port,
            public_base_url,
            ngrok_api_url,
            trust_forwarded_headers: self.trust_forwarded_headers,
            max_body_bytes: self.max_body_bytes,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            metrics_token: self.metrics_token.clone(),
            metrics_port: self.metrics_port,
        })
    }
}

/// A base URL: http(s), a host, no path beyond `/`, no query. Returned without the trailing `/`.
pub(super) fn check_base_url(raw: &str) -> Result<String, String> {
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

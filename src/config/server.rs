//! `[server]`: where flexhook listens, the URL Twilio signs, and its answer deadlines.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::de::{empty_as_none, empty_secret_as_none, optional_port};
use super::problems::Problems;
use super::Environment;

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
    pub client_request_timeout_ms: u64,
    pub client_body_timeout_ms: u64,
    pub client_disconnect_timeout_ms: u64,
    pub keep_alive_secs: u64,
    pub shutdown_timeout_secs: u64,
    #[serde(deserialize_with = "empty_secret_as_none")]
    pub metrics_token: Option<SecretString>,
    #[serde(deserialize_with = "optional_port")]
    pub metrics_port: Option<u16>,
}

/// How long a client may take, from `server.client_*_timeout_ms` and `server.keep_alive_secs`.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// The request line and headers must arrive within this (actix answers 408).
    pub request_head: Duration,
    /// A webhook's body must arrive within this once its head is in (flexhook answers 408).
    pub body: Duration,
    /// How long a connection being closed waits for the client to close it.
    pub disconnect: Duration,
    /// An idle keep-alive connection is closed after this; `None`: no keep-alive.
    pub keep_alive: Option<Duration>,
}

impl ClientTimeouts {
    /// How long, between two answers, a connection may keep flexhook waiting for its client:
    /// idle for `keep_alive`, then a request head, then the client's close after an answer
    /// that closes the connection. Longer, and the connection's watchdog shuts it.
    pub fn patience(&self) -> Duration {
        self.keep_alive.unwrap_or_default() + self.request_head + self.disconnect
    }
}

/// Longest client timeout accepted: a client that needs more is not Twilio.
const MAX_CLIENT_TIMEOUT_MS: u64 = 60_000;
/// Shortest timeout actix's own timers keep: it reads its clock every 500 ms, and a timer
/// whose deadline has already passed when it is set never fires.
const MIN_ACTIX_TIMEOUT_MS: u64 = 1000;
/// Longest `server.keep_alive_secs` accepted.
const MAX_KEEP_ALIVE_SECS: u64 = 300;

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
    /// The client timeouts, against slow-loris clients.
    pub client_timeouts: ClientTimeouts,
    /// In-flight webhooks and jobs share it on shutdown.
    pub shutdown_timeout: Duration,
    /// `GET /metrics` on the webhook port needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<SecretString>,
    /// `GET /metrics` is also served on this port of its own (0: any free port).
    pub metrics_port: Option<u16>,
}

/// The `server.public_base_url` that asks the local ngrok agent for the URL (`crate::ngrok`).
pub const NGROK: &str = "ngrok";

impl ServerSettings {
    /// Whether `public_base_url` is [`NGROK`]: the URL is the local agent's tunnel.
    pub fn wants_ngrok(&self) -> bool {
        self.public_base_url.as_deref().map(str::trim) == Some(NGROK)
    }

    pub(super) fn validate(
        &self,
        environment: &Environment,
        p: &mut Problems,
    ) -> Option<ServerConfig> {
        let before = p.count();
        let ngrok = self.wants_ngrok();
        let public_base_url = match &self.public_base_url {
            Some(_) if ngrok => None,
            Some(u) => p.check("server.public_base_url", check_base_url(u)),
            None => None,
        };
        if *environment == Environment::Production
            && self.public_base_url.is_none()
            && !self.trust_forwarded_headers
        {
            p.add(
                "server.public_base_url",
                "is required with FLEXHOOK_ENV=production: without it, the URL a signature is \
                 checked against is rebuilt from each request's Host header, which the client \
                 chooses. Set it to the https:// URL Twilio calls (fly.toml sets it), or, only \
                 behind a proxy that sets X-Forwarded-Proto and X-Forwarded-Host (or Forwarded) \
                 on every request, set server.trust_forwarded_headers = true \
                 (FLEXHOOK_SERVER__TRUST_FORWARDED_HEADERS)",
            );
        }
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
        for (key, ms, min) in [
            (
                "server.client_request_timeout_ms",
                self.client_request_timeout_ms,
                MIN_ACTIX_TIMEOUT_MS,
            ),
            (
                "server.client_body_timeout_ms",
                self.client_body_timeout_ms,
                1,
            ),
            (
                "server.client_disconnect_timeout_ms",
                self.client_disconnect_timeout_ms,
                MIN_ACTIX_TIMEOUT_MS,
            ),
        ] {
            if !(min..=MAX_CLIENT_TIMEOUT_MS).contains(&ms) {
                p.add(
                    key,
                    format!(
                        "must be between {min} and {MAX_CLIENT_TIMEOUT_MS} (milliseconds): \
                         without a limit, a client that sends slowly holds its connection open \
                         for ever"
                    ),
                );
            }
        }
        if self.keep_alive_secs > MAX_KEEP_ALIVE_SECS {
            p.add(
                "server.keep_alive_secs",
                format!("must be at most {MAX_KEEP_ALIVE_SECS} (0 turns keep-alive off)"),
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
            client_timeouts: ClientTimeouts {
                request_head: Duration::from_millis(self.client_request_timeout_ms),
                body: Duration::from_millis(self.client_body_timeout_ms),
                disconnect: Duration::from_millis(self.client_disconnect_timeout_ms),
                keep_alive: (self.keep_alive_secs > 0)
                    .then(|| Duration::from_secs(self.keep_alive_secs)),
            },
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

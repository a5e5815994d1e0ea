//! The one Twilio REST client, used by the worker and the CLI alike. It owns authentication
//! (auth token or API key), base URLs, timeouts, dry-run, and Twilio's error JSON.

mod conversations;
mod error;
mod interactions;
mod taskrouter;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Mode, ValidSettings};

pub use error::{ApiError, TwilioError};
pub use interactions::{CreatedInteraction, InteractionRequest};

#[derive(Clone)]
enum Auth {
    Basic {
        user: String,
        password: SecretString,
    },
    DryRun,
}

/// Talks to flex-api, conversations and taskrouter.
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    auth: Auth,
    flex_base: String,
    conversations_base: String,
    taskrouter_base: String,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("dry_run", &self.is_dry_run())
            .field("flex_base", &self.flex_base)
            .finish_non_exhaustive()
    }
}

/// A response that came back with a 2xx status.
struct Success {
    status: StatusCode,
    body: bytes::Bytes,
}

impl TwilioClient {
    pub fn from_settings(settings: &ValidSettings) -> anyhow::Result<Self> {
        let auth = match &settings.mode {
            Mode::Live {
                rest_user,
                rest_password,
                ..
            } => Auth::Basic {
                user: rest_user.clone(),
                password: rest_password.clone(),
            },
            Mode::DryRun => Auth::DryRun,
        };
        let timeout = settings.request_timeout();
        let http = reqwest::Client::builder()
            .user_agent(concat!("flexhook/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let t = &settings.settings.twilio;
        let trim = |s: &str| s.trim().trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            auth,
            flex_base: trim(&t.flex_api_base_url),
            conversations_base: trim(&t.conversations_api_base_url),
            taskrouter_base: trim(&t.taskrouter_api_base_url),
        })
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.auth, Auth::DryRun)
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.auth {
            Auth::Basic { user, password } => {
                builder.basic_auth(user, Some(password.expose_secret()))
            }
            Auth::DryRun => builder,
        }
    }

    /// Sends, and turns anything but a 2xx into a typed error.
    async fn send(&self, builder: RequestBuilder) -> Result<Success, TwilioError> {
        let response = builder.send().await.map_err(TwilioError::from_transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(TwilioError::from_transport)?;
        if status.is_success() {
            Ok(Success { status, body })
        } else {
            Err(TwilioError::Api(ApiError::from_response(
                status, &headers, &body,
            )))
        }
    }
}

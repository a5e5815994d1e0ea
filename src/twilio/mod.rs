//! The one Twilio REST client, used by the worker and the CLI alike. It owns authentication
//! (auth token or API key), base URLs, timeouts, dry-run, paging and Twilio's error JSON.
//! Every request goes through [`TwilioClient::send`], so an endpoint is one small function
//! (in `conversations.rs`, `interactions.rs`, `taskrouter.rs`, `addresses.rs`,
//! `flexflows.rs`) and dry-run is decided once.

mod addresses;
mod conversations;
mod error;
mod flexflows;
mod interactions;
pub mod reconcile;
mod taskrouter;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

pub use crate::config::Api;
use crate::config::{BaseUrls, TwilioConfig};

pub use addresses::{address_path, AddressChanges, AddressConfiguration, AutoCreation};
pub use conversations::WebhookRemoval;
pub use error::{ApiError, TwilioError, CREDENTIALS_HINT};
pub use flexflows::FlexFlow;
pub use interactions::{parse_created_interaction, CreatedInteraction, InteractionRequest};
pub use taskrouter::{parse_task_list, ListedTask};

/// Pages followed at most by one listing: a guard against a server that never ends.
const MAX_PAGES: usize = 1000;

/// How often a CLI call answered 429 is tried again, and the longest wait before each.
const CLI_RETRIES: u32 = 3;
const CLI_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How REST calls authenticate: as the account (auth token) or with an API key.
#[derive(Clone)]
enum Auth {
    Basic {
        user: String,
        password: SecretString,
    },
    /// `FLEXHOOK_ENV=local` without an account: log what would be sent, call nothing.
    DryRun,
}

impl Auth {
    fn from_config(config: &TwilioConfig) -> Self {
        match (&config.account_sid, &config.api_key) {
            (None, _) => Self::DryRun,
            (Some(_), Some(key)) => Self::Basic {
                user: key.sid.clone(),
                password: key.secret.clone(),
            },
            (Some(account), None) => Self::Basic {
                user: account.to_string(),
                password: config.auth_token.clone(),
            },
        }
    }
}

/// Told of every request the client sent, answered or not. The metrics implement it; the
/// client itself depends on nothing above it.
pub trait RequestObserver: Send + Sync {
    fn request(&self, api: Api, status: Option<u16>, code: Option<i64>, elapsed: Duration);
}

/// One request, before it is sent.
struct Request<'a> {
    api: Api,
    method: Method,
    /// A path under the API's base URL (`/v1/…`), or an absolute URL on that base.
    path: String,
    query: &'a [(&'a str, &'a str)],
    form: &'a [(&'a str, String)],
    /// What a dry-run logs besides the method and path (never a secret or full address).
    dry_run_detail: Option<String>,
}

impl<'a> Request<'a> {
    fn new(api: Api, method: Method, path: impl Into<String>) -> Self {
        Self {
            api,
            method,
            path: path.into(),
            query: &[],
            form: &[],
            dry_run_detail: None,
        }
    }
}

/// Talks to flex-api, conversations and taskrouter.
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    auth: Auth,
    bases: BaseUrls,
    /// 429s retried by [`TwilioClient::send`]: only for the CLI (the worker has its own
    /// retry policy, with the store's leases and the shared rate-limit budget).
    retries_on_429: u32,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("dry_run", &self.is_dry_run())
            .field("flex_base", &self.bases.get(Api::Flex))
            .finish_non_exhaustive()
    }
}

/// A response that came back with a 2xx status.
struct Success {
    status: StatusCode,
    body: bytes::Bytes,
}

impl Success {
    fn json<T: DeserializeOwned>(&self) -> Result<T, TwilioError> {
        serde_json::from_slice(&self.body).map_err(|e| TwilioError::Decode {
            status: self.status.as_u16(),
            message: e.to_string(),
        })
    }
}

impl TwilioClient {
    pub fn new(config: &TwilioConfig) -> anyhow::Result<Self> {
        let timeout = config.request_timeout;
        let http = reqwest::Client::builder()
            .user_agent(concat!("flexhook/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            auth: Auth::from_config(config),
            bases: config.base_urls.clone(),
            retries_on_429: 0,
            observer: None,
        })
    }

    /// Reports every request (its API, status, Twilio error code and latency) to
    /// `observer`: the service's metrics.
    pub fn observed_by(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// For a CLI command: a 429 is tried again up to 3 times, waiting what `Retry-After`
    /// asks (at most 5 s), else a growing backoff. A 429 was never processed, so it is safe.
    pub fn with_cli_retries(mut self) -> Self {
        self.retries_on_429 = CLI_RETRIES;
        self
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.auth, Auth::DryRun)
    }

    fn base(&self, api: Api) -> &str {
        self.bases.get(api)
    }

    /// The one place a request is sent. In dry-run it is logged and answered `200 {}`;
    /// otherwise anything but a 2xx becomes a typed error. A CLI client tries a 429 again.
    async fn send(&self, request: Request<'_>) -> Result<Success, TwilioError> {
        let mut attempt = 0;
        loop {
            match self.send_once(&request).await {
                Err(TwilioError::Api(a)) if a.status == 429 && attempt < self.retries_on_429 => {
                    let backoff = a
                        .retry_after
                        .unwrap_or(Duration::from_millis(250) * 2u32.pow(attempt))
                        .min(CLI_MAX_BACKOFF);
                    tracing::info!(?backoff, "Twilio answered 429: trying again");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, request: &Request<'_>) -> Result<Success, TwilioError> {
        let base = self.base(request.api);
        let url = if request.path.starts_with(base) {
            request.path.clone()
        } else {
            format!("{base}{}", request.path)
        };
        let (user, password) = match &self.auth {
            Auth::DryRun => {
                let path = url.strip_prefix(base).unwrap_or(&url);
                tracing::info!(
                    detail = request.dry_run_detail.as_deref(),
                    "dry-run: would {} {path}",
                    request.method
                );
                return Ok(Success {
                    status: StatusCode::OK,
                    body: bytes::Bytes::from_static(b"{}"),
                });
            }
            Auth::Basic { user, password } => (user, password),
        };
        let mut builder = self
            .http
            .request(request.method.clone(), &url)
            .basic_auth(user, Some(password.expose_secret()));
        if !request.query.is_empty() {
            builder = builder.query(request.query);
        }
        if !request.form.is_empty() {
            builder = builder.form(request.form);
        }
        let started = Instant::now();
        let answered = exchange(builder).await;
        let (status, code) = match &answered {
            Ok(success) => (Some(success.status.as_u16()), None),
            Err(e) => (e.status(), e.code()),
        };
        if let Some(observer) = &self.observer {
            observer.request(request.api, status, code, started.elapsed());
        }
        answered
    }

    /// `GET`, decoded as `T`.
    async fn get_json<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, TwilioError> {
        let mut request = Request::new(api, Method::GET, path);
        request.query = query;
        self.send(request).await?.json()
    }

    /// Every item of a list resource, following `meta.next_page_url` to the end. `key` is
    /// the list's field (`tasks`, `address_configurations`, …). Only pages on the same API
    /// are followed, so credentials never go elsewhere.
    pub(crate) async fn list_all<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        query: &[(&str, &str)],
        key: &str,
    ) -> Result<Vec<T>, TwilioError> {
        let mut items = Vec::new();
        let mut page: serde_json::Value = self.get_json(api, path, query).await?;
        for _ in 0..MAX_PAGES {
            items.extend(page_items(&mut page, key)?);
            let Some(next) = next_page_url(&page) else {
                return Ok(items);
            };
            if !next.starts_with(self.base(api)) {
                return Err(TwilioError::Decode {
                    status: 200,
                    message: format!(
                        "next_page_url {next} is not on {}: not followed",
                        self.base(api)
                    ),
                });
            }
            page = self.get_json(api, &next, &[]).await?;
        }
        Err(TwilioError::Decode {
            status: 200,
            message: format!("more than {MAX_PAGES} pages of `{key}`"),
        })
    }
}

/// Sends a built request and reads its whole answer: a 2xx, or a typed error.
async fn exchange(builder: reqwest::RequestBuilder) -> Result<Success, TwilioError> {
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

/// The items of one page of a list resource, under `key`; a page without it has none.
fn page_items<T: DeserializeOwned>(
    page: &mut serde_json::Value,
    key: &str,
) -> Result<Vec<T>, TwilioError> {
    match page.get_mut(key).map(serde_json::Value::take) {
        Some(list) => serde_json::from_value(list).map_err(|e| TwilioError::Decode {
            status: 200,
            message: format!("`{key}`: {e}"),
        }),
        None => Ok(Vec::new()),
    }
}

/// `meta.next_page_url`, when there is a next page.
fn next_page_url(page: &serde_json::Value) -> Option<String> {
    page.pointer("/meta/next_page_url")
        .and_then(serde_json::Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    fn client(base: &str, account: Option<&str>) -> TwilioClient {
        let settings = crate::config::Settings::load(&crate::config::LoadOptions {
            environment: Some("local".into()),
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            read_env: false,
            overrides: [
                ("twilio.taskrouter_api_base_url", base),
                ("twilio.account_sid", account.unwrap_or("")),
                // Not local.toml's development token: an account refuses it.
                ("twilio.auth_token", "twilio-client-test-token"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        })
        .unwrap();
        TwilioClient::new(&settings.twilio().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_listing_follows_next_page_url_to_the_end() {
        let server = MockServer::start().await;
        let page = |n: u32, next: Option<String>| {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "tasks": [{"sid": format!("task-{n}a")}, {"sid": format!("task-{n}b")}],
                "meta": {"page": n, "next_page_url": next},
            }))
        };
        let next = |n: u32| {
            Some(format!(
                "{}/v1/Workspaces/WS1/Tasks?PageSize=2&Page={n}",
                server.uri()
            ))
        };
        Mock::given(method("GET"))
            .and(path("/v1/Workspaces/WS1/Tasks"))
            .and(query_param("Page", "1"))
            .respond_with(page(1, next(2)))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/Workspaces/WS1/Tasks"))
            .and(query_param("Page", "2"))
            .respond_with(page(2, None))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/Workspaces/WS1/Tasks"))
            .and(query_param("PageSize", "2"))
            .respond_with(page(0, next(1)))
            .with_priority(10)
            .expect(1)
            .mount(&server)
            .await;

        let client = client(&server.uri(), Some("AC00000000000000000000000000000001"));
        #[derive(serde::Deserialize)]
        struct Task {
            sid: String,
        }
        let tasks: Vec<Task> = client
            .list_all(
                Api::TaskRouter,
                "/v1/Workspaces/WS1/Tasks",
                &[("PageSize", "2")],
                "tasks",
            )
            .await
            .unwrap();
        let sids: Vec<String> = tasks.into_iter().map(|t| t.sid).collect();
        assert_eq!(
            sids,
            ["task-0a", "task-0b", "task-1a", "task-1b", "task-2a", "task-2b"]
        );
        let sent = server.received_requests().await.unwrap();
        assert!(sent
            .iter()
            .all(|r| r.headers.get("authorization").is_some()));
    }

    #[tokio::test]
    async fn a_next_page_on_another_host_is_not_followed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "tasks": [],
                "meta": {"next_page_url": "https://attacker.example/v1/Workspaces/WS1/Tasks?Page=1"},
            })))
            .mount(&server)
            .await;
        let client = client(&server.uri(), Some("AC00000000000000000000000000000001"));
        let err = client
            .list_all::<serde_json::Value>(
                Api::TaskRouter,
                "/v1/Workspaces/WS1/Tasks",
                &[],
                "tasks",
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not followed"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    fn rate_limited() -> ResponseTemplate {
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "0")
            .set_body_json(serde_json::json!({"code": 20429, "message": "Too Many Requests"}))
    }

    #[tokio::test]
    async fn a_cli_client_tries_a_429_again_until_it_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(rate_limited())
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"tasks": []})),
            )
            .mount(&server)
            .await;
        let client =
            client(&server.uri(), Some("AC00000000000000000000000000000001")).with_cli_retries();
        let tasks: Vec<serde_json::Value> = client
            .list_all(Api::TaskRouter, "/v1/Workspaces/WS1/Tasks", &[], "tasks")
            .await
            .unwrap();
        assert!(tasks.is_empty());
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_cli_client_gives_up_after_three_retries_and_the_worker_never_retries() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(rate_limited())
            .mount(&server)
            .await;
        let plain = client(&server.uri(), Some("AC00000000000000000000000000000001"));
        let err = plain
            .get_json::<serde_json::Value>(Api::TaskRouter, "/v1/Workspaces/WS1", &[])
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(429));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        let err = plain
            .with_cli_retries()
            .get_json::<serde_json::Value>(Api::TaskRouter, "/v1/Workspaces/WS1", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(20429));
        assert_eq!(server.received_requests().await.unwrap().len(), 1 + 4);
    }

    #[tokio::test]
    async fn dry_run_sends_nothing_and_answers_an_empty_object() {
        let server = MockServer::start().await;
        let client = client(&server.uri(), None);
        assert!(client.is_dry_run());
        let tasks: Vec<serde_json::Value> = client
            .list_all(Api::TaskRouter, "/v1/Workspaces/WS1/Tasks", &[], "tasks")
            .await
            .unwrap();
        assert!(tasks.is_empty());
        assert!(server.received_requests().await.unwrap().is_empty());
    }
}

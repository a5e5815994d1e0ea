//! The one way a test sends a webhook as Twilio would: [`SignedPost`], to the in-process
//! app ([`TestApp::post_signed`]), to a real `flexhook serve` ([`Served::post_signed`]) or
//! to any base URL ([`SignedPost::new`]); [`signature`] for the raw-TCP tests that write
//! the header themselves.

use std::time::Duration;

use flexhook::signature::{compute_signature, Algorithm};

use super::app::TestApp;
use super::binary::Served;
use super::{PATH, TOKEN};

/// `X-Twilio-Signature` for a form over `url`, as Twilio computes it with `token`.
pub fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    compute_signature(token.as_bytes(), Algorithm::HmacSha1, url, params)
}

/// What a webhook request carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// `application/x-www-form-urlencoded`: the signature covers the URL and these parameters.
    Form(Vec<(String, String)>),
    /// `application/json`: the URL's `bodySHA256` vouches for these exact bytes, and the
    /// signature covers the URL.
    Json(String),
    /// Any other content type, sent as is; signed like an empty form.
    Raw {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

impl From<Vec<(String, String)>> for Body {
    fn from(params: Vec<(String, String)>) -> Self {
        Self::Form(params)
    }
}

impl From<&Vec<(String, String)>> for Body {
    fn from(params: &Vec<(String, String)>) -> Self {
        Self::Form(params.clone())
    }
}

impl From<&[(String, String)]> for Body {
    fn from(params: &[(String, String)]) -> Self {
        Self::Form(params.to_vec())
    }
}

impl From<serde_json::Value> for Body {
    fn from(json: serde_json::Value) -> Self {
        Self::Json(json.to_string())
    }
}

/// Who signs a webhook request.
#[derive(Debug, Clone)]
enum Signer {
    /// `X-Twilio-Signature`: HMAC-SHA1 with an auth token.
    Token(String),
    /// A SharedKey: its secret signs, `X-Twilio-Webhooks-Signature-Settings` names it.
    SharedKey {
        id: String,
        secret: String,
        algorithm: Algorithm,
    },
    /// This exact `X-Twilio-Signature`, whatever the request.
    Literal(String),
    /// No `X-Twilio-Signature` at all.
    Nobody,
}

/// A webhook request as Twilio would send it: `POST /webhooks/conversations`, signed with
/// [`TOKEN`] over the URL it goes to. Each test changes only what it is about.
#[must_use = "a request does nothing until it is sent"]
pub struct SignedPost {
    client: reqwest::Client,
    base: String,
    timeout: Option<Duration>,
    body: Body,
    sent: Option<Body>,
    signer: Signer,
    called_at: Option<String>,
    headers: Vec<(String, String)>,
    path: String,
}

impl TestApp {
    /// `body` to this app's webhook, signed as Twilio signs it; change it with the
    /// [`SignedPost`] methods, then [`SignedPost::send`] it.
    pub fn post_signed(&self, body: impl Into<Body>) -> SignedPost {
        SignedPost::new(&self.client, &self.address, body)
    }

    /// A form, signed with [`TOKEN`], sent: the shorthand for
    /// `post_signed(params).send()`.
    pub async fn post_form(&self, params: &[(String, String)]) -> reqwest::Response {
        self.post_signed(params).send().await
    }
}

impl Served {
    /// `body` to this process's webhook, signed as Twilio signs it.
    pub fn post_signed(&self, body: impl Into<Body>) -> SignedPost {
        SignedPost::new(&self.client, &self.address(), body)
    }
}

impl SignedPost {
    /// `body` to `base` (`http://host:port`) + `/webhooks/conversations`, with `client`.
    pub fn new(client: &reqwest::Client, base: &str, body: impl Into<Body>) -> Self {
        Self {
            client: client.clone(),
            base: base.trim_end_matches('/').to_owned(),
            timeout: None,
            body: body.into(),
            sent: None,
            signer: Signer::Token(TOKEN.to_owned()),
            called_at: None,
            headers: Vec::new(),
            path: PATH.to_owned(),
        }
    }

    /// Gives up after `timeout` (a [`SignedPost::try_send`] then errs).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Signed with this auth token instead of [`TOKEN`].
    pub fn signed_with_token(mut self, token: &str) -> Self {
        self.signer = Signer::Token(token.to_owned());
        self
    }

    /// Signed with a webhook SharedKey, named in `X-Twilio-Webhooks-Signature-Settings`.
    pub fn signed_with_shared_key(mut self, id: &str, secret: &str, algorithm: Algorithm) -> Self {
        self.signer = Signer::SharedKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
            algorithm,
        };
        self
    }

    /// Carries this `X-Twilio-Signature` as is.
    pub fn with_signature(mut self, signature: &str) -> Self {
        self.signer = Signer::Literal(signature.to_owned());
        self
    }

    /// Carries no `X-Twilio-Signature`.
    pub fn unsigned(mut self) -> Self {
        self.signer = Signer::Nobody;
        self
    }

    /// Twilio called `base` (`https://host[:port]`, a proxy's or a tunnel's), so the
    /// signature covers `base` + the path and query, not the URL the app listens on.
    pub fn called_at(mut self, base: &str) -> Self {
        self.called_at = Some(base.trim_end_matches('/').to_owned());
        self
    }

    /// To this route instead of `/webhooks/conversations`.
    pub fn to(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Signed for the body it was made with, but `body` is what is sent
    /// (with the same URL, `bodySHA256` included), as if changed on the way.
    pub fn tampered(mut self, body: impl Into<Body>) -> Self {
        self.sent = Some(body.into());
        self
    }

    /// Sends it; the test fails if no answer comes.
    pub async fn send(self) -> reqwest::Response {
        self.try_send().await.unwrap()
    }

    /// Sends it; an error when no answer came (refused, reset, timed out), as Twilio
    /// would see it.
    pub async fn try_send(self) -> reqwest::Result<reqwest::Response> {
        let query = match &self.body {
            Body::Json(json) => format!(
                "?bodySHA256={}",
                flexhook::signature::body_sha256(json.as_bytes())
            ),
            Body::Form(_) | Body::Raw { .. } => String::new(),
        };
        let url = format!("{}{}{query}", self.base, self.path);
        let signed_url = match &self.called_at {
            Some(base) => format!("{base}{}{query}", self.path),
            None => url.clone(),
        };
        let signed_params: &[(String, String)] = match &self.body {
            Body::Form(params) => params,
            Body::Json(_) | Body::Raw { .. } => &[],
        };
        let sign = |key: &str, algorithm| {
            compute_signature(key.as_bytes(), algorithm, &signed_url, signed_params)
        };
        let mut request = self.client.post(&url);
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        match &self.signer {
            Signer::Token(token) => {
                request = request.header("X-Twilio-Signature", sign(token, Algorithm::HmacSha1));
            }
            Signer::SharedKey {
                id,
                secret,
                algorithm,
            } => {
                request = request
                    .header("X-Twilio-Signature", sign(secret, *algorithm))
                    .header(
                        "X-Twilio-Webhooks-Signature-Settings",
                        format!("key={id},algorithm={}", algorithm.name()),
                    );
            }
            Signer::Literal(signature) => {
                request = request.header("X-Twilio-Signature", signature);
            }
            Signer::Nobody => {}
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request = match self.sent.unwrap_or(self.body) {
            Body::Form(params) => request.form(&params),
            Body::Json(json) => request
                .header("content-type", "application/json")
                .body(json),
            Body::Raw {
                content_type,
                bytes,
            } => request.header("content-type", content_type).body(bytes),
        };
        request.send().await
    }
}

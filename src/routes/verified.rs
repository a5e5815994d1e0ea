//! The verified-webhook extractor: any route that takes a [`VerifiedWebhook`] argument gets
//! a payload whose `X-Twilio-Signature` checked out, or the request is refused (and the
//! refusal logged with a hint) before the handler runs. Body kind, form parsing, the URL
//! Twilio signed, and the account check all happen here, once for every webhook route.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{dev, web, FromRequest, HttpRequest, ResponseError};

use super::error::WebhookError;
use super::request_url::seen_url;
use super::state::{AppState, WebhookAuth};
use crate::domain::AccountSid;
use crate::signature::{self, Payload, SignatureError, SignedRequest, Verified};

/// A webhook whose signature checked out.
pub struct VerifiedWebhook {
    pub payload: Verified<Payload>,
    /// `I-Twilio-Idempotency-Token`: the same for every retry of one delivery.
    pub idempotency_token: Option<String>,
    /// `?address=` on the URL (`flexhook address connect` sets it; the signature covers
    /// it): the address the customer wrote to.
    pub address: Option<String>,
    /// The account this service serves; `None` in dry-run.
    account_sid: Option<AccountSid>,
}

impl VerifiedWebhook {
    /// Refuses an event from another account than `twilio.account_sid` (dry-run takes any).
    pub fn check_account(&self, event_account: &AccountSid) -> Result<(), WebhookError> {
        match &self.account_sid {
            Some(ours) if ours != event_account => {
                tracing::warn!(account = %event_account, "webhook refused: AccountSid is not twilio.account_sid");
                Err(WebhookError::WrongAccount)
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum BodyKind {
    Form,
    Json,
}

pub(crate) fn body_kind(req: &HttpRequest) -> Option<BodyKind> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        "application/json" => Some(BodyKind::Json),
        _ => None,
    }
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

impl FromRequest for VerifiedWebhook {
    type Error = WebhookError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let kind = body_kind(&req).ok_or(WebhookError::UnsupportedMediaType)?;
            let body = body.await.map_err(|e| {
                if e.as_response_error().status_code() == WebhookError::TooLarge.status_code() {
                    WebhookError::TooLarge
                } else {
                    WebhookError::UnreadableBody
                }
            })?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .expect("AppState is registered with the app");
            verify(&req, &body, kind, &state.webhook_auth)
        })
    }
}

/// Everything a webhook route checks once the body is read: the URL Twilio signed, the
/// signature over it and the payload, with a logged hint on refusal. `fuzzing` drives it
/// with arbitrary requests.
pub(crate) fn verify(
    req: &HttpRequest,
    body: &[u8],
    kind: BodyKind,
    auth: &WebhookAuth,
) -> Result<VerifiedWebhook, WebhookError> {
    let payload = match kind {
        BodyKind::Form => Payload::form(body),
        BodyKind::Json => Payload::Json(body.to_vec()),
    };
    let seen = seen_url(
        req,
        auth.public_base_url.as_deref(),
        auth.trust_forwarded_headers,
    );
    let signed = SignedRequest {
        urls: vec![seen.url.clone()],
        signature: header_str(req, signature::SIGNATURE_HEADER),
        settings: header_str(req, signature::SETTINGS_HEADER),
    };
    let verified = auth.verifier.verify(&signed, payload).map_err(|e| {
        match &e {
            SignatureError::Mismatch { tried } => {
                let tried: Vec<String> = tried.iter().map(|u| signature::loggable_url(u)).collect();
                tracing::warn!(
                    path = req.path(),
                    urls_tried = ?tried,
                    hint = %seen.hint(),
                    "webhook refused: X-Twilio-Signature does not match"
                );
            }
            SignatureError::UnknownKey { id } => tracing::warn!(
                key = %id,
                "webhook refused: SharedKey id not in twilio.webhook_shared_keys"
            ),
            SignatureError::UnknownAlgorithm { algorithm } => tracing::warn!(
                %algorithm,
                "webhook refused: unknown algorithm in X-Twilio-Webhooks-Signature-Settings"
            ),
            other => tracing::warn!(reason = %other, path = req.path(), "webhook refused"),
        }
        WebhookError::from(e)
    })?;
    Ok(VerifiedWebhook {
        payload: verified,
        idempotency_token: header_str(req, "I-Twilio-Idempotency-Token").map(str::to_owned),
        address: form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "address")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.trim().is_empty()),
        account_sid: auth.account_sid.clone(),
    })
}

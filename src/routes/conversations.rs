//! `POST /webhooks/conversations`: raw body + head → signature → event → decision → 200.
//! The answer goes back as soon as what matters is durable; Flex is called by the worker.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use tracing::Instrument;

use super::request_url::seen_url;
use crate::event::{self, Event, EventError};
use crate::intake::{Decision, IntakeError};
use crate::signature::{self, Payload, SignatureError, SignedRequest};
use crate::startup::AppState;

/// Every way a webhook is refused, each with its status and a short plain-text reason.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("AccountSid does not match this service's account")]
    WrongAccount,
    #[error(
        "unsupported content type: send application/x-www-form-urlencoded or application/json"
    )]
    UnsupportedMediaType,
    #[error("malformed webhook: {0}")]
    Malformed(#[from] EventError),
    #[error("temporarily unavailable, please retry")]
    Unavailable,
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Signature(_) | Self::WrongAccount => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

enum BodyKind {
    Form,
    Json,
}

fn body_kind(req: &HttpRequest) -> Option<BodyKind> {
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

pub async fn conversations_webhook(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebhookError> {
    let kind = body_kind(&req).ok_or(WebhookError::UnsupportedMediaType)?;
    let payload = match kind {
        BodyKind::Form => Payload::Form(
            form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ),
        BodyKind::Json => Payload::Json(body.to_vec()),
    };

    let seen = seen_url(
        &req,
        state.public_base_url.as_deref(),
        state.trust_forwarded_headers,
    );
    let signed = SignedRequest {
        urls: vec![seen.url.clone()],
        signature: header_str(&req, signature::SIGNATURE_HEADER),
        settings: header_str(&req, signature::SETTINGS_HEADER),
    };
    let verified = state.verifier.verify(&signed, payload).map_err(|e| {
        match &e {
            SignatureError::Mismatch { tried } => {
                let tried: Vec<String> = tried.iter().map(|u| signature::loggable_url(u)).collect();
                tracing::warn!(
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
            other => tracing::warn!(reason = %other, "webhook refused"),
        }
        WebhookError::from(e)
    })?;

    let event = event::parse(&verified).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: malformed payload");
        WebhookError::from(e)
    })?;
    if let Some(account) = &state.account_sid {
        if event.account_sid() != account {
            tracing::warn!(account = %event.account_sid(), "webhook refused: AccountSid is not twilio.account_sid");
            return Err(WebhookError::WrongAccount);
        }
    }

    let message = match event {
        Event::MessageAdded(m) => m,
        Event::Other { event_type, .. } => {
            tracing::debug!(%event_type, "event acknowledged, nothing to do");
            return Ok(HttpResponse::Ok().finish());
        }
    };
    let span = tracing::info_span!(
        "webhook",
        conversation = %message.conversation_sid,
        message_sid = message.message_sid.as_ref().map(|s| s.as_str()),
        retry_count = message.retry_count,
        idempotency_token = header_str(&req, "I-Twilio-Idempotency-Token"),
    );
    async move {
        match state.intake.accept(&message).await {
            Ok(Decision::NewJob) => {
                tracing::info!(
                    author = message.customer_address().map(|a| a.masked()),
                    "new conversation: job queued"
                );
                Ok(HttpResponse::Ok().finish())
            }
            Ok(Decision::Known) => Ok(HttpResponse::Ok().finish()),
            Err(e) => {
                match &e {
                    IntakeError::Timeout(_) => {
                        tracing::error!(error = %e, "webhook answered 503: the store is too slow")
                    }
                    IntakeError::Store(s) => {
                        tracing::error!(error = %s, "webhook answered 503: the job could not be stored")
                    }
                }
                Err(WebhookError::Unavailable)
            }
        }
    }
    .instrument(span)
    .await
}

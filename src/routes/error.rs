//! Every way a request is refused, each with its status and a short plain-text reason.
//! The one home of flexhook's HTTP errors: Twilio sees these texts, so they name the
//! problem and never an internal detail.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::event::EventError;
use crate::metrics::EventLabel;
use crate::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("AccountSid does not match this service's account")]
    WrongAccount,
    #[error("WorkspaceSid does not match this service's workspace")]
    WrongWorkspace,
    #[error(
        "unsupported content type: send application/x-www-form-urlencoded or application/json"
    )]
    UnsupportedMediaType,
    #[error("content encoding not supported: send the body uncompressed")]
    UnsupportedEncoding,
    #[error("body larger than server.max_body_bytes")]
    TooLarge,
    #[error("body not received within server.client_body_timeout_ms")]
    BodyTimeout,
    #[error("could not read the body")]
    UnreadableBody,
    #[error("malformed form body: not percent-encoded UTF-8")]
    MalformedForm,
    #[error("malformed webhook: {0}")]
    Malformed(#[from] EventError),
    #[error("?reengage= is not a task SID (WT…)")]
    BadEpisode,
    #[error("temporarily unavailable, please retry")]
    Unavailable,
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Signature(_) | Self::WrongAccount | Self::WrongWorkspace => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnreadableBody | Self::MalformedForm | Self::Malformed(_) | Self::BadEpisode => {
                StatusCode::BAD_REQUEST
            }
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// A refused webhook as its handler or extractor returns it: the refusal, and the event's
/// label once the event was read (else `unknown`). The webhook middleware counts it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Refused {
    pub event: EventLabel,
    pub error: WebhookError,
}

impl Refused {
    pub fn new(event: EventLabel, error: impl Into<WebhookError>) -> Self {
        Self {
            event,
            error: error.into(),
        }
    }
}

/// Refused before the event was read.
impl From<WebhookError> for Refused {
    fn from(error: WebhookError) -> Self {
        Self::new(EventLabel::UNKNOWN, error)
    }
}

impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.error.error_response()
    }
}

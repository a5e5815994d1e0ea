//! What every webhook answer gets, whatever the route and however it ends: a request id
//! (`X-Request-Id`: Twilio's `I-Twilio-Idempotency-Token` when present, so one id follows
//! a delivery across Twilio's retries and flexhook's logs), a `webhook` span carrying it on
//! every line the webhook logs, and one count and latency in the metrics. The handlers say
//! which event it was and how it ended with [`seen`]; refusals are read from the
//! [`WebhookError`] they return.
//!
//! The span is opened where a webhook first has something to log ([`span`]), not for every
//! request: a later message of a known conversation, the hot path, logs nothing, and a span
//! opened, entered and closed for each of those was about a twentieth of its CPU.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest};
use tracing::field::Empty;
use tracing::Span;

use super::error::WebhookError;
use super::state::AppState;
use crate::metrics::{EventLabel, WebhookOutcome};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
// A name, not a `&str`: a lookup by `&str` parses (and lowercases) it each time.
const IDEMPOTENCY_TOKEN: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");
/// A longer (or unprintable) token is not echoed: a fresh id replaces it.
const MAX_ID_LEN: usize = 128;

/// What the handler learnt: the event's type (a bounded label) and, for a 2xx, how it ended.
#[derive(Debug, Clone, Copy)]
struct Seen {
    event: EventLabel,
    outcome: Option<WebhookOutcome>,
}

/// Kept in the request while it is handled: its span (once opened) and what it is opened
/// with, and what the handler saw.
struct Observed {
    route: &'static str,
    id: HeaderValue,
    span: Option<Span>,
    seen: Option<Seen>,
}

/// Tells the middleware the event's type (`crate::metrics::event_label`) and, once
/// answered 2xx, its outcome; call it again to add the outcome.
pub fn seen(req: &HttpRequest, event: EventLabel, outcome: Option<WebhookOutcome>) {
    if let Some(observed) = req.extensions_mut().get_mut::<Observed>() {
        observed.seen = Some(Seen { event, outcome });
    }
}

/// The request's `webhook` span, opened on the first call: its route and its request id (the
/// answer's `X-Request-Id`), and the fields a handler records into it as it learns them
/// (`event_type`, `conversation`, `message_sid`, `retry_count`, `task`). Enter it (or
/// instrument with it) before logging. It closes once the request is answered. A request
/// the middleware did not see has none.
pub fn span(req: &HttpRequest) -> Span {
    let mut extensions = req.extensions_mut();
    let Some(observed) = extensions.get_mut::<Observed>() else {
        return Span::none();
    };
    let (route, id) = (observed.route, &observed.id);
    observed
        .span
        .get_or_insert_with(|| {
            tracing::info_span!(
                "webhook",
                route,
                request_id = %id.to_str().unwrap_or_default(),
                event_type = Empty,
                conversation = Empty,
                message_sid = Empty,
                retry_count = Empty,
                task = Empty,
            )
        })
        .clone()
}

/// The webhook middleware (`actix_web::middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let route = route_label(req.path());
    let id = request_id(req.headers());
    req.extensions_mut().insert(Observed {
        route,
        id,
        span: None,
        seen: None,
    });
    // The app's state (one reference count), for its metrics once answered.
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let answered = next.call(req).await;
    let mut res = match answered {
        Ok(res) => res,
        Err(e) => {
            if let Some(state) = state {
                let outcome = refusal(&e).unwrap_or(WebhookOutcome::BadRequest);
                state
                    .metrics
                    .webhook(route, EventLabel::UNKNOWN, outcome, started.elapsed());
            }
            return Err(e);
        }
    };
    let observed = res.request().extensions_mut().remove::<Observed>();
    let seen = observed.as_ref().and_then(|o| o.seen);
    let outcome = res
        .response()
        .error()
        .and_then(refusal)
        .or(seen.and_then(|s| s.outcome))
        .unwrap_or_else(|| by_status(res.status().as_u16()));
    if let Some(observed) = observed {
        res.headers_mut().insert(REQUEST_ID, observed.id);
    }
    if let Some(state) = state {
        let event = seen.map_or(EventLabel::UNKNOWN, |s| s.event);
        state
            .metrics
            .webhook(route, event, outcome, started.elapsed());
    }
    Ok(res)
}

/// `conversations` or `taskrouter`: the last segment of the webhook's path.
fn route_label(path: &str) -> &'static str {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some("taskrouter") => "taskrouter",
        _ => "conversations",
    }
}

/// Twilio's idempotency token when it is a sane header value (then the request's own value,
/// not a copy), else a fresh random id.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(IDEMPOTENCY_TOKEN)
        .and_then(|raw| {
            // One pass over the bytes: printable ASCII is valid text as well.
            let token = raw.as_bytes().trim_ascii();
            let usable = !token.is_empty()
                && token.len() <= MAX_ID_LEN
                && token.iter().all(u8::is_ascii_graphic);
            match (usable, token.len() == raw.len()) {
                (false, _) => None,
                (true, true) => Some(raw.clone()),
                (true, false) => HeaderValue::from_bytes(token).ok(),
            }
        })
        .unwrap_or_else(fresh_id)
}

fn fresh_id() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A refused request's outcome, from the error its handler or extractor returned.
fn refusal(error: &Error) -> Option<WebhookOutcome> {
    let outcome = match error.as_error::<WebhookError>()? {
        WebhookError::Signature(_) => WebhookOutcome::BadSignature,
        WebhookError::WrongAccount | WebhookError::WrongWorkspace => WebhookOutcome::WrongAccount,
        WebhookError::TooLarge => WebhookOutcome::TooLarge,
        WebhookError::UnsupportedMediaType
        | WebhookError::UnsupportedEncoding
        | WebhookError::BodyTimeout
        | WebhookError::UnreadableBody
        | WebhookError::MalformedForm
        | WebhookError::Malformed(_) => WebhookOutcome::BadRequest,
        WebhookError::Unavailable => WebhookOutcome::StoreUnavailable,
    };
    Some(outcome)
}

/// An answer nobody labelled (e.g. actix's own 405 for a GET): by its status.
fn by_status(status: u16) -> WebhookOutcome {
    match status {
        200..=299 => WebhookOutcome::Ignored,
        413 => WebhookOutcome::TooLarge,
        500..=599 => WebhookOutcome::StoreUnavailable,
        _ => WebhookOutcome::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(IDEMPOTENCY_TOKEN, HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn the_request_id_is_twilios_idempotency_token_when_usable() {
        let token = "AC0123456789abcdef0123456789abcdef-1f2e3d4c5b6a";
        assert_eq!(request_id(&headers(Some(token))), token);
        assert_eq!(request_id(&headers(Some(&format!(" {token}\t")))), token);
        let fresh = request_id(&headers(None));
        let fresh = fresh.to_str().unwrap();
        assert_eq!(fresh.len(), 32);
        assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
        assert_ne!(fresh, request_id(&headers(None)), "ids are random");
        // Too long, with spaces or not printable: not echoed.
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_ne!(request_id(&headers(Some(&long))), long.as_str());
        assert_ne!(request_id(&headers(Some("a b"))), "a b");
        assert_eq!(request_id(&headers(Some("   "))).len(), 32);
    }

    #[test]
    fn a_request_has_one_span_opened_on_first_use_and_none_unobserved() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let unobserved = actix_web::test::TestRequest::default().to_http_request();
            assert!(span(&unobserved).is_none());

            let req = actix_web::test::TestRequest::default().to_http_request();
            req.extensions_mut().insert(Observed {
                route: "conversations",
                id: HeaderValue::from_static("id-1"),
                span: None,
                seen: None,
            });
            let first = span(&req);
            assert!(!first.is_none());
            // Every later line of the request joins the same span, with what it recorded.
            assert_eq!(span(&req).id(), first.id());
            seen(&req, EventLabel::UNKNOWN, Some(WebhookOutcome::Known));
            let observed = req.extensions_mut().remove::<Observed>().unwrap();
            assert_eq!(observed.span.and_then(|s| s.id()), first.id());
            assert!(matches!(
                observed.seen,
                Some(Seen {
                    outcome: Some(WebhookOutcome::Known),
                    ..
                })
            ));
        });
    }

    #[test]
    fn routes_and_unlabelled_answers_get_bounded_labels() {
        assert_eq!(route_label("/webhooks/taskrouter"), "taskrouter");
        assert_eq!(route_label("/webhooks/conversations"), "conversations");
        assert_eq!(by_status(405), WebhookOutcome::BadRequest);
        assert_eq!(by_status(503), WebhookOutcome::StoreUnavailable);
    }
}

//! What every webhook answer gets, whatever the route and however it ends: a request id
//! (`X-Request-Id`: Twilio's `I-Twilio-Idempotency-Token` when present, so one id follows
//! a delivery across Twilio's retries and flexhook's logs), a `webhook` span carrying it on
//! every line the webhook logs, and one count and latency in the metrics. A handler returns
//! which event it was and how it ended, as an [`Answered`] or a [`Refused`]; the middleware
//! reads them, and any other answer by its status.
//!
//! The span is opened where a webhook first has something to log ([`span`]), not for every
//! request: a later message of a known conversation, the hot path, logs nothing, and a span
//! opened, entered and closed for each of those was about a twentieth of its CPU.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest, HttpResponse, Responder};
use tracing::field::Empty;
use tracing::Span;

use super::error::{Refused, WebhookError};
use super::state::AppState;
use crate::domain::WebhookRoute;
use crate::metrics::{EventLabel, WebhookOutcome};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
// A name, not a `&str`: a lookup by `&str` parses (and lowercases) it each time.
const IDEMPOTENCY_TOKEN: HeaderName = HeaderName::from_static("i-twilio-idempotency-token");
/// A longer (or unprintable) token is not echoed: a fresh id replaces it.
const MAX_ID_LEN: usize = 128;

/// A webhook answered 200: its event's label (`crate::metrics::event_label`) and how it
/// ended. What a handler returns; the middleware counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub event: EventLabel,
    pub outcome: WebhookOutcome,
}

impl Responder for Answered {
    type Body = BoxBody;

    /// A bare 200, the answer kept in the request for the middleware.
    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        if let Some(observed) = req.extensions_mut().get_mut::<Observed>() {
            observed.answered = Some(self);
        }
        HttpResponse::new(StatusCode::OK)
    }
}

/// Kept in the request while it is handled: its route, its span (once opened) and what it
/// is opened with, and what the handler answered.
struct Observed {
    route: WebhookRoute,
    /// The configured account (its index) whose keys check the webhook, once picked.
    account: Option<usize>,
    id: HeaderValue,
    span: Option<Span>,
    answered: Option<Answered>,
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
    let (route, id) = (observed.route.label(), &observed.id);
    let account = observed.account;
    let state = req.app_data::<web::Data<AppState>>();
    let name = account
        .and_then(|a| state.and_then(|s| s.webhook_auth.accounts.get(a)))
        .map(|a| a.name.as_str());
    observed
        .span
        .get_or_insert_with(|| {
            tracing::info_span!(
                "webhook",
                route,
                account = name,
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

/// Notes the account (its index among the configured ones) whose keys check the request:
/// its metrics are counted under that account's name, and its span carries the name.
pub fn picked_account(req: &HttpRequest, account: usize, name: &str) {
    if let Some(observed) = req.extensions_mut().get_mut::<Observed>() {
        observed.account = Some(account);
        if let Some(span) = &observed.span {
            span.record("account", name);
        }
    }
}

/// The webhook middleware of `route` (`actix_web::middleware::from_fn`).
pub async fn observe(
    route: WebhookRoute,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = request_id(req.headers());
    req.extensions_mut().insert(Observed {
        route,
        account: None,
        id,
        span: None,
        answered: None,
    });
    // The app's state (one reference count), for its metrics once answered.
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let label = route.label();
    let answered = next.call(req).await;
    let mut res = match answered {
        Ok(res) => res,
        Err(e) => {
            if let Some(state) = state {
                let (event, outcome) =
                    refusal(&e).unwrap_or((EventLabel::UNKNOWN, WebhookOutcome::BadRequest));
                state
                    .metrics
                    .webhook(None, label, event, outcome, started.elapsed());
            }
            return Err(e);
        }
    };
    let observed = res.request().extensions_mut().remove::<Observed>();
    let (event, outcome) = res
        .response()
        .error()
        .and_then(refusal)
        .or(observed
            .as_ref()
            .and_then(|o| o.answered)
            .map(|a| (a.event, a.outcome)))
        .unwrap_or_else(|| (EventLabel::UNKNOWN, by_status(res.status().as_u16())));
    let account = observed.as_ref().and_then(|o| o.account);
    if let Some(observed) = observed {
        res.headers_mut().insert(REQUEST_ID, observed.id);
    }
    if let Some(state) = state {
        state
            .metrics
            .webhook(account, label, event, outcome, started.elapsed());
    }
    Ok(res)
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

/// A refused request's event and outcome, from the [`Refused`] its handler or extractor
/// returned.
fn refusal(error: &Error) -> Option<(EventLabel, WebhookOutcome)> {
    let refused = error.as_error::<Refused>()?;
    let outcome = match &refused.error {
        WebhookError::Signature(_) => WebhookOutcome::BadSignature,
        WebhookError::WrongAccount | WebhookError::WrongWorkspace => WebhookOutcome::WrongAccount,
        WebhookError::TooLarge => WebhookOutcome::TooLarge,
        WebhookError::UnsupportedMediaType
        | WebhookError::UnsupportedEncoding
        | WebhookError::BodyTimeout
        | WebhookError::UnreadableBody
        | WebhookError::MalformedForm
        | WebhookError::Malformed(_)
        | WebhookError::BadEpisode => WebhookOutcome::BadRequest,
        WebhookError::Unavailable => WebhookOutcome::StoreUnavailable,
    };
    Some((refused.event, outcome))
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
                route: WebhookRoute::Conversations,
                account: None,
                id: HeaderValue::from_static("id-1"),
                span: None,
                answered: None,
            });
            let first = span(&req);
            assert!(!first.is_none());
            // Every later line of the request joins the same span, with what it recorded.
            assert_eq!(span(&req).id(), first.id());
            let answered = Answered {
                event: EventLabel::UNKNOWN,
                outcome: WebhookOutcome::Known,
            };
            assert_eq!(answered.respond_to(&req).status(), StatusCode::OK);
            let observed = req.extensions_mut().remove::<Observed>().unwrap();
            assert_eq!(observed.span.and_then(|s| s.id()), first.id());
            assert_eq!(observed.answered, Some(answered));
        });
    }

    /// The route a request is labelled with is the one its middleware was made for, whatever
    /// its path says.
    #[actix_web::test]
    async fn a_request_is_labelled_with_its_tables_route_not_its_path() {
        use actix_web::middleware::from_fn;
        use actix_web::test::{call_service, init_service, read_body, TestRequest};

        let label = |req: HttpRequest| async move {
            let observed = req.extensions();
            observed
                .get::<Observed>()
                .map_or("none", |o| o.route.label())
        };
        let app = init_service(
            actix_web::App::new()
                .service(
                    web::resource("/webhooks/elsewhere")
                        .wrap(from_fn(|req, next| {
                            observe(WebhookRoute::Taskrouter, req, next)
                        }))
                        .to(label),
                )
                .service(
                    web::resource("/webhooks/taskrouter")
                        .wrap(from_fn(|req, next| {
                            observe(WebhookRoute::Conversations, req, next)
                        }))
                        .to(label),
                )
                .service(web::resource("/webhooks/conversations").to(label)),
        )
        .await;
        for (path, expected) in [
            ("/webhooks/elsewhere", "taskrouter"),
            ("/webhooks/taskrouter", "conversations"),
            ("/webhooks/conversations", "none"),
        ] {
            let res = call_service(&app, TestRequest::post().uri(path).to_request()).await;
            assert_eq!(res.headers().contains_key(REQUEST_ID), expected != "none");
            assert_eq!(read_body(res).await, expected, "{path}");
        }
    }

    #[test]
    fn refusals_and_unlabelled_answers_get_bounded_labels() {
        let refused = |refused: Refused| refusal(&Error::from(refused));
        let label = crate::metrics::event_label("task.canceled");
        assert_eq!(
            refused(Refused::new(label, WebhookError::WrongWorkspace)),
            Some((label, WebhookOutcome::WrongAccount))
        );
        assert_eq!(
            refused(WebhookError::TooLarge.into()),
            Some((EventLabel::UNKNOWN, WebhookOutcome::TooLarge))
        );
        // Another error than a webhook's refusal: left to its status.
        assert_eq!(refusal(&actix_web::error::ErrorForbidden("no")), None);
        assert_eq!(by_status(405), WebhookOutcome::BadRequest);
        assert_eq!(by_status(503), WebhookOutcome::StoreUnavailable);
    }
}

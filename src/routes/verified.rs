//! The verified-webhook extractor: any route that takes a [`VerifiedWebhook`] argument gets
//! a payload whose `X-Twilio-Signature` checked out, or the request is refused (and the
//! refusal logged with a hint) before the handler runs. Body kind, the body's deadline
//! (`server.client_body_timeout_ms`), form parsing, the URL Twilio signed, and the account
//! check (read as the route of [`WebhookRoute`] reads its events) all happen here, once for
//! every webhook route.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use actix_web::http::header::{self, HeaderName};
use actix_web::{dev, web, FromRequest, HttpRequest, ResponseError};

use super::error::{Refused, WebhookError};
use super::observed::{picked_account, span};
use super::request_url::seen_url;
use super::state::{AccountAuth, AppState, WebhookAuth};
use crate::domain::WebhookRoute;
use crate::signature::{self, Payload, SignatureError, SignedRequest, Verified};

/// A webhook whose signature checked out, from a configured account.
pub struct VerifiedWebhook {
    pub payload: Verified<Payload>,
    /// Its account: an index into the state's `webhook_auth.accounts`, whose keys checked it.
    pub account: usize,
    /// `?address=` on the URL (`flexhook address connect` sets it; the signature covers
    /// it): the address the customer wrote to.
    pub address: Option<String>,
    /// `?reengage=WT…` (a webhook flexhook re-attached after an agent left or parked the
    /// conversation; the signature covers it): the task whose end began the episode.
    pub episode: Option<String>,
}

/// Refuses an event from another account than the one whose keys checked it (dry-run
/// takes any), and logs the refusal in `req`'s span. An event its route cannot read is left
/// to its handler, which refuses it as malformed, as it would any.
fn check_account(
    req: &HttpRequest,
    auth: &AccountAuth,
    route: WebhookRoute,
    payload: &Verified<Payload>,
) -> Result<(), Refused> {
    let Some(ours) = &auth.account_sid else {
        return Ok(());
    };
    // The hot path: a form naming this account, found as the event's reader finds it (the
    // first value, trimmed), is not read any further here.
    if let Payload::Form(form) = payload.get() {
        if form.get("AccountSid").map(str::trim) == Some(ours.as_str()) {
            return Ok(());
        }
    }
    match route.account(payload) {
        Ok((account, event)) if account != *ours => {
            span(req).in_scope(|| {
                tracing::warn!(%account, checked_with = %auth.name, "webhook refused: AccountSid is not the account whose keys checked it");
            });
            Err(Refused::new(event, WebhookError::WrongAccount))
        }
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
pub(crate) enum BodyKind {
    Form,
    Json,
}

// The signature's headers, as names: a lookup by `&str` parses (and lowercases) it each time.
const SIGNATURE: HeaderName = HeaderName::from_static("x-twilio-signature");
const SIGNATURE_SETTINGS: HeaderName =
    HeaderName::from_static("x-twilio-webhooks-signature-settings");

pub(crate) fn body_kind(req: &HttpRequest) -> Option<BodyKind> {
    // As bytes: a type that is not ASCII matches neither name anyway.
    let ct = req.headers().get(header::CONTENT_TYPE)?.as_bytes();
    let essence = ct.split(|&b| b == b';').next()?.trim_ascii();
    if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else if essence.eq_ignore_ascii_case(b"application/json") {
        Some(BodyKind::Json)
    } else {
        None
    }
}

/// Twilio never compresses a webhook, so only an identity body is read: a compressed one is
/// refused before a byte of it is read, and nothing is ever decompressed.
fn is_identity(req: &HttpRequest) -> bool {
    let mut encodings = req.headers().get_all(header::CONTENT_ENCODING);
    let first = encodings.next();
    encodings.next().is_none()
        && first.map_or(true, |e| {
            e.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity")
        })
}

/// A signature header's one value. Sent twice, it is refused, whatever either value says:
/// reading the first (or the last) would let the other ride along unchecked.
fn single_header<'a>(
    req: &'a HttpRequest,
    name: &HeaderName,
    shown: &'static str,
) -> Result<Option<&'a str>, SignatureError> {
    let mut values = req.headers().get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(SignatureError::Repeated { header: shown });
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// The request's head as the signature sees it, each signature header read once.
fn signed_request(req: &HttpRequest, url: String) -> Result<SignedRequest<'_>, SignatureError> {
    Ok(SignedRequest {
        urls: vec![url],
        signature: single_header(req, &SIGNATURE, signature::SIGNATURE_HEADER)?,
        settings: single_header(req, &SIGNATURE_SETTINGS, signature::SETTINGS_HEADER)?,
    })
}

impl FromRequest for VerifiedWebhook {
    type Error = Refused;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let kind = body_kind(&req).ok_or(WebhookError::UnsupportedMediaType)?;
            if !is_identity(&req) {
                return Err(WebhookError::UnsupportedEncoding.into());
            }
            let state = req
                .app_data::<web::Data<AppState>>()
                .expect("AppState is registered with the app");
            // actix times the head only: a body trickled byte by byte would hold the
            // connection for ever, so the body has `server.client_body_timeout_ms`. actix hands
            // the request over as soon as its head is parsed, before it passes on the body's
            // bytes that came with it: after one turn of the scheduler, a body that has
            // arrived is read at once, and only one still on its way arms a timer.
            tokio::task::yield_now().await;
            let mut body = std::pin::pin!(body);
            let read = match poll_fn(|cx| Poll::Ready(body.as_mut().poll(cx))).await {
                Poll::Ready(read) => read,
                Poll::Pending => tokio::time::timeout(state.body_timeout, body)
                    .await
                    .map_err(|_| {
                        let _span = span(&req).entered();
                        tracing::warn!(
                            timeout_ms = state.body_timeout.as_millis(),
                            "webhook refused: body not received within server.client_body_timeout_ms"
                        );
                        WebhookError::BodyTimeout
                    })?,
            };
            let body = read.map_err(|e| {
                if e.as_response_error().status_code() == WebhookError::TooLarge.status_code() {
                    WebhookError::TooLarge
                } else {
                    WebhookError::UnreadableBody
                }
            })?;
            let webhook = verify(&req, &body, kind, &state.webhook_auth)?;
            let route = *req
                .app_data::<WebhookRoute>()
                .expect("a webhook route is registered with its WebhookRoute");
            let account = &state.webhook_auth.accounts[webhook.account];
            check_account(&req, account, route, &webhook.payload)?;
            Ok(webhook)
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
        BodyKind::Form => Payload::form(body).ok_or_else(|| {
            let _span = span(req).entered();
            tracing::warn!("webhook refused: form body is not percent-encoded UTF-8");
            WebhookError::MalformedForm
        })?,
        BodyKind::Json => Payload::Json(body.to_vec()),
    };
    // Only the account the payload names checks it: another account's keys never do.
    let account = auth.pick(&payload).ok_or_else(|| {
        let _span = span(req).entered();
        let claimed = crate::event::claimed_account(&payload);
        tracing::warn!(
            claimed = claimed.as_ref().map(|sid| sid.as_str()),
            "webhook refused: AccountSid names no configured account"
        );
        WebhookError::WrongAccount
    })?;
    picked_account(req, account, &auth.accounts[account].name);
    let mut seen = seen_url(
        req,
        auth.public_base_url.as_deref(),
        auth.trust_forwarded_headers,
    );
    // The URL moves into the check; the refusal's hint reads the request, not the URL.
    let verified = signed_request(req, std::mem::take(&mut seen.url))
        .and_then(|signed| auth.accounts[account].verifier.verify(&signed, payload));
    let verified = verified.map_err(|e| {
        let _span = span(req).entered();
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
        account,
        address: crate::domain::address_param(req.query_string()),
        episode: crate::domain::episode_param(req.query_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::{signature, SIGNATURE, SIGNATURE_SETTINGS};
    use crate::domain::address_param;
    use crate::signature::Payload;

    /// The form parser every webhook route uses, strict.
    fn decode_form(body: &[u8]) -> Option<Vec<(String, String)>> {
        match Payload::form(body)? {
            Payload::Form(form) => Some(form.to_pairs()),
            Payload::Json(_) => None,
        }
    }

    #[test]
    fn the_address_in_the_query_keeps_a_raw_plus() {
        for query in [
            "address=whatsapp:+15550003333",
            "address=whatsapp%3A%2B15550003333",
            "x=a+b&address=whatsapp:%2B15550003333&y=1",
        ] {
            assert_eq!(
                address_param(query).as_deref(),
                Some("whatsapp:+15550003333"),
                "{query}"
            );
        }
        assert_eq!(address_param("address=+").as_deref(), Some("+"));
        assert_eq!(address_param("address=%20&x=1"), None);
        assert_eq!(address_param("other=1"), None);
    }

    fn lenient(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn well_formed_forms_decode_as_the_whatwg_parser_decodes_them() {
        for body in [
            &b"EventType=onMessageAdded&Body=Hola+%C2%BFqu%C3%A9+tal%3F&Author=whatsapp%3A%2B34600"
                [..],
            b"a=1&a=2&&b&=c&d=",
            b"",
            b"100%25=%2B+%26%3D",
            b"emoji=%F0%9F%98%80&raw=caf\xc3\xa9",
        ] {
            assert_eq!(
                decode_form(body).as_ref(),
                Some(&lenient(body)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_escapes_and_invalid_utf8_are_refused() {
        for body in [
            &b"Body=%FF"[..],
            b"Body=caf\xe9",
            b"Body=%C3%28",
            b"Body=%ED%A0%80",
            b"Body=%zz",
            b"Body=100%",
            b"Body=%4",
            b"%=x",
            b"B%FFdy=x",
        ] {
            assert_eq!(decode_form(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn the_body_kind_is_the_content_types_essence_in_any_case() {
        use actix_web::http::header::HeaderValue;
        use actix_web::test::TestRequest;

        use super::{body_kind, is_identity, BodyKind};

        let kind = |ct: &[u8]| {
            let req = TestRequest::default()
                .insert_header(("content-type", HeaderValue::from_bytes(ct).unwrap()))
                .to_http_request();
            body_kind(&req).map(|k| matches!(k, BodyKind::Form))
        };
        // Some(true): a form; Some(false): JSON; None: refused.
        let cases: [(&[u8], Option<bool>); 13] = [
            (b"application/x-www-form-urlencoded", Some(true)),
            (
                b"application/x-www-form-urlencoded; charset=UTF-8",
                Some(true),
            ),
            (b"Application/X-WWW-Form-URLEncoded", Some(true)),
            (
                b" application/x-www-form-urlencoded\t;charset=utf-8",
                Some(true),
            ),
            (b"application/json", Some(false)),
            (b"APPLICATION/JSON;charset=utf-8", Some(false)),
            (b"text/plain", None),
            (b"application/jsonx", None),
            (b"application/x-www-form-urlencodedx", None),
            (b"application/ json", None),
            (b"multipart/form-data; boundary=x", None),
            (b"application/json\xc2\xa0", None),
            (b"", None),
        ];
        for (ct, expected) in cases {
            assert_eq!(kind(ct), expected, "{}", String::from_utf8_lossy(ct));
        }
        assert_eq!(
            body_kind(&TestRequest::default().to_http_request()).map(|_| ()),
            None
        );

        let identity = |values: &[&str]| {
            let mut req = TestRequest::default();
            for v in values {
                req = req.append_header(("content-encoding", *v));
            }
            is_identity(&req.to_http_request())
        };
        assert!(identity(&[]));
        assert!(identity(&["identity"]));
        assert!(identity(&[" IDENTITY "]));
        assert!(!identity(&["gzip"]));
        assert!(!identity(&["identity, gzip"]));
        assert!(!identity(&["identity", "identity"]));
    }

    #[test]
    fn header_names_are_the_signature_modules() {
        assert!(SIGNATURE
            .as_str()
            .eq_ignore_ascii_case(signature::SIGNATURE_HEADER));
        assert!(SIGNATURE_SETTINGS
            .as_str()
            .eq_ignore_ascii_case(signature::SETTINGS_HEADER));
    }

    /// The account check: the fast path for a form of this account agrees with what the
    /// event's reader would say, and everything else is read as the route reads it.
    #[test]
    fn an_event_of_another_account_is_refused_with_its_label_whatever_the_body() {
        use std::collections::BTreeMap;

        use super::{check_account, AccountAuth, WebhookRoute};
        use crate::domain::AccountSid;
        use crate::metrics::{event_label, EventLabel};
        use crate::routes::error::WebhookError;
        use crate::signature::testing::verified;
        use crate::signature::Verifier;

        const OURS: &str = "AC00000000000000000000000000000001";
        const OTHER: &str = "AC00000000000000000000000000000002";
        const CH: &str = "CH00000000000000000000000000000001";
        const WS: &str = "WS00000000000000000000000000000001";
        let auth = |account: Option<&str>| AccountAuth {
            name: "default".into(),
            verifier: Verifier::new("token".to_owned().into(), None, BTreeMap::new()),
            account_sid: account.map(|a| AccountSid::parse(a).unwrap()),
            workspace_sid: crate::domain::WorkspaceSid::parse(WS).unwrap(),
        };
        let form = |pairs: &[(&str, &str)]| {
            verified(Payload::Form(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ))
        };
        let json = |value: serde_json::Value| verified(Payload::Json(value.to_string().into()));
        let req = actix_web::test::TestRequest::default().to_http_request();
        // `None`: accepted; `Some(label)`: refused as another account's event of that label.
        let check =
            |auth: &AccountAuth, route, payload| match check_account(&req, auth, route, &payload) {
                Ok(()) => None,
                Err(refused) => {
                    assert!(matches!(refused.error, WebhookError::WrongAccount));
                    Some(refused.event)
                }
            };
        let ours = auth(Some(OURS));
        let message = |account: &'static str| {
            vec![
                ("EventType", "onMessageAdded"),
                ("AccountSid", account),
                ("ConversationSid", CH),
            ]
        };
        let added = Some(event_label("onMessageAdded"));
        let conversations = WebhookRoute::Conversations;
        assert_eq!(check(&ours, conversations, form(&message(OURS))), None);
        assert_eq!(
            check(
                &ours,
                conversations,
                form(&message(" AC00000000000000000000000000000001 "))
            ),
            None
        );
        assert_eq!(check(&ours, conversations, form(&message(OTHER))), added);
        // The reader takes a repeated field's first value; so does the check.
        let mut twice = message(OURS);
        twice.push(("AccountSid", OTHER));
        assert_eq!(check(&ours, conversations, form(&twice)), None);
        let mut twice = message(OTHER);
        twice.push(("AccountSid", OURS));
        assert_eq!(check(&ours, conversations, form(&twice)), added);
        // Malformed: left to the handler, which refuses it as such (400, not 403).
        assert_eq!(check(&ours, conversations, form(&message("AC12"))), None);
        assert_eq!(
            check(&ours, conversations, form(&[("AccountSid", OTHER)])),
            None
        );
        // JSON, at the top or under `conversation`, as the event's reader reads it.
        let body = serde_json::json!({"EventType": "onMessageAdded", "AccountSid": OTHER, "ConversationSid": CH});
        assert_eq!(check(&ours, conversations, json(body.clone())), added);
        assert_eq!(
            check(
                &ours,
                conversations,
                json(serde_json::json!({"conversation": body}))
            ),
            added
        );
        let body = serde_json::json!({"EventType": "onMessageAdded", "AccountSid": OURS, "ConversationSid": CH});
        assert_eq!(check(&ours, conversations, json(body)), None);
        // TaskRouter's events, read as TaskRouter's.
        let task = |account| {
            form(&[
                ("EventType", "task.canceled"),
                ("AccountSid", account),
                ("WorkspaceSid", WS),
            ])
        };
        assert_eq!(check(&ours, WebhookRoute::Taskrouter, task(OURS)), None);
        assert_eq!(
            check(&ours, WebhookRoute::Taskrouter, task(OTHER)),
            Some(event_label("task.canceled"))
        );
        assert_ne!(event_label("task.canceled"), EventLabel::UNKNOWN);
        // Dry-run: any account.
        assert_eq!(
            check(&auth(None), conversations, form(&message(OTHER))),
            None
        );
    }
}

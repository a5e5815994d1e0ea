//! The entry points of the fuzz targets in `fuzz/`: one function per target, each taking the
//! fuzzer's raw bytes and driving the real code from them, the way a request or a settings
//! file reaches it. `tests/fuzz_corpus.rs` replays every target's committed corpus through
//! these same functions on stable Rust, so CI and `cargo fuzz` run exactly the same code.
//!
//! Whatever the bytes, none of them may panic, and each allocates in proportion to its
//! input. The only panics here are assertions of invariants (a payload signed with the
//! auth token verifies; a stored routing input reads back unchanged): a fuzzer that trips
//! one has found a bug. Nothing in the service calls this module.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::OnceLock;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::test::TestRequest;
use secrecy::SecretString;
use serde_json::json;

use crate::config::Settings;
use crate::domain::{ConversationSid, CustomerAddress};
use crate::event::{self, task, Event};
use crate::routes::{self, WebhookAuth};
use crate::routing::{Router, RoutingInput};
use crate::signature::{
    body_sha256, compute_signature, Algorithm, Payload, SignedRequest, Verified, Verifier,
};

/// A target's function: the fuzzer's bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target: its name (its file in `fuzz/fuzz_targets/`, its folder in `fuzz/corpus/`)
/// and its function.
pub const TARGETS: [(&str, Target); 4] = [
    ("signature", signature),
    ("conversations_event", conversations_event),
    ("taskrouter_event", taskrouter_event),
    ("settings", settings),
];

/// The most bytes one input may hold at once, beyond what was held before it ran; the fuzz
/// targets and `tests/fuzz_corpus.rs` both fail an input that goes over it.
///
/// Per input byte, 128: the densest inputs are a form of one- or two-byte pairs (`a&b&…`,
/// each pair two `String`s in a 48-byte tuple, its slot in the verifier's sorted map, and a
/// cloned key and 32-byte JSON `Value` in the parser's field map) and a settings file of
/// many small rules; both measure about 60 bytes per input byte, and each growing `Vec` or
/// map may briefly hold its old and new buffers. Anything quadratic soon goes past it.
///
/// Fixed, 256 KiB: what any input costs whatever its size. The largest is the settings
/// target's, about 80 KiB: the compiled-in default settings parsed and validated; a
/// request's is under 8 KiB (an actix `HttpRequest`, a refusal's log line).
pub const fn allocation_bound(input_len: usize) -> usize {
    128 * input_len + 256 * 1024
}

/// The auth token of Twilio's own SDK test vectors, so that the corpus can hold requests
/// that really are signed (`tests/fixtures/twilio/signature_vectors.json`).
pub const AUTH_TOKEN: &str = "12345";
pub const SECONDARY_AUTH_TOKEN: &str = "fuzz-secondary-token";
/// The SharedKey of `tests/fixtures/twilio/shared_key_vectors.json`.
pub const SHARED_KEY_ID: &str = "webhooks_sharedkey_01jz8example0000000000000";
pub const SHARED_KEY_SECRET: &str = "sk_secret_5f2c0b8e9a7d4e1f";
/// `server.public_base_url` of one of the three ways `signature` checks each request.
pub const PUBLIC_BASE_URL: &str = "https://mycompany.com";

/// `signature`: a raw HTTP/1.1 request (request line, headers, blank line, body). The head
/// is parsed with `httparse`, as actix-web's server parses it, and what the server would
/// refuse with a 400 stops here. The rest goes through the very check every webhook route
/// runs ([`routes::verify`]): the body kind from `Content-Type`, the form decoded, the URL
/// Twilio signed rebuilt from the request (from `Host`, from trusted forwarded headers, and
/// from `server.public_base_url`), then `X-Twilio-Signature` and
/// `X-Twilio-Webhooks-Signature-Settings` against two auth tokens and a SharedKey. Refusals
/// are logged into a sink, so their hints and masked URLs are built too.
pub fn signature(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = head.parse(data) else {
        return;
    };
    let (Some(method), Some(path)) = (head.method, head.path) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if Uri::from_str(path).is_err() {
        return;
    }
    let mut request = TestRequest::default().method(method).uri(path);
    for header in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return;
        };
        request = request.append_header((name, value));
    }
    let request = request.to_http_request();
    let body = &data[head_len..];
    // Any other media type is refused before the body is read.
    let Some(kind) = routes::body_kind(&request) else {
        return;
    };
    tracing::dispatcher::with_default(log_sink(), || {
        for auth in webhook_auths() {
            if let Ok(webhook) = routes::verify(&request, body, kind, auth) {
                black_box((webhook.payload.signer(), webhook.address));
            }
        }
    });
}

/// `conversations_event`: the bytes as a Conversations webhook's body, once as a form and
/// once as JSON, each signed with the auth token and verified, then parsed by
/// [`event::parse`]. An `onMessageAdded` then becomes the routing input that intake stores
/// with the job, which must read back unchanged.
pub fn conversations_event(data: &[u8]) {
    for payload in Payload::form(data)
        .into_iter()
        .chain([Payload::Json(data.to_vec())])
    {
        let Ok(Event::MessageAdded(message)) = event::parse(&signed(payload)) else {
            continue;
        };
        black_box(format!("{message:?}"));
        black_box(message.customer_address().map(CustomerAddress::masked));
        let input = RoutingInput::from_event(&message, None, true, 0);
        let stored = serde_json::to_string(&input).expect("a routing input serialises");
        let read: RoutingInput =
            serde_json::from_str(&stored).expect("a stored routing input reads back");
        assert_eq!(read, input, "a stored routing input reads back unchanged");
    }
}

/// `taskrouter_event`: the bytes as a TaskRouter event callback's body, once as a form and
/// once as JSON, each signed and verified, then parsed by [`task::parse`], down to the Flex
/// attributes inside `TaskAttributes` that the lifecycle reads.
pub fn taskrouter_event(data: &[u8]) {
    for payload in Payload::form(data)
        .into_iter()
        .chain([Payload::Json(data.to_vec())])
    {
        let Ok(event) = task::parse(&signed(payload)) else {
            continue;
        };
        black_box(format!("{event:?}"));
        black_box(event.ends_task());
        black_box(event.flex_attributes().ok());
    }
}

/// `settings`: the bytes as a TOML settings file over the compiled-in defaults
/// ([`Settings::from_toml`]), validated as `serve` validates them and as `flexhook routes`
/// does (`[flex]` and `[routing]` alone). Valid routing rules then decide routes for a few
/// fixed conversations at a few instants, the extremes included.
pub fn settings(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = match Settings::from_toml(text) {
        Ok(settings) => settings,
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    match settings.routes() {
        Ok((flex, routing)) => {
            for when in routing.rules.iter().filter_map(|r| r.when.as_ref()) {
                black_box(when.schedule.to_string());
            }
            let router = Router::new(&flex, &routing, crate::config::DEFAULT_ACCOUNT);
            black_box((router.needs_address(), router.needs_attributes()));
            let conversation = ConversationSid::parse("CH00000000000000000000000000000001")
                .expect("a well-formed ConversationSid");
            for input in routing_inputs() {
                for at_ms in [
                    i64::MIN,
                    0,
                    1_780_000_000_000,
                    253_402_300_799_999,
                    i64::MAX,
                ] {
                    black_box(router.decide(&conversation, &input, at_ms));
                }
            }
        }
        Err(e) => {
            black_box(e.to_string());
        }
    }
    if let Err(e) = settings.validate() {
        black_box(e.to_string());
    }
}

/// A first message with everything a rule can look at, and one with nothing.
fn routing_inputs() -> [RoutingInput; 2] {
    let author = CustomerAddress::new("whatsapp:+34600111222");
    [
        RoutingInput {
            channel_type: author.channel_type(),
            customer_address: Some(author),
            proxy_address: Some("whatsapp:+15550001111".into()),
            source: Some("WHATSAPP".into()),
            address: Some("whatsapp:+15550001111".into()),
            attributes: Some(json!({"vip": true, "tier": "gold", "n": 1, "x": {"y": [null]}})),
            at_ms: Some(1_780_000_000_000),
            body: Some("¿Hola? {author}".into()),
            last_worker: None,
        },
        RoutingInput {
            customer_address: None,
            channel_type: crate::domain::ChannelType::Web,
            proxy_address: None,
            source: None,
            address: None,
            attributes: None,
            at_ms: None,
            body: None,
            last_worker: None,
        },
    ]
}

fn verifier() -> Verifier {
    Verifier::new(
        SecretString::from(AUTH_TOKEN),
        Some(SecretString::from(SECONDARY_AUTH_TOKEN)),
        BTreeMap::from([(
            SHARED_KEY_ID.to_owned(),
            SecretString::from(SHARED_KEY_SECRET),
        )]),
    )
}

/// The three ways a request's URL can be found: from `Host` alone, from trusted forwarded
/// headers, and from `server.public_base_url`.
fn webhook_auths() -> &'static [WebhookAuth; 3] {
    static AUTHS: OnceLock<[WebhookAuth; 3]> = OnceLock::new();
    AUTHS.get_or_init(|| {
        let auth = |public_base_url: Option<&str>, trust_forwarded_headers| WebhookAuth {
            accounts: vec![crate::routes::AccountAuth {
                name: crate::config::DEFAULT_ACCOUNT.to_owned(),
                account_sid: None,
                verifier: verifier(),
                workspace_sid: crate::domain::WorkspaceSid::parse(
                    "WS00000000000000000000000000000000",
                )
                .expect("a well-formed WorkspaceSid"),
            }],
            public_base_url: public_base_url.map(str::to_owned),
            trust_forwarded_headers,
        };
        [
            auth(None, false),
            auth(None, true),
            auth(Some(PUBLIC_BASE_URL), false),
        ]
    })
}

/// Every event at every level, formatted and thrown away.
fn log_sink() -> &'static tracing::Dispatch {
    static SINK: OnceLock<tracing::Dispatch> = OnceLock::new();
    SINK.get_or_init(|| {
        tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(std::io::sink)
                .finish(),
        )
    })
}

/// `payload` signed with the auth token as Twilio signs it, then checked by the real
/// [`Verifier`]: the parsers take only a [`Verified`] payload, and this is the only way to
/// make one.
fn signed(payload: Payload) -> Verified<Payload> {
    const URL: &str = "https://mycompany.com/webhooks/conversations";
    let (url, signature) = match &payload {
        Payload::Form(form) => (URL.to_owned(), sign(URL, &form.to_pairs())),
        Payload::Json(body) => {
            let url = format!("{URL}?bodySHA256={}", body_sha256(body));
            let signature = sign(&url, &[]);
            (url, signature)
        }
    };
    let request = SignedRequest {
        urls: vec![url],
        signature: Some(&signature),
        settings: None,
    };
    webhook_auths()[0].accounts[0]
        .verifier
        .verify(&request, payload)
        .expect("a payload signed with the auth token verifies")
}

fn sign(url: &str, params: &[(String, String)]) -> String {
    compute_signature(AUTH_TOKEN.as_bytes(), Algorithm::HmacSha1, url, params)
}

//! Properties of `X-Twilio-Signature` checking, over generated URLs, keys and parameters
//! (non-ASCII, `+`, `%`, `'`, `&`, `=`, empty values, repeated keys and repeated pairs):
//! - flexhook signs exactly as a plain reading of Twilio's rule does (the reference below),
//!   and its `Verifier` accepts what the reference signed, forms (through the same form
//!   decoding as the routes) and JSON bodies alike;
//! - changing any single character of a signed request's URL, of one of its parameters'
//!   names or values, of its JSON body, or of its signature gets it refused.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use flexhook::signature::{
    body_sha256, compute_signature, Algorithm, Payload, SignatureError, SignedRequest, Signer,
    Verifier,
};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::sample::Index;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const SHARED_KEY_ID: &str = "webhooks_sharedkey_prop";

/// Twilio's rule, read plainly (webhooks-security docs; the SDKs for repeated keys): the
/// URL, then every (name, value) pair sorted by name then value, each distinct pair once,
/// name and value concatenated; HMAC keyed with the token; base64.
fn reference_signature(
    algorithm: Algorithm,
    key: &[u8],
    url: &str,
    params: &[(String, String)],
) -> String {
    let mut pairs: Vec<&(String, String)> = params.iter().collect();
    pairs.sort();
    pairs.dedup();
    let mut data = url.as_bytes().to_vec();
    for (name, value) in pairs {
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(value.as_bytes());
    }
    let tag = match algorithm {
        Algorithm::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
            mac.update(&data);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(&data);
            mac.finalize().into_bytes().to_vec()
        }
    };
    B64.encode(tag)
}

fn verifier(token: &str, shared_key: &str) -> Verifier {
    Verifier::new(
        SecretString::from(token),
        None,
        BTreeMap::from([(SHARED_KEY_ID.to_owned(), SecretString::from(shared_key))]),
    )
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Mostly plain letters, often one of the characters that trip signature code up, and now
/// and then any character at all.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        4 => prop::sample::select(vec![
            '+', '%', '\'', '&', '=', ' ', '?', '/', ':', '.', '-', '_', '~', '"', '\\', '*',
            'é', 'ñ', 'ü', '¿', '€', '中', '😀', '\u{FFFD}', '\u{0}', '\t',
        ]),
        1 => any::<char>(),
    ]
}

fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..=max).prop_map(String::from_iter)
}

/// Names from a small pool, so that keys repeat, and sometimes any text.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "Body", "body", "To", "From", "MessagingBinding.Address", "Digits", "a", "",
        ])
        .prop_map(str::to_owned),
        2 => tricky_text(8),
    ]
}

/// Values from a small pool, so that whole pairs repeat, and often any text.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec!["", "1", "1234", "It's+amazing", "50%", "¿Hola?"])
            .prop_map(str::to_owned),
        3 => tricky_text(12),
    ]
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((param_name(), param_value()), 0..8)
}

/// `scheme://host[:port]/path[?query]`, with characters a URL may carry raw or encoded, but
/// no `#` (a JSON request's `bodySHA256` is appended to the query).
fn structured_url() -> impl Strategy<Value = String> {
    let url_text = |max| tricky_text(max).prop_map(|s| s.replace(['#', '?'], ""));
    (
        prop::sample::select(vec!["https", "http", "HTTPS"]),
        prop_oneof![
            Just("mycompany.com".to_owned()),
            "[a-z0-9-]{1,10}(\\.[a-z]{2,6}){0,2}",
            Just("bücher.example".to_owned()),
            Just("[::1]".to_owned()),
            Just("127.0.0.1".to_owned()),
        ],
        prop::option::of(prop_oneof![
            Just(80u16),
            Just(443),
            Just(8080),
            any::<u16>()
        ]),
        prop::collection::vec(url_text(6), 0..4),
        prop::option::of(prop::collection::vec((url_text(6), url_text(8)), 0..4)),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let mut url = format!("{scheme}://{host}");
            if let Some(port) = port {
                url.push_str(&format!(":{port}"));
            }
            url.push('/');
            url.push_str(&path.join("/"));
            if let Some(query) = query {
                url.push('?');
                let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                url.push_str(&pairs.join("&"));
            }
            url
        })
}

fn any_url() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => structured_url(),
        1 => any::<String>().prop_map(|s| s.replace('#', "")),
    ]
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9a-f]{32}", any::<String>(), tricky_text(20)]
}

#[derive(Debug, Clone)]
enum Body {
    Form(Vec<(String, String)>),
    Json(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => params().prop_map(Body::Form),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Json),
    ]
}

/// A request as Twilio would send it: the URL it signed, the body, and the signature made by
/// the reference with the auth token (SHA-1) or with a SharedKey (SHA-1 or SHA-256).
#[derive(Debug, Clone)]
struct SignedByReference {
    token: String,
    shared_key: String,
    url: String,
    body: Body,
    /// `X-Twilio-Webhooks-Signature-Settings`, when a SharedKey signed.
    settings: Option<String>,
    signature: String,
}

impl SignedByReference {
    fn payload(&self) -> Payload {
        match &self.body {
            Body::Form(pairs) => Payload::Form(pairs.clone().into()),
            Body::Json(bytes) => Payload::Json(bytes.clone()),
        }
    }

    fn verify(
        &self,
        url: &str,
        payload: Payload,
        signature: &str,
    ) -> Result<Signer, SignatureError> {
        let request = SignedRequest {
            urls: vec![url.to_owned()],
            signature: Some(signature),
            settings: self.settings.as_deref(),
        };
        verifier(&self.token, &self.shared_key)
            .verify(&request, payload)
            .map(|verified| verified.signer().clone())
    }
}

fn signed_request() -> impl Strategy<Value = SignedByReference> {
    (
        token(),
        token(),
        structured_url(),
        body(),
        prop::option::of(prop::sample::select(vec![
            Algorithm::HmacSha1,
            Algorithm::HmacSha256,
        ])),
    )
        .prop_map(|(token, shared_key, url, body, shared)| {
            let (url, params) = match &body {
                Body::Form(pairs) => (url, pairs.clone()),
                Body::Json(bytes) => {
                    let separator = if url.contains('?') { '&' } else { '?' };
                    let hash = hex::encode(Sha256::digest(bytes));
                    (format!("{url}{separator}bodySHA256={hash}"), Vec::new())
                }
            };
            let (key, algorithm, settings) = match shared {
                None => (token.clone(), Algorithm::HmacSha1, None),
                Some(algorithm) => (
                    shared_key.clone(),
                    algorithm,
                    Some(format!(
                        "key={SHARED_KEY_ID},algorithm={}",
                        algorithm.name()
                    )),
                ),
            };
            let signature = reference_signature(algorithm, key.as_bytes(), &url, &params);
            SignedByReference {
                token,
                shared_key,
                url,
                body,
                settings,
                signature,
            }
        })
}

/// Every string one change away from `s`: each character with one of bits 0-5 of its last
/// byte flipped (ASCII stays ASCII, a continuation byte stays one, so each is still a
/// character), and the character at `at` replaced by `by`.
fn one_change_away(s: &str, at: Index, by: char) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut push = |i: usize, new: char| {
        if new != chars[i] {
            let mut changed = chars.clone();
            changed[i] = new;
            out.push(changed.into_iter().collect());
        }
    };
    for (i, c) in chars.iter().enumerate() {
        let mut bytes = [0; 4];
        let last = c.encode_utf8(&mut bytes).len() - 1;
        for bit in 0..6 {
            let mut flipped = bytes;
            flipped[last] ^= 1 << bit;
            if let Some(new) = std::str::from_utf8(&flipped[..=last])
                .ok()
                .and_then(|t| t.chars().next())
            {
                push(i, new);
            }
        }
    }
    if !chars.is_empty() {
        push(at.index(chars.len()), by);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// Cases per property: `default` in CI, or `PROPTEST_CASES` for a longer run by hand.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn flexhook_signs_as_the_reference_does(
        key in token(),
        url in any_url(),
        params in params(),
        algorithm in prop::sample::select(vec![Algorithm::HmacSha1, Algorithm::HmacSha256]),
    ) {
        prop_assert_eq!(
            compute_signature(key.as_bytes(), algorithm, &url, &params),
            reference_signature(algorithm, key.as_bytes(), &url, &params)
        );
    }

    #[test]
    fn a_form_signed_by_the_reference_is_accepted_once_encoded_and_decoded(
        token in token(),
        url in any_url(),
        params in params(),
    ) {
        let signature = reference_signature(Algorithm::HmacSha1, token.as_bytes(), &url, &params);
        // As Twilio sends it, and as the webhook routes decode it.
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let payload = Payload::form(body.as_bytes());
        prop_assert_eq!(&payload, &Some(Payload::Form(params.clone().into())));
        let payload = payload.unwrap();
        let request = SignedRequest {
            urls: vec![url],
            signature: Some(&signature),
            settings: None,
        };
        let verified = verifier(&token, "unused").verify(&request, payload);
        prop_assert_eq!(verified.map(|v| v.signer().clone()), Ok(Signer::AuthToken));
    }

    #[test]
    fn every_request_signed_by_the_reference_is_accepted(request in signed_request()) {
        let signer = request.verify(&request.url, request.payload(), &request.signature);
        let expected = match &request.settings {
            None => Signer::AuthToken,
            Some(settings) => Signer::SharedKey {
                id: SHARED_KEY_ID.to_owned(),
                algorithm: if settings.ends_with("HMAC_SHA256") {
                    Algorithm::HmacSha256
                } else {
                    Algorithm::HmacSha1
                },
            },
        };
        prop_assert_eq!(signer, Ok(expected));
        if let Body::Json(bytes) = &request.body {
            prop_assert_eq!(body_sha256(bytes), hex::encode(Sha256::digest(bytes)));
        }
    }

}

proptest! {
    // Each case below tries every one-bit change of its field, so fewer cases suffice.
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    /// The one exemption: a change the URL standard itself undoes (ASCII case in the scheme
    /// or host, `\\` for `/`), which gives the same URL to any server. The verifier accepts
    /// the WHATWG form of a URL because Twilio's Node SDK signs that form.
    #[test]
    fn changing_one_character_of_the_url_gets_the_request_refused(
        request in signed_request(),
        at in any::<Index>(),
        by in tricky_char(),
    ) {
        for url in one_change_away(&request.url, at, by) {
            let outcome = request.verify(&url, request.payload(), &request.signature);
            let same_url = match (url::Url::parse(&url), url::Url::parse(&request.url)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            prop_assert!(outcome.is_err() || same_url, "{url:?} accepted: {outcome:?}");
        }
    }

    #[test]
    fn changing_one_character_of_a_parameter_gets_the_request_refused(
        request in signed_request(),
        at in any::<Index>(),
        by in tricky_char(),
    ) {
        let Body::Form(pairs) = &request.body else { return Ok(()) };
        for (i, (name, value)) in pairs.iter().enumerate() {
            let names = one_change_away(name, at, by)
                .into_iter()
                .map(|name| (name, value.clone()));
            let values = one_change_away(value, at, by)
                .into_iter()
                .map(|value| (name.clone(), value));
            for pair in names.chain(values) {
                let mut tampered = pairs.clone();
                tampered[i] = pair;
                let outcome =
                    request.verify(&request.url, Payload::Form(tampered.clone().into()), &request.signature);
                // Twilio's rule itself cannot see some changes: `[(body,""), (Body,""),
                // (Body,"")]` → `[(body,""), (body,""), (Body,"")]` signs the same once
                // repeated pairs collapse. Every change the rule can see must be refused.
                let unseen = |params: &[(String, String)]| {
                    reference_signature(Algorithm::HmacSha1, b"k", &request.url, params)
                };
                let invisible = unseen(&tampered) == unseen(pairs);
                prop_assert!(
                    outcome.is_err() || invisible,
                    "{tampered:?} accepted: {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn changing_one_byte_of_a_json_body_gets_the_request_refused(
        request in signed_request(),
        at in any::<Index>(),
        xor in 1u8..=255,
    ) {
        let Body::Json(body) = &request.body else { return Ok(()) };
        if body.is_empty() {
            return Ok(());
        }
        // Each bit of each byte flipped, and one byte changed to any other value.
        let flips = (0..body.len()).flat_map(|i| (0..8).map(move |bit| (i, 1u8 << bit)));
        for (i, xor) in flips.chain([(at.index(body.len()), xor)]) {
            let mut tampered = body.clone();
            tampered[i] ^= xor;
            let outcome = request.verify(&request.url, Payload::Json(tampered), &request.signature);
            prop_assert_eq!(outcome, Err(SignatureError::BodyHashMismatch));
        }
    }

    #[test]
    fn changing_one_character_of_the_signature_gets_the_request_refused(
        request in signed_request(),
        at in any::<Index>(),
        by in prop_oneof![
            proptest::char::range('A', 'Z'),
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9'),
            prop::sample::select(vec!['+', '/', '=', ' ', '-', '_']),
            any::<char>(),
        ],
    ) {
        for signature in one_change_away(&request.signature, at, by) {
            let outcome = request.verify(&request.url, request.payload(), &signature);
            prop_assert!(outcome.is_err(), "{signature:?} accepted: {outcome:?}");
        }
    }
}

//! Checks `signature.rs` against every vector in `tests/fixtures/twilio/` (computed with
//! Twilio's official SDKs; see the README there), plus the ways a request must be refused.

use super::*;

use serde_json::Value;

const SIGNATURE_VECTORS: &str = include_str!("../../tests/fixtures/twilio/signature_vectors.json");
const SHARED_KEY_VECTORS: &str =
    include_str!("../../tests/fixtures/twilio/shared_key_vectors.json");

/// Every top-level entry of `signature_vectors.json` that a test below checks. A vector
/// added to the file without a test here makes `every_signature_vector_is_tested` fail.
const TESTED_SIGNATURE_VECTORS: &[&str] = &[
    "docs_worked_example",
    "sdk_base",
    "sdk_https_with_443",
    "sdk_http_with_80",
    "sdk_http_with_1234",
    "sdk_duplicates",
    "node_array_param",
    "node_special_chars",
    "json_body",
    "json_body_only_sha_param",
    "json_empty_body",
];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn signature_vectors() -> Value {
    serde_json::from_str(SIGNATURE_VECTORS).expect("signature_vectors.json is valid JSON")
}

fn shared_key_vectors() -> Value {
    serde_json::from_str(SHARED_KEY_VECTORS).expect("shared_key_vectors.json is valid JSON")
}

fn vector(name: &str) -> Value {
    signature_vectors()
        .get(name)
        .unwrap_or_else(|| panic!("no vector {name}"))
        .clone()
}

fn text<'v>(v: &'v Value, field: &str) -> &'v str {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field {field} is not a string in {v}"))
}

/// A JSON object of params as (name, value) pairs; an array value becomes one pair per
/// element, as the SDKs send repeated form fields.
fn pairs(params: &Value) -> Vec<(String, String)> {
    let object = params.as_object().expect("params is an object");
    let mut out = Vec::new();
    for (name, value) in object {
        match value {
            Value::String(s) => out.push((name.clone(), s.clone())),
            Value::Array(items) => {
                for item in items {
                    let s = item.as_str().expect("array param values are strings");
                    out.push((name.clone(), s.to_owned()));
                }
            }
            other => panic!("unexpected param value {other}"),
        }
    }
    out
}

/// `[[name, value], ...]`, repeats kept.
fn multi_pairs(params: &Value) -> Vec<(String, String)> {
    params
        .as_array()
        .expect("params_multi is an array")
        .iter()
        .map(|pair| {
            let pair = pair.as_array().expect("each pair is an array");
            assert_eq!(pair.len(), 2, "each pair is [name, value]");
            (
                pair[0].as_str().expect("name").to_owned(),
                pair[1].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

/// The vectors whose JSON gives no token/url/params take them from `sdk_base`.
fn base_token() -> String {
    text(&vector("sdk_base"), "token").to_owned()
}

fn base_url() -> String {
    text(&vector("sdk_base"), "url").to_owned()
}

fn base_params() -> Vec<(String, String)> {
    pairs(&vector("sdk_base")["params"])
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn auth_verifier(token: &str) -> Verifier {
    Verifier::new(secret(token), None, BTreeMap::new())
}

fn shared_key_verifier(auth_token: &str, id: &str, key_secret: &str) -> Verifier {
    let mut keys = BTreeMap::new();
    keys.insert(id.to_owned(), secret(key_secret));
    Verifier::new(secret(auth_token), None, keys)
}

fn request<'a>(url: &str, signature: Option<&'a str>) -> SignedRequest<'a> {
    SignedRequest {
        urls: vec![url.to_owned()],
        signature,
        settings: None,
    }
}

fn sha1_with(token: &str, url: &str, params: &[(String, String)]) -> String {
    compute_signature(token.as_bytes(), Algorithm::HmacSha1, url, params)
}

/// Verifies and checks both the signer reported and that the payload comes back untouched.
#[track_caller]
fn assert_verifies(
    verifier: &Verifier,
    request: &SignedRequest<'_>,
    payload: Payload,
    signer: Signer,
) {
    match verifier.verify(request, payload.clone()) {
        Ok(verified) => {
            assert_eq!(verified.signer(), &signer, "wrong signer for {request:?}");
            assert_eq!(verified.get(), &payload, "payload changed by verification");
        }
        Err(e) => panic!("expected {request:?} to verify, got {e:?}"),
    }
}

#[track_caller]
fn verify_err(
    verifier: &Verifier,
    request: &SignedRequest<'_>,
    payload: Payload,
) -> SignatureError {
    match verifier.verify(request, payload) {
        Ok(v) => panic!(
            "expected {request:?} to be refused, but it verified as {:?}",
            v.signer()
        ),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_mismatch(verifier: &Verifier, request: &SignedRequest<'_>, payload: Payload) {
    let err = verify_err(verifier, request, payload);
    assert!(
        matches!(err, SignatureError::Mismatch { .. }),
        "expected Mismatch, got {err:?}"
    );
}

/// `sdk_base` with the URL of `url`, i.e. https://mycompany.com/myapp.php?foo=1&bar=2 with
/// its scheme/host/port replaced.
fn base_url_with_origin(origin: &str) -> String {
    base_url().replacen("https://mycompany.com", origin, 1)
}

// ---------------------------------------------------------------------------------------
// The vector files
// ---------------------------------------------------------------------------------------

#[test]
fn every_signature_vector_is_tested() {
    let all = signature_vectors();
    let mut names: Vec<&str> = all
        .as_object()
        .expect("top level is an object")
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with('_'))
        .collect();
    names.sort_unstable();
    let mut tested = TESTED_SIGNATURE_VECTORS.to_vec();
    tested.sort_unstable();
    assert_eq!(names, tested);
}

#[test]
fn every_shared_key_case_is_tested() {
    // One test per case below; a case added to the file needs a test of its own.
    let all = shared_key_vectors();
    assert_eq!(all["cases"].as_array().expect("cases").len(), 3);
}

// ---------------------------------------------------------------------------------------
// Auth-token vectors
// ---------------------------------------------------------------------------------------

#[test]
fn docs_worked_example_verifies() {
    let v = vector("docs_worked_example");
    let (token, url, sig) = (text(&v, "token"), text(&v, "url"), text(&v, "signature"));
    let params = pairs(&v["params"]);

    assert_eq!(sha1_with(token, url, &params), sig);
    assert_verifies(
        &auth_verifier(token),
        &request(url, Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn sdk_base_verifies() {
    let v = vector("sdk_base");
    let (token, url, sig) = (text(&v, "token"), text(&v, "url"), text(&v, "signature"));
    let params = pairs(&v["params"]);

    assert_eq!(sha1_with(token, url, &params), sig);
    assert_verifies(
        &auth_verifier(token),
        &request(url, Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn signature_over_443_form_verifies_for_url_without_port() {
    let v = vector("sdk_https_with_443");
    let (signed_url, sig) = (text(&v, "signed_url"), text(&v, "signature"));
    let params = base_params();

    assert_eq!(sha1_with(&base_token(), signed_url, &params), sig);
    // Twilio signed https://mycompany.com:443/...; the request arrives as the plain URL.
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&base_url(), Some(sig)),
        Payload::Form(params.clone().into()),
        Signer::AuthToken,
    );
    // And as the :443 URL itself.
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(signed_url, Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn signature_over_plain_https_url_verifies_for_url_with_443() {
    let params = base_params();
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let url_with_443 = text(&vector("sdk_https_with_443"), "signed_url").to_owned();

    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&url_with_443, Some(&sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn signature_over_80_form_verifies_for_url_without_port() {
    let v = vector("sdk_http_with_80");
    let (signed_url, sig) = (text(&v, "signed_url"), text(&v, "signature"));
    let params = base_params();
    let plain_http = base_url_with_origin("http://mycompany.com");

    assert_eq!(sha1_with(&base_token(), signed_url, &params), sig);
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&plain_http, Some(sig)),
        Payload::Form(params.clone().into()),
        Signer::AuthToken,
    );
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(signed_url, Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn signature_over_plain_http_url_verifies_for_url_with_80() {
    // No vector signs the plain http URL, so this one is computed; it must differ from the
    // :80 vector, or the test would prove nothing about stripping.
    let params = base_params();
    let plain_http = base_url_with_origin("http://mycompany.com");
    let sig = sha1_with(&base_token(), &plain_http, &params);
    assert_ne!(sig, text(&vector("sdk_http_with_80"), "signature"));

    let url_with_80 = text(&vector("sdk_http_with_80"), "signed_url").to_owned();
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&url_with_80, Some(&sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn signature_over_non_default_port_verifies_only_with_that_port_kept() {
    let v = vector("sdk_http_with_1234");
    let (signed_url, sig) = (text(&v, "signed_url"), text(&v, "signature"));
    let params = base_params();

    assert_eq!(sha1_with(&base_token(), signed_url, &params), sig);
    // Kept: the request arrives on :1234, as signed.
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(signed_url, Some(sig)),
        Payload::Form(params.clone().into()),
        Signer::AuthToken,
    );
    // A non-default port is never added back to a URL that lacks it.
    let plain_http = base_url_with_origin("http://mycompany.com");
    assert_mismatch(
        &auth_verifier(&base_token()),
        &request(&plain_http, Some(sig)),
        Payload::Form(params.into()),
    );
}

#[test]
fn non_default_port_is_stripped_to_match_signature_over_url_without_port() {
    // The Python SDK's test_validation_removes_port_on_https: sdk_base's signature, request
    // on https://mycompany.com:1234/...
    let params = base_params();
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let url_with_1234 = base_url_with_origin("https://mycompany.com:1234");

    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&url_with_1234, Some(&sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn repeated_param_values_are_deduplicated_and_sorted() {
    let v = vector("sdk_duplicates");
    let sig = text(&v, "signature");
    let params = multi_pairs(&v["params_multi"]);
    assert!(params.len() > 3, "the vector has repeated keys");

    assert_eq!(sha1_with(&base_token(), &base_url(), &params), sig);
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&base_url(), Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn array_param_values_become_repeated_pairs() {
    // node_array_param gives only its params. The signature is reproduced with sdk_base's
    // token (12345) and URL as is (https://mycompany.com/myapp.php?foo=1&bar=2, no port),
    // over the array's params ONLY (sdk_base's params are not added): each element becomes
    // a MessagingBinding.Address=<value> pair. Neither the :443 URL nor the params merged
    // with sdk_base's reproduce it.
    let v = vector("node_array_param");
    let sig = text(&v, "signature");
    let params = pairs(&v["params"]);
    assert_eq!(params.len(), 2, "one pair per array element");
    assert!(params.iter().all(|(k, _)| k == "MessagingBinding.Address"));

    assert_eq!(sha1_with(&base_token(), &base_url(), &params), sig);
    let mut merged = params.clone();
    merged.extend(base_params());
    assert_ne!(sha1_with(&base_token(), &base_url(), &merged), sig);

    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&base_url(), Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn apostrophe_in_query_verifies_via_whatwg_percent_encoding() {
    let v = vector("node_special_chars");
    let request_url = text(&v, "request_url");
    let signed_url = text(&v, "signed_url_actually");
    let sig = text(&v, "signature");
    assert_eq!(text(&v, "params"), "sdk_base.params");
    let params = base_params();

    assert!(request_url.contains('\''));
    assert_eq!(sha1_with(&base_token(), signed_url, &params), sig);
    // The URL as received does not match by itself: only its %27 form does.
    assert_ne!(sha1_with(&base_token(), request_url, &params), sig);
    assert!(url_variants(request_url).iter().any(|u| u == signed_url));

    assert_verifies(
        &auth_verifier(&base_token()),
        &request(request_url, Some(sig)),
        Payload::Form(params.into()),
        Signer::AuthToken,
    );
}

#[test]
fn json_body_verifies_with_body_hash_in_url() {
    let v = vector("json_body");
    let (body, url, sig) = (text(&v, "body"), text(&v, "url"), text(&v, "signature"));
    assert!(
        pairs(&v["params"]).is_empty(),
        "a JSON body signs no params"
    );

    assert_eq!(body_sha256(body.as_bytes()), text(&v, "bodySHA256"));
    assert!(url.contains(&format!("bodySHA256={}", text(&v, "bodySHA256"))));
    assert_eq!(sha1_with(&base_token(), url, &[]), sig);
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(url, Some(sig)),
        Payload::Json(body.as_bytes().to_vec()),
        Signer::AuthToken,
    );
}

#[test]
fn json_body_with_only_body_hash_param_verifies() {
    // No body in this vector: its bodySHA256 is json_body's, so json_body's body is sent.
    let v = vector("json_body_only_sha_param");
    let (url, sig) = (text(&v, "url"), text(&v, "signature"));
    let body = text(&vector("json_body"), "body").to_owned();
    assert!(url.ends_with(&format!("?bodySHA256={}", body_sha256(body.as_bytes()))));

    assert_eq!(sha1_with(&base_token(), url, &[]), sig);
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(url, Some(sig)),
        Payload::Json(body.into_bytes()),
        Signer::AuthToken,
    );
}

#[test]
fn json_empty_body_verifies_only_via_443_variant() {
    let v = vector("json_empty_body");
    let (body, hash, sig) = (
        text(&v, "body"),
        text(&v, "bodySHA256"),
        text(&v, "signature"),
    );
    assert_eq!(body_sha256(body.as_bytes()), hash);

    let plain = format!("{}&bodySHA256={hash}", base_url());
    let with_443 = format!(
        "{}&bodySHA256={hash}",
        text(&vector("sdk_https_with_443"), "signed_url")
    );
    assert_eq!(sha1_with(&base_token(), &with_443, &[]), sig);
    assert_ne!(sha1_with(&base_token(), &plain, &[]), sig);

    // The request arrives on the plain URL; the :443 variant is what matches.
    assert_verifies(
        &auth_verifier(&base_token()),
        &request(&plain, Some(sig)),
        Payload::Json(body.as_bytes().to_vec()),
        Signer::AuthToken,
    );
}

// ---------------------------------------------------------------------------------------
// SharedKey vectors
// ---------------------------------------------------------------------------------------

struct SharedKeyCase {
    secret: String,
    key_id: String,
    /// The URL the request arrives on (the file's `url`).
    url: String,
    /// The URL Twilio signed (`signed_url` if the case has one, else `url`).
    signed_url: String,
    params: Vec<(String, String)>,
    settings: String,
    algorithm: Algorithm,
    signature: String,
}

fn shared_key_case(index: usize) -> SharedKeyCase {
    let all = shared_key_vectors();
    let case = &all["cases"][index];
    let url = text(&all, "url").to_owned();
    let signed_url = case
        .get("signed_url")
        .and_then(Value::as_str)
        .map_or_else(|| url.clone(), str::to_owned);
    SharedKeyCase {
        secret: text(&all, "secret").to_owned(),
        key_id: text(&all, "key_id").to_owned(),
        url,
        signed_url,
        params: pairs(&all["params"]),
        settings: text(case, "settings_header").to_owned(),
        algorithm: Algorithm::parse(text(case, "algorithm")).expect("known algorithm"),
        signature: text(case, "signature").to_owned(),
    }
}

/// A SharedKey verifier whose auth token is unrelated to the key.
fn case_verifier(case: &SharedKeyCase) -> Verifier {
    shared_key_verifier("not-the-auth-token", &case.key_id, &case.secret)
}

fn case_request(case: &SharedKeyCase) -> SignedRequest<'_> {
    SignedRequest {
        urls: vec![case.url.clone()],
        signature: Some(&case.signature),
        settings: Some(&case.settings),
    }
}

#[track_caller]
fn check_shared_key_case(case: &SharedKeyCase) {
    assert_eq!(
        compute_signature(
            case.secret.as_bytes(),
            case.algorithm,
            &case.signed_url,
            &case.params
        ),
        case.signature
    );
    assert!(case.settings.contains(&format!("key={}", case.key_id)));
    assert!(case
        .settings
        .contains(&format!("algorithm={}", case.algorithm.name())));
    assert_verifies(
        &case_verifier(case),
        &case_request(case),
        Payload::Form(case.params.clone().into()),
        Signer::SharedKey {
            id: case.key_id.clone(),
            algorithm: case.algorithm,
        },
    );
}

#[test]
fn shared_key_hmac_sha256_verifies() {
    let case = shared_key_case(0);
    assert_eq!(case.algorithm, Algorithm::HmacSha256);
    assert_eq!(case.signed_url, case.url);
    check_shared_key_case(&case);
}

#[test]
fn shared_key_hmac_sha1_verifies() {
    let case = shared_key_case(1);
    assert_eq!(case.algorithm, Algorithm::HmacSha1);
    assert_eq!(case.signed_url, case.url);
    check_shared_key_case(&case);
}

#[test]
fn shared_key_signature_over_443_form_verifies_for_url_without_port() {
    let case = shared_key_case(2);
    assert_eq!(case.algorithm, Algorithm::HmacSha256);
    assert!(case.signed_url.contains(":443/"));
    assert!(!case.url.contains(":443"));
    check_shared_key_case(&case);
}

#[test]
fn shared_key_signature_with_other_algorithm_in_header_is_a_mismatch() {
    // The SHA-1 case's signature, announced as HMAC_SHA256.
    let sha1_case = shared_key_case(1);
    let sha256_case = shared_key_case(0);
    let req = SignedRequest {
        urls: vec![sha1_case.url.clone()],
        signature: Some(&sha1_case.signature),
        settings: Some(&sha256_case.settings),
    };
    assert_mismatch(
        &case_verifier(&sha1_case),
        &req,
        Payload::Form(sha1_case.params.clone().into()),
    );
}

// ---------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------

#[test]
fn tampered_param_value_is_a_mismatch() {
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let verifier = auth_verifier(&base_token());
    let req = request(&base_url(), Some(&sig));
    assert_verifies(
        &verifier,
        &req,
        Payload::Form(base_params().into()),
        Signer::AuthToken,
    );

    let mut tampered = base_params();
    let digits = tampered
        .iter_mut()
        .find(|(k, _)| k == "Digits")
        .expect("sdk_base has Digits");
    digits.1 = "1235".to_owned();
    assert_mismatch(&verifier, &req, Payload::Form(tampered.into()));
}

#[test]
fn wrong_auth_token_is_a_mismatch_listing_tried_url_variants() {
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let err = verify_err(
        &auth_verifier("54321"),
        &request(&base_url(), Some(&sig)),
        Payload::Form(base_params().into()),
    );
    let with_443 = text(&vector("sdk_https_with_443"), "signed_url").to_owned();
    assert_eq!(
        err,
        SignatureError::Mismatch {
            tried: vec![base_url(), with_443],
        }
    );
}

#[test]
fn missing_signature_is_missing() {
    let err = verify_err(
        &auth_verifier(&base_token()),
        &request(&base_url(), None),
        Payload::Form(base_params().into()),
    );
    assert_eq!(err, SignatureError::Missing);
}

#[test]
fn empty_signature_is_missing() {
    for empty in ["", "   "] {
        let err = verify_err(
            &auth_verifier(&base_token()),
            &request(&base_url(), Some(empty)),
            Payload::Form(base_params().into()),
        );
        assert_eq!(err, SignatureError::Missing, "signature {empty:?}");
    }
}

#[test]
fn non_base64_signature_is_a_mismatch() {
    let err = verify_err(
        &auth_verifier(&base_token()),
        &request(&base_url(), Some("not base64 at all!*")),
        Payload::Form(base_params().into()),
    );
    assert!(
        matches!(err, SignatureError::Mismatch { ref tried } if !tried.is_empty()),
        "got {err:?}"
    );
}

#[test]
fn secondary_auth_token_is_accepted_and_reported() {
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let verifier = Verifier::new(
        secret("primary-token-that-did-not-sign"),
        Some(secret(&base_token())),
        BTreeMap::new(),
    );
    assert_verifies(
        &verifier,
        &request(&base_url(), Some(&sig)),
        Payload::Form(base_params().into()),
        Signer::SecondaryAuthToken,
    );
}

#[test]
fn primary_auth_token_is_reported_when_it_signed() {
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    let verifier = Verifier::new(
        secret(&base_token()),
        Some(secret("secondary-token-that-did-not-sign")),
        BTreeMap::new(),
    );
    assert_verifies(
        &verifier,
        &request(&base_url(), Some(&sig)),
        Payload::Form(base_params().into()),
        Signer::AuthToken,
    );
}

#[test]
fn unknown_shared_key_id_is_rejected() {
    let case = shared_key_case(0);
    let verifier = shared_key_verifier(&base_token(), "some_other_key", &case.secret);
    let err = verify_err(
        &verifier,
        &case_request(&case),
        Payload::Form(case.params.clone().into()),
    );
    assert_eq!(
        err,
        SignatureError::UnknownKey {
            id: case.key_id.clone()
        }
    );
}

#[test]
fn unknown_algorithm_is_rejected() {
    let case = shared_key_case(0);
    let settings = format!("key={},algorithm=HMAC_MD5", case.key_id);
    let req = SignedRequest {
        urls: vec![case.url.clone()],
        signature: Some(&case.signature),
        settings: Some(&settings),
    };
    let err = verify_err(
        &case_verifier(&case),
        &req,
        Payload::Form(case.params.clone().into()),
    );
    assert_eq!(
        err,
        SignatureError::UnknownAlgorithm {
            algorithm: "HMAC_MD5".to_owned()
        }
    );
}

#[test]
fn settings_without_algorithm_fall_back_to_auth_token_sha1() {
    let case = shared_key_case(0);
    // The request is signed with the auth token (HMAC-SHA1), not the SharedKey.
    let sig = sha1_with(&base_token(), &case.url, &case.params);
    let settings = format!("key={}", case.key_id);
    let req = SignedRequest {
        urls: vec![case.url.clone()],
        signature: Some(&sig),
        settings: Some(&settings),
    };
    let verifier = shared_key_verifier(&base_token(), &case.key_id, &case.secret);
    assert_verifies(
        &verifier,
        &req,
        Payload::Form(case.params.clone().into()),
        Signer::AuthToken,
    );

    // And the SharedKey's own SHA-1 signature is not accepted under such a header.
    let key_sig = shared_key_case(1).signature;
    let req = SignedRequest {
        urls: vec![case.url.clone()],
        signature: Some(&key_sig),
        settings: Some(&settings),
    };
    assert_mismatch(&verifier, &req, Payload::Form(case.params.clone().into()));
}

#[test]
fn shared_key_signature_without_settings_header_is_a_mismatch() {
    let case = shared_key_case(0);
    let verifier = case_verifier(&case);
    // With the header it verifies...
    assert_verifies(
        &verifier,
        &case_request(&case),
        Payload::Form(case.params.clone().into()),
        Signer::SharedKey {
            id: case.key_id.clone(),
            algorithm: Algorithm::HmacSha256,
        },
    );
    // ...without it the auth token is used, and that did not sign it.
    for case in [shared_key_case(0), shared_key_case(1)] {
        let req = SignedRequest {
            settings: None,
            ..case_request(&case)
        };
        assert_mismatch(&verifier, &req, Payload::Form(case.params.clone().into()));
    }
}

#[test]
fn settings_without_key_are_malformed() {
    let sig = text(&vector("sdk_base"), "signature").to_owned();
    for settings in ["algorithm=HMAC_SHA256", "no-equals-sign"] {
        let req = SignedRequest {
            settings: Some(settings),
            ..request(&base_url(), Some(&sig))
        };
        let err = verify_err(
            &auth_verifier(&base_token()),
            &req,
            Payload::Form(base_params().into()),
        );
        assert_eq!(
            err,
            SignatureError::MalformedSettings,
            "settings {settings:?}"
        );
    }
}

#[test]
fn json_body_not_matching_body_hash_is_rejected() {
    let v = vector("json_body");
    let (url, sig) = (text(&v, "url"), text(&v, "signature"));
    let err = verify_err(
        &auth_verifier(&base_token()),
        &request(url, Some(sig)),
        Payload::Json(br#"{"property": "tampered", "boolean": true}"#.to_vec()),
    );
    assert_eq!(err, SignatureError::BodyHashMismatch);
}

#[test]
fn json_body_without_body_hash_is_rejected() {
    let body = text(&vector("json_body"), "body").to_owned();
    // sdk_base's URL has a query but no bodySHA256; its signature is valid for that URL.
    let sig = sha1_with(&base_token(), &base_url(), &[]);
    let err = verify_err(
        &auth_verifier(&base_token()),
        &request(&base_url(), Some(&sig)),
        Payload::Json(body.into_bytes()),
    );
    assert_eq!(err, SignatureError::JsonWithoutBodyHash);
}

// ---------------------------------------------------------------------------------------
// URL helpers
// ---------------------------------------------------------------------------------------

#[test]
fn loggable_url_masks_query_values_but_keeps_body_hash() {
    let hash = body_sha256(b"{}");
    let url = format!("https://h.com/p?address=%2B15550001111&bodySHA256={hash}&To=+1");
    let logged = loggable_url(&url);
    assert_eq!(
        logged,
        format!("https://h.com/p?address=***&bodySHA256={hash}&To=***")
    );
    assert!(!logged.contains("15550001111"));
    assert_eq!(loggable_url("https://h.com/p"), "https://h.com/p");
}

#[test]
fn url_variants_add_default_port_to_url_without_port() {
    let variants = url_variants("https://h.com/p?x=1");
    assert!(
        variants.contains(&"https://h.com/p?x=1".to_owned()),
        "{variants:?}"
    );
    assert!(
        variants.contains(&"https://h.com:443/p?x=1".to_owned()),
        "{variants:?}"
    );
    assert_eq!(
        variants[0], "https://h.com/p?x=1",
        "the URL as given comes first"
    );
}

#[test]
fn url_variants_strip_non_default_port() {
    let variants = url_variants("http://h.com:8080/p");
    assert!(
        variants.contains(&"http://h.com:8080/p".to_owned()),
        "{variants:?}"
    );
    assert!(
        variants.contains(&"http://h.com/p".to_owned()),
        "{variants:?}"
    );
    assert!(
        !variants.iter().any(|u| u.contains(":80/")),
        "a default port is not added where another port is: {variants:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Form bodies
// ---------------------------------------------------------------------------------------

fn form_pairs(body: &str) -> Option<Vec<(String, String)>> {
    match Payload::form(body.as_bytes())? {
        Payload::Form(form) => Some(form.to_pairs()),
        Payload::Json(_) => panic!("a form body read as JSON"),
    }
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[test]
fn form_bodies_decode_plus_and_escapes_as_twilio_encodes_them() {
    assert_eq!(
        form_pairs("Body=Hello+there%2C+caf%C3%A9+%2B+1%25&Author=%2B15551234567&Empty=&Bare")
            .unwrap(),
        vec![
            pair("Body", "Hello there, café + 1%"),
            pair("Author", "+15551234567"),
            pair("Empty", ""),
            pair("Bare", ""),
        ]
    );
    // Untouched text, an escaped name, a repeat kept in order, empty pairs skipped.
    assert_eq!(
        form_pairs("a=1&&M%65dia=x&a=2&").unwrap(),
        vec![pair("a", "1"), pair("Media", "x"), pair("a", "2")]
    );
    assert_eq!(form_pairs("").unwrap(), vec![]);
}

#[test]
fn form_bodies_with_a_malformed_escape_or_text_are_refused() {
    for body in [
        "Body=%",
        "Body=%4",
        "Body=100%",
        "Body=%G1",
        "Body=%1G",
        "B%y=1",
        "Body=%FF",
        "Body=%C3",
        "Body=caf%C3%A9%E9",
    ] {
        assert_eq!(form_pairs(body), None, "{body}");
    }
    assert_eq!(Payload::form(b"Body=\xff"), None);
    assert_eq!(Payload::form(b"Bo\xc3dy=1"), None);
}

#[test]
fn form_bodies_never_split_a_character_between_a_name_a_value_or_two_pairs() {
    // Each half on its own is not UTF-8, though the two together are "é".
    for body in ["Body%C3=%A9", "Body=%C3&%A9=1", "Body=caf%C3&x=%A9"] {
        assert_eq!(form_pairs(body), None, "{body}");
    }
    assert_eq!(
        form_pairs("B%C3%A9=%C3%A9&%C3%A9").unwrap(),
        vec![pair("Bé", "é"), pair("é", "")]
    );
}

#[test]
fn a_form_reads_its_pairs_in_order_and_a_names_first_value() {
    let Some(Payload::Form(form)) = Payload::form(b"a=1&b=&a=2&c%3D=%26") else {
        panic!("a form body");
    };
    assert_eq!(form.len(), 4);
    assert_eq!(
        form.iter().collect::<Vec<_>>(),
        vec![("a", "1"), ("b", ""), ("a", "2"), ("c=", "&")]
    );
    assert_eq!(form.get("a"), Some("1"));
    assert_eq!(form.get("b"), Some(""));
    assert_eq!(form.get("c="), Some("&"));
    assert_eq!(form.get("d"), None);
    // Built from pairs, it is the same form, and gives them back.
    let pairs = form.to_pairs();
    assert_eq!(Form::from(pairs.clone()), form);
    assert_eq!(pairs.iter().cloned().collect::<Form>().to_pairs(), pairs);
    assert!(Form::default().is_empty());
    assert_eq!(Form::default().iter().count(), 0);
}

#[test]
fn params_sort_by_name_then_value_as_plain_byte_order_does() {
    // Names that tie on their first eight bytes, that are prefixes of each other (shorter
    // and longer than eight bytes), with NUL and non-ASCII bytes, and repeated pairs.
    let names = [
        "ConversationSid",
        "ConversationServiceSid",
        "Conversa",
        "Conversat",
        "Convers",
        "Conv\u{0}",
        "Conv",
        "",
        "a",
        "A",
        "Ab\u{0}",
        "Ab",
        "é",
        "ée",
        "\u{10FFFF}",
        "Body",
        "Body",
    ];
    let values = ["", "1", "10", "2", "é"];
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .flat_map(|n| values.iter().map(move |v| (*n, *v)))
        .rev()
        .collect();
    let mut plain = pairs.clone();
    plain.sort_unstable();
    plain.dedup();
    let sorted: Vec<(&str, &str)> = sorted_params(pairs.into_iter())
        .into_iter()
        .map(|p| (p.name, p.value))
        .collect();
    assert_eq!(sorted, plain);
    for (a, b) in [
        ("Conv", "Conv\u{0}"),
        ("Ab", "Ab\u{0}"),
        ("a", "b"),
        ("", "\u{0}"),
    ] {
        assert!(name_prefix(a) <= name_prefix(b), "{a:?} {b:?}");
    }
    assert!(name_prefix("ConversaA") == name_prefix("ConversaB"));
    assert!(name_prefix("Body") < name_prefix("Bodz"));
}

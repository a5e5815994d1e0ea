//! `X-Twilio-Signature`, exactly as Twilio's SDKs compute it: the URL, then each parameter
//! name in sorted order followed by each of its values (de-duplicated, sorted), HMAC'd with
//! the auth token (SHA-1) or with a webhook SharedKey (SHA-1 or SHA-256), base64-encoded.
//!
//! A request is unverified until [`Verifier::verify`] returns a [`Verified`] payload; nothing
//! else can build one, so no handler can read a payload that did not pass here.

mod form;

pub use form::{Form, Pairs};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
pub const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";
const BODY_HASH_PARAM: &str = "bodySHA256";

/// The HMAC a signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HMAC_SHA1" => Some(Self::HmacSha1),
            "HMAC_SHA256" => Some(Self::HmacSha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC_SHA1",
            Self::HmacSha256 => "HMAC_SHA256",
        }
    }
}

/// The body, as the signature sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `application/x-www-form-urlencoded`: the decoded pairs, in order, repeats kept.
    Form(Form),
    /// `application/json`: the raw bytes, whose SHA-256 the URL's `bodySHA256` vouches for.
    Json(Vec<u8>),
}

impl Payload {
    /// A form body, decoded strictly as Twilio encodes it (see [`Form::decode`]).
    pub fn form(body: &[u8]) -> Option<Self> {
        Form::decode(body).map(Self::Form)
    }
}

/// A payload whose signature checked out. Only this module can make one.
#[derive(Debug)]
pub struct Verified<T> {
    inner: T,
    signer: Signer,
}

impl<T> Verified<T> {
    pub fn get(&self) -> &T {
        &self.inner
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

/// Which secret signed a verified request (for logs: never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    AuthToken,
    SecondaryAuthToken,
    SharedKey { id: String, algorithm: Algorithm },
}

/// Why a request was refused. Each has its own short reason for the 403 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Twilio-Signature header")]
    Missing,
    /// Twilio sends each of these headers once; with two, which one was checked would
    /// decide, so neither is.
    #[error("more than one {header} header")]
    Repeated { header: &'static str },
    #[error("malformed X-Twilio-Webhooks-Signature-Settings header")]
    MalformedSettings,
    #[error("unknown SharedKey id")]
    UnknownKey { id: String },
    #[error("unknown signature algorithm")]
    UnknownAlgorithm { algorithm: String },
    #[error("JSON body without bodySHA256 in the URL")]
    JsonWithoutBodyHash,
    #[error("bodySHA256 does not match the body")]
    BodyHashMismatch,
    #[error("invalid signature")]
    Mismatch { tried: Vec<String> },
}

/// The head of a request, as far as the signature is concerned.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// The full URL(s) Twilio may have signed, most likely first; port variants are added here.
    pub urls: Vec<String>,
    pub signature: Option<&'a str>,
    pub settings: Option<&'a str>,
}

/// The secrets webhooks may be signed with.
#[derive(Clone)]
pub struct Verifier {
    /// Each auth token, keyed into its HMAC once rather than for every request.
    auth_tokens: Vec<(Signer, Keyed)>,
    shared_keys: BTreeMap<String, SecretString>,
}

/// An HMAC with its key already absorbed: each check clones it, and skips re-hashing the key.
#[derive(Clone)]
enum Keyed {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<Sha256>),
}

impl Keyed {
    fn new(key: &[u8], algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::HmacSha1 => {
                Self::Sha1(Hmac::new_from_slice(key).expect("HMAC takes any key"))
            }
            Algorithm::HmacSha256 => {
                Self::Sha256(Hmac::new_from_slice(key).expect("HMAC takes any key"))
            }
        }
    }

    /// Whether `expected` is the MAC of `data`, compared in constant time. (`data` whole:
    /// fed to the MAC as one piece, it costs less than as its URL and each name and value.)
    fn matches(&self, data: &[u8], expected: &[u8]) -> bool {
        match self {
            Self::Sha1(keyed) => keyed.clone().chain_update(data).verify_slice(expected),
            Self::Sha256(keyed) => keyed.clone().chain_update(data).verify_slice(expected),
        }
        .is_ok()
    }

    /// The MAC of `data`.
    fn tag(&self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1(keyed) => keyed
                .clone()
                .chain_update(data)
                .finalize()
                .into_bytes()
                .to_vec(),
            Self::Sha256(keyed) => keyed
                .clone()
                .chain_update(data)
                .finalize()
                .into_bytes()
                .to_vec(),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("auth_tokens", &self.auth_tokens.len())
            .field("shared_keys", &self.shared_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    pub fn new(
        auth_token: SecretString,
        secondary_auth_token: Option<SecretString>,
        shared_keys: BTreeMap<String, SecretString>,
    ) -> Self {
        let keyed = |token: &SecretString| {
            Keyed::new(token.expose_secret().as_bytes(), Algorithm::HmacSha1)
        };
        let mut auth_tokens = vec![(Signer::AuthToken, keyed(&auth_token))];
        if let Some(t) = secondary_auth_token {
            auth_tokens.push((Signer::SecondaryAuthToken, keyed(&t)));
        }
        Self {
            auth_tokens,
            shared_keys,
        }
    }

    /// Checks the request; on success the payload comes back [`Verified`].
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        payload: Payload,
    ) -> Result<Verified<Payload>, SignatureError> {
        let signature = request
            .signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::Missing)?;
        // A signature that is not base64 can match nothing; it still goes through the same
        // comparisons so that its failure looks like any other mismatch. Decoded on the
        // stack: a MAC is 32 bytes at most, so one too long for this can match nothing either.
        let mut decoded = [0; 64];
        let expected = match B64.decode_slice(signature, &mut decoded) {
            Ok(len) => &decoded[..len],
            Err(_) => &[][..],
        };

        // A SharedKey is keyed for this request alone; the auth tokens were keyed once.
        let shared: Option<(Signer, Keyed)> = match request.settings {
            None => None,
            Some(header) => match parse_settings(header)? {
                Settings {
                    algorithm: None, ..
                } => None,
                Settings {
                    key: Some(id),
                    algorithm: Some(algorithm),
                } => {
                    let algorithm = Algorithm::parse(&algorithm)
                        .ok_or(SignatureError::UnknownAlgorithm { algorithm })?;
                    let secret = self
                        .shared_keys
                        .get(&id)
                        .ok_or(SignatureError::UnknownKey { id: id.clone() })?;
                    let keyed = Keyed::new(secret.expose_secret().as_bytes(), algorithm);
                    Some((Signer::SharedKey { id, algorithm }, keyed))
                }
                Settings { key: None, .. } => return Err(SignatureError::MalformedSettings),
            },
        };
        let keys = shared
            .as_ref()
            .map_or(&self.auth_tokens[..], std::slice::from_ref);

        let sorted = match &payload {
            Payload::Form(form) => sorted_params(form.iter()),
            Payload::Json(body) => {
                let first = request.urls.first().map(String::as_str).unwrap_or("");
                let claimed = query_param(first, BODY_HASH_PARAM)
                    .ok_or(SignatureError::JsonWithoutBodyHash)?;
                let actual = hex::encode(Sha256::digest(body));
                if !claimed.eq_ignore_ascii_case(&actual) {
                    return Err(SignatureError::BodyHashMismatch);
                }
                Vec::new()
            }
        };

        let mut tried: Vec<String> = Vec::new();
        for base in &request.urls {
            // `base` as seen first; its variants (a URL parse each, the first being `base`
            // itself) only when it fails.
            let urls = std::iter::once(Cow::Borrowed(base.as_str())).chain(
                std::iter::once_with(|| url_variants(base))
                    .flatten()
                    .skip(1)
                    .map(Cow::Owned),
            );
            for url in urls {
                let data = canonical_from_sorted(&url, &sorted);
                for (signer, keyed) in keys {
                    if keyed.matches(data.as_bytes(), expected) {
                        return Ok(Verified {
                            inner: payload,
                            signer: signer.clone(),
                        });
                    }
                }
                if !tried.iter().any(|t| *t == url) {
                    tried.push(url.into_owned());
                }
            }
        }
        Err(SignatureError::Mismatch { tried })
    }
}

struct Settings {
    key: Option<String>,
    algorithm: Option<String>,
}

fn parse_settings(header: &str) -> Result<Settings, SignatureError> {
    let mut settings = Settings {
        key: None,
        algorithm: None,
    };
    for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or(SignatureError::MalformedSettings)?;
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "key" => settings.key = Some(value),
            "algorithm" => settings.algorithm = Some(value),
            _ => {}
        }
    }
    Ok(settings)
}

/// The string Twilio signs: the URL, then name+value for each sorted name and each of its
/// sorted, de-duplicated values.
pub fn canonical_string(url: &str, params: &[(String, String)]) -> String {
    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    canonical_from_sorted(url, &sorted_params(pairs))
}

/// Name-value pairs sorted by name, then by value, repeats dropped: the order of
/// [`canonical_string`].
fn sorted_params<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Param<'a>> {
    let mut sorted: Vec<Param<'a>> = params
        .map(|(name, value)| Param {
            prefix: name_prefix(name),
            name,
            value,
        })
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// One parameter, in signing order: by name, then value. Names mostly differ within their
/// first eight bytes, so those, compared first as one integer (computed once per parameter),
/// spare most comparisons a byte-by-byte one (a call to `memcmp` each).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Param<'a> {
    prefix: u64,
    name: &'a str,
    value: &'a str,
}

/// A name's first eight bytes as a big-endian integer, zero-padded: two names compare as
/// their prefixes do, unless the prefixes tie.
fn name_prefix(name: &str) -> u64 {
    let bytes = name.as_bytes();
    match bytes.first_chunk::<8>() {
        Some(first) => u64::from_be_bytes(*first),
        None => bytes
            .iter()
            .enumerate()
            .fold(0, |acc, (i, &b)| acc | u64::from(b) << (56 - 8 * i)),
    }
}

fn canonical_from_sorted(url: &str, sorted: &[Param<'_>]) -> String {
    let len = sorted
        .iter()
        .map(|p| p.name.len() + p.value.len())
        .sum::<usize>();
    let mut data = String::with_capacity(url.len() + len);
    data.push_str(url);
    for param in sorted {
        data.push_str(param.name);
        data.push_str(param.value);
    }
    data
}

/// The signature Twilio would send for this URL and these parameters.
pub fn compute_signature(
    key: &[u8],
    algorithm: Algorithm,
    url: &str,
    params: &[(String, String)],
) -> String {
    let data = canonical_string(url, params);
    B64.encode(Keyed::new(key, algorithm).tag(data.as_bytes()))
}

/// The hex SHA-256 Twilio puts in `bodySHA256` for a JSON body.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The URLs Twilio's SDKs accept for one request URL: as given, as a WHATWG parser writes it
/// (`'` becomes `%27` in a query, as Node's SDK does), and each with its port removed or with
/// the scheme's default port added.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_owned()];
    if let Ok(parsed) = url::Url::parse(url) {
        let normalized = parsed.to_string();
        if normalized != url {
            forms.push(normalized);
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(forms.len() * 3);
    for form in forms {
        for candidate in [
            Some(form.clone()),
            without_port(&form),
            with_default_port(&form),
        ]
        .into_iter()
        .flatten()
        {
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// Splits `scheme://authority` from the rest (path, query).
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// The port of an authority (`host:port`, `[v6]:port`), if any.
fn port_start(authority: &str) -> Option<usize> {
    // Skip any `user:pass@`; an IPv6 host's colons sit inside brackets.
    let start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_end = authority[start..].rfind(']').map_or(start, |i| start + i);
    authority[host_end..].rfind(':').map(|i| host_end + i)
}

fn without_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    let at = port_start(authority)?;
    Some(format!("{scheme}://{}{rest}", &authority[..at]))
}

fn with_default_port(url: &str) -> Option<String> {
    let (scheme, authority, rest) = split_authority(url)?;
    if port_start(authority).is_some() {
        return None;
    }
    let port = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    Some(format!("{scheme}://{authority}:{port}{rest}"))
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A URL safe to log: query values are replaced by `***` (they may hold an address).
pub fn loggable_url(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k == BODY_HASH_PARAM => pair.to_owned(),
                    Some((k, _)) => format!("{k}=***"),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", masked.join("&"))
        }
    }
}

#[cfg(test)]
mod tests;

/// For unit tests of the modules after this one: a payload treated as verified.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn verified(payload: Payload) -> Verified<Payload> {
        Verified {
            inner: payload,
            signer: Signer::AuthToken,
        }
    }
}

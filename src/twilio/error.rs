//! Twilio's failures as types: its error JSON (`code`, `message`, `more_info`, `status`),
//! and transport failures sorted by whether the request may have reached Twilio.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

/// An answer from Twilio that was not a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Twilio's error code, e.g. 20429 or 80102.
    pub code: Option<i64>,
    pub message: String,
    pub more_info: Option<String>,
    /// `Retry-After`, when the answer carried one (429, 503), as a wait from now. Not
    /// capped here: whoever waits decides how long is too long.
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<i64>,
    message: Option<String>,
    more_info: Option<String>,
}

impl ApiError {
    pub(crate) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let (code, message, more_info) = match parsed {
            Some(b) => (b.code, b.message, b.more_info),
            None => (None, None, None),
        };
        Self {
            status: status.as_u16(),
            code,
            message: message.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .to_owned()
            }),
            more_info,
            retry_after,
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, which is read against
/// `now`; a date already past means "now". Anything else is ignored.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What a person should do about Twilio's credentials error (20003 / 401).
pub const CREDENTIALS_HINT: &str =
    "check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (or TWILIO_API_KEY / TWILIO_API_SECRET)";

impl ApiError {
    /// What to do about the error, for the codes whose own message does not say: 20003
    /// (credentials), 20404 (the caller names what was not found) and 20429 (rate limit).
    pub fn hint(&self) -> Option<&'static str> {
        match (self.code, self.status) {
            (Some(20003), _) | (None, 401) => Some(CREDENTIALS_HINT),
            (Some(20404), _) | (None, 404) => Some("not found"),
            (Some(20429), _) | (_, 429) => Some("rate limited: wait a moment and try again"),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = self.code {
            write!(f, ", Twilio error {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(more) = &self.more_info {
            write!(f, " ({more})")?;
        }
        Ok(())
    }
}

/// Every way a Twilio call can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TwilioError {
    #[error("{0}")]
    Api(ApiError),
    /// The connection was never made: Twilio cannot have seen the request.
    #[error("could not connect: {0}")]
    Connect(String),
    /// No answer in time: the request may or may not have been processed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection broke mid-way: the request may or may not have been processed.
    #[error("transport error: {0}")]
    Transport(String),
    /// A 2xx whose body is not what the API documents.
    #[error("unexpected answer (HTTP {status}): {message}")]
    Decode { status: u16, message: String },
}

impl TwilioError {
    pub(crate) fn from_transport(e: reqwest::Error) -> Self {
        // reqwest's messages carry the URL (never credentials); keep its cause chain.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_connect() {
            Self::Connect(text)
        } else if e.is_timeout() {
            Self::Timeout(text)
        } else {
            Self::Transport(text)
        }
    }

    /// Twilio's error code, if it sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api(a) => a.code,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(a) => Some(a.status),
            Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again may succeed: 429, 5xx, and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(a) => a.status == 429 || a.status >= 500,
            Self::Connect(_) | Self::Timeout(_) | Self::Transport(_) => true,
            Self::Decode { .. } => false,
        }
    }

    /// Whether Twilio may have acted on the request even though it failed. A 429 never
    /// was processed (Twilio documents it so); a refused connection never arrived.
    pub fn may_have_been_processed(&self) -> bool {
        match self {
            Self::Api(a) => a.status >= 500,
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Connect(_) | Self::Decode { .. } => false,
        }
    }

    /// Whether Twilio surely did not act on the request: it refused it (a 4xx, 429
    /// included) or never received it. A 2xx it answered unreadably was acted on.
    pub fn surely_not_processed(&self) -> bool {
        match self {
            Self::Api(a) => a.status < 500,
            Self::Connect(_) => true,
            Self::Timeout(_) | Self::Transport(_) | Self::Decode { .. } => false,
        }
    }

    /// What to do about it, when Twilio's code says (see [`ApiError::hint`]).
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Api(a) => a.hint(),
            _ => None,
        }
    }

    /// Whether Twilio refused the credentials (401, 20003).
    pub fn is_bad_credentials(&self) -> bool {
        matches!(self, Self::Api(a) if a.status == 401 || a.code == Some(20003))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(a) => a.retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn twilio_error_json_becomes_a_typed_error() {
        let body = br#"{"code": 80102, "message": "Participant already in an interaction",
            "more_info": "https://www.twilio.com/docs/errors/80102", "status": 400}"#;
        let e = ApiError::from_response(StatusCode::BAD_REQUEST, &HeaderMap::new(), body);
        assert_eq!(e.status, 400);
        assert_eq!(e.code, Some(80102));
        assert_eq!(e.message, "Participant already in an interaction");
        assert_eq!(
            e.more_info.as_deref(),
            Some("https://www.twilio.com/docs/errors/80102")
        );
        let err = TwilioError::Api(e);
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("80102"));
    }

    #[test]
    fn a_429_is_retryable_never_processed_and_carries_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let e = TwilioError::Api(ApiError::from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            br#"{"code":20429,"message":"Too Many Requests","status":429}"#,
        ));
        assert!(e.is_retryable());
        assert!(!e.may_have_been_processed());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.code(), Some(20429));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        let read = |v: &str| parse_retry_after(v, now);
        assert_eq!(read("3"), Some(Duration::from_secs(3)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        // Absurd, but what the header says: the worker caps it (worker.retry_cap_ms).
        assert_eq!(read("99999999"), Some(Duration::from_secs(99_999_999)));
        assert_eq!(
            read("Sun, 22 Nov 2026 10:00:07 GMT"),
            Some(Duration::from_secs(7))
        );
        // The two obsolete date forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            read("Sunday, 22-Nov-26 10:00:07 GMT"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            read("Sun Nov 22 10:00:07 2026"),
            Some(Duration::from_secs(7))
        );
        // A date already past means now, not "no Retry-After".
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        for junk in ["", "-1", "1.5", "soon", "Sun, 22 Nov 2026"] {
            assert_eq!(read(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_429_with_an_http_date_carries_the_wait_until_that_date() {
        let at = SystemTime::now() + Duration::from_secs(30);
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap(),
        );
        let e = ApiError::from_response(StatusCode::TOO_MANY_REQUESTS, &headers, b"");
        let wait = e.retry_after.unwrap();
        // The date has whole seconds: the wait is 29 to 30 s.
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn credentials_not_found_and_rate_limit_errors_say_what_to_do() {
        let api = |status: StatusCode, body: &[u8]| {
            TwilioError::Api(ApiError::from_response(status, &HeaderMap::new(), body))
        };
        let auth = api(
            StatusCode::UNAUTHORIZED,
            br#"{"code":20003,"message":"Authenticate","status":401}"#,
        );
        assert!(auth.is_bad_credentials());
        assert!(auth.hint().unwrap().contains("TWILIO_AUTH_TOKEN"));
        // Display is unchanged: the hint is added by those who show it.
        assert_eq!(
            auth.to_string(),
            "HTTP 401, Twilio error 20003: Authenticate"
        );
        let missing = api(StatusCode::NOT_FOUND, br#"{"code":20404,"message":"x"}"#);
        assert_eq!(missing.hint(), Some("not found"));
        assert!(!missing.is_bad_credentials());
        let limited = api(StatusCode::TOO_MANY_REQUESTS, b"");
        assert!(limited.hint().unwrap().starts_with("rate limited"));
        assert_eq!(api(StatusCode::BAD_REQUEST, b"").hint(), None);
    }

    #[test]
    fn a_5xx_without_json_is_retryable_and_ambiguous() {
        let e = TwilioError::Api(ApiError::from_response(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        ));
        assert!(e.is_retryable());
        assert!(e.may_have_been_processed());
        assert_eq!(e.code(), None);
        assert!(e.to_string().contains("502"));
    }

    #[test]
    fn only_a_refusal_or_a_refused_connection_surely_did_nothing() {
        let status = |s: StatusCode| {
            TwilioError::Api(ApiError::from_response(s, &HeaderMap::new(), b""))
                .surely_not_processed()
        };
        assert!(status(StatusCode::BAD_REQUEST));
        assert!(status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(TwilioError::Connect("refused".into()).surely_not_processed());
        assert!(!TwilioError::Timeout("slow".into()).surely_not_processed());
        assert!(!TwilioError::Transport("reset".into()).surely_not_processed());
        // A 2xx Twilio answered unreadably was acted on.
        let unreadable = TwilioError::Decode {
            status: 201,
            message: "not JSON".into(),
        };
        assert!(!unreadable.surely_not_processed());
    }
}

//! The URL Twilio signed, as seen from here: `server.public_base_url` + path and query, or
//! rebuilt from the request (forwarded headers only when trusted). On a mismatch, a hint at
//! the likely cause: this is where tunnels and proxies cost people days.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::HttpRequest;

/// The URL, and what the failure hint needs to say how it was derived.
#[derive(Debug)]
pub struct SeenUrl<'a> {
    pub url: String,
    req: &'a HttpRequest,
    from_public_base_url: bool,
    trusted_forwarded: bool,
}

/// Built for every webhook, so the URL is written once, into one string; the hint's inputs
/// are read from the request only when it is needed.
pub fn seen_url<'a>(
    req: &'a HttpRequest,
    public_base_url: Option<&str>,
    trust_forwarded: bool,
) -> SeenUrl<'a> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |p| p.as_str());
    // Room for a usual origin; a longer one grows the string once.
    let mut url = String::with_capacity(64 + path_and_query.len());
    match public_base_url {
        Some(base) => url.push_str(base),
        None => match trust_forwarded
            .then(|| forwarded_origin(req.headers()))
            .flatten()
        {
            Some(forwarded) => url.push_str(&forwarded),
            None => {
                url.push_str("http://");
                url.push_str(host(req).as_deref().unwrap_or("localhost"));
            }
        },
    }
    url.push_str(path_and_query);
    SeenUrl {
        url,
        req,
        from_public_base_url: public_base_url.is_some(),
        trusted_forwarded: trust_forwarded,
    }
}

/// The `Host` header, else the request line's authority.
fn host(req: &HttpRequest) -> Option<Cow<'_, str>> {
    header(req.headers(), &header::HOST)
        .map(Cow::Borrowed)
        .or_else(|| req.uri().authority().map(|a| Cow::Owned(a.to_string())))
}

impl SeenUrl<'_> {
    /// The most likely reason a signature over this URL failed.
    pub fn hint(&self) -> String {
        if !self.from_public_base_url {
            let forwarded = forwarded_origin(self.req.headers());
            if let (Some(fwd), false) = (forwarded, self.trusted_forwarded) {
                return format!(
                    "the request came through a proxy (its forwarded headers say {fwd}) but \
                     server.trust_forwarded_headers is off and server.public_base_url is not set: \
                     set server.public_base_url (FLEXHOOK_SERVER__PUBLIC_BASE_URL) to the URL Twilio calls"
                );
            }
            let host = host(self.req);
            let host = host.as_deref().unwrap_or("");
            if host.starts_with("localhost")
                || host.starts_with("127.")
                || host.starts_with("[::1]")
            {
                return "the Host header is local, as when a tunnel rewrites it: set \
                        server.public_base_url (FLEXHOOK_SERVER__PUBLIC_BASE_URL) to the tunnel's public URL"
                    .into();
            }
            return "server.public_base_url is not set, so the URL was rebuilt from the request \
                    (as http://); behind TLS termination set it to the https:// URL Twilio calls"
                .into();
        }
        "check that the webhook URL in Twilio (the Address Configuration's webhook URL) is exactly \
         server.public_base_url + this path and query, and that twilio.auth_token belongs to the \
         account that sends the webhooks (during a token rotation, set twilio.secondary_auth_token)"
            .into()
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `Forwarded: proto=…;host=…`, else `X-Forwarded-Proto` / `X-Forwarded-Host`; first hop only.
fn forwarded_origin(headers: &HeaderMap) -> Option<String> {
    let mut proto = None;
    let mut host = None;
    if let Some(fwd) = header(headers, &header::FORWARDED) {
        let first = fwd.split(',').next().unwrap_or("");
        for part in first.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "proto" => proto = Some(v),
                    "host" => host = Some(v),
                    _ => {}
                }
            }
        }
    }
    let first = |s: &str| s.split(',').next().unwrap_or("").trim().to_owned();
    let proto = proto.or_else(|| header(headers, &header::X_FORWARDED_PROTO).map(first));
    let host = host
        .or_else(|| header(headers, &header::X_FORWARDED_HOST).map(first))
        .or_else(|| header(headers, &header::HOST).map(str::to_owned));
    match (proto, host) {
        (None, _) | (_, None) => None,
        (Some(p), Some(h)) => Some(format!("{}://{h}", p.to_ascii_lowercase())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn public_base_url_wins_and_keeps_path_and_query() {
        let req = TestRequest::post()
            .uri("/webhooks/conversations?x=1")
            .insert_header(("host", "internal:8080"))
            .to_http_request();
        let seen = seen_url(&req, Some("https://app.fly.dev"), false);
        assert_eq!(seen.url, "https://app.fly.dev/webhooks/conversations?x=1");
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let req = TestRequest::post()
            .uri("/webhooks/conversations")
            .insert_header(("host", "abc.ngrok.app"))
            .insert_header(("x-forwarded-proto", "https"))
            .to_http_request();
        assert_eq!(
            seen_url(&req, None, false).url,
            "http://abc.ngrok.app/webhooks/conversations"
        );
        let untrusted = seen_url(&req, None, false);
        assert!(
            untrusted.hint().contains("trust_forwarded_headers"),
            "{}",
            untrusted.hint()
        );
        assert_eq!(
            seen_url(&req, None, true).url,
            "https://abc.ngrok.app/webhooks/conversations"
        );
    }

    #[test]
    fn the_forwarded_header_is_read_before_x_forwarded() {
        let req = TestRequest::post()
            .uri("/webhooks/conversations")
            .insert_header(("host", "10.0.0.1:8080"))
            .insert_header((
                "forwarded",
                "for=1.2.3.4;proto=https;host=\"hooks.example.com\", for=5.6.7.8",
            ))
            .insert_header(("x-forwarded-proto", "http"))
            .to_http_request();
        assert_eq!(
            seen_url(&req, None, true).url,
            "https://hooks.example.com/webhooks/conversations"
        );
    }

    #[test]
    fn a_local_host_header_hints_at_a_tunnel() {
        let req = TestRequest::post()
            .uri("/webhooks/conversations")
            .insert_header(("host", "localhost:8080"))
            .to_http_request();
        assert!(seen_url(&req, None, false).hint().contains("tunnel"));
    }
}

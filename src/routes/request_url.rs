//! The URL Twilio signed, as seen from here: `server.public_base_url` + path and query, or
//! rebuilt from the request (forwarded headers only when trusted). On a mismatch, a hint at
//! the likely cause: this is where tunnels and proxies cost people days.

use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::HttpRequest;

/// How the URL was derived, kept for the failure hint.
#[derive(Debug)]
pub struct SeenUrl {
    pub url: String,
    forwarded: Option<String>,
    host: Option<String>,
    from_public_base_url: bool,
    trusted_forwarded: bool,
}

pub fn seen_url(
    req: &HttpRequest,
    public_base_url: Option<&str>,
    trust_forwarded: bool,
) -> SeenUrl {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let headers = req.headers();
    let host =
        header(headers, &header::HOST).or_else(|| req.uri().authority().map(|a| a.to_string()));
    let forwarded = forwarded_origin(headers);
    let origin = match (public_base_url, trust_forwarded, &forwarded) {
        (Some(base), _, _) => base.to_owned(),
        (None, true, Some(fwd)) => fwd.clone(),
        _ => format!(
            "http://{}",
            host.clone().unwrap_or_else(|| "localhost".into())
        ),
    };
    SeenUrl {
        url: format!("{origin}{path_and_query}"),
        forwarded,
        host,
        from_public_base_url: public_base_url.is_some(),
        trusted_forwarded: trust_forwarded,
    }
}

impl SeenUrl {
    /// The most likely reason a signature over this URL failed.
    pub fn hint(&self) -> String {
        if !self.from_public_base_url {
            if let (Some(fwd), false) = (&self.forwarded, self.trusted_forwarded) {
                return format!(
                    "the request came through a proxy (its forwarded headers say {fwd}) but \
                     server.trust_forwarded_headers is off and server.public_base_url is not set: \
                     set server.public_base_url (FLEXHOOK_SERVER__PUBLIC_BASE_URL) to the URL Twilio calls"
                );
            }
            let host = self.host.as_deref().unwrap_or("");
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

fn header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
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
    let first = |s: String| s.split(',').next().unwrap_or("").trim().to_owned();
    let proto = proto.or_else(|| header(headers, &header::X_FORWARDED_PROTO).map(first));
    let host = host
        .or_else(|| header(headers, &header::X_FORWARDED_HOST).map(first))
        .or_else(|| header(headers, &header::HOST));
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

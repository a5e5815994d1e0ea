//! The webhook routes Twilio calls, in one table: each route's path and its metrics `route`
//! label. The app (`crate::routes`, which adds each route's handler), the metrics and the
//! CLI (`address connect`, `taskrouter connect`, `check`, `simulate`) and the reconciler all
//! read it, so a new webhook route is a variant here and its handler in `crate::routes`.

use std::borrow::Cow;

/// One webhook route. Registered with its resource as app data, where the verified-webhook
/// extractor finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRoute {
    /// `POST /webhooks/conversations`: Conversations' events (`address connect` points an
    /// address's auto-creation here).
    Conversations,
    /// `POST /webhooks/taskrouter`: the Flex workspace's event callback (`taskrouter connect`).
    Taskrouter,
}

impl WebhookRoute {
    pub const ALL: [Self; 2] = [Self::Conversations, Self::Taskrouter];

    /// Every route's [`label`](Self::label), in [`ALL`](Self::ALL)'s order.
    pub const LABELS: [&'static str; Self::ALL.len()] = {
        let mut labels = [""; Self::ALL.len()];
        let mut i = 0;
        while i < labels.len() {
            labels[i] = Self::ALL[i].label();
            i += 1;
        }
        labels
    };

    /// Where the app serves it.
    pub const fn path(self) -> &'static str {
        match self {
            Self::Conversations => "/webhooks/conversations",
            Self::Taskrouter => "/webhooks/taskrouter",
        }
    }

    /// Its `route` label in `flexhook_webhooks_total` and `flexhook_webhook_duration_seconds`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Conversations => "conversations",
            Self::Taskrouter => "taskrouter",
        }
    }

    /// The URL Twilio calls, given the public base URL (`server.public_base_url`, or a
    /// tunnel's); a trailing `/` of the base is dropped.
    pub fn url(self, base: &str) -> String {
        format!("{}{}", base.trim().trim_end_matches('/'), self.path())
    }
}

/// `?address=` of a webhook URL's query. A raw `+` is a `+`, not a space: an address never
/// holds a space, and `?address=whatsapp:+1555…` (as the README writes it) must match the
/// rule for `whatsapp:+1555…`. The signature is checked over the URL as written either way.
pub fn address_param(query: &str) -> Option<String> {
    query_param(query, "address")
}

/// `?reengage=WT…` of a webhook URL's query: the webhook flexhook re-attached to a
/// conversation an agent left or parked, and the task whose end began that episode.
pub fn episode_param(query: &str) -> Option<String> {
    if !query.contains("reengage=") {
        return None;
    }
    query_param(query, "reengage")
}

/// A query parameter's value, a raw `+` kept as `+`; `None` when absent or blank.
fn query_param(query: &str, name: &str) -> Option<String> {
    let query = if query.contains('+') {
        Cow::Owned(query.replace('+', "%2B"))
    } else {
        Cow::Borrowed(query)
    };
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_own_path_and_label() {
        for (i, a) in WebhookRoute::ALL.iter().enumerate() {
            assert_eq!(WebhookRoute::LABELS[i], a.label());
            assert!(a.path().starts_with("/webhooks/"), "{a:?}");
            for b in &WebhookRoute::ALL[i + 1..] {
                assert_ne!(a.path(), b.path());
                assert_ne!(a.label(), b.label());
            }
        }
    }

    #[test]
    fn a_routes_url_is_the_base_and_its_path() {
        for base in [
            "https://flexhook.example.com",
            "https://flexhook.example.com/",
            " https://flexhook.example.com/ ",
        ] {
            assert_eq!(
                WebhookRoute::Taskrouter.url(base),
                "https://flexhook.example.com/webhooks/taskrouter"
            );
        }
        assert_eq!(
            WebhookRoute::Conversations.url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/webhooks/conversations"
        );
    }
}

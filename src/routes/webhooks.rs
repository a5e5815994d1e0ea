//! The webhook routes Twilio calls, in one table: each route's path, its metrics `route`
//! label, its handler and how its event names its account. The app ([`super::configure`]),
//! the metrics and the CLI (`address connect`, `taskrouter connect`, `check`, `simulate`)
//! all read it, so a new webhook route is a new variant here and its handler's module.

use actix_web::middleware::from_fn;
use actix_web::web;

use super::observed::observe;
use super::{conversations, taskrouter};
use crate::domain::AccountSid;
use crate::event::{self, task, EventError};
use crate::metrics::{event_label, EventLabel};
use crate::signature::{Payload, Verified};

/// One webhook route. Registered with its resource as app data, where the verified-webhook
/// extractor finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookRoute {
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

    /// Serves the route: its handler behind [`observe`], with the route as app data.
    pub(super) fn register(self, cfg: &mut web::ServiceConfig) {
        let handler = match self {
            Self::Conversations => web::post().to(conversations::conversations_webhook),
            Self::Taskrouter => web::post().to(taskrouter::taskrouter_webhook),
        };
        cfg.service(
            web::resource(self.path())
                .app_data(self)
                .wrap(from_fn(move |req, next| observe(self, req, next)))
                .route(handler),
        );
    }

    /// The account a verified event names, and its event's label, as the route's handler
    /// reads them; `Err` when the handler would refuse it as malformed.
    pub(super) fn account(
        self,
        payload: &Verified<Payload>,
    ) -> Result<(AccountSid, EventLabel), EventError> {
        match self {
            Self::Conversations => {
                let read = event::read(payload)?;
                let head = read.head();
                Ok((head.account_sid.clone(), event_label(&head.event_type)))
            }
            Self::Taskrouter => {
                let event = task::parse(payload)?;
                Ok((event.account_sid, event_label(&event.event_type)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::App;

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

    /// Every route of the table is served by `configure`, behind the middleware (its answer
    /// has an `X-Request-Id`), and with its own route as app data; any other path is not.
    #[actix_web::test]
    async fn configure_serves_every_route_of_the_table_and_nothing_else_as_a_webhook() {
        let app = init_service(App::new().configure(super::super::configure).service(
            web::resource("/probe").to(|req: actix_web::HttpRequest| async move {
                format!("{:?}", req.app_data::<WebhookRoute>())
            }),
        ))
        .await;
        for route in WebhookRoute::ALL {
            // No content type: refused by the extractor before it reads the state.
            let res = call_service(&app, TestRequest::post().uri(route.path()).to_request()).await;
            assert_eq!(
                res.status(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{route:?}"
            );
            assert!(res.headers().contains_key("x-request-id"), "{route:?}");
        }
        for path in [
            "/webhooks/other",
            "/webhooks/conversations/x",
            "/webhooks",
            "/conversations",
        ] {
            let res = call_service(&app, TestRequest::post().uri(path).to_request()).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(!res.headers().contains_key("x-request-id"), "{path}");
        }
        // The route is the resource's data, not the app's: no other route sees one.
        let res = call_service(&app, TestRequest::get().uri("/probe").to_request()).await;
        assert_eq!(
            actix_web::body::to_bytes(res.into_body()).await.unwrap(),
            "None"
        );
    }
}

//! What each [`WebhookRoute`] of the table (`crate::domain::webhook_route`) is served with:
//! its handler, behind the middleware, and how its event names its account.

use actix_web::middleware::from_fn;
use actix_web::web;

use super::observed::observe;
use super::{conversations, taskrouter};
use crate::domain::{AccountSid, WebhookRoute};
use crate::event::{self, task, EventError};
use crate::metrics::{event_label, EventLabel};
use crate::signature::{Payload, Verified};

impl WebhookRoute {
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

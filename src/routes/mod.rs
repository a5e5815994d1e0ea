//! HTTP: the routes, the verified-webhook extractor every webhook route takes, the state
//! they share, and the one home of their errors.

mod conversations;
mod error;
mod health;
mod request_url;
mod state;
mod taskrouter;
mod verified;

use actix_web::web;

pub(crate) use state::{AppState, WebhookAuth};
pub(crate) use verified::{body_kind, verify};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route(
            "/webhooks/conversations",
            web::post().to(conversations::conversations_webhook),
        )
        .route(
            "/webhooks/taskrouter",
            web::post().to(taskrouter::taskrouter_webhook),
        );
}

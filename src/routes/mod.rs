//! HTTP routes: the Conversations webhook, liveness and readiness.

mod conversations;
mod health;
mod request_url;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route(
            "/webhooks/conversations",
            web::post().to(conversations::conversations_webhook),
        );
}

//! HTTP: the routes, the verified-webhook extractor every webhook route takes, the state
//! they share, and the one home of their errors.

mod connection;
mod conversations;
mod error;
mod health;
mod metrics;
mod observed;
mod request_url;
mod state;
mod taskrouter;
mod verified;

use actix_web::middleware::from_fn;
use actix_web::web;

pub(crate) use connection::{track_answers, watch_connections};
pub(crate) use state::{AppState, WebhookAuth};
pub(crate) use verified::{address_param, body_kind, verify};

/// The webhook port's routes. The webhooks are wrapped in [`observed::observe`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::with_token))
        .service(
            web::resource("/webhooks/conversations")
                .wrap(from_fn(observed::observe))
                .route(web::post().to(conversations::conversations_webhook)),
        )
        .service(
            web::resource("/webhooks/taskrouter")
                .wrap(from_fn(observed::observe))
                .route(web::post().to(taskrouter::taskrouter_webhook)),
        );
}

/// `server.metrics_port`'s one route.
pub fn configure_metrics_port(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics::open));
}

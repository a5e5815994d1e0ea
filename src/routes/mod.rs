//! HTTP: the routes (the webhooks' in one table, `webhooks`), the verified-webhook extractor
//! every webhook route takes, the state they share, and the one home of their errors.

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
mod webhooks;

use actix_web::web;

pub(crate) use crate::domain::WebhookRoute;
pub(crate) use connection::{track_answers, watch_connections};
pub(crate) use state::{AccountAuth, AppState, WebhookAuth};
pub(crate) use verified::{body_kind, verify};

/// The webhook port's routes: every [`WebhookRoute`] (each behind [`observed::observe`]),
/// health and metrics.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::with_token));
    for route in WebhookRoute::ALL {
        route.register(cfg);
    }
}

/// `server.metrics_port`'s one route.
pub fn configure_metrics_port(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics::open));
}

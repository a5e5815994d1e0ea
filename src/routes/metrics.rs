//! `GET /metrics`: Prometheus / OpenMetrics text. Never public by accident: on the
//! webhook port it needs `Authorization: Bearer <server.metrics_token>` (404 when no token
//! is set), and `server.metrics_port` serves it on a port of its own for a private scrape
//! (Fly's `[metrics]`). The store's gauges and `flexhook_ready` are read at scrape time.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::health::readiness;
use super::state::AppState;
use crate::metrics::CONTENT_TYPE;

/// How long a scrape waits for the store's counts.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/metrics` on the webhook port: only with the bearer token.
pub async fn with_token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(token) = &state.metrics_token else {
        return HttpResponse::NotFound().finish();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(
        given
            .trim()
            .as_bytes()
            .ct_eq(token.expose_secret().as_bytes()),
    ) {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .finish();
    }
    render(&state).await
}

/// `/metrics` on `server.metrics_port`.
pub async fn open(state: web::Data<AppState>) -> HttpResponse {
    render(&state).await
}

async fn render(state: &AppState) -> HttpResponse {
    let ready = match tokio::time::timeout(STORE_TIMEOUT, state.store.stats()).await {
        Ok(Ok(stats)) => {
            state.metrics.set_store(&stats);
            readiness(state, Ok(()))
        }
        Ok(Err(e)) => readiness(state, Err(e)),
        Err(_) => Err("store timed out"),
    };
    if let Err(why) = ready {
        tracing::warn!(why, "metrics: not ready");
    }
    state.metrics.set_ready(ready.is_ok());
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.encode())
}

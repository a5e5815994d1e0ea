//! `/healthz`: the process answers. `/readyz`: the store answers and the worker runs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{web, HttpResponse};

use super::state::AppState;
use crate::store::StoreError;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(pinged) => readiness(&state, pinged),
        Err(_) => Err("store timed out"),
    };
    match ready {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(why),
    }
}

/// Ready when the worker runs and the store answered (`store`: how a read of it went).
/// `/readyz` and `flexhook_ready` both decide here.
pub(super) fn readiness(
    state: &AppState,
    store: Result<(), StoreError>,
) -> Result<(), &'static str> {
    if !state.worker_running.load(Ordering::SeqCst) {
        return Err("worker stopped");
    }
    store.map_err(|e| {
        tracing::warn!(error = %e, "readiness: store unavailable");
        "store unavailable"
    })
}

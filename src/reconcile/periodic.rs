//! The periodic sweep: at start-up, then every `reconcile.interval`, until stopped.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ReconcileError, Reconciler};

/// Controls the periodic sweep.
#[derive(Debug)]
pub struct ReconcileHandle {
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

impl ReconcileHandle {
    /// Stops sweeping; a sweep under way is abandoned (its lease runs out).
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.join.await;
    }
}

/// Sweeps at start-up, then every `interval`.
pub fn spawn(reconciler: Reconciler, interval: Duration) -> ReconcileHandle {
    let cancel = CancellationToken::new();
    let span = tracing::info_span!("reconcile", account = %reconciler.account_name());
    let join = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let dry_run = reconciler.config.dry_run;
            loop {
                let swept = tokio::select! {
                    () = cancel.cancelled() => break,
                    swept = reconciler.sweep(None, dry_run) => swept,
                };
                match swept {
                    Ok(sweep) => {
                        tracing::info!(summary = %sweep.summary(), "reconcile: sweep done")
                    }
                    Err(ReconcileError::Busy) => {
                        tracing::debug!("reconcile: another instance is sweeping");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconcile: sweep failed; the next one looks back further")
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
        .instrument(span)
    });
    ReconcileHandle { cancel, join }
}

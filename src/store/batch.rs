//! Group commit: one writer task takes every pending insert, commits them in one
//! transaction, and answers each caller. With `synchronous=FULL` each commit costs an fsync,
//! so a burst of new conversations shares fsyncs instead of queueing behind them.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::{Inserted, NewJob, Store, StoreError, Writer};
use crate::clock::Clock;

struct Request {
    job: NewJob,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The handle webhooks insert jobs through. Cloning it is cheap.
#[derive(Clone, Debug)]
pub struct JobWriter {
    tx: mpsc::Sender<Request>,
    /// The store's clock: what a webhook's job is stamped with.
    clock: Clock,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("conversation", &self.job.conversation_sid)
            .finish()
    }
}

impl JobWriter {
    /// Now, by the store's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Starts the writer. `on_new` is notified after a commit that made at least one job.
    /// The task ends when every `JobWriter` is dropped and the queue is drained.
    pub fn spawn(store: Store, batch_max: usize, on_new: Arc<Notify>) -> (Self, JoinHandle<()>) {
        let clock = store.clock().clone();
        let (tx, mut rx) = mpsc::channel::<Request>(batch_max.saturating_mul(8).max(64));
        let handle = tokio::spawn(async move {
            let mut batch: Vec<Request> = Vec::with_capacity(batch_max);
            // Opened on first use, and again after a failure (a broken connection heals).
            let mut writer: Option<Writer> = None;
            while rx.recv_many(&mut batch, batch_max).await > 0 {
                let jobs: Vec<NewJob> = batch.iter().map(|r| r.job.clone()).collect();
                let result = match writer.as_mut() {
                    Some(w) => w.insert_batch(&jobs).await,
                    None => match store.writer().await {
                        Ok(w) => writer.insert(w).insert_batch(&jobs).await,
                        Err(e) => Err(e),
                    },
                };
                if result.is_err() {
                    writer = None;
                }
                match result {
                    Ok(outcomes) => {
                        if outcomes.contains(&Inserted::New) {
                            on_new.notify_one();
                        }
                        for (request, outcome) in batch.drain(..).zip(outcomes) {
                            let _ = request.reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, jobs = batch.len(), "could not commit new jobs");
                        for request in batch.drain(..) {
                            let _ = request.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        (Self { tx, clock }, handle)
    }

    /// Inserts the job unless its conversation has one; returns once that is durable.
    pub async fn insert(&self, job: NewJob) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { job, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

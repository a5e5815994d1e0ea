//! `[worker]`: how jobs are claimed, retried and given up on.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;

#[derive(Deserialize, Debug, Clone)]
pub struct WorkerSettings {
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub max_age_secs: u64,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub lookup_delay_ms: u64,
    pub concurrency: usize,
}

/// `[worker]`, checked.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub max_age: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub lookup_delay: Duration,
    pub concurrency: usize,
}

impl WorkerSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<WorkerConfig> {
        let before = p.count();
        if self.concurrency == 0 {
            p.add("worker.concurrency", "must be at least 1");
        }
        if self.retry_base_ms == 0 || self.retry_cap_ms < self.retry_base_ms {
            p.add(
                "worker.retry_cap_ms",
                "retry_base_ms must be more than 0 and retry_cap_ms at least retry_base_ms",
            );
        }
        (p.count() == before).then(|| WorkerConfig {
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_cap: Duration::from_millis(self.retry_cap_ms),
            max_age: Duration::from_secs(self.max_age_secs),
            lease: Duration::from_secs(self.lease_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            lookup_delay: Duration::from_millis(self.lookup_delay_ms),
            concurrency: self.concurrency,
        })
    }
}

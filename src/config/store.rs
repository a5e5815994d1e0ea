//! `[store]`: where jobs are kept and for how long.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;
use crate::domain::DatabaseUrl;

#[derive(Deserialize, Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub retention_days: u32,
    pub busy_timeout_ms: u64,
    pub known_cache_capacity: usize,
    pub batch_max: usize,
}

/// `[store]`, checked.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: DatabaseUrl,
    pub retention: Duration,
    pub busy_timeout: Duration,
    pub known_cache_capacity: usize,
    pub batch_max: usize,
}

impl StoreSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<StoreConfig> {
        let before = p.count();
        let url = DatabaseUrl::new(&self.url);
        if !matches!(url.scheme(), "sqlite" | "postgres" | "postgresql") {
            p.add(
                "store.url",
                format!(
                    "`{url}` is not supported: use sqlite://path/to/file.db (one instance) or postgres://user:password@host/db (several)"
                ),
            );
        }
        if self.batch_max == 0 {
            p.add("store.batch_max", "must be at least 1");
        }
        (p.count() == before).then(|| StoreConfig {
            url,
            retention: Duration::from_secs(u64::from(self.retention_days) * 86_400),
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            known_cache_capacity: self.known_cache_capacity,
            batch_max: self.batch_max,
        })
    }
}

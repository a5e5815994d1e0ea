//! `[store]`: where jobs are kept and for how long.

use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;
use crate::domain::DatabaseUrl;

/// The shortest `store.retention_days` accepted, whatever else is set.
const MIN_RETENTION_DAYS: u32 = 1;

const DAY_SECS: u64 = 86_400;

#[derive(Deserialize, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub retention_days: u32,
    pub busy_timeout_ms: u64,
    pub known_cache_capacity: usize,
    pub batch_max: usize,
}

/// The URL as `DatabaseUrl` prints it: its password, wherever it is given, redacted.
impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &DatabaseUrl::new(&self.url).redacted())
            .field("retention_days", &self.retention_days)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("known_cache_capacity", &self.known_cache_capacity)
            .field("batch_max", &self.batch_max)
            .finish()
    }
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
        if url.backend().is_none() {
            p.add(
                "store.url",
                format!(
                    "`{url}` is not supported: use sqlite://path/to/file.db (one instance) or postgres://user:password@host/db (several)"
                ),
            );
        }
        if self.retention_days < MIN_RETENTION_DAYS {
            p.add(
                "store.retention_days",
                format!(
                    "is {}; it must be at least {MIN_RETENTION_DAYS}: finished jobs are what stops a \
                     repeated webhook or a restart from creating an interaction twice, and how the \
                     lifecycle finds a task's conversation, and 0 would delete them all at start-up",
                    self.retention_days
                ),
            );
        }
        if self.batch_max == 0 {
            p.add("store.batch_max", "must be at least 1");
        }
        (p.count() == before).then(|| StoreConfig {
            url,
            retention: Duration::from_secs(u64::from(self.retention_days) * DAY_SECS),
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            known_cache_capacity: self.known_cache_capacity,
            batch_max: self.batch_max,
        })
    }
}

/// Something that may still need a finished job some time after its last change.
pub(super) struct RetentionNeed {
    /// The setting it comes from, as the message shows it.
    pub key: String,
    pub lasts: Duration,
    /// What would go wrong if the job were deleted sooner.
    pub why: &'static str,
}

impl StoreConfig {
    /// Refuses a retention that deletes finished jobs while something may still need them.
    pub(super) fn check_retention(&self, needs: &[RetentionNeed], p: &mut Problems) {
        let days = self.retention.as_secs() / DAY_SECS;
        for need in needs.iter().filter(|n| self.retention <= n.lasts) {
            p.add(
                "store.retention_days",
                format!(
                    "is {days} (days), not longer than {} = {}: {}. Set it to at least {}",
                    need.key,
                    humantime::format_duration(need.lasts),
                    need.why,
                    need.lasts.as_secs() / DAY_SECS + 1
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_database_password() {
        let settings = StoreSettings {
            url: "postgres://flexhook:s3cret@db.internal/flexhook?sslpassword=k3y".into(),
            retention_days: 30,
            busy_timeout_ms: 5000,
            known_cache_capacity: 10,
            batch_max: 10,
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(shown.contains("db.internal"), "{shown}");
    }
}

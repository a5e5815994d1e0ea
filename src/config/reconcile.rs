//! `[reconcile]`: the sweep that compares Twilio's state with the store and makes up for
//! webhooks and events that never reached flexhook.

use std::time::Duration;

use serde::Deserialize;

use super::de::empty_as_none;
use super::problems::Problems;

#[derive(Deserialize, Debug, Clone)]
pub struct ReconcileSettings {
    #[serde(deserialize_with = "empty_as_none")]
    pub interval: Option<String>,
    pub lookback: String,
    pub dry_run: bool,
}

/// `[reconcile]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How often the service sweeps; `None`: never on its own (`flexhook reconcile` still does).
    pub interval: Option<Duration>,
    /// How far back a sweep looks for conversations flexhook never heard of.
    pub lookback: Duration,
    /// Log what a sweep would do, and do nothing.
    pub dry_run: bool,
}

/// The shortest `reconcile.interval`: a sweep lists pages of conversations and events, and
/// Twilio's list APIs are not meant to be polled every few seconds.
const MIN_INTERVAL: Duration = Duration::from_secs(30);

impl ReconcileSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<ReconcileConfig> {
        let before = p.count();
        let interval = self.interval.as_deref().and_then(|raw| {
            let d = duration(p, "reconcile.interval", raw)?;
            if d < MIN_INTERVAL {
                p.add(
                    "reconcile.interval",
                    format!("is {raw}; at least 30s (or empty, to sweep only by hand)"),
                );
            }
            Some(d)
        });
        let lookback = duration(p, "reconcile.lookback", &self.lookback);
        if let Some(l) = lookback {
            if l < Duration::from_secs(60) {
                p.add("reconcile.lookback", "must be at least 1m");
            }
        }
        (p.count() == before).then(|| ReconcileConfig {
            interval,
            lookback: lookback.unwrap_or_default(),
            dry_run: self.dry_run,
        })
    }
}

fn duration(p: &mut Problems, key: &str, raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    p.check(
        key,
        humantime::parse_duration(raw)
            .map_err(|e| format!("`{raw}` is not a duration like `5m` or `24h` ({e})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(interval: Option<&str>, lookback: &str) -> Result<ReconcileConfig, Vec<String>> {
        let mut p = Problems::default();
        let settings = ReconcileSettings {
            interval: interval.map(str::to_owned),
            lookback: lookback.into(),
            dry_run: false,
        };
        settings
            .validate(&mut p)
            .ok_or_else(|| p.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_and_an_empty_interval_are_accepted() {
        let c = check(Some("5m"), "24h").unwrap();
        assert_eq!(c.interval, Some(Duration::from_secs(300)));
        assert_eq!(c.lookback, Duration::from_secs(86_400));
        assert_eq!(check(None, "24h").unwrap().interval, None);
    }

    #[test]
    fn bad_durations_name_their_key() {
        let e = check(Some("often"), "24h").unwrap_err();
        assert!(e[0].contains("reconcile.interval"), "{e:?}");
        let e = check(Some("5s"), "24h").unwrap_err();
        assert!(e[0].contains("at least 30s"), "{e:?}");
        let e = check(Some("5m"), "yesterday").unwrap_err();
        assert!(e[0].contains("reconcile.lookback"), "{e:?}");
        let e = check(Some("5m"), "10s").unwrap_err();
        assert!(e[0].contains("reconcile.lookback"), "{e:?}");
    }
}

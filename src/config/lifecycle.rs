//! `[lifecycle]`: what flexhook does after the hand-off: close conversations whose task
//! ended with nobody on it, tell the customer, and give conversations close timers.

use std::time::Duration;

use serde::Deserialize;

use super::de::empty_as_none;
use super::problems::Problems;

#[derive(Deserialize, Debug, Clone)]
pub struct LifecycleSettings {
    pub adopt_flex_tasks: bool,
    #[serde(deserialize_with = "empty_as_none")]
    pub orphan_message: Option<String>,
    pub message_author: String,
    #[serde(deserialize_with = "empty_as_none")]
    pub close_after: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub inactive_after: Option<String>,
    /// `flex` or `flexhook`: who routes a customer's reply to a conversation an agent left
    /// or parked.
    #[serde(default = "flex")]
    pub reengage: String,
}

fn flex() -> String {
    "flex".into()
}

/// Who routes a customer's reply to a conversation whose interaction channel an agent left
/// or parked (`inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reengage {
    /// Flex, by itself; flexhook never interferes.
    Flex,
    /// flexhook: its rules, through an invite to the channel, once per episode.
    Flexhook,
}

/// `[lifecycle]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Also act on tasks flexhook did not create (e.g. Studio's), by their attributes.
    pub adopt_flex_tasks: bool,
    /// Posted to an orphaned conversation before it is closed.
    pub orphan_message: Option<String>,
    pub message_author: String,
    /// The conversation's `Timers.Closed`, set at the hand-off.
    pub close_after: Option<Duration>,
    /// The conversation's `Timers.Inactive`, set at the hand-off.
    pub inactive_after: Option<Duration>,
    pub reengage: Reengage,
}

impl LifecycleConfig {
    pub fn sets_timers(&self) -> bool {
        self.close_after.is_some() || self.inactive_after.is_some()
    }

    /// Whether every task end asks for its episode's watch job: a channel an agent left or
    /// parked is looked after (its close timer lifted; with "flexhook", its reply heard).
    pub fn watches_ends(&self) -> bool {
        self.reengage == Reengage::Flexhook || self.close_after.is_some()
    }
}

impl LifecycleSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<LifecycleConfig> {
        let before = p.count();
        // Twilio's minimums (Conversations API, UpdateConversation).
        let close_after = timer(p, "lifecycle.close_after", &self.close_after, 10 * 60);
        let inactive_after = timer(p, "lifecycle.inactive_after", &self.inactive_after, 60);
        let reengage = match self.reengage.trim() {
            "flex" => Some(Reengage::Flex),
            "flexhook" => Some(Reengage::Flexhook),
            other => {
                p.add(
                    "lifecycle.reengage",
                    format!("is `{other}`, not `flex` (Flex routes replies to a left or parked conversation) or `flexhook` (flexhook's rules do)"),
                );
                None
            }
        };
        if self.message_author.trim().is_empty() {
            p.add(
                "lifecycle.message_author",
                "must not be empty (Conversations' own default is `system`)",
            );
        }
        (p.count() == before).then(|| LifecycleConfig {
            adopt_flex_tasks: self.adopt_flex_tasks,
            orphan_message: self.orphan_message.clone(),
            message_author: self.message_author.trim().to_owned(),
            close_after,
            inactive_after,
            reengage: reengage.unwrap_or(Reengage::Flex),
        })
    }
}

fn timer(p: &mut Problems, key: &str, raw: &Option<String>, min_secs: u64) -> Option<Duration> {
    let raw = raw.as_deref()?.trim();
    let d = p.check(
        key,
        humantime::parse_duration(raw)
            .map_err(|e| format!("`{raw}` is not a duration like `30m` or `24h` ({e})")),
    )?;
    if d < Duration::from_secs(min_secs) || d.subsec_nanos() != 0 {
        p.add(
            key,
            format!(
                "is {raw}; Twilio needs whole seconds and at least {}",
                humantime::format_duration(Duration::from_secs(min_secs))
            ),
        );
        return None;
    }
    Some(d)
}

/// A duration as ISO 8601, the form Twilio's timers take: `PT24H`, `PT1H30M`, `PT90S`.
pub fn iso8601(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || secs == 0 {
        out.push_str(&format!("{s}S"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_iso_8601() {
        assert_eq!(iso8601(Duration::from_secs(86_400)), "PT24H");
        assert_eq!(iso8601(Duration::from_secs(600)), "PT10M");
        assert_eq!(iso8601(Duration::from_secs(5_430)), "PT1H30M30S");
        assert_eq!(iso8601(Duration::from_secs(90)), "PT1M30S");
    }

    fn settings(close: &str, inactive: &str) -> LifecycleSettings {
        LifecycleSettings {
            adopt_flex_tasks: false,
            orphan_message: None,
            message_author: "system".into(),
            close_after: Some(close.into()).filter(|s: &String| !s.is_empty()),
            inactive_after: Some(inactive.into()).filter(|s: &String| !s.is_empty()),
            reengage: "flex".into(),
        }
    }

    #[test]
    fn reengage_is_flex_or_flexhook_and_anything_else_is_refused_by_key() {
        let mut p = Problems::default();
        let default = settings("", "").validate(&mut p).unwrap();
        assert_eq!(default.reengage, Reengage::Flex);
        let on = LifecycleSettings {
            reengage: " flexhook ".into(),
            ..settings("", "")
        };
        assert_eq!(on.validate(&mut p).unwrap().reengage, Reengage::Flexhook);
        let bad = LifecycleSettings {
            reengage: "studio".into(),
            ..settings("", "")
        };
        assert!(bad.validate(&mut p).is_none());
        assert_eq!(p.0[0].key, "lifecycle.reengage");
        assert!(p.0[0].message.contains("`studio`"), "{:?}", p.0);
    }

    #[test]
    fn timers_below_twilios_minimums_are_refused_by_key() {
        let mut p = Problems::default();
        assert!(settings("5m", "30s").validate(&mut p).is_none());
        let keys: Vec<&str> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["lifecycle.close_after", "lifecycle.inactive_after"]);
        let mut p = Problems::default();
        let ok = settings("24h", "10m").validate(&mut p).unwrap();
        assert_eq!(ok.close_after, Some(Duration::from_secs(86_400)));
        assert_eq!(ok.inactive_after, Some(Duration::from_secs(600)));
        let mut p = Problems::default();
        assert!(settings("soon", "").validate(&mut p).is_none());
        assert!(p.0[0].message.contains("`soon`"), "{:?}", p.0);
    }
}

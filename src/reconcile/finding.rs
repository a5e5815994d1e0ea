//! What a sweep found: one line per conversation that needed something, and what was done.

use std::fmt;

use serde::Serialize;

use crate::domain::ConversationSid;

/// The kinds of findings, as `flexhook_reconcile_findings_total{kind}` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An active conversation with flexhook's webhook and no job: its first message never
    /// reached flexhook.
    Missed,
    /// A handed-off conversation whose task ended with nobody on it, and whose event never
    /// reached flexhook.
    Orphaned,
    /// A handed-off conversation whose channel an agent left or parked, whose task's end
    /// never reached flexhook: nobody watched it (its close timer, its reply).
    Parked,
    /// A conversation kept open for a task that is no longer live.
    KeptOpen,
    /// A conversation webhook that outlived its hand-off.
    StaleWebhook,
    /// A dead job, waiting for an operator.
    Dead,
}

impl FindingKind {
    /// Every kind, in the order a summary counts them.
    pub const ALL: [FindingKind; 6] = [
        Self::Missed,
        Self::Orphaned,
        Self::Parked,
        Self::KeptOpen,
        Self::StaleWebhook,
        Self::Dead,
    ];

    /// Its `kind` label in `flexhook_reconcile_findings_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missed => "missed",
            Self::Orphaned => "orphaned",
            Self::Parked => "parked",
            Self::KeptOpen => "kept_open",
            Self::StaleWebhook => "stale_webhook",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One conversation that needed something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub conversation: ConversationSid,
    /// Why it was found, in words.
    pub why: String,
    /// What was done (or, in a dry run, would have been).
    pub action: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<13} {}  {}: {}",
            self.kind, self.conversation, self.why, self.action
        )
    }
}

/// One sweep, done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Where it looked back to for new conversations and task events (Unix ms).
    pub since: i64,
    pub dry_run: bool,
    /// Conversations listed, and how many of them flexhook already knew.
    pub conversations: usize,
    pub known: usize,
    pub findings: Vec<Finding>,
}

/// `N missed, N orphaned, …` over the kinds found; `nothing to do` when none.
pub fn summarize(findings: &[Finding]) -> String {
    let counts: Vec<String> = FindingKind::ALL
        .iter()
        .filter_map(|k| {
            let n = findings.iter().filter(|f| f.kind == *k).count();
            (n > 0).then(|| format!("{n} {k}"))
        })
        .collect();
    if counts.is_empty() {
        "nothing to do".to_owned()
    } else {
        counts.join(", ")
    }
}

impl Sweep {
    /// [`summarize`], with what was listed, and whether it was a dry run.
    pub fn summary(&self) -> String {
        let found = summarize(&self.findings);
        format!(
            "{found}; {} conversations listed, {} already known{}",
            self.conversations,
            self.known,
            if self.dry_run {
                " (dry run: nothing was done)"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_each_kind_found() {
        let ch = ConversationSid::parse("CH00000000000000000000000000000001").unwrap();
        let finding = |kind| Finding {
            kind,
            conversation: ch.clone(),
            why: "why".into(),
            action: "what".into(),
        };
        let mut sweep = Sweep {
            since: 0,
            dry_run: false,
            conversations: 3,
            known: 1,
            findings: vec![],
        };
        assert_eq!(
            sweep.summary(),
            "nothing to do; 3 conversations listed, 1 already known"
        );
        sweep.findings = vec![
            finding(FindingKind::Missed),
            finding(FindingKind::Missed),
            finding(FindingKind::Dead),
        ];
        sweep.dry_run = true;
        assert_eq!(
            sweep.summary(),
            "2 missed, 1 dead; 3 conversations listed, 1 already known (dry run: nothing was done)"
        );
    }
}

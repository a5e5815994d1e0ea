//! Validation problems, each naming its key and the variable(s) that set it, collected so
//! that one start-up reports every problem at once.

use std::fmt;

pub(super) const ENV_PREFIX: &str = "FLEXHOOK";

/// A settings problem, naming the key and the variable(s) that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({}): {}",
            self.key,
            env_vars_for(&self.key),
            self.message
        )
    }
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// The value, or `None` with the error recorded against `key`.
    pub(super) fn check<T, E: fmt::Display>(&mut self, key: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.add(key, e.to_string())).ok()
    }

    pub(super) fn count(&self) -> usize {
        self.0.len()
    }

    /// Each problem once: the keys every account shares (`twilio.request_timeout_ms`, …) are
    /// checked with each account.
    pub(super) fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0
            .retain(|p| seen.insert((p.key.clone(), p.message.clone())));
    }
}

/// `flex.workflow_sid` → `FLEXHOOK_FLEX__WORKFLOW_SID`, `accounts.acme.auth_token` →
/// `FLEXHOOK_ACCOUNTS__ACME__AUTH_TOKEN`.
pub(super) fn own_env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

/// Twilio's and the platform's standard variables, and the key each sets.
pub(super) const STANDARD_VARS: [(&str, &str); 7] = [
    ("TWILIO_ACCOUNT_SID", "twilio.account_sid"),
    ("TWILIO_AUTH_TOKEN", "twilio.auth_token"),
    ("TWILIO_API_KEY", "twilio.api_key"),
    ("TWILIO_API_SECRET", "twilio.api_secret"),
    ("TWILIO_WEBHOOK_SHARED_KEYS", "twilio.webhook_shared_keys"),
    ("PORT", "server.port"),
    ("DATABASE_URL", "store.url"),
];

/// The variable(s) that set a key, for error messages.
pub fn env_vars_for(key: &str) -> String {
    let own = own_env_var(key);
    match STANDARD_VARS.iter().find(|(_, k)| *k == key) {
        Some((standard, _)) => format!("set by {own} or {standard}"),
        None => format!("set by {own}"),
    }
}

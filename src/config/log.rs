//! `[log]`: the log format and filter, and whether logs show customer addresses.

use serde::Deserialize;

use super::problems::Problems;

/// `[log]`. `format` is `pretty` or `json`; `filter` is a `tracing` filter;
/// `show_addresses` logs customer addresses in full instead of masked (debugging only).
#[derive(Deserialize, Debug, Clone)]
pub struct LogSettings {
    pub format: String,
    pub filter: String,
    pub show_addresses: bool,
}

impl LogSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<LogSettings> {
        if !matches!(self.format.as_str(), "pretty" | "json") {
            p.add(
                "log.format",
                format!("`{}` is not `pretty` or `json`", self.format),
            );
            return None;
        }
        Some(self.clone())
    }
}

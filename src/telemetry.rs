//! Logs: `tracing` with a filter from `log.filter` (or `RUST_LOG`), as text or JSON, and
//! how they show customer addresses (`log.show_addresses`).
//! Nothing here ever sees a body or a secret: the callers log SIDs, and addresses through
//! `CustomerAddress::for_logs`, which masks them unless `log.show_addresses` is on.

mod filter;
mod span_fields;

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

pub use filter::LogFilter;
pub use span_fields::JsonSpanFields;

use crate::config::LogSettings;
use crate::domain::CustomerAddress;

/// Installs the global subscriber once; later calls (tests) are ignored. Applies
/// `log.show_addresses` to the whole process, and warns when it is on.
pub fn init(settings: &LogSettings) {
    CustomerAddress::show_in_logs(settings.show_addresses);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::registry().with(LogFilter::new(filter));
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if settings.format == "json" {
        logs.with(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .fmt_fields(JsonSpanFields),
        )
        .try_init()
    } else {
        logs.with(layer).try_init()
    };
    if settings.show_addresses {
        tracing::warn!(
            "log.show_addresses is on: customer addresses (personal data) are logged unmasked; turn it off once done debugging"
        );
    }
}

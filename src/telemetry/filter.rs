//! `log.filter` as the subscriber's filter, without `EnvFilter`'s bookkeeping of spans
//! where no directive needs it.
//!
//! An `EnvFilter` is told of every span's life: opened, recorded, entered, left and closed.
//! Each time it takes a lock shared by all threads and looks the span up by its id, so that
//! a directive naming a span or a field (`target[span{field=value}]=level`) can enable what
//! happens inside such a span. Every webhook opens a span and enters and leaves it at least
//! once per poll; with a filter such as `info` or `flexhook=debug`, all of that finds nothing.
//! [`LogFilter`] passes those calls on only when a directive names a span or a field.

use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::EnvFilter;

/// An `EnvFilter` that is told of spans only when it needs them (see the module's docs).
#[derive(Debug)]
pub struct LogFilter {
    filter: EnvFilter,
    tracks_spans: bool,
}

impl LogFilter {
    pub fn new(filter: EnvFilter) -> Self {
        // A directive is written back with `[` exactly when it names a span or a field
        // (`target[span{field}]=level`); a target cannot hold one.
        let tracks_spans = filter.to_string().contains('[');
        Self {
            filter,
            tracks_spans,
        }
    }

    /// Whether a directive names a span or a field, so that spans are passed on.
    pub fn tracks_spans(&self) -> bool {
        self.tracks_spans
    }
}

impl<S: Subscriber> Layer<S> for LogFilter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(&self.filter, metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        Layer::<S>::enabled(&self.filter, metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<S>::max_level_hint(&self.filter)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if self.tracks_spans {
            Layer::<S>::on_new_span(&self.filter, attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if self.tracks_spans {
            Layer::<S>::on_record(&self.filter, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.tracks_spans {
            Layer::<S>::on_enter(&self.filter, id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.tracks_spans {
            Layer::<S>::on_exit(&self.filter, id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if self.tracks_spans {
            Layer::<S>::on_close(&self.filter, id, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Each event's message, as the subscriber (`filter` in front of a registry) let it through.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Message<'a>(&'a mut String);
            impl tracing::field::Visit for Message<'_> {
                fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    *self.0 = format!("{value:?}");
                }
            }
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0.lock().unwrap().push(message);
        }
    }

    /// What gets through `directives`: events at each level, inside and outside a span
    /// named `webhook` whose `route` is `taskrouter`.
    fn logged_with(directives: &str) -> (bool, Vec<String>) {
        let filter = LogFilter::new(EnvFilter::new(directives));
        let tracks_spans = filter.tracks_spans();
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("debug outside");
            tracing::info!("info outside");
            let span = tracing::info_span!("webhook", route = "taskrouter");
            let _entered = span.enter();
            tracing::debug!("debug inside");
            tracing::info!("info inside");
        });
        let logged = seen.0.lock().unwrap().clone();
        (tracks_spans, logged)
    }

    #[test]
    fn a_filter_without_span_directives_filters_as_env_filter_does() {
        let info: &[&str] = &["info outside", "info inside"];
        let cases: [(&str, &[&str]); 4] = [
            ("info", info),
            ("warn,flexhook::telemetry=info", info),
            // Another target's directive does not touch this module's events.
            ("warn,sqlx=debug", &[]),
            (
                "debug",
                &[
                    "debug outside",
                    "info outside",
                    "debug inside",
                    "info inside",
                ],
            ),
        ];
        for (directives, expected) in cases {
            let (tracks_spans, logged) = logged_with(directives);
            assert!(!tracks_spans, "{directives}");
            assert_eq!(logged, expected, "{directives}");
        }
    }

    #[test]
    fn a_span_directive_still_enables_what_happens_inside_its_span() {
        let (tracks_spans, logged) = logged_with("info,[webhook{route=taskrouter}]=debug");
        assert!(tracks_spans);
        // Only inside the span is `debug` on: which needs the span's life passed on.
        assert_eq!(logged, ["info outside", "debug inside", "info inside"]);
        let (tracks_spans, logged) = logged_with("info,[webhook{route=conversations}]=debug");
        assert!(tracks_spans);
        assert_eq!(logged, ["info outside", "info inside"]);
    }
}

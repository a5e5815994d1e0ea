use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use serde_json::Value;
use tracing::field::Empty;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::FormatFields;

use super::*;

/// What a subscriber wrote, line by line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const AWKWARD: &str =
    "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} nul \u{0} \u{1f} é 😀 </script>";

/// Runs `log` with JSON logs set up as `telemetry::init` sets them up, `fields` formatting
/// the spans; the last line logged, parsed.
fn last_line_logged<N>(fields: N, log: impl FnOnce()) -> Value
where
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .fmt_fields(fields)
        .finish();
    tracing::subscriber::with_default(subscriber, log);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().last().expect("one line logged");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Logs, with `fields` as the span formatter, spans with fields of every kind (some recorded
/// later, one twice), and an event in them; the event's line parsed.
fn logged_with<N>(fields: N) -> Value
where
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    last_line_logged(fields, || {
        let outer = tracing::info_span!("outer", r#type = "webhook", empty = Empty);
        let _outer = outer.enter();
        let span = tracing::info_span!(
            "inner",
            route = "conversations",
            request_id = %"0123abcd",
            awkward = AWKWARD,
            count = 7u64,
            delta = -3i64,
            ratio = 0.5f64,
            nan = f64::NAN,
            flag = true,
            debugged = ?("note", AWKWARD),
            conversation = Empty,
            retry_count = Empty,
            task = Empty,
        );
        span.record("conversation", "CH00000000000000000000000000000001");
        span.record("retry_count", 2u64);
        span.record("task", "WT1");
        span.record("task", "WT2");
        let error = io::Error::other(AWKWARD);
        span.record("awkward", tracing::field::display(&error));
        let _inner = span.enter();
        tracing::info!(field = "on the event", "an event");
    })
}

#[test]
fn spans_log_as_tracing_subscribers_own_json_fields_log_them() {
    let ours = logged_with(JsonSpanFields);
    let theirs = logged_with(JsonFields::new());
    assert_eq!(ours["span"], theirs["span"], "{ours}\n{theirs}");
    assert_eq!(ours["spans"], theirs["spans"], "{ours}\n{theirs}");
    // And what that is: every kind of value, the later ones, the last of a repeat.
    let span = &ours["span"];
    assert_eq!(span["name"], "inner");
    assert_eq!(span["request_id"], "0123abcd");
    assert_eq!(span["awkward"], AWKWARD);
    assert_eq!(span["count"], 7);
    assert_eq!(span["delta"], -3);
    assert_eq!(span["ratio"], 0.5);
    assert_eq!(span["nan"], Value::Null);
    assert_eq!(span["flag"], true);
    assert_eq!(span["debugged"], format!("{:?}", ("note", AWKWARD)));
    assert_eq!(span["conversation"], "CH00000000000000000000000000000001");
    assert_eq!(span["retry_count"], 2);
    assert_eq!(span["task"], "WT2");
    assert_eq!(ours["spans"][0]["type"], "webhook", "r# is dropped: {ours}");
    assert!(ours["spans"][0].get("empty").is_none(), "{ours}");
    assert_eq!(ours["field"], "on the event");
}

#[test]
fn a_span_with_no_fields_then_one_is_an_object() {
    let mut fields = FormattedFields::<JsonSpanFields>::new(String::new());
    let record_into = |fields: &mut FormattedFields<JsonSpanFields>, value: &str| {
        let span = tracing::info_span!("s", later = Empty);
        let values = [(
            &span.metadata().unwrap().fields().field("later").unwrap(),
            Some(&value as &dyn tracing::Value),
        )];
        let values = span.metadata().unwrap().fields().value_set(&values);
        JsonSpanFields
            .add_fields(fields, &tracing::span::Record::new(&values))
            .unwrap();
    };
    let span = tracing::info_span!("s");
    let none = span.metadata().unwrap().fields().value_set(&[]);
    JsonSpanFields
        .format_fields(fields.as_writer(), tracing::span::Record::new(&none))
        .unwrap();
    assert_eq!(fields.fields, "{}");
    record_into(&mut fields, "a");
    assert_eq!(fields.fields, r#"{"later":"a"}"#);
    record_into(&mut fields, "b");
    assert_eq!(fields.fields, r#"{"later":"a","later":"b"}"#);
}

/// A field whose `Debug` opens a span of its own, as a careless one might.
struct OpensASpan;

impl std::fmt::Debug for OpensASpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _inner = tracing::info_span!("nested", inner = "field").entered();
        f.write_str("opened")
    }
}

#[test]
fn a_span_formatted_while_another_is_is_still_right() {
    let line = last_line_logged(JsonSpanFields, || {
        let long = "x".repeat(MAX_SCRATCH + 1);
        let _outer =
            tracing::info_span!("outer", field = ?OpensASpan, long = long.as_str(), after = 1u64)
                .entered();
        tracing::info!("in it");
    });
    assert_eq!(line["span"]["name"], "outer", "{line}");
    assert_eq!(line["span"]["field"], "opened", "{line}");
    assert_eq!(
        line["span"]["long"].as_str().map(str::len),
        Some(MAX_SCRATCH + 1)
    );
    assert_eq!(line["span"]["after"], 1, "{line}");
    SCRATCH.with(|scratch| assert!(scratch.borrow().capacity() <= MAX_SCRATCH));
}

proptest! {
    #[test]
    fn any_string_reads_back_as_itself(s in any::<String>()) {
        let mut out = String::new();
        write_json_str(&mut out, &s).unwrap();
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s.clone());
        prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
    }
}

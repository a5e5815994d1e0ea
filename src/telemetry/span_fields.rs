//! A span's fields as a JSON object, written without building a map of values first.
//!
//! tracing-subscriber's own `JsonFields` builds a map of `serde_json::Value`s for every new
//! span, and parses and rewrites the whole object whenever a field is recorded later. Every
//! webhook opens a span, so that was about 4% of the hot path's CPU. This writes the same
//! object (`{"name":value,...}`) directly: a new span's fields are written once, and a
//! later field is appended before the closing brace. A field recorded twice appears twice;
//! the JSON event formatter reads the object back with `serde_json`, where the last one wins,
//! as with `JsonFields`.

use std::cell::RefCell;
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// `FormatFields` for JSON logs' spans (see the module's docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    /// Writes the object into a scratch buffer first, then into `writer` at once, so that a
    /// new span's own buffer is allocated once, at its size, rather than grown field by field.
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut object) => {
                object.clear();
                let written =
                    write_object(&mut *object, fields).and_then(|()| writer.write_str(&object));
                // One huge field does not keep its room for ever.
                if object.capacity() > MAX_SCRATCH {
                    *object = String::with_capacity(SCRATCH_SIZE);
                }
                written
            }
            // A field's `Debug` that logs, formatting a span while this one is formatted.
            Err(_) => write_object(&mut writer, fields),
        })
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let object = &mut current.fields;
        if object.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        // Written by `format_fields`, so `{…}`: reopened, the new members appended.
        if object.pop() != Some('}') {
            return Err(fmt::Error);
        }
        let empty = object.len() == 1;
        let mut members = Members::new(object, empty);
        fields.record(&mut members);
        let written = members.result;
        object.push('}');
        written
    }
}

const SCRATCH_SIZE: usize = 256;
const MAX_SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<String> = RefCell::new(String::with_capacity(SCRATCH_SIZE));
}

/// The fields as a JSON object.
fn write_object(out: &mut dyn Write, fields: impl RecordFields) -> fmt::Result {
    out.write_char('{')?;
    let mut members = Members::new(out, true);
    fields.record(&mut members);
    members.result?;
    out.write_char('}')
}

/// Writes each visited field as a `"name":value` member, comma-separated.
struct Members<'a> {
    out: &'a mut dyn Write,
    first: bool,
    result: fmt::Result,
}

impl<'a> Members<'a> {
    fn new(out: &'a mut dyn Write, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    /// Writes `"name":` then the value, unless an earlier write failed.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut dyn Write) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let separator = if self.first { "" } else { "," };
        self.first = false;
        self.result = (|| {
            self.out.write_str(separator)?;
            write_json_str(self.out, name)?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl Visit for Members<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_json_str(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }

    /// As `serde_json` writes one: `null` when not finite.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value}")?;
            out.write_char('"')
        });
    }
}

/// `s` as a JSON string, quotes included.
fn write_json_str(out: &mut dyn Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string, as `serde_json` does: `"`, `\`
/// and the control characters; everything else (all of Unicode) as it is.
struct Escaped<'a>(&'a mut dyn Write);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most values (ids, SIDs, routes) need no escape: one quick scan, then one write.
        if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (at, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests;

//! A form body's pairs, decoded strictly as Twilio encodes them (`+` and `%XX`, UTF-8).
//!
//! Every webhook's body is a form of a dozen or two pairs, so the decoded text lives in one
//! buffer, with where each name and value ends in it: two allocations per body rather than
//! two per pair.

use std::fmt;

/// Decoded name-value pairs, in order, repeats kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    /// Every name and value, one after the other.
    text: String,
    /// Where each pair's name, then its value, ends in `text`.
    ends: Vec<(usize, usize)>,
}

impl Form {
    /// `None` when the body is not strictly encoded: a lenient parser would turn a malformed
    /// escape or byte into text the signature never covered (`%FF` into U+FFFD).
    pub fn decode(body: &[u8]) -> Option<Self> {
        // Decoding never lengthens: the text fits in the body's length.
        let mut text = Vec::with_capacity(body.len());
        // Room for a webhook's usual dozen or two pairs; it grows for more, as they come (so
        // a body of nothing but `&`, empty pairs all skipped, reserves nothing more).
        let mut ends = Vec::with_capacity(24);
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            decode_into(name, &mut text)?;
            let name_end = text.len();
            decode_into(value, &mut text)?;
            ends.push((name_end, text.len()));
        }
        // UTF-8 as a whole, and no character split between a name and a value or two pairs:
        // so each name and value is UTF-8 on its own.
        let text = String::from_utf8(text).ok()?;
        ends.iter()
            .all(|&(name_end, value_end)| {
                text.is_char_boundary(name_end) && text.is_char_boundary(value_end)
            })
            .then_some(Self { text, ends })
    }

    /// The pairs, in order.
    pub fn iter(&self) -> Pairs<'_> {
        Pairs {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }

    /// The first value of `name`. Names are compared as bytes, before any is sliced out.
    pub fn get(&self, name: &str) -> Option<&str> {
        let mut start = 0;
        for &(name_end, value_end) in &self.ends {
            if self.text.as_bytes().get(start..name_end) == Some(name.as_bytes()) {
                return self.text.get(name_end..value_end);
            }
            start = value_end;
        }
        None
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs as owned strings.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// One name or value decoded onto `out`: `+` is a space and every `%` starts two hex digits.
/// (UTF-8 is checked once, over the whole text.) The text between escapes is copied a run at
/// a time.
fn decode_into(mut raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    while let Some(at) = raw.iter().position(|&b| b == b'%' || b == b'+') {
        out.extend_from_slice(&raw[..at]);
        if raw[at] == b'+' {
            out.push(b' ');
            raw = &raw[at + 1..];
        } else {
            let (high, low) = (hex(*raw.get(at + 1)?)?, hex(*raw.get(at + 2)?)?);
            out.push(high << 4 | low);
            raw = &raw[at + 3..];
        }
    }
    out.extend_from_slice(raw);
    Some(())
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// [`Form::iter`]'s iterator.
#[derive(Clone)]
pub struct Pairs<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (usize, usize)>,
    /// Where the next name starts.
    start: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let &(name_end, value_end) = self.ends.next()?;
        let start = std::mem::replace(&mut self.start, value_end);
        Some((&self.text[start..name_end], &self.text[name_end..value_end]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Pairs<'_> {}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Form {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut form = Self::default();
        for (name, value) in pairs {
            form.text.push_str(name.as_ref());
            let name_end = form.text.len();
            form.text.push_str(value.as_ref());
            form.ends.push((name_end, form.text.len()));
        }
        form
    }
}

impl From<Vec<(String, String)>> for Form {
    fn from(pairs: Vec<(String, String)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

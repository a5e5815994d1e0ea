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
        // Decoding never lengthens: the text fits in the body's length. It is written by
        // index into a buffer of that length and one word more (plain bytes are copied a word
        // at a time, and a copy may run past what it keeps), then cut to size.
        let mut text = vec![0; body.len() + WORD];
        let mut len = 0;
        // Room for a webhook's usual dozen or two pairs; it grows for more, as they come (so
        // a body of nothing but `&`, empty pairs all skipped, reserves nothing more).
        let mut ends = Vec::with_capacity(24);
        // Where the pair being read has its name end in `text`, once its `=` is read.
        let mut name_end = None;
        // Whether the pair being read has any byte yet (an empty one is skipped).
        let mut in_pair = false;
        let mut at = 0;
        while at < body.len() {
            // Plain bytes a word at a time: the word is copied whole, and kept up to its first
            // byte that is not plain. That byte, if the word has one, is read next, below,
            // without testing a word again: most runs end within a word.
            if let Some(word) = body[at..].first_chunk::<WORD>() {
                let plain = plain_run(word);
                text.get_mut(len..len + WORD)?.copy_from_slice(word);
                if plain > 0 {
                    (len, at, in_pair) = (len + plain, at + plain, true);
                }
                if plain == WORD {
                    continue;
                }
            }
            let byte = body[at];
            at += 1;
            let decoded = match byte {
                b'&' => {
                    if in_pair {
                        ends.push((name_end.unwrap_or(len), len));
                    }
                    (name_end, in_pair) = (None, false);
                    continue;
                }
                b'=' if name_end.is_none() => {
                    (name_end, in_pair) = (Some(len), true);
                    continue;
                }
                b'+' => b' ',
                b'%' => {
                    let &[high, low] = body.get(at..at + 2)? else {
                        return None;
                    };
                    at += 2;
                    hex(high)? << 4 | hex(low)?
                }
                _ => byte,
            };
            *text.get_mut(len)? = decoded;
            len += 1;
            in_pair = true;
        }
        if in_pair {
            ends.push((name_end.unwrap_or(len), len));
        }
        text.truncate(len);
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

/// The bytes [`Form::decode`] copies a word at a time.
const WORD: usize = 8;

/// How many of `word`'s bytes, from its first, are plain (decode as themselves: not `&`, `=`,
/// `+` or `%`), found for the whole word at once.
fn plain_run(word: &[u8; WORD]) -> usize {
    let word = u64::from_le_bytes(*word);
    let special = [b'&', b'=', b'+', b'%'].into_iter().fold(0, |found, byte| {
        found | zero_bytes(word ^ u64::from_le_bytes([byte; WORD]))
    });
    // Little-endian: the first byte is the lowest. No special byte: 64 / 8, the whole word.
    (special.trailing_zeros() / 8) as usize
}

/// The high bit set in each byte of `word` that is zero, and in no other (no carry crosses
/// from one byte into the next).
fn zero_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !(((word & LOW7) + LOW7) | word | LOW7)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{plain_run, Form};

    fn lenient(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    proptest! {
        #[test]
        fn a_words_plain_run_ends_at_its_first_special_byte(word in any::<[u8; 8]>(), at in 0..9usize, special in prop_oneof![Just(b'&'), Just(b'='), Just(b'+'), Just(b'%')]) {
            let mut word = word;
            if let Some(byte) = word.get_mut(at) {
                *byte = special;
            }
            let expected = word.iter().position(|b| b"&=+%".contains(b)).unwrap_or(8);
            prop_assert_eq!(plain_run(&word), expected);
        }

        /// Whatever Twilio's encoding makes of any pairs decodes back to exactly them.
        #[test]
        fn encoded_pairs_decode_to_themselves(pairs in proptest::collection::vec((".*", ".*"), 0..12)) {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let form = Form::decode(body.as_bytes());
            prop_assert_eq!(form.map(|f| f.to_pairs()), Some(pairs));
        }

        /// Any body it accepts, it reads as the WHATWG parser does; it refuses only what that
        /// parser would have to repair (a bad escape, invalid UTF-8).
        #[test]
        fn an_accepted_body_reads_as_the_whatwg_parser_reads_it(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'&'), Just(b'='), Just(b'+'), Just(b'%'), Just(b'2'), Just(b'F'),
                    Just(b'C'), Just(b'3'), Just(b'a'), Just(0xC3), Just(0xA9), any::<u8>()
                ],
                0..48,
            )
        ) {
            match Form::decode(&body) {
                Some(form) => prop_assert_eq!(form.to_pairs(), lenient(&body)),
                None => {
                    let bad_escape = body.iter().enumerate().any(|(i, &b)| {
                        b == b'%'
                            && !(body.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                                && body.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                    });
                    let repaired = lenient(&body)
                        .iter()
                        .any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}'));
                    prop_assert!(
                        bad_escape || repaired,
                        "refused a clean body: {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }
}

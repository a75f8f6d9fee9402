//! The log line's JSON object, written straight into the line's buffer:
//! byte for byte what serde_json writes (the `json_object` fuzz target
//! holds it to that).
//!
//! serde_json checks each byte of each key and string against its escape
//! table one at a time, which was the largest cost of an access log line
//! (docs/performance.md). Nearly every string in a line needs no escape:
//! [`needs_escape`] finds that eight bytes at a time, and the string is
//! copied whole; a string that does need escaping is left to serde_json.
//! The path to the copy is inlined (`#[inline(always)]`), so a key known
//! when compiling, as all of the access line's are, is checked then and
//! copied as a constant.

use std::fmt;

use serde::Serialize;

/// A JSON object being written into `line`, whose `{` is already there;
/// `empty` until its first entry. The caller writes the closing `}`.
pub(crate) struct Object<'a> {
    pub(crate) line: &'a mut Vec<u8>,
    pub(crate) empty: bool,
}

impl Object<'_> {
    #[inline(always)]
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.line, value);
    }

    /// Formatted text as a JSON string, escaped fragment by fragment as it
    /// is formatted (serde_json's `collect_str` does the same).
    pub(crate) fn text(&mut self, key: &str, value: fmt::Arguments<'_>) {
        self.key(key);
        self.line.push(b'"');
        // Into a Vec, formatting fails only if a `Display` impl does.
        let _ = fmt::write(&mut Fragments(self.line), value);
        self.line.push(b'"');
    }

    /// Numbers, booleans and a span's kept values, by serde_json itself.
    pub(crate) fn value(&mut self, key: &str, value: &(impl Serialize + ?Sized)) {
        self.key(key);
        // Into a Vec, serializing these cannot fail.
        let _ = serde_json::to_writer(&mut *self.line, value);
    }

    #[inline(always)]
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.empty) {
            self.line.push(b',');
        }
        string(self.line, key);
        self.line.push(b':');
    }
}

/// `s` as a JSON string.
#[inline(always)]
fn string(line: &mut Vec<u8>, s: &str) {
    line.push(b'"');
    fragment(line, s);
    line.push(b'"');
}

/// `s` escaped, without quotes: serde_json escapes exactly the control
/// characters, `"` and `\`.
#[inline(always)]
fn fragment(line: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        escaped(line, s);
    } else {
        line.extend_from_slice(s.as_bytes());
    }
}

/// `s` escaped by serde_json, without quotes: out of line, as it is rare.
#[cold]
#[inline(never)]
fn escaped(line: &mut Vec<u8>, s: &str) {
    let start = line.len();
    // Into a Vec, serializing a string cannot fail.
    let _ = serde_json::to_writer(&mut *line, s);
    line.pop();
    line.remove(start);
}

/// Whether `bytes` holds a byte JSON escapes (a control character, `"` or
/// `\`): eight bytes at a time, with the word tricks of "Bit Twiddling
/// Hacks" (`hasless`, `haszero`), exact for "any such byte?". Byte at a
/// time, the check cost ~7 instructions per byte; the strings of a line are
/// 4–40 bytes, too short for SIMD to pay.
#[inline(always)]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Some byte of `word` is below `n` (n ≤ 128).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let special = |word: u64| {
        below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1)
    };
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
    let found = match bytes.len() {
        // Padded with spaces, which need no escape.
        0..8 => {
            let mut padded = [b' '; 8];
            padded[..bytes.len()].copy_from_slice(bytes);
            special(u64::from_ne_bytes(padded))
        }
        // Whole words, then the last eight bytes (overlapping the words).
        len => bytes.chunks_exact(8).fold(special(word(&bytes[len - 8..])), |any, chunk| any | special(word(chunk))),
    };
    found != 0
}

struct Fragments<'a>(&'a mut Vec<u8>);

impl fmt::Write for Fragments<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        fragment(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Object` writes for these entries, and what serde_json writes
    /// for each key and value.
    fn both(entries: &[(&str, &str)]) -> (String, String) {
        let mut line = b"{".to_vec();
        let mut object = Object { line: &mut line, empty: true };
        let mut serde = Vec::new();
        for (key, value) in entries {
            object.str(key, value);
            let json = |s: &str| serde_json::to_string(s).expect("serialize");
            serde.push(format!("{}:{}", json(key), json(value)));
        }
        line.push(b'}');
        (String::from_utf8(line).expect("utf8"), format!("{{{}}}", serde.join(",")))
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in ["", "request", "a\"b", "back\\slash", "tab\tnew\nline\r", "\u{0}\u{1f}\u{7f}", "é ü \u{202e} 🦀"]
        {
            let (ours, serde) = both(&[("k", s), (s, "v")]);
            assert_eq!(ours, serde, "for {s:?}");
        }
    }

    #[test]
    fn text_is_escaped_as_it_is_formatted() {
        let mut line = b"{".to_vec();
        let mut object = Object { line: &mut line, empty: true };
        object.text("message", format_args!("{:?} and {}", "quoted", "tab\there"));
        line.push(b'}');
        let expected = serde_json::json!({ "message": "\"quoted\" and tab\there" }).to_string();
        assert_eq!(String::from_utf8(line).expect("utf8"), expected);
    }

    /// Every byte value, at every position of strings of 0 to 24 bytes.
    #[test]
    fn needs_escape_finds_exactly_the_bytes_json_escapes() {
        for len in 0..=24 {
            for at in 0..len {
                for b in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let expected = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(needs_escape(&bytes), expected, "byte {b:#04x} at {at} of {len}");
                }
            }
            assert!(!needs_escape(&vec![0xff; len]), "high bytes need no escape");
        }
    }

    #[test]
    fn values_and_separators() {
        let mut line = b"{".to_vec();
        let mut object = Object { line: &mut line, empty: true };
        object.value("status", &200u16);
        object.value("latency_ms", &1.5f64);
        object.value("nan", &f64::NAN);
        object.value("ok", &true);
        line.push(b'}');
        assert_eq!(String::from_utf8(line).expect("utf8"), r#"{"status":200,"latency_ms":1.5,"nan":null,"ok":true}"#);
    }
}

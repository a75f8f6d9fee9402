//! The log line's JSON object, written straight into the line's buffer:
//! byte for byte what serde_json writes (the `json_object` fuzz target
//! holds it to that).
//!
//! serde_json checks each byte of each key and string against its escape
//! table one at a time, which was the largest cost of an access log line
//! (docs/performance.md). Nearly every string in a line needs no escape:
//! one pass the compiler vectorises finds that, and the string is copied
//! whole; a string that does need escaping is left to serde_json.

use std::fmt;

use serde::Serialize;

/// A JSON object being written into `line`, whose `{` is already there;
/// `empty` until its first entry. The caller writes the closing `}`.
pub(crate) struct Object<'a> {
    pub(crate) line: &'a mut Vec<u8>,
    pub(crate) empty: bool,
}

impl Object<'_> {
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

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.empty) {
            self.line.push(b',');
        }
        string(self.line, key);
        self.line.push(b':');
    }
}

/// `s` as a JSON string.
fn string(line: &mut Vec<u8>, s: &str) {
    line.push(b'"');
    fragment(line, s);
    line.push(b'"');
}

/// `s` escaped, without quotes: serde_json escapes exactly the control
/// characters, `"` and `\`.
fn fragment(line: &mut Vec<u8>, s: &str) {
    // `|`, not `||`: no early exit, so the loop is vectorised.
    let escape = s.bytes().fold(false, |any, b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !escape {
        line.extend_from_slice(s.as_bytes());
        return;
    }
    let start = line.len();
    // Into a Vec, serializing a string cannot fail.
    let _ = serde_json::to_writer(&mut *line, s);
    line.pop();
    line.remove(start);
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

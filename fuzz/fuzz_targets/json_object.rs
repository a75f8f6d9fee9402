//! The log line's JSON writer (src/telemetry/cloud_logging/json.rs) copies
//! strings that need no escape whole and hands the rest to serde_json: for
//! every key and value, what it writes must be byte for byte serde_json's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wordcount::fuzzing::json_object_agrees_with_serde_json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first NUL, if any, splits key from value.
    let (key, value) = text.split_once('\0').unwrap_or((&text, ""));
    json_object_agrees_with_serde_json(key, value);
});

//! BigQuery answers as the service decodes them: `jobs.query` and
//! `jobs.getQueryResults` bodies (serde model, then rows by schema) and
//! error bodies (what a non-2xx answer is classified as). An upstream, or
//! anything between us and it, must not be able to crash the service; a
//! body that cannot be used is `Malformed`, which the cache treats as a
//! failed refresh.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use wordcount::Error;
use wordcount::error::SOURCE_ERROR_REASONS;
use wordcount::fuzzing::{classify_error_body, decode_query_response, decode_query_results};

/// The body's `rows` array, read independently of the typed model. Each row
/// is skipped as `IgnoredAny`, the way serde skips any field the model does
/// not know: it checks neither UTF-8, nor number range, nor surrogate
/// escapes, nor nesting depth. A stricter reader (`serde_json::Value`)
/// refuses bodies the service rightly accepts.
#[derive(serde::Deserialize)]
struct RowsOnly {
    rows: Option<Vec<IgnoredAny>>,
}

fn row_count(json: &[u8]) -> Option<usize> {
    let body: RowsOnly = serde_json::from_slice(json).ok()?;
    Some(body.rows.map_or(0, |rows| rows.len()))
}

fuzz_target!(|data: &[u8]| {
    for decode in [decode_query_response, decode_query_results] {
        match decode(data) {
            Ok(rows) => {
                // Every row of the body became one row of the answer.
                assert_eq!(Some(rows.len()), row_count(data), "rows lost or invented");
                // The total shown to users must not overflow whatever the counts.
                let counts = wordcount::source::Counts::new(rows);
                let total = counts.total();
                assert!(counts.rows.iter().all(|r| r.total_words <= total));
            }
            Err(Error::Malformed(_)) => {}
            Err(other) => panic!("decode failure must be Malformed, got {other:?}"),
        }
    }
    let err = classify_error_body(data);
    assert!(SOURCE_ERROR_REASONS.contains(&err.reason()), "{err:?} has no source-error label");
    // What a user would see when no stale data is left: 503, never a 500.
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
});

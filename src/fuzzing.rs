//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from
//! the docs and free to change with them).
//!
//! Each function is a thin wrapper around the code the service runs on
//! untrusted input, so the fuzzer exercises the real thing, not a copy:
//! the wrapped items stay `pub(crate)` and only these wrappers are public.
//! The HTTP path needs no wrapper: [`crate::server::http1_builder`] and
//! [`crate::server::connection_service`] are what `server::run` uses.

use gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse;
use gcp_bigquery_client::model::query_response::QueryResponse;

use crate::error::{Error, Result};
use crate::source::Row;

/// The filter `routes::handle` applies to a client's `X-Request-Id` before
/// echoing it.
pub fn is_safe_request_id(id: &str) -> bool {
    crate::routes::is_safe_request_id(id)
}

/// A `jobs.query` response body as the service decodes it: the client's
/// serde model (a body it cannot parse is `Malformed`, as the service's
/// calls do), then the rows by schema.
pub fn decode_query_response(json: &[u8]) -> Result<Vec<Row>> {
    let response: QueryResponse = serde_json::from_slice(json).map_err(|e| Error::Malformed(e.to_string()))?;
    crate::bigquery::decode_rows(response.schema.as_ref(), response.rows.as_deref().unwrap_or_default())
}

/// A `jobs.getQueryResults` page, decoded like [`decode_query_response`].
pub fn decode_query_results(json: &[u8]) -> Result<Vec<Row>> {
    let response: GetQueryResultsResponse =
        serde_json::from_slice(json).map_err(|e| Error::Malformed(e.to_string()))?;
    crate::bigquery::decode_rows(response.schema.as_ref(), response.rows.as_deref().unwrap_or_default())
}

/// An error body of a 502 answer and what the service makes of it (the
/// body's own code wins when it is Google's JSON error).
pub fn classify_error_body(json: &[u8]) -> Error {
    crate::bigquery::classify_error(http::StatusCode::BAD_GATEWAY, json)
}

/// The log line's JSON writer against serde_json, which it stands in for:
/// panics unless an object of `key: value` entries and a formatted text
/// entry is byte for byte what serde_json writes.
pub fn json_object_agrees_with_serde_json(key: &str, value: &str) {
    use crate::telemetry::cloud_logging::json::Object;
    let mut line = b"{".to_vec();
    let mut object = Object { line: &mut line, empty: true };
    object.str(key, value);
    object.str(value, key);
    object.text("text", format_args!("{key}{value:?}"));
    line.push(b'}');
    // A string always serializes; were it not to, the comparison fails.
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let text = format!("{key}{value:?}");
    let expected = format!("{{{}:{},{}:{},\"text\":{}}}", json(key), json(value), json(value), json(key), json(&text));
    assert_eq!(String::from_utf8_lossy(&line), expected, "key {key:?}, value {value:?}");
}

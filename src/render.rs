//! What the routes answer with: the HTML page (templates/index.html,
//! askama-escaped) and the JSON document for a snapshot of counts, both
//! formats of "no data", and the responses around them with their headers.
//! Every response is built by [`respond`] or [`cached_answer`], from the
//! same security headers. `routes` decides what to answer and memoises
//! rendered bodies.

use std::cell::RefCell;
use std::sync::LazyLock;

use askama::Template;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use time::OffsetDateTime;

use crate::cache::{Served, Snapshot};
use crate::source::{Row, WordMatch};

pub type Body = Full<Bytes>;

/// The page needs nothing but its own markup and the one `<style>` block of
/// templates/index.html, allowed by its hash (tests/api/routes.rs recomputes
/// it from the served page): no scripts, other styles, images, frames or forms.
const CSP: &str = "default-src 'none'; style-src 'sha256-pm8Sl+PmjWwD0mnwnUYKCRpg/fzgRRT7Mrmtq4BjUEk='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Header names as constants: inserting by `&str` would parse and allocate
// the name on every response.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_DATA_STALE: HeaderName = HeaderName::from_static("x-data-stale");

/// What every answer says besides the counts.
pub struct Labels<'a> {
    pub word: &'a str,
    pub word_match: WordMatch,
    /// How the page names the data source, e.g. "BigQuery table p.d.t".
    pub source_label: &'a str,
    /// The source's kind, for the JSON (`sample`, `file`, `bigquery`).
    pub source_kind: &'static str,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    word: &'a str,
    rows: &'a [Row],
    total: u64,
    source: &'a str,
    fetched_at: String,
    stale: bool,
    match_note: &'static str,
}

#[derive(Template)]
#[template(path = "unavailable.html")]
struct UnavailablePage<'a> {
    word: &'a str,
    request_id: &'a str,
}

#[derive(Serialize)]
struct CountsBody<'a> {
    word: &'a str,
    word_match: &'static str,
    source: &'static str,
    rows: &'a [Row],
    total: u64,
    fetched_at: String,
    stale: bool,
}

/// The HTML page for `snapshot`.
pub fn index(labels: &Labels, snapshot: &Snapshot, stale: bool) -> Result<Bytes, String> {
    let page = IndexPage {
        word: labels.word,
        rows: &snapshot.counts.rows,
        total: snapshot.counts.total(),
        source: labels.source_label,
        fetched_at: rfc3339(snapshot.fetched_at),
        stale,
        match_note: match labels.word_match {
            WordMatch::Exact => "exact match, case-sensitive",
            WordMatch::IgnoreCase => "case-insensitive match",
        },
    };
    page.render().map(Bytes::from).map_err(|e| e.to_string())
}

/// The JSON document for `snapshot`.
pub fn counts(labels: &Labels, snapshot: &Snapshot, stale: bool) -> Result<Bytes, String> {
    let body = CountsBody {
        word: labels.word,
        word_match: labels.word_match.as_str(),
        source: labels.source_kind,
        rows: &snapshot.counts.rows,
        total: snapshot.counts.total(),
        fetched_at: rfc3339(snapshot.fetched_at),
        stale,
    };
    serde_json::to_vec(&body).map(Bytes::from).map_err(|e| e.to_string())
}

/// The HTML page when there is no data at all to show.
pub fn unavailable_page(word: &str, request_id: &str) -> Result<String, String> {
    (UnavailablePage { word, request_id }).render().map_err(|e| e.to_string())
}

/// The JSON document when there is no data at all to show.
pub fn unavailable_json(word: &str) -> String {
    serde_json::json!({ "error": "data source unavailable", "word": word }).to_string()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `response`, with the connection closed after it.
pub(crate) fn closing(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A cached answer's response. Caches may keep a fresh answer for as long
/// as it stays fresh here; a stale one must not be kept at all.
/// `X-Data-Stale` says which it is, and `Age` how old the data is (seconds
/// since the source answered).
pub(crate) fn cached_answer(body: Bytes, content_type: &'static str, served: &Served) -> Response<Body> {
    let (age, fresh_for) = (served.age().as_secs(), served.fresh_for.as_secs());
    if served.stale {
        let mut response = respond(StatusCode::OK, body, content_type, "no-store");
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(X_DATA_STALE, HeaderValue::from_static("true"));
        return response;
    }
    let mut response = Response::new(Full::new(body));
    *response.headers_mut() = fresh_headers(content_type, age, fresh_for);
    response
}

/// The headers of a fresh cached answer. They change once a second at
/// most, so each thread builds them once a second (per content type) and
/// every other answer clones the finished map instead of building it
/// header by header (docs/performance.md has the cost). The map includes
/// `X-Request-Id`, for [`crate::routes::handle`] to overwrite without
/// growing the map.
fn fresh_headers(content_type: &'static str, age: u64, fresh_for: u64) -> HeaderMap {
    /// Content type, `Age` and `max-age`: all that varies.
    type FreshKey = (&'static str, u64, u64);
    thread_local! {
        static LAST: RefCell<Vec<(FreshKey, HeaderMap)>> = const { RefCell::new(Vec::new()) };
    }
    LAST.with_borrow_mut(|last| {
        let key = (content_type, age, fresh_for);
        if let Some((_, headers)) = last.iter().find(|(k, _)| *k == key) {
            return headers.clone();
        }
        let mut headers = base_headers(content_type, "");
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={fresh_for}"))
                .unwrap_or(HeaderValue::from_static("no-store")),
        );
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(X_DATA_STALE, HeaderValue::from_static("false"));
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("-"));
        // One entry per content type: the other second's entry is stale.
        last.retain(|((kind, ..), _)| *kind != content_type);
        last.push((key, headers.clone()));
        headers
    })
}

/// A plain-text response; static bodies are sent without a copy.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>, cache_control: &'static str) -> Response<Body> {
    respond(status, body, "text/plain; charset=utf-8", cache_control)
}

/// Every response is built here, so every response carries the security
/// headers.
pub(crate) fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
    cache_control: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    *response.headers_mut() = base_headers(content_type, cache_control);
    response
}

/// The security headers, `Content-Type` and (unless empty) `Cache-Control`:
/// what [`respond`] and [`fresh_headers`] start from.
fn base_headers(content_type: &'static str, cache_control: &'static str) -> HeaderMap {
    let mut headers = SECURITY_HEADERS.clone();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !cache_control.is_empty() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    }
    headers
}

/// The headers every response starts from (see [`respond`]), built once:
/// cloning a ready map is cheaper than hashing five names per request.
static SECURITY_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_headers_follow_the_second_and_the_content_type() {
        let json = fresh_headers("application/json", 3, 297);
        assert_eq!(json[header::CONTENT_TYPE], "application/json");
        assert_eq!(json[header::CACHE_CONTROL], "public, max-age=297");
        assert_eq!(json[header::AGE], "3");
        assert_eq!(json[X_DATA_STALE], "false");
        assert_eq!(json[header::CONTENT_SECURITY_POLICY], CSP);

        let html = fresh_headers("text/html; charset=utf-8", 3, 297);
        assert_eq!(html[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let next_second = fresh_headers("application/json", 4, 296);
        assert_eq!(next_second[header::AGE], "4");
        assert_eq!(next_second[header::CACHE_CONTROL], "public, max-age=296");
        // Still cached for the other content type.
        assert_eq!(fresh_headers("text/html; charset=utf-8", 3, 297), html);
    }
}

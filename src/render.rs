//! What the answers say: the HTML page (templates/index.html,
//! askama-escaped) and the JSON document for a snapshot of counts, and
//! both formats of "no data". The responses around them, with their
//! headers, are built in [`crate::response`]; `routes` decides what to
//! answer and memoises rendered bodies.

use askama::Template;
use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;

use crate::cache::Snapshot;
use crate::source::{Row, WordMatch};

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

//! The parts of the BigQuery v2 REST API the service uses (`jobs.query`,
//! `jobs.getQueryResults`, `jobs.get`) and the jobs behind them.
//! `jobs.query` needs standard SQL (`useLegacySql: false`), named parameters
//! and a STRING parameter `word`; it answers from `data/shakespeare.csv.gz`,
//! not from the SQL text, and fails with `bytesBilledLimitExceeded` when
//! `maximumBytesBilled` is below the table size, as BigQuery does. A
//! repeated `requestId` returns the job it already created instead of a
//! second one. Every request is recorded ([`Recorded`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::serve::{Body, google_error, json_response};
use crate::{Shared, lock, random_hex, unix_ms};

/// Default size of the table: what a query processes and at least what it bills.
pub const DEFAULT_TABLE_BYTES: u64 = 10 * 1024 * 1024;

/// One BigQuery request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Which accepted connection it came on, counting from 0.
    pub connection: usize,
    pub method: String,
    pub path: String,
    /// URL query parameters, decoded.
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub traceparent: Option<String>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn is_jobs_query(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/queries")
    }
    pub fn is_get_query_results(&self) -> bool {
        self.method == "GET" && self.path.contains("/queries/")
    }
    pub fn is_jobs_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/jobs/")
    }
    fn field(&self, name: &str) -> Option<&Value> {
        self.body.as_ref()?.get(name)
    }
    pub fn sql(&self) -> Option<&str> {
        self.field("query")?.as_str()
    }
    /// `(type, value)` of the named query parameter.
    pub fn query_parameter(&self, name: &str) -> Option<(String, String)> {
        query_parameter(self.body.as_ref()?, name)
    }
    pub fn parameter_mode(&self) -> Option<&str> {
        self.field("parameterMode")?.as_str()
    }
    /// `maximumBytesBilled` as sent (an int64, so a JSON string).
    pub fn maximum_bytes_billed(&self) -> Option<String> {
        maximum_bytes_billed(self.body.as_ref()?)
    }
    pub fn use_legacy_sql(&self) -> Option<bool> {
        self.field("useLegacySql")?.as_bool()
    }
    pub fn request_id(&self) -> Option<&str> {
        self.field("requestId")?.as_str()
    }
    /// `location` from the body (`jobs.query`) or the URL (the others).
    pub fn location(&self) -> Option<&str> {
        self.field("location").and_then(Value::as_str).or_else(|| self.param("location"))
    }
    /// The bearer token, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.authorization.as_deref()?.strip_prefix("Bearer ")
    }
    /// The trace id of the `traceparent` header.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref()?.split('-').nth(1)
    }
}

fn query_parameter(body: &Value, name: &str) -> Option<(String, String)> {
    let parameters = body.get("queryParameters")?.as_array()?;
    let p = parameters.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name))?;
    let kind = p.pointer("/parameterType/type")?.as_str()?.to_owned();
    let value = p.pointer("/parameterValue/value")?.as_str()?.to_owned();
    Some((kind, value))
}

fn maximum_bytes_billed(body: &Value) -> Option<String> {
    match body.get("maximumBytesBilled")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A row of `data/shakespeare.csv.gz`.
struct TableRow {
    word: Box<str>,
    count: u64,
    corpus: Box<str>,
}

fn table() -> &'static [TableRow] {
    static TABLE: OnceLock<Vec<TableRow>> = OnceLock::new();
    static CSV_GZ: &[u8] = include_bytes!("../../data/shakespeare.csv.gz");
    TABLE.get_or_init(|| {
        let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(CSV_GZ));
        let headers = reader.headers().expect("CSV header").clone();
        let column = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
        let (word, count, corpus) = (column("word"), column("word_count"), column("corpus"));
        reader
            .records()
            .map(|record| {
                let record = record.expect("CSV record");
                TableRow {
                    word: record[word].into(),
                    count: record[count].parse().expect("word_count is a number"),
                    corpus: record[corpus].into(),
                }
            })
            .collect()
    })
}

/// What BigQuery would answer for the service's query: the sum of
/// `word_count` per corpus for rows whose word equals `word` (case-folded
/// when `ignore_case`), ordered by total descending, then corpus.
pub fn expected_counts(word: &str, ignore_case: bool) -> Vec<(String, u64)> {
    let wanted = word.to_lowercase();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for row in table() {
        let hit = if ignore_case { row.word.to_lowercase() == wanted } else { &*row.word == word };
        if hit {
            *totals.entry(&row.corpus).or_default() += row.count;
        }
    }
    let mut rows: Vec<(String, u64)> = totals.into_iter().map(|(c, n)| (c.to_owned(), n)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

pub(crate) struct Job {
    project: String,
    location: String,
    sql: String,
    rows: Vec<(String, u64)>,
    /// Status answers still to come with `jobComplete: false`.
    polls_left: u32,
    page_tokens: HashMap<String, usize>,
    max_bytes_billed: Option<String>,
    created_ms: u128,
}

fn invalid(message: &str) -> Response<Body> {
    google_error(400, "invalidQuery", "INVALID_ARGUMENT", message)
}

pub(crate) fn jobs_query(shared: &Shared, project: &str, body: &[u8]) -> Response<Body> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return google_error(400, "parseError", "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let Some(sql) = request.get("query").and_then(Value::as_str) else {
        return google_error(400, "required", "INVALID_ARGUMENT", "Required parameter is missing: query");
    };
    // jobs.query defaults to legacy SQL, which has no query parameters.
    if request.get("useLegacySql").and_then(Value::as_bool) != Some(false) {
        return invalid("Query parameters cannot be used in legacy SQL queries.");
    }
    if request.get("parameterMode").and_then(Value::as_str) != Some("NAMED") {
        return invalid("parameterMode must be NAMED for @word.");
    }
    let word = match query_parameter(&request, "word") {
        Some((kind, value)) if kind == "STRING" => value,
        Some((kind, _)) => return invalid(&format!("Query parameter 'word' has type {kind}; STRING expected.")),
        None => return invalid("Undeclared query parameters: word"),
    };
    if !sql.contains("@word") {
        return invalid("The query does not use the parameter @word.");
    }
    let location = request.get("location").and_then(Value::as_str).unwrap_or("US").to_owned();
    let request_id = request.get("requestId").and_then(Value::as_str).map(str::to_owned);
    let max_bytes_billed = maximum_bytes_billed(&request);
    let (table_bytes, incomplete_polls) = {
        let s = lock(&shared.settings);
        (s.table_bytes, s.incomplete_polls)
    };

    // A retried jobs.query with the same requestId joins the job it made.
    let existing = request_id.as_ref().and_then(|id| lock(&shared.request_ids).get(id).cloned());
    let job_id = match existing {
        Some(job_id) => job_id,
        None => {
            let job_id = format!("job_{}", random_hex(12));
            let ignore_case = sql.to_uppercase().contains("LOWER(");
            let job = Job {
                project: project.to_owned(),
                location: location.clone(),
                sql: sql.to_owned(),
                rows: expected_counts(&word, ignore_case),
                polls_left: incomplete_polls,
                page_tokens: HashMap::new(),
                max_bytes_billed: max_bytes_billed.clone(),
                created_ms: unix_ms(),
            };
            lock(&shared.jobs).insert(job_id.clone(), job);
            if let Some(id) = request_id {
                lock(&shared.request_ids).insert(id, job_id.clone());
            }
            shared.counters.jobs_created.fetch_add(1, Ordering::SeqCst);
            job_id
        }
    };

    if let Some(limit) = max_bytes_billed {
        match limit.parse::<u64>() {
            Ok(limit) if limit < table_bytes => {
                return google_error(
                    400,
                    "bytesBilledLimitExceeded",
                    "INVALID_ARGUMENT",
                    &format!("Query exceeded limit for bytes billed: {limit}. {table_bytes} or higher required."),
                );
            }
            Ok(_) => {}
            Err(_) => return invalid(&format!("Invalid int64 value for maximumBytesBilled: {limit:?}")),
        }
    }
    let mut jobs = lock(&shared.jobs);
    let job = jobs.get_mut(&job_id).expect("job just created");
    answer(shared, &job_id, job, "bigquery#queryResponse", 0)
}

/// A status answer for `job`: `jobComplete: false` while polls are left,
/// else the page of rows starting at `start`.
fn answer(shared: &Shared, job_id: &str, job: &mut Job, kind: &str, start: usize) -> Response<Body> {
    let job_reference = json!({ "projectId": job.project, "jobId": job_id, "location": job.location });
    if job.polls_left > 0 {
        job.polls_left -= 1;
        return json_response(
            StatusCode::OK,
            &json!({ "kind": kind, "jobReference": job_reference, "jobComplete": false }),
        );
    }
    let (page_size, table_bytes) = {
        let s = lock(&shared.settings);
        (s.page_size, s.table_bytes)
    };
    let end = start.saturating_add(page_size.unwrap_or(usize::MAX)).min(job.rows.len());
    let rows: Vec<Value> = job.rows[start.min(end)..end]
        .iter()
        .map(|(corpus, total)| json!({ "f": [{ "v": corpus }, { "v": total.to_string() }] }))
        .collect();
    let mut body = json!({
        "kind": kind,
        "schema": { "fields": [
            { "name": "corpus", "type": "STRING", "mode": "NULLABLE" },
            { "name": "total_words", "type": "INTEGER", "mode": "NULLABLE" },
        ]},
        "jobReference": job_reference,
        "totalRows": job.rows.len().to_string(),
        "totalBytesProcessed": table_bytes.to_string(),
        "jobComplete": true,
        "cacheHit": false,
    });
    // BigQuery leaves `rows` out when there are none.
    if !rows.is_empty() {
        body["rows"] = Value::Array(rows);
    }
    if end < job.rows.len() {
        let token = random_hex(16);
        job.page_tokens.insert(token.clone(), end);
        body["pageToken"] = Value::String(token);
    }
    json_response(StatusCode::OK, &body)
}

/// The job `job_id` of `project`, if it is in the location the call names.
fn find_job<'a>(
    jobs: &'a mut HashMap<String, Job>,
    project: &str,
    job_id: &str,
    req: &Recorded,
) -> Option<&'a mut Job> {
    let location = req.param("location");
    jobs.get_mut(job_id).filter(|job| job.project == project && location.is_none_or(|l| l == job.location))
}

fn job_not_found(project: &str, job_id: &str, req: &Recorded) -> Response<Body> {
    let location = req.param("location").unwrap_or("US");
    google_error(404, "notFound", "NOT_FOUND", &format!("Not found: Job {project}:{location}.{job_id}"))
}

pub(crate) fn get_query_results(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<Body> {
    let mut jobs = lock(&shared.jobs);
    let Some(job) = find_job(&mut jobs, project, job_id, req) else {
        return job_not_found(project, job_id, req);
    };
    let start = match req.param("pageToken").map(|token| job.page_tokens.get(token)) {
        None => 0,
        Some(Some(&offset)) => offset,
        Some(None) => return google_error(400, "invalid", "INVALID_ARGUMENT", "Invalid page token."),
    };
    answer(shared, job_id, job, "bigquery#getQueryResultsResponse", start)
}

pub(crate) fn get_job(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<Body> {
    let mut jobs = lock(&shared.jobs);
    let Some(job) = find_job(&mut jobs, project, job_id, req) else {
        return job_not_found(project, job_id, req);
    };
    let processed = lock(&shared.settings).table_bytes;
    // On-demand pricing bills at least 10 MiB per table, in whole MiB.
    let billed = processed.div_ceil(1 << 20).max(10) << 20;
    let done = job.polls_left == 0;
    let mut statistics = json!({ "creationTime": job.created_ms.to_string(), "startTime": job.created_ms.to_string() });
    if done {
        statistics["endTime"] = Value::String(unix_ms().to_string());
        statistics["totalBytesProcessed"] = Value::String(processed.to_string());
        statistics["query"] = json!({
            "totalBytesProcessed": processed.to_string(),
            "totalBytesBilled": billed.to_string(),
            "cacheHit": false,
            "statementType": "SELECT",
        });
    }
    let mut query = json!({ "query": job.sql, "useLegacySql": false, "parameterMode": "NAMED" });
    if let Some(limit) = &job.max_bytes_billed {
        query["maximumBytesBilled"] = Value::String(limit.clone());
    }
    let body = json!({
        "kind": "bigquery#job",
        "id": format!("{}:{}.{job_id}", job.project, job.location),
        "jobReference": { "projectId": job.project, "jobId": job_id, "location": job.location },
        "configuration": { "jobType": "QUERY", "query": query },
        "status": { "state": if done { "DONE" } else { "RUNNING" } },
        "statistics": statistics,
    });
    json_response(StatusCode::OK, &body)
}

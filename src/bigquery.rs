//! The BigQuery source.
//!
//! Runs the original service's aggregation as a parameterised standard-SQL
//! query (`jobs.query`), polls `getQueryResults` while the job is running and
//! reads every page. The word is only ever a named query parameter; the
//! table name comes from validated configuration. Each job carries
//! `maximumBytesBilled`, so a query that would cost more fails instead, and
//! a `requestId`, so a retried `jobs.query` does not start a second job.
//!
//! The three REST calls (`jobs.query`, `jobs.getQueryResults`, `jobs.get`)
//! are made here with gcp-bigquery-client's serde model, not its client: that
//! always sends `Authorization`, even an empty one, and turns a non-JSON error
//! body (a proxy's HTML 502) into a decode error that has lost the status.
//! They go through one hyper-util client with hyper-rustls, the same HTTP and
//! TLS stack (rustls with ring, the system's CA bundle) gcp_auth fetches the
//! tokens with, so the binary carries one HTTP client. Like gcp_auth's, it
//! connects directly: `HTTPS_PROXY` and `HTTP_PROXY` are not read.
//!
//! Credentials come from one gcp_auth provider for the whole process, in
//! gcp_auth's order: the key file in `GOOGLE_APPLICATION_CREDENTIALS`, gcloud
//! application-default credentials, the metadata server (GKE Workload
//! Identity). gcp_auth caches and refreshes tokens. The provider is found on
//! first use, not at start-up: on GKE the metadata server can need a few
//! seconds after the pod starts, and the start-up warm-up retries instead of
//! crashing. With `BIGQUERY_AUTH=none` no `Authorization` header is sent.
//!
//! Transient failures (5xx, rate limits, broken or unreadable responses, a
//! token endpoint out of reach, an attempt that hangs) are retried with
//! exponential back-off and full jitter, all inside `BIGQUERY_TIMEOUT`; an
//! authentication failure is retried once with a fresh token (a new
//! provider, so not gcp_auth's cached one); everything else fails at once.
//! Tokens and keys are never logged or returned.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gcp_bigquery_client::error::ResponseError;
use gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse;
use gcp_bigquery_client::model::job::Job;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::config::BigQuerySettings;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::source::WordMatch;
use crate::source::{Counts, CountsSource, Row};
use crate::trace::{HexId, TraceContext};

mod credentials;
use credentials::Credentials;

const GOOGLE_API_ROOT: &str = "https://bigquery.googleapis.com";
const USER_AGENT_VALUE: &str = concat!("wordcount/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client for every BigQuery call: HTTPS (or plain HTTP, for an emulator
/// or a local fake at `BIGQUERY_ENDPOINT`), connections pooled.
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Attempts per API call, the first included.
const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// The longest one `jobs.query` / `getQueryResults` call asks BigQuery to
/// wait for the job before answering `jobComplete: false`; always kept a
/// second under the attempt's own timeout (see [`BigQuerySource::server_wait`]).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(10);

pub struct BigQuerySource {
    config: BigQuerySettings,
    /// `BIGQUERY_PROJECT`, which [`crate::config::Config::check`] requires.
    project: String,
    /// `{endpoint}/bigquery/v2`.
    v2_url: Url,
    http: HttpClient,
    /// `None` with `BIGQUERY_AUTH=none`.
    auth: Option<Credentials>,
    metrics: Arc<Metrics>,
}

impl BigQuerySource {
    /// Checks what can be checked without the network: a configured key file
    /// must be readable and valid, or start-up stops with a config error.
    pub async fn connect(config: BigQuerySettings, metrics: Arc<Metrics>) -> Result<Self> {
        let project = config.project.clone().ok_or_else(|| Error::config("BIGQUERY_PROJECT", "is not set"))?;
        let auth = Credentials::new(&config)?;
        let root = config.endpoint.as_deref().unwrap_or(GOOGLE_API_ROOT).trim_end_matches('/');
        let v2_url = Url::parse(&format!("{root}/bigquery/v2"))
            .map_err(|e| Error::config("BIGQUERY_ENDPOINT", format!("{root:?}: {e}")))?;
        let http = http_client()
            .map_err(|e| Error::config("BIGQUERY_ENDPOINT", format!("cannot build the HTTPS client: {e}")))?;
        Ok(BigQuerySource { v2_url, config, project, http, auth, metrics })
    }

    /// `timeoutMs` for BigQuery: how long it may hold a call open waiting for
    /// the job. A second less than the attempt timeout, so a legitimately
    /// waiting call is never cut off and retried as if it had hung.
    fn server_wait(&self) -> i32 {
        let wait = attempt_timeout(&self.config).saturating_sub(Duration::from_secs(1)).min(MAX_SERVER_WAIT);
        wait.as_millis().max(1) as i32
    }

    /// The SQL text. Only validated configuration goes into it; the word is
    /// the `@word` parameter.
    pub fn sql(table: &str, word_match: WordMatch) -> String {
        let condition = match word_match {
            WordMatch::Exact => "word = @word",
            WordMatch::IgnoreCase => "LOWER(word) = LOWER(@word)",
        };
        // The one place SQL is assembled: `table` passed config::validate_table
        // (letters, digits, '_', '-', '.'), `condition` is one of two constants.
        // nosemgrep: rust-sql-built-from-strings
        format!(
            "SELECT corpus, SUM(word_count) AS total_words FROM `{table}` WHERE {condition} \
             GROUP BY corpus ORDER BY total_words DESC, corpus ASC"
        )
    }

    /// The token for the next call; `None` with `BIGQUERY_AUTH=none`.
    async fn token(&self) -> Result<Option<String>> {
        match &self.auth {
            Some(credentials) => credentials.token().await.map(Some),
            None => Ok(None),
        }
    }

    /// Drops the provider, so the next call's token is a fresh one.
    async fn forget_token(&self) {
        if let Some(credentials) = &self.auth {
            credentials.forget().await;
        }
    }

    /// `{v2}/projects/{project}/{path...}`, each segment escaped.
    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.v2_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("projects").push(&self.project).extend(path);
        }
        url
    }

    /// One call: `call`'s request with the token (if any), the answer's JSON
    /// as `T`, or the failure classified. The attempt timeout covers sending
    /// the request and reading the whole answer.
    async fn call<T: DeserializeOwned>(&self, call: &ApiCall<'_>) -> Result<T> {
        let request = call.request(self.token().await?.as_deref())?;
        let (status, body) = match tokio::time::timeout(attempt_timeout(&self.config), self.send(request)).await {
            Ok(answer) => answer?,
            Err(_) => return Err(timed_out()),
        };
        if !status.is_success() {
            return Err(classify_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// Sends `request` and reads the whole answer.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let response = self.http.request(request).await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| Error::Malformed(with_causes(&e)))?;
        Ok((status, body.to_bytes()))
    }

    /// Makes `call` until it succeeds, fails for good, or runs out of
    /// attempts. An authentication failure is tried once more with a fresh
    /// token, at once.
    async fn retry<T: DeserializeOwned>(&self, name: &'static str, call: &ApiCall<'_>) -> Result<T> {
        let started = Instant::now();
        let (mut attempt, mut fresh_token) = (1, false);
        loop {
            let err = match self.call(call).await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if matches!(err, Error::Auth(_)) && !fresh_token && self.auth.is_some() {
                tracing::info!(
                    call = name,
                    attempt,
                    reason = err.reason(),
                    "retrying BigQuery call with a fresh token"
                );
                self.forget_token().await;
                fresh_token = true;
                continue;
            }
            if !err.is_retryable() || attempt >= MAX_ATTEMPTS {
                tracing::warn!(call = name, attempt, reason = err.reason(), error = %err, "BigQuery call failed");
                return Err(err);
            }
            let delay = backoff(attempt);
            tracing::info!(
                call = name,
                attempt,
                reason = err.reason(),
                retry_in_ms = delay.as_millis() as u64,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "retrying BigQuery call"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn run_query(&self, word: &str, word_match: WordMatch, trace: &TraceContext) -> Result<Counts> {
        // Every call of this query carries the caller's trace, on the one
        // shared client (its connections are pooled across refreshes).
        let traced = &trace_headers(trace);
        let mut request = QueryRequest::new(Self::sql(&self.config.table, word_match));
        request.use_legacy_sql = false;
        request.parameter_mode = Some("NAMED".into());
        request.query_parameters = Some(vec![QueryParameter {
            name: Some("word".into()),
            parameter_type: Some(QueryParameterType { array_type: None, struct_types: None, r#type: "STRING".into() }),
            parameter_value: Some(QueryParameterValue {
                array_values: None,
                struct_values: None,
                value: Some(word.into()),
            }),
        }]);
        request.maximum_bytes_billed = Some(self.config.max_bytes_billed.to_string());
        request.location = self.config.location.clone();
        request.timeout_ms = Some(self.server_wait());
        request.request_id = Some(HexId::<32>::random().to_string());
        request.use_query_cache = Some(true);
        request.labels = Some([("app".to_owned(), "wordcount".to_owned())].into());

        let body = serde_json::to_vec(&request).map_err(|e| Error::Malformed(e.to_string()))?;
        let query =
            ApiCall { method: Method::POST, url: self.url(&["queries"]), headers: traced, body: Some(body.into()) };
        let first: QueryResponse = self.retry("jobs.query", &query).await?;
        if let Some(errors) = first.errors.as_ref().filter(|e| !e.is_empty()) {
            return Err(job_error(errors));
        }
        let job = first.job_reference.as_ref().and_then(|j| j.job_id.clone());
        let location =
            first.job_reference.as_ref().and_then(|j| j.location.clone()).or_else(|| self.config.location.clone());
        let mut complete = first.job_complete.unwrap_or(false);
        let mut schema = first.schema;
        let mut rows = first.rows.unwrap_or_default();
        let mut page_token = first.page_token;

        // Poll until the job is done, then read the remaining pages.
        while !complete || page_token.is_some() {
            let Some(job_id) = job.as_deref() else {
                return Err(Error::Malformed("incomplete query response without a job id".into()));
            };
            let url = with_query(
                self.url(&["queries", job_id]),
                &[
                    ("location", location.as_deref()),
                    ("pageToken", if complete { page_token.as_deref() } else { None }),
                    ("timeoutMs", Some(&self.server_wait().to_string())),
                ],
            );
            let results = ApiCall { method: Method::GET, url, headers: traced, body: None };
            let page: GetQueryResultsResponse = self.retry("jobs.getQueryResults", &results).await?;
            if let Some(errors) = page.errors.as_ref().filter(|e| !e.is_empty()) {
                return Err(job_error(errors));
            }
            if !page.job_complete.unwrap_or(false) {
                continue;
            }
            if !complete {
                // The first complete answer carries the first page again.
                complete = true;
                rows = page.rows.unwrap_or_default();
            } else {
                rows.extend(page.rows.unwrap_or_default());
            }
            schema = schema.or(page.schema);
            page_token = page.page_token;
        }

        let counts = Counts::new(decode_rows(schema.as_ref(), &rows)?);
        if let Some(job_id) = job.as_deref() {
            self.bytes_billed(traced, job_id, location.as_deref()).await;
        }
        Ok(counts)
    }

    /// Records bytes billed and processed, from the job's statistics. Best
    /// effort: the answer is already in hand, so a failure only costs a metric.
    async fn bytes_billed(&self, traced: &HeaderMap, job_id: &str, location: Option<&str>) {
        let url = with_query(self.url(&["jobs", job_id]), &[("location", location)]);
        let job = ApiCall { method: Method::GET, url, headers: traced, body: None };
        match self.call::<Job>(&job).await {
            Ok(job) => {
                let Some(stats) = job.statistics.and_then(|s| s.query) else { return };
                let billed = stats.total_bytes_billed.and_then(|b| b.parse().ok()).unwrap_or(0);
                let processed = stats.total_bytes_processed.and_then(|b| b.parse().ok()).unwrap_or(0);
                self.metrics.source.observe_bytes(billed, processed);
                tracing::debug!(bytes_billed = billed, "query billed");
            }
            Err(err) => tracing::debug!(reason = err.reason(), "job statistics unavailable"),
        }
    }
}

#[async_trait]
impl CountsSource for BigQuerySource {
    fn kind(&self) -> &'static str {
        "bigquery"
    }

    async fn counts(&self, word: &str, word_match: WordMatch, trace: &TraceContext) -> Result<Counts> {
        let budget = self.config.timeout;
        match tokio::time::timeout(budget, self.run_query(word, word_match, trace)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(budget)),
        }
    }
}

/// One API call, built again for each attempt.
struct ApiCall<'a> {
    method: Method,
    /// The whole URL, query included.
    url: Url,
    /// `traceparent`, when a traced request caused the call.
    headers: &'a HeaderMap,
    /// JSON.
    body: Option<Bytes>,
}

impl ApiCall<'_> {
    /// The request for one attempt, with `token` as the bearer token.
    fn request(&self, token: Option<&str>) -> Result<Request<Full<Bytes>>> {
        let mut request = Request::builder().method(self.method.clone()).uri(self.url.as_str());
        if let Some(headers) = request.headers_mut() {
            headers.extend(self.headers.iter().map(|(name, value)| (name.clone(), value.clone())));
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            if let Some(token) = token {
                let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Error::Transport("the token is not a valid header value".into()))?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            if self.body.is_some() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        request
            .body(Full::new(self.body.clone().unwrap_or_default()))
            .map_err(|_| Error::Transport("the URL is not a valid request URI".into()))
    }
}

/// The client for every BigQuery call, built once: rustls with ring and the
/// system's CA bundle, HTTP/2 or HTTP/1.1 as the server offers, plain HTTP
/// for `http://` endpoints, a bounded connect time. The attempt timeout is
/// [`BigQuerySource::call`]'s.
fn http_client() -> std::io::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    // The timers close connections idle in the pool past its timeout, and
    // drive HTTP/2's own timeouts.
    Ok(Client::builder(TokioExecutor::new()).timer(TokioTimer::new()).pool_timer(TokioTimer::new()).build(https))
}

/// `url` with the parameters that have a value added to its query,
/// form-encoded; without any, `url` as it is.
fn with_query(mut url: Url, params: &[(&str, Option<&str>)]) -> Url {
    let present: Vec<(&str, &str)> = params.iter().filter_map(|&(name, value)| Some((name, value?))).collect();
    if !present.is_empty() {
        url.query_pairs_mut().extend_pairs(present);
    }
    url
}

/// `traceparent` for the calls a traced request causes; empty without one.
fn trace_headers(trace: &TraceContext) -> HeaderMap {
    let value = trace.traceparent().and_then(|t| HeaderValue::from_str(&t).ok());
    value.map(|v| HeaderMap::from_iter([(HeaderName::from_static("traceparent"), v)])).unwrap_or_default()
}

/// One HTTP attempt may use at most half the refresh budget, so a hung
/// connection still leaves time for a retry.
fn attempt_timeout(config: &BigQuerySettings) -> Duration {
    (config.timeout / 2).max(Duration::from_secs(1))
}

/// Exponential back-off with full jitter: uniform in [0, min(cap, base·2ⁿ)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
    ceiling.mul_f64(rand::random::<f64>())
}

/// A call that got no answer: timed out (connecting), or refused, reset,
/// or turned away by TLS.
fn transport_error(e: &hyper_util::client::legacy::Error) -> Error {
    if causes(e)
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
    {
        timed_out()
    } else {
        Error::Transport(with_causes(e))
    }
}

/// An attempt that ran out of time, connecting or waiting for the answer.
fn timed_out() -> Error {
    Error::Transport("the call timed out".into())
}

/// A non-2xx answer: Google's JSON error when the body is one, else the
/// status alone (a proxy's HTML 502 is still a 502).
pub(crate) fn classify_error(status: http::StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ResponseError>(body) {
        Ok(ResponseError { error: e }) => {
            let reason = e.errors.iter().find_map(|m| m.get("reason")).map(String::as_str).unwrap_or("");
            from_status(e.code, reason, &e.message)
        }
        Err(_) => from_status(
            i64::from(status.as_u16()),
            "",
            &format!("HTTP {status} with a body that is not Google's JSON error"),
        ),
    }
}

/// The error's message with its whole cause chain: the causes are what say
/// "connection refused" or "invalid peer certificate: UnknownIssuer".
/// hyper's errors never name the URL, which may carry a page token.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    for cause in causes(e).skip(1) {
        message = format!("{message}: {cause}");
    }
    message
}

/// `e` and its causes, outermost first.
fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn from_status(code: i64, reason: &str, message: &str) -> Error {
    let detail = if reason.is_empty() { message.to_owned() } else { format!("{reason}: {message}") };
    match (code, reason) {
        (_, "bytesBilledLimitExceeded") => Error::BytesBilledLimit(detail),
        (_, "rateLimitExceeded" | "quotaExceeded") | (429, _) => Error::RateLimited(detail),
        (401, _) | (_, "authError") => Error::Auth(detail),
        (403, _) => Error::PermissionDenied(detail),
        (500..=599, _) | (_, "backendError" | "internalError") => {
            Error::Upstream { status: code as u16, message: detail }
        }
        _ => Error::Rejected { status: code as u16, message: detail },
    }
}

/// A finished job that failed reports its errors in the body.
fn job_error(errors: &[gcp_bigquery_client::model::error_proto::ErrorProto]) -> Error {
    let first = &errors[0];
    let reason = first.reason.as_deref().unwrap_or("");
    from_status(400, reason, first.message.as_deref().unwrap_or("job failed"))
}

/// Rows as `{"f":[{"v":corpus},{"v":total}]}`, columns found by name.
pub(crate) fn decode_rows(schema: Option<&TableSchema>, rows: &[TableRow]) -> Result<Vec<Row>> {
    let fields = schema.and_then(|s| s.fields.as_ref()).ok_or_else(|| Error::Malformed("no schema".into()))?;
    let column = |name: &str| {
        fields.iter().position(|f| f.name == name).ok_or_else(|| Error::Malformed(format!("no column {name}")))
    };
    let (corpus_at, total_at) = (column("corpus")?, column("total_words")?);
    rows.iter()
        .map(|row| {
            let cells = row.columns.as_deref().unwrap_or_default();
            let value = |at: usize| cells.get(at).and_then(|c| c.value.as_ref());
            let corpus = value(corpus_at)
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::Malformed("row without a corpus".into()))?;
            let total_words = match value(total_at) {
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| Error::Malformed(format!("row for {corpus:?} without a whole-number total")))?;
            Ok(Row { corpus: corpus.to_owned(), total_words })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_is_a_parameter_and_never_part_of_the_sql() {
        let sql = BigQuerySource::sql("bigquery-public-data.samples.shakespeare", WordMatch::Exact);
        assert_eq!(
            sql,
            "SELECT corpus, SUM(word_count) AS total_words FROM `bigquery-public-data.samples.shakespeare` \
             WHERE word = @word GROUP BY corpus ORDER BY total_words DESC, corpus ASC"
        );
        assert!(BigQuerySource::sql("p-123456.d.t", WordMatch::IgnoreCase).contains("LOWER(word) = LOWER(@word)"));
    }

    #[test]
    fn statuses_and_reasons_map_to_what_they_mean() {
        assert_eq!(from_status(403, "accessDenied", "x").reason(), "permission_denied");
        assert_eq!(from_status(403, "rateLimitExceeded", "x").reason(), "rate_limited");
        assert_eq!(from_status(429, "", "x").reason(), "rate_limited");
        assert_eq!(from_status(400, "bytesBilledLimitExceeded", "x").reason(), "bytes_billed_limit");
        assert_eq!(from_status(401, "", "x").reason(), "auth");
        assert_eq!(from_status(503, "backendError", "x").reason(), "upstream_5xx");
        assert_eq!(from_status(400, "invalidQuery", "x").reason(), "rejected");
    }

    /// Case 6: a proxy's HTML 502 is an upstream 5xx (retried), not a
    /// malformed response.
    #[test]
    fn error_bodies_that_are_not_json_are_classified_by_status() {
        let html = b"<html><body>502 Bad Gateway</body></html>";
        assert_eq!(classify_error(http::StatusCode::BAD_GATEWAY, html).reason(), "upstream_5xx");
        assert_eq!(classify_error(http::StatusCode::UNAUTHORIZED, b"").reason(), "auth");
        assert_eq!(classify_error(http::StatusCode::TOO_MANY_REQUESTS, b"slow down").reason(), "rate_limited");
        let google = br#"{"error":{"code":403,"message":"no","errors":[{"reason":"accessDenied"}]}}"#;
        assert_eq!(classify_error(http::StatusCode::FORBIDDEN, google).reason(), "permission_denied");
    }

    #[test]
    fn query_parameters_without_a_value_are_left_out() {
        let url = Url::parse("http://127.0.0.1:1/bigquery/v2/projects/p/jobs/j").unwrap();
        assert_eq!(with_query(url.clone(), &[("location", None)]).as_str(), url.as_str());
        let paged = with_query(url, &[("location", Some("EU")), ("pageToken", Some("a b&c=")), ("max", None)]);
        assert_eq!(paged.query(), Some("location=EU&pageToken=a+b%26c%3D"));
    }

    /// The cause says what went wrong; the URL (it may carry a page token)
    /// is not in the message.
    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error_that_names_the_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = Url::parse(&format!("http://{closed}/bigquery/v2/projects/p/queries/j?pageToken=secret")).unwrap();
        let call = ApiCall { method: Method::GET, url, headers: &HeaderMap::new(), body: None };
        let err = http_client().unwrap().request(call.request(Some("ya29.token")).unwrap()).await.unwrap_err();
        let Error::Transport(message) = transport_error(&err) else { panic!("not a transport error: {err}") };
        assert!(message.to_lowercase().contains("connection refused"), "{message}");
        assert!(!message.contains("secret") && !message.contains(&closed.to_string()), "{message}");
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        for attempt in 1..20 {
            let delay = backoff(attempt);
            assert!(delay <= BACKOFF_CAP, "attempt {attempt}: {delay:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(3)).collect();
        assert!(samples.len() > 1, "full jitter varies the delay");
    }

    #[test]
    fn rows_are_decoded_by_column_name() {
        let schema: TableSchema = serde_json::from_value(serde_json::json!({
            "fields": [{"name": "total_words", "type": "INTEGER"}, {"name": "corpus", "type": "STRING"}]
        }))
        .unwrap();
        let rows: Vec<TableRow> = serde_json::from_value(serde_json::json!([
            {"f": [{"v": "42"}, {"v": "hamlet"}]},
            {"f": [{"v": 7}, {"v": "macbeth"}]}
        ]))
        .unwrap();
        let decoded = decode_rows(Some(&schema), &rows).unwrap();
        assert_eq!(
            decoded,
            [Row { corpus: "hamlet".into(), total_words: 42 }, Row { corpus: "macbeth".into(), total_words: 7 }]
        );

        let bad: Vec<TableRow> =
            serde_json::from_value(serde_json::json!([{"f": [{"v": "lots"}, {"v": "hamlet"}]}])).unwrap();
        assert_eq!(decode_rows(Some(&schema), &bad).unwrap_err().reason(), "malformed_response");
        assert_eq!(decode_rows(None, &rows).unwrap_err().reason(), "malformed_response");
    }
}

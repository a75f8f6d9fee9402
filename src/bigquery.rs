//! The BigQuery source.
//!
//! Runs the original service's aggregation as a parameterised standard-SQL
//! query (`jobs.query`), polls `getQueryResults` while the job is running and
//! reads every page. The word is only ever a named query parameter; the
//! table name comes from validated configuration. Each job carries
//! `maximumBytesBilled`, so a query that would cost more fails instead, and
//! a `requestId`, so a retried `jobs.query` does not start a second job.
//!
//! Credentials come from one gcp_auth provider for the whole process, in
//! gcp_auth's order: the key file in `GOOGLE_APPLICATION_CREDENTIALS`, gcloud
//! application-default credentials, the metadata server (GKE Workload
//! Identity). gcp_auth caches and refreshes tokens; [`GcpAuthenticator`]
//! adapts it to gcp-bigquery-client, whose own workload-identity path asks the
//! metadata server on every call. The provider is found on first use, not at
//! start-up: on GKE the metadata server can need a few seconds after the pod
//! starts, and the start-up warm-up retries instead of crashing.
//!
//! Transient failures (5xx, rate limits, broken or unreadable responses,
//! an attempt that hangs) are retried with exponential back-off and full
//! jitter, all inside `BIGQUERY_TIMEOUT`; everything else fails at once.
//! Tokens and keys are never logged or returned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::{BigQueryAuth, BigQueryConfig, WordMatch};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::source::{Counts, CountsSource, Row};
use crate::telemetry::{HexId, TraceContext};

/// Running a query creates a job, which the read-only scope does not allow;
/// what the identity may do is limited by IAM (jobUser + dataViewer).
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const GOOGLE_API_ROOT: &str = "https://bigquery.googleapis.com";

/// Attempts per API call, the first included.
const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// The longest one `jobs.query` / `getQueryResults` call asks BigQuery to
/// wait for the job before answering `jobComplete: false`; always kept a
/// second under the attempt's own timeout (see [`BigQuerySource::server_wait`]).
const MAX_SERVER_WAIT: Duration = Duration::from_secs(10);

pub struct BigQuerySource {
    config: BigQueryConfig,
    v2_url: String,
    http: reqwest::Client,
    auth: Credentials,
    metrics: Arc<Metrics>,
}

enum Credentials {
    None,
    /// Built on first use; see the module docs.
    Google(OnceCell<Arc<dyn gcp_auth::TokenProvider>>),
    KeyFile(Arc<dyn gcp_auth::TokenProvider>),
}

impl BigQuerySource {
    /// Checks what can be checked without the network: a configured key file
    /// must be readable and valid, or start-up stops with a config error.
    pub async fn connect(config: BigQueryConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let auth = match (config.auth, &config.credentials_file) {
            (BigQueryAuth::None, _) => Credentials::None,
            (BigQueryAuth::Google, Some(path)) => {
                let provider = gcp_auth::CustomServiceAccount::from_file(path)
                    .map_err(|e| Error::config("GOOGLE_APPLICATION_CREDENTIALS", format!("{}: {e}", path.display())))?;
                let account = key_file_account(path);
                tracing::info!(credentials = "service-account key file", account, "BigQuery credentials");
                Credentials::KeyFile(Arc::new(provider))
            }
            (BigQueryAuth::Google, None) => Credentials::Google(OnceCell::new()),
        };
        let root = config.endpoint.as_deref().unwrap_or(GOOGLE_API_ROOT).trim_end_matches('/');
        let http = http_client(&config, reqwest::header::HeaderMap::new())
            .map_err(|e| Error::config("BIGQUERY_ENDPOINT", format!("cannot build the HTTPS client: {e}")))?;
        Ok(BigQuerySource { v2_url: format!("{root}/bigquery/v2"), config, http, auth, metrics })
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

    async fn token_provider(&self) -> Result<Option<Arc<dyn gcp_auth::TokenProvider>>> {
        match &self.auth {
            Credentials::None => Ok(None),
            Credentials::KeyFile(provider) => Ok(Some(Arc::clone(provider))),
            Credentials::Google(cell) => cell.get_or_try_init(find_provider).await.map(|p| Some(Arc::clone(p))),
        }
    }

    /// A client for one refresh. Cheap (no connection is opened here), and
    /// it lets every call of the refresh carry the trace context of the
    /// request that caused it.
    async fn client(&self, trace: &TraceContext) -> Result<Client> {
        let authenticator = GcpAuthenticator { provider: self.token_provider().await? };
        let mut builder = gcp_bigquery_client::client_builder::ClientBuilder::new();
        builder.with_v2_base_url(self.v2_url.clone()).with_client(self.http_for(trace));
        builder.build_from_authenticator(Arc::new(authenticator)).await.map_err(|e| classify(&e))
    }

    fn http_for(&self, trace: &TraceContext) -> reqwest::Client {
        let Some(traceparent) = trace.traceparent().and_then(|t| reqwest::header::HeaderValue::from_str(&t).ok())
        else {
            return self.http.clone();
        };
        let headers = reqwest::header::HeaderMap::from_iter([(
            reqwest::header::HeaderName::from_static("traceparent"),
            traceparent,
        )]);
        http_client(&self.config, headers).unwrap_or_else(|_| self.http.clone())
    }

    async fn run_query(&self, word: &str, word_match: WordMatch, trace: &TraceContext) -> Result<Counts> {
        let client = self.client(trace).await?;
        let project = self.config.project.as_str();
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

        let first = retry("jobs.query", || client.job().query(project, request.clone())).await?;
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
            let params = GetQueryResultsParameters {
                format_options: None,
                location: location.clone(),
                max_results: None,
                page_token: if complete { page_token.clone() } else { None },
                start_index: None,
                timeout_ms: Some(self.server_wait()),
            };
            let page =
                retry("jobs.getQueryResults", || client.job().get_query_results(project, job_id, params.clone()))
                    .await?;
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

        let mut counts = Counts::new(decode_rows(schema.as_ref(), &rows)?);
        if let Some(job_id) = job.as_deref() {
            counts.bytes_billed = self.bytes_billed(&client, job_id, location.as_deref()).await;
        }
        Ok(counts)
    }

    /// Bytes billed and processed, from the job's statistics. Best effort:
    /// the answer is already in hand, so a failure here only costs a metric.
    async fn bytes_billed(&self, client: &Client, job_id: &str, location: Option<&str>) -> Option<u64> {
        match client.job().get_job(&self.config.project, job_id, location).await {
            Ok(job) => {
                let stats = job.statistics.and_then(|s| s.query)?;
                let billed = stats.total_bytes_billed.and_then(|b| b.parse().ok()).unwrap_or(0);
                let processed = stats.total_bytes_processed.and_then(|b| b.parse().ok()).unwrap_or(0);
                self.metrics.observe_bytes(billed, processed);
                Some(billed)
            }
            Err(err) => {
                tracing::debug!(reason = classify(&err).reason(), "job statistics unavailable");
                None
            }
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

/// The HTTPS client for BigQuery calls: rustls with the system's CA bundle,
/// bounded connect and attempt times, and `headers` on every call.
fn http_client(config: &BigQueryConfig, headers: reqwest::header::HeaderMap) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("wordcount/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(attempt_timeout(config))
        .default_headers(headers)
        .build()
}

/// One HTTP attempt may use at most half the refresh budget, so a hung
/// connection still leaves time for a retry.
fn attempt_timeout(config: &BigQueryConfig) -> Duration {
    (config.timeout / 2).max(Duration::from_secs(1))
}

/// gcp_auth's order, minus the gcloud CLI (not in the image), with the kind
/// found logged.
async fn find_provider() -> Result<Arc<dyn gcp_auth::TokenProvider>> {
    match gcp_auth::ConfigDefaultCredentials::new().await {
        Ok(provider) => {
            tracing::info!(credentials = "gcloud application-default credentials", "BigQuery credentials");
            return Ok(Arc::new(provider));
        }
        Err(err) => tracing::debug!(error = %err, "no application-default credentials"),
    }
    match gcp_auth::MetadataServiceAccount::new().await {
        Ok(provider) => {
            let project =
                gcp_auth::TokenProvider::project_id(&provider).await.map(|p| p.to_string()).unwrap_or_default();
            tracing::info!(credentials = "metadata server (workload identity)", project, "BigQuery credentials");
            Ok(Arc::new(provider))
        }
        Err(err) => Err(Error::Auth(format!(
            "no credentials: GOOGLE_APPLICATION_CREDENTIALS unset, no application-default credentials, metadata server: {err}"
        ))),
    }
}

/// The `client_email` of a key file, for the log line; never the key.
fn key_file_account(path: &Path) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|key| key.get("client_email")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// gcp_auth's token provider as gcp-bigquery-client's `Authenticator`: every
/// call asks gcp_auth, which answers from its cache until the token is
/// about to expire.
#[derive(Clone)]
struct GcpAuthenticator {
    provider: Option<Arc<dyn gcp_auth::TokenProvider>>,
}

#[async_trait]
impl Authenticator for GcpAuthenticator {
    async fn access_token(&self) -> std::result::Result<String, BQError> {
        let Some(provider) = &self.provider else {
            // BIGQUERY_AUTH=none: an emulator that checks no tokens.
            return Ok(String::new());
        };
        match provider.token(&[SCOPE]).await {
            Ok(token) => Ok(token.as_str().to_owned()),
            // gcp-bigquery-client has no variant for a foreign token error;
            // carry ours inside an io::Error and unwrap it in `classify`.
            Err(err) => {
                Err(BQError::InvalidServiceAccountAuthenticator(std::io::Error::other(AuthFailure::from(&err))))
            }
        }
    }
}

/// A token could not be had; `transient` when the token endpoint could not
/// be reached rather than refusing us.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct AuthFailure {
    message: String,
    transient: bool,
}

impl From<&gcp_auth::Error> for AuthFailure {
    fn from(err: &gcp_auth::Error) -> Self {
        let transient = matches!(err, gcp_auth::Error::Http(..));
        AuthFailure { message: format!("token request failed: {err}"), transient }
    }
}

/// Calls `f` until it succeeds, fails for good, or runs out of attempts.
async fn retry<T, F, Fut>(call: &'static str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, BQError>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let err = match f().await {
            Ok(value) => return Ok(value),
            Err(err) => classify(&err),
        };
        if !err.is_retryable() || attempt >= MAX_ATTEMPTS {
            tracing::warn!(call, attempt, reason = err.reason(), error = %err, "BigQuery call failed");
            return Err(err);
        }
        let delay = backoff(attempt);
        tracing::info!(
            call,
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

/// Exponential back-off with full jitter: uniform in [0, min(cap, base·2ⁿ)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
    ceiling.mul_f64(rand::random::<f64>())
}

/// What a gcp-bigquery-client error means for us.
pub(crate) fn classify(err: &BQError) -> Error {
    match err {
        BQError::ResponseError { error } => {
            let e = &error.error;
            let reason = e.errors.iter().find_map(|m| m.get("reason")).map(String::as_str).unwrap_or("");
            from_status(e.code, reason, &e.message)
        }
        BQError::RequestError(e) if e.is_timeout() => Error::Transport("the call timed out".into()),
        BQError::RequestError(e) if e.is_decode() || e.is_body() => Error::Malformed(without_url(e)),
        BQError::RequestError(e) => Error::Transport(without_url(e)),
        BQError::SerializationError(e) => Error::Malformed(e.to_string()),
        BQError::InvalidServiceAccountAuthenticator(io) => {
            match io.get_ref().and_then(|e| e.downcast_ref::<AuthFailure>()) {
                Some(failure) if failure.transient => Error::Transport(failure.message.clone()),
                Some(failure) => Error::Auth(failure.message.clone()),
                None => Error::Auth(io.to_string()),
            }
        }
        BQError::NoToken => Error::Auth("no token".into()),
        other => Error::Transport(other.to_string()),
    }
}

/// reqwest's message with its whole cause chain (the cause is what says
/// "invalid peer certificate: UnknownIssuer" or "connection refused"), and
/// without the URL, which may carry a page token.
fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        message = format!("{message}: {err}");
        cause = err.source();
    }
    match e.url() {
        Some(url) => message.replace(url.as_str(), "<url>"),
        None => message,
    }
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

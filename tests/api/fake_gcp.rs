//! A fake Google on 127.0.0.1: the OAuth2 token endpoint a service account
//! talks to and the parts of the BigQuery v2 REST API the service uses
//! (`jobs.query`, `jobs.getQueryResults`, `jobs.get`).
//!
//! It is strict where a lenient fake would hide bugs in the real client code:
//! - `POST /token` verifies the RS256 signature of the service account's JWT
//!   against the key it generated, and its `iss`, `aud`, `scope`, `iat` and
//!   `exp`, like Google's token endpoint; it hands out opaque random tokens.
//! - Every BigQuery call needs `Authorization: Bearer <a token it issued,
//!   not yet expired>` (unless started with [`FakeGcp::start_without_auth`],
//!   like goccy/bigquery-emulator). A token can be made to die earlier than
//!   its advertised `expires_in` ([`FakeGcp::set_token_lifetime`]), so a
//!   client that keeps using an old token fails instead of passing by luck.
//! - `jobs.query` needs standard SQL (`useLegacySql: false`), named
//!   parameters and a STRING parameter `word`; it answers from
//!   `data/shakespeare.csv.gz`, not from the SQL text, and fails with
//!   `bytesBilledLimitExceeded` when `maximumBytesBilled` is below the table
//!   size, as BigQuery does. A repeated `requestId` returns the job it
//!   already created instead of a second one.
//!
//! Failures are switched at run time through [`FakeGcp::set_mode`] (for good)
//! or [`FakeGcp::set_mode_for`] (the next N calls, then normal); a token
//! fault counts token requests, every other fault counts BigQuery calls.
//! Every request is recorded for assertions.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The scope a token must carry to run query jobs. BigQuery's discovery
/// document lists `bigquery` and `cloud-platform` for `jobs.query`; the
/// read-only scopes do not allow creating jobs.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const CLIENT_EMAIL: &str = "wordcount-test@wordcount-test.iam.gserviceaccount.com";
pub const KEY_PROJECT: &str = "wordcount-test";
/// Clock skew the token endpoint tolerates on `iat`, as Google does.
const CLOCK_SKEW_SECS: i64 = 60;
/// Default size of the table: what a query processes and at least what it bills.
pub const DEFAULT_TABLE_BYTES: u64 = 10 * 1024 * 1024;

/// What the fake does instead of answering normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// BigQuery answers HTTP 500 or 503 with reason `backendError`.
    ServerError(u16),
    /// HTTP 429 `rateLimitExceeded`.
    RateLimited,
    /// HTTP 403 `rateLimitExceeded` (BigQuery sends some rate limits so).
    RateLimitedForbidden,
    /// HTTP 403 `accessDenied`.
    AccessDenied,
    /// HTTP 400 `bytesBilledLimitExceeded`.
    BytesBilledLimit,
    /// HTTP 401 `authError`, whatever token came.
    Unauthenticated,
    /// Accepts the request and never answers.
    Hang,
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// HTTP 502 with an HTML body, as a proxy in front answers.
    BadGatewayHtml,
    /// HTTP 200 whose body stops short of its Content-Length, then the
    /// connection closes.
    TruncatedBody,
    /// The token endpoint answers 500.
    TokenServerError,
    /// The token endpoint answers 400 `invalid_grant`.
    TokenInvalidGrant,
}

impl Mode {
    fn targets_token_endpoint(self) -> bool {
        matches!(self, Mode::TokenServerError | Mode::TokenInvalidGrant)
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
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
        let parameters = self.field("queryParameters")?.as_array()?;
        let p = parameters.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name))?;
        let kind = p.pointer("/parameterType/type")?.as_str()?.to_owned();
        let value = p.pointer("/parameterValue/value")?.as_str()?.to_owned();
        Some((kind, value))
    }
    pub fn parameter_mode(&self) -> Option<&str> {
        self.field("parameterMode")?.as_str()
    }
    /// `maximumBytesBilled` as sent (an int64, so a JSON string).
    pub fn maximum_bytes_billed(&self) -> Option<String> {
        match self.field("maximumBytesBilled")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
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

/// The RSA key of the test service account: generated once per test run
/// (2048-bit keygen takes a moment) and shared by every fake.
struct TestKey {
    public: RsaPublicKey,
    pkcs8_pem: String,
    key_id: String,
}

fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation");
        let pkcs8_pem = private.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM").to_string();
        TestKey { public: private.to_public_key(), pkcs8_pem, key_id: random_hex(20) }
    })
}

/// A row of `data/shakespeare.csv.gz`.
struct TableRow {
    word: Box<str>,
    count: u64,
    corpus: Box<str>,
}

fn table() -> &'static [TableRow] {
    static TABLE: OnceLock<Vec<TableRow>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare.csv.gz");
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(file));
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

struct Job {
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

struct Settings {
    mode: Mode,
    /// Calls the current mode still applies to; `None` for good.
    remaining: Option<u32>,
    delay: Duration,
    incomplete_polls: u32,
    page_size: Option<usize>,
    table_bytes: u64,
    expires_in: u64,
    /// How long a token really works, if shorter than `expires_in`.
    valid_for: Option<Duration>,
}

#[derive(Default)]
struct Counters {
    jobs_created: AtomicUsize,
    token_requests: AtomicUsize,
    tokens_issued: AtomicUsize,
    bigquery_calls: AtomicUsize,
}

struct Shared {
    require_auth: bool,
    token_url: String,
    settings: Mutex<Settings>,
    tokens: Mutex<HashMap<String, Instant>>,
    jobs: Mutex<HashMap<String, Job>>,
    request_ids: Mutex<HashMap<String, String>>,
    recorded: Mutex<Vec<Recorded>>,
    token_rejections: Mutex<Vec<String>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The fault to answer this call with, counting it down.
    fn take_fault(&self, token_endpoint: bool) -> Option<Mode> {
        let mut s = lock(&self.settings);
        if s.mode == Mode::Normal || s.mode.targets_token_endpoint() != token_endpoint {
            return None;
        }
        let mode = s.mode;
        if let Some(n) = s.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.mode = Mode::Normal;
                s.remaining = None;
            }
        }
        Some(mode)
    }
}

/// The fake; stops serving when dropped.
pub struct FakeGcp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl Drop for FakeGcp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl FakeGcp {
    /// A fake that checks tokens on every BigQuery call.
    pub async fn start() -> FakeGcp {
        Self::start_with(true).await
    }

    /// A fake that ignores `Authorization`, like an emulator.
    pub async fn start_without_auth() -> FakeGcp {
        Self::start_with(false).await
    }

    async fn start_with(require_auth: bool) -> FakeGcp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            require_auth,
            token_url: format!("http://{addr}/token"),
            settings: Mutex::new(Settings {
                mode: Mode::Normal,
                remaining: None,
                delay: Duration::ZERO,
                incomplete_polls: 0,
                page_size: None,
                table_bytes: DEFAULT_TABLE_BYTES,
                expires_in: 3600,
                valid_for: None,
            }),
            tokens: Mutex::default(),
            jobs: Mutex::default(),
            request_ids: Mutex::default(),
            recorded: Mutex::default(),
            token_rejections: Mutex::default(),
            counters: Counters::default(),
        });
        let (shutdown, stop) = watch::channel(false);
        tokio::spawn(serve(listener, Arc::clone(&shared), stop));
        FakeGcp { addr, shared, shutdown }
    }

    /// API root for `BIGQUERY_ENDPOINT` (the client appends `/bigquery/v2`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    /// Writes a service-account key file whose `token_uri` is this fake.
    pub fn write_key_file(&self, dir: &Path) -> PathBuf {
        self.write_key_file_as(dir, CLIENT_EMAIL)
    }

    /// The same with another `client_email`: the key still signs, but the
    /// fake knows no such account and refuses the grant.
    pub fn write_key_file_as(&self, dir: &Path, client_email: &str) -> PathBuf {
        let key = test_key();
        let json = json!({
            "type": "service_account",
            "project_id": KEY_PROJECT,
            "private_key_id": key.key_id,
            "private_key": key.pkcs8_pem,
            "client_email": client_email,
            "client_id": "109876543210987654321",
            "auth_uri": format!("{}/o/oauth2/auth", self.endpoint()),
            "token_uri": self.token_url(),
            "auth_provider_x509_cert_url": format!("{}/oauth2/v1/certs", self.endpoint()),
            "client_x509_cert_url": format!("{}/robot/v1/metadata/x509/{client_email}", self.endpoint()),
            "universe_domain": "googleapis.com",
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("key JSON")).expect("write the key file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        }
        path
    }

    /// The PEM of the test key, to check that it never leaks.
    pub fn private_key_pem(&self) -> &'static str {
        &test_key().pkcs8_pem
    }

    /// Switches behaviour for good (until the next call of `set_mode*`).
    pub fn set_mode(&self, mode: Mode) {
        let mut s = lock(&self.shared.settings);
        s.mode = mode;
        s.remaining = None;
    }

    /// `mode` for the next `calls` calls it applies to, then normal.
    pub fn set_mode_for(&self, mode: Mode, calls: u32) {
        let mut s = lock(&self.shared.settings);
        (s.mode, s.remaining) = if calls == 0 { (Mode::Normal, None) } else { (mode, Some(calls)) };
    }

    /// Delays every BigQuery answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.shared.settings).delay = delay;
    }

    /// Jobs created from now on report `jobComplete: false` to their first
    /// `polls` status answers (`jobs.query` included).
    pub fn set_incomplete_polls(&self, polls: u32) {
        lock(&self.shared.settings).incomplete_polls = polls;
    }

    /// Result pages of at most `rows` rows (`None`: everything in one).
    pub fn set_page_size(&self, rows: Option<usize>) {
        lock(&self.shared.settings).page_size = rows;
    }

    /// Bytes a query processes; `maximumBytesBilled` below it fails.
    pub fn set_table_bytes(&self, bytes: u64) {
        lock(&self.shared.settings).table_bytes = bytes;
    }

    /// Tokens are issued with `expires_in` seconds; the fake accepts them
    /// for `valid_for` (default: `expires_in`).
    pub fn set_token_lifetime(&self, expires_in: u64, valid_for: Option<Duration>) {
        let mut s = lock(&self.shared.settings);
        s.expires_in = expires_in;
        s.valid_for = valid_for;
    }

    /// BigQuery requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    /// The `jobs.query` requests so far.
    pub fn job_queries(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_jobs_query).collect()
    }

    /// Distinct jobs created (a repeated `requestId` does not count).
    pub fn jobs_created(&self) -> usize {
        self.shared.counters.jobs_created.load(Ordering::SeqCst)
    }

    pub fn token_requests(&self) -> usize {
        self.shared.counters.token_requests.load(Ordering::SeqCst)
    }

    pub fn tokens_issued(&self) -> usize {
        self.shared.counters.tokens_issued.load(Ordering::SeqCst)
    }

    /// Every call under `/bigquery/v2`, answered or not.
    pub fn bigquery_calls(&self) -> usize {
        self.shared.counters.bigquery_calls.load(Ordering::SeqCst)
    }

    /// Why the token endpoint refused grants, oldest first.
    pub fn token_rejections(&self) -> Vec<String> {
        lock(&self.shared.token_rejections).clone()
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let shared = Arc::clone(&shared);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            // Dropping the connection (hung answers included) on shutdown.
            tokio::select! {
                _ = connection => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// A body that is either complete or, on purpose, breaks off.
pub enum FakeBody {
    Full(Option<Bytes>),
    /// Sends these bytes, waits for them to be flushed, then fails, so the
    /// connection is cut short of the announced Content-Length.
    Truncated(Option<Bytes>, Pin<Box<tokio::time::Sleep>>),
}

impl hyper::body::Body for FakeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            FakeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Truncated(bytes, pause) => match bytes.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                // Failing at once would make hyper drop the buffered head
                // too; the client must see headers and a partial body.
                None => pause.as_mut().poll(cx).map(|()| Some(Err(std::io::Error::other("body truncated on purpose")))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            FakeBody::Full(Some(b)) => hyper::body::SizeHint::with_exact(b.len() as u64),
            FakeBody::Full(None) => hyper::body::SizeHint::with_exact(0),
            FakeBody::Truncated(..) => hyper::body::SizeHint::default(),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::Full(Some(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    response
}

/// Google's JSON error shape.
fn google_error(code: u16, reason: &str, status: &str, message: &str) -> Response<FakeBody> {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }],
            "status": status,
        }
    });
    let mut response = json_response(StatusCode::from_u16(code).expect("valid status"), &body);
    if code == 401 {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
    }
    response
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<FakeBody> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);

    if path == "/token" && parts.method == Method::POST {
        return token_endpoint(&shared, &body);
    }
    let Some(rest) = path.strip_prefix("/bigquery/v2/") else {
        return google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {path}"));
    };

    let recorded = Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        params: parts.uri.query().map(parse_form).unwrap_or_default(),
        authorization: header("authorization"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&body).ok(),
    };
    lock(&shared.recorded).push(recorded.clone());
    shared.counters.bigquery_calls.fetch_add(1, Ordering::SeqCst);

    let delay = lock(&shared.settings).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = shared.take_fault(false) {
        return fault_response(fault).await;
    }
    if shared.require_auth
        && let Err(message) = check_bearer(&shared, recorded.authorization.as_deref())
    {
        return google_error(401, "authError", "UNAUTHENTICATED", message);
    }

    let segments: Vec<&str> = rest.split('/').collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["projects", project, "queries"]) => jobs_query(&shared, project, &body),
        (&Method::GET, ["projects", project, "queries", job_id]) => {
            get_query_results(&shared, project, job_id, &recorded)
        }
        (&Method::GET, ["projects", project, "jobs", job_id]) => get_job(&shared, project, job_id, &recorded),
        _ => google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {} {path}", parts.method)),
    }
}

async fn fault_response(fault: Mode) -> Response<FakeBody> {
    match fault {
        Mode::Normal | Mode::TokenServerError | Mode::TokenInvalidGrant => unreachable!("not a BigQuery fault"),
        Mode::ServerError(503) => google_error(
            503,
            "backendError",
            "UNAVAILABLE",
            "Error encountered during execution. Retrying may solve the problem.",
        ),
        Mode::ServerError(code) => google_error(
            code,
            "backendError",
            "INTERNAL",
            "An internal error occurred and the request could not be completed.",
        ),
        Mode::RateLimited => google_error(
            429,
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
            "Exceeded rate limits: too many api requests per user per method for this user_method.",
        ),
        Mode::RateLimitedForbidden => google_error(
            403,
            "rateLimitExceeded",
            "PERMISSION_DENIED",
            "Exceeded rate limits: too many concurrent queries for this project_and_region.",
        ),
        Mode::AccessDenied => google_error(
            403,
            "accessDenied",
            "PERMISSION_DENIED",
            "Access Denied: Project wordcount-test: User does not have bigquery.jobs.create permission in project wordcount-test.",
        ),
        Mode::BytesBilledLimit => google_error(
            400,
            "bytesBilledLimitExceeded",
            "INVALID_ARGUMENT",
            "Query exceeded limit for bytes billed: 1000. 10485760 or higher required.",
        ),
        Mode::Unauthenticated => google_error(
            401,
            "authError",
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ),
        Mode::Hang => {
            // Until the client gives up or the fake is dropped.
            std::future::pending::<()>().await;
            unreachable!()
        }
        Mode::BadGatewayHtml => {
            let mut response = json_response(StatusCode::BAD_GATEWAY, &Value::Null);
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            *response.body_mut() =
                FakeBody::Full(Some(Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>")));
            response
        }
        Mode::MalformedJson => {
            let mut response = json_response(StatusCode::OK, &Value::Null);
            *response.body_mut() = FakeBody::Full(Some(Bytes::from_static(
                b"{\"kind\": \"bigquery#queryResponse\", \"jobComplete\": tru<html>",
            )));
            response
        }
        Mode::TruncatedBody => {
            let mut response = json_response(StatusCode::OK, &Value::Null);
            let partial = Bytes::from_static(
                b"{\"kind\":\"bigquery#queryResponse\",\"jobComplete\":true,\"rows\":[{\"f\":[{\"v\":\"hamlet\"}",
            );
            response.headers_mut().insert(hyper::header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
            *response.body_mut() =
                FakeBody::Truncated(Some(partial), Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            response
        }
    }
}

fn check_bearer(shared: &Shared, authorization: Option<&str>) -> Result<(), &'static str> {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Err("Request is missing required authentication credential. Expected OAuth 2 access token.");
    };
    match lock(&shared.tokens).get(token) {
        Some(valid_until) if Instant::now() < *valid_until => Ok(()),
        Some(_) => Err("Request had invalid authentication credentials: the access token expired."),
        None => Err("Request had invalid authentication credentials. Expected OAuth 2 access token."),
    }
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<FakeBody> {
    json_response(status, &json!({ "error": error, "error_description": description }))
}

fn token_endpoint(shared: &Shared, body: &[u8]) -> Response<FakeBody> {
    shared.counters.token_requests.fetch_add(1, Ordering::SeqCst);
    match shared.take_fault(true) {
        Some(Mode::TokenServerError) => {
            return token_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_failure", "Backend error.");
        }
        Some(_) => return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant: account not found"),
        None => {}
    }
    let form = parse_form(&String::from_utf8_lossy(body));
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some(JWT_BEARER) {
        lock(&shared.token_rejections).push("unsupported grant_type".into());
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type.");
    }
    if let Err(problem) = verify_assertion(field("assertion").unwrap_or(""), &shared.token_url) {
        lock(&shared.token_rejections).push(problem.clone());
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", &problem);
    }
    let (expires_in, valid_for) = {
        let s = lock(&shared.settings);
        (s.expires_in, s.valid_for.unwrap_or(Duration::from_secs(s.expires_in)))
    };
    let token = format!("ya29.fake-{}", random_hex(24));
    lock(&shared.tokens).insert(token.clone(), Instant::now() + valid_for);
    shared.counters.tokens_issued.fetch_add(1, Ordering::SeqCst);
    json_response(StatusCode::OK, &json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer" }))
}

/// Checks a service account's JWT as Google's token endpoint does.
fn verify_assertion(jwt: &str, token_url: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("Invalid JWT: not three parts".into());
    };
    let header: Value = decode_json(header).ok_or("Invalid JWT: unreadable header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let signature = b64url(signature).ok_or("Invalid JWT Signature.")?;
    let signature = Signature::try_from(signature.as_slice()).map_err(|_| "Invalid JWT Signature.")?;
    let signed = &jwt[..jwt.rfind('.').expect("three parts")];
    VerifyingKey::<Sha256>::new(test_key().public.clone())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;

    let claims: Value = decode_json(claims).ok_or("Invalid JWT: unreadable claims")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    if text("iss") != CLIENT_EMAIL {
        return Err(format!("Invalid grant: account not found ({:?})", text("iss")));
    }
    if text("aud") != token_url {
        return Err(format!("Invalid JWT: Failed audience check ({:?})", text("aud")));
    }
    let scopes: Vec<&str> = text("scope").split_whitespace().collect();
    if !scopes.iter().any(|s| *s == BIGQUERY_SCOPE || *s == CLOUD_PLATFORM_SCOPE) {
        return Err(format!("Invalid OAuth scope: {:?} does not allow BigQuery jobs", text("scope")));
    }
    let now = unix_now();
    let (iat, exp) = (claims.get("iat").and_then(Value::as_i64), claims.get("exp").and_then(Value::as_i64));
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err("Invalid JWT: iat and exp are required".into());
    };
    if exp <= now || iat > now + CLOCK_SKEW_SECS || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
                    Check your iat and exp values in the JWT claim."
            .into());
    }
    Ok(())
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    // gcp_auth pads its JWT parts; RFC 7515 says not to. Accept both.
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(part).ok()
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&b64url(part)?).ok()
}

fn invalid(message: &str) -> Response<FakeBody> {
    google_error(400, "invalidQuery", "INVALID_ARGUMENT", message)
}

fn jobs_query(shared: &Shared, project: &str, body: &[u8]) -> Response<FakeBody> {
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
    let recorded = Recorded {
        method: "POST".into(),
        path: String::new(),
        params: Vec::new(),
        authorization: None,
        traceparent: None,
        body: Some(request.clone()),
    };
    let word = match recorded.query_parameter("word") {
        Some((kind, value)) if kind == "STRING" => value,
        Some((kind, _)) => return invalid(&format!("Query parameter 'word' has type {kind}; STRING expected.")),
        None => return invalid("Undeclared query parameters: word"),
    };
    if !sql.contains("@word") {
        return invalid("The query does not use the parameter @word.");
    }
    let location = request.get("location").and_then(Value::as_str).unwrap_or("US").to_owned();
    let request_id = request.get("requestId").and_then(Value::as_str).map(str::to_owned);
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
                max_bytes_billed: recorded.maximum_bytes_billed(),
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

    if let Some(limit) = recorded.maximum_bytes_billed() {
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
    let max_results = request.get("maxResults").and_then(Value::as_u64).map(|n| n as usize);
    let mut jobs = lock(&shared.jobs);
    let job = jobs.get_mut(&job_id).expect("job just created");
    answer(shared, &job_id, job, "bigquery#queryResponse", 0, max_results)
}

/// A status answer for `job`: `jobComplete: false` while polls are left,
/// else the page of rows starting at `start`.
fn answer(
    shared: &Shared,
    job_id: &str,
    job: &mut Job,
    kind: &str,
    start: usize,
    max_results: Option<usize>,
) -> Response<FakeBody> {
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
    let size = match (page_size, max_results) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(usize::MAX),
    };
    let end = start.saturating_add(size).min(job.rows.len());
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
        "rows": rows,
        "totalBytesProcessed": table_bytes.to_string(),
        "jobComplete": true,
        "cacheHit": false,
    });
    if end < job.rows.len() {
        let token = random_hex(16);
        job.page_tokens.insert(token.clone(), end);
        body["pageToken"] = Value::String(token);
    }
    if rows_empty(&body) {
        // BigQuery leaves `rows` out when there are none.
        body.as_object_mut().expect("object").remove("rows");
    }
    json_response(StatusCode::OK, &body)
}

fn rows_empty(body: &Value) -> bool {
    body.get("rows").and_then(Value::as_array).is_some_and(Vec::is_empty)
}

fn job_not_found(project: &str, location: &str, job_id: &str) -> Response<FakeBody> {
    google_error(404, "notFound", "NOT_FOUND", &format!("Not found: Job {project}:{location}.{job_id}"))
}

fn get_query_results(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<FakeBody> {
    let mut jobs = lock(&shared.jobs);
    let Some(job) = jobs.get_mut(job_id).filter(|j| j.project == project) else {
        return job_not_found(project, req.param("location").unwrap_or("US"), job_id);
    };
    if req.param("location").is_some_and(|l| l != job.location) {
        return job_not_found(project, req.param("location").unwrap_or_default(), job_id);
    }
    let start = match (req.param("pageToken"), req.param("startIndex")) {
        (Some(token), _) => match job.page_tokens.get(token) {
            Some(&offset) => offset,
            None => return google_error(400, "invalid", "INVALID_ARGUMENT", "Invalid page token."),
        },
        (None, Some(index)) => match index.parse() {
            Ok(index) => index,
            Err(_) => return google_error(400, "invalid", "INVALID_ARGUMENT", "Invalid startIndex."),
        },
        (None, None) => 0,
    };
    let max_results = req.param("maxResults").and_then(|m| m.parse().ok());
    answer(shared, job_id, job, "bigquery#getQueryResultsResponse", start, max_results)
}

fn get_job(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<FakeBody> {
    let jobs = lock(&shared.jobs);
    let Some(job) = jobs.get(job_id).filter(|j| j.project == project) else {
        return job_not_found(project, req.param("location").unwrap_or("US"), job_id);
    };
    if req.param("location").is_some_and(|l| l != job.location) {
        return job_not_found(project, req.param("location").unwrap_or_default(), job_id);
    }
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

/// `application/x-www-form-urlencoded` (also URL queries) into pairs.
fn parse_form(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()
}

/// The fake on its own, spoken to with plain HTTP and with gcp_auth, so
/// that the service's tests rest on a fake that is known to behave.
#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};

    const SQL: &str = "SELECT corpus, SUM(word_count) AS total_words FROM `bigquery-public-data.samples.shakespeare` \
                       WHERE word = @word GROUP BY corpus ORDER BY total_words DESC, corpus ASC";

    fn client() -> reqwest::Client {
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
    }

    fn query_body(word: &str) -> Value {
        json!({
            "query": SQL,
            "useLegacySql": false,
            "parameterMode": "NAMED",
            "queryParameters": [{ "name": "word", "parameterType": { "type": "STRING" }, "parameterValue": { "value": word } }],
            "maximumBytesBilled": "104857600",
            "requestId": random_hex(8),
        })
    }

    async fn post_query(fake: &FakeGcp, body: &Value, token: Option<&str>) -> reqwest::Response {
        let mut req = client().post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint())).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    async fn get(fake: &FakeGcp, path_and_query: &str) -> reqwest::Response {
        client()
            .get(format!("{}/bigquery/v2/projects/my-project/{path_and_query}", fake.endpoint()))
            .send()
            .await
            .unwrap()
    }

    fn rows_of(body: &Value) -> Vec<(String, u64)> {
        body.get("rows")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let corpus = r.pointer("/f/0/v").and_then(Value::as_str).unwrap().to_owned();
                        let total = r.pointer("/f/1/v").and_then(Value::as_str).unwrap().parse().unwrap();
                        (corpus, total)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A JWT signed with the test key, for claims gcp_auth would not send.
    fn sign_jwt(claims: &Value) -> String {
        let key = RsaPrivateKey::from_pkcs8_pem(&test_key().pkcs8_pem).unwrap();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let signed = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
        let signature = SigningKey::<Sha256>::new(key).sign(signed.as_bytes()).to_bytes();
        format!("{signed}.{}", b64(&signature))
    }

    async fn grant(fake: &FakeGcp, assertion: &str) -> reqwest::Response {
        client()
            .post(fake.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type={}&assertion={assertion}", JWT_BEARER.replace(':', "%3A")))
            .send()
            .await
            .unwrap()
    }

    fn claims(fake: &FakeGcp) -> Value {
        let now = unix_now();
        json!({ "iss": CLIENT_EMAIL, "aud": fake.token_url(), "scope": BIGQUERY_SCOPE, "iat": now, "exp": now + 3595 })
    }

    #[test]
    fn the_fake_computes_what_the_sample_source_computes() {
        // Two independent implementations of the aggregation must agree.
        for (word, ignore_case) in [("the", false), ("The", true), ("o'er", false), ("zebra", false)] {
            let csv = flate2::read::GzDecoder::new(
                std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare.csv.gz")).unwrap(),
            );
            let word_match = if ignore_case {
                wordcount::source::WordMatch::IgnoreCase
            } else {
                wordcount::source::WordMatch::Exact
            };
            let theirs: Vec<(String, u64)> = wordcount::source::scan(csv, word, word_match)
                .unwrap()
                .rows
                .into_iter()
                .map(|r| (r.corpus, r.total_words))
                .collect();
            assert_eq!(expected_counts(word, ignore_case), theirs, "{word} ignore_case={ignore_case}");
        }
        assert!(expected_counts("the", false).len() > 30);
        assert!(expected_counts("zebra", false).is_empty());
    }

    #[tokio::test]
    async fn gcp_auth_gets_a_token_with_the_key_file_and_bigquery_accepts_it() {
        let fake = FakeGcp::start().await;
        let dir = tempfile::tempdir().unwrap();
        let account = gcp_auth::CustomServiceAccount::from_file(fake.write_key_file(dir.path())).unwrap();
        let token = gcp_auth::TokenProvider::token(&account, &[BIGQUERY_SCOPE]).await.expect("the fake grants a token");
        assert_eq!((fake.token_requests(), fake.tokens_issued()), (1, 1));

        let ok = post_query(&fake, &query_body("the"), Some(token.as_str())).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(fake.job_queries()[0].bearer(), Some(token.as_str()));

        for bad in [None, Some("ya29.made-up")] {
            let denied = post_query(&fake, &query_body("the"), bad).await;
            assert_eq!(denied.status(), 401);
            assert!(denied.headers().contains_key("www-authenticate"));
            let body: Value = denied.json().await.unwrap();
            assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("authError")));
            assert_eq!(body.pointer("/error/status"), Some(&json!("UNAUTHENTICATED")));
        }
        assert_eq!(fake.jobs_created(), 1);
    }

    #[tokio::test]
    async fn the_token_endpoint_refuses_what_google_would_refuse() {
        let fake = FakeGcp::start().await;
        let dir = tempfile::tempdir().unwrap();

        // gcp_auth itself, with an unknown account and with a read-only scope.
        let stranger =
            gcp_auth::CustomServiceAccount::from_file(fake.write_key_file_as(dir.path(), "intruder@evil.example"))
                .unwrap();
        assert!(gcp_auth::TokenProvider::token(&stranger, &[BIGQUERY_SCOPE]).await.is_err());
        let account = gcp_auth::CustomServiceAccount::from_file(fake.write_key_file(dir.path())).unwrap();
        assert!(
            gcp_auth::TokenProvider::token(&account, &["https://www.googleapis.com/auth/bigquery.readonly"])
                .await
                .is_err()
        );

        // Hand-made assertions: each breaks one rule.
        let good = claims(&fake);
        assert_eq!(grant(&fake, &sign_jwt(&good)).await.status(), 200, "{:?}", fake.token_rejections());
        let mut cases = Vec::new();
        for (field, value) in [
            ("aud", json!("https://oauth2.googleapis.com/token")),
            ("exp", json!(unix_now() - 1)),
            ("iat", json!(unix_now() + 600)),
            ("exp", json!(unix_now() + 7200)),
        ] {
            let mut c = good.clone();
            c[field] = value;
            cases.push((format!("{field} changed"), sign_jwt(&c)));
        }
        let valid = sign_jwt(&good);
        let (signed, _) = valid.rsplit_once('.').unwrap();
        let forged_claims = {
            let mut c = good.clone();
            c["iss"] = json!("intruder@evil.example");
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
        };
        let header = signed.split('.').next().unwrap();
        cases.push((
            "claims swapped under a valid signature".into(),
            format!("{header}.{forged_claims}.{}", valid.rsplit('.').next().unwrap()),
        ));
        cases.push(("no signature".into(), format!("{signed}.")));
        cases.push(("garbage".into(), "not-a-jwt".into()));

        for (name, assertion) in cases {
            let response = grant(&fake, &assertion).await;
            assert_eq!(response.status(), 400, "{name}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_grant", "{name}");
        }
        let rejections = fake.token_rejections();
        assert!(rejections.iter().any(|r| r.contains("account not found")), "{rejections:?}");
        assert!(rejections.iter().any(|r| r.contains("scope")), "{rejections:?}");
        assert!(rejections.iter().any(|r| r.contains("audience")), "{rejections:?}");
        assert!(rejections.iter().any(|r| r.contains("Signature")), "{rejections:?}");
        assert!(rejections.iter().any(|r| r.contains("short-lived")), "{rejections:?}");
    }

    #[tokio::test]
    async fn tokens_stop_working_when_the_fake_says_so() {
        let fake = FakeGcp::start().await;
        // Long enough to be used once on a busy machine, short enough to wait out.
        fake.set_token_lifetime(21, Some(Duration::from_millis(1500)));
        let response = grant(&fake, &sign_jwt(&claims(&fake))).await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["expires_in"], 21);
        let token = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(post_query(&fake, &query_body("the"), Some(&token)).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let expired = post_query(&fake, &query_body("the"), Some(&token)).await;
        assert_eq!(expired.status(), 401);
        assert!(expired.text().await.unwrap().contains("expired"));
    }

    #[tokio::test]
    async fn jobs_query_answers_from_the_table_in_the_client_library_shape() {
        let fake = FakeGcp::start_without_auth().await;
        let response = post_query(&fake, &query_body("the"), None).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(rows_of(&body), expected_counts("the", false));
        assert_eq!(body["jobComplete"], true);
        assert_eq!(body["totalRows"], expected_counts("the", false).len().to_string());
        assert!(body.get("pageToken").is_none());
        // The real client library can read it.
        let parsed: gcp_bigquery_client::model::query_response::QueryResponse =
            serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.rows.unwrap().len(), expected_counts("the", false).len());

        // Case-insensitive when the SQL folds case.
        let mut folded = query_body("THE");
        folded["query"] = json!(SQL.replace("word = @word", "LOWER(word) = LOWER(@word)"));
        let body: Value = post_query(&fake, &folded, None).await.json().await.unwrap();
        assert_eq!(rows_of(&body), expected_counts("the", true));

        // jobs.get reports what was billed, as int64 strings.
        let job_id = body.pointer("/jobReference/jobId").and_then(Value::as_str).unwrap();
        let job: Value = get(&fake, &format!("jobs/{job_id}?location=US")).await.json().await.unwrap();
        assert_eq!(job.pointer("/status/state"), Some(&json!("DONE")));
        assert_eq!(job.pointer("/statistics/query/totalBytesBilled"), Some(&json!(DEFAULT_TABLE_BYTES.to_string())));
        let parsed: gcp_bigquery_client::model::job::Job = serde_json::from_value(job).unwrap();
        assert!(parsed.statistics.unwrap().query.unwrap().total_bytes_processed.is_some());
        assert_eq!(get(&fake, &format!("jobs/{job_id}?location=EU")).await.status(), 404);
    }

    #[tokio::test]
    async fn incomplete_jobs_and_pages_are_served_as_bigquery_does() {
        let fake = FakeGcp::start_without_auth().await;
        fake.set_incomplete_polls(3);
        fake.set_page_size(Some(7));
        let first: Value = post_query(&fake, &query_body("the"), None).await.json().await.unwrap();
        assert_eq!(first["jobComplete"], false);
        assert!(first.get("rows").is_none() && first.get("schema").is_none());
        let job_id = first.pointer("/jobReference/jobId").and_then(Value::as_str).unwrap().to_owned();

        let job: Value = get(&fake, &format!("jobs/{job_id}")).await.json().await.unwrap();
        assert_eq!(job.pointer("/status/state"), Some(&json!("RUNNING")));
        for _ in 0..2 {
            let poll: Value = get(&fake, &format!("queries/{job_id}?timeoutMs=100")).await.json().await.unwrap();
            assert_eq!(poll["jobComplete"], false);
        }
        let mut rows = Vec::new();
        let mut query = format!("queries/{job_id}?location=US");
        let mut pages = 0;
        loop {
            let page: Value = get(&fake, &query).await.json().await.unwrap();
            assert_eq!(page["jobComplete"], true);
            let parsed: gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse =
                serde_json::from_value(page.clone()).unwrap();
            assert!(parsed.schema.is_some());
            let page_rows = rows_of(&page);
            assert!(page_rows.len() <= 7);
            rows.extend(page_rows);
            pages += 1;
            match page.get("pageToken").and_then(Value::as_str) {
                Some(token) => query = format!("queries/{job_id}?location=US&pageToken={token}"),
                None => break,
            }
        }
        assert_eq!(rows, expected_counts("the", false));
        assert_eq!(pages, expected_counts("the", false).len().div_ceil(7));
        assert_eq!(get(&fake, &format!("queries/{job_id}?pageToken=bogus")).await.status(), 400);
        assert_eq!(get(&fake, "queries/job_unknown").await.status(), 404);
    }

    #[tokio::test]
    async fn a_repeated_request_id_joins_the_existing_job() {
        let fake = FakeGcp::start_without_auth().await;
        let body = query_body("the");
        let a: Value = post_query(&fake, &body, None).await.json().await.unwrap();
        let b: Value = post_query(&fake, &body, None).await.json().await.unwrap();
        assert_eq!(a["jobReference"], b["jobReference"]);
        assert_eq!(fake.jobs_created(), 1);
        post_query(&fake, &query_body("the"), None).await;
        assert_eq!(fake.jobs_created(), 2);
        assert_eq!(fake.bigquery_calls(), 3);
    }

    #[tokio::test]
    async fn queries_that_bigquery_would_refuse_are_refused() {
        let fake = FakeGcp::start_without_auth().await;
        let mut legacy = query_body("the");
        legacy.as_object_mut().unwrap().remove("useLegacySql");
        let mut positional = query_body("the");
        positional["parameterMode"] = json!("POSITIONAL");
        let mut unbound = query_body("the");
        unbound["queryParameters"] = json!([]);
        let mut inlined = query_body("the");
        inlined["query"] = json!(SQL.replace("@word", "'the'"));
        for (name, body) in [("legacy", legacy), ("positional", positional), ("unbound", unbound), ("inlined", inlined)]
        {
            let response = post_query(&fake, &body, None).await;
            assert_eq!(response.status(), 400, "{name}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("invalidQuery")), "{name}");
        }

        let mut cheap = query_body("the");
        cheap["maximumBytesBilled"] = json!("1000");
        let response = post_query(&fake, &cheap, None).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("bytesBilledLimitExceeded")));
        fake.set_table_bytes(500);
        assert_eq!(post_query(&fake, &cheap, None).await.status(), 200);
    }

    #[tokio::test]
    async fn each_fault_answers_as_google_does_and_clears_after_n_calls() {
        let fake = FakeGcp::start_without_auth().await;
        let cases = [
            (Mode::ServerError(500), 500, "backendError"),
            (Mode::ServerError(503), 503, "backendError"),
            (Mode::RateLimited, 429, "rateLimitExceeded"),
            (Mode::RateLimitedForbidden, 403, "rateLimitExceeded"),
            (Mode::AccessDenied, 403, "accessDenied"),
            (Mode::BytesBilledLimit, 400, "bytesBilledLimitExceeded"),
            (Mode::Unauthenticated, 401, "authError"),
        ];
        for (mode, status, reason) in cases {
            fake.set_mode_for(mode, 2);
            for _ in 0..2 {
                let response = post_query(&fake, &query_body("the"), None).await;
                assert_eq!(response.status(), status, "{mode:?}");
                // The client library's error type reads it.
                let body: Value = response.json().await.unwrap();
                assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!(reason)), "{mode:?}");
                assert_eq!(body.pointer("/error/code"), Some(&json!(status)), "{mode:?}");
            }
            assert_eq!(post_query(&fake, &query_body("the"), None).await.status(), 200, "{mode:?} cleared");
        }

        fake.set_mode(Mode::MalformedJson);
        let response = post_query(&fake, &query_body("the"), None).await;
        assert_eq!(response.status(), 200);
        assert!(response.json::<Value>().await.is_err());

        fake.set_mode(Mode::TruncatedBody);
        let response = post_query(&fake, &query_body("the"), None).await;
        assert_eq!(response.headers()["content-length"], "4096");
        assert!(response.bytes().await.is_err(), "the body must break off");

        fake.set_mode(Mode::Hang);
        let started = Instant::now();
        let hung = client()
            .post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint()))
            .timeout(Duration::from_millis(300))
            .json(&query_body("the"))
            .send()
            .await;
        assert!(hung.unwrap_err().is_timeout());
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Token faults leave BigQuery alone and the other way round.
        fake.set_mode(Mode::TokenServerError);
        assert_eq!(post_query(&fake, &query_body("the"), None).await.status(), 200);
        assert_eq!(grant(&fake, &sign_jwt(&claims(&fake))).await.status(), 500);
        fake.set_mode_for(Mode::TokenInvalidGrant, 1);
        let refused: Value = grant(&fake, &sign_jwt(&claims(&fake))).await.json().await.unwrap();
        assert_eq!(refused["error"], "invalid_grant");
        assert_eq!(grant(&fake, &sign_jwt(&claims(&fake))).await.status(), 200);
    }

    #[tokio::test]
    async fn delays_and_requests_are_observable() {
        let fake = FakeGcp::start_without_auth().await;
        fake.set_delay(Duration::from_millis(250));
        let started = Instant::now();
        client()
            .post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint()))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .json(&query_body("o'er\"; DROP TABLE x; --"))
            .send()
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        let [call] = fake.job_queries().try_into().unwrap();
        assert_eq!(call.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(call.query_parameter("word"), Some(("STRING".into(), "o'er\"; DROP TABLE x; --".into())));
        assert_eq!(call.use_legacy_sql(), Some(false));
        assert_eq!(call.parameter_mode(), Some("NAMED"));
        assert_eq!(call.maximum_bytes_billed().as_deref(), Some("104857600"));
        assert!(call.request_id().is_some());
        assert_eq!(call.sql(), Some(SQL));
    }
}

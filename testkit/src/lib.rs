//! A fake Google on 127.0.0.1: the OAuth2 token endpoint a service account
//! talks to and the parts of the BigQuery v2 REST API the service uses
//! (`jobs.query`, `jobs.getQueryResults`, `jobs.get`), over HTTP or, for the
//! image's TLS test, HTTPS ([`FakeGcp::start_tls`]).
//!
//! It is strict where a lenient fake would hide bugs in the real client code:
//! - `POST /token` verifies the RS256 signature of the service account's JWT
//!   against the key it generated, and its `iss`, `aud`, `scope`, `iat` and
//!   `exp`, like Google's token endpoint; it hands out opaque random tokens.
//! - Every BigQuery call needs `Authorization: Bearer <a token it issued,
//!   not yet expired>` (unless started without auth, like an emulator). A
//!   token can be made to die earlier than its advertised `expires_in`
//!   ([`FakeGcp::set_token_lifetime`]), so a client that keeps using an old
//!   token fails instead of passing by luck.
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
//! Every BigQuery request is recorded, with the connection it came on.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The scope a token must carry to run query jobs. BigQuery's discovery
/// document lists `bigquery` and `cloud-platform` for `jobs.query`; the
/// read-only scopes do not allow creating jobs.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
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

/// The RSA key of the test service account: generated once per process
/// (2048-bit keygen takes a moment) and shared by every fake.
struct TestKey {
    private: RsaPrivateKey,
    pkcs8_pem: String,
    key_id: String,
}

fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation");
        let pkcs8_pem = private.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM").to_string();
        TestKey { private, pkcs8_pem, key_id: random_hex(20) }
    })
}

/// A JWT signed with the test service account's key, for tests that send
/// claims gcp_auth would not.
pub fn sign_jwt(claims: &Value) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let signature = SigningKey::<Sha256>::new(test_key().private.clone()).sign(signed.as_bytes()).to_bytes();
    format!("{signed}.{}", b64(&signature))
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
    connections: AtomicUsize,
    jobs_created: AtomicUsize,
    token_requests: AtomicUsize,
    tokens_issued: AtomicUsize,
    bigquery_calls: AtomicUsize,
}

struct Shared {
    require_auth: bool,
    token_url: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The only project it knows, when set; any project otherwise.
    project: Option<String>,
    /// JSON lines of handshakes and requests, for a test outside the process.
    event_log: Option<Mutex<std::fs::File>>,
    settings: Mutex<Settings>,
    tokens: Mutex<HashMap<String, Instant>>,
    jobs: Mutex<HashMap<String, Job>>,
    request_ids: Mutex<HashMap<String, String>>,
    recorded: Mutex<Vec<Recorded>>,
    token_rejections: Mutex<Vec<String>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

    fn log_event(&self, event: Value) {
        if let Some(file) = &self.event_log {
            let _ = writeln!(lock(file), "{event}");
        }
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
        Self::start_with(true, None).await
    }

    /// A fake that ignores `Authorization`, like an emulator.
    pub async fn start_without_auth() -> FakeGcp {
        Self::start_with(false, None).await
    }

    /// HTTPS without auth, for `project` only; every handshake (`tls_ok`, `tls_error` with the
    /// reason, which names the client's alert) and every BigQuery request
    /// (`request`) is appended to `event_log` as a JSON line.
    pub async fn start_tls(tls: tokio_rustls::TlsAcceptor, project: String, event_log: std::fs::File) -> FakeGcp {
        Self::start_with(false, Some((tls, project, event_log))).await
    }

    async fn start_with(
        require_auth: bool,
        tls: Option<(tokio_rustls::TlsAcceptor, String, std::fs::File)>,
    ) -> FakeGcp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (tls, project, event_log) = match tls {
            Some((tls, project, log)) => (Some(tls), Some(project), Some(Mutex::new(log))),
            None => (None, None, None),
        };
        let shared = Arc::new(Shared {
            require_auth,
            token_url: format!("{scheme}://{addr}/token"),
            tls,
            project,
            event_log,
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

    pub fn port(&self) -> u16 {
        self.addr.port()
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let connection = shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, mut stop) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            let io: Box<dyn Io> = match &shared.tls {
                None => Box::new(stream),
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        let version = stream.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
                        shared.log_event(json!({ "event": "tls_ok", "version": version }));
                        Box::new(stream)
                    }
                    Err(err) => return shared.log_event(json!({ "event": "tls_error", "reason": err.to_string() })),
                },
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, connection, req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
            // Dropping the connection (hung answers included) on shutdown.
            tokio::select! {
                _ = connection => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// A body that is either complete or, on purpose, breaks off.
type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// `bytes`, then, once they are flushed, a failure: the connection is cut
/// short of the announced Content-Length. (Failing at once would make hyper
/// drop the buffered head too; the client must see headers and a partial body.)
fn truncated(bytes: &'static [u8]) -> Body {
    let head = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(bytes)))]);
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("body truncated on purpose"))
    });
    StreamBody::new(head.chain(cut)).boxed_unsync()
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    respond(status, "application/json; charset=UTF-8", full(body.to_string()))
}

/// Google's JSON error shape.
fn google_error(code: u16, reason: &str, status: &str, message: &str) -> Response<Body> {
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
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""));
    }
    response
}

async fn handle(shared: &Shared, connection: usize, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);

    if path == "/token" && parts.method == Method::POST {
        return token_endpoint(shared, &body);
    }
    let Some(rest) = path.strip_prefix("/bigquery/v2/") else {
        return google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {path}"));
    };

    let recorded = Recorded {
        connection,
        method: parts.method.to_string(),
        path: path.clone(),
        params: parts.uri.query().map(parse_form).unwrap_or_default(),
        authorization: header("authorization"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&body).ok(),
    };
    shared.log_event(json!({ "event": "request", "method": recorded.method, "path": path }));
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
        && let Err(message) = check_bearer(shared, recorded.authorization.as_deref())
    {
        return google_error(401, "authError", "UNAUTHENTICATED", message);
    }

    let segments: Vec<&str> = rest.split('/').collect();
    if let (Some(known), Some(project)) = (&shared.project, segments.get(1))
        && known != project
    {
        return google_error(404, "notFound", "NOT_FOUND", &format!("Not found: Project {project}"));
    }
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["projects", project, "queries"]) => jobs_query(shared, project, &body),
        (&Method::GET, ["projects", project, "queries", job_id]) => {
            get_query_results(shared, project, job_id, &recorded)
        }
        (&Method::GET, ["projects", project, "jobs", job_id]) => get_job(shared, project, job_id, &recorded),
        _ => google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {} {path}", parts.method)),
    }
}

async fn fault_response(fault: Mode) -> Response<Body> {
    const JSON: &str = "application/json; charset=UTF-8";
    let (code, reason, status, message) = match fault {
        Mode::Normal | Mode::TokenServerError | Mode::TokenInvalidGrant => unreachable!("not a BigQuery fault"),
        // Until the client gives up or the fake is dropped.
        Mode::Hang => return std::future::pending().await,
        Mode::BadGatewayHtml => {
            let html = &b"<html><body><h1>502 Bad Gateway</h1></body></html>"[..];
            return respond(StatusCode::BAD_GATEWAY, "text/html", full(html));
        }
        Mode::MalformedJson => {
            let broken = &b"{\"kind\": \"bigquery#queryResponse\", \"jobComplete\": tru<html>"[..];
            return respond(StatusCode::OK, JSON, full(broken));
        }
        Mode::TruncatedBody => {
            let partial =
                b"{\"kind\":\"bigquery#queryResponse\",\"jobComplete\":true,\"rows\":[{\"f\":[{\"v\":\"hamlet\"}";
            let mut response = respond(StatusCode::OK, JSON, truncated(partial));
            response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("4096"));
            return response;
        }
        Mode::ServerError(503) => (503, "backendError", "UNAVAILABLE", "Error encountered during execution."),
        Mode::ServerError(code) => (code, "backendError", "INTERNAL", "An internal error occurred."),
        Mode::RateLimited => (429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Exceeded rate limits."),
        Mode::RateLimitedForbidden => (403, "rateLimitExceeded", "PERMISSION_DENIED", "Too many concurrent queries."),
        Mode::AccessDenied => (403, "accessDenied", "PERMISSION_DENIED", "Access Denied: no bigquery.jobs.create."),
        Mode::BytesBilledLimit => (400, "bytesBilledLimitExceeded", "INVALID_ARGUMENT", "Bytes billed over the limit."),
        Mode::Unauthenticated => (401, "authError", "UNAUTHENTICATED", "Invalid authentication credentials."),
    };
    google_error(code, reason, status, message)
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

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(status, &json!({ "error": error, "error_description": description }))
}

fn token_endpoint(shared: &Shared, body: &[u8]) -> Response<Body> {
    shared.counters.token_requests.fetch_add(1, Ordering::SeqCst);
    match shared.take_fault(true) {
        Some(Mode::TokenServerError) => {
            return token_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_failure", "Backend error.");
        }
        Some(_) => return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant: account not found"),
        None => {}
    }
    let form: HashMap<_, _> = form_urlencoded::parse(body).collect();
    if form.get("grant_type").map(|g| &**g) != Some(JWT_BEARER) {
        lock(&shared.token_rejections).push("unsupported grant_type".into());
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type.");
    }
    if let Err(problem) = verify_assertion(form.get("assertion").map_or("", |a| &**a), &shared.token_url) {
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
    VerifyingKey::<Sha256>::new(test_key().private.to_public_key())
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

fn invalid(message: &str) -> Response<Body> {
    google_error(400, "invalidQuery", "INVALID_ARGUMENT", message)
}

fn jobs_query(shared: &Shared, project: &str, body: &[u8]) -> Response<Body> {
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

fn get_query_results(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<Body> {
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

fn get_job(shared: &Shared, project: &str, job_id: &str, req: &Recorded) -> Response<Body> {
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

/// `application/x-www-form-urlencoded` (also URL queries) into pairs.
fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()
}

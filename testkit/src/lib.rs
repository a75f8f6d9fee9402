//! A fake Google on 127.0.0.1: the OAuth2 token endpoint a service account
//! talks to and the parts of the BigQuery v2 REST API the service uses, over
//! HTTP or, for the image's TLS test, HTTPS ([`FakeGcp::start_tls`]). One
//! module per thing it fakes:
//! - `token`: the token endpoint and the service account's JWTs;
//! - `bigquery`: the BigQuery jobs and the table they answer from;
//! - `serve`: the listener, the dispatch, Google's errors and the faults.
//!
//! It is strict where a lenient fake would hide bugs in the real client code:
//! - Every BigQuery call needs `Authorization: Bearer <a token it issued,
//!   not yet expired>` (unless started without auth, like an emulator). A
//!   token can be made to die earlier than its advertised `expires_in`
//!   ([`FakeGcp::set_token_lifetime`]), so a client that keeps using an old
//!   token fails instead of passing by luck.
//! - The token endpoint checks the JWT as Google does, and `jobs.query` the
//!   request as BigQuery does (see the modules).
//!
//! Failures are switched at run time through [`FakeGcp::set_mode`] (for good)
//! or [`FakeGcp::set_mode_for`] (the next N calls, then normal); a token
//! fault counts token requests, every other fault counts BigQuery calls.
//! Every BigQuery request is recorded, with the connection it came on.
//! The fake's own tests are `testkit/tests/fake_gcp.rs`.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod bigquery;
mod serve;
mod token;

pub use bigquery::{DEFAULT_TABLE_BYTES, Recorded, expected_counts};
pub use token::{BIGQUERY_SCOPE, CLIENT_EMAIL, JWT_BEARER, KEY_PROJECT, sign_jwt};

use bigquery::Job;
use token::test_key;

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
        tokio::spawn(serve::serve(listener, Arc::clone(&shared), stop));
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

pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()
}

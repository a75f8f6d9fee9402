//! Load, fault, connection-scale and rolling-restart harness.
//!
//! It drives the real release binary as a child process, so RSS, SIGTERM
//! and exit codes are the real ones, against the strict fake Google of the
//! integration tests (this crate's library) running inside this process. Load comes from hyper's own HTTP/1 client on
//! N keep-alive connections, bounded in time and count, on 127.0.0.1 only.
//!
//! Usage: `loadtest all|cold-path|idle-connections|faults|rolling-restart`
//! Environment: `LOADTEST_BIN` (default target/release/wordcount),
//! `LOADTEST_OUT` (child logs, default target/loadtest), `LOADTEST_SECONDS`
//! (cold-path load duration, default 10), `LOADTEST_CONNECTIONS` (cold-path
//! connections, default 64), `LOADTEST_IDLE` (idle connections, default 10000),
//! `LOADTEST_HELLO` (bare hyper, the idle-connections bound's base, default
//! target/release/examples/hello).
//!
//! Every scenario prints its figures as a table and the process exits 1 when
//! a target is missed. docs/reliability.md explains each model and target.
//!
//! One module per scenario; this file holds what they share (the checks, the
//! service as a child process with the fake Google beside it, a keep-alive
//! HTTP/1.1 client, the load workers and their summary) and `main`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use testkit::FakeGcp;
use tokio::net::TcpStream;

mod cold_path;
mod faults;
mod idle_connections;
mod rolling_restart;

use cold_path::cold_path;
use faults::faults;
use idle_connections::idle_connections;
use rolling_restart::rolling_restart;

const PROJECT: &str = "wordcount-load";
const COUNTS: &str = "/api/v1/counts";

// ---------------------------------------------------------------------------
// Checks: every scenario collects them and prints them at the end.

#[derive(Default)]
struct Verdict {
    failures: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        if !ok {
            self.failures.push(what);
        }
    }
}

// ---------------------------------------------------------------------------
// The service under test, as a child process.

struct Instance {
    name: String,
    child: Child,
    port: u16,
    admin: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("address").port()
}

fn binary() -> PathBuf {
    PathBuf::from(std::env::var("LOADTEST_BIN").unwrap_or_else(|_| "target/release/wordcount".into()))
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("LOADTEST_OUT").unwrap_or_else(|_| "target/loadtest".into()));
    std::fs::create_dir_all(&dir).expect("create the log directory");
    dir
}

/// The Google side of one scenario: the fake and the key file it issued.
struct Google {
    fake: FakeGcp,
    key_file: PathBuf,
    _keys: tempfile::TempDir,
}

impl Google {
    async fn start() -> Google {
        let fake = FakeGcp::start().await;
        let keys = tempfile::tempdir().expect("temporary directory");
        let key_file = fake.write_key_file(keys.path());
        Google { fake, key_file, _keys: keys }
    }
}

impl Instance {
    fn spawn(name: &str, google: &Google, extra: &[(&str, &str)]) -> Instance {
        let (port, admin) = (free_port(), free_port());
        let log = out_dir().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create the log file");
        let endpoint = google.fake.endpoint();
        let mut vars: BTreeMap<&str, String> = [
            ("SOURCE", "bigquery".to_owned()),
            ("BIGQUERY_PROJECT", PROJECT.to_owned()),
            ("BIGQUERY_ENDPOINT", endpoint),
            ("GOOGLE_APPLICATION_CREDENTIALS", google.key_file.display().to_string()),
            ("BIND_ADDRESS", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("ADMIN_PORT", admin.to_string()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            vars.insert(k, (*v).to_owned());
        }
        let child = Command::new(binary())
            .env_clear()
            .envs(&vars)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (set LOADTEST_BIN)", binary().display()));
        Instance { name: name.to_owned(), child, port, admin, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = get_once(self.admin, "/readyz", Duration::from_secs(1)).await {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited with {status}; see {}", self.name, self.log.display()));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready within {limit:?}; see {}", self.name, self.log.display()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A signal through the shell's `kill` builtin (std only sends SIGKILL).
    fn signal(&self, name: &str) {
        let _ = Command::new("sh").args(["-c", &format!("kill -{name} {}", self.pid())]).status();
    }

    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        match get_once(self.admin, "/metrics", Duration::from_secs(5)).await {
            Ok((200, text)) => parse_metrics(&text),
            _ => BTreeMap::new(),
        }
    }

    fn log_lines_containing(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log).map(|t| t.lines().filter(|l| l.contains(needle)).count()).unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:").unwrap_or(0)
}

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every series of `name` whose labels contain `label` (may be "").
fn metric_sum(m: &BTreeMap<String, f64>, name: &str, label: &str) -> f64 {
    m.iter().filter(|(k, _)| k.split('{').next() == Some(name) && k.contains(label)).map(|(_, v)| v).sum()
}

/// `reason=count` for every source error reason that grew between two scrapes.
fn error_deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut out = Vec::new();
    for (k, v) in after {
        if k.starts_with("wordcount_source_errors_total{") {
            let delta = v - before.get(k).copied().unwrap_or(0.0);
            if delta > 0.0 {
                let reason = k.split("reason=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
                out.push(format!("{reason}={delta}"));
            }
        }
    }
    if out.is_empty() { "-".into() } else { out.join(",") }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client: hyper's connection-level client on keep-alive connections.

struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    port: u16,
}

struct Answer {
    status: u16,
    stale: bool,
}

async fn connect(port: u16) -> Result<Conn, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, port })
}

impl Conn {
    /// False once the server has closed the connection (or said it would).
    async fn usable(&mut self) -> bool {
        !self.sender.is_closed() && self.sender.ready().await.is_ok()
    }

    /// `GET path` on this connection: the response head, its body to read.
    async fn send(&mut self, path: &str) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::new())
            .expect("a valid request");
        self.sender.send_request(request).await
    }

    async fn get(&mut self, path: &str) -> Result<Answer, Failure> {
        let response = self.send(path).await.map_err(Failure::BeforeResponse)?;
        let status = response.status().as_u16();
        let stale = response.headers().get("x-data-stale").is_some_and(|v| v == "true");
        response.into_body().collect().await.map_err(|_| Failure::InBody)?;
        Ok(Answer { status, stale })
    }
}

/// Why a request got no complete answer.
#[derive(Debug)]
enum Failure {
    /// No response head arrived.
    BeforeResponse(hyper::Error),
    /// The head arrived, the body broke off: never retried.
    InBody,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BeforeResponse(e) => write!(f, "no response: {e}"),
            Failure::InBody => f.write_str("the response body broke off"),
        }
    }
}

/// One request on a new connection, for probes: (status, body).
async fn get_once(port: u16, path: &str, limit: Duration) -> Result<(u16, String), String> {
    let attempt = async {
        let mut conn = connect(port).await?;
        let response = conn.send(path).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| format!("no answer within {limit:?}"))?
}

/// The request a closed keep-alive connection lost before any response
/// byte: hyper reports it as canceled (not sent) or as an incomplete message
/// (EOF instead of a response head). HTTP clients retry exactly these once,
/// for idempotent requests, on a new connection.
fn retryable(failure: &Failure) -> bool {
    matches!(failure, Failure::BeforeResponse(e) if e.is_canceled() || e.is_incomplete_message())
}

// ---------------------------------------------------------------------------
// Load: N workers, each on its own keep-alive connection.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// 200 after one retry on a new connection.
    RetriedOk,
    Status(u16),
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Offset of the start from the scenario's t0.
    start: Duration,
    latency: Duration,
    outcome: Outcome,
    /// Port of the instance that answered (or was asked).
    port: u16,
    /// Port of the first attempt (differs from `port` after a retry).
    first_port: u16,
    stale: bool,
}

struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
    t0: Instant,
    /// Requests sent and not yet answered, per port.
    in_flight: Arc<InFlight>,
}

#[derive(Default)]
struct InFlight {
    counts: std::sync::Mutex<BTreeMap<u16, usize>>,
}

impl InFlight {
    fn add(&self, port: u16, n: isize) {
        let mut c = self.counts.lock().unwrap();
        let e = c.entry(port).or_default();
        *e = (*e as isize + n) as usize;
    }
    fn get(&self, port: u16) -> usize {
        self.counts.lock().unwrap().get(&port).copied().unwrap_or(0)
    }
}

impl Load {
    /// Starts `connections` workers that load `path` on the instance whose
    /// port `target` holds at the time each connection is opened (the load
    /// balancer: changing `target` moves new connections, not open ones).
    fn start(connections: usize, target: Arc<AtomicU16>, path: &'static str) -> Load {
        Self::start_mixed(connections, 0, Duration::ZERO, target, path, path)
    }

    /// `busy` connections that send the next request for `path` as soon as
    /// the last one is answered, and `idle` ones that ask for `idle_path`
    /// and pause `think` between requests (so at any moment most of them
    /// are idle keep-alive connections).
    fn start_mixed(
        busy: usize,
        idle: usize,
        think: Duration,
        target: Arc<AtomicU16>,
        path: &'static str,
        idle_path: &'static str,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(InFlight::default());
        let t0 = Instant::now();
        let workers = (0..busy + idle)
            .map(|i| {
                let (stop, target, in_flight) = (stop.clone(), target.clone(), in_flight.clone());
                let (think, path) = if i < busy { (Duration::ZERO, path) } else { (think, idle_path) };
                tokio::spawn(worker(stop, target, path, t0, in_flight, think))
            })
            .collect();
        Load { stop, workers, t0, in_flight }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.expect("a load worker panicked"));
        }
        all.sort_by_key(|s| s.start);
        all
    }
}

async fn worker(
    stop: Arc<AtomicBool>,
    target: Arc<AtomicU16>,
    path: &'static str,
    t0: Instant,
    in_flight: Arc<InFlight>,
    think: Duration,
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(4096);
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        // A connection the server closed (after `connection: close`, or
        // idle at shutdown) is replaced before a request is sent on it.
        if let Some(c) = conn.as_mut()
            && !c.usable().await
        {
            conn = None;
        }
        let started = Instant::now();
        if conn.is_none() {
            match connect(target.load(Ordering::SeqCst)).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    samples.push(Sample {
                        start: started - t0,
                        latency: started.elapsed(),
                        outcome: Outcome::Failed,
                        port: target.load(Ordering::SeqCst),
                        first_port: target.load(Ordering::SeqCst),
                        stale: false,
                    });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let port = c.port;
        let first_port = port;
        in_flight.add(port, 1);
        let first = c.get(path).await;
        in_flight.add(port, -1);
        let (outcome, port, stale) = match first {
            Ok(a) => (if a.status == 200 { Outcome::Ok } else { Outcome::Status(a.status) }, port, a.stale),
            Err(e) if retryable(&e) => {
                conn = None;
                let port = target.load(Ordering::SeqCst);
                match connect(port).await {
                    Ok(mut c) => {
                        in_flight.add(port, 1);
                        let second = c.get(path).await;
                        in_flight.add(port, -1);
                        conn = Some(c);
                        match second {
                            Ok(a) if a.status == 200 => (Outcome::RetriedOk, port, a.stale),
                            Ok(a) => (Outcome::Status(a.status), port, a.stale),
                            Err(_) => (Outcome::Failed, port, false),
                        }
                    }
                    Err(_) => (Outcome::Failed, port, false),
                }
            }
            Err(_) => {
                conn = None;
                (Outcome::Failed, port, false)
            }
        };
        samples.push(Sample { start: started - t0, latency: started.elapsed(), outcome, port, first_port, stale });
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
    }
    samples
}

struct Summary {
    requests: usize,
    ok: usize,
    retried_ok: usize,
    status_5xx: usize,
    other_status: usize,
    failed: usize,
    stale: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

fn summarize<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Summary {
    let mut latencies = Vec::new();
    let mut s = Summary {
        requests: 0,
        ok: 0,
        retried_ok: 0,
        status_5xx: 0,
        other_status: 0,
        failed: 0,
        stale: 0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        p999: Duration::ZERO,
        max: Duration::ZERO,
    };
    for sample in samples {
        s.requests += 1;
        match sample.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::RetriedOk => s.retried_ok += 1,
            Outcome::Status(code) if code >= 500 => s.status_5xx += 1,
            Outcome::Status(_) => s.other_status += 1,
            Outcome::Failed => s.failed += 1,
        }
        s.stale += usize::from(sample.stale);
        latencies.push(sample.latency);
    }
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    s.p50 = at(0.50).copied().unwrap_or_default();
    s.p99 = at(0.99).copied().unwrap_or_default();
    s.p999 = at(0.999).copied().unwrap_or_default();
    s.max = latencies.last().copied().unwrap_or_default();
    s
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} cores, {cpu}, kernel {}, load average {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        if !binary().is_file() {
            eprintln!("no binary at {} (build it, or set LOADTEST_BIN)", binary().display());
            return ExitCode::from(2);
        }
        let version = Command::new(binary()).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
        println!(
            "loadtest {scenario}: {} against {} ({})",
            machine(),
            binary().display(),
            String::from_utf8_lossy(&version).trim()
        );
        let mut v = Verdict::default();
        let started = Instant::now();
        match scenario.as_str() {
            "cold-path" => cold_path(&mut v).await,
            "idle-connections" => idle_connections(&mut v).await,
            "faults" => faults(&mut v).await,
            "rolling-restart" => rolling_restart(&mut v).await,
            "all" => {
                cold_path(&mut v).await;
                idle_connections(&mut v).await;
                faults(&mut v).await;
                rolling_restart(&mut v).await;
            }
            other => {
                eprintln!("unknown scenario {other}: all|cold-path|idle-connections|faults|rolling-restart");
                return ExitCode::from(2);
            }
        }
        println!(
            "\nloadtest {scenario}: {:.0} s, {} target(s) missed",
            started.elapsed().as_secs_f64(),
            v.failures.len()
        );
        for f in &v.failures {
            println!("  missed: {f}");
        }
        if v.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}

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
//! connections, default 64), `LOADTEST_IDLE` (idle connections, default 10000).
//!
//! Every scenario prints its figures as a table and the process exits 1 when
//! a target is missed. docs/reliability.md explains each model and target.

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
use testkit::{FakeGcp, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wordcount::cache::{RETRY_AFTER_FAILURE, STALE_WAIT};

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
        proc_status(self.pid(), "VmRSS:").unwrap_or(0)
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

    async fn get(&mut self, path: &str) -> Result<Answer, Failure> {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::new())
            .expect("a valid request");
        let response = self.sender.send_request(request).await.map_err(Failure::BeforeResponse)?;
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
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Empty::new())
            .expect("a valid request");
        let response = conn.sender.send_request(request).await.map_err(|e| e.to_string())?;
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
// 1. cold-path: BigQuery jobs per TTL under load.

async fn cold_path(v: &mut Verdict) {
    let ttl = 2u64;
    let seconds = env_num("LOADTEST_SECONDS", 10);
    let connections = env_num("LOADTEST_CONNECTIONS", 64) as usize;
    println!("\n== cold-path: {connections} connections on {COUNTS} for {seconds} s, CACHE_TTL={ttl} s");
    let google = Google::start().await;
    let mut a = Instance::spawn("cold-path", &google, &[("CACHE_TTL", &ttl.to_string())]);
    if let Err(e) = a.wait_ready(Duration::from_secs(20)).await {
        return v.check(false, e);
    }
    let jobs_before = google.fake.jobs_created();
    let tokens_before = google.fake.token_requests();
    let started = Instant::now();
    let load = Load::start(connections, Arc::new(AtomicU16::new(a.port)), COUNTS);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let samples = load.finish().await;
    let elapsed = started.elapsed();
    let jobs = google.fake.jobs_created() - jobs_before;
    let m = a.metrics().await;
    let s = summarize(&samples);

    // A snapshot fetched at t is fresh until t + TTL, and the next job can
    // only start after that, so jobs are at least TTL apart: a window of D
    // seconds holds at most floor(D / TTL) of them, plus one where the
    // window's start cuts a TTL period (a job right at the start and one
    // right at the end).
    let windows = elapsed.as_secs_f64() / ttl as f64;
    let bound = windows.floor() as usize + 1;
    println!(
        "| req/s | requests | 200 | non-200 | failed | stale | p50 ms | p99 ms | p99.9 ms | max ms | TTL windows | BigQuery jobs | bound |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
        s.requests as f64 / elapsed.as_secs_f64(),
        s.requests,
        s.ok,
        s.status_5xx + s.other_status,
        s.failed,
        s.stale,
        ms(s.p50),
        ms(s.p99),
        ms(s.p999),
        ms(s.max),
        windows,
        jobs,
        bound
    );
    println!(
        "  token requests: {}; cache lookups hit/miss/stale: {}/{}/{}",
        google.fake.token_requests() - tokens_before,
        metric_sum(&m, "wordcount_cache_lookups_total", "\"hit\""),
        metric_sum(&m, "wordcount_cache_lookups_total", "\"miss\""),
        metric_sum(&m, "wordcount_cache_lookups_total", "\"stale\""),
    );
    v.check(jobs <= bound, format!("cold-path: {jobs} BigQuery jobs in {windows:.1} TTL windows (<= {bound}: 1 per word per TTL, +1 for the window edge)"));
    v.check(
        jobs >= (windows / 2.0).floor() as usize,
        format!("cold-path: the cache did expire under load ({jobs} jobs, so the cold path was exercised)"),
    );
    v.check(s.ok == s.requests, format!("cold-path: every request answered 200 ({} of {})", s.ok, s.requests));
    // A refresh against the fake takes milliseconds; requests that arrive
    // while it runs wait for it (at most STALE_WAIT), the rest are hits.
    let p99_bound = Duration::from_millis(100);
    v.check(s.p99 < p99_bound, format!("cold-path: p99 {} ms < {} ms", ms(s.p99), ms(p99_bound)));
}

// ---------------------------------------------------------------------------
// 2. idle-connections: 10,000 idle keep-alive connections.

fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("");
    let nums: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

/// Raises this process's soft RLIMIT_NOFILE to the hard limit (children
/// inherit it) with util-linux `prlimit`, as std has no setrlimit.
fn raise_nofile() -> (u64, u64) {
    let (soft, hard) = nofile_limits();
    if soft < hard {
        let pid = std::process::id().to_string();
        let _ = Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={hard}:{hard}")]).status();
    }
    nofile_limits()
}

async fn idle_connections(v: &mut Verdict) {
    let target = env_num("LOADTEST_IDLE", 10_000) as usize;
    let extra = 100usize;
    let freed = 10usize;
    println!(
        "\n== idle-connections: {target} idle keep-alive connections, MAX_CONNECTIONS={target}, then {extra} more"
    );
    // Each side holds one descriptor per connection; the harness also holds
    // the extra ones and the fake's; the child needs target + listeners,
    // log and the BigQuery client's sockets.
    let needed = (target + extra + 200) as u64;
    let (soft, hard) = raise_nofile();
    println!("  RLIMIT_NOFILE soft {soft} hard {hard}; {needed} needed on each side");
    if soft < needed {
        return v.check(
            false,
            format!("idle-connections: RLIMIT_NOFILE is {soft} (hard {hard}); {target} connections need {needed}: not lowered, raise the limit"),
        );
    }
    let google = Google::start().await;
    let max = target.to_string();
    // hyper applies the header read timeout to idle keep-alive connections
    // too (it is the idle timeout): raised so that all of them are still
    // held when the last one opens.
    let mut a = Instance::spawn(
        "idle-connections",
        &google,
        &[("CACHE_TTL", "300"), ("MAX_CONNECTIONS", &max), ("HEADER_READ_TIMEOUT", "300")],
    );
    if let Err(e) = a.wait_ready(Duration::from_secs(20)).await {
        return v.check(false, e);
    }
    let child_limit = proc_limits_nofile(a.pid());
    println!("  child RLIMIT_NOFILE soft {child_limit}");
    // Warm the cache and the allocator with a little load first, so the
    // growth measured is the connections', not the first response's.
    let warm = Load::start(8, Arc::new(AtomicU16::new(a.port)), COUNTS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm.finish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = a.rss_kib();

    // Open them in batches: each does one successful request, then idles.
    let overflows0 = listen_overflows();
    let opened = Instant::now();
    let mut held: Vec<Conn> = Vec::with_capacity(target);
    let mut open_errors = 0usize;
    let mut first_error = String::new();
    while held.len() + open_errors < target {
        // Fewer at once than the listen backlog (128: tokio's
        // TcpListener::bind), so no SYN is dropped and retried after 1 s.
        let batch = (target - held.len() - open_errors).min(100);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let port = a.port;
                tokio::spawn(async move {
                    let mut c = connect(port).await?;
                    match c.get(COUNTS).await {
                        Ok(answer) if answer.status == 200 => Ok(c),
                        Ok(answer) => Err(format!("status {}", answer.status)),
                        Err(e) => Err(e.to_string()),
                    }
                })
            })
            .collect();
        for t in tasks {
            match t.await.expect("connect task") {
                Ok(c) => held.push(c),
                Err(e) => {
                    open_errors += 1;
                    if first_error.is_empty() {
                        first_error = e;
                    }
                }
            }
        }
    }
    let open_time = opened.elapsed();
    let overflows = listen_overflows().saturating_sub(overflows0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = a.rss_kib();
    let m = a.metrics().await;
    let active = metric_sum(&m, "wordcount_connections_active", "");
    let growth = rss1.saturating_sub(rss0);
    println!(
        "| connections held | opened in s | open errors | listen overflows | RSS before MiB | RSS after MiB | growth MiB | per connection KiB | connections_active |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} | {} | {} | {} | {} | {} | {:.2} | {} |",
        held.len(),
        open_time.as_secs_f64(),
        open_errors,
        overflows,
        mib(rss0),
        mib(rss1),
        mib(growth),
        growth as f64 / held.len().max(1) as f64,
        active
    );
    v.check(
        held.len() == target,
        format!("idle-connections: {} of {target} connections held ({first_error})", held.len()),
    );
    // The target is 64 MiB. hyper 1's HTTP/1 server alone costs about
    // 10 KiB per idle connection (an 8 KiB read buffer and an 8 KiB header
    // write buffer per connection, allocated up front and kept while idle;
    // see docs/reliability.md), so 10,000 connections cannot fit in 64 MiB
    // without changing hyper. LOADTEST_RSS_MIB replaces the bound, and the
    // output says so, so CI still guards against regressions.
    let stated_bound = 64 * 1024;
    let bound = env_num("LOADTEST_RSS_MIB", 64) * 1024;
    if bound != stated_bound {
        println!(
            "  stated target RSS growth <= 64 MiB: {} (by {} MiB); gating on LOADTEST_RSS_MIB={} instead",
            if growth <= stated_bound { "met" } else { "NOT MET" },
            mib(growth.saturating_sub(stated_bound)),
            bound / 1024
        );
    }
    v.check(growth <= bound, format!("idle-connections: RSS growth {} MiB <= {} MiB", mib(growth), bound / 1024));
    // The scrape's own connection is on the admin port and counts too.
    v.check(
        (held.len()..=held.len() + 1).contains(&(active as usize)),
        format!("idle-connections: /metrics connections_active {active} = {} (+1 for the scrape)", held.len()),
    );

    // The admin port has its own cap: probes answer while the public one is full.
    let bound = Duration::from_secs(1);
    let t = Instant::now();
    let probe = get_once(a.admin, "/readyz", bound).await;
    let probe_time = t.elapsed();
    v.check(
        matches!(probe, Ok((200, _))),
        format!(
            "idle-connections: /readyz on the admin port answered 200 in {} ms (bound {} ms) while {} are held",
            ms(probe_time),
            ms(bound),
            held.len()
        ),
    );

    // One more than the cap: a 503 with a body, then EOF; no hang, no reset.
    let mut refused = 0usize;
    let mut refusal_problems: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let tasks: Vec<_> = (0..extra)
        .map(|_| {
            let port = a.port;
            tokio::spawn(async move {
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(2), refusal(port)).await;
                (t.elapsed(), r.unwrap_or_else(|_| Err("hang: nothing within 2 s".into())))
            })
        })
        .collect();
    for t in tasks {
        let (took, result) = t.await.expect("refusal task");
        slowest = slowest.max(took);
        match result {
            Ok(()) => refused += 1,
            Err(e) => *refusal_problems.entry(e).or_default() += 1,
        }
    }
    println!(
        "  {extra} connections over the cap: {refused} clean 503 refusals, slowest {} ms, problems {refusal_problems:?}",
        ms(slowest)
    );
    v.check(
        refused == extra,
        format!("idle-connections: {refused} of {extra} over the cap got a complete 503 and EOF"),
    );

    // Free a few slots: new connections on the public port get served.
    held.truncate(held.len() - freed);
    let freed_at = Instant::now();
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while freed_at.elapsed() < Duration::from_secs(3) && served < freed {
        let t = Instant::now();
        if let Ok((200, _)) = get_once(a.port, COUNTS, bound).await {
            served += 1;
            slowest = slowest.max(t.elapsed());
        } else {
            // The slot is released when the server notices the close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    v.check(
        served == freed,
        format!("idle-connections: after closing {freed}, {served} new public requests answered 200, slowest {} ms (bound {} ms)", ms(slowest), ms(bound)),
    );
    let emfile = a.log_lines_containing("accept failed");
    v.check(emfile == 0, format!("idle-connections: no 'accept failed' (EMFILE) in the service log ({emfile})"));
    drop(held);
}

/// TcpExt ListenOverflows: SYNs the kernel dropped because an accept
/// queue was full (system-wide; 127.0.0.1 only carries our own tests).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn proc_limits_nofile(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

/// A client over the cap sends its request, as clients do, and must read the
/// whole 503 and then EOF.
async fn refusal(port: u16) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {}", e.kind()))?;
    s.write_all(b"GET /api/v1/counts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| format!("read: {} after {} bytes", e.kind(), buf.len()))?;
    let text = String::from_utf8_lossy(&buf);
    if text.starts_with("HTTP/1.1 503") && text.ends_with("too many connections\n") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {:?}", text.lines().next().unwrap_or("")))
    }
}

// ---------------------------------------------------------------------------
// 3. faults: the fake switches through failures while load runs.

async fn faults(v: &mut Verdict) {
    let ttl = 1u64;
    let bq_timeout = 4u64;
    let connections = 32;
    let retry_pause = RETRY_AFTER_FAILURE.min(Duration::from_secs(ttl));
    // A lookup waits for a running refresh at most STALE_WAIT before stale
    // data is served; the margin covers scheduling on a loaded 2-core box.
    let max_bound = STALE_WAIT + Duration::from_millis(500);
    // After a fault ends, the refresh that is running may still take up to
    // BIGQUERY_TIMEOUT (a hang), then the back-off pause, then one refresh.
    let recovery_bound = Duration::from_secs(bq_timeout) + retry_pause + Duration::from_secs(2);
    println!(
        "\n== faults: {connections} connections on {COUNTS} throughout; CACHE_TTL={ttl} s, BIGQUERY_TIMEOUT={bq_timeout} s, \
         STALE_WAIT={} ms, retry pause {} ms",
        STALE_WAIT.as_millis(),
        retry_pause.as_millis()
    );
    println!("   bounds: no 5xx, max latency < {} ms, recovery < {} s", ms(max_bound), recovery_bound.as_secs());
    let google = Google::start().await;
    // gcp_auth renews a token 20 s before it expires: with expires_in=21
    // every refresh after the first second asks the token endpoint, so
    // token outages are felt.
    google.fake.set_token_lifetime(21, None);
    let bq = bq_timeout.to_string();
    let mut a = Instance::spawn("faults", &google, &[("CACHE_TTL", &ttl.to_string()), ("BIGQUERY_TIMEOUT", &bq)]);
    if let Err(e) = a.wait_ready(Duration::from_secs(20)).await {
        return v.check(false, e);
    }
    get_once(a.port, COUNTS, Duration::from_secs(5)).await.ok();

    // Long enough for a refresh to start (up to one TTL into the phase) and
    // to exhaust its retries (4 attempts, jittered back-off from 200 ms):
    // shorter, the last retry lands after the fault and nothing fails.
    let fault = 5;
    let phases: &[(&str, Mode, u64)] = &[
        ("normal", Mode::Normal, 3),
        ("HTTP 500", Mode::ServerError(500), fault),
        ("HTTP 503", Mode::ServerError(503), fault),
        ("HTTP 429", Mode::RateLimited, fault),
        ("hang", Mode::Hang, bq_timeout + 1),
        ("malformed JSON", Mode::MalformedJson, fault),
        ("truncated body", Mode::TruncatedBody, fault),
        ("token 5xx", Mode::TokenServerError, fault),
        ("token invalid_grant", Mode::TokenInvalidGrant, fault),
    ];
    let load = Load::start(connections, Arc::new(AtomicU16::new(a.port)), COUNTS);
    let t0 = load.t0;
    struct Row {
        name: &'static str,
        from: Duration,
        to: Duration,
        recovered: Option<Duration>,
        errors: String,
        stale_lookups: f64,
        jobs: usize,
        tokens: usize,
    }
    let mut rows = Vec::new();
    for &(name, mode, seconds) in phases {
        let before = a.metrics().await;
        let jobs0 = google.fake.jobs_created();
        let tokens0 = google.fake.token_requests();
        let from = t0.elapsed();
        google.fake.set_mode(mode);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        google.fake.set_mode(Mode::Normal);
        let fault_end = t0.elapsed();
        // Recovered: a fresh answer from a job created after the fault.
        let jobs_at_end = google.fake.jobs_created();
        let mut recovered = None;
        let waited = Instant::now();
        while waited.elapsed() < recovery_bound + Duration::from_secs(2) {
            if google.fake.jobs_created() > jobs_at_end
                && let Ok((200, body)) = get_once(a.port, COUNTS, Duration::from_secs(2)).await
                && body.contains("\"stale\":false")
            {
                recovered = Some(waited.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if mode == Mode::Normal {
            recovered = Some(Duration::ZERO);
        }
        // Errors of a refresh that outlived the phase land here too.
        let after = a.metrics().await;
        rows.push(Row {
            name,
            from,
            to: fault_end.max(t0.elapsed()),
            recovered,
            errors: error_deltas(&before, &after),
            stale_lookups: metric_sum(&after, "wordcount_cache_lookups_total", "\"stale\"")
                - metric_sum(&before, "wordcount_cache_lookups_total", "\"stale\""),
            jobs: google.fake.jobs_created() - jobs0,
            tokens: google.fake.token_requests() - tokens0,
        });
    }
    let samples = load.finish().await;

    println!(
        "| phase | s | requests | 200 | 5xx | failed | stale served | p50 ms | p99 ms | max ms | recovered in s | source errors (metrics) | stale lookups (metrics) | jobs | token requests |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let s = summarize(samples.iter().filter(|x| x.start >= r.from && x.start < r.to));
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            (r.to - r.from).as_secs_f64(),
            s.requests,
            s.ok,
            s.status_5xx,
            s.failed + s.other_status,
            s.stale,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            r.recovered.map_or("NO".into(), |d| format!("{:.2}", d.as_secs_f64())),
            r.errors,
            r.stale_lookups,
            r.jobs,
            r.tokens
        );
        v.check(
            s.status_5xx == 0 && s.failed == 0 && s.other_status == 0,
            format!("faults/{}: no 5xx or failed request to users ({} of {} answered 200)", r.name, s.ok, s.requests),
        );
        v.check(s.max < max_bound, format!("faults/{}: max latency {} ms < {} ms", r.name, ms(s.max), ms(max_bound)));
        v.check(
            r.recovered.is_some_and(|d| d < recovery_bound),
            format!("faults/{}: fresh data (stale:false, new job) again within {} s", r.name, recovery_bound.as_secs()),
        );
        if r.name != "normal" {
            v.check(
                r.errors != "-" && r.stale_lookups > 0.0,
                format!(
                    "faults/{}: /metrics shows source errors ({}) and stale serves ({})",
                    r.name, r.errors, r.stale_lookups
                ),
            );
        }
    }
    let all = summarize(&samples);
    println!(
        "  whole run: {} requests, {} stale, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        all.requests,
        all.stale,
        ms(all.p50),
        ms(all.p99),
        ms(all.p999),
        ms(all.max)
    );
}

// ---------------------------------------------------------------------------
// 4. rolling-restart: B takes over, A drains under load.

async fn rolling_restart(v: &mut Verdict) {
    let (busy, idle, think) = (24, 16, Duration::from_millis(50));
    let drain = 10u64;
    println!(
        "\n== rolling-restart: {busy} busy + {idle} mostly idle (/hello every {} ms) keep-alive connections; \
         B ready -> new connections to B -> SIGTERM A (DRAIN_TIMEOUT={drain} s)",
        think.as_millis()
    );
    let google = Google::start().await;
    // Each refresh takes 2 s upstream, longer than STALE_WAIT: once A's TTL
    // runs out, requests on A wait for the refresh, so some are certainly
    // in flight when SIGTERM arrives.
    let upstream = Duration::from_millis(2000);
    let vars = [("CACHE_TTL", "2"), ("DRAIN_TIMEOUT", "10")];
    let mut a = Instance::spawn("rolling-restart-a", &google, &vars);
    if let Err(e) = a.wait_ready(Duration::from_secs(20)).await {
        return v.check(false, e);
    }
    google.fake.set_delay(upstream);
    let target = Arc::new(AtomicU16::new(a.port));
    // Busy connections have requests in flight at SIGTERM; the mostly idle
    // ones ask for /hello, which never waits for the cache, so A's drain
    // finds them between two requests and closes them, where a client can
    // send on a connection the server is closing (the retried case).
    let load = Load::start_mixed(busy, idle, think, target.clone(), COUNTS, "/hello");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut b = Instance::spawn("rolling-restart-b", &google, &vars);
    if let Err(e) = b.wait_ready(Duration::from_secs(20)).await {
        load.finish().await;
        return v.check(false, e);
    }
    // Endpoint removal: new connections go to B; open ones stay on A.
    target.store(b.port, Ordering::SeqCst);
    let switched = load.t0.elapsed();

    // SIGTERM while requests on A wait for a running refresh.
    let calls = google.fake.bigquery_calls();
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline && !(google.fake.bigquery_calls() > calls && load.in_flight.get(a.port) > 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let in_flight_at_term = load.in_flight.get(a.port);
    let term_at = load.t0.elapsed();
    // LOADTEST_STOP_SIGNAL=KILL shows what the scenario reports when the
    // old instance does not drain (the check that it can fail).
    let signal = std::env::var("LOADTEST_STOP_SIGNAL").unwrap_or_else(|_| "TERM".into());
    a.signal(&signal);
    let exit = a.wait_exit(Duration::from_secs(drain + 5)).await;
    let exit_after = load.t0.elapsed() - term_at;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = load.finish().await;

    let on_a = |s: &&Sample| s.port == a.port;
    let s = summarize(&samples);
    let sa = summarize(samples.iter().filter(on_a));
    let sb = summarize(samples.iter().filter(|s| s.port == b.port));
    // Sent to A before SIGTERM, not answered yet: they must complete on A,
    // not by a retry elsewhere.
    let a_in_flight = summarize(
        samples.iter().filter(|s| s.first_port == a.port && s.start < term_at && s.start + s.latency > term_at),
    );
    let after_switch_on_a = samples.iter().filter(on_a).filter(|s| s.start > switched).count();
    println!(
        "| requests | 200 | retried once then 200 | failed | non-200 | on A | on B | in flight on A at SIGTERM | of those 200 | A exit | A exit after s | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
        s.requests,
        s.ok,
        s.retried_ok,
        s.failed,
        s.status_5xx + s.other_status,
        sa.requests,
        sb.requests,
        a_in_flight.requests,
        a_in_flight.ok,
        exit.map_or("still running".into(), |e| e.to_string()),
        exit_after.as_secs_f64(),
        ms(s.p99),
        ms(s.max)
    );
    println!(
        "  requests on A's open connections after the switch: {after_switch_on_a}; in-flight counter at SIGTERM: {in_flight_at_term}"
    );
    if let Some(slowest) = samples.iter().max_by_key(|s| s.latency) {
        println!(
            "  slowest: {} ms on {}, started {:+.2} s from SIGTERM, {:?}",
            ms(slowest.latency),
            if slowest.port == a.port { "A" } else { "B" },
            slowest.start.as_secs_f64() - term_at.as_secs_f64(),
            slowest.outcome
        );
    }
    v.check(
        s.failed == 0 && s.status_5xx + s.other_status == 0,
        format!(
            "rolling-restart: zero failed requests ({} failed, {} non-200 of {})",
            s.failed,
            s.status_5xx + s.other_status,
            s.requests
        ),
    );
    v.check(
        exit.is_some_and(|e| e.success()) && exit_after < Duration::from_secs(drain),
        format!("rolling-restart: A exited 0 within DRAIN_TIMEOUT ({:.2} s)", exit_after.as_secs_f64()),
    );
    v.check(
        a_in_flight.requests > 0 && a_in_flight.ok == a_in_flight.requests,
        format!(
            "rolling-restart: the {} requests in flight on A at SIGTERM all completed on A with 200 ({} did)",
            a_in_flight.requests, a_in_flight.ok
        ),
    );
    v.check(after_switch_on_a > 0, "rolling-restart: A still served its open keep-alive connections after the switch");
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

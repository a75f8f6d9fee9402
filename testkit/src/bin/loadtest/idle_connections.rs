//! idle-connections: 10,000 idle keep-alive connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{
    COUNTS, Conn, Google, Instance, Load, Verdict, connect, env_num, free_port, get_once, metric_sum, mib, ms, rss_kib,
};

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

pub(crate) async fn idle_connections(v: &mut Verdict) {
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
    let rss0 = warm(a.port, a.pid()).await;
    let answer = match answer_of(a.port).await {
        Ok(answer) => answer,
        Err(e) => return v.check(false, format!("idle-connections: {COUNTS}: {e}")),
    };
    let overflows0 = listen_overflows();
    let Idle { mut held, open_time, open_errors, first_error } = open_idle(a.port, target).await;
    let overflows = listen_overflows().saturating_sub(overflows0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let growth = a.rss_kib().saturating_sub(rss0);
    let m = a.metrics().await;
    let active = metric_sum(&m, "wordcount_connections_active", "");
    println!(
        "| connections held | opened in s | open errors | listen overflows | RSS before MiB | growth MiB | per connection KiB | connections_active |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} | {open_errors} | {overflows} | {} | {} | {:.2} | {active} |",
        held.len(),
        open_time.as_secs_f64(),
        mib(rss0),
        mib(growth),
        growth as f64 / held.len().max(1) as f64,
    );
    v.check(
        held.len() == target,
        format!("idle-connections: {} of {target} connections held ({first_error})", held.len()),
    );
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
    drop(a);

    // The bound: bare hyper's own growth for the same connections, in this
    // run, sending the same answer (headers and body size).
    let bare = match bare_hyper_growth(target, &answer).await {
        Ok(bare) => bare,
        Err(e) => return v.check(false, format!("idle-connections: bare hyper: {e}")),
    };
    let ratio = growth as f64 / bare.max(1) as f64;
    println!(
        "  RSS growth for {target} idle connections: wordcount {} MiB, bare hyper ({}) {} MiB: {ratio:.2}x",
        mib(growth),
        hello().display(),
        mib(bare)
    );
    v.check(ratio <= RSS_RATIO, format!("idle-connections: RSS growth {ratio:.2}x bare hyper's (bound {RSS_RATIO}x)"));
    // Not gated, for the record: bare hyper without the answer's headers,
    // whose map hyper keeps for every idle connection.
    if let Ok(greeting) = bare_hyper_growth(target, &[]).await {
        println!("  bare hyper sending its greeting, no headers: {} MiB", mib(greeting));
    }
}

/// What an idle connection may cost the service, relative to bare hyper's
/// (`examples/hello.rs`) sending the same answer.
const RSS_RATIO: f64 = 1.1;

fn hello() -> PathBuf {
    PathBuf::from(std::env::var("LOADTEST_HELLO").unwrap_or_else(|_| "target/release/examples/hello".into()))
}

/// Warms the cache and the allocator with a little load, so the growth
/// measured after is the connections', not the first answers'; the RSS then.
async fn warm(port: u16, pid: u32) -> u64 {
    let warm = Load::start(8, Arc::new(AtomicU16::new(port)), COUNTS);
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm.finish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss_kib(pid)
}

struct Idle {
    held: Vec<Conn>,
    open_time: Duration,
    open_errors: usize,
    first_error: String,
}

/// Opens `target` connections, each doing one successful request and then
/// idling, fewer at once than the listen backlog (128: tokio's
/// TcpListener::bind), so no SYN is dropped and retried after 1 s.
async fn open_idle(port: u16, target: usize) -> Idle {
    let opened = Instant::now();
    let mut idle = Idle {
        held: Vec::with_capacity(target),
        open_time: Duration::ZERO,
        open_errors: 0,
        first_error: String::new(),
    };
    while idle.held.len() + idle.open_errors < target {
        let batch = (target - idle.held.len() - idle.open_errors).min(100);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
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
                Ok(c) => idle.held.push(c),
                Err(e) => {
                    idle.open_errors += 1;
                    if idle.first_error.is_empty() {
                        idle.first_error = e;
                    }
                }
            }
        }
    }
    idle.open_time = opened.elapsed();
    idle
}

/// The service's answer to [`COUNTS`], as `examples/hello.rs` arguments: the
/// body's size, then its headers as `NAME:VALUE` (without `date` and
/// `content-length`, which hyper writes itself).
async fn answer_of(port: u16) -> Result<Vec<String>, String> {
    let mut conn = connect(port).await?;
    let response = conn.send(COUNTS).await.map_err(|e| e.to_string())?;
    let (head, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    let headers = head.headers.iter().filter(|(name, _)| !matches!(name.as_str(), "date" | "content-length"));
    Ok(std::iter::once(body.len().to_string())
        .chain(headers.map(|(name, value)| format!("{name}:{}", String::from_utf8_lossy(value.as_bytes()))))
        .collect())
}

/// RSS growth of `examples/hello.rs` sending `answer` for `target` idle
/// connections, measured as the service's is.
async fn bare_hyper_growth(target: usize, answer: &[String]) -> Result<u64, String> {
    let port = free_port();
    let child = Command::new(hello())
        .arg(format!("127.0.0.1:{port}"))
        .args(answer)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "start {}: {e} (build it with cargo build --release --example hello, or set LOADTEST_HELLO)",
                hello().display()
            )
        })?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_once(port, COUNTS, Duration::from_secs(1)).await.is_err() {
        if Instant::now() >= deadline || matches!(child.0.try_wait(), Ok(Some(_))) {
            return Err("not answering within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pid = child.0.id();
    let rss0 = warm(port, pid).await;
    let idle = open_idle(port, target).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let growth = rss_kib(pid).saturating_sub(rss0);
    if idle.held.len() != target {
        return Err(format!("{} of {target} connections held ({})", idle.held.len(), idle.first_error));
    }
    Ok(growth)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

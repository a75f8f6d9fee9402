//! rolling-restart: B takes over, A drains under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use crate::{COUNTS, Google, Instance, Load, Sample, Verdict, ms, summarize};

pub(crate) async fn rolling_restart(v: &mut Verdict) {
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

//! cold-path: BigQuery jobs per TTL under load.

use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use crate::{COUNTS, Google, Instance, Load, Verdict, env_num, metric_sum, ms, summarize};

pub(crate) async fn cold_path(v: &mut Verdict) {
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

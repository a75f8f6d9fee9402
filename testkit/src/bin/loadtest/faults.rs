//! faults: the fake switches through failures while load runs.

use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use testkit::Mode;
use wordcount::cache::{RETRY_AFTER_FAILURE, STALE_WAIT};

use crate::{COUNTS, Google, Instance, Load, Verdict, error_deltas, get_once, metric_sum, ms, summarize};

pub(crate) async fn faults(v: &mut Verdict) {
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

//! The result cache in front of every data source.
//!
//! - A result is fresh for `CACHE_TTL`; fresh lookups never touch the source.
//! - Concurrent lookups that need the source share one query (single
//!   flight): the query runs in its own task and every waiter gets its
//!   outcome, so a burst of cold requests costs one BigQuery job.
//! - When a refresh fails, or takes longer than `STALE_WAIT` (counted from
//!   the start of the refresh, not per request), the last good
//!   result is served marked stale instead of an error; after a failure the
//!   source is left alone for `RETRY_AFTER_FAILURE` so an outage upstream
//!   does not become a query per request.
//! - Every refresh's outcome goes to [`Readiness`]; [`Cache::warm_up`]
//!   asks the source at start-up, so an instance turns ready before any
//!   user asks.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::metrics::{CacheResult, Metrics};
use crate::readiness::Readiness;
use crate::source::{Counts, CountsSource, WordMatch};
use crate::trace::TraceContext;

/// How long a request waits for a refresh when stale data could be served
/// instead; keeps latency bounded while the source hangs.
pub const STALE_WAIT: Duration = Duration::from_millis(500);

/// Pause between a failed refresh and the next attempt, while stale data is
/// served. Capped by the TTL so short TTLs stay short.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

/// The same pause when there is no data at all: shorter, since every
/// request fails meanwhile, but long enough that a failing upstream is not
/// asked once per request.
pub const COLD_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Longest pause between start-up attempts to reach the data source.
const WARMUP_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A good answer from the source and when it arrived.
#[derive(Debug)]
pub struct Snapshot {
    pub counts: Counts,
    pub fetched_at: OffsetDateTime,
    fetched: Instant,
}

impl Snapshot {
    /// `counts`, arrived now.
    pub fn new(counts: Counts) -> Self {
        Snapshot { counts, fetched_at: OffsetDateTime::now_utc(), fetched: Instant::now() }
    }
}

/// What a lookup hands to a handler.
#[derive(Debug, Clone)]
pub struct Served {
    pub snapshot: Arc<Snapshot>,
    /// Past its TTL: the refresh failed or is still running.
    pub stale: bool,
    /// Seconds the data stays fresh (0 when stale), for `Cache-Control`.
    pub fresh_for: Duration,
}

impl Served {
    pub fn age(&self) -> Duration {
        self.snapshot.fetched.elapsed()
    }
}

type Outcome = Option<std::result::Result<Arc<Snapshot>, Error>>;

/// See [`Cache::lookup`].
enum Lookup {
    Done(Result<Served>),
    Wait(Wait),
}

/// A refresh to wait for: the one under way, how long it had been running
/// when the request asked, and the stale data to fall back on.
struct Wait {
    refresh: watch::Receiver<Outcome>,
    running_for: Duration,
    fallback: Option<Arc<Snapshot>>,
}

/// Everything the cache knows about its one word.
#[derive(Default)]
struct Slot {
    good: Option<Arc<Snapshot>>,
    /// The refresh under way, and when it started.
    refresh: Option<(watch::Receiver<Outcome>, Instant)>,
    /// No refresh before this instant, after a failure.
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

/// The cache of the one WORD this instance serves.
pub struct Cache {
    source: Arc<dyn CountsSource>,
    word: String,
    word_match: WordMatch,
    ttl: Duration,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    slot: Mutex<Slot>,
}

impl Cache {
    pub fn new(
        source: Arc<dyn CountsSource>,
        word: String,
        word_match: WordMatch,
        ttl: Duration,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Arc<Self> {
        Arc::new(Cache { source, word, word_match, ttl, metrics, readiness, slot: Mutex::default() })
    }

    pub fn source_kind(&self) -> &'static str {
        self.source.kind()
    }

    /// Counts for the word, from the cache when fresh, else from the
    /// source. Errors only when there is no good data to fall back on.
    pub async fn get(self: &Arc<Self>, trace: &TraceContext) -> Result<Served> {
        match self.lookup(trace) {
            Lookup::Done(result) => result,
            // Boxed: waiting is rare (a miss, or a refresh under way), and
            // inline its state would make every request's future larger
            // (see server::connection_service).
            Lookup::Wait(wait) => Box::pin(self.finish(wait)).await,
        }
    }

    /// What can be decided without waiting: a fresh hit, a stale answer or
    /// an error while backing off; otherwise the refresh to wait for,
    /// started here if none is under way.
    fn lookup(self: &Arc<Self>, trace: &TraceContext) -> Lookup {
        let now = Instant::now();
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        // The hot path: a fresh hit.
        if let Some(good) = &slot.good
            && now < good.fetched + self.ttl
        {
            self.metrics.cache.observe(CacheResult::Hit);
            let served = Served { snapshot: good.clone(), stale: false, fresh_for: good.fetched + self.ttl - now };
            return Lookup::Done(Ok(served));
        }
        let backing_off = slot.retry_at.is_some_and(|at| now < at);
        match (&slot.good, &slot.last_error) {
            (Some(good), _) if backing_off => {
                self.metrics.cache.observe(CacheResult::Stale);
                return Lookup::Done(Ok(Served { snapshot: good.clone(), stale: true, fresh_for: Duration::ZERO }));
            }
            (None, Some(err)) if backing_off => {
                self.metrics.cache.observe(CacheResult::Miss);
                return Lookup::Done(Err(err.clone()));
            }
            _ => {}
        }
        let (refresh, started) = match &slot.refresh {
            Some((rx, started)) => (rx.clone(), *started),
            None => {
                let rx = self.spawn_refresh(trace);
                slot.refresh = Some((rx.clone(), now));
                (rx, now)
            }
        };
        Lookup::Wait(Wait { refresh, running_for: now - started, fallback: slot.good.clone() })
    }

    /// Waits for the refresh of a [`Lookup::Wait`] and answers from it, or
    /// from the stale data when it takes too long or fails.
    async fn finish(&self, wait: Wait) -> Result<Served> {
        let Wait { mut refresh, running_for, fallback } = wait;
        let outcome = match &fallback {
            // Someone is waiting for data that does not exist yet: wait as
            // long as the source itself may take.
            None => self::wait(&mut refresh).await,
            // Stale data is at hand: wait at most STALE_WAIT from the start
            // of the refresh, so requests arriving while a slow refresh
            // runs do not each wait the whole STALE_WAIT again.
            Some(_) => {
                let left = STALE_WAIT.saturating_sub(running_for);
                tokio::time::timeout(left, self::wait(&mut refresh)).await.ok().flatten()
            }
        };
        match (outcome, fallback) {
            (Some(Ok(snapshot)), _) => {
                self.metrics.cache.observe(CacheResult::Miss);
                Ok(Served { snapshot, stale: false, fresh_for: self.ttl })
            }
            (_, Some(good)) => {
                self.metrics.cache.observe(CacheResult::Stale);
                Ok(Served { snapshot: good, stale: true, fresh_for: Duration::ZERO })
            }
            (Some(Err(err)), None) => {
                self.metrics.cache.observe(CacheResult::Miss);
                Err(err)
            }
            (None, None) => {
                self.metrics.cache.observe(CacheResult::Miss);
                Err(Error::Transport("the refresh task ended without an answer".into()))
            }
        }
    }

    /// Asks the source until it answers, backing off between attempts, so
    /// the instance turns ready without waiting for a user.
    pub async fn warm_up(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        while let Err(err) = self.get(&TraceContext::from_traceparent(None)).await {
            tracing::warn!(reason = err.reason(), error = %err, retry_in_ms = backoff.as_millis() as u64, "data source not answering yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(WARMUP_MAX_BACKOFF);
        }
    }

    /// Age of the newest good data, for the metrics scrape.
    pub fn data_age(&self) -> Option<Duration> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.good.as_ref().map(|g| g.fetched.elapsed())
    }

    /// Starts the one query in its own task, so it completes (and fills the
    /// cache) even when the request that caused it goes away.
    fn spawn_refresh(self: &Arc<Self>, trace: &TraceContext) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        let cache = Arc::clone(self);
        // The refresh logs under the ids of the request that caused it, so
        // "data refreshed" or "BigQuery call failed" leads to that request.
        let span = tracing::info_span!("refresh", trace_id = trace.trace_id.as_str(), span_id = trace.span_id.as_str());
        let trace = *trace;
        let refresh = async move {
            let started = Instant::now();
            let result = cache.source.counts(&cache.word, cache.word_match, &trace).await;
            let elapsed = started.elapsed();
            let kind = cache.source.kind();
            let outcome = match result {
                Ok(counts) => {
                    cache.metrics.source.observe_query(kind, elapsed, None);
                    tracing::info!(
                        source = kind,
                        rows = counts.rows.len() as u64,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "data refreshed"
                    );
                    Ok(Arc::new(Snapshot::new(counts)))
                }
                Err(err) => {
                    cache.metrics.source.observe_query(kind, elapsed, Some(err.reason()));
                    tracing::warn!(source = kind, reason = err.reason(), error = %err, "data refresh failed");
                    Err(err)
                }
            };

            let mut slot = cache.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.refresh = None;
            match &outcome {
                Ok(snapshot) => {
                    slot.good = Some(snapshot.clone());
                    slot.retry_at = None;
                    slot.last_error = None;
                    cache.readiness.source_answered();
                }
                Err(err) => {
                    let pause = if slot.good.is_some() { RETRY_AFTER_FAILURE } else { COLD_RETRY_AFTER_FAILURE };
                    slot.retry_at = Some(Instant::now() + pause.min(cache.ttl));
                    slot.last_error = Some(err.clone());
                    if slot.good.is_none() {
                        cache.readiness.source_failed(err.reason());
                    }
                }
            }
            drop(slot);
            // Waiters may all have gone; nobody listening is fine.
            let _ = tx.send(Some(outcome));
        };
        tokio::spawn(refresh.instrument(span));
        rx
    }
}

async fn wait(rx: &mut watch::Receiver<Outcome>) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Row;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source whose answers tests script: each call pops the next result
    /// (the last one repeats) after `delay`.
    struct Scripted {
        calls: AtomicUsize,
        delay: Duration,
        results: Mutex<Vec<Result<u64>>>,
    }

    impl Scripted {
        fn new(delay: Duration, results: Vec<Result<u64>>) -> Arc<Self> {
            Arc::new(Scripted { calls: AtomicUsize::new(0), delay, results: Mutex::new(results) })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl CountsSource for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn counts(&self, _word: &str, _m: WordMatch, _t: &TraceContext) -> Result<Counts> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let next = {
                let mut results = self.results.lock().unwrap();
                if results.len() > 1 { results.remove(0) } else { results[0].clone() }
            };
            next.map(|n| Counts::new(vec![Row { corpus: "hamlet".into(), total_words: n }]))
        }
    }

    fn cache_with(source: Arc<Scripted>, ttl: Duration) -> (Arc<Cache>, Arc<Readiness>) {
        let metrics = Arc::new(Metrics::new("the", "scripted", &[]));
        let readiness = Arc::new(Readiness::new(Arc::clone(&metrics)));
        (Cache::new(source, "the".into(), WordMatch::Exact, ttl, metrics, readiness.clone()), readiness)
    }

    fn total(served: &Served) -> u64 {
        served.snapshot.counts.total()
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_results_come_from_the_cache_until_the_ttl_expires() {
        let source = Scripted::new(Duration::from_millis(10), vec![Ok(1), Ok(2)]);
        let (cache, _) = cache_with(source.clone(), Duration::from_secs(60));
        let ctx = TraceContext::default();

        assert_eq!(total(&cache.get(&ctx).await.unwrap()), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        let served = cache.get(&ctx).await.unwrap();
        assert_eq!((total(&served), served.stale), (1, false));
        assert!(served.fresh_for <= Duration::from_secs(1));
        assert_eq!(source.calls(), 1);

        tokio::time::advance(Duration::from_secs(2)).await;
        let served = cache.get(&ctx).await.unwrap();
        assert_eq!((total(&served), served.stale), (2, false));
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_lookups_share_one_query() {
        let source = Scripted::new(Duration::from_secs(1), vec![Ok(7)]);
        let (cache, _) = cache_with(source.clone(), Duration::from_secs(60));

        let lookups: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(&TraceContext::default()).await })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(total(&lookup.await.unwrap().unwrap()), 7);
        }
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_serves_stale_data_and_backs_off() {
        let source = Scripted::new(
            Duration::from_millis(10),
            vec![Ok(5), Err(Error::Upstream { status: 503, message: "down".into() }), Ok(6)],
        );
        let (cache, readiness) = cache_with(source.clone(), Duration::from_secs(60));
        let ctx = TraceContext::default();
        cache.get(&ctx).await.unwrap();

        tokio::time::advance(Duration::from_secs(61)).await;
        let served = cache.get(&ctx).await.unwrap();
        assert_eq!((total(&served), served.stale), (5, true));
        assert_eq!(readiness.check(), Ok(()));

        // Within the back-off the source is not asked again.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cache.get(&ctx).await.unwrap().stale);
        assert_eq!(source.calls(), 2);

        // After it, the next lookup refreshes and recovers.
        tokio::time::advance(RETRY_AFTER_FAILURE).await;
        let served = cache.get(&ctx).await.unwrap();
        assert_eq!((total(&served), served.stale), (6, false));
        assert_eq!(source.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_refresh_serves_stale_data_within_the_stale_wait() {
        let source = Scripted::new(Duration::from_secs(30), vec![Ok(5)]);
        let (cache, _) = cache_with(source.clone(), Duration::from_secs(60));
        let ctx = TraceContext::default();
        cache.get(&ctx).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;

        let started = Instant::now();
        let served = cache.get(&ctx).await.unwrap();
        assert!(served.stale);
        assert!(started.elapsed() <= STALE_WAIT + Duration::from_millis(1));

        // Later arrivals wait only for what is left of the STALE_WAIT
        // counted from the start of the refresh, then not at all.
        tokio::time::advance(Duration::from_millis(100)).await;
        let later = Instant::now();
        assert!(cache.get(&ctx).await.unwrap().stale);
        assert_eq!(later.elapsed(), Duration::ZERO);
        assert_eq!(source.calls(), 2, "still the one refresh");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_during_a_slow_refresh_share_one_stale_wait() {
        let source = Scripted::new(Duration::from_secs(30), vec![Ok(5)]);
        let (cache, _) = cache_with(source.clone(), Duration::from_secs(60));
        let ctx = TraceContext::default();
        cache.get(&ctx).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;

        let first = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { cache.get(&TraceContext::default()).await }
        });
        // Let the first request start the refresh before the clock moves.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(300)).await;
        let started = Instant::now();
        assert!(cache.get(&ctx).await.unwrap().stale);
        assert_eq!(started.elapsed(), STALE_WAIT - Duration::from_millis(300));
        assert!(first.await.unwrap().unwrap().stale);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_failure_is_an_error_and_not_ready() {
        let source = Scripted::new(Duration::from_millis(10), vec![Err(Error::PermissionDenied("no".into())), Ok(1)]);
        let (cache, readiness) = cache_with(source.clone(), Duration::from_secs(60));
        let err = cache.get(&TraceContext::default()).await.unwrap_err();
        assert_eq!(err.reason(), "permission_denied");
        assert!(readiness.check().unwrap_err().contains("permission_denied"));

        // During the short cold back-off the error is repeated without a query.
        let again = cache.get(&TraceContext::default()).await.unwrap_err();
        assert_eq!((again.reason(), source.calls()), ("permission_denied", 1));

        tokio::time::advance(COLD_RETRY_AFTER_FAILURE).await;
        let served = cache.get(&TraceContext::default()).await.unwrap();
        assert_eq!((total(&served), source.calls()), (1, 2));
        assert_eq!(readiness.check(), Ok(()));
    }
}

//! Prometheus metrics, served in the text exposition format on the admin
//! port's `/metrics`.
//!
//! [`Metrics`] owns the registry and one group of metrics per area (HTTP,
//! cache, source, connections, the instance); each group registers itself
//! and records through its own methods, so metric names and labels are
//! spelled once, in their group. Names are listed in
//! `deploy/observability/metrics.txt`, which the alerting rules and the
//! dashboard are checked against.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    source: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

/// How a request was answered by the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The registry and every metric, by area.
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub cache: CacheMetrics,
    pub source: SourceMetrics,
    pub connections: ConnectionMetrics,
    pub instance: InstanceMetrics,
}

impl Metrics {
    /// `routes` are the route labels requests will be counted under; their
    /// series exist from the start.
    pub fn new(word: &str, source: &'static str, routes: &[&'static str]) -> Self {
        let mut registry = Registry::with_prefix("wordcount");
        Metrics {
            http: HttpMetrics::register(&mut registry, routes),
            cache: CacheMetrics::register(&mut registry),
            source: SourceMetrics::register(&mut registry, source),
            connections: ConnectionMetrics::register(&mut registry),
            instance: InstanceMetrics::register(&mut registry, word, source),
            registry,
        }
    }

    /// The exposition text. `data_age` is the age of the data being served
    /// at the moment of the scrape, when there is any.
    pub fn encode(&self, data_age: Option<Duration>) -> String {
        if let Some(age) = data_age {
            self.cache.data_age.set(age.as_secs_f64());
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Requests answered, and how long they took.
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    /// Per route, the series its successful GETs count into, resolved once
    /// (see [`Self::observe_request`]; a hot-path cache of docs/performance.md).
    hot_routes: Vec<RouteSeries>,
}

/// A route's latency histogram and its `GET 200` counter: the series nearly
/// every request lands in. A `Family` lookup hashes the labels and takes a
/// lock, twice per request; these handles skip both.
struct RouteSeries {
    route: &'static str,
    get_ok: Counter,
    duration: Histogram,
}

/// The latency SLO's threshold (docs/observability.md): a quarter second,
/// what a user still feels as immediate. It is a bucket boundary of the
/// request histogram, so the SLO rules count exactly the answers within it.
pub const SLO_LATENCY_SECONDS: f64 = 0.25;

fn request_histogram() -> Histogram {
    // 100 µs .. ~3.3 s: cached answers take well under a millisecond, a cold
    // BigQuery query seconds. Plus the SLO threshold, between 0.2048 and
    // 0.4096.
    let mut buckets: Vec<f64> = exponential_buckets(0.0001, 2.0, 16).chain([SLO_LATENCY_SECONDS]).collect();
    buckets.sort_by(f64::total_cmp);
    Histogram::new(buckets)
}

impl HttpMetrics {
    fn register(registry: &mut Registry, routes: &[&'static str]) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(request_histogram);
        registry.register("http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            duration.clone(),
        );
        // A Counter is a shared handle: these clones count into the series.
        let hot_routes = routes
            .iter()
            .map(|&route| RouteSeries {
                route,
                get_ok: requests.get_or_create(&RequestLabels { route, method: "GET", status: 200 }).clone(),
                duration: duration.get_or_create(&RouteLabels { route }).clone(),
            })
            .collect();
        HttpMetrics { requests, duration, hot_routes }
    }

    pub fn observe_request(&self, route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match self.hot_routes.iter().find(|hot| hot.route == route) {
            Some(hot) => {
                if (method, status) == ("GET", 200) {
                    hot.get_ok.inc();
                } else {
                    self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
                }
                hot.duration.observe(seconds);
            }
            None => {
                self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
                self.duration.get_or_create(&RouteLabels { route }).observe(seconds);
            }
        }
    }
}

/// How the result cache answered, and the age of what it serves.
pub struct CacheMetrics {
    /// The three lookup series, resolved once: every request counts one.
    hit: Counter,
    miss: Counter,
    stale: Counter,
    /// Set at each scrape ([`Metrics::encode`]).
    data_age: Gauge<f64, AtomicU64>,
}

impl CacheMetrics {
    fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<CacheLabels, Counter>::default();
        let data_age = Gauge::<f64, AtomicU64>::default();
        registry.register("cache_lookups", "Result-cache lookups, by result (hit, miss, stale)", lookups.clone());
        registry.register("data_age_seconds", "Age of the data currently served", data_age.clone());
        let series = |result| lookups.get_or_create(&CacheLabels { result }).clone();
        CacheMetrics { hit: series("hit"), miss: series("miss"), stale: series("stale"), data_age }
    }

    pub fn observe(&self, result: CacheResult) {
        match result {
            CacheResult::Hit => self.hit.inc(),
            CacheResult::Miss => self.miss.inc(),
            CacheResult::Stale => self.stale.inc(),
        };
    }
}

/// Queries to the data source: outcomes, reasons, time, and what BigQuery
/// billed.
pub struct SourceMetrics {
    queries: Family<QueryLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily<SourceLabels>,
    last_success: Gauge<f64, AtomicU64>,
    bytes_billed: Counter,
    bytes_processed: Counter,
}

fn source_histogram() -> Histogram {
    // 1 ms .. ~33 s, up to the longest BIGQUERY_TIMEOUT anyone should set.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl SourceMetrics {
    fn register(registry: &mut Registry, source: &'static str) -> Self {
        let m = SourceMetrics {
            queries: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(source_histogram),
            last_success: Gauge::default(),
            bytes_billed: Counter::default(),
            bytes_processed: Counter::default(),
        };
        registry.register("source_queries", "Queries sent to the data source, by outcome", m.queries.clone());
        registry.register("source_errors", "Failed data-source queries, by reason", m.errors.clone());
        registry.register(
            "source_query_duration_seconds",
            "Time a data-source query took, retries included",
            m.duration.clone(),
        );
        registry.register(
            "data_last_success_timestamp_seconds",
            "Unix time of the last successful data-source query",
            m.last_success.clone(),
        );
        registry.register("bigquery_bytes_billed", "Bytes BigQuery billed for our query jobs", m.bytes_billed.clone());
        registry.register(
            "bigquery_bytes_processed",
            "Bytes BigQuery processed for our query jobs",
            m.bytes_processed.clone(),
        );
        // Series that exist before anything happens, so rate() and
        // increase() see the first error and dashboards show zeros, not gaps.
        for outcome in ["ok", "error"] {
            drop(m.queries.get_or_create(&QueryLabels { source, outcome }));
        }
        for reason in crate::error::SOURCE_ERROR_REASONS {
            drop(m.errors.get_or_create(&ErrorLabels { source, reason }));
        }
        m
    }

    pub fn observe_query(&self, source: &'static str, elapsed: Duration, error: Option<&'static str>) {
        let outcome = if error.is_some() { "error" } else { "ok" };
        self.queries.get_or_create(&QueryLabels { source, outcome }).inc();
        self.duration.get_or_create(&SourceLabels { source }).observe(elapsed.as_secs_f64());
        match error {
            Some(reason) => {
                self.errors.get_or_create(&ErrorLabels { source, reason }).inc();
            }
            None => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                self.last_success.set(now.as_secs_f64());
            }
        }
    }

    pub fn observe_bytes(&self, billed: u64, processed: u64) {
        self.bytes_billed.inc_by(billed);
        self.bytes_processed.inc_by(processed);
    }
}

/// Client connections on both listeners.
pub struct ConnectionMetrics {
    active: Gauge,
    rejected: Counter,
    evicted: Counter,
}

impl ConnectionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let (active, rejected, evicted) = (Gauge::default(), Counter::default(), Counter::default());
        registry.register("connections_active", "Open client connections, both listeners", active.clone());
        registry.register(
            "connections_rejected",
            "Connections refused because MAX_CONNECTIONS was reached",
            rejected.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle admin connections closed to make room for a new one at the admin port's cap",
            evicted.clone(),
        );
        ConnectionMetrics { active, rejected, evicted }
    }

    pub fn opened(&self) {
        self.active.inc();
    }

    pub fn closed(&self) {
        self.active.dec();
    }

    pub fn rejected(&self) {
        self.rejected.inc();
    }

    pub fn evicted(&self) {
        self.evicted.inc();
    }
}

/// What this instance is (build, word, source) and whether it is ready.
pub struct InstanceMetrics {
    ready: Gauge,
}

impl InstanceMetrics {
    fn register(registry: &mut Registry, word: &str, source: &'static str) -> Self {
        let ready = Gauge::default();
        registry.register("ready", "1 when /readyz answers 200", ready.clone());
        registry.register(
            "build",
            "Version and commit of the running binary",
            Info::new(vec![("version", crate::VERSION), ("commit", crate::COMMIT)]),
        );
        registry.register(
            "config",
            "The word and data source this instance serves",
            Info::new(vec![("word", word.to_owned()), ("source", source.to_owned())]),
        );
        InstanceMetrics { ready }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_cache_series_start_at_zero() {
        let text = Metrics::new("the", "bigquery", &[]).encode(None);
        for expected in [
            r#"wordcount_source_errors_total{source="bigquery",reason="timeout"} 0"#,
            r#"wordcount_source_errors_total{source="bigquery",reason="permission_denied"} 0"#,
            r#"wordcount_source_queries_total{source="bigquery",outcome="error"} 0"#,
            r#"wordcount_cache_lookups_total{result="stale"} 0"#,
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn exposition_has_the_documented_names_and_labels() {
        let m = Metrics::new("the", "sample", &["counts"]);
        m.http.observe_request("counts", "GET", 200, Duration::from_millis(2));
        m.http.observe_request("counts", "HEAD", 200, Duration::from_millis(2));
        m.http.observe_request("hello", "GET", 200, Duration::from_millis(1));
        m.source.observe_query("sample", Duration::from_millis(20), None);
        m.source.observe_query("bigquery", Duration::from_secs(1), Some("timeout"));
        m.cache.observe(CacheResult::Stale);
        m.source.observe_bytes(10_485_760, 6_000_000);
        m.instance.set_ready(true);
        let text = m.encode(Some(Duration::from_secs(42)));

        for expected in [
            r#"wordcount_http_requests_total{route="counts",method="GET",status="200"} 1"#,
            r#"wordcount_http_requests_total{route="counts",method="HEAD",status="200"} 1"#,
            r#"wordcount_http_requests_total{route="hello",method="GET",status="200"} 1"#,
            r#"wordcount_http_request_duration_seconds_count{route="counts"} 2"#,
            r#"wordcount_http_request_duration_seconds_count{route="hello"} 1"#,
            r#"wordcount_http_request_duration_seconds_bucket{le="0.0032",route="counts"}"#,
            // Case 10: the SLO threshold is a bucket of its own.
            r#"wordcount_http_request_duration_seconds_bucket{le="0.2048",route="counts"} 2"#,
            r#"wordcount_http_request_duration_seconds_bucket{le="0.25",route="counts"} 2"#,
            r#"wordcount_http_request_duration_seconds_bucket{le="0.4096",route="counts"} 2"#,
            r#"wordcount_source_queries_total{source="bigquery",outcome="error"} 1"#,
            r#"wordcount_source_errors_total{source="bigquery",reason="timeout"} 1"#,
            r#"wordcount_source_query_duration_seconds_count{source="sample"} 1"#,
            r#"wordcount_cache_lookups_total{result="stale"} 1"#,
            "wordcount_data_age_seconds 42.0",
            "wordcount_bigquery_bytes_billed_total 10485760",
            "wordcount_ready 1",
            r#"wordcount_config_info{word="the",source="sample"} 1"#,
            "wordcount_build_info{version=",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}

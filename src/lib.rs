//! wordcount: how often a WORD appears in each of Shakespeare's works, from
//! BigQuery (or a compiled-in sample), served as HTML and JSON.
//!
//! Modules, one concern each:
//! - [`config`]: typed configuration from flags and environment
//! - [`source`]: the counts-source trait, the sample and file sources
//! - [`bigquery`]: the BigQuery source and its credentials
//! - [`cache`]: TTL cache with single flight and stale-on-error; readiness
//! - [`routes`]: the HTTP endpoints
//! - [`server`]: listeners, connection limits, graceful shutdown, signals
//! - [`metrics`]: Prometheus metrics
//! - [`telemetry`]: logs and W3C trace context
//! - [`error`]: the error type and what each failure means
//!
//! `main.rs` only loads configuration, sets up telemetry, calls [`build`] and
//! runs the result until a signal arrives.

pub mod bigquery;
pub mod cache;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod source;
pub mod telemetry;
pub mod trace;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

pub use error::{Error, Result};

use crate::cache::{Cache, Readiness};
use crate::config::{Config, SourceConfig};
use crate::metrics::Metrics;
use crate::routes::State;
use crate::server::Limits;
use crate::source::{CountsSource, FileSource, SampleSource};
use crate::trace::TraceContext;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("WORDCOUNT_COMMIT");
pub const VERSION_WITH_COMMIT: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WORDCOUNT_COMMIT"), ")");

/// Longest pause between start-up attempts to reach the data source.
const WARMUP_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A service ready to run: state built, source connected, nothing bound.
pub struct App {
    pub state: Arc<State>,
    pub limits: Limits,
}

/// Builds the data source, cache and metrics from `config`. Fails with
/// [`Error::Config`] for a data file or credentials that cannot work.
pub async fn build(config: &Config) -> Result<App> {
    let metrics = Arc::new(Metrics::new(&config.word, config.source.kind(), &routes::SERVED_ROUTES));
    let (source, source_label): (Arc<dyn CountsSource>, String) = match &config.source {
        SourceConfig::Sample => (Arc::new(SampleSource), "the sample table compiled into this binary".into()),
        // The kind only: the server's file paths are not the public's business.
        SourceConfig::File(path) => (Arc::new(FileSource::open(path)?), "a data file".into()),
        SourceConfig::BigQuery(bq) => (
            Arc::new(bigquery::BigQuerySource::connect(bq.clone(), Arc::clone(&metrics)).await?),
            format!("BigQuery table {}", bq.table),
        ),
    };
    let readiness = Arc::new(Readiness::default());
    let cache = Cache::new(source, config.word_match, config.cache_ttl, Arc::clone(&metrics), Arc::clone(&readiness));
    let state = State {
        word: config.word.clone(),
        word_match: config.word_match,
        source_label,
        cache,
        metrics,
        readiness,
        request_timeout: config.request_timeout,
    };
    let limits = Limits {
        header_read_timeout: config.header_read_timeout,
        write_timeout: config.write_timeout,
        max_connections: connection_cap(config.max_connections, open_file_limit()),
        drain_timeout: config.drain_timeout,
    };
    Ok(App { state: Arc::new(state), limits })
}

impl App {
    /// Binds the public and admin listeners from `config`.
    pub async fn bind(config: &Config) -> std::io::Result<(TcpListener, TcpListener)> {
        let public = listen(SocketAddr::new(config.bind_address, config.port))?;
        let admin = listen(SocketAddr::new(config.bind_address, config.admin_port))?;
        Ok((public, admin))
    }

    /// Serves until `shutdown` completes and the drain is over. The data
    /// source is queried right away (and retried with back-off until it
    /// answers), so the instance turns ready without waiting for a user.
    pub async fn run(self, public: TcpListener, admin: TcpListener, shutdown: impl Future<Output = ()>) {
        let warmup = tokio::spawn(warm_up(Arc::clone(&self.state)));
        server::run(public, admin, self.state, self.limits, shutdown).await;
        warmup.abort();
    }
}

/// Pending connections the kernel may queue per listener (it caps this at
/// `net.core.somaxconn`). The default of `TcpListener::bind`, 128, is
/// too few for a burst of new connections: the overflow is dropped and
/// each of those clients waits a second for its SYN to be retried.
const LISTEN_BACKLOG: u32 = 1024;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted instance can bind again while old connections sit in
    // TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept back from the public listener's connection cap:
/// the admin listener's [`server::ADMIN_CONNECTIONS`], the listeners, the data source's
/// connections and the process's own files.
const RESERVED_FDS: usize = 128;

/// `MAX_CONNECTIONS`, lowered to what the open-file limit allows. Each
/// connection is a file descriptor; past the limit `accept` fails, and the
/// clients beyond it wait in the backlog instead of getting the clean 503
/// the cap gives.
fn connection_cap(configured: usize, open_files: Option<usize>) -> usize {
    let Some(limit) = open_files else { return configured };
    let usable = limit.saturating_sub(RESERVED_FDS).max(1);
    if configured > usable {
        tracing::warn!(
            max_connections = configured as u64,
            open_file_limit = limit as u64,
            effective = usable as u64,
            "MAX_CONNECTIONS is above what the open-file limit (ulimit -n) allows; capping connections"
        );
        return usable;
    }
    configured
}

/// The soft `RLIMIT_NOFILE` of this process, from /proc (no libc call
/// needed); `None` when unlimited or unknown.
fn open_file_limit() -> Option<usize> {
    parse_open_file_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn parse_open_file_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

async fn warm_up(state: Arc<State>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match state.cache.get(&state.word, &TraceContext::from_traceparent(None)).await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(reason = err.reason(), error = %err, retry_in_ms = backoff.as_millis() as u64, "data source not answering yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(WARMUP_MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            4096                 524288               files     
Max locked memory         8388608              8388608              bytes     
";

    #[test]
    fn the_open_file_limit_is_the_soft_limit() {
        assert_eq!(parse_open_file_limit(LIMITS), Some(4096));
        assert_eq!(parse_open_file_limit(&LIMITS.replace("4096 ", "unlimited")), None);
        assert_eq!(parse_open_file_limit("garbage"), None);
    }

    #[test]
    fn the_connection_cap_fits_the_open_file_limit() {
        assert_eq!(connection_cap(10_000, Some(4096)), 4096 - RESERVED_FDS);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(500, Some(100)), 1, "never zero");
    }
}

//! wordcount: how often a WORD appears in each of Shakespeare's works, from
//! BigQuery (or a compiled-in sample), served as HTML and JSON.
//!
//! Modules, one concern each, in the order a request meets them:
//! - [`server`]: listeners, connection limits, graceful shutdown, signals
//! - [`routes`]: the HTTP endpoints, rendered-body memo
//! - [`render`]: the HTML page and the JSON body
//! - [`response`]: every response, with its security headers and CSP
//! - [`cache`]: TTL cache with single flight and stale-on-error; warm-up
//! - [`source`]: the domain types, the counts-source trait, the sample and
//!   file sources
//! - [`bigquery`]: the BigQuery source and its credentials
//!
//! and beside them:
//! - [`config`]: typed configuration from flags and environment
//! - [`readiness`]: whether the instance takes traffic (`/readyz`)
//! - [`metrics`]: Prometheus metrics
//! - [`telemetry`]: logs, and exported spans with the `otel` feature
//! - [`trace`]: W3C trace context, taken from a request or started here
//! - [`error`]: the error type and what each failure means
//!
//! This file only composes them: `main.rs` loads configuration, sets up
//! telemetry, calls [`build`] and runs the result until a signal arrives.

pub mod bigquery;
pub mod cache;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod readiness;
pub mod render;
pub mod response;
pub mod routes;
pub mod server;
pub mod source;
pub mod telemetry;
pub mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use error::{Error, Result};

use crate::cache::Cache;
use crate::config::{Config, ServerSettings, SourceKind};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::routes::State;
use crate::server::Limits;
use crate::source::{CountsSource, FileSource, SampleSource};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("WORDCOUNT_COMMIT");
pub const VERSION_WITH_COMMIT: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WORDCOUNT_COMMIT"), ")");

/// A service ready to run: state built, source connected, nothing bound.
pub struct App {
    pub state: Arc<State>,
    pub limits: Limits,
}

/// Builds the data source, cache and metrics from `config`. Fails with
/// [`Error::Config`] for a data file or credentials that cannot work.
pub async fn build(config: &Config) -> Result<App> {
    let settings = &config.source;
    let metrics = Arc::new(Metrics::new(&settings.word, settings.kind.name(), &routes::SERVED_ROUTES));
    let (source, source_label): (Arc<dyn CountsSource>, String) = match settings.kind {
        SourceKind::Sample => (Arc::new(SampleSource), "the sample table compiled into this binary".into()),
        // The kind only: the server's file paths are not the public's business.
        // Config::check requires DATA_FILE here; were it unset, "" fails to open.
        SourceKind::File => {
            let path = settings.data_file.as_deref().unwrap_or(Path::new(""));
            (Arc::new(FileSource::open(path)?), "a data file".into())
        }
        SourceKind::BigQuery => (
            Arc::new(bigquery::BigQuerySource::connect(config.bigquery.clone(), Arc::clone(&metrics)).await?),
            format!("BigQuery table {}", config.bigquery.table),
        ),
    };
    let readiness = Arc::new(Readiness::new(Arc::clone(&metrics)));
    let cache = Cache::new(
        source,
        settings.word.clone(),
        settings.word_match,
        settings.cache_ttl,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
    );
    let state = State {
        word: settings.word.clone(),
        word_match: settings.word_match,
        source_label,
        cache,
        metrics,
        readiness,
        request_timeout: config.server.request_timeout,
        rendered_html: Default::default(),
        rendered_json: Default::default(),
    };
    Ok(App { state: Arc::new(state), limits: Limits::new(&config.server) })
}

impl App {
    /// Binds the public and admin listeners from `config`.
    pub async fn bind(config: &ServerSettings) -> std::io::Result<(TcpListener, TcpListener)> {
        let public = server::listen(SocketAddr::new(config.bind_address, config.port))?;
        let admin = server::listen(SocketAddr::new(config.bind_address, config.admin_port))?;
        Ok((public, admin))
    }

    /// Serves until `shutdown` completes and the drain is over. The data
    /// source is queried right away (and retried with back-off until it
    /// answers), so the instance turns ready without waiting for a user.
    pub async fn run(self, public: TcpListener, admin: TcpListener, shutdown: impl Future<Output = ()>) {
        let warmup = tokio::spawn(Arc::clone(&self.state.cache).warm_up());
        server::run(public, admin, self.state, self.limits, shutdown).await;
        warmup.abort();
    }
}

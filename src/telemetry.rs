//! Logs: the set-up of the pipeline, and the access log.
//!
//! Production logs are one JSON object per line on stdout, in the form
//! Google Cloud Logging reads from a container's output
//! (`telemetry/cloud_logging.rs`), each tokio worker's written out in one
//! write when it is about to sleep (`telemetry/lines.rs`).
//! `LOG_FORMAT=text` gives the usual human-readable lines for a terminal. The access log (one line
//! per request, [`log_access`]) follows `RUST_LOG` like any other line; the
//! JSON layer writes it straight from its fields. Spans are exported only
//! by a build with the `otel` feature (`telemetry/otel.rs`).
//!
//! Tests stay silent unless `TEST_LOG` is set ([`init_for_tests`]).

use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

pub(crate) mod cloud_logging;
mod lines;
#[cfg(feature = "otel")]
pub mod otel;

use cloud_logging::GcpJson;
pub use lines::{Lines, stdout};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Keeps the telemetry pipeline alive; dropping it flushes exported
/// spans. Log lines need no guard: only the runtime's workers keep lines,
/// and they write them out when they stop (`src/main.rs`).
#[must_use = "dropping the guard stops span export"]
pub struct Guard {
    #[cfg(feature = "otel")]
    _spans: Option<otel::Export>,
}

/// Installs the global subscriber, logging what `filter` lets through
/// (`RUST_LOG`) to [`stdout`]. `gcp_project` turns trace ids into the
/// `projects/P/traces/T` form Cloud Logging links to Cloud Trace.
pub fn init(format: LogFormat, filter: Targets, gcp_project: Option<String>) -> Guard {
    let stdout = stdout().clone();
    let logs: BoxedLayer = match format {
        LogFormat::Json => GcpJson { project: gcp_project, writer: stdout }.boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(stdout).with_ansi(false).boxed(),
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers = vec![logs];
    #[cfg(feature = "otel")]
    let spans = otel::layer().map(|(layer, export)| {
        layers.push(layer);
        export
    });
    tracing_subscriber::registry().with(layers).with(filter).init();
    Guard {
        #[cfg(feature = "otel")]
        _spans: spans,
    }
}

/// The target of access lines, which `RUST_LOG` directives select them by.
const ACCESS_TARGET: &str = "wordcount::routes";

/// One answered request, as the access log records it.
pub struct Access<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub method: &'static str,
    pub path: &'a str,
    pub route: &'static str,
    pub status: u16,
    pub latency: Duration,
}

impl Access<'_> {
    /// Milliseconds to the microsecond: all the precision that means anything.
    fn latency_ms(&self) -> f64 {
        self.latency.as_micros() as f64 / 1000.0
    }
}

/// Logs one answered request (the access log: one INFO line per request,
/// honouring `RUST_LOG` like any other line). The JSON logs write it
/// straight from its fields; otherwise, or inside a span (whose fields the
/// line would carry), it is an event like any other.
pub fn log_access(a: &Access<'_>) {
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    let written = tracing::dispatcher::get_default(|dispatch| match dispatch.downcast_ref::<GcpJson<Lines>>() {
        Some(json) if tracing::Span::current().is_none() => {
            json.write_access(a);
            true
        }
        _ => false,
    });
    if !written {
        tracing::info!(
            target: ACCESS_TARGET,
            // A `&str` field, not a format string: no formatting machinery.
            message = "request",
            request_id = a.request_id,
            trace_id = a.trace_id,
            span_id = a.span_id,
            method = a.method,
            path = a.path,
            route = a.route,
            status = a.status,
            latency_ms = a.latency_ms(),
        );
    }
}

/// Logging for tests: silent, or human-readable on the test writer when
/// `TEST_LOG` is set. Safe to call from every test.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = std::env::var("RUST_LOG").ok().and_then(|f| f.parse().ok());
            let filter = filter.unwrap_or_else(|| Targets::new().with_default(tracing::Level::DEBUG));
            let logs = tracing_subscriber::fmt::layer().with_test_writer();
            let _ = tracing_subscriber::registry().with(logs).with(filter).try_init();
        }
    });
}

//! Logs and trace context.
//!
//! Production logs are one JSON object per line on stdout with the field
//! names Google Cloud Logging reads from a container's output: `severity`,
//! `message`, `time`, and `logging.googleapis.com/trace` / `spanId` when a
//! request has a trace. Everything else is flattened beside them, fields of
//! the enclosing spans included, so every line logged while serving a
//! request carries its `request_id` and `trace_id`. `LOG_FORMAT=text` gives
//! the usual human-readable lines for a terminal.
//!
//! [`TraceContext`] is the W3C `traceparent` of a request: taken from the
//! incoming header when valid, started here otherwise, logged with every
//! line and propagated to upstream calls.
//!
//! Tests stay silent unless `TEST_LOG` is set ([`init_for_tests`]).

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber. `gcp_project` turns trace ids into the
/// `projects/P/traces/T` form Cloud Logging links to Cloud Trace.
pub fn init(format: LogFormat, gcp_project: Option<String>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder.fmt_fields(JsonFields::new()).event_format(GcpJson { project: gcp_project }).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Logging for tests: silent, or human-readable on the test writer when
/// `TEST_LOG` is set. Safe to call from every test.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
    });
}

/// Cloud Logging's JSON shape.
struct GcpJson {
    project: Option<String>,
}

impl<S, N> FormatEvent<S, N> for GcpJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        fields.insert("time".into(), Value::String(now_rfc3339()));
        fields.insert("severity".into(), Value::String(severity(*meta.level()).into()));
        fields.insert("target".into(), Value::String(meta.target().into()));

        // Span fields first, innermost last, so an event's own fields win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(formatted) {
                    fields.extend(span_fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));

        if let Some(Value::String(trace_id)) = fields.get("trace_id") {
            let trace = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace_id}"),
                None => trace_id.clone(),
            };
            fields.insert("logging.googleapis.com/trace".into(), Value::String(trace));
        }
        if let Some(span_id) = fields.get("span_id").cloned() {
            fields.insert("logging.googleapis.com/spanId".into(), span_id);
        }
        if !fields.contains_key("message") {
            fields.insert("message".into(), Value::String(String::new()));
        }
        let line = serde_json::to_string(&fields).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::String(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

/// The W3C trace context of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// 32 lowercase hex digits; empty only for work no request caused.
    pub trace_id: String,
    /// This service's span for the request, 16 hex digits.
    pub span_id: String,
    /// The caller's span, when the request came with a `traceparent`.
    pub parent_span_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace when `traceparent` is valid, and starts
    /// a new one otherwise (an invalid header is ignored, as the spec asks).
    pub fn from_traceparent(header: Option<&str>) -> Self {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => {
                TraceContext { trace_id, span_id: random_hex::<8>(), parent_span_id: Some(parent), sampled }
            }
            None => TraceContext {
                trace_id: random_hex::<16>(),
                span_id: random_hex::<8>(),
                parent_span_id: None,
                sampled: false,
            },
        }
    }

    /// The header to send upstream: same trace, this service's span as
    /// parent.
    pub fn traceparent(&self) -> Option<String> {
        if self.trace_id.is_empty() {
            return None;
        }
        Some(format!("00-{}-{}-{}", self.trace_id, self.span_id, if self.sampled { "01" } else { "00" }))
    }
}

fn parse_traceparent(header: &str) -> Option<(String, String, bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let valid = lower_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && lower_hex(flags, 2);
    if !valid {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((trace_id.to_owned(), parent.to_owned(), sampled))
}

/// `N` random bytes as lowercase hex.
pub fn random_hex<const N: usize>() -> String {
    use std::fmt::Write;
    let bytes: [u8; N] = rand::random();
    bytes.iter().fold(String::with_capacity(2 * N), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let ctx = TraceContext::from_traceparent(Some(VALID));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        assert_eq!(ctx.span_id.len(), 16);
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        let outgoing = ctx.traceparent().expect("has a trace");
        assert_eq!(outgoing, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", ctx.span_id));
    }

    #[test]
    fn starts_a_new_trace_for_invalid_headers() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let ctx = TraceContext::from_traceparent(Some(bad));
            assert_eq!(ctx.parent_span_id, None, "{bad:?} must not be continued");
            assert_eq!(ctx.trace_id.len(), 32);
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn later_versions_may_carry_more_fields() {
        let header = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        let ctx = TraceContext::from_traceparent(Some(header));
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(!ctx.sampled);
    }

    #[test]
    fn json_lines_carry_gcp_fields_and_span_fields() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buffer {
            type Writer = Buffer;
            fn make_writer(&'a self) -> Buffer {
                self.clone()
            }
        }

        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(GcpJson { project: Some("my-project".into()) })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r1", trace_id = "abc", span_id = "def");
            let _entered = span.enter();
            tracing::warn!(status = 503u64, "source failed");
        });

        let output = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf8");
        let line: Value = serde_json::from_str(output.trim()).expect("one JSON object");
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "source failed");
        assert_eq!(line["status"], 503);
        assert_eq!(line["request_id"], "r1");
        assert_eq!(line["logging.googleapis.com/trace"], "projects/my-project/traces/abc");
        assert_eq!(line["logging.googleapis.com/spanId"], "def");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}

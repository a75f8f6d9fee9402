//! Logs and trace context.
//!
//! Production logs are one JSON object per line on stdout with the field
//! names Google Cloud Logging reads from a container's output: `severity`,
//! `message`, `time`, and `logging.googleapis.com/trace` / `spanId` when a
//! request has a trace. Everything else is flattened beside them, fields of
//! the enclosing spans included, so every line logged while serving a
//! request carries its `request_id` and `trace_id`. `LOG_FORMAT=text` gives
//! the usual human-readable lines for a terminal. The access log (one line
//! per request, [`log_access`]) has the same shape but a shorter path to
//! stdout.
//!
//! [`TraceContext`] is the W3C `traceparent` of a request: taken from the
//! incoming header when valid, started here otherwise, logged with every
//! line and propagated to upstream calls.
//!
//! Built with the `otel` cargo feature and started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over OTLP/gRPC
//! (to a collector such as the OpenTelemetry Collector or Cloud Trace's);
//! a request that arrived with a `traceparent` continues the caller's trace.
//! The default build has none of this.
//!
//! Tests stay silent unless `TEST_LOG` is set ([`init_for_tests`]).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Keeps the telemetry pipeline alive; dropping it flushes exported spans.
#[must_use = "dropping the guard stops span export"]
pub struct Guard {
    stdout: BatchedStdout,
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stdout.flush();
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("wordcount: flushing spans failed: {err}");
        }
    }
}

/// Installs the global subscriber. `gcp_project` turns trace ids into the
/// `projects/P/traces/T` form Cloud Logging links to Cloud Trace.
pub fn init(format: LogFormat, gcp_project: Option<String>) -> Guard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = BatchedStdout::start();
    let logs: BoxedLayer = match format {
        LogFormat::Json => {
            let json = GcpJson { project: gcp_project };
            // Only the first init counts (there is one per process).
            let _ = ACCESS_LOG.set((json.clone(), stdout.clone()));
            tracing_subscriber::fmt::layer()
                .with_writer(stdout.clone())
                .fmt_fields(JsonFields::new())
                .event_format(json)
                .boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(stdout.clone()).with_ansi(false).boxed(),
    };
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut layers = vec![logs];

    #[cfg(feature = "otel")]
    let provider = otel::provider();
    #[cfg(feature = "otel")]
    if let Some(provider) = &provider {
        use opentelemetry::trace::TracerProvider as _;
        layers.push(tracing_opentelemetry::layer().with_tracer(provider.tracer("wordcount")).boxed());
    }

    tracing_subscriber::registry().with(layers).with(filter).init();
    Guard {
        stdout,
        #[cfg(feature = "otel")]
        provider,
    }
}

/// OTLP export, compiled only with the `otel` feature.
#[cfg(feature = "otel")]
pub mod otel {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceContext;

    /// A batch-exporting provider when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
    /// (the exporter reads the standard `OTEL_*` variables itself).
    pub(super) fn provider() -> Option<SdkTracerProvider> {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
            Ok(exporter) => exporter,
            Err(err) => {
                eprintln!("wordcount: OTLP export disabled: {err}");
                return None;
            }
        };
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("wordcount").build();
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
    }

    /// Makes `span` a child of the caller's span, so exported spans join the
    /// trace the `traceparent` header named.
    pub fn continue_trace(span: &tracing::Span, trace: &TraceContext) {
        let Some(parent) = &trace.parent_span_id else { return };
        let (Ok(trace_id), Ok(span_id)) =
            (TraceId::from_hex(trace.trace_id.as_str()), SpanId::from_hex(parent.as_str()))
        else {
            return;
        };
        let flags = if trace.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

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

/// The access-log lines' target, as if `routes` logged them itself.
const ACCESS_TARGET: &str = "wordcount::routes";

/// Where JSON access-log lines go, and in which shape; set by [`init`]
/// when logs are JSON.
static ACCESS_LOG: OnceLock<(GcpJson, BatchedStdout)> = OnceLock::new();

/// Logs one answered request (the access log: one INFO line per request,
/// honouring `RUST_LOG` like any other line).
///
/// With JSON logs the line is built and added to the stdout batch
/// directly. Going through `tracing` visits each of a dozen fields behind
/// a dynamic call and escape-checks every key, which made the access line
/// a quarter of the instructions of a cached answer; this path writes the
/// fixed keys as they are. The line is the same either way:
/// `tests::access_lines_match_the_tracing_path` holds the two to it. Text
/// logs, and tests without [`init`], take the `tracing` path.
pub fn log_access(access: &Access<'_>) {
    if !tracing::enabled!(target: ACCESS_TARGET, Level::INFO) {
        return;
    }
    match ACCESS_LOG.get() {
        Some((json, stdout)) => with_line(|line| {
            json.format_access(line, access);
            append(&stdout.shared, line.as_bytes());
        }),
        None => access_event(access),
    }
}

/// The access line as a `tracing` event.
fn access_event(a: &Access<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = a.request_id,
        trace_id = a.trace_id,
        span_id = a.span_id,
        method = a.method,
        path = a.path,
        route = a.route,
        status = a.status,
        latency_ms = latency_ms(a.latency),
        "request"
    );
}

/// Milliseconds to the microsecond: all the precision that means anything.
fn latency_ms(latency: Duration) -> f64 {
    latency.as_micros() as f64 / 1000.0
}

/// Log lines bound for stdout, written in batches by a background thread.
///
/// A write(2) per line was the largest single cost of a cached request
/// (one access-log line each). Lines are appended to a shared buffer, one
/// short lock per line, and a thread writes the buffer out every
/// [`Self::INTERVAL`], or at once when it passes [`Self::HIGH_WATER`]. A
/// line therefore reaches stdout at most 50 ms late; a crash can lose that
/// much. When stdout cannot keep up, the logging request writes the buffer
/// itself, so memory stays bounded and the slowdown is visible, not silent.
#[derive(Clone)]
pub struct BatchedStdout {
    shared: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl BatchedStdout {
    const INTERVAL: Duration = Duration::from_millis(50);
    /// Wake the writer early past this much. At 100k lines a second a
    /// 64 KiB mark woke it (a futex call and a context switch on a 2-core
    /// machine) every 1.5 ms; 256 KiB makes that four times rarer.
    const HIGH_WATER: usize = 256 * 1024;
    const LIMIT: usize = 2 * 1024 * 1024;
    /// What the buffers start with; they grow under load and keep that.
    const INITIAL: usize = 64 * 1024;

    fn start() -> Self {
        let this = BatchedStdout { shared: Arc::new((Mutex::new(Vec::with_capacity(Self::INITIAL)), Condvar::new())) };
        let writer = this.clone();
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            // Two buffers swapped back and forth keep their capacity, so a
            // steady stream of lines allocates nothing.
            let mut batch = Vec::with_capacity(Self::INITIAL);
            loop {
                let (lock, wake) = &*writer.shared;
                let buffer = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut buffer, _) = wake.wait_timeout(buffer, Self::INTERVAL).unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut *buffer, &mut batch);
                drop(buffer);
                write_stdout(&batch);
                batch.clear();
                // A burst may have grown it far beyond the usual batch.
                batch.shrink_to(Self::LIMIT);
            }
        });
        if let Err(err) = spawned {
            eprintln!("wordcount: no log-writer thread ({err}); log lines are written when the buffer fills");
        }
        this
    }

    /// Writes out whatever is buffered (at exit).
    pub fn flush(&self) {
        let batch = std::mem::take(&mut *self.shared.0.lock().unwrap_or_else(PoisonError::into_inner));
        write_stdout(&batch);
    }
}

fn write_stdout(batch: &[u8]) {
    if !batch.is_empty() {
        use std::io::Write;
        // Nowhere left to report a failed log write; dropping it is all we can do.
        let _ = std::io::stdout().lock().write_all(batch);
    }
}

/// The writer the fmt layer gets for one line. The layer hands over each
/// line whole, in one `write`, so appending under the lock keeps lines
/// intact without copying them into a buffer of their own first.
pub struct Line<'a> {
    shared: &'a (Mutex<Vec<u8>>, Condvar),
}

impl std::io::Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        append(self.shared, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Adds whole lines to the batch the writer thread writes out.
fn append((lock, wake): &(Mutex<Vec<u8>>, Condvar), lines: &[u8]) {
    let mut buffer = lock.lock().unwrap_or_else(PoisonError::into_inner);
    buffer.extend_from_slice(lines);
    if buffer.len() >= BatchedStdout::LIMIT {
        // The writer thread is behind: write it out here (backpressure).
        let batch = std::mem::take(&mut *buffer);
        drop(buffer);
        write_stdout(&batch);
    } else if buffer.len() >= BatchedStdout::HIGH_WATER {
        wake.notify_one();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line { shared: &self.shared }
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
#[derive(Clone)]
struct GcpJson {
    project: Option<String>,
}

impl<S, N> FormatEvent<S, N> for GcpJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    /// Builds the line field by field in a per-thread buffer, then hands it
    /// to the layer in one piece: one line per request is on the hot path,
    /// so there is no intermediate map, no allocation, and strings that
    /// need no escaping (nearly all) are copied as they are. Keys are
    /// written base fields, then span fields (outermost first), then the
    /// event's own, so with JSON's last-one-wins an event field overrides a
    /// span field of the same name.
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        with_line(|line| {
            self.format_line(line, ctx, event);
            writer.write_str(line)
        })
    }
}

/// Runs `build` on this thread's line buffer, emptied. Lines are built one
/// at a time, so the buffer is reused and a line allocates nothing. A line
/// started while another is being built (a field's `Debug` output logged
/// something itself; never on the hot path) gets a fresh buffer.
fn with_line<R>(build: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(1024));
    }
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            build(&mut line)
        }
        Err(_) => build(&mut String::new()),
    })
}

impl GcpJson {
    fn format_line<S, N>(&self, line: &mut String, ctx: &FmtContext<'_, S, N>, event: &Event<'_>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let meta = event.metadata();
        line.push_str("{\"time\":\"");
        push_now(line);
        line.push_str("\",\"severity\":\"");
        line.push_str(severity(*meta.level()));
        line.push('"');
        push_field(line, "target", Json::Str(meta.target()));

        // Cloud Logging's trace fields go in as soon as an id is seen: from
        // the spans first, then from the event's own fields, which win (a
        // later key wins in JSON).
        if let Some(scope) = ctx.event_scope() {
            let mut ids = Ids::default();
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else { continue };
                let inner = formatted.trim().trim_start_matches('{').trim_end_matches('}').trim();
                if inner.is_empty() {
                    continue;
                }
                line.push(',');
                line.push_str(inner);
                if let Ok(span_ids) = serde_json::from_str::<Ids>(formatted) {
                    ids.trace_id = span_ids.trace_id.or(ids.trace_id);
                    ids.span_id = span_ids.span_id.or(ids.span_id);
                }
            }
            if let Some(trace_id) = &ids.trace_id {
                self.push_trace(line, trace_id);
            }
            if let Some(span_id) = &ids.span_id {
                push_field(line, SPAN_ID_KEY, Json::Str(span_id));
            }
        }

        let mut visitor = StreamVisitor { json: self, line: &mut *line, has_message: false };
        event.record(&mut visitor);
        if !visitor.has_message {
            push_field(line, "message", Json::Str(""));
        }
        line.push_str("}\n");
    }

    /// What [`Self::format_line`] makes of [`access_event`], written
    /// directly (see [`log_access`]).
    fn format_access(&self, line: &mut String, a: &Access<'_>) {
        line.push_str("{\"time\":\"");
        push_now(line);
        line.push_str("\",\"severity\":\"INFO\",\"target\":\"");
        line.push_str(ACCESS_TARGET);
        line.push_str("\",\"message\":\"request\",\"request_id\":");
        push_str(line, a.request_id);
        line.push_str(",\"trace_id\":");
        push_str(line, a.trace_id);
        self.push_trace(line, a.trace_id);
        line.push_str(",\"span_id\":");
        push_str(line, a.span_id);
        push_field(line, SPAN_ID_KEY, Json::Str(a.span_id));
        line.push_str(",\"method\":");
        push_str(line, a.method);
        line.push_str(",\"path\":");
        push_str(line, a.path);
        line.push_str(",\"route\":");
        push_str(line, a.route);
        line.push_str(",\"status\":");
        push_u64(line, u64::from(a.status));
        line.push_str(",\"latency_ms\":");
        push_f64(line, latency_ms(a.latency));
        line.push_str("}\n");
    }

    /// `logging.googleapis.com/trace`, in the `projects/P/traces/T` form
    /// when the project is known.
    fn push_trace(&self, line: &mut String, trace_id: &str) {
        match &self.project {
            Some(project) => push_field(line, TRACE_KEY, Json::Str(&format!("projects/{project}/traces/{trace_id}"))),
            None => push_field(line, TRACE_KEY, Json::Str(trace_id)),
        }
    }
}

const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_ID_KEY: &str = "logging.googleapis.com/spanId";

/// The ids Cloud Logging links to traces, as recorded on spans.
#[derive(Default, serde::Deserialize)]
struct Ids {
    trace_id: Option<String>,
    span_id: Option<String>,
}

/// A JSON value of a log field.
enum Json<'a> {
    Str(&'a str),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Appends `,"key":value`.
fn push_field(line: &mut String, key: &str, value: Json<'_>) {
    line.push(',');
    push_str(line, key);
    line.push(':');
    match value {
        Json::Str(s) => push_str(line, s),
        Json::U64(n) => push_u64(line, n),
        Json::I64(n) => {
            if n < 0 {
                line.push('-');
            }
            push_u64(line, n.unsigned_abs());
        }
        Json::F64(x) if x.is_finite() => push_f64(line, x),
        Json::F64(_) => line.push_str("null"),
        Json::Bool(b) => line.push_str(if b { "true" } else { "false" }),
    }
}

/// Appends `n` in decimal, at least `width` digits (zero-padded). What
/// `write!` prints, without the formatting machinery, which cost more
/// than the digits on every line (status, timestamp, latency).
fn push_padded(line: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || start > digits.len() - width.clamp(1, 20) {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    line.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

fn push_u64(line: &mut String, n: u64) {
    push_padded(line, n, 1);
}

/// A finite f64 as the shortest decimal that reads back as the same
/// number (what `Display` prints). Latencies are logged in milliseconds
/// rounded to microseconds, and for such values (at most six decimals,
/// below a million) that decimal is the value's own digits, written here
/// with integer arithmetic; `Display`'s general algorithm was a visible
/// share of every access-log line. Anything else goes to `Display`.
fn push_f64(line: &mut String, x: f64) {
    use std::fmt::Write;
    let micros = (x.abs() * 1e6).round();
    // Exact check: the six-decimal number is this very f64. Below 1e6 the
    // gap between neighbouring f64s is far under 1e-6, so no shorter
    // decimal can name the same number.
    if x.abs() < 1e6 && micros / 1e6 == x.abs() {
        let micros = micros as u64;
        let (whole, mut frac, mut digits) = (micros / 1_000_000, micros % 1_000_000, 6);
        while digits > 0 && frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        if x.is_sign_negative() {
            line.push('-');
        }
        push_u64(line, whole);
        if digits > 0 {
            line.push('.');
            push_padded(line, frac, digits);
        }
    } else {
        // Writing into a String cannot fail.
        let _ = write!(line, "{x}");
    }
}

/// A JSON string.
fn push_str(line: &mut String, s: &str) {
    line.reserve(s.len() + 2);
    line.push('"');
    escape_into(line, s);
    line.push('"');
}

/// Appends `s` escaped for the inside of a JSON string, with every code
/// point that Rust's `Debug` (and so text mode) escapes written as `\uXXXX`:
/// bidirectional controls (U+202E), invisible and non-printable ones would
/// otherwise reach a terminal or log viewer raw. Most log values (ids,
/// paths, names) are plain ASCII and copied as they are; the rest take the
/// out-of-line path, which keeps this one small enough to inline.
#[inline]
fn escape_into(line: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        escape_slow(line, s);
    } else {
        line.push_str(s);
    }
}

#[cold]
#[inline(never)]
fn escape_slow(line: &mut String, s: &str) {
    use std::fmt::Write;
    for c in s.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\'' => line.push(c),
            // UTF-16 units, as JSON spells code points. Writing into a
            // String cannot fail.
            c if u32::from(c) < 0x20 || c.escape_debug().len() > 1 => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(line, "\\u{unit:04x}");
                }
            }
            c => line.push(c),
        }
    }
}

/// Streams `Debug` output into a JSON string without an intermediate
/// `String` (every log message arrives this way).
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Whether `bytes` hold a control character, `"`, `\\` or any non-ASCII
/// byte (which may start a code point to escape). Eight bytes at a time (the classic "has a byte less than
/// n / equal to c" word tricks, exact for the any-byte question), since
/// every string of every log line passes through here.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        let x = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        found |= x & HIGH // a byte >= 0x80
            | x.wrapping_sub(ONES * 0x20) & !x & HIGH // a byte < 0x20
            | has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')));
    }
    found != 0 || chunks.remainder().iter().any(|&b| !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\')
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

/// Writes the current UTC time as RFC 3339 with microseconds. The
/// date-and-seconds part is formatted once per second per thread; at
/// tens of thousands of lines a second, formatting a full date per line
/// was a visible share of a cached request.
fn push_now(line: &mut String) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            *prefix = rfc3339_second(now.as_secs());
        }
        line.push_str(prefix);
    });
    line.push('.');
    push_padded(line, u64::from(now.subsec_micros()), 6);
    line.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for a Unix second.
fn rfc3339_second(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix.try_into().unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

struct StreamVisitor<'a> {
    json: &'a GcpJson,
    line: &'a mut String,
    has_message: bool,
}

impl StreamVisitor<'_> {
    fn field(&mut self, field: &Field, value: Json<'_>) {
        push_field(self.line, field.name(), value);
    }

    fn string(&mut self, field: &Field, value: &str) {
        self.field(field, Json::Str(value));
        match field.name() {
            "trace_id" => self.json.push_trace(self.line, value),
            "span_id" => push_field(self.line, SPAN_ID_KEY, Json::Str(value)),
            "message" => self.has_message = true,
            _ => {}
        }
    }
}

impl Visit for StreamVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, Json::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, Json::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, Json::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, Json::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        match field.name() {
            "trace_id" | "span_id" => self.string(field, &format!("{value:?}")),
            name => {
                self.has_message |= name == "message";
                self.line.push(',');
                push_str(self.line, name);
                self.line.push_str(":\"");
                // Writing into a String cannot fail.
                let _ = write!(Escaper(self.line), "{value:?}");
                self.line.push('"');
            }
        }
    }
}

/// The W3C trace context of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// 32 lowercase hex digits; empty only for work no request caused.
    pub trace_id: HexId<32>,
    /// This service's span for the request, 16 hex digits.
    pub span_id: HexId<16>,
    /// The caller's span, when the request came with a `traceparent`.
    pub parent_span_id: Option<HexId<16>>,
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace when `traceparent` is valid, and starts
    /// a new one otherwise (an invalid header is ignored, as the spec asks).
    pub fn from_traceparent(header: Option<&str>) -> Self {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => {
                TraceContext { trace_id, span_id: HexId::random(), parent_span_id: Some(parent), sampled }
            }
            None => TraceContext {
                trace_id: HexId::random(),
                span_id: HexId::random(),
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

/// A trace or span id: `N` lowercase hex digits, or empty. Held inline, so
/// that a request's trace context costs no allocation (one is made for
/// every request).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    /// `N` random digits (4 random bits each: 128 for a trace id, 64 for a
    /// span id, so the all-zeros id the spec reserves as invalid is
    /// practically impossible).
    pub fn random() -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut random = [0u8; N];
        rand::fill(&mut random[..]);
        let mut hex = [0u8; N];
        for (digit, byte) in hex.iter_mut().zip(random) {
            *digit = DIGITS[usize::from(byte & 0xf)];
        }
        HexId(hex)
    }

    /// `s` when it is `N` lowercase hex digits and not all zeros.
    fn parse(s: &str) -> Option<Self> {
        let hex: [u8; N] = s.as_bytes().try_into().ok()?;
        let valid = is_lower_hex(&hex) && hex.iter().any(|&b| b != b'0');
        valid.then_some(HexId(hex))
    }

    /// The default id is all NUL bytes, never a hex digit: "no id".
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    pub fn as_str(&self) -> &str {
        if self.is_empty() { "" } else { std::str::from_utf8(&self.0).unwrap_or_default() }
    }
}

impl<const N: usize> Default for HexId<N> {
    fn default() -> Self {
        HexId([0; N])
    }
}

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq<&str> for HexId<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What W3C trace context allows in its fields: lowercase hex only.
fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_traceparent(header: &str) -> Option<(HexId<32>, HexId<16>, bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && is_lower_hex(s.as_bytes());
    let valid = lower_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none())
        && lower_hex(flags, 2);
    if !valid {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((HexId::parse(trace_id)?, HexId::parse(parent)?, sampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let ctx = TraceContext::from_traceparent(Some(VALID));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.map(|id| id.to_string()).as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        assert_eq!(ctx.span_id.as_str().len(), 16);
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
            assert_eq!(ctx.trace_id.as_str().len(), 32);
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339_second(0), "1970-01-01T00:00:00");
        assert_eq!(rfc3339_second(1_795_000_000), "2026-11-18T11:06:40");
        let mut text = String::new();
        push_now(&mut text);
        let parsed =
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        let skew = (time::OffsetDateTime::now_utc() - parsed).abs();
        assert!(skew < time::Duration::seconds(2), "{text} is now");
        assert_eq!(text.len(), "2026-11-18T07:06:40.123456Z".len());
    }

    #[test]
    fn fields_are_valid_json_whatever_they_hold() {
        let mut line = String::from("{\"a\":0");
        push_field(&mut line, "plain", Json::Str("/api/v1/counts"));
        push_field(&mut line, "tricky", Json::Str("say \"hi\"\\\n\r\t\u{1}\u{1f}é\u{2028}"));
        push_field(&mut line, "key \"quoted\"", Json::Bool(true));
        push_field(&mut line, "nan", Json::F64(f64::NAN));
        push_field(&mut line, "ms", Json::F64(0.25));
        push_field(&mut line, "neg", Json::I64(-3));
        line.push('}');
        let value: serde_json::Value = serde_json::from_str(&line).expect(&line);
        assert_eq!(value["plain"], "/api/v1/counts");
        assert_eq!(value["tricky"], "say \"hi\"\\\n\r\t\u{1}\u{1f}é\u{2028}");
        assert_eq!(value["key \"quoted\""], true);
        assert!(value["nan"].is_null());
        assert_eq!(value["ms"], 0.25);
        assert_eq!(value["neg"], -3);
    }

    /// Case 8: what text mode's `Debug` escapes, JSON lines escape too.
    #[test]
    fn bidi_and_invisible_code_points_are_escaped() {
        let mut line = String::new();
        push_str(&mut line, "/a\u{202e}b\u{200b}c\u{2066}\u{feff}\u{85}é日本\u{1f600}'");
        assert_eq!(line, r#""/a\u202eb\u200bc\u2066\ufeff\u0085é日本😀'""#);
        let value: String = serde_json::from_str(&line).expect(&line);
        assert_eq!(value, "/a\u{202e}b\u{200b}c\u{2066}\u{feff}\u{85}é日本\u{1f600}'");
    }

    #[test]
    fn the_escape_check_agrees_with_the_obvious_one() {
        let obvious = |s: &[u8]| s.iter().any(|&b| !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\');
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"plain ascii text, long enough for chunks".to_vec()];
        // Every byte value at every position of a 19-byte string (two
        // chunks and a remainder), in a background of harmless bytes that
        // sit right next to the special ones.
        for background in [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
            for position in 0..19 {
                for byte in 0..=255u8 {
                    let mut case = vec![background; 19];
                    case[position] = byte;
                    cases.push(case);
                }
            }
        }
        for case in &cases {
            assert_eq!(needs_escape(case), obvious(case), "{case:?}");
        }
    }

    #[test]
    fn floats_read_back_as_the_same_number_in_display_form() {
        let mut values = vec![0.0, -0.0, 0.25, 0.036, 1.5, 12.000_001, 999_999.999_999, 1e6, 1e-7, 0.1 + 0.2, -3.75];
        values.extend((0..2000).map(|i| f64::from(i) * 0.017 + 1e-3));
        values.extend((0..2000).map(|i| Duration::from_micros(i * 7919).as_secs_f64() * 1000.0));
        values.extend((0..2000).map(|i| (i * 7919) as f64 / 1000.0));
        for x in values {
            let mut line = String::new();
            push_f64(&mut line, x);
            assert_eq!(line, format!("{x}"), "{x:?}");
        }
    }

    #[test]
    fn integers_are_what_display_prints() {
        for n in [0, 7, 10, 99, 200, 1_000_001, u64::MAX] {
            let mut line = String::new();
            push_u64(&mut line, n);
            assert_eq!(line, n.to_string());
        }
        for n in [i64::MIN, -3, 0, i64::MAX] {
            let mut line = String::new();
            push_field(&mut line, "n", Json::I64(n));
            assert_eq!(line, format!(",\"n\":{n}"));
        }
        for (n, width) in [(0, 6), (42, 6), (123_456, 6), (5, 1), (1_234_567, 6)] {
            let mut line = String::new();
            push_padded(&mut line, n, width);
            assert_eq!(line, format!("{n:0width$}"));
        }
    }

    #[test]
    fn random_ids_are_lowercase_hex() {
        let id = HexId::<16>::random();
        assert_eq!(id.as_str().len(), 16);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        assert_ne!(id, HexId::<16>::random());
        assert!(!id.is_empty());
        assert!(HexId::<16>::default().is_empty());
        assert_eq!(HexId::<16>::default().as_str(), "");
        assert_eq!(TraceContext::default().traceparent(), None);
    }

    #[test]
    fn later_versions_may_carry_more_fields() {
        let header = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        let ctx = TraceContext::from_traceparent(Some(header));
        assert_eq!(ctx.parent_span_id.map(|id| id.to_string()).as_deref(), Some("00f067aa0ba902b7"));
        assert!(!ctx.sampled);
    }

    /// A log destination the tests can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf8")
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn access_lines_match_the_tracing_path() {
        let traced = TraceContext::from_traceparent(Some(VALID));
        let fresh = TraceContext::from_traceparent(None);
        let accesses = [
            Access {
                request_id: "client-id.1",
                trace_id: traced.trace_id.as_str(),
                span_id: traced.span_id.as_str(),
                method: "GET",
                path: "/api/v1/counts",
                route: "counts",
                status: 200,
                latency: Duration::from_micros(42),
            },
            Access {
                request_id: fresh.span_id.as_str(),
                trace_id: fresh.trace_id.as_str(),
                span_id: fresh.span_id.as_str(),
                method: "other",
                path: "/a\"b\\c\u{1}",
                route: "not_found",
                status: 404,
                latency: Duration::from_millis(1500),
            },
        ];
        for project in [None, Some("my-project".to_owned())] {
            let json = GcpJson { project };
            for access in &accesses {
                let buffer = Buffer::default();
                let subscriber = tracing_subscriber::fmt()
                    .with_writer(buffer.clone())
                    .fmt_fields(JsonFields::new())
                    .event_format(json.clone())
                    .finish();
                tracing::subscriber::with_default(subscriber, || access_event(access));
                let mut direct = String::new();
                json.format_access(&mut direct, access);

                // The same line but for the clock: compare past "time".
                let skip_time = |line: &str| line.split_once("Z\",").map(|(_, rest)| rest.to_owned());
                let traced_line = buffer.text();
                assert_eq!(skip_time(&direct), skip_time(&traced_line), "direct:\n{direct}tracing:\n{traced_line}");
                let line: serde_json::Value = serde_json::from_str(&direct).expect("valid JSON");
                assert_eq!(line["path"], access.path);
                assert_eq!(line["status"], access.status);
                assert_eq!(line["message"], "request");
            }
        }
    }

    #[test]
    fn json_lines_carry_gcp_fields_and_span_fields() {
        use serde_json::Value;

        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(GcpJson { project: Some("my-project".into()) })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r1", trace_id = "abc", span_id = "def");
            let _entered = span.enter();
            tracing::warn!(status = 503u64, detail = "a \"quoted\"\nline", "source failed");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_writer(buffer.clone())
                .fmt_fields(JsonFields::new())
                .event_format(GcpJson { project: None })
                .finish(),
            || tracing::info!(trace_id = "t2", "outside any span"),
        );

        let output = buffer.text();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{output}");
        let line: Value = serde_json::from_str(lines[0]).expect("valid JSON");
        assert_eq!(line["detail"], "a \"quoted\"\nline");
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "source failed");
        assert_eq!(line["status"], 503);
        assert_eq!(line["request_id"], "r1");
        assert_eq!(line["logging.googleapis.com/trace"], "projects/my-project/traces/abc");
        assert_eq!(line["logging.googleapis.com/spanId"], "def");
        let time = line["time"].as_str().expect("time is a string");
        assert!(
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(),
            "{time} is RFC 3339"
        );

        let outside: Value = serde_json::from_str(lines[1]).expect("valid JSON");
        assert_eq!(outside["logging.googleapis.com/trace"], "t2", "no project: the bare trace id");
        assert_eq!(outside["severity"], "INFO");
    }

    #[test]
    fn batched_lines_arrive_whole_and_in_order() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;

        let stdout = BatchedStdout { shared: Arc::new((Mutex::new(Vec::new()), Condvar::new())) };
        for text in ["first\n", "second\n"] {
            let mut line = stdout.make_writer();
            line.write_all(text.as_bytes()).unwrap();
        }
        assert_eq!(stdout.shared.0.lock().unwrap().as_slice(), b"first\nsecond\n");
    }
}

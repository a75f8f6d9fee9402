//! Cloud Logging's JSON lines: one object per line with the field names
//! Google Cloud Logging reads from a container's output: `severity`,
//! `message`, `time`, and `logging.googleapis.com/trace` / `spanId` when a
//! request has a trace. Everything else is flattened beside them, fields of
//! the enclosing spans included, so every line logged while serving a
//! request carries its `request_id` and `trace_id`.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::num::NonZero;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer as _};
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::format_description::well_known::iso8601::{Config, EncodedConfig, TimePrecision};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::{ACCESS_TARGET, Access};

pub(crate) mod json;

/// Cloud Logging's JSON lines, written to `writer`.
pub(super) struct GcpJson<W> {
    pub(super) project: Option<String>,
    pub(super) writer: W,
}

const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_ID_KEY: &str = "logging.googleapis.com/spanId";

/// RFC 3339 in UTC with microseconds: `2026-11-18T07:06:40.123456Z`.
const TIME: EncodedConfig =
    Config::DEFAULT.set_time_precision(TimePrecision::Second { decimal_digits: NonZero::new(6) }).encode();

/// A span's fields, repeated on every line logged inside it.
struct SpanFields(serde_json::Map<String, serde_json::Value>);

impl<S, W> Layer<S> for GcpJson<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let (Some(fields), Some(span)) = (self.span_fields(|fields| attrs.record(fields)), ctx.span(id)) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.emit(|line| {
            let meta = event.metadata();
            let object = head(line, *meta.level(), meta.target());
            self.write_fields(object, &ctx, event);
        });
    }
}

impl<W: for<'w> MakeWriter<'w>> GcpJson<W> {
    /// The access line ([`crate::telemetry::log_access`]) straight from its
    /// fields: byte for byte the line its event would give outside any span
    /// (a test compares the two), without tracing's field visitor, and with
    /// its keys known when compiling (docs/performance.md).
    pub(crate) fn write_access(&self, a: &Access<'_>) {
        self.emit(|line| {
            let mut object = head(line, Level::INFO, ACCESS_TARGET);
            object.str("message", "request");
            object.str("request_id", a.request_id);
            object.str("trace_id", a.trace_id);
            self.trace(&mut object, a.trace_id);
            object.str("span_id", a.span_id);
            object.str(SPAN_ID_KEY, a.span_id);
            object.str("method", a.method);
            object.str("path", a.path);
            object.str("route", a.route);
            object.value("status", &a.status);
            object.value("latency_ms", &a.latency_ms());
            object.line.push(b'}');
        });
    }

    /// Builds a line in this thread's buffer, reused from line to line (a
    /// line started while another is being built, because a field's `Debug`
    /// logged something itself, gets its own), and hands it over whole.
    fn emit(&self, build: impl FnOnce(&mut Vec<u8>)) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with(|cell| {
            let (mut reused, mut own) = (cell.try_borrow_mut(), Vec::new());
            let line = match &mut reused {
                Ok(line) => &mut **line,
                Err(_) => &mut own,
            };
            line.clear();
            build(line);
            escape_invisible(line);
            line.push(b'\n');
            // Nowhere left to report a failed log write.
            let _ = self.writer.make_writer().write_all(line);
        });
    }
}

/// Starts a line: `{"time":…,"severity":…,"target":…`.
fn head<'l>(line: &'l mut Vec<u8>, level: Level, target: &str) -> json::Object<'l> {
    line.extend_from_slice(b"{\"time\":\"");
    // Digits and punctuation only: nothing to escape.
    write_time(line, SystemTime::now());
    line.push(b'"');
    let mut object = json::Object { line, empty: false };
    object.str("severity", severity(level));
    object.str("target", target);
    object
}

/// `at` as [`TIME`] formats it. The text up to the second is `time`'s,
/// formatted once a second per thread; only the microseconds are written
/// here, for each line (a test compares the two).
fn write_time(line: &mut Vec<u8>, at: SystemTime) {
    thread_local! {
        /// A second since the epoch, and its text up to and including the `.`.
        static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let Ok(since_epoch) = at.duration_since(SystemTime::UNIX_EPOCH) else {
        let _ = OffsetDateTime::from(at).format_into(line, &Iso8601::<TIME>);
        return;
    };
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != since_epoch.as_secs() {
            text.clear();
            let start = OffsetDateTime::from(SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()));
            let _ = start.format_into(text, &Iso8601::<TIME>);
            text.truncate(text.len().saturating_sub(b"000000Z".len()));
            *second = since_epoch.as_secs();
        }
        line.extend_from_slice(text);
    });
    let mut micros = since_epoch.subsec_micros();
    let mut digits = *b"000000Z";
    for digit in digits[..6].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    line.extend_from_slice(&digits);
}

impl<W> GcpJson<W> {
    /// After the base fields, span fields (outermost first), then the
    /// event's own, so with JSON's last-one-wins an event field overrides a
    /// span field of the same name.
    fn write_fields<S>(&self, mut object: json::Object<'_>, ctx: &Context<'_, S>, event: &Event<'_>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        for span in ctx.event_scope(event).into_iter().flat_map(|scope| scope.from_root()) {
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                fields.iter().for_each(|(key, value)| object.value(key, value));
            }
        }
        let mut fields = Fields { json: self, map: object, has_message: false };
        event.record(&mut fields);
        if !fields.has_message {
            fields.map.str("message", "");
        }
        fields.map.line.push(b'}');
    }

    /// `logging.googleapis.com/trace`, in the `projects/P/traces/T` form
    /// when the project is known.
    fn trace(&self, map: &mut impl Sink, trace_id: &str) {
        match &self.project {
            Some(project) => map.text(TRACE_KEY, format_args!("projects/{project}/traces/{trace_id}")),
            None => map.str(TRACE_KEY, trace_id),
        }
    }

    /// The fields `record` gives, as a span keeps them.
    fn span_fields(&self, record: impl FnOnce(&mut dyn Visit)) -> Option<serde_json::Map<String, serde_json::Value>> {
        let map = SpanMap(serde_json::value::Serializer.serialize_map(None).ok()?);
        let mut fields = Fields { json: self, map, has_message: true };
        record(&mut fields);
        match fields.map.0.end() {
            Ok(serde_json::Value::Object(fields)) => Some(fields),
            _ => None,
        }
    }
}

/// Where an event's or a span's fields go: the line's JSON object
/// ([`json::Object`]), or the map a span keeps ([`SpanMap`]).
trait Sink {
    fn str(&mut self, key: &str, value: &str);
    /// Formatted text as a JSON string, escaped as it is written (every
    /// log message arrives this way), without a `String` in between.
    fn text(&mut self, key: &str, value: fmt::Arguments<'_>);
    fn value(&mut self, key: &str, value: &(impl Serialize + ?Sized));
}

impl Sink for json::Object<'_> {
    fn str(&mut self, key: &str, value: &str) {
        json::Object::str(self, key, value);
    }
    fn text(&mut self, key: &str, value: fmt::Arguments<'_>) {
        json::Object::text(self, key, value);
    }
    fn value(&mut self, key: &str, value: &(impl Serialize + ?Sized)) {
        json::Object::value(self, key, value);
    }
}

/// A span's fields, collected as serde_json values.
struct SpanMap<M>(M);

impl<M: SerializeMap> Sink for SpanMap<M> {
    fn str(&mut self, key: &str, value: &str) {
        self.value(key, value);
    }
    fn text(&mut self, key: &str, value: fmt::Arguments<'_>) {
        self.value(key, &Text(value));
    }
    fn value(&mut self, key: &str, value: &(impl Serialize + ?Sized)) {
        // Into a Value, with string keys, serializing cannot fail.
        let _ = self.0.serialize_entry(key, value);
    }
}

struct Text<'a>(fmt::Arguments<'a>);

impl Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Writes an event's fields into the line's JSON object.
struct Fields<'a, W, M> {
    json: &'a GcpJson<W>,
    map: M,
    has_message: bool,
}

impl<W, M: Sink> Fields<'_, W, M> {
    fn string(&mut self, field: &Field, value: &str) {
        self.map.str(field.name(), value);
        match field.name() {
            "trace_id" => self.json.trace(&mut self.map, value),
            "span_id" => self.map.str(SPAN_ID_KEY, value),
            "message" => self.has_message = true,
            _ => {}
        }
    }
}

impl<W, M: Sink> Visit for Fields<'_, W, M> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.map.value(field.name(), &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.map.value(field.name(), &value);
    }
    /// Not finite: `null`.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.map.value(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.map.value(field.name(), &value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "trace_id" | "span_id" => self.string(field, &format!("{value:?}")),
            name => {
                self.has_message |= name == "message";
                self.map.text(name, format_args!("{value:?}"));
            }
        }
    }
}

/// The one rule serde_json does not have: every non-ASCII code point that
/// Rust's `Debug` (and so text mode) escapes, such as bidirectional controls
/// (U+202E) and invisible ones, is written as `\uXXXX`, so none reaches a
/// terminal or log viewer raw. Outside its strings a JSON line is ASCII, so
/// this runs over the whole line; nearly every line is ASCII throughout.
fn escape_invisible(line: &mut Vec<u8>) {
    // The high bits of every byte OR-ed together: the compiler does this
    // sixteen bytes at a time, where `is_ascii` goes eight at a time.
    if line.iter().fold(0, |high, byte| high | byte) < 0x80 {
        return;
    }
    let Ok(text) = std::str::from_utf8(line) else { return };
    let mut escaped = Vec::with_capacity(line.len() + 16);
    for c in text.chars() {
        if c.is_ascii() || c.escape_debug().len() == 1 {
            escaped.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                // Writing into a Vec cannot fail.
                let _ = write!(escaped, "\\u{unit:04x}");
            }
        }
    }
    *line = escaped;
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::telemetry::Lines;
    use crate::telemetry::lines::testing::Shared;
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::{Access, log_access};
    use crate::trace::TraceContext;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_time_is_what_the_time_crate_writes() {
        // Instants across years, leap days, ends of year and of second,
        // visited in an order that moves the cached second forwards, back
        // and nowhere; and one before the epoch.
        let mut seconds = vec![0, 59, 951_782_400, 1_709_164_799, 1_709_164_800, 1_798_761_599, 4_102_444_800];
        seconds.extend((0..2_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 4_102_444_800));
        let micros = [0, 1, 9, 10, 999_999, 123_456, 500_000];
        let mut checked = 0;
        for (i, second) in seconds.iter().enumerate() {
            for &micro in &micros[..if i < 7 { micros.len() } else { 2 }] {
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(*second) + Duration::from_micros(micro);
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                write_time(&mut ours, at);
                OffsetDateTime::from(at).format_into(&mut theirs, &Iso8601::<TIME>).expect("time formats it");
                assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{second}s {micro}µs");
                checked += 1;
            }
        }
        assert!(checked > 4_000);
        let before = SystemTime::UNIX_EPOCH - Duration::from_micros(1_500_000);
        let mut ours = Vec::new();
        write_time(&mut ours, before);
        assert_eq!(ours, b"1969-12-31T23:59:58.500000Z");
    }

    /// The JSON lines `log` writes, as text, through [`Lines`] as in
    /// production (so the access log takes its own path).
    fn logged(project: Option<&str>, log: impl FnOnce()) -> String {
        let buffer = Shared::default();
        let json = GcpJson { project: project.map(str::to_owned), writer: Lines::new(buffer.clone()) };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(json), log);
        buffer.text()
    }

    /// The one JSON line `log` writes.
    fn line(log: impl FnOnce()) -> Value {
        let text = logged(None, log);
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).expect(&text)
    }

    /// `s` as a JSON string, the way log lines write it.
    fn json_string(s: &str) -> String {
        let mut line = serde_json::to_vec(s).expect("serialize");
        escape_invisible(&mut line);
        String::from_utf8(line).expect("utf8")
    }

    /// The number logged as `key`, read by Rust's exact parser (serde_json's
    /// default one may be off by one unit in the last place).
    fn number(text: &str, key: &str) -> f64 {
        let (_, rest) = text.split_once(&format!("\"{key}\":")).expect(text);
        rest.split([',', '}']).next().and_then(|n| n.parse().ok()).expect(text)
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let line = line(|| tracing::info!("now"));
        let text = line["time"].as_str().expect("time is a string");
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        let skew = (time::OffsetDateTime::now_utc() - parsed).abs();
        assert!(skew < time::Duration::seconds(2), "{text} is now");
        assert_eq!(text.len(), "2026-11-18T07:06:40.123456Z".len());
        assert!(text.ends_with('Z'), "{text}");
    }

    #[test]
    fn fields_are_valid_json_whatever_they_hold() {
        let tricky = "say \"hi\"\\\n\r\t\u{1}\u{1f}é\u{2028}";
        let value = line(|| {
            tracing::info!(
                plain = "/api/v1/counts",
                tricky,
                "key \"quoted\"" = true,
                nan = f64::NAN,
                ms = 0.25,
                neg = -3i64,
                debug = ?tricky,
            )
        });
        assert_eq!(value["plain"], "/api/v1/counts");
        assert_eq!(value["tricky"], tricky);
        assert_eq!(value["key \"quoted\""], true);
        assert!(value["nan"].is_null());
        assert_eq!(value["ms"], 0.25);
        assert_eq!(value["neg"], -3);
        assert_eq!(value["debug"], format!("{tricky:?}"));
        assert_eq!(value["message"], "", "a line without a message still has the field");
    }

    /// What text mode's `Debug` escapes, JSON lines escape too.
    #[test]
    fn bidi_and_invisible_code_points_are_escaped() {
        let path = "/a\u{202e}b\u{200b}c\u{2066}\u{feff}\u{85}é日本\u{1f600}'";
        let text = logged(None, || tracing::info!(path, "request"));
        assert!(text.contains(r#""path":"/a\u202eb\u200bc\u2066\ufeff\u0085é日本😀'""#), "{text}");
        let value: Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(value["path"], path);
    }

    #[test]
    fn every_code_point_reads_back_and_only_printable_ones_stay_raw() {
        let chars = (0..0x3_0000).filter_map(char::from_u32).chain(['\u{e0001}', '\u{10ffff}']);
        for c in chars {
            // Each code point alone, and between plain ASCII.
            for case in [c.to_string(), format!("ab{c}cd")] {
                let json = json_string(&case);
                assert_eq!(serde_json::from_str::<String>(&json).expect(&json), case);
                // What Debug escapes but JSON need not: quotes, and DEL.
                let mut raw = json.trim_matches('"').chars().filter(|c| !matches!(c, '\'' | '"' | '\\' | '\u{7f}'));
                assert!(raw.all(|c| c.escape_debug().len() == 1), "{c:?} stays raw in {json}");
            }
        }
    }

    #[test]
    fn numbers_read_back_as_the_same_number() {
        let mut values = vec![0.0, -0.0, 0.25, 0.036, 1.5, 12.000_001, 999_999.999_999, 1e6, 1e-7, 0.1 + 0.2, -3.75];
        values.extend((0..2000).map(|i| f64::from(i) * 0.017 + 1e-3));
        values.extend((0..2000).map(|i| Duration::from_micros(i * 7919).as_secs_f64() * 1000.0));
        for x in values {
            assert_eq!(number(&logged(None, || tracing::info!(x)), "x"), x, "{x:?}");
        }
        for n in [0, 7, 10, 99, 200, 1_000_001, u64::MAX] {
            let text = logged(None, || tracing::info!(n));
            assert!(text.contains(&format!(",\"n\":{n},")), "{text}");
        }
        for n in [i64::MIN, -3, 0, i64::MAX] {
            let text = logged(None, || tracing::info!(n));
            assert!(text.contains(&format!(",\"n\":{n},")), "{text}");
        }
    }

    #[test]
    fn access_lines_carry_the_request_and_its_trace() {
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
        for project in [None, Some("my-project")] {
            for access in &accesses {
                let text = logged(project, || {
                    let direct = tracing::dispatcher::get_default(|d| d.downcast_ref::<GcpJson<Lines>>().is_some());
                    assert!(direct, "the access line is written by the JSON layer itself");
                    log_access(access);
                });
                // Inside a span (one without fields), the access log is an
                // ordinary event: byte for byte the same line.
                let event = logged(project, || tracing::info_span!("outer").in_scope(|| log_access(access)));
                let after_time = |line: &str| line.split_once("\",\"severity\":").expect(line).1.to_owned();
                assert_eq!(after_time(&text), after_time(&event), "{text}");
                let line: Value = serde_json::from_str(&text).expect(&text);
                assert_eq!(line["severity"], "INFO");
                assert_eq!(line["target"], "wordcount::routes");
                assert_eq!(line["message"], "request");
                assert_eq!(line["request_id"], access.request_id);
                assert_eq!(line["trace_id"], access.trace_id);
                assert_eq!(line["span_id"], access.span_id);
                assert_eq!(line["method"], access.method);
                assert_eq!(line["path"], access.path);
                assert_eq!(line["route"], access.route);
                assert_eq!(line["status"], access.status);
                assert_eq!(number(&text, "latency_ms"), access.latency.as_micros() as f64 / 1000.0);
                let trace = match project {
                    Some(project) => format!("projects/{project}/traces/{}", access.trace_id),
                    None => access.trace_id.to_owned(),
                };
                assert_eq!(line[TRACE_KEY], trace);
                assert_eq!(line[SPAN_ID_KEY], access.span_id);
            }
        }
    }

    #[test]
    fn json_lines_carry_gcp_fields_and_span_fields() {
        let output = logged(Some("my-project"), || {
            let span = tracing::info_span!("request", request_id = "r1", trace_id = "abc", span_id = "def");
            let _entered = span.enter();
            tracing::warn!(status = 503u64, detail = "a \"quoted\"\nline", "source failed");
        }) + &logged(None, || tracing::info!(trace_id = "t2", "outside any span"));

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
}

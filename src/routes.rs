//! HTTP routes: a plain `match` on the path, one per listener.
//!
//! Public listener (`PORT`):
//! - `GET /` — HTML table of counts for WORD
//! - `GET /api/v1/counts` — the same as JSON
//! - `GET /hello` — `Hello from PSPDFKit Engineer!`
//!
//! Admin listener (`ADMIN_PORT`, never exposed through an Ingress):
//! - `GET /healthz` — liveness: 200 while the process serves
//! - `GET /readyz` — 200 once the data source answered, 503 with the reason
//! - `GET /metrics` — Prometheus text exposition
//!
//! `HEAD` works wherever `GET` does; another method on a known path is 405
//! with `Allow`; anything else is 404. An HTTP/1.1 request without exactly
//! one valid `Host`, or a request of any version with two or an invalid
//! one, is 400 on any path (RFC 9112, section 3.2), and its connection is
//! closed. A connection over its listener's cap gets 503 to every request
//! ([`Listener::OverCapacity`]). Every response carries the security headers
//! (all responses are built in [`crate::response`]) and an `X-Request-Id`; every
//! request is logged once and counted, those hyper refused before routing
//! included ([`log_unparsed`]). Request bodies are never read. A fresh
//! answer's body is rendered once per cache snapshot ([`State`] memoises it).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tokio::time::Instant;
#[cfg(feature = "otel")]
use tracing::Instrument;

use crate::cache::{Cache, Served, Snapshot};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::render::{self, Labels};
use crate::response::{Body, X_REQUEST_ID, cached_answer, closing, respond, text};
use crate::source::WordMatch;
use crate::telemetry::{self, Access};
use crate::trace::TraceContext;

pub const HELLO: &str = "Hello from PSPDFKit Engineer!";

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Everything a request handler needs, built once at start-up.
pub struct State {
    pub word: String,
    pub word_match: WordMatch,
    /// How the page names the data source, e.g. "BigQuery table p.d.t".
    pub source_label: String,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub request_timeout: Duration,
    /// The fresh page and JSON, rendered once per snapshot.
    pub(crate) rendered_html: Memo,
    pub(crate) rendered_json: Memo,
}

impl State {
    fn labels(&self) -> Labels<'_> {
        Labels {
            word: &self.word,
            word_match: self.word_match,
            source_label: &self.source_label,
            source_kind: self.cache.source_kind(),
        }
    }
}

/// A body rendered from the newest snapshot: a fresh answer is the same
/// bytes for every request until the next refresh, so it is rendered once
/// per snapshot, not per request. Holding the snapshot keeps its address
/// from being reused, so the address identifies it. One of the hot-path
/// caches of docs/performance.md.
#[derive(Default)]
pub(crate) struct Memo(Mutex<Option<(Arc<Snapshot>, Bytes)>>);

impl Memo {
    /// The body of `served`, from the memo when it holds this snapshot's; a
    /// stale answer (rare, and it says so) is rendered for the request.
    fn get(&self, served: &Served, render: impl FnOnce() -> Result<Bytes, String>) -> Result<Bytes, String> {
        if served.stale {
            return render();
        }
        let mut memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((snapshot, body)) = &*memo
            && Arc::ptr_eq(snapshot, &served.snapshot)
        {
            return Ok(body.clone());
        }
        let body = render()?;
        *memo = Some((Arc::clone(&served.snapshot), body.clone()));
        Ok(body)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
    /// A connection either listener accepted over its cap: every request
    /// on it is answered 503 and the connection closed.
    OverCapacity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Index,
    Counts,
    Hello,
    Healthz,
    Readyz,
    Metrics,
    NotFound,
    /// Not routed at all: the request is malformed (see [`Route::of`]).
    BadRequest,
    /// Not routed at all: the connection is over its listener's cap.
    OverCapacity,
}

impl Route {
    /// The route of `req`: by path, unless the request breaks a rule that
    /// holds for every path.
    fn of<B>(listener: Listener, req: &Request<B>) -> Route {
        // Over the cap, nothing about the request matters (not even Host).
        if listener == Listener::OverCapacity {
            return Route::OverCapacity;
        }
        // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1
        // request without a Host, with two, or with an invalid one; HTTP/1.0
        // may leave Host out, but not send two or an invalid one. Routing
        // never reads it, but a request that breaks this is not one a
        // well-behaved client or proxy sent, and proxies in front may have
        // read it differently.
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(host), None) if is_valid_host(host.as_bytes()) => {}
            (None, _) if req.version() < Version::HTTP_11 => {}
            _ => return Route::BadRequest,
        }
        Route::resolve(listener, req.uri().path())
    }

    fn resolve(listener: Listener, path: &str) -> Route {
        match (listener, path) {
            (Listener::Public, "/") => Route::Index,
            (Listener::Public, "/api/v1/counts") => Route::Counts,
            (Listener::Public, "/hello") => Route::Hello,
            (Listener::Admin, "/healthz") => Route::Healthz,
            (Listener::Admin, "/readyz") => Route::Readyz,
            (Listener::Admin, "/metrics") => Route::Metrics,
            _ => Route::NotFound,
        }
    }

    /// Metric label; unknown paths share one label so scanners cannot blow
    /// up the series count.
    const fn label(self) -> &'static str {
        match self {
            Route::Index => "index",
            Route::Counts => "counts",
            Route::Hello => "hello",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
            Route::BadRequest => "bad_request",
            Route::OverCapacity => "over_capacity",
        }
    }
}

/// The labels of the routes that answer a GET with 200: [`Metrics`]
/// resolves their series up front.
pub const SERVED_ROUTES: [&str; 6] = [
    Route::Index.label(),
    Route::Counts.label(),
    Route::Hello.label(),
    Route::Healthz.label(),
    Route::Readyz.label(),
    Route::Metrics.label(),
];

/// Entry point for both listeners: resolves the route, runs it under the
/// request timeout, then adds the common headers, logs and counts. Never
/// fails; the `Result` is the shape hyper's services have.
pub async fn handle<B>(req: Request<B>, state: Arc<State>, listener: Listener) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let route = Route::of(listener, &req);
    let trace = TraceContext::from_traceparent(header_str(req.headers(), &TRACEPARENT));
    let client_id = header_str(req.headers(), &X_REQUEST_ID).filter(|id| is_safe_request_id(id));
    // Checking the ids' digits again for each use adds up: once, here.
    let (trace_id, span_id) = (trace.trace_id.as_str(), trace.span_id.as_str());
    let request_id = client_id.unwrap_or(span_id);
    let method = method_label(req.method());

    let work = dispatch(route, &req, &state, &trace, request_id);
    // A span per request exists only to be exported: building one costs
    // more than the rest of a cached answer, and nothing inside a cached
    // answer logs (a refresh logs under its own span, see cache.rs).
    #[cfg(feature = "otel")]
    let work = {
        let span = tracing::info_span!("request", request_id, trace_id, span_id);
        crate::telemetry::otel::continue_trace(&span, &trace);
        work.instrument(span)
    };
    let mut response = match tokio::time::timeout(state.request_timeout, work).await {
        Ok(response) => response,
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n", "no-store"),
    };
    match HeaderValue::from_str(request_id) {
        Ok(value) => response.headers_mut().insert(X_REQUEST_ID, value),
        // Never: ids are checked or made here; but no placeholder goes out.
        Err(_) => response.headers_mut().remove(X_REQUEST_ID),
    };

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.http.observe_request(route.label(), method, status, elapsed);
    telemetry::log_access(&Access {
        request_id,
        trace_id,
        span_id,
        method,
        path: req.uri().path(),
        route: route.label(),
        status,
        latency: elapsed,
    });
    Ok(response)
}

async fn dispatch<B>(
    route: Route,
    req: &Request<B>,
    state: &Arc<State>,
    trace: &TraceContext,
    request_id: &str,
) -> Response<Body> {
    match route {
        // Whatever else the client sent on this connection is not to be
        // trusted either: the connection is closed after these.
        Route::BadRequest => closing(text(
            StatusCode::BAD_REQUEST,
            "bad request: exactly one valid Host header is required\n",
            "no-store",
        )),
        Route::OverCapacity => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n", "no-store");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            closing(response)
        }
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n", "no-store"),
        _ if req.method() != Method::GET && req.method() != Method::HEAD => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n", "no-store");
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        Route::Hello => text(StatusCode::OK, HELLO, "public, max-age=3600"),
        Route::Index | Route::Counts => match state.cache.get(trace).await {
            Ok(served) if route == Route::Index => index_page(state, &served, request_id),
            Ok(served) => counts_json(state, &served, request_id),
            Err(err) => unavailable(route, state, &err, request_id),
        },
        Route::Healthz => text(StatusCode::OK, "ok\n", "no-store"),
        Route::Readyz => match state.readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n", "no-store"),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n"), "no-store"),
        },
        Route::Metrics => {
            let body = state.metrics.encode(state.cache.data_age());
            let mut response = respond(StatusCode::OK, body, "text/plain; version=0.0.4; charset=utf-8", "no-store");
            // prometheus-client writes the OpenMetrics text format.
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
    }
}

/// Counts and logs a request hyper answered itself (`status` 400 or 431)
/// because it could not parse it: no route, method or path is known, and
/// the answer is hyper's own, empty and closing the connection.
pub fn log_unparsed(state: &State, status: u16, err: &hyper::Error) {
    let trace = TraceContext::from_traceparent(None);
    let route = "malformed";
    state.metrics.http.observe_request(route, "other", status, Duration::ZERO);
    tracing::debug!(error = %err, status, "request refused by the HTTP parser");
    telemetry::log_access(&Access {
        request_id: trace.span_id.as_str(),
        trace_id: trace.trace_id.as_str(),
        span_id: trace.span_id.as_str(),
        method: "other",
        path: "",
        route,
        status,
        latency: Duration::ZERO,
    });
}

fn index_page(state: &State, served: &Served, request_id: &str) -> Response<Body> {
    match state.rendered_html.get(served, || render::index(&state.labels(), &served.snapshot, served.stale)) {
        Ok(html) => cached_answer(html, "text/html; charset=utf-8", served),
        Err(err) => internal_error(&err, request_id),
    }
}

fn counts_json(state: &State, served: &Served, request_id: &str) -> Response<Body> {
    match state.rendered_json.get(served, || render::counts(&state.labels(), &served.snapshot, served.stale)) {
        Ok(json) => cached_answer(json, "application/json", served),
        Err(err) => internal_error(&err, request_id),
    }
}

/// No data at all to show: 503 in the route's own format, with a hint
/// when to come back. The cause goes to the log, the metrics and
/// `/readyz`, not to anonymous users.
fn unavailable(route: Route, state: &State, err: &Error, request_id: &str) -> Response<Body> {
    let status = err.status();
    let mut response = if route == Route::Counts {
        respond(status, render::unavailable_json(&state.word), "application/json", "no-store")
    } else {
        match render::unavailable_page(&state.word, request_id) {
            Ok(html) => respond(status, html, "text/html; charset=utf-8", "no-store"),
            Err(render_err) => return internal_error(&render_err, request_id),
        }
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn internal_error(err: &dyn std::fmt::Display, request_id: &str) -> Response<Body> {
    tracing::error!(request_id, error = %err, "rendering failed");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n", "no-store")
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A `Host` value: `host[:port]` (RFC 9110, section 7.2), or empty, which
/// is what a client sends for a target without an authority.
fn is_valid_host(value: &[u8]) -> bool {
    value.is_empty()
        || is_plain_host(value)
        || (!value.contains(&b'@') && http::uri::Authority::try_from(value).is_ok())
}

/// `name[:digits]` with a name of letters, digits, dots and hyphens: what
/// nearly every client sends, and always a valid authority, so it is
/// accepted without `Authority`'s copy of the value into new `Bytes` (a
/// test checks the subset against `Authority`).
fn is_plain_host(value: &[u8]) -> bool {
    let (name, port) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], &value[colon + 1..]),
        None => (value, &[][..]),
    };
    !name.is_empty()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.iter().all(u8::is_ascii_digit)
}

/// Client-supplied request ids are echoed and logged, so only short ids of
/// plain characters are accepted; anything else is replaced by our own.
pub(crate) fn is_safe_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Counts;

    #[test]
    fn routes_live_on_their_own_listener() {
        assert_eq!(Route::resolve(Listener::Public, "/"), Route::Index);
        assert_eq!(Route::resolve(Listener::Public, "/api/v1/counts"), Route::Counts);
        assert_eq!(Route::resolve(Listener::Public, "/hello"), Route::Hello);
        assert_eq!(Route::resolve(Listener::Public, "/metrics"), Route::NotFound);
        assert_eq!(Route::resolve(Listener::Public, "/readyz"), Route::NotFound);
        assert_eq!(Route::resolve(Listener::Admin, "/"), Route::NotFound);
        assert_eq!(Route::resolve(Listener::Admin, "/metrics"), Route::Metrics);
        assert_eq!(Route::resolve(Listener::Public, "/hello/"), Route::NotFound);
    }

    #[test]
    fn a_fresh_body_is_rendered_once_per_snapshot() {
        let memo = Memo::default();
        let renders = std::cell::Cell::new(0);
        let render = || {
            renders.set(renders.get() + 1);
            Ok(Bytes::from(renders.get().to_string()))
        };
        let served = |snapshot: &Arc<Snapshot>, stale| Served {
            snapshot: Arc::clone(snapshot),
            stale,
            fresh_for: Duration::from_secs(1),
        };
        let (first, second) = (Arc::new(Snapshot::new(Counts::default())), Arc::new(Snapshot::new(Counts::default())));

        assert_eq!(memo.get(&served(&first, false), render), Ok(Bytes::from("1")));
        assert_eq!(memo.get(&served(&first, false), render), Ok(Bytes::from("1")), "memoised");
        assert_eq!(memo.get(&served(&first, true), render), Ok(Bytes::from("2")), "stale: rendered for the request");
        assert_eq!(memo.get(&served(&second, false), render), Ok(Bytes::from("3")), "a new snapshot");
        assert_eq!(memo.get(&served(&second, false), render), Ok(Bytes::from("3")));
        assert_eq!(renders.get(), 3);
    }

    #[test]
    fn plain_hosts_are_valid_authorities() {
        // Every string of up to four bytes from an alphabet of plain and
        // special characters: where the fast path accepts, so does Authority.
        let alphabet = b"a0.-:@[]%/ ";
        let mut strings = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> =
                strings.iter().flat_map(|s| alphabet.iter().map(move |&b| [s.as_slice(), &[b]].concat())).collect();
            strings.extend(longer.into_iter().filter(|s| s.len() <= 4));
            strings.sort();
            strings.dedup();
        }
        let plain = strings.iter().filter(|s| is_plain_host(s)).count();
        assert!(plain > 400, "the fast path saw only {plain} inputs");
        for s in strings.iter().filter(|s| is_plain_host(s)) {
            assert!(http::uri::Authority::try_from(s.as_slice()).is_ok(), "{:?}", String::from_utf8_lossy(s));
        }
        for host in ["127.0.0.1:8080", "wordcount.example", "localhost", "a-b.c:"] {
            assert!(is_plain_host(host.as_bytes()), "{host}");
        }
        for host in ["[::1]:80", "user@a", ":80", "a b", "a:b", "a:1:2"] {
            assert!(!is_plain_host(host.as_bytes()), "{host}");
        }
        assert!(is_valid_host(b"[::1]:80"), "[::1]:80");
        assert!(!is_valid_host(b"user@a"), "user@a");
        assert!(!is_valid_host(b"a:1:2"), "a:1:2");
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(is_safe_request_id("abc-123_x.y"));
        assert!(!is_safe_request_id(""));
        assert!(!is_safe_request_id("a b"));
        assert!(!is_safe_request_id("<script>"));
        assert!(!is_safe_request_id(&"x".repeat(65)));
    }
}

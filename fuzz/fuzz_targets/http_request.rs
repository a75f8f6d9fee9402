//! Raw bytes from a client, through hyper's HTTP/1 server with the
//! service's own settings (`server::http1_builder`) and per-connection
//! service (`server::connection_service` -> `routes::handle`), over an
//! in-memory stream, with the state `wordcount::build` makes for the
//! compiled-in sample.
//!
//! The first input byte picks the listener (even: public, odd: admin; the
//! seeds start with `P` or `A`), the rest is what the client sends before
//! closing its side. What must hold:
//! - no panic and no hang (each input is bounded by a timeout);
//! - everything sent back parses as HTTP/1.1 responses;
//! - each request hyper handed to the service is answered, in order, with
//!   the status the routing table gives (200/404/405, 503 only where the
//!   data or readiness can be missing; 400 for an HTTP/1.1 request without
//!   exactly one valid Host), the security headers and an `X-Request-Id`;
//!   `/hello` says hello;
//! - anything else is hyper's own refusal (a 4xx or 505 without a body), and
//!   nothing follows it on the connection.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{Method, Version};
use hyper::service::{Service, service_fn};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wordcount::config::Config;
use wordcount::routes::{HELLO, Listener, State};
use wordcount::server::{Limits, connection_service, http1_builder};
use wordcount::trace::TraceContext;

struct Harness {
    runtime: tokio::runtime::Runtime,
    state: Arc<State>,
    limits: Limits,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // A TTL longer than any fuzz run: the sample is scanned once (as the
        // service's warm-up does), then every request is served from cache.
        let env: HashMap<&str, &str> = [("CACHE_TTL", "86400"), ("PORT", "0"), ("ADMIN_PORT", "0")].into();
        let config = Config::load(&[], &env).expect("config");
        let app = runtime.block_on(wordcount::build(&config)).expect("build");
        runtime.block_on(app.state.cache.get(&TraceContext::default())).expect("the sample answers");
        Harness { runtime, state: app.state, limits: app.limits }
    })
}

/// What the service saw of one request.
struct Seen {
    method: Method,
    path: String,
    version: Version,
    hosts: Vec<Vec<u8>>,
}

/// Whether a request's Host is what RFC 9112 section 3.2 asks for, as far
/// as this oracle can tell on its own: `Some(false)` for what is surely
/// wrong (none in HTTP/1.1, two, or characters no host or port has),
/// `Some(true)` for what is surely right (empty, or a plain name with an
/// optional port), `None` for anything in between (IPv6 literals,
/// percent-encoding, ...), where 400 and the routed answer are both fine.
fn host_is_valid(seen: &Seen) -> Option<bool> {
    if seen.version < Version::HTTP_11 && seen.hosts.is_empty() {
        return Some(true);
    }
    let [host] = seen.hosts.as_slice() else { return Some(false) };
    if host.iter().any(|b| b" @\"<>\\^`{|}".contains(b) || *b < 0x20 || *b >= 0x7f) {
        return Some(false);
    }
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
        None => (&host[..], None),
    };
    let plain_name = name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let plain_port = port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit) && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok())
    });
    if host.is_empty() || (!name.is_empty() && plain_name && plain_port) { Some(true) } else { None }
}

const SECURITY_HEADERS: &[&str] = &[
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "cross-origin-resource-policy",
    "x-request-id",
];

/// The status the routing table gives `seen` on `listener`.
fn expected_status(listener: Listener, seen: &Seen) -> Vec<u16> {
    match host_is_valid(seen) {
        Some(true) => routed_status(listener, seen).to_vec(),
        Some(false) => vec![400],
        None => [routed_status(listener, seen), &[400]].concat(),
    }
}

/// The status for the path and method, the Host being fine.
fn routed_status(listener: Listener, seen: &Seen) -> &'static [u16] {
    let known = match listener {
        Listener::Public => ["/", "/api/v1/counts", "/hello"].contains(&seen.path.as_str()),
        Listener::Admin => ["/healthz", "/readyz", "/metrics"].contains(&seen.path.as_str()),
        Listener::OverCapacity => return &[503],
    };
    if !known {
        &[404]
    } else if seen.method != Method::GET && seen.method != Method::HEAD {
        &[405]
    } else if seen.path == "/hello" || seen.path == "/healthz" || seen.path == "/metrics" {
        &[200]
    } else {
        // Data or readiness could be missing (not with a warm cache, but
        // that is the cache's business, not the parser's).
        &[200, 503]
    }
}

fn check(listener: Listener, input: &[u8], seen: &[Seen], output: &[u8]) {
    let show = || format!("input {:?}\noutput {:?}", String::from_utf8_lossy(input), String::from_utf8_lossy(output));
    let mut rest = output;
    let mut answered = 0;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not an HTTP response ({other:?})\n{}", show()),
        };
        // HTTP/1.1, or 1.0 in answer to a 1.0 request.
        assert!(matches!(response.version, Some(0 | 1)), "{}", show());
        let status = response.code.expect("status");
        assert!(!(500..600).contains(&status) || status == 503, "{status}\n{}", show());
        let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        let length: usize = header("content-length")
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or_else(|| panic!("response without content-length\n{}", show()));

        let body_len = match seen.get(answered) {
            Some(request) => {
                let allowed = expected_status(listener, request);
                assert!(
                    allowed.contains(&status),
                    "{} {}: {status}, expected {allowed:?}\n{}",
                    request.method,
                    request.path,
                    show()
                );
                for name in SECURITY_HEADERS {
                    assert!(header(name).is_some(), "{status} without {name}\n{}", show());
                }
                let body_len = if request.method == Method::HEAD { 0 } else { length };
                if request.path == "/hello" && status == 200 && request.method == Method::GET {
                    assert_eq!(&rest[head_len..head_len + body_len], HELLO.as_bytes(), "{}", show());
                }
                answered += 1;
                body_len
            }
            None => {
                // hyper's own answer to what it could not parse: a client
                // error (or 505 for an unknown version), empty, and last.
                assert!(matches!(status, 400 | 408 | 413 | 414 | 431 | 501 | 505), "{status}\n{}", show());
                assert_eq!(length, 0, "{}", show());
                assert_eq!(rest.len(), head_len, "bytes after hyper's error response\n{}", show());
                0
            }
        };
        assert!(rest.len() >= head_len + body_len, "truncated body\n{}", show());
        rest = &rest[head_len + body_len..];
    }
    // Closing our side after the last byte does not cost a request its
    // answer: everything hyper handed to the service was answered.
    assert_eq!(answered, seen.len(), "requests without a response\n{}", show());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let listener = if selector & 1 == 0 { Listener::Public } else { Listener::Admin };
    let harness = harness();
    let seen = Arc::new(Mutex::new(Vec::new()));

    let output = harness.runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let service = connection_service(Arc::clone(&harness.state), listener);
        let record = Arc::clone(&seen);
        let recording = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let hosts = req.headers().get_all(http::header::HOST).iter().map(|h| h.as_bytes().to_vec()).collect();
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            record.lock().unwrap().push(Seen { method, path, version: req.version(), hosts });
            service.call(req)
        });
        let connection = http1_builder(&harness.limits).serve_connection(TokioIo::new(server), recording);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let send = async move {
            let _ = to_server.write_all(input).await;
            let _ = to_server.shutdown().await;
            to_server
        };
        let receive = async move {
            let mut output = Vec::new();
            let _ = from_server.read_to_end(&mut output).await;
            output
        };
        let exchange = async {
            let (_, _write_half, output) = tokio::join!(connection, send, receive);
            output
        };
        tokio::time::timeout(Duration::from_secs(5), exchange).await.expect("the connection hung")
    });

    let seen = seen.lock().unwrap();
    // Replaying one input: FUZZ_DEBUG=1 prints what the service was handed.
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("seen {} requests: {:?}", seen.len(), seen.iter().map(|s| (&s.method, &s.path)).collect::<Vec<_>>());
    }
    check(listener, input, &seen, &output);
});

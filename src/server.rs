//! Accepting connections and shutting down cleanly.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests
//! bind port 0 and stop the server whenever they like. Each listener:
//! - serves HTTP/1.1 (keep-alive) with a header read timeout and a cap on
//!   header size (larger requests get 431 from hyper);
//! - holds at most `MAX_CONNECTIONS` connections; one more is answered with
//!   a plain 503 and closed, instead of being left waiting in the backlog;
//! - on shutdown stops accepting, marks the instance not ready, lets
//!   in-flight requests finish within `DRAIN_TIMEOUT` and warns if the drain
//!   runs out.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::routes::{self, Body, Listener, State};

/// hyper's read buffer, which bounds the request line plus headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 20\r\ncontent-type: text/plain\r\nretry-after: 1\r\n\r\ntoo many connections";

/// Serves both listeners until `shutdown` completes, then drains.
pub async fn run(
    public: TcpListener,
    admin: TcpListener,
    state: Arc<State>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let http = http1_builder(&limits);

    // Each listener has its own cap, so a flood on the public port cannot
    // lock out the kubelet's probes on the admin port.
    let public_slots = Arc::new(Semaphore::new(limits.max_connections));
    let admin_slots = Arc::new(Semaphore::new(64));

    tokio::pin!(shutdown);
    loop {
        let (stream, listener, slots) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = public.accept() => (accepted, Listener::Public, &public_slots),
            accepted = admin.accept() => (accepted, Listener::Admin, &admin_slots),
        };
        let stream = match stream {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            state.metrics.connection_rejected();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);

        let metrics = Arc::clone(&state.metrics);
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), connection_service(Arc::clone(&state), listener)));
        tokio::spawn(async move {
            metrics.connection_opened();
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            metrics.connection_closed();
            drop(permit);
        });
    }

    state.readiness.draining();
    state.metrics.set_ready(false);
    drop(public);
    drop(admin);
    let in_flight = graceful.count();
    tracing::info!(connections = in_flight as u64, drain_timeout_s = limits.drain_timeout.as_secs(), "draining");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained, stopping"),
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(drain_timeout_s = limits.drain_timeout.as_secs(), "drain timed out, closing remaining connections");
        }
    }
}

/// The HTTP/1 settings every connection is served with. Public so that the
/// `http_request` fuzz target drives exactly these, not a copy.
pub fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        // hyper's default drops a request's answer when the client shuts
        // down its sending side right after the request (`nc -N`, HTTP/1.0
        // style clients): the fuzzer found requests answered with nothing.
        // With half-close the answer is written, then the connection ends.
        .half_close(true)
        .keep_alive(true);
    http
}

/// The per-connection service: every request on a `listener` connection
/// goes to [`routes::handle`].
pub fn connection_service(
    state: Arc<State>,
    listener: Listener,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone {
    service_fn(move |req| {
        let state = Arc::clone(&state);
        // Boxed: hyper keeps a slot of the service future's size for every
        // connection for its whole life, busy or idle. Boxed, the slot is 16
        // bytes and the handler's future (~1 KiB) exists only while a
        // request runs (10k idle connections: 142 -> 124 MiB RSS,
        // docs/reliability.md). Not wrapped in an `async` block: that kept a
        // second copy of the request beside the handler's own (1520 bytes,
        // now 984, inside glibc's per-thread cache).
        Box::pin(routes::handle(req, state, listener))
    })
}

/// Answers a connection over the cap with a short 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(REFUSED).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Completes on SIGTERM (what Kubernetes and container runtimes send to stop
/// a pod) or SIGINT (Ctrl-C in a terminal).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
}

/// The container health check: GET the local admin endpoint and say whether
/// it answered 200 within `timeout`. The image has no curl, so the binary
/// checks itself.
pub async fn healthcheck(admin_port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let stream = TcpStream::connect(("127.0.0.1", admin_port)).await.map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = http::Request::get(path)
            .header(http::header::HOST, "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
        match response.status() {
            http::StatusCode::OK => Ok(()),
            status => Err(format!("{path} answered {status}")),
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer within {timeout:?}"))?
}

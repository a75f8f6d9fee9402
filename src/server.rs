//! Accepting connections and shutting down cleanly.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests
//! bind port 0 and stop the server whenever they like. Each listener:
//! - serves HTTP/1.1 (keep-alive) with a header read timeout and a cap on
//!   header size (larger requests get 431 from hyper);
//! - closes a connection whose answer makes no progress for `WRITE_TIMEOUT`
//!   (a client that stops reading); an idle keep-alive connection is closed
//!   after `HEADER_READ_TIMEOUT`, since hyper times the wait for the next
//!   request's headers from the end of the previous answer;
//! - holds at most `MAX_CONNECTIONS` connections (the admin listener
//!   [`ADMIN_CONNECTIONS`], at most [`ADMIN_PER_PEER`] from one address);
//!   one more is answered 503 by the routes' own code (counted, logged,
//!   security headers) and closed, instead of being left waiting in the
//!   backlog;
//! - on the admin listener, at its cap, closes the connection idle longest
//!   (`AdminConnections`; counted and logged) and serves the new one, so
//!   `/healthz` and `/readyz` answer however many idle sockets other
//!   addresses hold; a new connection is refused there only when its
//!   address holds [`ADMIN_PER_PEER`] or every connection has a request
//!   running;
//! - counts and logs the 400/431 hyper answers by itself to a request it
//!   cannot parse;
//! - listens with a backlog of [`LISTEN_BACKLOG`], and caps connections below
//!   the open-file limit ([`Limits::new`]);
//! - on shutdown stops accepting, marks the instance not ready, lets
//!   in-flight requests finish within `DRAIN_TIMEOUT` and warns if the drain
//!   runs out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::{Instant, Sleep};

use crate::config::ServerSettings;
use crate::response::Body;
use crate::routes::{self, Listener, State};

/// hyper's read buffer, which bounds the request line plus headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Limits {
    /// The limits `config` sets, with `MAX_CONNECTIONS` lowered to what the
    /// open-file limit allows.
    pub fn new(config: &ServerSettings) -> Limits {
        Limits {
            header_read_timeout: config.header_read_timeout,
            write_timeout: config.write_timeout,
            max_connections: connection_cap(config.max_connections, open_file_limit()),
            drain_timeout: config.drain_timeout,
        }
    }
}

/// Pending connections the kernel may queue per listener (it caps this at
/// `net.core.somaxconn`). The default of `TcpListener::bind`, 128, is
/// too few for a burst of new connections: the overflow is dropped and
/// each of those clients waits a second for its SYN to be retried.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted instance can bind again while old connections sit in
    // TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept back from the public listener's connection cap:
/// the admin listener's [`ADMIN_CONNECTIONS`], the listeners, the data
/// source's connections and the process's own files.
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

/// Connections the admin listener holds, and how many of them one peer
/// address may take: the kubelet's probes and a Prometheus scrape each need
/// one or two, so a client holding idle sockets locks out only itself.
pub const ADMIN_CONNECTIONS: usize = 64;
pub const ADMIN_PER_PEER: usize = 4;

/// How long a connection over the cap gets to send the request its 503
/// answers.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

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
    let mut refusal = http1_builder(&Limits { header_read_timeout: REFUSAL_TIMEOUT, ..limits });
    refusal.keep_alive(false);

    // Each listener has its own cap, so a flood on the public port cannot
    // lock out the kubelet's probes on the admin port.
    let public_slots = Arc::new(Semaphore::new(limits.max_connections));
    let admin_connections = Arc::new(AdminConnections::new(ADMIN_CONNECTIONS));
    let admin_peers = PeerSlots::default();

    tokio::pin!(shutdown);
    loop {
        let (stream, listener) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = public.accept() => (accepted, Listener::Public),
            accepted = admin.accept() => (accepted, Listener::Admin),
        };
        let (stream, peer) = match stream {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);

        if listener == Listener::Public {
            let Ok(permit) = Arc::clone(&public_slots).try_acquire_owned() else {
                refuse(&refusal, stream, state);
                continue;
            };
            let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
            let connection =
                graceful.watch(http.serve_connection(io, connection_service(Arc::clone(&state), listener)));
            state.metrics.connections.opened();
            // `map`, not an `async` block: a block passing the connection on
            // to be awaited keeps its 0.8 KiB in the task once per move,
            // 1.6 KiB more per idle connection (docs/reliability.md).
            tokio::spawn(connection.map(move |ended| {
                finish(ended, &state);
                state.metrics.connections.closed();
                drop(permit);
            }));
            continue;
        }

        // The per-address cap first: a peer over it must not close others'
        // connections.
        let Some(peer_permit) = admin_peers.try_acquire(peer) else {
            refuse(&refusal, stream, state);
            continue;
        };
        let Some((slot, evicted)) = admin_connections.admit(Instant::now()) else {
            refuse(&refusal, stream, state);
            continue;
        };
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        let connection = graceful.watch(http.serve_connection(io, admin_service(Arc::clone(&state), slot)));
        tokio::spawn(async move {
            state.metrics.connections.opened();
            tokio::select! {
                biased;
                // Dropped, not shut down gracefully: hyper keeps a connection
                // that has not sent a request yet open until the header read
                // timeout.
                Ok(()) = evicted => {
                    state.metrics.connections.evicted();
                    tracing::info!(peer = %peer, "admin port at its cap: closing the connection idle longest for a new one");
                }
                ended = connection => finish(ended, &state),
            }
            state.metrics.connections.closed();
            drop(peer_permit);
        });
    }

    state.readiness.draining();
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
        // connection for its whole life, busy or idle. Boxed, the slot is a
        // pointer and the handler's future exists only while a request runs,
        // so idle connections stay small (docs/reliability.md). Not wrapped
        // in an `async` block, which would keep a second copy of the request
        // beside the handler's own.
        Box::pin(routes::handle(req, state, listener))
    })
}

/// [`connection_service`] for an admin connection: `slot` is busy while a
/// request runs, idle from its answer on.
fn admin_service(
    state: Arc<State>,
    slot: AdminSlot,
) -> impl Service<Request<Incoming>, Response = Response<Body>, Error = Infallible, Future: Send> {
    let (service, slot) = (connection_service(state, Listener::Admin), Arc::new(slot));
    service_fn(move |req| {
        slot.busy();
        let (handled, slot) = (service.call(req), Arc::clone(&slot));
        async move {
            let response = handled.await;
            slot.idle(Instant::now());
            response
        }
    })
}

/// Answers a connection over its listener's cap with the routes' 503, then
/// closes it; the client has [`REFUSAL_TIMEOUT`] to send its request.
fn refuse(refusal: &http1::Builder, stream: TcpStream, state: Arc<State>) {
    state.metrics.connections.rejected();
    let io = TokioIo::new(WriteDeadline::new(stream, REFUSAL_TIMEOUT));
    let refused = refusal.serve_connection(io, connection_service(Arc::clone(&state), Listener::OverCapacity));
    tokio::spawn(refused.map(move |ended| finish(ended, &state)));
}

/// Records how a connection ended. A request hyper could not parse was
/// answered by hyper itself (400, or 431 past [`MAX_HEADER_BYTES`]), before
/// the routes saw it: it is counted and logged here.
fn finish(ended: hyper::Result<()>, state: &State) {
    let Err(err) = ended else { return };
    let status = if err.is_parse_too_large() {
        431
    } else if err.is_parse() {
        400
    } else {
        tracing::debug!(error = %err, "connection ended with an error");
        return;
    };
    routes::log_unparsed(state, status, &err);
}

/// Connections held per peer address.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Per-peer connection counts of one listener.
#[derive(Default)]
struct PeerSlots(PeerCounts);

impl PeerSlots {
    /// A slot for `peer`, unless it already holds [`ADMIN_PER_PEER`].
    fn try_acquire(&self, peer: IpAddr) -> Option<PeerPermit> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.entry(peer).or_default();
        if *held >= ADMIN_PER_PEER {
            return None;
        }
        *held += 1;
        Some(PeerPermit(Arc::clone(&self.0), peer))
    }
}

/// A peer's slot; given back on drop.
struct PeerPermit(PeerCounts, IpAddr);

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = counts.get_mut(&self.1) {
            *held -= 1;
            if *held == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// The admin listener's open connections, up to a cap, each with the time
/// it last went idle. At the cap a new connection takes the place of the
/// one idle longest, so idle sockets cannot lock out the probes.
struct AdminConnections {
    cap: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, AdminConnection>>,
}

struct AdminConnection {
    /// Since when no request has been running; `None` while one is.
    idle_since: Option<Instant>,
    /// Tells the connection's task to close it.
    close: oneshot::Sender<()>,
}

impl AdminConnections {
    fn new(cap: usize) -> Self {
        AdminConnections { cap, next_id: AtomicU64::new(0), open: Mutex::default() }
    }

    /// A place for a connection accepted at `now`, idle until its first
    /// request, and the signal that it was closed to make room. At the cap
    /// the connection idle longest is signalled and its place taken; `None`
    /// when every connection has a request running.
    fn admit(self: &Arc<Self>, now: Instant) -> Option<(AdminSlot, oneshot::Receiver<()>)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.cap {
            let (_, idlest) = open.iter().filter_map(|(&id, c)| Some((c.idle_since?, id))).min()?;
            if let Some(idlest) = open.remove(&idlest) {
                let _ = idlest.close.send(());
            }
        }
        let (close, closed) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, AdminConnection { idle_since: Some(now), close });
        Some((AdminSlot { connections: Arc::clone(self), id }, closed))
    }

    fn set_idle_since(&self, id: u64, idle_since: Option<Instant>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(connection) = open.get_mut(&id) {
            connection.idle_since = idle_since;
        }
    }
}

/// A connection's place in [`AdminConnections`]; given back on drop.
struct AdminSlot {
    connections: Arc<AdminConnections>,
    id: u64,
}

impl AdminSlot {
    fn busy(&self) {
        self.connections.set_idle_since(self.id, None);
    }

    fn idle(&self, now: Instant) {
        self.connections.set_idle_since(self.id, Some(now));
    }
}

impl Drop for AdminSlot {
    fn drop(&mut self) {
        self.connections.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// A connection's socket whose writes fail with `TimedOut` once one has
/// made no progress for `limit`: a client that stops reading cannot hold
/// its connection (and slot) with an answer stuck in the send buffer.
/// hyper has no write timeout of its own.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Running while a write waits for room; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// `poll`'s result, or `TimedOut` once writes have waited `limit`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
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

    /// `n` connections admitted one second apart from `t0`, with the
    /// receivers that say whether each was closed to make room.
    fn admitted(
        connections: &Arc<AdminConnections>,
        t0: Instant,
        n: u64,
    ) -> (Vec<AdminSlot>, Vec<oneshot::Receiver<()>>) {
        (0..n).map(|i| connections.admit(t0 + Duration::from_secs(i)).expect("room")).unzip()
    }

    fn closed(receiver: &mut oneshot::Receiver<()>) -> bool {
        receiver.try_recv().is_ok()
    }

    #[test]
    fn at_the_cap_the_connection_idle_longest_makes_room() {
        let connections = Arc::new(AdminConnections::new(3));
        let t0 = Instant::now();
        let (slots, mut signals) = admitted(&connections, t0, 3);
        // The oldest connection sent a request at t0 + 5 s: now the second
        // has been idle longest.
        slots[0].busy();
        slots[0].idle(t0 + Duration::from_secs(5));

        let (_new, mut new_signal) = connections.admit(t0 + Duration::from_secs(6)).expect("room made");

        assert_eq!(signals.iter_mut().map(closed).collect::<Vec<_>>(), [false, true, false]);
        assert!(!closed(&mut new_signal));
        assert_eq!(connections.open.lock().unwrap().len(), 3, "the cap holds");
    }

    #[test]
    fn a_connection_with_a_request_running_is_never_closed_to_make_room() {
        let connections = Arc::new(AdminConnections::new(2));
        let t0 = Instant::now();
        let (slots, mut signals) = admitted(&connections, t0, 2);
        slots[0].busy();
        slots[1].busy();

        assert!(connections.admit(t0 + Duration::from_secs(60)).is_none(), "all busy: refused");
        slots[1].idle(t0 + Duration::from_secs(61));
        assert!(connections.admit(t0 + Duration::from_secs(62)).is_some());
        assert_eq!(signals.iter_mut().map(closed).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn a_closed_connection_gives_its_place_back() {
        let connections = Arc::new(AdminConnections::new(1));
        let t0 = Instant::now();
        let (slots, mut signals) = admitted(&connections, t0, 1);

        drop(slots);

        assert!(connections.admit(t0 + Duration::from_secs(1)).is_some());
        assert!(!closed(&mut signals[0]), "a free place, not an eviction");
    }

    #[test]
    fn the_connection_cap_fits_the_open_file_limit() {
        assert_eq!(connection_cap(10_000, Some(4096)), 4096 - RESERVED_FDS);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(500, Some(100)), 1, "never zero");
    }
}

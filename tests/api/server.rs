//! Connection handling: timeouts, limits, hostile framing, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{raw_exchange, spawn_app};

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app(&[("HEADER_READ_TIMEOUT", "1")]).await;

    let started = std::time::Instant::now();
    let (_, closed) = raw_exchange(app.public, b"GET /hello HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(5)).await;

    assert!(closed, "connection still open after 5 s");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    app.shutdown().await;
}

/// Case 4: hyper's own refusals are counted too.
#[tokio::test]
async fn oversized_headers_are_refused_with_431_and_counted() {
    let app = spawn_app(&[]).await;
    let request = format!("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));

    let (response, closed) = raw_exchange(app.public, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(closed);
    let (response, closed) = raw_exchange(app.public, b"GET /he llo HTTP/1.1\r\n\r\n", Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(closed);

    let metrics = app.get_admin("/metrics").await.text().await.unwrap();
    for series in [
        r#"wordcount_http_requests_total{route="malformed",method="other",status="431"} 1"#,
        r#"wordcount_http_requests_total{route="malformed",method="other",status="400"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_get_a_clean_503() {
    let app = spawn_app(&[("MAX_CONNECTIONS", "2")]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.public).await.unwrap();
        stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }

    let (response, closed) =
        raw_exchange(app.public, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(closed);
    // Case 4: the limiter's answer is the routes' own: security headers,
    // a request id, counted.
    for header in ["x-content-type-options: nosniff", "content-security-policy: ", "x-request-id: ", "retry-after: 1"] {
        assert!(response.contains(header), "{header} in {response}");
    }
    // The admin port has its own budget: probes still get through.
    assert_eq!(app.get_admin("/healthz").await.status(), 200);

    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.get("/hello").await.status(), 200, "slots free up when connections close");
    let metrics = app.get_admin("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wordcount_connections_rejected_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"wordcount_http_requests_total{route="over_capacity",method="GET",status="503"} 1"#),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_not_read_on_get() {
    let app = spawn_app(&[]).await;
    // A GET announcing a large body it never sends: answered at once.
    let request = b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";

    let (response, _) = raw_exchange(app.public, request, Duration::from_secs(2)).await;

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("Hello from PSPDFKit Engineer!"), "{response}");
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_marks_not_ready() {
    let mut app = spawn_app(&[]).await;
    app.wait_ready(Duration::from_secs(5)).await;
    let server = app.take_server();

    app.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("drains promptly").unwrap();

    assert!(TcpStream::connect(app.public).await.is_err(), "public listener closed");
    assert!(TcpStream::connect(app.admin).await.is_err(), "admin listener closed");
}

/// Returns once a request is open on the public port besides the admin
/// scrape that asks (a fixed sleep is not enough on a loaded machine).
async fn wait_for_open_request(app: &crate::helpers::TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (metrics, _) = raw_exchange(
            app.admin,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let active = metrics
            .lines()
            .find_map(|l| l.strip_prefix("wordcount_connections_active "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if active >= 2 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the request never reached the service");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The service on `SOURCE=bigquery` against `fake` (no auth), with one cold
/// `/api/v1/counts` request open on it, and the server task taken out so
/// the test can watch the drain.
async fn with_request_in_flight(
    fake: &testkit::FakeGcp,
    extra: &[(&str, &str)],
) -> (crate::helpers::TestApp, tokio::task::JoinHandle<()>, tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>)
{
    let endpoint = fake.endpoint();
    let mut vars = vec![
        ("SOURCE", "bigquery"),
        ("BIGQUERY_PROJECT", "wordcount-test"),
        ("BIGQUERY_ENDPOINT", endpoint.as_str()),
        ("BIGQUERY_AUTH", "none"),
    ];
    vars.extend_from_slice(extra);
    let mut app = spawn_app(&vars).await;
    let server = app.take_server();
    let request = tokio::spawn(app.client.get(app.url("/api/v1/counts")).send());
    wait_for_open_request(&app).await;
    (app, server, request)
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    // A cold request waits on a BigQuery answer that takes 1 s to come.
    let fake = testkit::FakeGcp::start_without_auth().await;
    fake.set_delay(Duration::from_secs(1));
    let (mut app, server, in_flight) = with_request_in_flight(&fake, &[("DRAIN_TIMEOUT", "5")]).await;

    app.signal_shutdown();
    let response = in_flight.await.unwrap().expect("the in-flight request is answered");
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("drain ends within DRAIN_TIMEOUT").unwrap();

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["word"], "the");
    assert!(body["total"].as_u64().unwrap() > 0);
    assert!(TcpStream::connect(app.public).await.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn a_drain_that_runs_out_of_time_still_ends() {
    let fake = testkit::FakeGcp::start_without_auth().await;
    fake.set_mode(testkit::Mode::Hang);
    let (mut app, server, _stuck) =
        with_request_in_flight(&fake, &[("BIGQUERY_TIMEOUT", "30"), ("DRAIN_TIMEOUT", "1")]).await;

    let started = std::time::Instant::now();
    app.signal_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("bounded drain").unwrap();

    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "drained in {elapsed:?}");
}

/// Case 1: a client holding every admin connection it can get, idle, locks
/// out only itself: the kubelet (another address) is still answered.
#[tokio::test]
async fn idle_admin_connections_from_one_client_cannot_starve_the_probes() {
    let app = spawn_app(&[]).await;
    let mut held = Vec::new();
    for _ in 0..wordcount::server::ADMIN_CONNECTIONS {
        held.push(TcpStream::connect(app.admin).await.unwrap());
    }

    // The hog's next connection is refused with the limiter's 503...
    let (response, _) =
        raw_exchange(app.admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    // ...and a probe from another address (127.0.0.2 is loopback too) is not.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut probe = socket.connect(app.admin).await.unwrap();
    probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), probe.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    app.shutdown().await;
}

/// Connects to `to` from the loopback address `source` (Linux routes all of
/// 127.0.0.0/8 to lo).
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server still holds `stream` open and silent.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await.is_err()
}

/// Idle sockets from many addresses, each within its share, fill the admin
/// port: the probes still get through, each in the place of the connection
/// idle longest, and one address still gets no more than its share.
#[tokio::test]
async fn idle_admin_connections_from_many_addresses_cannot_starve_the_probes() {
    // The idle sockets stay open for the whole test.
    let app = spawn_app(&[("HEADER_READ_TIMEOUT", "60")]).await;
    let mut sockets = Vec::new();
    for i in 0..200u8 {
        sockets.push(connect_from([127, 0, 0, 2 + i % 16], app.admin).await);
    }
    // The sockets over their address's share are refused: closed once the
    // refusal's second to send a request has passed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut held = 0;
    for socket in &mut sockets {
        held += usize::from(still_open(socket).await);
    }
    assert!(held >= wordcount::server::ADMIN_CONNECTIONS, "{held} idle sockets held: the admin port is not full");

    let limit = Duration::from_secs(5);
    let (healthz, _) =
        raw_exchange(app.admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", limit).await;
    let (readyz, _) =
        raw_exchange(app.admin, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", limit).await;

    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    let end =
        tokio::time::timeout(limit, sockets[0].read(&mut [0u8; 64])).await.expect("the socket idle longest made room");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    // One address still holds at most ADMIN_PER_PEER: its next socket is
    // refused with the limiter's 503.
    let mut over_share = connect_from([127, 0, 0, 17], app.admin).await;
    over_share.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(limit, over_share.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let (metrics, _) =
        raw_exchange(app.admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", limit).await;
    let evicted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wordcount_connections_evicted_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("wordcount_connections_evicted_total");
    assert!(evicted >= 1, "{metrics}");
    drop(sockets);
    app.shutdown().await;
}

/// The metric `wordcount_connections_active` (the scrape's own included).
async fn active_connections(app: &crate::helpers::TestApp) -> i64 {
    let (metrics, _) = raw_exchange(
        app.admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("wordcount_connections_active "))
        .and_then(|v| v.trim().parse().ok())
        .expect("wordcount_connections_active")
}

/// Case 2: a client that pipelines requests and never reads the answers
/// loses its connection once the answer has made no progress for
/// WRITE_TIMEOUT (paused time: the clock jumps whenever all is blocked).
#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let app = spawn_app(&[("WRITE_TIMEOUT", "5"), ("HEADER_READ_TIMEOUT", "60"), ("REQUEST_TIMEOUT", "60")]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.public).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // Requests for far more answer bytes than both sides' buffers hold.
    let sender = tokio::spawn(async move {
        let requests = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200_000);
        let _ = writer.write_all(&requests).await;
        writer
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(active_connections(&app).await, 2, "the stuck connection and the scrape");

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(active_connections(&app).await, 1, "closed after WRITE_TIMEOUT without progress");
    sender.abort();
    // What was sent before is readable; then the connection ends.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await.expect("ended");
    app.shutdown().await;
}

/// An idle keep-alive connection is closed once HEADER_READ_TIMEOUT passes
/// without the next request's headers.
#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn_app(&[("HEADER_READ_TIMEOUT", "10")]).await;
    let mut stream = TcpStream::connect(app.public).await.unwrap();
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let opened = tokio::time::Instant::now();

    let end = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.expect("closed");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    let idle = opened.elapsed();
    assert!(idle >= Duration::from_secs(10) && idle < Duration::from_secs(11), "closed after {idle:?} idle");
    app.shutdown().await;
}

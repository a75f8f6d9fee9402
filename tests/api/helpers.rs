//! `spawn_app`: the real service on 127.0.0.1 port 0, stopped at will.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wordcount::App;
use wordcount::config::Config;

pub struct TestApp {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Starts the service with `vars` as its environment (on top of ports 0
/// bound to 127.0.0.1). Panics with the configuration error if `vars` are
/// invalid: tests of invalid configuration call `Config::load` directly.
pub async fn spawn_app(vars: &[(&str, &str)]) -> TestApp {
    wordcount::telemetry::init_for_tests();
    let mut env: HashMap<&str, &str> = [("PORT", "0"), ("ADMIN_PORT", "0"), ("BIND_ADDRESS", "127.0.0.1")].into();
    env.extend(vars.iter().copied());
    let config = Config::load(&[], &env).expect("valid test configuration");
    let app = wordcount::build(&config).await.expect("service builds");
    let (public, admin) = App::bind(&config.server).await.expect("bind port 0");
    let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(public, admin, async {
        let _ = rx.await;
    }));
    TestApp {
        public: public_addr,
        admin: admin_addr,
        client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request to the public port")
    }

    pub async fn get_admin(&self, path: &str) -> reqwest::Response {
        self.client.get(self.admin_url(path)).send().await.expect("request to the admin port")
    }

    /// Waits until `/readyz` answers 200, or panics after `limit`.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.get_admin("/readyz").await.status() == 200 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the shutdown signal without waiting for the drain.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// The server task, for tests that watch the drain themselves.
    pub fn take_server(&mut self) -> JoinHandle<()> {
        self.server.take().expect("server still owned")
    }
}

/// Sends raw bytes and returns everything the server sends back until it
/// closes the connection or `limit` passes, and whether it closed.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before taking all of a hostile
    // request; what it sent back is still read below.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

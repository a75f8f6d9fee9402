//! The benchmark ceiling: the smallest hyper 1 server that answers every
//! request with a fixed body, on the same runtime, hyper version and
//! connection settings as wordcount. `scripts/bench/run.sh` loads it and the
//! service the same way; the ratio between the two is what wordcount's own
//! work (routing, cache, JSON, headers, logs, metrics) costs.
//!
//! Usage: `cargo run --release --example hello -- 127.0.0.1:8090`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"Hello from PSPDFKit Engineer!"))))
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

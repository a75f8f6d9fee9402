//! The benchmark ceiling: the smallest hyper 1 server that answers every
//! request with a fixed body, on the same runtime, hyper version and
//! connection settings as wordcount. `scripts/bench/run.sh` loads it and the
//! service the same way; the ratio between the two is what wordcount's own
//! work (routing, cache, JSON, headers, logs, metrics) costs.
//!
//! An optional body size makes it answer that many bytes instead of the
//! greeting: loaded with the size of the service's JSON answer, it shows how
//! much of the difference is only the size of the answer.
//!
//! Usage: `cargo run --release --example hello -- 127.0.0.1:8090 [BODY_BYTES]`

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
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let body = match args.next().map(|n| n.parse::<usize>()) {
        Some(Ok(size)) => Bytes::from(vec![b'x'; size]),
        Some(Err(err)) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, err)),
        None => Bytes::from_static(b"Hello from PSPDFKit Engineer!"),
    };
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

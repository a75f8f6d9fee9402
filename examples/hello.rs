//! The benchmark ceiling: the smallest hyper 1 server that answers every
//! request with a fixed body, on the same runtime, hyper version and
//! connection settings as wordcount. `scripts/bench/run.sh` loads it and the
//! service the same way; the ratio between the two is what wordcount's own
//! work (routing, cache, JSON, headers, logs, metrics) costs.
//!
//! An optional body size makes it answer that many bytes instead of the
//! greeting: loaded with the size of the service's JSON answer, it shows how
//! much of the difference is only the size of the answer. Optional
//! `NAME:VALUE` headers are sent with every answer, as the service sends its
//! own: hyper keeps the last answer's header map for every idle connection,
//! so the idle-connections load test compares like with like.
//!
//! Usage: `cargo run --release --example hello -- 127.0.0.1:8090 [BODY_BYTES [NAME:VALUE ...]]`

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
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
    let mut headers = HeaderMap::new();
    for header in args {
        let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not NAME:VALUE: {header}"));
        let (name, value) = header.split_once(':').ok_or_else(invalid)?;
        let name = HeaderName::try_from(name.trim()).map_err(|_| invalid())?;
        headers.insert(name, HeaderValue::try_from(value.trim()).map_err(|_| invalid())?);
    }
    let headers = Arc::new(headers);
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (body, headers) = (body.clone(), Arc::clone(&headers));
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let (body, headers) = (body.clone(), Arc::clone(&headers));
                async move {
                    let mut response = Response::new(Full::new(body));
                    if !headers.is_empty() {
                        *response.headers_mut() = HeaderMap::clone(&headers);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

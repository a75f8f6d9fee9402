//! Serving: the HTTP (or HTTPS) listener, the dispatch of each request to
//! the token endpoint or the BigQuery API, Google's error shape, and the
//! faults [`crate::FakeGcp::set_mode`] switches on.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bigquery::{Recorded, get_job, get_query_results, jobs_query};
use crate::token::{check_bearer, token_endpoint};
use crate::{Mode, Shared, lock};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let connection = shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, mut stop) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            let io: Box<dyn Io> = match &shared.tls {
                None => Box::new(stream),
                Some(tls) => match tls.accept(stream).await {
                    Ok(stream) => {
                        let version = stream.get_ref().1.protocol_version().map(|v| format!("{v:?}"));
                        shared.log_event(json!({ "event": "tls_ok", "version": version }));
                        Box::new(stream)
                    }
                    Err(err) => return shared.log_event(json!({ "event": "tls_error", "reason": err.to_string() })),
                },
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&shared, connection, req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
            // Dropping the connection (hung answers included) on shutdown.
            tokio::select! {
                _ = connection => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// A body that is either complete or, on purpose, breaks off.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// `bytes`, then, once they are flushed, a failure: the connection is cut
/// short of the announced Content-Length. (Failing at once would make hyper
/// drop the buffered head too; the client must see headers and a partial body.)
fn truncated(bytes: &'static [u8]) -> Body {
    let head = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(bytes)))]);
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(std::io::Error::other("body truncated on purpose"))
    });
    StreamBody::new(head.chain(cut)).boxed_unsync()
}

fn respond(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    respond(status, "application/json; charset=UTF-8", full(body.to_string()))
}

/// Google's JSON error shape.
pub(crate) fn google_error(code: u16, reason: &str, status: &str, message: &str) -> Response<Body> {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }],
            "status": status,
        }
    });
    let mut response = json_response(StatusCode::from_u16(code).expect("valid status"), &body);
    if code == 401 {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""));
    }
    response
}

async fn handle(shared: &Shared, connection: usize, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);

    if path == "/token" && parts.method == Method::POST {
        return token_endpoint(shared, &body);
    }
    let Some(rest) = path.strip_prefix("/bigquery/v2/") else {
        return google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {path}"));
    };

    let recorded = Recorded {
        connection,
        method: parts.method.to_string(),
        path: path.clone(),
        params: parts.uri.query().map(parse_form).unwrap_or_default(),
        authorization: header("authorization"),
        traceparent: header("traceparent"),
        body: serde_json::from_slice(&body).ok(),
    };
    shared.log_event(json!({ "event": "request", "method": recorded.method, "path": path }));
    lock(&shared.recorded).push(recorded.clone());
    shared.counters.bigquery_calls.fetch_add(1, Ordering::SeqCst);

    let delay = lock(&shared.settings).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = shared.take_fault(false) {
        return fault_response(fault).await;
    }
    if shared.require_auth
        && let Err(message) = check_bearer(shared, recorded.authorization.as_deref())
    {
        return google_error(401, "authError", "UNAUTHENTICATED", message);
    }

    let segments: Vec<&str> = rest.split('/').collect();
    if let (Some(known), Some(project)) = (&shared.project, segments.get(1))
        && known != project
    {
        return google_error(404, "notFound", "NOT_FOUND", &format!("Not found: Project {project}"));
    }
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, ["projects", project, "queries"]) => jobs_query(shared, project, &body),
        (&Method::GET, ["projects", project, "queries", job_id]) => {
            get_query_results(shared, project, job_id, &recorded)
        }
        (&Method::GET, ["projects", project, "jobs", job_id]) => get_job(shared, project, job_id, &recorded),
        _ => google_error(404, "notFound", "NOT_FOUND", &format!("Not found: {} {path}", parts.method)),
    }
}

async fn fault_response(fault: Mode) -> Response<Body> {
    const JSON: &str = "application/json; charset=UTF-8";
    let (code, reason, status, message) = match fault {
        Mode::Normal | Mode::TokenServerError | Mode::TokenInvalidGrant => unreachable!("not a BigQuery fault"),
        // Until the client gives up or the fake is dropped.
        Mode::Hang => return std::future::pending().await,
        Mode::BadGatewayHtml => {
            let html = &b"<html><body><h1>502 Bad Gateway</h1></body></html>"[..];
            return respond(StatusCode::BAD_GATEWAY, "text/html", full(html));
        }
        Mode::MalformedJson => {
            let broken = &b"{\"kind\": \"bigquery#queryResponse\", \"jobComplete\": tru<html>"[..];
            return respond(StatusCode::OK, JSON, full(broken));
        }
        Mode::TruncatedBody => {
            let partial =
                b"{\"kind\":\"bigquery#queryResponse\",\"jobComplete\":true,\"rows\":[{\"f\":[{\"v\":\"hamlet\"}";
            let mut response = respond(StatusCode::OK, JSON, truncated(partial));
            response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("4096"));
            return response;
        }
        Mode::ServerError(503) => (503, "backendError", "UNAVAILABLE", "Error encountered during execution."),
        Mode::ServerError(code) => (code, "backendError", "INTERNAL", "An internal error occurred."),
        Mode::RateLimited => (429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Exceeded rate limits."),
        Mode::RateLimitedForbidden => (403, "rateLimitExceeded", "PERMISSION_DENIED", "Too many concurrent queries."),
        Mode::AccessDenied => (403, "accessDenied", "PERMISSION_DENIED", "Access Denied: no bigquery.jobs.create."),
        Mode::BytesBilledLimit => (400, "bytesBilledLimitExceeded", "INVALID_ARGUMENT", "Bytes billed over the limit."),
        Mode::Unauthenticated => (401, "authError", "UNAUTHENTICATED", "Invalid authentication credentials."),
    };
    google_error(code, reason, status, message)
}

/// `application/x-www-form-urlencoded` (also URL queries) into pairs.
fn parse_form(input: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(input.as_bytes()).into_owned().collect()
}

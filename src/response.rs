//! Every response is built here, from the same security headers: the
//! Content-Security-Policy with the hash of the page's one `<style>` block,
//! [`respond`] and [`text`] for ordinary answers, [`cached_answer`] for the
//! counts with `Age` and `Cache-Control`, and the per-thread cache of a
//! fresh answer's headers ([`fresh_headers`]; docs/performance.md,
//! "Hot-path caches").

use std::cell::RefCell;
use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::cache::Served;

pub type Body = Full<Bytes>;

/// The page needs nothing but its own markup and the one `<style>` block of
/// templates/index.html, allowed by its hash: change the style, change the
/// hash (tests/api/routes.rs recomputes it from the served page and says
/// the new one). No scripts, other styles, images, frames or forms.
const CSP: &str = "default-src 'none'; style-src 'sha256-pm8Sl+PmjWwD0mnwnUYKCRpg/fzgRRT7Mrmtq4BjUEk='; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// Header names as constants: inserting by `&str` would parse and allocate
// the name on every response.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_DATA_STALE: HeaderName = HeaderName::from_static("x-data-stale");

/// `response`, with the connection closed after it.
pub(crate) fn closing(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A cached answer's response. Caches may keep a fresh answer for as long
/// as it stays fresh here; a stale one must not be kept at all.
/// `X-Data-Stale` says which it is, and `Age` how old the data is (seconds
/// since the source answered).
pub(crate) fn cached_answer(body: Bytes, content_type: &'static str, served: &Served) -> Response<Body> {
    let (age, fresh_for) = (served.age().as_secs(), served.fresh_for.as_secs());
    if served.stale {
        let mut response = respond(StatusCode::OK, body, content_type, "no-store");
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(X_DATA_STALE, HeaderValue::from_static("true"));
        return response;
    }
    let mut response = Response::new(Full::new(body));
    *response.headers_mut() = fresh_headers(content_type, age, fresh_for);
    response
}

/// The headers of a fresh cached answer. They change once a second at
/// most, so each thread builds them once a second (per content type) and
/// every other answer clones the finished map instead of building it
/// header by header (docs/performance.md, "Hot-path caches", has the cost). The map includes
/// `X-Request-Id`, for [`crate::routes::handle`] to overwrite without
/// growing the map.
fn fresh_headers(content_type: &'static str, age: u64, fresh_for: u64) -> HeaderMap {
    /// Content type, `Age` and `max-age`: all that varies.
    type FreshKey = (&'static str, u64, u64);
    thread_local! {
        static LAST: RefCell<Vec<(FreshKey, HeaderMap)>> = const { RefCell::new(Vec::new()) };
    }
    LAST.with_borrow_mut(|last| {
        let key = (content_type, age, fresh_for);
        if let Some((_, headers)) = last.iter().find(|(k, _)| *k == key) {
            return headers.clone();
        }
        let mut headers = base_headers(content_type, "");
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={fresh_for}"))
                .unwrap_or(HeaderValue::from_static("no-store")),
        );
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(X_DATA_STALE, HeaderValue::from_static("false"));
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("-"));
        // One entry per content type: the other second's entry is stale.
        last.retain(|((kind, ..), _)| *kind != content_type);
        last.push((key, headers.clone()));
        headers
    })
}

/// A plain-text response; static bodies are sent without a copy.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>, cache_control: &'static str) -> Response<Body> {
    respond(status, body, "text/plain; charset=utf-8", cache_control)
}

/// Every response is built here, so every response carries the security
/// headers.
pub(crate) fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
    cache_control: &'static str,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    *response.headers_mut() = base_headers(content_type, cache_control);
    response
}

/// The security headers, `Content-Type` and (unless empty) `Cache-Control`:
/// what [`respond`] and [`fresh_headers`] start from.
fn base_headers(content_type: &'static str, cache_control: &'static str) -> HeaderMap {
    let mut headers = SECURITY_HEADERS.clone();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !cache_control.is_empty() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    }
    headers
}

/// The headers every response starts from (see [`respond`]), built once:
/// cloning a ready map is cheaper than hashing five names per request.
static SECURITY_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_headers_follow_the_second_and_the_content_type() {
        let json = fresh_headers("application/json", 3, 297);
        assert_eq!(json[header::CONTENT_TYPE], "application/json");
        assert_eq!(json[header::CACHE_CONTROL], "public, max-age=297");
        assert_eq!(json[header::AGE], "3");
        assert_eq!(json[X_DATA_STALE], "false");
        assert_eq!(json[header::CONTENT_SECURITY_POLICY], CSP);

        let html = fresh_headers("text/html; charset=utf-8", 3, 297);
        assert_eq!(html[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let next_second = fresh_headers("application/json", 4, 296);
        assert_eq!(next_second[header::AGE], "4");
        assert_eq!(next_second[header::CACHE_CONTROL], "public, max-age=296");
        // Still cached for the other content type.
        assert_eq!(fresh_headers("text/html; charset=utf-8", 3, 297), html);
    }
}

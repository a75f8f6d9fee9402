//! Every public and admin route, its status codes and headers.

use crate::helpers::spawn_app;
use reqwest::header::HeaderMap;
use std::time::Duration;

fn assert_security_headers(headers: &HeaderMap) {
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.contains_key("cache-control"));
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn hello_answers_the_exact_greeting() {
    let app = spawn_app(&[]).await;

    let response = app.get("/hello").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_security_headers(response.headers());
    assert_eq!(response.text().await.unwrap(), "Hello from PSPDFKit Engineer!");
    app.shutdown().await;
}

#[tokio::test]
async fn index_shows_the_sample_table_for_the() {
    let app = spawn_app(&[]).await;

    let response = app.get("/").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    assert_security_headers(response.headers());
    assert_eq!(response.headers()["x-data-stale"], "false");
    let html = response.text().await.unwrap();
    assert!(html.contains("<h1>Amount of times 'the' appears per corpus</h1>"), "{html}");
    assert!(html.contains("<th scope=\"row\">hamlet</th>"), "{html}");
    assert!(html.contains("Total"));
    assert!(html.contains("sample"));
    app.shutdown().await;
}

/// The CSP allows the page's one `<style>` block by its hash: recomputed
/// here from the served page, so a style edit without a CSP update fails.
#[tokio::test]
async fn csp_allows_exactly_the_pages_style_by_hash() {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let app = spawn_app(&[]).await;

    let response = app.get("/").await;

    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = response.text().await.unwrap();
    let style =
        html.split_once("<style>").and_then(|(_, rest)| rest.split_once("</style>")).expect("a <style> block").0;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
    assert!(
        csp.contains(&format!("style-src 'sha256-{hash}';")),
        "set style-src 'sha256-{hash}' in CSP, src/response.rs: {csp}"
    );
    assert_eq!(html.matches("<style").count(), 1, "one style block");
    assert!(!html.contains("style=") && !csp.contains("unsafe"), "no inline style attribute, nothing unsafe");
    app.shutdown().await;
}

#[tokio::test]
async fn counts_json_is_ordered_and_totalled() {
    let app = spawn_app(&[("WORD", "king")]).await;

    let response = app.get("/api/v1/counts").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers()["cache-control"].to_str().unwrap().starts_with("public, max-age="));
    assert!(response.headers()["age"].to_str().unwrap().parse::<u64>().is_ok(), "Age says how old the data is");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["word"], "king");
    assert_eq!(body["source"], "sample");
    assert_eq!(body["stale"], false);
    let rows = body["rows"].as_array().unwrap();
    assert!(rows.len() > 10);
    let totals: Vec<u64> = rows.iter().map(|r| r["total_words"].as_u64().unwrap()).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "descending: {totals:?}");
    for pair in rows.windows(2) {
        if pair[0]["total_words"] == pair[1]["total_words"] {
            assert!(pair[0]["corpus"].as_str() < pair[1]["corpus"].as_str(), "ties by corpus");
        }
    }
    assert_eq!(body["total"].as_u64().unwrap(), totals.iter().sum::<u64>());
    assert!(body["fetched_at"].as_str().unwrap().ends_with('Z'));
    app.shutdown().await;
}

#[tokio::test]
async fn word_changes_the_answer() {
    let the = spawn_app(&[("WORD", "the")]).await;
    let tea = spawn_app(&[("WORD", "tea")]).await;

    let the_body: serde_json::Value = the.get("/api/v1/counts").await.json().await.unwrap();
    let tea_body: serde_json::Value = tea.get("/api/v1/counts").await.json().await.unwrap();

    assert_eq!(tea_body["word"], "tea");
    assert!(the_body["total"].as_u64().unwrap() > 10 * tea_body["total"].as_u64().unwrap());
    the.shutdown().await;
    tea.shutdown().await;
}

#[tokio::test]
async fn a_word_that_appears_nowhere_is_an_explicit_empty_answer() {
    let app = spawn_app(&[("WORD", "kubernetes")]).await;

    let page = app.get("/").await;
    let json = app.get("/api/v1/counts").await;

    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("No results"));
    assert_eq!(json.status(), 200);
    let body: serde_json::Value = json.json().await.unwrap();
    assert_eq!(body["rows"], serde_json::json!([]));
    assert_eq!(body["total"], 0);
    app.shutdown().await;
}

#[tokio::test]
async fn markup_in_word_is_shown_inert() {
    let word = "<script>alert('x')</script>&\"";
    let app = spawn_app(&[("WORD", word)]).await;

    let html = app.get("/").await.text().await.unwrap();
    let json: serde_json::Value = app.get("/api/v1/counts").await.json().await.unwrap();

    assert!(!html.contains("<script>"), "{html}");
    // askama escapes with numeric character references.
    let escaped = "&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;&#38;&#34;";
    assert!(html.contains(&format!("<h1>Amount of times '{escaped}' appears per corpus</h1>")), "{html}");
    assert_eq!(json["word"], word, "JSON carries the word verbatim, encoded by serde");
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let app = spawn_app(&[]).await;

    for path in ["/nope", "/hello/", "/api/v1/counts/x", "/metrics", "/healthz", "/readyz"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path} on the public port");
        assert_security_headers(response.headers());
    }
    for path in ["/", "/api/v1/counts", "/hello"] {
        let response = app.client.post(app.url(path)).body("x").send().await.unwrap();
        assert_eq!(response.status(), 405, "POST {path}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }
    let response = app.client.delete(app.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(app.get_admin("/").await.status(), 404);
    assert_eq!(app.get_admin("/hello").await.status(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn head_works_wherever_get_does() {
    let app = spawn_app(&[]).await;
    app.wait_ready(Duration::from_secs(5)).await;

    for url in [
        app.url("/"),
        app.url("/api/v1/counts"),
        app.url("/hello"),
        app.admin_url("/healthz"),
        app.admin_url("/readyz"),
        app.admin_url("/metrics"),
    ] {
        let get = app.client.get(&url).send().await.unwrap();
        let head = app.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "{url}");
        assert_eq!(head.headers()["content-type"], get.headers()["content-type"], "{url}");
        assert!(head.text().await.unwrap().is_empty(), "HEAD {url} has no body");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let app = spawn_app(&[]).await;
    app.wait_ready(Duration::from_secs(5)).await;
    app.get("/api/v1/counts").await;

    let healthz = app.get_admin("/healthz").await;
    let readyz = app.get_admin("/readyz").await;
    let metrics = app.get_admin("/metrics").await;

    assert_eq!(healthz.status(), 200);
    assert_eq!(readyz.status(), 200);
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    let text = metrics.text().await.unwrap();
    for name in [
        r#"wordcount_http_requests_total{route="counts",method="GET",status="200"}"#,
        "wordcount_http_request_duration_seconds_bucket",
        r#"wordcount_source_queries_total{source="sample",outcome="ok"} 1"#,
        r#"wordcount_cache_lookups_total{result="hit"}"#,
        "wordcount_data_age_seconds",
        "wordcount_ready 1",
        "wordcount_build_info",
        r#"wordcount_config_info{word="the",source="sample"} 1"#,
        "wordcount_connections_active",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn request_ids_and_traceparent_are_honoured() {
    let app = spawn_app(&[]).await;

    let supplied = app.client.get(app.url("/hello")).header("x-request-id", "abc-123").send().await.unwrap();
    let hostile = app.client.get(app.url("/hello")).header("x-request-id", "<bad id>").send().await.unwrap();

    assert_eq!(supplied.headers()["x-request-id"], "abc-123");
    let generated = hostile.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 16);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    app.shutdown().await;
}

#[tokio::test]
async fn file_source_serves_its_own_rows() {
    let dir = std::env::temp_dir().join(format!("wordcount-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("counts.csv");
    std::fs::write(
        &path,
        "word,word_count,corpus,corpus_date\ntea,3,tempest,1611\ntea,5,hamlet,1600\ncoffee,1,hamlet,1600\n",
    )
    .unwrap();
    let app = spawn_app(&[("SOURCE", "file"), ("DATA_FILE", path.to_str().unwrap()), ("WORD", "tea")]).await;

    let body: serde_json::Value = app.get("/api/v1/counts").await.json().await.unwrap();

    assert_eq!(body["source"], "file");
    assert_eq!(
        body["rows"],
        serde_json::json!([{"corpus": "hamlet", "total_words": 5}, {"corpus": "tempest", "total_words": 3}])
    );
    assert_eq!(body["total"], 8);
    // Case 7: the page names the kind of source, never the server's path.
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("a data file"), "{page}");
    assert!(!page.contains(dir.to_str().unwrap()) && !page.contains("counts.csv"), "{page}");
    app.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

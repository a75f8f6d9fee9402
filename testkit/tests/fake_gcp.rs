//! The fake Google (testkit) on its own, spoken to with plain HTTP and with
//! gcp_auth, so that the service's tests rest on a fake known to behave.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use testkit::{
    BIGQUERY_SCOPE, CLIENT_EMAIL, DEFAULT_TABLE_BYTES, FakeGcp, JWT_BEARER, Mode, expected_counts, random_hex,
    sign_jwt, unix_now,
};

const SQL: &str = "SELECT corpus, SUM(word_count) AS total_words FROM `bigquery-public-data.samples.shakespeare` \
                   WHERE word = @word GROUP BY corpus ORDER BY total_words DESC, corpus ASC";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

fn query_body(word: &str) -> Value {
    json!({
        "query": SQL,
        "useLegacySql": false,
        "parameterMode": "NAMED",
        "queryParameters": [{ "name": "word", "parameterType": { "type": "STRING" }, "parameterValue": { "value": word } }],
        "maximumBytesBilled": "104857600",
        "requestId": random_hex(8),
    })
}

async fn post_query(fake: &FakeGcp, body: &Value, token: Option<&str>) -> reqwest::Response {
    let mut req = client().post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint())).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn get(fake: &FakeGcp, path_and_query: &str) -> reqwest::Response {
    client().get(format!("{}/bigquery/v2/projects/my-project/{path_and_query}", fake.endpoint())).send().await.unwrap()
}

fn rows_of(body: &Value) -> Vec<(String, u64)> {
    body.get("rows")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let corpus = r.pointer("/f/0/v").and_then(Value::as_str).unwrap().to_owned();
                    let total = r.pointer("/f/1/v").and_then(Value::as_str).unwrap().parse().unwrap();
                    (corpus, total)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn grant(fake: &FakeGcp, assertion: &str) -> reqwest::Response {
    client()
        .post(fake.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={}&assertion={assertion}", JWT_BEARER.replace(':', "%3A")))
        .send()
        .await
        .unwrap()
}

fn claims(fake: &FakeGcp) -> Value {
    let now = unix_now();
    json!({ "iss": CLIENT_EMAIL, "aud": fake.token_url(), "scope": BIGQUERY_SCOPE, "iat": now, "exp": now + 3595 })
}

#[test]
fn the_fake_computes_what_the_sample_source_computes() {
    // Two independent implementations of the aggregation must agree.
    for (word, ignore_case) in [("the", false), ("The", true), ("o'er", false), ("zebra", false)] {
        let csv = flate2::read::GzDecoder::new(
            std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare.csv.gz")).unwrap(),
        );
        let word_match =
            if ignore_case { wordcount::source::WordMatch::IgnoreCase } else { wordcount::source::WordMatch::Exact };
        let theirs: Vec<(String, u64)> = wordcount::source::scan(csv, word, word_match)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| (r.corpus, r.total_words))
            .collect();
        assert_eq!(expected_counts(word, ignore_case), theirs, "{word} ignore_case={ignore_case}");
    }
    assert!(expected_counts("the", false).len() > 30);
    assert!(expected_counts("zebra", false).is_empty());
}

#[tokio::test]
async fn gcp_auth_gets_a_token_with_the_key_file_and_bigquery_accepts_it() {
    let fake = FakeGcp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account = gcp_auth::CustomServiceAccount::from_file(fake.write_key_file(dir.path())).unwrap();
    let token = gcp_auth::TokenProvider::token(&account, &[BIGQUERY_SCOPE]).await.expect("the fake grants a token");
    assert_eq!((fake.token_requests(), fake.tokens_issued()), (1, 1));

    let ok = post_query(&fake, &query_body("the"), Some(token.as_str())).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(fake.job_queries()[0].bearer(), Some(token.as_str()));

    for bad in [None, Some("ya29.made-up")] {
        let denied = post_query(&fake, &query_body("the"), bad).await;
        assert_eq!(denied.status(), 401);
        assert!(denied.headers().contains_key("www-authenticate"));
        let body: Value = denied.json().await.unwrap();
        assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("authError")));
        assert_eq!(body.pointer("/error/status"), Some(&json!("UNAUTHENTICATED")));
    }
    assert_eq!(fake.jobs_created(), 1);
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_google_would_refuse() {
    let fake = FakeGcp::start().await;
    let dir = tempfile::tempdir().unwrap();

    // gcp_auth itself, with an unknown account and with a read-only scope.
    let stranger =
        gcp_auth::CustomServiceAccount::from_file(fake.write_key_file_as(dir.path(), "intruder@evil.example")).unwrap();
    assert!(gcp_auth::TokenProvider::token(&stranger, &[BIGQUERY_SCOPE]).await.is_err());
    let account = gcp_auth::CustomServiceAccount::from_file(fake.write_key_file(dir.path())).unwrap();
    assert!(
        gcp_auth::TokenProvider::token(&account, &["https://www.googleapis.com/auth/bigquery.readonly"]).await.is_err()
    );

    // Hand-made assertions: each breaks one rule.
    let good = claims(&fake);
    assert_eq!(grant(&fake, &sign_jwt(&good)).await.status(), 200, "{:?}", fake.token_rejections());
    let mut cases = Vec::new();
    for (field, value) in [
        ("aud", json!("https://oauth2.googleapis.com/token")),
        ("exp", json!(unix_now() - 1)),
        ("iat", json!(unix_now() + 600)),
        ("exp", json!(unix_now() + 7200)),
    ] {
        let mut c = good.clone();
        c[field] = value;
        cases.push((format!("{field} changed"), sign_jwt(&c)));
    }
    let valid = sign_jwt(&good);
    let (signed, _) = valid.rsplit_once('.').unwrap();
    let forged_claims = {
        let mut c = good.clone();
        c["iss"] = json!("intruder@evil.example");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    let header = signed.split('.').next().unwrap();
    cases.push((
        "claims swapped under a valid signature".into(),
        format!("{header}.{forged_claims}.{}", valid.rsplit('.').next().unwrap()),
    ));
    cases.push(("no signature".into(), format!("{signed}.")));
    cases.push(("garbage".into(), "not-a-jwt".into()));

    for (name, assertion) in cases {
        let response = grant(&fake, &assertion).await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{name}");
    }
    let rejections = fake.token_rejections();
    assert!(rejections.iter().any(|r| r.contains("account not found")), "{rejections:?}");
    assert!(rejections.iter().any(|r| r.contains("scope")), "{rejections:?}");
    assert!(rejections.iter().any(|r| r.contains("audience")), "{rejections:?}");
    assert!(rejections.iter().any(|r| r.contains("Signature")), "{rejections:?}");
    assert!(rejections.iter().any(|r| r.contains("short-lived")), "{rejections:?}");
}

#[tokio::test]
async fn tokens_stop_working_when_the_fake_says_so() {
    let fake = FakeGcp::start().await;
    // Long enough to be used once on a busy machine, short enough to wait out.
    fake.set_token_lifetime(21, Some(Duration::from_millis(1500)));
    let response = grant(&fake, &sign_jwt(&claims(&fake))).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 21);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(post_query(&fake, &query_body("the"), Some(&token)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let expired = post_query(&fake, &query_body("the"), Some(&token)).await;
    assert_eq!(expired.status(), 401);
    assert!(expired.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn jobs_query_answers_from_the_table_in_the_client_library_shape() {
    let fake = FakeGcp::start_without_auth().await;
    let response = post_query(&fake, &query_body("the"), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(rows_of(&body), expected_counts("the", false));
    assert_eq!(body["jobComplete"], true);
    assert_eq!(body["totalRows"], expected_counts("the", false).len().to_string());
    assert!(body.get("pageToken").is_none());
    // The real client library can read it.
    let parsed: gcp_bigquery_client::model::query_response::QueryResponse =
        serde_json::from_value(body.clone()).unwrap();
    assert_eq!(parsed.rows.unwrap().len(), expected_counts("the", false).len());

    // Case-insensitive when the SQL folds case.
    let mut folded = query_body("THE");
    folded["query"] = json!(SQL.replace("word = @word", "LOWER(word) = LOWER(@word)"));
    let body: Value = post_query(&fake, &folded, None).await.json().await.unwrap();
    assert_eq!(rows_of(&body), expected_counts("the", true));

    // jobs.get reports what was billed, as int64 strings.
    let job_id = body.pointer("/jobReference/jobId").and_then(Value::as_str).unwrap();
    let job: Value = get(&fake, &format!("jobs/{job_id}?location=US")).await.json().await.unwrap();
    assert_eq!(job.pointer("/status/state"), Some(&json!("DONE")));
    assert_eq!(job.pointer("/statistics/query/totalBytesBilled"), Some(&json!(DEFAULT_TABLE_BYTES.to_string())));
    let parsed: gcp_bigquery_client::model::job::Job = serde_json::from_value(job).unwrap();
    assert!(parsed.statistics.unwrap().query.unwrap().total_bytes_processed.is_some());
    assert_eq!(get(&fake, &format!("jobs/{job_id}?location=EU")).await.status(), 404);
}

#[tokio::test]
async fn incomplete_jobs_and_pages_are_served_as_bigquery_does() {
    let fake = FakeGcp::start_without_auth().await;
    fake.set_incomplete_polls(3);
    fake.set_page_size(Some(7));
    let first: Value = post_query(&fake, &query_body("the"), None).await.json().await.unwrap();
    assert_eq!(first["jobComplete"], false);
    assert!(first.get("rows").is_none() && first.get("schema").is_none());
    let job_id = first.pointer("/jobReference/jobId").and_then(Value::as_str).unwrap().to_owned();

    let job: Value = get(&fake, &format!("jobs/{job_id}")).await.json().await.unwrap();
    assert_eq!(job.pointer("/status/state"), Some(&json!("RUNNING")));
    for _ in 0..2 {
        let poll: Value = get(&fake, &format!("queries/{job_id}?timeoutMs=100")).await.json().await.unwrap();
        assert_eq!(poll["jobComplete"], false);
    }
    let mut rows = Vec::new();
    let mut query = format!("queries/{job_id}?location=US");
    let mut pages = 0;
    loop {
        let page: Value = get(&fake, &query).await.json().await.unwrap();
        assert_eq!(page["jobComplete"], true);
        let parsed: gcp_bigquery_client::model::get_query_results_response::GetQueryResultsResponse =
            serde_json::from_value(page.clone()).unwrap();
        assert!(parsed.schema.is_some());
        let page_rows = rows_of(&page);
        assert!(page_rows.len() <= 7);
        rows.extend(page_rows);
        pages += 1;
        match page.get("pageToken").and_then(Value::as_str) {
            Some(token) => query = format!("queries/{job_id}?location=US&pageToken={token}"),
            None => break,
        }
    }
    assert_eq!(rows, expected_counts("the", false));
    assert_eq!(pages, expected_counts("the", false).len().div_ceil(7));
    assert_eq!(get(&fake, &format!("queries/{job_id}?pageToken=bogus")).await.status(), 400);
    assert_eq!(get(&fake, "queries/job_unknown").await.status(), 404);
}

#[tokio::test]
async fn a_repeated_request_id_joins_the_existing_job() {
    let fake = FakeGcp::start_without_auth().await;
    let body = query_body("the");
    let a: Value = post_query(&fake, &body, None).await.json().await.unwrap();
    let b: Value = post_query(&fake, &body, None).await.json().await.unwrap();
    assert_eq!(a["jobReference"], b["jobReference"]);
    assert_eq!(fake.jobs_created(), 1);
    post_query(&fake, &query_body("the"), None).await;
    assert_eq!(fake.jobs_created(), 2);
    assert_eq!(fake.bigquery_calls(), 3);
}

#[tokio::test]
async fn queries_that_bigquery_would_refuse_are_refused() {
    let fake = FakeGcp::start_without_auth().await;
    let mut legacy = query_body("the");
    legacy.as_object_mut().unwrap().remove("useLegacySql");
    let mut positional = query_body("the");
    positional["parameterMode"] = json!("POSITIONAL");
    let mut unbound = query_body("the");
    unbound["queryParameters"] = json!([]);
    let mut inlined = query_body("the");
    inlined["query"] = json!(SQL.replace("@word", "'the'"));
    for (name, body) in [("legacy", legacy), ("positional", positional), ("unbound", unbound), ("inlined", inlined)] {
        let response = post_query(&fake, &body, None).await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("invalidQuery")), "{name}");
    }

    let mut cheap = query_body("the");
    cheap["maximumBytesBilled"] = json!("1000");
    let response = post_query(&fake, &cheap, None).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!("bytesBilledLimitExceeded")));
    fake.set_table_bytes(500);
    assert_eq!(post_query(&fake, &cheap, None).await.status(), 200);
}

#[tokio::test]
async fn each_fault_answers_as_google_does_and_clears_after_n_calls() {
    let fake = FakeGcp::start_without_auth().await;
    let cases = [
        (Mode::ServerError(500), 500, "backendError"),
        (Mode::ServerError(503), 503, "backendError"),
        (Mode::RateLimited, 429, "rateLimitExceeded"),
        (Mode::RateLimitedForbidden, 403, "rateLimitExceeded"),
        (Mode::AccessDenied, 403, "accessDenied"),
        (Mode::BytesBilledLimit, 400, "bytesBilledLimitExceeded"),
        (Mode::Unauthenticated, 401, "authError"),
    ];
    for (mode, status, reason) in cases {
        fake.set_mode_for(mode, 2);
        for _ in 0..2 {
            let response = post_query(&fake, &query_body("the"), None).await;
            assert_eq!(response.status(), status, "{mode:?}");
            // The client library's error type reads it.
            let body: Value = response.json().await.unwrap();
            assert_eq!(body.pointer("/error/errors/0/reason"), Some(&json!(reason)), "{mode:?}");
            assert_eq!(body.pointer("/error/code"), Some(&json!(status)), "{mode:?}");
        }
        assert_eq!(post_query(&fake, &query_body("the"), None).await.status(), 200, "{mode:?} cleared");
    }

    fake.set_mode(Mode::MalformedJson);
    let response = post_query(&fake, &query_body("the"), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());

    fake.set_mode(Mode::TruncatedBody);
    let response = post_query(&fake, &query_body("the"), None).await;
    assert_eq!(response.headers()["content-length"], "4096");
    assert!(response.bytes().await.is_err(), "the body must break off");

    fake.set_mode(Mode::Hang);
    let started = Instant::now();
    let hung = client()
        .post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint()))
        .timeout(Duration::from_millis(300))
        .json(&query_body("the"))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Token faults leave BigQuery alone and the other way round.
    fake.set_mode(Mode::TokenServerError);
    assert_eq!(post_query(&fake, &query_body("the"), None).await.status(), 200);
    assert_eq!(grant(&fake, &sign_jwt(&claims(&fake))).await.status(), 500);
    fake.set_mode_for(Mode::TokenInvalidGrant, 1);
    let refused: Value = grant(&fake, &sign_jwt(&claims(&fake))).await.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(grant(&fake, &sign_jwt(&claims(&fake))).await.status(), 200);
}

#[tokio::test]
async fn delays_and_requests_are_observable() {
    let fake = FakeGcp::start_without_auth().await;
    fake.set_delay(Duration::from_millis(250));
    let started = Instant::now();
    client()
        .post(format!("{}/bigquery/v2/projects/my-project/queries", fake.endpoint()))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&query_body("o'er\"; DROP TABLE x; --"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    let [call] = fake.job_queries().try_into().unwrap();
    assert_eq!(call.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(call.query_parameter("word"), Some(("STRING".into(), "o'er\"; DROP TABLE x; --".into())));
    assert_eq!(call.use_legacy_sql(), Some(false));
    assert_eq!(call.parameter_mode(), Some("NAMED"));
    assert_eq!(call.maximum_bytes_billed().as_deref(), Some("104857600"));
    assert!(call.request_id().is_some());
    assert_eq!(call.sql(), Some(SQL));
}

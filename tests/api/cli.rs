//! The binary itself: exit codes, --version, healthcheck.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::spawn_app;

const BIN: &str = env!("CARGO_BIN_EXE_wordcount");

fn run(vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

#[test]
fn invalid_configuration_exits_64_with_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("WORD", "")], "WORD"),
        (&[("PORT", "http")], "PORT"),
        (&[("SOURCE", "mysql")], "SOURCE"),
        (&[("SOURCE", "file"), ("DATA_FILE", "/nonexistent/counts.csv")], "DATA_FILE"),
        (&[("SOURCE", "bigquery")], "BIGQUERY_PROJECT"),
        (&[("CACHE_TTL", "soon")], "CACHE_TTL"),
    ];
    for (vars, variable) in cases {
        let output = run(vars, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{vars:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{vars:?}: {stderr}");
        assert!(stderr.contains(variable), "{vars:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing is served or logged");
    }
}

#[test]
fn version_names_the_commit() {
    let output = run(&[], &["--version"]);

    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with(&format!("wordcount {} (commit ", env!("CARGO_PKG_VERSION"))), "{stdout}");
}

#[tokio::test]
async fn healthcheck_follows_the_admin_endpoint() {
    let app = spawn_app(&[]).await;
    app.wait_ready(Duration::from_secs(5)).await;
    let port = app.admin.port().to_string();

    // The server shares this test's runtime: run the binary off it.
    let check = |vars: Vec<(&'static str, String)>, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&vars, &args)
        })
    };
    let live = check(vec![("ADMIN_PORT", port.clone())], vec!["healthcheck".into()]).await.unwrap();
    let ready =
        check(vec![], vec!["healthcheck".into(), "--ready".into(), "--admin-port".into(), port.clone()]).await.unwrap();
    app.shutdown().await;
    let gone = check(vec![("ADMIN_PORT", port)], vec!["healthcheck".into()]).await.unwrap();

    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("connect"));
}

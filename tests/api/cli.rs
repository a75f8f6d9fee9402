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

/// Case 9: a TTL of 0 would turn the cache off (one query job per request).
#[test]
fn a_cache_ttl_of_zero_is_refused() {
    let output = run(&[("CACHE_TTL", "0")], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("CACHE_TTL: must be at least 1 second"), "{stderr}");
}

/// Case 3: a value that is not UTF-8 is refused, not taken for unset.
#[test]
fn settings_that_are_not_utf8_exit_64_with_one_line_naming_the_variable() {
    use std::os::unix::ffi::OsStrExt;
    for (var, value) in [("WORD", &b"caf\xe9"[..]), ("PORT", b"\xff"), ("SOURCE", b"\xff"), ("ADMIN_PORT", b"\xff")] {
        let output = Command::new(BIN)
            .env_clear()
            .env(var, std::ffi::OsStr::from_bytes(value))
            .stdin(Stdio::null())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{var}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.contains(&format!("{var}: is not valid UTF-8")), "{var}: {stderr}");
        assert!(output.stdout.is_empty(), "{var}: nothing is served or logged");
    }
    // The health check reads ADMIN_PORT too.
    let output = Command::new(BIN)
        .arg("healthcheck")
        .env_clear()
        .env("ADMIN_PORT", std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(64), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Case 9: the argument parser's errors follow the configuration's rule;
/// --help and --version still print and exit 0.
#[test]
fn argument_errors_exit_64_with_one_line() {
    for args in [&["--no-such-flag"][..], &["--port"], &["serve", "extra"], &["healthcheck", "--ready=maybe"]] {
        let output = run(&[], args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("wordcount: invalid arguments: "), "{args:?}: {stderr}");
    }
    let help = run(&[], &["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("WRITE_TIMEOUT"));
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

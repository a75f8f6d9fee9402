//! `Config::load` over an arbitrary environment (a map: clap's parsing
//! and the domain rules, as the binary runs them). The input is read as
//! `NAME=value` lines (the seeds are real env maps; fuzz/dict/config.dict
//! holds the variable names). Configuration is the operator's input, but a
//! typo must end in exit 64 with the variable named, never in a panic at
//! start-up or, worse, at the first request.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wordcount::Error;
use wordcount::config::{Config, MAX_WORD_CHARS, SourceKind};

/// Every variable `Config::load` reads, i.e. every name an error may give.
const VARIABLES: &[&str] = &[
    "WORD",
    "WORD_MATCH",
    "PORT",
    "ADMIN_PORT",
    "BIND_ADDRESS",
    "SOURCE",
    "DATA_FILE",
    "CACHE_TTL",
    "WRITE_TIMEOUT",
    "LOG_FORMAT",
    "DRAIN_TIMEOUT",
    "HEADER_READ_TIMEOUT",
    "REQUEST_TIMEOUT",
    "MAX_CONNECTIONS",
    "BIGQUERY_PROJECT",
    "BIGQUERY_TABLE",
    "BIGQUERY_MAX_BYTES_BILLED",
    "BIGQUERY_TIMEOUT",
    "BIGQUERY_LOCATION",
    "BIGQUERY_ENDPOINT",
    "BIGQUERY_AUTH",
];

/// The service adds these durations to `Instant::now()` (cache expiry,
/// drain and request deadlines); an overflow there is a panic.
fn usable(d: Duration) -> bool {
    Instant::now().checked_add(d).is_some_and(|t| t.checked_add(d).is_some())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<&str, &str> = text.lines().filter_map(|line| line.split_once('=')).collect();

    match Config::load(&[], &vars) {
        Ok(Config { server, source, bigquery: bq }) => {
            assert!(!source.word.trim().is_empty() && source.word.chars().count() <= MAX_WORD_CHARS);
            assert!(!source.word.chars().any(char::is_control), "{:?}", source.word);
            assert!(server.port != server.admin_port || server.port == 0);
            assert!(server.max_connections >= 1);
            for d in [
                source.cache_ttl,
                server.drain_timeout,
                server.header_read_timeout,
                server.write_timeout,
                server.request_timeout,
            ] {
                assert!(usable(d), "accepted a duration the server cannot use: {d:?}");
            }
            assert!(!server.header_read_timeout.is_zero() && !server.request_timeout.is_zero());
            if source.kind == SourceKind::BigQuery {
                assert!(bq.project.is_some());
                // The table name is put between backticks in the SQL.
                assert_eq!(bq.table.split('.').count(), 3, "{:?}", bq.table);
                assert!(
                    bq.table.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':')),
                    "table {:?} needs escaping",
                    bq.table
                );
                assert!(usable(bq.timeout) && !bq.timeout.is_zero());
                assert!(bq.max_bytes_billed >= 1);
            }
        }
        Err(Error::Config { var, problem }) => {
            assert!(VARIABLES.contains(&var.as_str()), "error names {var:?}: {problem}");
            // The variable named is the one that was set wrong, or one
            // that a setting made required, or ADMIN_PORT clashing with
            // a PORT that was set.
            let set = vars.contains_key(var.as_str());
            let clash = var == "ADMIN_PORT" && vars.contains_key("PORT");
            assert!(set || clash || problem.contains("required"), "{var} is not set but blamed: {problem}");
            assert!(!problem.is_empty());
        }
        Err(other) => panic!("Config::load returned a non-config error: {other:?}"),
    }
});

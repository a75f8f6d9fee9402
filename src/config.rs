//! Typed configuration, loaded once at start-up.
//!
//! Every setting is one field below, in the clap argument group of its
//! concern (server, source, BigQuery), with its environment variable,
//! default and parser (the flag wins over the variable); its doc comment is
//! its `--help` line. The groups are the configuration: nothing copies
//! them. Only the domain rules are written by hand: what a valid word, port,
//! duration, project, table, location or endpoint is (`config/rules.rs`),
//! and the rules across settings ([`Config::check`]).
//!
//! Anything wrong is an [`Error::Config`] naming the environment variable,
//! whichever way the value came in (`config/parse.rs` turns clap's errors
//! into that): `main` prints it on one line and exits with code 64 before
//! any port is bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::Targets;

use crate::error::{Error, Result};
use crate::source::WordMatch;

mod parse;
mod rules;

pub use parse::Invalid;

/// Longest WORD accepted; longer values are almost certainly a mistake and
/// would only make pages and log lines unwieldy.
pub const MAX_WORD_CHARS: usize = 64;

/// The table the original service queried.
pub const DEFAULT_TABLE: &str = "bigquery-public-data.samples.shakespeare";

/// Longest duration setting accepted (a year): far beyond any sensible TTL
/// or timeout, and far from where `Instant + Duration` overflows, which
/// panics at the first cache hit.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

#[derive(Debug, Parser)]
#[command(
    name = "wordcount",
    version = crate::VERSION_WITH_COMMIT,
    about = "Serves how often a word appears in each of Shakespeare's works (HTML and JSON).",
    after_help = "Every serve option can also be set with the environment variable named in brackets."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<Config>),
    /// Exit 0 if the local admin endpoint answers 200, 1 otherwise (for
    /// container health checks: the image has no curl or shell).
    Healthcheck {
        /// Check /readyz instead of /healthz.
        #[arg(long)]
        ready: bool,
        /// Admin port to query
        #[arg(long, env = "ADMIN_PORT", default_value = "9090", value_parser = rules::port)]
        admin_port: u16,
    },
}

/// The serve configuration: one clap argument group per concern, each
/// setting parsed by itself; [`Config::check`] relates them.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub source: SourceSettings,
    #[command(flatten)]
    pub bigquery: BigQuerySettings,
}

/// The listeners, their limits and timeouts, and the logs.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ServerSettings {
    /// Public HTTP port
    #[arg(long, env = "PORT", default_value = "8080", value_parser = rules::port)]
    pub port: u16,
    /// Admin port for /healthz, /readyz, /metrics
    #[arg(long, env = "ADMIN_PORT", default_value = "9090", value_parser = rules::port)]
    pub admin_port: u16,
    /// Address both listeners bind to
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0", value_parser = rules::ip_address)]
    pub bind_address: IpAddr,
    /// Log format
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Lines logged: a level, and `target=level` pairs for modules (`info,wordcount::cache=debug`)
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = rules::log_filter)]
    pub log_filter: Targets,
    /// Seconds in-flight requests get to finish after SIGTERM
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10", value_parser = rules::seconds)]
    pub drain_timeout: Duration,
    /// Seconds a client gets to send the request headers, and an idle keep-alive connection stays open
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10", value_parser = rules::positive_seconds)]
    pub header_read_timeout: Duration,
    /// Seconds an answer may go unread before the connection is closed
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "10", value_parser = rules::positive_seconds)]
    pub write_timeout: Duration,
    /// Seconds a request may take end to end
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30", value_parser = rules::positive_seconds)]
    pub request_timeout: Duration,
    /// Concurrent connections per listener before new ones are refused
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000", value_parser = rules::at_least_one::<usize>)]
    pub max_connections: usize,
}

/// What is counted, where the counts come from and how long they stay fresh.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SourceSettings {
    /// Word to count
    #[arg(long, env = "WORD", default_value = "the", value_parser = rules::word)]
    pub word: String,
    /// Word comparison
    #[arg(long, env = "WORD_MATCH", value_enum, default_value_t = WordMatch::Exact)]
    pub word_match: WordMatch,
    /// Data source
    #[arg(long = "source", env = "SOURCE", value_enum, default_value_t = SourceKind::Sample)]
    pub kind: SourceKind,
    /// CSV (or .csv.gz) file for SOURCE=file
    #[arg(long, env = "DATA_FILE", value_parser = rules::path)]
    pub data_file: Option<PathBuf>,
    /// Seconds a result stays fresh, at least 1
    #[arg(long, env = "CACHE_TTL", default_value = "300", value_parser = rules::positive_seconds)]
    pub cache_ttl: Duration,
}

/// The BigQuery source (SOURCE=bigquery).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BigQuerySettings {
    /// GCP project that runs and pays for query jobs
    #[arg(long = "bigquery-project", env = "BIGQUERY_PROJECT", value_parser = rules::project_id)]
    pub project: Option<String>,
    /// Table to query
    #[arg(long = "bigquery-table", env = "BIGQUERY_TABLE", default_value = DEFAULT_TABLE, value_parser = rules::table)]
    pub table: String,
    /// Upper bound on bytes billed per query job
    #[arg(long = "bigquery-max-bytes-billed", env = "BIGQUERY_MAX_BYTES_BILLED", default_value = "104857600", value_parser = rules::at_least_one::<u64>)]
    pub max_bytes_billed: u64,
    /// Seconds one refresh may take, retries included
    #[arg(long = "bigquery-timeout", env = "BIGQUERY_TIMEOUT", default_value = "20", value_parser = rules::positive_seconds)]
    pub timeout: Duration,
    /// Location for query jobs, e.g. US
    #[arg(long = "bigquery-location", env = "BIGQUERY_LOCATION", value_parser = rules::location)]
    pub location: Option<String>,
    /// API root, for emulators and tests, e.g. http://127.0.0.1:9050
    #[arg(long = "bigquery-endpoint", env = "BIGQUERY_ENDPOINT", value_parser = rules::endpoint)]
    pub endpoint: Option<String>,
    /// Credentials
    #[arg(long = "bigquery-auth", env = "BIGQUERY_AUTH", value_enum, default_value_t = BigQueryAuth::Google)]
    pub auth: BigQueryAuth,
    /// Service-account key file; without it, gcloud application-default credentials or the metadata server
    #[arg(long, env = "GOOGLE_APPLICATION_CREDENTIALS", value_parser = rules::path)]
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// The table compiled into the binary
    Sample,
    /// The CSV in DATA_FILE
    File,
    /// The BIGQUERY_TABLE
    #[value(name = "bigquery")]
    BigQuery,
}

impl SourceKind {
    /// The `source` label of metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Sample => "sample",
            SourceKind::File => "file",
            SourceKind::BigQuery => "bigquery",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON lines for Cloud Logging
    Json,
    /// Plain text, for people
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BigQueryAuth {
    /// Google credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's or the metadata server's
    Google,
    /// No token, for an emulator at BIGQUERY_ENDPOINT
    None,
}

impl Cli {
    /// The serve settings, whether given with or without `serve`.
    pub fn into_serve_args(self) -> Option<Config> {
        match self.command {
            None => Some(self.serve),
            Some(Command::Serve(args)) => Some(*args),
            Some(Command::Healthcheck { .. }) => None,
        }
    }
}

impl Config {
    /// The rules across settings; each setting's own rule ran as clap
    /// parsed it. Nothing is bound or opened here.
    pub fn check(self) -> Result<Config> {
        let (server, source, bigquery) = (&self.server, &self.source, &self.bigquery);
        if server.port == server.admin_port && server.port != 0 {
            return Err(Error::config("ADMIN_PORT", format!("must differ from PORT ({})", server.port)));
        }
        match source.kind {
            SourceKind::Sample => {}
            SourceKind::File if source.data_file.is_none() => {
                return Err(Error::config("DATA_FILE", "is required with SOURCE=file"));
            }
            SourceKind::File => {}
            SourceKind::BigQuery if bigquery.project.is_none() => {
                return Err(Error::config("BIGQUERY_PROJECT", "is required with SOURCE=bigquery"));
            }
            SourceKind::BigQuery if bigquery.auth == BigQueryAuth::None && bigquery.endpoint.is_none() => {
                return Err(Error::config(
                    "BIGQUERY_AUTH",
                    "none is only allowed together with BIGQUERY_ENDPOINT (an emulator)",
                ));
            }
            SourceKind::BigQuery => {}
        }
        Ok(self)
    }

    /// The checked serve configuration from `args` (without the program
    /// name) and `env` in place of the process environment: see
    /// [`Cli::from_map`].
    pub fn load(args: &[&str], env: &HashMap<&str, &str>) -> Result<Config> {
        let serve = match Cli::from_map(args, env) {
            Ok(cli) => cli.into_serve_args(),
            Err(Invalid::Setting(err)) => return Err(err),
            Err(Invalid::Usage(err)) => return Err(Error::config("arguments", err.to_string())),
        };
        serve.ok_or_else(|| Error::config("arguments", "not a serve command"))?.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::load(&[], &env)
    }

    fn config_error(vars: &[(&str, &str)]) -> (String, String) {
        match load(vars) {
            Err(Error::Config { var, problem }) => (var, problem),
            other => panic!("expected a configuration error for {vars:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_interface() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.source.word, "the");
        assert_eq!(config.source.word_match, WordMatch::Exact);
        assert_eq!((config.server.port, config.server.admin_port), (8080, 9090));
        assert_eq!(config.source.kind, SourceKind::Sample);
        assert_eq!(config.source.cache_ttl, Duration::from_secs(300));
        assert_eq!(config.server.log_format, LogFormat::Json);
        assert_eq!(config.server.log_filter, Targets::new().with_default(tracing::Level::INFO));
        assert_eq!(config.server.max_connections, 10_000);
    }

    #[test]
    fn flags_override_the_environment() {
        let env: HashMap<&str, &str> = [("WORD", "tea"), ("PORT", "1234")].into_iter().collect();
        let config = Config::load(&["--word", "coffee"], &env).expect("valid");
        assert_eq!(config.source.word, "coffee");
        assert_eq!(config.server.port, 1234);
    }

    #[test]
    fn each_invalid_setting_names_its_variable() {
        let long_word = "w".repeat(MAX_WORD_CHARS + 1);
        let long_word = long_word.as_str();
        // (environment, variable named in the error, part of the problem)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (&[("WORD", "")], "WORD", "empty"),
            (&[("WORD", "   ")], "WORD", "empty"),
            (&[("WORD", long_word)], "WORD", "at most 64"),
            (&[("WORD", "a\u{7}b")], "WORD", "control"),
            (&[("WORD", "line\nbreak")], "WORD", "control"),
            (&[("PORT", "eighty")], "PORT", "not a port"),
            (&[("PORT", "70000")], "PORT", "not a port"),
            (&[("ADMIN_PORT", "-1")], "ADMIN_PORT", "not a port"),
            (&[("PORT", "9000"), ("ADMIN_PORT", "9000")], "ADMIN_PORT", "differ"),
            (&[("SOURCE", "postgres")], "SOURCE", "not one of"),
            (&[("SOURCE", "file")], "DATA_FILE", "required"),
            (&[("CACHE_TTL", "5m")], "CACHE_TTL", "whole number"),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT", "not one of"),
            (&[("RUST_LOG", "info,[request]=debug")], "RUST_LOG", "span and field directives"),
            (&[("RUST_LOG", "wordcount=loud")], "RUST_LOG", "wordcount=loud"),
            (&[("RUST_LOG", "")], "RUST_LOG", "empty"),
            (&[("WORD_MATCH", "fuzzy")], "WORD_MATCH", "not one of"),
            (&[("BIND_ADDRESS", "localhost")], "BIND_ADDRESS", "not an IP"),
            (&[("MAX_CONNECTIONS", "0")], "MAX_CONNECTIONS", "at least 1"),
            (&[("HEADER_READ_TIMEOUT", "0")], "HEADER_READ_TIMEOUT", "at least 1"),
            (&[("WRITE_TIMEOUT", "0")], "WRITE_TIMEOUT", "at least 1"),
            (&[("CACHE_TTL", "0")], "CACHE_TTL", "at least 1"),
            (&[("SOURCE", "bigquery")], "BIGQUERY_PROJECT", "required"),
            (&[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "My Project")], "BIGQUERY_PROJECT", "not a GCP project"),
            (
                &[
                    ("SOURCE", "bigquery"),
                    ("BIGQUERY_PROJECT", "my-project"),
                    ("BIGQUERY_TABLE", "x.y.z`; DROP TABLE t; --"),
                ],
                "BIGQUERY_TABLE",
                "project.dataset.table",
            ),
            (
                &[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "my-project"), ("BIGQUERY_TABLE", "only.two")],
                "BIGQUERY_TABLE",
                "project.dataset.table",
            ),
            (
                &[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "my-project"), ("BIGQUERY_AUTH", "none")],
                "BIGQUERY_AUTH",
                "only allowed together with BIGQUERY_ENDPOINT",
            ),
            (
                &[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "my-project"), ("BIGQUERY_ENDPOINT", "ftp://x")],
                "BIGQUERY_ENDPOINT",
                "http(s) URL",
            ),
            (
                &[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "my-project"), ("BIGQUERY_MAX_BYTES_BILLED", "lots")],
                "BIGQUERY_MAX_BYTES_BILLED",
                "whole number",
            ),
            (
                &[("SOURCE", "bigquery"), ("BIGQUERY_PROJECT", "my-project"), ("BIGQUERY_TIMEOUT", "0")],
                "BIGQUERY_TIMEOUT",
                "at least 1",
            ),
        ];
        for (vars, expected_var, expected_problem) in cases {
            let (var, problem) = config_error(vars);
            assert_eq!(&var, expected_var, "for {vars:?}");
            assert!(problem.contains(expected_problem), "for {vars:?}: {problem:?} lacks {expected_problem:?}");
        }
    }

    #[test]
    fn bigquery_settings_are_parsed() {
        let config = load(&[
            ("SOURCE", "bigquery"),
            ("BIGQUERY_PROJECT", "example.com:billing-project"),
            ("BIGQUERY_ENDPOINT", "http://127.0.0.1:9050"),
            ("BIGQUERY_AUTH", "none"),
            ("BIGQUERY_LOCATION", "EU"),
            ("BIGQUERY_MAX_BYTES_BILLED", "1000"),
            ("WORD_MATCH", "ignore-case"),
        ])
        .expect("valid");
        assert_eq!(config.source.kind, SourceKind::BigQuery);
        let bq = config.bigquery;
        assert_eq!(bq.project.as_deref(), Some("example.com:billing-project"));
        assert_eq!(bq.table, DEFAULT_TABLE);
        assert_eq!(bq.auth, BigQueryAuth::None);
        assert_eq!(bq.location.as_deref(), Some("EU"));
        assert_eq!(bq.max_bytes_billed, 1000);
        assert_eq!(bq.timeout, Duration::from_secs(20));
        assert_eq!(config.source.word_match, WordMatch::IgnoreCase);
    }

    #[test]
    fn an_empty_path_is_left_to_the_source_to_refuse() {
        let config = load(&[("SOURCE", "file"), ("DATA_FILE", "")]).expect("opening it is what fails");
        assert_eq!((config.source.kind, config.source.data_file), (SourceKind::File, Some(PathBuf::new())));
        assert!(load(&[("DATA_FILE", "")]).is_ok(), "unused with SOURCE=sample");
    }

    /// A setting is one field and one row of the README's configuration
    /// table: every variable clap reads is documented, and nothing else.
    #[test]
    fn the_readme_documents_every_setting_and_no_other() {
        use clap::CommandFactory;
        let readme = include_str!("../README.md");
        let table =
            readme.split("| variable | default | meaning |").nth(1).expect("README.md has the configuration table");
        let documented: std::collections::BTreeSet<String> = table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .flat_map(|row| row.split('|').nth(1).unwrap_or_default().split('`').skip(1).step_by(2))
            .map(str::to_owned)
            .collect();
        let read: std::collections::BTreeSet<String> = parse::env_vars(&Cli::command()).into_iter().collect();
        assert_eq!(
            read, documented,
            "each setting (a field in src/config.rs) needs its row in README.md's configuration table, and each row its field"
        );
    }

    #[test]
    fn words_with_markup_and_quotes_are_valid_words() {
        let config = load(&[("WORD", "<b>o'er</b>\"")]).expect("markup is escaped on output, not rejected");
        assert_eq!(config.source.word, "<b>o'er</b>\"");
    }
}

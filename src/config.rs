//! Typed configuration, loaded once at start-up.
//!
//! Every setting is declared once, below, as a clap flag with its
//! environment variable, default and parser (the flag wins over the
//! variable); `--help` is generated from these declarations. Only the
//! domain rules are written by hand: what a valid word, port, duration,
//! project, table, location or endpoint is (`config/rules.rs`), and the
//! rules across settings ([`Config::new`]).
//!
//! Anything wrong is an [`Error::Config`] naming the environment variable,
//! whichever way the value came in: `main` prints it on one line and exits
//! with code 64 before any port is bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::source::WordMatch;

mod rules;

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
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
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

/// The serve settings, parsed one by one; [`Config::new`] checks them
/// together.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Word to count
    #[arg(long, env = "WORD", default_value = "the", value_parser = rules::word)]
    pub word: String,
    /// Word comparison
    #[arg(long, env = "WORD_MATCH", value_enum, default_value_t = WordMatch::Exact)]
    pub word_match: WordMatch,
    /// Public HTTP port
    #[arg(long, env = "PORT", default_value = "8080", value_parser = rules::port)]
    pub port: u16,
    /// Admin port for /healthz, /readyz, /metrics
    #[arg(long, env = "ADMIN_PORT", default_value = "9090", value_parser = rules::port)]
    pub admin_port: u16,
    /// Address both listeners bind to
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0", value_parser = rules::ip_address)]
    pub bind_address: IpAddr,
    /// Data source
    #[arg(long, env = "SOURCE", value_enum, default_value_t = SourceKind::Sample)]
    pub source: SourceKind,
    /// CSV (or .csv.gz) file for SOURCE=file
    #[arg(long, env = "DATA_FILE", value_parser = rules::path)]
    pub data_file: Option<PathBuf>,
    /// Seconds a result stays fresh, at least 1
    #[arg(long, env = "CACHE_TTL", default_value = "300", value_parser = rules::positive_seconds)]
    pub cache_ttl: Duration,
    /// Log format
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
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
    /// GCP project that runs and pays for query jobs
    #[arg(long, env = "BIGQUERY_PROJECT", value_parser = rules::project_id)]
    pub bigquery_project: Option<String>,
    /// Table to query
    #[arg(long, env = "BIGQUERY_TABLE", default_value = DEFAULT_TABLE, value_parser = rules::table)]
    pub bigquery_table: String,
    /// Upper bound on bytes billed per query job
    #[arg(long, env = "BIGQUERY_MAX_BYTES_BILLED", default_value = "104857600", value_parser = rules::at_least_one::<u64>)]
    pub bigquery_max_bytes_billed: u64,
    /// Seconds one refresh may take, retries included
    #[arg(long, env = "BIGQUERY_TIMEOUT", default_value = "20", value_parser = rules::positive_seconds)]
    pub bigquery_timeout: Duration,
    /// Location for query jobs, e.g. US
    #[arg(long, env = "BIGQUERY_LOCATION", value_parser = rules::location)]
    pub bigquery_location: Option<String>,
    /// API root, for emulators and tests, e.g. http://127.0.0.1:9050
    #[arg(long, env = "BIGQUERY_ENDPOINT", value_parser = rules::endpoint)]
    pub bigquery_endpoint: Option<String>,
    /// Credentials
    #[arg(long, env = "BIGQUERY_AUTH", value_enum, default_value_t = BigQueryAuth::Google)]
    pub bigquery_auth: BigQueryAuth,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryConfig {
    pub project: String,
    /// `project.dataset.table`, validated so it can be quoted into SQL.
    pub table: String,
    pub max_bytes_billed: u64,
    pub timeout: Duration,
    pub location: Option<String>,
    pub endpoint: Option<String>,
    pub auth: BigQueryAuth,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key file. Without
    /// it, gcloud application-default credentials or the metadata server.
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    Sample,
    File(PathBuf),
    BigQuery(BigQueryConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sample => "sample",
            SourceConfig::File(_) => "file",
            SourceConfig::BigQuery(_) => "bigquery",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub word: String,
    pub word_match: WordMatch,
    pub bind_address: IpAddr,
    pub port: u16,
    pub admin_port: u16,
    pub source: SourceConfig,
    pub cache_ttl: Duration,
    pub log_format: LogFormat,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Longest a connection's answer may make no progress (the client
    /// reads none of it) before the connection is closed.
    pub write_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

/// Why the command line and environment give no [`Cli`].
#[derive(Debug)]
pub enum Invalid {
    /// A setting's value is wrong ([`Error::Config`], naming its variable).
    Setting(Error),
    /// clap's own answer: `--help`, `--version` or a malformed command line.
    Usage(clap::Error),
}

impl Cli {
    /// Parses the process's arguments and environment.
    pub fn from_process() -> std::result::Result<Cli, Invalid> {
        let command = Cli::command();
        // clap reports a value that is not UTF-8 without naming the
        // variable; a variable set to one is a mistake, not unset.
        for var in env_vars(&command) {
            if std::env::var_os(&var).is_some_and(|value| value.to_str().is_none()) {
                return Err(Invalid::Setting(Error::config(var, "is not valid UTF-8")));
            }
        }
        parse(command, std::env::args_os())
    }

    /// Parses `args` (without the program name) with `env` standing in for
    /// the process environment, so tests never mutate the process's: clap
    /// reads variables only from the process, so each one in `env` becomes
    /// the default of its flag, which is what a variable is to clap.
    pub fn from_map(args: &[&str], env: &HashMap<&str, &str>) -> std::result::Result<Cli, Invalid> {
        fn with_env(command: clap::Command, env: &HashMap<&str, &str>) -> clap::Command {
            command
                .mut_args(|arg| {
                    let value = arg.get_env().and_then(|var| env.get(var.to_str()?)).map(|v| v.to_string());
                    let arg = arg.env(None);
                    match value {
                        Some(value) => arg.default_value(value),
                        None => arg,
                    }
                })
                .mut_subcommands(|sub| with_env(sub, env))
        }
        parse(with_env(Cli::command(), env), std::iter::once("wordcount").chain(args.iter().copied()))
    }

    /// The serve settings, whether given with or without `serve`.
    pub fn into_serve_args(self) -> Option<ServeArgs> {
        match self.command {
            None => Some(self.serve),
            Some(Command::Serve(args)) => Some(*args),
            Some(Command::Healthcheck { .. }) => None,
        }
    }
}

fn parse<T: Into<std::ffi::OsString> + Clone>(
    command: clap::Command,
    args: impl IntoIterator<Item = T>,
) -> std::result::Result<Cli, Invalid> {
    let matches = command.try_get_matches_from(args).map_err(|err| match setting_error(&err) {
        Some(setting) => Invalid::Setting(setting),
        None => Invalid::Usage(err),
    })?;
    Cli::from_arg_matches(&matches).map_err(Invalid::Usage)
}

/// Every environment variable the command reads, subcommands included.
fn env_vars(command: &clap::Command) -> Vec<String> {
    let own = command.get_arguments().filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned));
    own.chain(command.get_subcommands().flat_map(env_vars)).collect()
}

/// clap's error about one setting's value, as the [`Error::Config`] naming
/// its variable; `None` for anything else (an unknown flag, a missing value).
fn setting_error(err: &clap::Error) -> Option<Error> {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let (flag, value) = (context(ContextKind::InvalidArg)?, context(ContextKind::InvalidValue)?);
    let problem = match (err.kind(), err.get(ContextKind::ValidValue)) {
        (ErrorKind::ValueValidation, _) => std::error::Error::source(err)?.to_string(),
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(valid))) if !valid.is_empty() => {
            format!("{value:?} is not one of: {}", valid.join(", "))
        }
        _ => return None,
    };
    let mut command = Cli::command();
    command.build();
    let var = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .find(|arg| arg.to_string() == flag)?
        .get_env()?
        .to_str()?
        .to_owned();
    Some(Error::config(var, problem))
}

impl Config {
    /// Checks the rules across settings and builds the [`Config`]. Nothing
    /// is bound or opened here.
    pub fn new(args: ServeArgs) -> Result<Config> {
        if args.port == args.admin_port && args.port != 0 {
            return Err(Error::config("ADMIN_PORT", format!("must differ from PORT ({})", args.port)));
        }
        let source = match args.source {
            SourceKind::Sample => SourceConfig::Sample,
            SourceKind::File => match args.data_file {
                Some(path) => SourceConfig::File(path),
                None => return Err(Error::config("DATA_FILE", "is required with SOURCE=file")),
            },
            SourceKind::BigQuery => {
                let project = args
                    .bigquery_project
                    .ok_or_else(|| Error::config("BIGQUERY_PROJECT", "is required with SOURCE=bigquery"))?;
                if args.bigquery_auth == BigQueryAuth::None && args.bigquery_endpoint.is_none() {
                    return Err(Error::config(
                        "BIGQUERY_AUTH",
                        "none is only allowed together with BIGQUERY_ENDPOINT (an emulator)",
                    ));
                }
                SourceConfig::BigQuery(BigQueryConfig {
                    project,
                    table: args.bigquery_table,
                    max_bytes_billed: args.bigquery_max_bytes_billed,
                    timeout: args.bigquery_timeout,
                    location: args.bigquery_location,
                    endpoint: args.bigquery_endpoint,
                    auth: args.bigquery_auth,
                    credentials_file: args.credentials_file,
                })
            }
        };
        Ok(Config {
            word: args.word,
            word_match: args.word_match,
            bind_address: args.bind_address,
            port: args.port,
            admin_port: args.admin_port,
            source,
            cache_ttl: args.cache_ttl,
            log_format: args.log_format,
            drain_timeout: args.drain_timeout,
            header_read_timeout: args.header_read_timeout,
            write_timeout: args.write_timeout,
            request_timeout: args.request_timeout,
            max_connections: args.max_connections,
        })
    }

    /// The serve configuration from `args` (without the program name) and
    /// `env` in place of the process environment: see [`Cli::from_map`].
    pub fn load(args: &[&str], env: &HashMap<&str, &str>) -> Result<Config> {
        let serve = match Cli::from_map(args, env) {
            Ok(cli) => cli.into_serve_args(),
            Err(Invalid::Setting(err)) => return Err(err),
            Err(Invalid::Usage(err)) => return Err(Error::config("arguments", err.to_string())),
        };
        Config::new(serve.ok_or_else(|| Error::config("arguments", "not a serve command"))?)
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
        assert_eq!(config.word, "the");
        assert_eq!(config.word_match, WordMatch::Exact);
        assert_eq!((config.port, config.admin_port), (8080, 9090));
        assert_eq!(config.source, SourceConfig::Sample);
        assert_eq!(config.cache_ttl, Duration::from_secs(300));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.max_connections, 10_000);
    }

    #[test]
    fn flags_override_the_environment() {
        let env: HashMap<&str, &str> = [("WORD", "tea"), ("PORT", "1234")].into_iter().collect();
        let config = Config::load(&["--word", "coffee"], &env).expect("valid");
        assert_eq!(config.word, "coffee");
        assert_eq!(config.port, 1234);
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
        let SourceConfig::BigQuery(bq) = config.source else { panic!("expected bigquery") };
        assert_eq!(bq.project, "example.com:billing-project");
        assert_eq!(bq.table, DEFAULT_TABLE);
        assert_eq!(bq.auth, BigQueryAuth::None);
        assert_eq!(bq.location.as_deref(), Some("EU"));
        assert_eq!(bq.max_bytes_billed, 1000);
        assert_eq!(bq.timeout, Duration::from_secs(20));
        assert_eq!(config.word_match, WordMatch::IgnoreCase);
    }

    #[test]
    fn an_empty_path_is_left_to_the_source_to_refuse() {
        let config = load(&[("SOURCE", "file"), ("DATA_FILE", "")]).expect("opening it is what fails");
        assert_eq!(config.source, SourceConfig::File(PathBuf::new()));
        assert!(load(&[("DATA_FILE", "")]).is_ok(), "unused with SOURCE=sample");
    }

    #[test]
    fn words_with_markup_and_quotes_are_valid_words() {
        let config = load(&[("WORD", "<b>o'er</b>\"")]).expect("markup is escaped on output, not rejected");
        assert_eq!(config.word, "<b>o'er</b>\"");
    }
}

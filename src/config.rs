//! Typed configuration, loaded once at start-up.
//!
//! Every setting can be given as a command-line flag or as an environment
//! variable (the flag wins); both arrive here as raw strings and go through
//! the same validation, so an error always names the environment variable,
//! whichever way the value came in. The environment is read through the
//! [`Env`] trait so tests hand in a map instead of mutating the process
//! environment.
//!
//! Anything wrong is a [`Error::Config`]: `main` prints it on one line and
//! exits with code 64 before any port is bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};

/// Longest WORD accepted; longer values are almost certainly a mistake and
/// would only make pages and log lines unwieldy.
pub const MAX_WORD_CHARS: usize = 64;

/// The table the original service queried.
pub const DEFAULT_TABLE: &str = "bigquery-public-data.samples.shakespeare";

/// Read access to environment variables: `None` when unset, an error
/// naming `key` when set to something that is not a string.
pub trait Env {
    fn var(&self, key: &'static str) -> Result<Option<String>>;
}

/// The real process environment. A variable set to the empty string is set:
/// `WORD=` is a mistake to report, not a request for the default; so is a
/// value that is not valid UTF-8.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &'static str) -> Result<Option<String>> {
        match std::env::var(key) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::config(key, "is not valid UTF-8")),
        }
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, key: &'static str) -> Result<Option<String>> {
        Ok(self.get(key).map(|v| (*v).to_owned()))
    }
}

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
        /// Admin port to query [env: ADMIN_PORT] [default: 9090].
        #[arg(long)]
        admin_port: Option<String>,
    },
}

/// Raw serve settings as given on the command line; `None` falls back to
/// the environment, then to the default.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// Word to count [env: WORD] [default: the]
    #[arg(long)]
    pub word: Option<String>,
    /// Word comparison: exact | ignore-case [env: WORD_MATCH] [default: exact]
    #[arg(long)]
    pub word_match: Option<String>,
    /// Public HTTP port [env: PORT] [default: 8080]
    #[arg(long)]
    pub port: Option<String>,
    /// Admin port for /healthz, /readyz, /metrics [env: ADMIN_PORT] [default: 9090]
    #[arg(long)]
    pub admin_port: Option<String>,
    /// Address both listeners bind to [env: BIND_ADDRESS] [default: 0.0.0.0]
    #[arg(long)]
    pub bind_address: Option<String>,
    /// Data source: sample | file | bigquery [env: SOURCE] [default: sample]
    #[arg(long)]
    pub source: Option<String>,
    /// CSV (or .csv.gz) file for SOURCE=file [env: DATA_FILE]
    #[arg(long)]
    pub data_file: Option<String>,
    /// Seconds a result stays fresh, at least 1 [env: CACHE_TTL] [default: 300]
    #[arg(long)]
    pub cache_ttl: Option<String>,
    /// Log format: json | text [env: LOG_FORMAT] [default: json]
    #[arg(long)]
    pub log_format: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM [env: DRAIN_TIMEOUT] [default: 10]
    #[arg(long)]
    pub drain_timeout: Option<String>,
    /// Seconds a client gets to send the request headers, and an idle keep-alive connection stays open [env: HEADER_READ_TIMEOUT] [default: 10]
    #[arg(long)]
    pub header_read_timeout: Option<String>,
    /// Seconds an answer may go unread before the connection is closed [env: WRITE_TIMEOUT] [default: 10]
    #[arg(long)]
    pub write_timeout: Option<String>,
    /// Seconds a request may take end to end [env: REQUEST_TIMEOUT] [default: 30]
    #[arg(long)]
    pub request_timeout: Option<String>,
    /// Concurrent connections per listener before new ones are refused [env: MAX_CONNECTIONS] [default: 10000]
    #[arg(long)]
    pub max_connections: Option<String>,
    /// GCP project that runs and pays for query jobs [env: BIGQUERY_PROJECT]
    #[arg(long)]
    pub bigquery_project: Option<String>,
    /// Table to query [env: BIGQUERY_TABLE] [default: bigquery-public-data.samples.shakespeare]
    #[arg(long)]
    pub bigquery_table: Option<String>,
    /// Upper bound on bytes billed per query job [env: BIGQUERY_MAX_BYTES_BILLED] [default: 104857600]
    #[arg(long)]
    pub bigquery_max_bytes_billed: Option<String>,
    /// Seconds one refresh may take, retries included [env: BIGQUERY_TIMEOUT] [default: 20]
    #[arg(long)]
    pub bigquery_timeout: Option<String>,
    /// Location for query jobs, e.g. US [env: BIGQUERY_LOCATION]
    #[arg(long)]
    pub bigquery_location: Option<String>,
    /// API root, for emulators and tests, e.g. http://127.0.0.1:9050 [env: BIGQUERY_ENDPOINT]
    #[arg(long)]
    pub bigquery_endpoint: Option<String>,
    /// Credentials: google | none (none needs BIGQUERY_ENDPOINT) [env: BIGQUERY_AUTH] [default: google]
    #[arg(long)]
    pub bigquery_auth: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordMatch {
    Exact,
    IgnoreCase,
}

impl WordMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            WordMatch::Exact => "exact",
            WordMatch::IgnoreCase => "ignore-case",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigQueryAuth {
    Google,
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

impl Config {
    /// Validates flags and environment into a [`Config`]. The first problem
    /// found is returned; nothing is bound or opened here.
    pub fn load(args: &ServeArgs, env: &dyn Env) -> Result<Config> {
        let get = |flag: &Option<String>, var: &'static str| match flag {
            Some(value) => Ok(Some(value.clone())),
            None => env.var(var),
        };

        let word = validate_word(get(&args.word, "WORD")?.unwrap_or_else(|| "the".into()))?;
        let word_match = match get(&args.word_match, "WORD_MATCH")?.as_deref() {
            None | Some("exact") => WordMatch::Exact,
            Some("ignore-case") => WordMatch::IgnoreCase,
            Some(other) => return Err(Error::config("WORD_MATCH", unknown(other, "exact, ignore-case"))),
        };
        let bind_address = match get(&args.bind_address, "BIND_ADDRESS")? {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(s) => s.parse().map_err(|_| Error::config("BIND_ADDRESS", format!("{s:?} is not an IP address")))?,
        };
        let port = parse_port(get(&args.port, "PORT")?, "PORT", 8080)?;
        let admin_port = parse_port(get(&args.admin_port, "ADMIN_PORT")?, "ADMIN_PORT", 9090)?;
        if port == admin_port && port != 0 {
            return Err(Error::config("ADMIN_PORT", format!("must differ from PORT ({port})")));
        }

        let source = match get(&args.source, "SOURCE")?.as_deref() {
            None | Some("sample") => SourceConfig::Sample,
            Some("file") => match get(&args.data_file, "DATA_FILE")? {
                Some(path) => SourceConfig::File(PathBuf::from(path)),
                None => return Err(Error::config("DATA_FILE", "is required with SOURCE=file")),
            },
            Some("bigquery") => SourceConfig::BigQuery(load_bigquery(args, env)?),
            Some(other) => return Err(Error::config("SOURCE", unknown(other, "sample, file, bigquery"))),
        };

        let log_format = match get(&args.log_format, "LOG_FORMAT")?.as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => return Err(Error::config("LOG_FORMAT", unknown(other, "json, text"))),
        };

        let max_connections = parse_number(get(&args.max_connections, "MAX_CONNECTIONS")?, "MAX_CONNECTIONS", 10_000)?;
        if max_connections == 0 {
            return Err(Error::config("MAX_CONNECTIONS", "must be at least 1"));
        }

        Ok(Config {
            word,
            word_match,
            bind_address,
            port,
            admin_port,
            source,
            // At least a second: 0 would turn the cache off, one query
            // job per request; from 1 s on, single flight keeps it to one
            // job per TTL per instance whatever the traffic.
            cache_ttl: positive(parse_seconds(get(&args.cache_ttl, "CACHE_TTL")?, "CACHE_TTL", 300)?, "CACHE_TTL")?,
            log_format,
            drain_timeout: parse_seconds(get(&args.drain_timeout, "DRAIN_TIMEOUT")?, "DRAIN_TIMEOUT", 10)?,
            header_read_timeout: positive(
                parse_seconds(get(&args.header_read_timeout, "HEADER_READ_TIMEOUT")?, "HEADER_READ_TIMEOUT", 10)?,
                "HEADER_READ_TIMEOUT",
            )?,
            write_timeout: positive(
                parse_seconds(get(&args.write_timeout, "WRITE_TIMEOUT")?, "WRITE_TIMEOUT", 10)?,
                "WRITE_TIMEOUT",
            )?,
            request_timeout: positive(
                parse_seconds(get(&args.request_timeout, "REQUEST_TIMEOUT")?, "REQUEST_TIMEOUT", 30)?,
                "REQUEST_TIMEOUT",
            )?,
            max_connections: max_connections as usize,
        })
    }
}

/// The admin port alone, for `wordcount healthcheck`.
pub fn admin_port(flag: Option<String>, env: &dyn Env) -> Result<u16> {
    let raw = match flag {
        Some(value) => Some(value),
        None => env.var("ADMIN_PORT")?,
    };
    parse_port(raw, "ADMIN_PORT", 9090)
}

fn load_bigquery(args: &ServeArgs, env: &dyn Env) -> Result<BigQueryConfig> {
    let get = |flag: &Option<String>, var: &'static str| match flag {
        Some(value) => Ok(Some(value.clone())),
        None => env.var(var),
    };

    let project = get(&args.bigquery_project, "BIGQUERY_PROJECT")?
        .ok_or_else(|| Error::config("BIGQUERY_PROJECT", "is required with SOURCE=bigquery"))?;
    if !is_project_id(&project) {
        return Err(Error::config(
            "BIGQUERY_PROJECT",
            format!("{project:?} is not a GCP project id (lowercase letters, digits, '-', optionally 'domain:')"),
        ));
    }
    let table = get(&args.bigquery_table, "BIGQUERY_TABLE")?.unwrap_or_else(|| DEFAULT_TABLE.into());
    validate_table(&table)?;

    let endpoint = get(&args.bigquery_endpoint, "BIGQUERY_ENDPOINT")?;
    if let Some(url) = &endpoint {
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some() && u.query().is_none());
        if !valid {
            return Err(Error::config("BIGQUERY_ENDPOINT", format!("{url:?} is not an http(s) URL")));
        }
    }
    let auth = match get(&args.bigquery_auth, "BIGQUERY_AUTH")?.as_deref() {
        None | Some("google") => BigQueryAuth::Google,
        Some("none") if endpoint.is_some() => BigQueryAuth::None,
        Some("none") => {
            return Err(Error::config(
                "BIGQUERY_AUTH",
                "none is only allowed together with BIGQUERY_ENDPOINT (an emulator)",
            ));
        }
        Some(other) => return Err(Error::config("BIGQUERY_AUTH", unknown(other, "google, none"))),
    };
    let location = get(&args.bigquery_location, "BIGQUERY_LOCATION")?;
    if let Some(loc) = &location
        && (loc.is_empty() || loc.len() > 64 || !loc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(Error::config("BIGQUERY_LOCATION", format!("{loc:?} is not a BigQuery location")));
    }
    let max_bytes_billed = parse_number(
        get(&args.bigquery_max_bytes_billed, "BIGQUERY_MAX_BYTES_BILLED")?,
        "BIGQUERY_MAX_BYTES_BILLED",
        100 * 1024 * 1024,
    )?;
    if max_bytes_billed == 0 {
        return Err(Error::config("BIGQUERY_MAX_BYTES_BILLED", "must be at least 1"));
    }
    let timeout = positive(
        parse_seconds(get(&args.bigquery_timeout, "BIGQUERY_TIMEOUT")?, "BIGQUERY_TIMEOUT", 20)?,
        "BIGQUERY_TIMEOUT",
    )?;

    let credentials_file = env.var("GOOGLE_APPLICATION_CREDENTIALS")?.map(PathBuf::from);

    Ok(BigQueryConfig { project, table, max_bytes_billed, timeout, location, endpoint, auth, credentials_file })
}

fn validate_word(word: String) -> Result<String> {
    if word.trim().is_empty() {
        return Err(Error::config("WORD", "must not be empty"));
    }
    if word.chars().count() > MAX_WORD_CHARS {
        return Err(Error::config("WORD", format!("must be at most {MAX_WORD_CHARS} characters")));
    }
    if word.chars().any(char::is_control) {
        return Err(Error::config("WORD", "must not contain control characters"));
    }
    Ok(word)
}

/// GCP project ids: 6-30 of `[a-z0-9-]`, optionally prefixed by a
/// `domain.example:` for domain-scoped projects.
fn is_project_id(s: &str) -> bool {
    let id = match s.rsplit_once(':') {
        Some((domain, id)) => {
            if domain.is_empty()
                || !domain.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c))
            {
                return false;
            }
            id
        }
        None => s,
    };
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
}

/// `project.dataset.table` with a conservative character set, so that the
/// name can be put between backticks in SQL without any escaping question.
fn validate_table(table: &str) -> Result<()> {
    let parts: Vec<&str> = table.split('.').collect();
    let ok = match parts.as_slice() {
        [project, dataset, name] => {
            is_project_id(project) && is_identifier(dataset, false) && is_identifier(name, true)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "BIGQUERY_TABLE",
            format!("{table:?} is not project.dataset.table (letters, digits, '_'; '-' in the project and table)"),
        ))
    }
}

fn is_identifier(s: &str, dash_allowed: bool) -> bool {
    (1..=1024).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash_allowed && c == '-'))
}

fn unknown(value: &str, allowed: &str) -> String {
    format!("{value:?} is not one of: {allowed}")
}

fn parse_number(raw: Option<String>, var: &'static str, default: u64) -> Result<u64> {
    match raw {
        None => Ok(default),
        Some(s) => {
            s.trim().parse().map_err(|_| Error::config(var, format!("{s:?} is not a non-negative whole number")))
        }
    }
}

/// Longest duration setting accepted (a year): far beyond any sensible TTL
/// or timeout, and far from where `Instant + Duration` overflows, which
/// panics (the config fuzz target found `CACHE_TTL=18446744073709551615`
/// accepted, and the first cache hit then crashed the process).
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

fn parse_seconds(raw: Option<String>, var: &'static str, default: u64) -> Result<Duration> {
    let seconds = parse_number(raw, var, default)?;
    if seconds > MAX_SECONDS {
        return Err(Error::config(var, format!("{seconds} is more than {MAX_SECONDS} seconds (a year)")));
    }
    Ok(Duration::from_secs(seconds))
}

fn positive(d: Duration, var: &'static str) -> Result<Duration> {
    if d.is_zero() { Err(Error::config(var, "must be at least 1 second")) } else { Ok(d) }
}

fn parse_port(raw: Option<String>, var: &'static str, default: u16) -> Result<u16> {
    match raw {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| Error::config(var, format!("{s:?} is not a port number (0-65535)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::load(&ServeArgs::default(), &env)
    }

    fn config_error(vars: &[(&str, &str)]) -> (String, String) {
        match load(vars) {
            Err(Error::Config { var, problem }) => (var.to_owned(), problem),
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
        let args = ServeArgs { word: Some("coffee".into()), ..Default::default() };
        let config = Config::load(&args, &env).expect("valid");
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
    fn words_with_markup_and_quotes_are_valid_words() {
        let config = load(&[("WORD", "<b>o'er</b>\"")]).expect("markup is escaped on output, not rejected");
        assert_eq!(config.word, "<b>o'er</b>\"");
    }
}

//! The rules for single settings' values, which clap calls as value
//! parsers: each returns the problem in words, and `config` names the
//! variable it came from.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::filter::Targets;

use super::{MAX_SECONDS, MAX_WORD_CHARS};

pub(super) type Parsed<T> = std::result::Result<T, String>;

pub(super) fn word(word: &str) -> Parsed<String> {
    if word.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if word.chars().count() > MAX_WORD_CHARS {
        return Err(format!("must be at most {MAX_WORD_CHARS} characters"));
    }
    if word.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(word.to_owned())
}

/// Any path, the empty one included: opening it is what fails, naming the
/// variable (clap's own path parser refuses `DATA_FILE=` as a missing value).
pub(super) fn path(s: &str) -> Parsed<PathBuf> {
    Ok(PathBuf::from(s))
}

/// `RUST_LOG`: a level, and levels per target. `EnvFilter`'s span and field
/// directives (`[span{field=value}]`) are refused rather than taken for
/// target names that never match.
pub(super) fn log_filter(s: &str) -> Parsed<Targets> {
    if s.trim().is_empty() {
        return Err("must not be empty (unset, it is info)".into());
    }
    if s.contains(['[', ']', '{', '}']) {
        return Err(format!(
            "{s:?}: span and field directives are not supported, only LEVEL and TARGET=LEVEL, comma-separated"
        ));
    }
    s.parse().map_err(|e| format!("{s:?}: {e}"))
}

pub(super) fn port(s: &str) -> Parsed<u16> {
    s.trim().parse().map_err(|_| format!("{s:?} is not a port number (0-65535)"))
}

pub(super) fn ip_address(s: &str) -> Parsed<IpAddr> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

pub(super) fn whole<T: std::str::FromStr>(s: &str) -> Parsed<T> {
    s.trim().parse().map_err(|_| format!("{s:?} is not a non-negative whole number"))
}

pub(super) fn at_least_one<T: std::str::FromStr + PartialEq + From<u8>>(s: &str) -> Parsed<T> {
    let n = whole(s)?;
    if n == T::from(0) { Err("must be at least 1".into()) } else { Ok(n) }
}

pub(super) fn seconds(s: &str) -> Parsed<Duration> {
    let seconds = whole(s)?;
    if seconds > MAX_SECONDS {
        return Err(format!("{seconds} is more than {MAX_SECONDS} seconds (a year)"));
    }
    Ok(Duration::from_secs(seconds))
}

pub(super) fn positive_seconds(s: &str) -> Parsed<Duration> {
    let d = seconds(s)?;
    if d.is_zero() { Err("must be at least 1 second".into()) } else { Ok(d) }
}

pub(super) fn project_id(s: &str) -> Parsed<String> {
    if is_project_id(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a GCP project id (lowercase letters, digits, '-', optionally 'domain:')"))
    }
}

/// GCP project ids: 6-30 of `[a-z0-9-]`, optionally prefixed by a
/// `domain.example:` for domain-scoped projects.
pub(super) fn is_project_id(s: &str) -> bool {
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
pub(super) fn table(table: &str) -> Parsed<String> {
    let parts: Vec<&str> = table.split('.').collect();
    let ok = match parts.as_slice() {
        [project, dataset, name] => {
            is_project_id(project) && is_identifier(dataset, false) && is_identifier(name, true)
        }
        _ => false,
    };
    if ok {
        Ok(table.to_owned())
    } else {
        Err(format!("{table:?} is not project.dataset.table (letters, digits, '_'; '-' in the project and table)"))
    }
}

pub(super) fn is_identifier(s: &str, dash_allowed: bool) -> bool {
    (1..=1024).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (dash_allowed && c == '-'))
}

pub(super) fn location(loc: &str) -> Parsed<String> {
    if loc.is_empty() || loc.len() > 64 || !loc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("{loc:?} is not a BigQuery location"));
    }
    Ok(loc.to_owned())
}

pub(super) fn endpoint(url: &str) -> Parsed<String> {
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some() && u.query().is_none());
    if valid { Ok(url.to_owned()) } else { Err(format!("{url:?} is not an http(s) URL")) }
}

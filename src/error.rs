//! The library's one error type.
//!
//! Every failure the service can meet at its boundary is a variant here, and
//! this module is the only place that decides what a failure *means*: the
//! metric label it is counted under ([`Error::reason`]), whether a retry can
//! help ([`Error::is_retryable`]) and the HTTP status a user sees
//! ([`Error::status`]). Handlers, the cache and the sources only construct
//! and pass these along.

use http::StatusCode;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Configuration that cannot work; the process exits with code 64.
    #[error("{var}: {problem}")]
    Config { var: String, problem: String },

    /// Credentials could not be obtained or were rejected (HTTP 401).
    #[error("authentication failed: {0}")]
    Auth(String),

    /// The identity lacks a permission (HTTP 403 `accessDenied`).
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// Quota or rate limit hit (HTTP 429, `rateLimitExceeded`).
    #[error("rate limited: {0}")]
    RateLimited(String),

    /// The query would cost more than `BIGQUERY_MAX_BYTES_BILLED` allows.
    #[error("query exceeds the bytes-billed limit: {0}")]
    BytesBilledLimit(String),

    /// The upstream answered with a server error (HTTP 5xx, `backendError`).
    #[error("upstream error (HTTP {status}): {message}")]
    Upstream { status: u16, message: String },

    /// The upstream rejected the request as invalid (other 4xx).
    #[error("upstream rejected the query (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },

    /// No answer within the configured time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// Connection refused, reset or otherwise broken before an answer.
    #[error("transport error: {0}")]
    Transport(String),

    /// The answer arrived but could not be understood.
    #[error("malformed response: {0}")]
    Malformed(String),

    /// Local data (sample or file) could not be read or parsed.
    #[error("bad data: {0}")]
    Data(String),
}

/// Every label [`Error::reason`] can return for a data-source failure, so
/// the metrics can start each series at zero.
pub const SOURCE_ERROR_REASONS: [&str; 10] = [
    "auth",
    "permission_denied",
    "rate_limited",
    "bytes_billed_limit",
    "upstream_5xx",
    "rejected",
    "timeout",
    "transport",
    "malformed_response",
    "bad_data",
];

impl Error {
    pub fn config(var: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Config { var: var.into(), problem: problem.into() }
    }

    /// The low-cardinality label under which this failure is counted and
    /// logged (`reason` in metrics and log lines).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::Auth(_) => "auth",
            Error::PermissionDenied(_) => "permission_denied",
            Error::RateLimited(_) => "rate_limited",
            Error::BytesBilledLimit(_) => "bytes_billed_limit",
            Error::Upstream { .. } => "upstream_5xx",
            Error::Rejected { .. } => "rejected",
            Error::Timeout(_) => "timeout",
            Error::Transport(_) => "transport",
            Error::Malformed(_) => "malformed_response",
            Error::Data(_) => "bad_data",
        }
    }

    /// Whether trying the same request again may succeed. Only transient
    /// upstream conditions qualify; a wrong credential or a permission stays
    /// wrong however often it is retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited(_) | Error::Upstream { .. } | Error::Transport(_) | Error::Malformed(_))
    }

    /// What a user is told when no data at all can be served: the data
    /// source is unavailable, whatever the cause, so always 503.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Config { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retryable() {
        assert!(Error::RateLimited("x".into()).is_retryable());
        assert!(Error::Upstream { status: 503, message: "x".into() }.is_retryable());
        assert!(Error::Transport("reset".into()).is_retryable());
        assert!(!Error::Auth("bad key".into()).is_retryable());
        assert!(!Error::PermissionDenied("x".into()).is_retryable());
        assert!(!Error::BytesBilledLimit("x".into()).is_retryable());
        assert!(!Error::Timeout(std::time::Duration::from_secs(1)).is_retryable());
    }

    #[test]
    fn source_failures_are_503_with_distinct_labels() {
        let errors = [
            Error::Auth(String::new()),
            Error::PermissionDenied(String::new()),
            Error::RateLimited(String::new()),
            Error::BytesBilledLimit(String::new()),
            Error::Upstream { status: 500, message: String::new() },
            Error::Rejected { status: 400, message: String::new() },
            Error::Timeout(std::time::Duration::ZERO),
            Error::Transport(String::new()),
            Error::Malformed(String::new()),
            Error::Data(String::new()),
        ];
        let mut labels: Vec<_> = errors.iter().map(Error::reason).collect();
        assert!(errors.iter().all(|e| e.status() == StatusCode::SERVICE_UNAVAILABLE));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), errors.len());
        let mut listed = SOURCE_ERROR_REASONS.to_vec();
        listed.sort_unstable();
        assert_eq!(labels, listed, "SOURCE_ERROR_REASONS lists exactly the source failure labels");
    }
}

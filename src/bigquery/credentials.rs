//! Where BigQuery's tokens come from: the configured key file, or gcp_auth's
//! search (application-default credentials, then the metadata server),
//! found on first use and dropped after an authentication failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::{BigQueryAuth, BigQuerySettings};
use crate::error::{Error, Result};

/// Running a query creates a job, which the read-only scope does not allow;
/// what the identity may do is limited by IAM (jobUser + dataViewer).
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// Where tokens come from: the key file, or gcp_auth's search when unset.
pub(super) struct Credentials {
    key_file: Option<PathBuf>,
    /// Built on first use (see the module docs); emptied to get a fresh
    /// token after an authentication failure.
    provider: Mutex<Option<Arc<dyn gcp_auth::TokenProvider>>>,
}

fn key_file_provider(path: &Path) -> Result<Arc<dyn gcp_auth::TokenProvider>> {
    let provider = gcp_auth::CustomServiceAccount::from_file(path)
        .map_err(|e| Error::config("GOOGLE_APPLICATION_CREDENTIALS", format!("{}: {e}", path.display())))?;
    Ok(Arc::new(provider))
}

impl Credentials {
    /// `None` with `BIGQUERY_AUTH=none`. A configured key file must be
    /// readable and valid, or start-up stops with a config error.
    pub(super) fn new(config: &BigQuerySettings) -> Result<Option<Self>> {
        Ok(match (config.auth, &config.credentials_file) {
            (BigQueryAuth::None, _) => None,
            (BigQueryAuth::Google, Some(path)) => {
                let provider = key_file_provider(path)?;
                let account = key_file_account(path);
                tracing::info!(credentials = "service-account key file", account, "BigQuery credentials");
                Some(Credentials { key_file: Some(path.clone()), provider: Mutex::new(Some(provider)) })
            }
            (BigQueryAuth::Google, None) => Some(Credentials { key_file: None, provider: Mutex::new(None) }),
        })
    }

    pub(super) async fn token(&self) -> Result<String> {
        match self.provider().await?.token(&[SCOPE]).await {
            Ok(token) => Ok(token.as_str().to_owned()),
            Err(err) => Err(token_error(&err)),
        }
    }

    /// The next token comes from a new provider, not gcp_auth's cache.
    pub(super) async fn forget(&self) {
        *self.provider.lock().await = None;
    }

    async fn provider(&self) -> Result<Arc<dyn gcp_auth::TokenProvider>> {
        let mut slot = self.provider.lock().await;
        if let Some(provider) = &*slot {
            return Ok(Arc::clone(provider));
        }
        let provider = match &self.key_file {
            Some(path) => key_file_provider(path)?,
            None => find_provider().await?,
        };
        *slot = Some(Arc::clone(&provider));
        Ok(provider)
    }
}

/// gcp_auth's order, minus the gcloud CLI (not in the image), with the kind
/// found logged.
async fn find_provider() -> Result<Arc<dyn gcp_auth::TokenProvider>> {
    match gcp_auth::ConfigDefaultCredentials::new().await {
        Ok(provider) => {
            tracing::info!(credentials = "gcloud application-default credentials", "BigQuery credentials");
            return Ok(Arc::new(provider));
        }
        Err(err) => tracing::debug!(error = %err, "no application-default credentials"),
    }
    match gcp_auth::MetadataServiceAccount::new().await {
        Ok(provider) => {
            let project =
                gcp_auth::TokenProvider::project_id(&provider).await.map(|p| p.to_string()).unwrap_or_default();
            tracing::info!(credentials = "metadata server (workload identity)", project, "BigQuery credentials");
            Ok(Arc::new(provider))
        }
        Err(err) => Err(Error::Auth(format!(
            "no credentials: GOOGLE_APPLICATION_CREDENTIALS unset, no application-default credentials, metadata server: {err}"
        ))),
    }
}

/// The `client_email` of a key file, for the log line; never the key.
fn key_file_account(path: &Path) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|key| key.get("client_email")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A token could not be had. The token endpoint out of reach is a
/// transport failure, retried like any other; a refusal is `auth`.
fn token_error(err: &gcp_auth::Error) -> Error {
    let message = format!("token request failed: {err}");
    // gcp_auth's variants for "no answer": a broken response, or the
    // request failing before one (connection refused, TLS, DNS).
    match err {
        gcp_auth::Error::Http(..) | gcp_auth::Error::Other("HTTP request failed", _) => Error::Transport(message),
        _ => Error::Auth(message),
    }
}

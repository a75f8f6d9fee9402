// semgrep --test fixture: `ruleid:` lines must fire, `ok:` lines must not.
use tracing::{debug, info, warn};

fn bad(token: &str, creds: &Credentials, req: &Request) {
    // ruleid: rust-secret-in-log
    info!(token = %token, "fetched an access token");
    // ruleid: rust-secret-in-log
    debug!("using {}", token);
    // ruleid: rust-secret-in-log
    tracing::debug!(access_token = ?creds.access_token, "auth");
    // ruleid: rust-secret-in-log
    warn!(?token, "refresh failed");
    tracing::warn!(
        uri = %req.uri(),
        // ruleid: rust-secret-in-log
        authorization = ?req.headers().get(http::header::AUTHORIZATION),
        "request"
    );
    // ruleid: rust-secret-in-log
    info!("service account key {creds_private_key}");
    // ruleid: rust-secret-in-log
    tracing::error!(client_secret = %creds.client_secret, "config");
}

// Anything naming the token inside the macro is flagged, even token.expires_in():
// compute the field first.
fn good(token: &Token, word: &str) {
    // ok: rust-secret-in-log
    info!("access token refreshed");
    // ok: rust-secret-in-log
    let expires_in = token.expires_in().as_secs();
    // ok: rust-secret-in-log
    info!(expires_in, "access token refreshed for {}", word);
    // ok: rust-secret-in-log
    debug!(word = %word, tokenized = true, "query");
    // ok: rust-secret-in-log
    info!(credentials = "metadata server (workload identity)", "BigQuery credentials");
    // ok: rust-secret-in-log
    debug!(error = %word, "no application-default credentials");
    // ok: rust-secret-in-log
    println!("not a log macro: {}", word);
}

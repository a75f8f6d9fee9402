//! The fake Google over HTTPS on 127.0.0.1, for the image's TLS test
//! (scripts/image/test-image.sh): the container trusts, or does not trust,
//! the CA that signed `--cert`.
//!
//!   fake-google --cert SERVER.pem --key SERVER.key --project P --port-file F --log F
//!
//! BigQuery for project P without auth (the test runs `BIGQUERY_AUTH=none`),
//! answering from the sample table. Every handshake and request is appended to `--log`
//! as a JSON line (`tls_ok`, `tls_error` with the client's alert,
//! `request`), so the test can tell "the client refused our certificate"
//! from "the client never came". Serves until killed; the port it got is
//! written to `--port-file`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

#[derive(Parser)]
struct Args {
    /// PEM certificate chain the server presents.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key of the certificate.
    #[arg(long)]
    key: PathBuf,
    /// The only project whose jobs it runs; others are not found.
    #[arg(long)]
    project: String,
    /// File the listening port is written to once the server is up.
    #[arg(long)]
    port_file: PathBuf,
    /// File the JSON event lines are appended to.
    #[arg(long)]
    log: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let chain = CertificateDer::pem_file_iter(&args.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)?;
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&args.log)?;
    let fake = testkit::FakeGcp::start_tls(Arc::new(config).into(), args.project, log).await;
    std::fs::write(&args.port_file, fake.port().to_string())?;
    std::future::pending().await
}

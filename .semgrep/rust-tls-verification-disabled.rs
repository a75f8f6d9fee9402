// semgrep --test fixture: `ruleid:` lines must fire, `ok:` lines must not.
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};

fn bad_reqwest() -> reqwest::Client {
    // ruleid: rust-tls-verification-disabled
    let builder = reqwest::Client::builder().danger_accept_invalid_certs(true);
    builder.build().unwrap_or_default()
}

fn bad_hostnames(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    // ruleid: rust-tls-verification-disabled
    b.danger_accept_invalid_hostnames(true)
}

fn bad_rustls(config: &mut rustls::ClientConfig) {
    // ruleid: rust-tls-verification-disabled
    config.dangerous().set_certificate_verifier(Arc::new(NoVerify));
}

fn bad_builder() -> rustls::ClientConfig {
    // ruleid: rust-tls-verification-disabled
    rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(NoVerify)).with_no_client_auth()
}

#[derive(Debug)]
struct NoVerify;

// ruleid: rust-tls-verification-disabled
impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(&self) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

#[derive(Debug)]
struct AlsoNoVerify;

// ruleid: rust-tls-verification-disabled
impl rustls::client::danger::ServerCertVerifier for AlsoNoVerify {
    fn verify_server_cert(&self) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

fn good(extra_ca: rustls::pki_types::CertificateDer<'static>) -> Result<reqwest::Client, reqwest::Error> {
    let mut roots = rustls::RootCertStore::empty();
    // ok: rust-tls-verification-disabled
    roots.add(extra_ca).ok();
    // ok: rust-tls-verification-disabled
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    // ok: rust-tls-verification-disabled
    reqwest::Client::builder().use_preconfigured_tls(tls).https_only(true).build()
}

// Other trait impls are fine.
struct Plain;
// ok: rust-tls-verification-disabled
impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain")
    }
}

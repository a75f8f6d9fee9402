//! imgsign: cosign-format image signatures without the cosign binary.
//!
//! The release rehearsal runs on machines that have no cosign binary and no
//! access to Fulcio/Rekor, so it signs with a key pair instead of keyless.
//! Everything this tool writes is in cosign's own formats, so the real
//! `cosign verify --key` accepts its signatures and it accepts cosign's:
//!
//! * key pair: `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (scrypt + secretbox,
//!   password from `COSIGN_PASSWORD`, as cosign does) and a PEM public key;
//! * signature: a simplesigning payload whose `docker-manifest-digest` is the
//!   image digest, signed with ECDSA P-256, pushed as the image manifest
//!   tagged `sha256-<hex>.sig` next to the image.
//!
//! Verification is sigstore-rs's own (`trusted_signature_layers` +
//! `PublicKeyVerifier`). Only when it fails does this tool look at the raw
//! signature manifest itself, to tell the operator *why* in plain words.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{ClientBuilder, Constraint, CosignCapabilities, SignatureLayer, verify_constraints};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
use zeroize::Zeroizing;

/// Annotation in which cosign stores the base64 signature of a layer.
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type of a cosign simplesigning payload layer.
const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// Exit codes, so scripts can tell a refused image from a broken invocation.
const EXIT_REFUSED: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(version, about = "Sign and verify container images in cosign's key-based format")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write PREFIX.key (encrypted with $COSIGN_PASSWORD) and PREFIX.pub
    GenerateKeyPair {
        /// Path prefix of the two files (like cosign's --output-key-prefix)
        #[arg(long, default_value = "cosign")]
        output_key_prefix: PathBuf,
    },
    /// Sign IMAGE@sha256:DIGEST and push the signature as the sha256-DIGEST.sig tag
    Sign {
        /// Encrypted private key (password from $COSIGN_PASSWORD)
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryOpts,
        /// Image reference by digest: REGISTRY/REPO@sha256:HEX
        image: String,
    },
    /// Verify that IMAGE@sha256:DIGEST carries a signature made by KEY's private half
    Verify {
        /// PEM public key
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryOpts,
        /// Image reference by digest: REGISTRY/REPO@sha256:HEX
        image: String,
    },
    /// Print the public key of an encrypted private key (like `cosign public-key`)
    PublicKey {
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(clap::Args)]
struct RegistryOpts {
    /// Talk plain HTTP to the registry. Only accepted for loopback registries
    /// (127.0.0.1, localhost, [::1]): the rehearsal registry has no TLS, and
    /// nothing else should ever be reached without it.
    #[arg(long)]
    allow_http_registry: bool,
}

/// Why a verification was refused. Each variant is one plain sentence for the
/// operator; the deploy step prints it and stops.
#[derive(Debug)]
enum Refusal {
    TagNotDigest(String),
    ImageMissing(String, String),
    Unsigned(String, String),
    CopiedSignature(String, Vec<String>),
    OtherKey(String, PathBuf),
    Unexplained(String, String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TagNotDigest(image) => write!(
                f,
                "REFUSED (tag, not digest): {image} names a tag, and a tag can be moved to \
                 other content after it was signed. Verify and deploy by digest: \
                 REPO@sha256:<hex> (resolve it once with \
                 `skopeo inspect --format '{{{{.Digest}}}}' docker://{image}`)."
            ),
            Refusal::ImageMissing(image, err) => write!(
                f,
                "REFUSED (cannot read image): {image} could not be read from its registry \
                 (missing, or the registry is unreachable: {err})."
            ),
            Refusal::Unsigned(image, sig_tag) => write!(
                f,
                "REFUSED (unsigned): {image} has no signature (no {sig_tag} tag in the \
                 repository). Either it was never signed, or a tag was moved to new, \
                 unsigned content after signing."
            ),
            Refusal::CopiedSignature(image, signed) => write!(
                f,
                "REFUSED (signature for another image): the signature stored for {image} \
                 was made for {} — it was copied from another image and says nothing about \
                 this one.",
                signed.join(", ")
            ),
            Refusal::OtherKey(image, key) => write!(
                f,
                "REFUSED (wrong signer): {image} is signed, but not by the private half of \
                 {}: the signature was made by another key.",
                key.display()
            ),
            Refusal::Unexplained(image, err) => {
                write!(f, "REFUSED: signature verification of {image} failed: {err}")
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgsign: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(refusal)) => {
            eprintln!("imgsign: {refusal}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(e) => {
            eprintln!("imgsign: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Outer error: the tool could not do its job (bad key, bad flags, I/O).
/// Inner error: the job was done and the image was refused.
async fn run(cli: Cli) -> Result<std::result::Result<(), Refusal>> {
    match cli.command {
        Command::GenerateKeyPair { output_key_prefix } => {
            generate_key_pair(&output_key_prefix)?;
            Ok(Ok(()))
        }
        Command::PublicKey { key } => {
            let pair = load_private_key(&key)?;
            print!("{}", pair.public_key_to_pem()?.replace("\r\n", "\n"));
            Ok(Ok(()))
        }
        Command::Sign { key, registry, image } => {
            let image = match parse_digest_ref(&image)? {
                Ok(r) => r,
                Err(refusal) => return Ok(Err(refusal)),
            };
            sign(&key, &registry, &image).await?;
            Ok(Ok(()))
        }
        Command::Verify { key, registry, image } => {
            let image = match parse_digest_ref(&image)? {
                Ok(r) => r,
                Err(refusal) => return Ok(Err(refusal)),
            };
            verify(&key, &registry, &image).await
        }
    }
}

fn password() -> Result<Zeroizing<Vec<u8>>> {
    // Same variable as cosign, so CI secrets and docs carry over unchanged.
    let pw =
        std::env::var("COSIGN_PASSWORD").context("COSIGN_PASSWORD is not set (use an empty value for no password)")?;
    Ok(Zeroizing::new(pw.into_bytes()))
}

fn generate_key_pair(prefix: &Path) -> Result<()> {
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    let pw = password()?;
    let pair = SigningScheme::ECDSA_P256_SHA256_ASN1.create_signer()?.to_sigstore_keypair()?;
    // The pem crate writes CRLF line endings; cosign writes LF. Both parse,
    // but LF keeps the committed public key diff- and grep-friendly.
    let private_pem = Zeroizing::new(pair.private_key_to_encrypted_pem(&pw)?.replace("\r\n", "\n"));
    // create_new: never overwrite an existing key, as cosign refuses too.
    let mut f = open_private(&key_path)?;
    f.write_all(private_pem.as_bytes())?;
    fs::write(&pub_path, pair.public_key_to_pem()?.replace("\r\n", "\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    eprintln!("Private key written to {}\nPublic key written to {}", key_path.display(), pub_path.display());
    Ok(())
}

#[cfg(unix)]
fn open_private(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite a key)", path.display()))
}

fn load_private_key(path: &Path) -> Result<SigStoreKeyPair> {
    let pem = Zeroizing::new(fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    let pw = password()?;
    // Encrypted PEMs go through the scrypt/secretbox KDF even with an empty
    // password (cosign allows that); sigstore's PrivateKeySigner would treat
    // an empty password as "unencrypted" and fail.
    SigStoreKeyPair::from_encrypted_pem(&pem, &pw)
        .map_err(|e| anyhow!("cannot decrypt {} with $COSIGN_PASSWORD: {e}", path.display()))
}

/// Accept only `REGISTRY/REPO@sha256:<64 hex>`; a tag (alone or next to the
/// digest) is refused, because what is signed and deployed is content, not a
/// name that can move.
fn parse_digest_ref(image: &str) -> Result<std::result::Result<OciReference, Refusal>> {
    let Some((name, digest)) = image.split_once('@') else {
        return Ok(Err(Refusal::TagNotDigest(image.to_string())));
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        // `repo:tag@sha256:...` is legal for registries but ambiguous for
        // humans; insist on one identity.
        bail!("{image}: give either a digest or a tag, not both (use REPO@sha256:<hex>)");
    }
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| anyhow!("{image}: only sha256 digests are accepted"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("{image}: the digest must be sha256: followed by 64 lowercase hex characters");
    }
    let reference: OciReference = image.parse().map_err(|e| anyhow!("{image}: not an image reference: {e}"))?;
    Ok(Ok(reference))
}

fn client_config(opts: &RegistryOpts, image: &OciReference) -> Result<ClientConfig> {
    let mut config = ClientConfig::default();
    if opts.allow_http_registry {
        let registry = image.registry();
        let host = registry
            .rsplit_once(':')
            .map_or(registry, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { registry });
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            bail!("--allow-http-registry is only accepted for a loopback registry, not {registry}");
        }
        config.protocol = ClientProtocol::HttpsExcept(vec![registry.to_string()]);
    }
    Ok(config)
}

async fn sign(key: &Path, opts: &RegistryOpts, image: &OciReference) -> Result<()> {
    let pair = load_private_key(key)?;
    let signer = pair.to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)?;
    let mut client = ClientBuilder::default().with_oci_client_config(client_config(opts, image)?).build()?;
    let auth = Auth::Anonymous;
    // triangulate = HEAD the manifest: proves the digest exists in this
    // repository before anything is signed, and names the .sig tag.
    let (sig_ref, digest) =
        client.triangulate(image, &auth).await.with_context(|| format!("{image}: not found in the registry"))?;
    if Some(digest.as_str()) != image.digest() {
        bail!("registry answered digest {digest} for {image}; refusing to sign");
    }
    let mut layer = SignatureLayer::new_unsigned(image, &digest)?;
    // cosign names the repository here, without tag or digest (the digest is
    // in critical.image); sigstore-rs would write the whole reference.
    layer.simple_signing.critical.identity.docker_reference = format!("{}/{}", image.registry(), image.repository());
    PrivateKeySigner::new_with_signer(signer).add_constraint(&mut layer)?;
    // One signature per .sig manifest: re-signing replaces the previous one.
    // (cosign appends; the rehearsal signs each digest once per run.)
    client
        .push_signature(None, &auth, &sig_ref, vec![layer])
        .await
        .with_context(|| format!("pushing the signature to {sig_ref}"))?;
    eprintln!("Pushed signature for {image} to {sig_ref}");
    Ok(())
}

async fn verify(key: &Path, opts: &RegistryOpts, image: &OciReference) -> Result<std::result::Result<(), Refusal>> {
    let pem = fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let verifier =
        PublicKeyVerifier::try_from(&pem).map_err(|e| anyhow!("{} is not a PEM public key: {e}", key.display()))?;
    let config = client_config(opts, image)?;
    let mut client = ClientBuilder::default().with_oci_client_config(config.clone()).build()?;
    let auth = Auth::Anonymous;
    let shown = image.whole();

    let (sig_ref, digest) = match client.triangulate(image, &auth).await {
        Ok(t) => t,
        Err(e) => return Ok(Err(Refusal::ImageMissing(shown, e.to_string()))),
    };
    if Some(digest.as_str()) != image.digest() {
        return Ok(Err(Refusal::Unexplained(shown, format!("the registry serves {digest} for this digest reference"))));
    }

    // The gate: sigstore-rs fetches the .sig manifest, keeps only layers whose
    // payload names this digest, and the constraint checks the signature.
    let layers = client.trusted_signature_layers(&auth, image).await.unwrap_or_default();
    let constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    if !layers.is_empty() && verify_constraints(&layers, constraints.iter()).is_ok() {
        // Print only the payloads this key signed, as cosign does.
        let verified: Vec<_> = layers
            .iter()
            .filter(|l| constraints.iter().all(|c| c.verify(l).unwrap_or(false)))
            .map(|l| &l.simple_signing)
            .collect();
        eprintln!(
            "\nVerification for {shown} --\nThe following checks were performed on each of these signatures:\n  \
             - The cosign claims were validated (the payload names digest {digest})\n  \
             - The signatures were verified against the specified public key {}",
            key.display()
        );
        println!("{}", serde_json::to_string(&verified)?);
        return Ok(Ok(()));
    }

    // Refused. Find out why, from the raw signature manifest.
    Ok(Err(diagnose(&config, &sig_ref, &digest, &pem, key, shown).await))
}

/// Reads the `.sig` manifest directly (not through the trusted-layer filter)
/// to name the reason a verification failed. Never used to accept anything.
async fn diagnose(
    config: &ClientConfig,
    sig_ref: &OciReference,
    digest: &str,
    pem: &[u8],
    key: &Path,
    shown: String,
) -> Refusal {
    use oci_client::manifest::OciManifest;
    use oci_client::secrets::RegistryAuth;

    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: match &config.protocol {
            ClientProtocol::Http => oci_client::client::ClientProtocol::Http,
            ClientProtocol::Https => oci_client::client::ClientProtocol::Https,
            ClientProtocol::HttpsExcept(h) => oci_client::client::ClientProtocol::HttpsExcept(h.clone()),
        },
        ..Default::default()
    });
    let sig_tag = sig_ref.tag().unwrap_or_default().to_string();
    let reference: oci_client::Reference = match sig_ref.whole().parse() {
        Ok(r) => r,
        Err(e) => return Refusal::Unexplained(shown, e.to_string()),
    };
    let manifest = match client.pull_manifest(&reference, &RegistryAuth::Anonymous).await {
        Ok((OciManifest::Image(m), _)) => m,
        Ok((OciManifest::ImageIndex(_), _)) => {
            return Refusal::Unexplained(shown, format!("{sig_tag} is an index, not a signature"));
        }
        Err(_) => return Refusal::Unsigned(shown, sig_tag),
    };
    let Ok(vkey) = CosignVerificationKey::try_from_pem(pem) else {
        return Refusal::Unexplained(shown, "unusable public key".into());
    };
    let mut signed_for = Vec::new();
    let mut payload_matches = false;
    for layer in manifest.layers.iter().filter(|l| l.media_type == SIMPLESIGNING_MEDIA_TYPE) {
        let mut payload = Vec::new();
        if client.pull_blob(&reference, layer, &mut payload).await.is_err() {
            continue;
        }
        let named = serde_json::from_slice::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| {
                v.pointer("/critical/image/docker-manifest-digest").and_then(|d| d.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| "an unreadable payload".into());
        if named != digest {
            signed_for.push(named);
            continue;
        }
        payload_matches = true;
        let sig = layer.annotations.as_ref().and_then(|a| a.get(SIGNATURE_ANNOTATION));
        if let Some(sig) = sig
            && vkey.verify_signature(Signature::Base64Encoded(sig.as_bytes()), &payload).is_ok()
        {
            // The raw check passes where the gate failed: say so rather than
            // guess.
            return Refusal::Unexplained(shown, "sigstore-rs rejected a signature that verifies on its own".into());
        }
    }
    if payload_matches {
        Refusal::OtherKey(shown, key.to_path_buf())
    } else if !signed_for.is_empty() {
        Refusal::CopiedSignature(shown, signed_for)
    } else {
        Refusal::Unsigned(shown, sig_tag)
    }
}

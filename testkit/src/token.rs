//! The OAuth2 token endpoint a service account talks to, and the JWTs it
//! signs: `POST /token` verifies the RS256 signature of the service
//! account's JWT against the key the fake generated, and its `iss`, `aud`,
//! `scope`, `iat` and `exp`, like Google's token endpoint; it hands out
//! opaque random tokens, which every BigQuery call must then bear.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use hyper::{Response, StatusCode};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde_json::{Value, json};

use crate::serve::{Body, json_response};
use crate::{Mode, Shared, lock, random_hex, unix_now};

/// The scope a token must carry to run query jobs. BigQuery's discovery
/// document lists `bigquery` and `cloud-platform` for `jobs.query`; the
/// read-only scopes do not allow creating jobs.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub const CLIENT_EMAIL: &str = "wordcount-test@wordcount-test.iam.gserviceaccount.com";

pub const KEY_PROJECT: &str = "wordcount-test";

/// Clock skew the token endpoint tolerates on `iat`, as Google does.
const CLOCK_SKEW_SECS: i64 = 60;

/// The RSA key of the test service account: generated once per process
/// (2048-bit keygen takes a moment) and shared by every fake.
pub(crate) struct TestKey {
    private: RsaPrivateKey,
    pub(crate) pkcs8_pem: String,
    pub(crate) key_id: String,
}

pub(crate) fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation");
        let pkcs8_pem = private.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM").to_string();
        TestKey { private, pkcs8_pem, key_id: random_hex(20) }
    })
}

/// A JWT signed with the test service account's key, for tests that send
/// claims gcp_auth would not.
pub fn sign_jwt(claims: &Value) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let signed = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let signature = SigningKey::<Sha256>::new(test_key().private.clone()).sign(signed.as_bytes()).to_bytes();
    format!("{signed}.{}", b64(&signature))
}

pub(crate) fn check_bearer(shared: &Shared, authorization: Option<&str>) -> Result<(), &'static str> {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Err("Request is missing required authentication credential. Expected OAuth 2 access token.");
    };
    match lock(&shared.tokens).get(token) {
        Some(valid_until) if Instant::now() < *valid_until => Ok(()),
        Some(_) => Err("Request had invalid authentication credentials: the access token expired."),
        None => Err("Request had invalid authentication credentials. Expected OAuth 2 access token."),
    }
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(status, &json!({ "error": error, "error_description": description }))
}

pub(crate) fn token_endpoint(shared: &Shared, body: &[u8]) -> Response<Body> {
    shared.counters.token_requests.fetch_add(1, Ordering::SeqCst);
    match shared.take_fault(true) {
        Some(Mode::TokenServerError) => {
            return token_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_failure", "Backend error.");
        }
        Some(_) => return token_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant: account not found"),
        None => {}
    }
    let form: HashMap<_, _> = form_urlencoded::parse(body).collect();
    if form.get("grant_type").map(|g| &**g) != Some(JWT_BEARER) {
        lock(&shared.token_rejections).push("unsupported grant_type".into());
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type.");
    }
    if let Err(problem) = verify_assertion(form.get("assertion").map_or("", |a| &**a), &shared.token_url) {
        lock(&shared.token_rejections).push(problem.clone());
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant", &problem);
    }
    let (expires_in, valid_for) = {
        let s = lock(&shared.settings);
        (s.expires_in, s.valid_for.unwrap_or(Duration::from_secs(s.expires_in)))
    };
    let token = format!("ya29.fake-{}", random_hex(24));
    lock(&shared.tokens).insert(token.clone(), Instant::now() + valid_for);
    shared.counters.tokens_issued.fetch_add(1, Ordering::SeqCst);
    json_response(StatusCode::OK, &json!({ "access_token": token, "expires_in": expires_in, "token_type": "Bearer" }))
}

/// Checks a service account's JWT as Google's token endpoint does.
fn verify_assertion(jwt: &str, token_url: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("Invalid JWT: not three parts".into());
    };
    let header: Value = decode_json(header).ok_or("Invalid JWT: unreadable header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let signature = b64url(signature).ok_or("Invalid JWT Signature.")?;
    let signature = Signature::try_from(signature.as_slice()).map_err(|_| "Invalid JWT Signature.")?;
    let signed = &jwt[..jwt.rfind('.').expect("three parts")];
    VerifyingKey::<Sha256>::new(test_key().private.to_public_key())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;

    let claims: Value = decode_json(claims).ok_or("Invalid JWT: unreadable claims")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    if text("iss") != CLIENT_EMAIL {
        return Err(format!("Invalid grant: account not found ({:?})", text("iss")));
    }
    if text("aud") != token_url {
        return Err(format!("Invalid JWT: Failed audience check ({:?})", text("aud")));
    }
    let scopes: Vec<&str> = text("scope").split_whitespace().collect();
    if !scopes.iter().any(|s| *s == BIGQUERY_SCOPE || *s == CLOUD_PLATFORM_SCOPE) {
        return Err(format!("Invalid OAuth scope: {:?} does not allow BigQuery jobs", text("scope")));
    }
    let now = unix_now();
    let (iat, exp) = (claims.get("iat").and_then(Value::as_i64), claims.get("exp").and_then(Value::as_i64));
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err("Invalid JWT: iat and exp are required".into());
    };
    if exp <= now || iat > now + CLOCK_SKEW_SECS || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
                    Check your iat and exp values in the JWT claim."
            .into());
    }
    Ok(())
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    // gcp_auth pads its JWT parts; RFC 7515 says not to. Accept both.
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(part).ok()
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&b64url(part)?).ok()
}

use std::{path::Path, time::Duration};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair},
};
use base64::Engine as _;
use cortex_backend::auth::{JwtConfig, JwtValidator, KeySource};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use super::*;

const ISSUER: &str = "https://gw.example.com";

/// A PEM `PRIVATE KEY` block of a fresh key on `alg`'s curve.
fn pem_key(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm) -> String {
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn p256() -> String {
    pem_key(&ECDSA_P256_SHA256_FIXED_SIGNING)
}

fn kids(keys: &SigningKeys) -> Vec<String> {
    let set: Value = serde_json::from_slice(&keys.jwks()).unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn claims(aud: &str) -> Value {
    let now = unix_now();
    json!({"iss": ISSUER, "aud": aud, "sub": "ana", "iat": now, "exp": now + 120})
}

/// Verifies `token` the way a backend does: the SDK's validator, the keys
/// from `jwks` given statically.
async fn verify(jwks: &[u8], token: &str, aud: &str) -> Result<Value, String> {
    let set: JwkSet = serde_json::from_slice(jwks).unwrap();
    let mut config = JwtConfig::new(ISSUER, vec![aud.to_string()]);
    config.keys = KeySource::Static(set);
    config.algorithms = vec![Algorithm::ES256];
    config.require_at_jwt = true;
    let v = JwtValidator::new(config).unwrap();
    v.validate(token)
        .await
        .map(|c| c.claims.clone())
        .map_err(|e| e.to_string())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_signed_token_verifies_with_the_published_jwks() {
    let keys = SigningKeys::load(None, ISSUER.into(), Duration::from_secs(120)).unwrap();
    assert!(keys.generated());
    assert_eq!(keys.issuer(), ISSUER);
    assert_eq!(keys.issuer_path(), "");
    let pathed = SigningKeys::load(None, format!("{ISSUER}/gw"), Duration::ZERO).unwrap();
    assert_eq!(pathed.issuer_path(), "/gw");
    let token = keys.sign(&claims("https://crm"), "at+jwt").unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(kids(&keys)[0].as_str()));
    let jwks = keys.jwks();
    let got = verify(&jwks, &token, "https://crm").await.unwrap();
    assert_eq!(got["sub"], "ana");
    // Another audience, or another gateway's keys, do not verify.
    assert!(verify(&jwks, &token, "https://erp").await.is_err());
    let other = SigningKeys::load(None, ISSUER.into(), Duration::from_secs(120)).unwrap();
    let e = verify(&other.jwks(), &token, "https://crm")
        .await
        .unwrap_err();
    assert!(e.contains("unknown signing key"), "{e}");

    let set: Value = serde_json::from_slice(&jwks).unwrap();
    let jwk = &set["keys"][0];
    for (field, value) in [
        ("kty", "EC"),
        ("crv", "P-256"),
        ("use", "sig"),
        ("alg", "ES256"),
    ] {
        assert_eq!(jwk[field], value, "{jwk}");
    }
    assert!(jwk.get("d").is_none(), "no private part: {jwk}");
    let decoding = keys.decoding_keys();
    assert_eq!(decoding.len(), 1);
    assert_eq!(decoding[0].0, kids(&keys)[0]);
}

/// The kid is the RFC 7638 thumbprint: SHA-256 over the required members
/// in lexicographic order, base64url.
#[test]
fn the_kid_is_the_rfc_7638_thumbprint() {
    let keys = SigningKeys::load(None, ISSUER.into(), Duration::from_secs(120)).unwrap();
    let set: Value = serde_json::from_slice(&keys.jwks()).unwrap();
    let jwk = &set["keys"][0];
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest(&SHA256, canonical.as_bytes()).as_ref());
    assert_eq!(jwk["kid"], expected);
}

#[tokio::test]
async fn the_first_key_of_the_file_signs_and_every_key_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    let (a, b) = (p256(), p256());
    write(&path, &format!("{a}{b}{a}"));
    let keys = SigningKeys::load(Some(&path), ISSUER.into(), Duration::from_secs(120)).unwrap();
    assert!(!keys.generated());
    let published = kids(&keys);
    assert_eq!(published.len(), 2, "a repeated key counts once");
    let token = keys.sign(&claims("https://crm"), "at+jwt").unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(published[0].as_str()));
    // The same file gives the same kids (replicas sharing it agree).
    let again = SigningKeys::load(Some(&path), ISSUER.into(), Duration::from_secs(120)).unwrap();
    assert_eq!(kids(&again), published);
}

#[tokio::test]
async fn rotation_keeps_the_key_that_left_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    let (old, new) = (p256(), p256());
    write(&path, &old);
    let keys = SigningKeys::load(Some(&path), ISSUER.into(), Duration::from_secs(120)).unwrap();
    let old_kid = kids(&keys)[0].clone();
    let signed_before = keys.sign(&claims("https://crm"), "at+jwt").unwrap();

    // Step 1: the new key first, the old one second.
    write(&path, &format!("{new}{old}"));
    keys.refresh();
    let after = kids(&keys);
    assert_eq!(after.len(), 2);
    assert_eq!(after[1], old_kid);
    let signed_after = keys.sign(&claims("https://crm"), "at+jwt").unwrap();
    let new_kid = after[0].clone();
    assert_eq!(
        jsonwebtoken::decode_header(&signed_after).unwrap().kid,
        Some(new_kid.clone())
    );

    // Step 2: the old key leaves the file: still published, last.
    write(&path, &new);
    keys.refresh();
    assert_eq!(kids(&keys), vec![new_kid.clone(), old_kid.clone()]);
    let jwks = keys.jwks();
    for token in [&signed_before, &signed_after] {
        verify(&jwks, token, "https://crm").await.unwrap();
    }
    // A broken file keeps the keys in force.
    write(&path, "not a key");
    keys.refresh();
    assert_eq!(kids(&keys), vec![new_kid.clone(), old_kid.clone()]);
}

#[test]
fn a_retired_key_goes_once_its_time_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    let (old, new) = (p256(), p256());
    write(&path, &old);
    // No retention besides the verifiers' leeway.
    let keys = SigningKeys::load(Some(&path), ISSUER.into(), Duration::ZERO).unwrap();
    let old_kid = kids(&keys)[0].clone();
    write(&path, &new);
    keys.refresh();
    assert_eq!(kids(&keys).len(), 2);
    // Make the retired key's time up, as if the leeway had passed.
    {
        let mut ring = crate::sync::write_lock(&keys.ring);
        let updated = Ring::new(
            ring.file_digest,
            vec![ring.signing.clone()],
            ring.retired.iter().map(|(k, _)| (k.clone(), 1)).collect(),
        );
        *ring = Arc::new(updated);
    }
    keys.refresh();
    let left = kids(&keys);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0], old_kid);
}

#[test]
fn a_bad_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    let cert = "-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n";
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMAo=\n-----END EC PRIVATE KEY-----\n";
    for (text, says) in [
        ("", "no PEM private key"),
        ("hello", "no PEM private key"),
        (
            &pem_key(&ECDSA_P384_SHA384_FIXED_SIGNING),
            "not an EC P-256",
        ),
        (cert, "not a private key"),
        (sec1, "openssl pkcs8 -topk8"),
    ] {
        write(&path, text);
        let e = SigningKeys::load(Some(&path), ISSUER.into(), Duration::ZERO).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(says), "{shown}");
        assert!(shown.contains("keys.pem"), "names the file: {shown}");
    }
    let missing = dir.path().join("absent.pem");
    let e = SigningKeys::load(Some(&missing), ISSUER.into(), Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn debug_shows_kids_and_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.pem");
    let pem = p256();
    write(&path, &pem);
    let keys = SigningKeys::load(Some(&path), ISSUER.into(), Duration::ZERO).unwrap();
    let shown = format!("{keys:?}");
    assert!(shown.contains(&kids(&keys)[0]), "{shown}");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for secret in body.as_bytes().chunks(16) {
        let secret = std::str::from_utf8(secret).unwrap();
        assert!(!shown.contains(secret), "{shown}");
    }
}

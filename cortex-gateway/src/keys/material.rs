//! One signing key: the PKCS#8 private key, its public JWK and its RFC 7638
//! thumbprint (the `kid`).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use base64::Engine as _;
use jsonwebtoken::{
    DecodingKey, EncodingKey,
    jwk::{Jwk, ThumbprintHash},
};
use rustls::pki_types::pem::{PemObject as _, SectionKind};
use serde_json::{Value, json};

use super::KeyError;

/// How to make a key the file accepts.
const MAKE_ONE: &str = "create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signing.pem`";

/// A P-256 key pair, ready to sign and to verify.
pub(super) struct KeyMaterial {
    kid: String,
    encoding: EncodingKey,
    #[allow(
        dead_code,
        reason = "the facade verifies the tokens it issued with them"
    )]
    decoding: DecodingKey,
    /// The public JWK as published.
    jwk: Value,
    /// The latest `exp` signed with this key (unix seconds).
    last_exp: AtomicU64,
}

impl KeyMaterial {
    /// A key pair from a PKCS#8 document; refused unless it is P-256.
    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| format!("it is not an EC P-256 (prime256v1) private key; {MAKE_ONE}"))?;
        // The uncompressed point: 0x04, then x and y (32 bytes each).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("its public key has an unexpected encoding".into());
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (x, y) = (b64(&point[1..33]), b64(&point[33..]));
        let bare: Jwk =
            serde_json::from_value(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}))
                .map_err(|e| e.to_string())?;
        let kid = bare
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(der),
            decoding,
            jwk,
            last_exp: AtomicU64::new(0),
        })
    }

    /// A fresh random key.
    pub(super) fn generate() -> Result<Self, KeyError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| {
                    KeyError::Sign("the crypto provider cannot generate a P-256 key".into())
                })?;
        Self::from_pkcs8(doc.as_ref()).map_err(KeyError::Sign)
    }

    /// The RFC 7638 thumbprint (SHA-256) of the public key.
    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    pub(super) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    #[allow(
        dead_code,
        reason = "the facade verifies the tokens it issued with them"
    )]
    pub(super) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`, `use`, `alg`, `kid`).
    pub(super) fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Records that a token expiring at `exp` was signed with this key.
    pub(super) fn signed_until(&self, exp: u64) {
        self.last_exp.fetch_max(exp, Ordering::Relaxed);
    }

    /// The latest `exp` signed with this key (0: none).
    pub(super) fn last_exp(&self) -> u64 {
        self.last_exp.load(Ordering::Relaxed)
    }
}

/// The private keys of a PEM file, in order, each a PKCS#8 P-256 key
/// (`-----BEGIN PRIVATE KEY-----`); the same key twice counts once.
pub(super) fn parse_pem(pem: &[u8]) -> Result<Vec<Arc<KeyMaterial>>, KeyError> {
    let mut keys: Vec<Arc<KeyMaterial>> = Vec::new();
    for (n, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).enumerate() {
        let n = n + 1;
        let (kind, der) =
            section.map_err(|e| KeyError::File(format!("block {n} is not valid PEM: {e}")))?;
        let key = match kind {
            SectionKind::PrivateKey => KeyMaterial::from_pkcs8(&der)
                .map_err(|why| KeyError::File(format!("key {n}: {why}")))?,
            SectionKind::EcPrivateKey => {
                return Err(KeyError::File(format!(
                    "key {n} is a SEC1 `EC PRIVATE KEY`; convert it to PKCS#8 with \
                     `openssl pkcs8 -topk8 -nocrypt -in old.pem -out new.pem`"
                )));
            }
            other => {
                return Err(KeyError::File(format!(
                    "block {n} is a {other:?}, not a private key; the file holds only \
                     PKCS#8 P-256 private keys (`-----BEGIN PRIVATE KEY-----`)"
                )));
            }
        };
        if !keys.iter().any(|k| k.kid == key.kid) {
            keys.push(Arc::new(key));
        }
    }
    if keys.is_empty() {
        return Err(KeyError::File(format!(
            "it holds no PEM private key; {MAKE_ONE}"
        )));
    }
    Ok(keys)
}

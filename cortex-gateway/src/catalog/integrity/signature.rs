//! Ed25519 signatures over the integrity baseline.
//!
//! A signed baseline carries two extra top-level members: `trust` (which
//! blocks the signature covers, the algorithm, and whether the gateway or
//! an operator signed) and `signature` (`value`: base64 of the Ed25519
//! signature; `created_at`; `public_key`: the signer's SPKI PEM, a hint for
//! offline tools, never the authority). The signature covers the canonical
//! JSON (keys sorted, no whitespace) of the object made of the signed
//! blocks alone. The same envelope is used by the public cortex-gateway's
//! baselines, whose blocks are `version`, `savedAt`, `tools` and
//! `quarantine`; this gateway's are `format`, `approved` and `quarantined`.
//!
//! The configured key is the authority: with only a public key the gateway
//! verifies and never signs; with the private key it signs its own saves.
//! An unsigned, foreign-key or altered document is refused.

use base64::Engine as _;
use ed25519_dalek::{
    Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey,
    pkcs8::{
        DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _,
        spki::der::pem::LineEnding,
    },
};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// The blocks of this gateway's format that a signature covers.
pub(crate) const SIGNED_BLOCKS: [&str; 3] = ["format", "approved", "quarantined"];
/// The blocks of the public cortex-gateway's format.
pub(crate) const PUBLIC_GATEWAY_BLOCKS: [&str; 4] = ["version", "savedAt", "tools", "quarantine"];

/// Who signs and who verifies the baseline.
#[derive(Clone, Default)]
pub(crate) enum BaselineSigning {
    /// Nothing is signed or checked (a signature in the file is ignored).
    #[default]
    Off,
    /// Verify with this key; never sign (the operator signs off-host).
    VerifyOnly(VerifyingKey),
    /// Sign every save with this key, and verify with its public half.
    Sign(Box<SigningKey>),
}

impl std::fmt::Debug for BaselineSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::VerifyOnly(key) => write!(f, "VerifyOnly({})", key_id(key)),
            Self::Sign(key) => write!(
                f,
                "Sign({}, private key redacted)",
                key_id(&key.verifying_key())
            ),
        }
    }
}

/// A short, stable name of a public key (the first 8 bytes of its hex).
pub(crate) fn key_id(key: &VerifyingKey) -> String {
    key.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PEM text as it arrives through `.env` files: literal `\n` restored.
fn pem_text(raw: &str) -> String {
    if raw.contains("\\n") {
        raw.replace("\\n", "\n")
    } else {
        raw.to_owned()
    }
}

/// A private key from PKCS#8 PEM.
pub(crate) fn private_key(pem: &str) -> Result<SigningKey, String> {
    let text = Zeroizing::new(pem_text(pem));
    SigningKey::from_pkcs8_pem(&text).map_err(|_| {
        "not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); \
         create one with `cortex-gateway baseline keygen`"
            .to_owned()
    })
}

/// A public key from SPKI PEM.
pub(crate) fn public_key(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(&pem_text(pem)).map_err(|_| {
        "not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`); \
         `cortex-gateway baseline keygen` prints it"
            .to_owned()
    })
}

/// The SPKI PEM of `key`.
pub(crate) fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

impl BaselineSigning {
    /// The key signatures are checked with, if any.
    pub(crate) fn verifying_key(&self) -> Option<VerifyingKey> {
        match self {
            Self::Off => None,
            Self::VerifyOnly(key) => Some(*key),
            Self::Sign(key) => Some(key.verifying_key()),
        }
    }

    /// Whether this gateway may write the baseline.
    pub(crate) fn can_sign(&self) -> bool {
        !matches!(self, Self::VerifyOnly(_))
    }
}

/// The canonical bytes the signature of `doc` covers: the object made of
/// `blocks` alone (an absent block as `null`).
fn payload(doc: &Map<String, Value>, blocks: &[&str]) -> Vec<u8> {
    let subset: Map<String, Value> = blocks
        .iter()
        .map(|b| ((*b).to_owned(), doc.get(*b).cloned().unwrap_or(Value::Null)))
        .collect();
    let mut out = Vec::new();
    crate::canonical::write_canonical(&Value::Object(subset), &mut out);
    out
}

/// Which format `doc` is in, by the blocks it holds.
pub(crate) fn blocks_of(doc: &Map<String, Value>) -> &'static [&'static str] {
    if doc.contains_key("savedAt") && doc.contains_key("tools") {
        &PUBLIC_GATEWAY_BLOCKS
    } else {
        &SIGNED_BLOCKS
    }
}

/// Checks the signature of `doc` against `key`; why it is refused.
pub(crate) fn verify(doc: &Map<String, Value>, key: &VerifyingKey) -> Result<(), String> {
    let Some(signature) = doc.get("signature") else {
        return Err(
            "the baseline is unsigned, and a signature is required (a signing key is \
                    configured); sign it with `cortex-gateway baseline sign`"
                .into(),
        );
    };
    let value = signature
        .get("value")
        .and_then(Value::as_str)
        .ok_or("the baseline's signature has no `value`")?;
    if let Some(embedded) = signature.get("public_key").and_then(Value::as_str)
        && public_key(embedded).ok().as_ref() != Some(key)
    {
        return Err(format!(
            "the baseline was signed by another key than the configured one ({})",
            key_id(key)
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| "the baseline's signature is not base64")?;
    let signature =
        Signature::from_slice(&bytes).map_err(|_| "the baseline's signature is not 64 bytes")?;
    key.verify(&payload(doc, blocks_of(doc)), &signature)
        .map_err(|_| {
            "the baseline's signature does not match its content: it was changed after \
             signing, or signed by another key"
                .to_owned()
        })
}

/// Signs `doc` in place with `key` (replacing any earlier signature).
/// `by_operator`: signed off-host rather than by the gateway itself.
pub(crate) fn sign(doc: &mut Map<String, Value>, key: &SigningKey, by_operator: bool, now: &str) {
    doc.remove("signature");
    let blocks = blocks_of(doc);
    doc.insert(
        "trust".into(),
        json!({
            "signed_blocks": blocks,
            "scope": "partial",
            "algorithm": "Ed25519",
            "trust_level": if by_operator { "operator" } else { "self-signed" },
        }),
    );
    let signature = key.sign(&payload(doc, blocks));
    doc.insert(
        "signature".into(),
        json!({
            "value": base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            "created_at": now,
            "public_key": public_pem(&key.verifying_key()),
        }),
    );
}

/// Drops the envelope (`trust`, `signature`) of `doc`.
pub(crate) fn strip(doc: &mut Map<String, Value>) {
    doc.remove("trust");
    doc.remove("signature");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn doc() -> Map<String, Value> {
        json!({"format": 1, "approved": {"crm": {"search": {"description": "abc"}}}, "quarantined": {}})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_signed_document_verifies_and_any_change_is_refused() {
        let mut d = doc();
        sign(&mut d, &key(1), true, "2026-12-06T00:00:00Z");
        verify(&d, &key(1).verifying_key()).unwrap();
        assert_eq!(d["trust"]["trust_level"], "operator");

        let mut tampered = d.clone();
        tampered["approved"]["crm"]["search"]["description"] = json!("abd");
        let e = verify(&tampered, &key(1).verifying_key()).unwrap_err();
        assert!(e.contains("does not match"), "{e}");

        let e = verify(&d, &key(2).verifying_key()).unwrap_err();
        assert!(e.contains("another key"), "{e}");

        // A forger who re-signs with their own key and leaves the embedded
        // key pointing at ours is caught by the signature check.
        let mut forged = tampered.clone();
        sign(&mut forged, &key(2), true, "2026-12-06T00:00:00Z");
        forged["signature"]["public_key"] = json!(public_pem(&key(1).verifying_key()));
        assert!(verify(&forged, &key(1).verifying_key()).is_err());

        let mut unsigned = d.clone();
        strip(&mut unsigned);
        let e = verify(&unsigned, &key(1).verifying_key()).unwrap_err();
        assert!(e.contains("unsigned"), "{e}");
    }

    #[test]
    fn keys_round_trip_through_pem_and_env_escapes() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let k = key(7);
        let pem = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        let escaped = pem.replace('\n', "\\n");
        assert_eq!(private_key(&escaped).unwrap().to_bytes(), k.to_bytes());
        let public = public_pem(&k.verifying_key());
        assert_eq!(public_key(&public).unwrap(), k.verifying_key());
        assert!(private_key(&public).is_err());
        assert!(public_key(&pem).is_err());
        let debug = format!("{:?}", BaselineSigning::Sign(Box::new(k)));
        assert!(!debug.contains(pem.lines().nth(1).unwrap()), "{debug}");
    }

    /// A baseline in the public cortex-gateway's format, signed the way its
    /// offline signer does (fixture made with Node.js's Ed25519, see
    /// `tests/fixtures/README.md`), verifies here; altered, it does not.
    #[test]
    fn the_public_gateways_signed_format_verifies() {
        let text = include_str!("../../../tests/fixtures/public-gateway-baseline.json");
        let public = include_str!("../../../tests/fixtures/public-gateway-baseline.pub.pem");
        let d: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(blocks_of(&d), &PUBLIC_GATEWAY_BLOCKS);
        let key = public_key(public).unwrap();
        verify(&d, &key).unwrap();
        let mut altered = d.clone();
        altered["savedAt"] = json!("2030-01-01T00:00:00.000Z");
        assert!(verify(&altered, &key).is_err());
    }
}

//! The gateway's signing keys: ES256 (P-256) keys that sign what the
//! gateway issues itself (the assertions sent to `assert` backends, the
//! facade's access tokens), published as a JWKS at `/.well-known/jwks.json`.
//!
//! The keys come from `CORTEX_SIGNING_KEY_FILE` (PEM, one or more PKCS#8
//! P-256 private keys: the first signs, the others are only published) or
//! are generated at start (one process only: replicas must share a file).
//! An operator rotates by putting the new key first and keeping the old
//! one second until every token it signed has expired; a key that leaves
//! the file stays published for the retention the gateway was given (the
//! longest lifetime of what it signs) after it left, and at least until the
//! last token this process signed with it has expired. The file is read
//! again when it changes, without a restart (looked at once a second at
//! most).

mod material;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::digest::{SHA256, digest};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde::Serialize;

use material::KeyMaterial;

/// The largest key file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// How often the key file is looked at, at most.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Clock skew the verifiers of our tokens may allow: a key that left the
/// file is published this much longer than the tokens it signed live.
const VERIFIER_LEEWAY: Duration = Duration::from_secs(60);

/// Why keys cannot be loaded or a token cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum KeyError {
    /// The key file cannot be used: what is wrong and how to fix it.
    #[error("{0}")]
    File(String),
    /// Signing failed (the claims cannot be serialized, or the crypto
    /// provider refused).
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Where the keys come from.
#[derive(Debug)]
enum Source {
    /// Generated at start, never changes.
    Generated,
    /// Read from this file, again when it changes.
    File(PathBuf),
}

/// The keys in force: the one that signs, and every one published.
struct Ring {
    /// SHA-256 of the key file this ring was read from (zero: generated).
    file_digest: [u8; 32],
    /// Signs; first in the file.
    signing: Arc<KeyMaterial>,
    /// Published besides the signing key: the file's other keys.
    others: Vec<Arc<KeyMaterial>>,
    /// Keys that left the file, published until the unix time given.
    retired: Vec<(Arc<KeyMaterial>, u64)>,
    /// The JWKS of every published key.
    jwks: Bytes,
}

impl Ring {
    fn new(
        file_digest: [u8; 32],
        mut keys: Vec<Arc<KeyMaterial>>,
        retired: Vec<(Arc<KeyMaterial>, u64)>,
    ) -> Self {
        let signing = keys.remove(0);
        let mut ring = Self {
            file_digest,
            signing,
            others: keys,
            retired,
            jwks: Bytes::new(),
        };
        let set = serde_json::json!({
            "keys": ring.published().map(|k| k.public_jwk()).collect::<Vec<_>>()
        });
        ring.jwks = Bytes::from(set.to_string());
        ring
    }

    fn published(&self) -> impl Iterator<Item = &Arc<KeyMaterial>> {
        std::iter::once(&self.signing)
            .chain(&self.others)
            .chain(self.retired.iter().map(|(k, _)| k))
    }
}

/// The gateway's signing keys: the current signing key and every key still
/// published. Cheap to share (`Arc`); `Debug` shows key ids only.
pub(crate) struct SigningKeys {
    issuer: String,
    source: Source,
    /// How long a key that left the file stays published.
    retention: Duration,
    ring: RwLock<Arc<Ring>>,
    /// When the file was last looked at, in milliseconds since `started`.
    checked_ms: AtomicU64,
    started: Instant,
    /// Held while the file is read again; SHA-256 of the last file
    /// content refused (so it is logged once).
    reload: Mutex<Option<[u8; 32]>>,
}

impl std::fmt::Debug for SigningKeys {
    /// The issuer, the source and the key ids; never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("SigningKeys")
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("signing", &ring.signing.kid())
            .field(
                "published",
                &ring.published().map(|k| k.kid()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SigningKeys {
    /// Loads the keys of `file` (`CORTEX_SIGNING_KEY_FILE`), or generates
    /// one when `None`. `issuer` is the gateway's issuer URL; `retention`
    /// the longest lifetime of a token signed with these keys (a key that
    /// leaves the file stays published that long, plus a clock-skew
    /// allowance).
    pub(crate) fn load(
        file: Option<&Path>,
        issuer: String,
        retention: Duration,
    ) -> Result<Self, KeyError> {
        let (source, ring) = match file {
            Some(path) => {
                warn_if_readable_by_others(path);
                let bytes = read_file(path)?;
                let keys = material::parse_pem(&bytes).map_err(|e| match e {
                    KeyError::File(why) => KeyError::File(format!("{}: {why}", path.display())),
                    other => other,
                })?;
                (
                    Source::File(path.to_path_buf()),
                    Ring::new(sha256(&bytes), keys, Vec::new()),
                )
            }
            None => (
                Source::Generated,
                Ring::new(
                    [0; 32],
                    vec![Arc::new(KeyMaterial::generate()?)],
                    Vec::new(),
                ),
            ),
        };
        Ok(Self {
            issuer,
            source,
            retention: retention + VERIFIER_LEEWAY,
            ring: RwLock::new(Arc::new(ring)),
            checked_ms: AtomicU64::new(0),
            started: Instant::now(),
            reload: Mutex::new(None),
        })
    }

    /// The gateway's issuer URL (`CORTEX_GATEWAY_ISSUER`, default the
    /// origin of `CORTEX_CANONICAL_URI`): the `iss` of what it signs.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The path of the issuer URL (`/tenant` of `https://gw.example.com/tenant`),
    /// empty for a bare origin: verifiers look for the keys at
    /// `<issuer>/.well-known/jwks.json`.
    pub(crate) fn issuer_path(&self) -> &str {
        let rest = self.issuer.split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// Whether the keys were generated at start (not read from a file).
    pub(crate) fn generated(&self) -> bool {
        matches!(self.source, Source::Generated)
    }

    fn ring(&self) -> Arc<Ring> {
        crate::sync::read_lock(&self.ring).clone()
    }

    /// A compact JWS of `claims` signed with the current key, header
    /// `{"alg":"ES256","typ":typ,"kid":...}`. The `exp` of the claims, when
    /// there is one, keeps the key published at least that long should it
    /// leave the file.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, KeyError> {
        self.refresh_if_due();
        let ring = self.ring();
        let key = &ring.signing;
        let claims = serde_json::to_value(claims).map_err(|e| KeyError::Sign(e.to_string()))?;
        if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) {
            key.signed_until(exp);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_string());
        header.kid = Some(key.kid().to_string());
        jsonwebtoken::encode(&header, &claims, key.encoding())
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// The public JWKS (`kty` EC, `crv` P-256, `use` sig, `alg` ES256,
    /// `kid`) of every published key.
    pub(crate) fn jwks(&self) -> Bytes {
        self.refresh_if_due();
        self.ring().jwks.clone()
    }

    /// Every published key with its `kid`, for verifying what the gateway
    /// signed (the signing key first).
    #[allow(
        dead_code,
        reason = "the facade verifies the tokens it issued with them"
    )]
    pub(crate) fn decoding_keys(&self) -> Vec<(String, DecodingKey)> {
        self.refresh_if_due();
        self.ring()
            .published()
            .map(|k| (k.kid().to_string(), k.decoding().clone()))
            .collect()
    }

    /// Looks at the key file (and drops retired keys whose time is up)
    /// unless that was done less than [`CHECK_INTERVAL`] ago.
    fn refresh_if_due(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < CHECK_INTERVAL.as_millis() as u64 {
            return;
        }
        if self
            .checked_ms
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread is looking
        }
        self.refresh();
    }

    /// Reads the key file if it changed, and drops retired keys whose time
    /// is up. A file that cannot be used keeps the keys in force (and is
    /// logged once).
    pub(crate) fn refresh(&self) {
        let mut refused = crate::sync::lock(&self.reload);
        let current = self.ring();
        let now = unix_now();
        let expired = current.retired.iter().any(|(_, until)| *until <= now);
        let read = match &self.source {
            Source::Generated => None,
            Source::File(path) => match read_file(path) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    refuse(&mut refused, [0xff; 32], &e);
                    None
                }
            },
        };
        let changed = read
            .as_ref()
            .map(|b| (sha256(b), b))
            .filter(|(d, _)| *d != current.file_digest);
        let keys = match changed {
            Some((d, bytes)) => match material::parse_pem(bytes) {
                Ok(keys) => Some((d, keys)),
                Err(e) => {
                    refuse(&mut refused, d, &e);
                    None
                }
            },
            None => None,
        };
        if keys.is_none() && !expired {
            return;
        }
        let (digest, keys) = keys.unwrap_or_else(|| {
            (
                current.file_digest,
                std::iter::once(current.signing.clone())
                    .chain(current.others.iter().cloned())
                    .collect(),
            )
        });
        let in_file = |k: &KeyMaterial| keys.iter().any(|n| n.kid() == k.kid());
        let retention = self.retention.as_secs();
        let mut retired: Vec<(Arc<KeyMaterial>, u64)> = current
            .retired
            .iter()
            .filter(|(k, until)| *until > now && !in_file(k))
            .cloned()
            .collect();
        for left in std::iter::once(&current.signing)
            .chain(&current.others)
            .filter(|k| !in_file(k))
        {
            let until = (now + retention).max(left.last_exp() + VERIFIER_LEEWAY.as_secs());
            tracing::info!(
                kid = left.kid(),
                "a signing key left the key file; still published until its tokens expire"
            );
            retired.push((left.clone(), until));
        }
        let ring = Ring::new(digest, keys, retired);
        if ring.signing.kid() != current.signing.kid() {
            tracing::info!(kid = ring.signing.kid(), "signing with a new key");
        }
        *crate::sync::write_lock(&self.ring) = Arc::new(ring);
    }
}

/// Logs that the key file cannot be used, once per content.
fn refuse(refused: &mut Option<[u8; 32]>, digest: [u8; 32], e: &KeyError) {
    if *refused != Some(digest) {
        tracing::warn!(error = %e, "CORTEX_SIGNING_KEY_FILE cannot be used; the keys in force stay");
        *refused = Some(digest);
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Logs a warning when users other than the gateway's may read the key
/// file (whoever reads it can sign as the gateway).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "CORTEX_SIGNING_KEY_FILE may be read by other users; whoever reads it can sign as \
                 the gateway: chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn read_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| KeyError::File(format!("cannot read {shown}: {e}")))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(KeyError::File(format!(
            "{shown} is larger than {MAX_FILE_BYTES} bytes; it should hold a few PEM private keys"
        )));
    }
    std::fs::read(path).map_err(|e| KeyError::File(format!("cannot read {shown}: {e}")))
}

#[cfg(test)]
mod tests;

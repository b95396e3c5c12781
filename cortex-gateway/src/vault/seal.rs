//! Sealing grant records with AES-256-GCM (aws-lc-rs).
//!
//! A record is the key id, a fresh random 96-bit nonce and the ciphertext
//! (with its 16-byte tag) of the grant's JSON. The associated data names
//! the record's owner and server, each length-prefixed, so a record copied
//! to another (sub, server) row fails to open, and ("ab", "c") is never
//! ("a", "bc").

use std::{borrow::Cow, fmt};

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey},
    hkdf,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Grant, Secret, VaultError, config::VaultKeys};

/// Names the format of the sealed bytes and of the associated data; a new
/// format gets a new tag, so old and new records are never confused.
pub(crate) const DOMAIN: &[u8] = b"cortex-vault/grant/v1";
/// The domain of the gateway's client registrations (`vault_clients`).
pub(crate) const CLIENT_DOMAIN: &[u8] = b"cortex-vault/client/v1";
/// Bytes of the GCM tag appended to the ciphertext.
const TAG_LEN: usize = 16;

/// One record as stored: which key sealed it, its nonce, and the
/// ciphertext followed by the tag.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SealedRecord {
    pub(crate) key_id: String,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("key_id", &self.key_id)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The associated data of the record of (`sub`, `server`) in `domain`.
fn associated_data(domain: &[u8], sub: &str, server: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(domain.len() + 8 + sub.len() + server.len());
    aad.extend_from_slice(domain);
    for part in [sub, server] {
        // Both are bounded far below 4 GiB (`super::check_names`).
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// The grant as sealed (field names kept short: they are inside every
/// ciphertext).
#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    #[serde(rename = "a", borrow)]
    access_token: Cow<'a, str>,
    #[serde(rename = "r", borrow, default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Cow<'a, str>>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(rename = "s", borrow, default)]
    scope: Cow<'a, str>,
    #[serde(rename = "l", borrow, default)]
    account: Cow<'a, str>,
}

/// The vault's keys: the first seals, every one opens.
pub(crate) struct Keyring {
    /// (key id, key); the first is the one that seals.
    keys: Vec<(String, RandomizedNonceKey)>,
    /// HKDF-SHA256 pseudorandom key extracted from the first key, from
    /// which other uses get keys of their own (`Keyring::derive`).
    derivation: hkdf::Prk,
}

/// The HKDF salt of keys derived from the vault's first key.
const DERIVE_SALT: &[u8] = b"cortex-vault/derive/v1";

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl Keyring {
    /// The keys of the configuration, ready to use.
    pub(crate) fn new(keys: &VaultKeys) -> Result<Self, VaultError> {
        let keys_ref = keys;
        let keys = keys
            .iter()
            .map(|(id, bytes)| {
                RandomizedNonceKey::new(&AES_256_GCM, bytes)
                    .map(|key| (id.to_string(), key))
                    .map_err(|_| VaultError::Crypto(format!("key `{id}` cannot be used")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some((_, first)) = keys_ref.iter().next() else {
            return Err(VaultError::Crypto("no vault key".into()));
        };
        let derivation = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVE_SALT).extract(first);
        Ok(Self { keys, derivation })
    }

    /// A 32-byte key for another use of the vault's first key, named by
    /// `label` (distinct labels give independent keys; every replica with
    /// the same first key derives the same one).
    pub(crate) fn derive(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        let info = [label];
        // HKDF-SHA256 expands 32 bytes from any label: this cannot fail.
        if let Ok(okm) = self.derivation.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut *out);
        }
        out
    }

    /// The id of the key that seals.
    pub(crate) fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `grant` for (`sub`, `server`) under the first key.
    pub(crate) fn seal(
        &self,
        sub: &str,
        server: &str,
        grant: &Grant,
    ) -> Result<SealedRecord, VaultError> {
        self.seal_in(DOMAIN, sub, server, grant)
    }

    /// Opens the record of (`sub`, `server`).
    pub(crate) fn open(
        &self,
        sub: &str,
        server: &str,
        record: &SealedRecord,
    ) -> Result<Grant, VaultError> {
        self.open_in(DOMAIN, sub, server, record)
    }

    /// Seals `grant` for (`sub`, `server`) in `domain` (a record of one
    /// domain never opens in another).
    pub(crate) fn seal_in(
        &self,
        domain: &[u8],
        sub: &str,
        server: &str,
        grant: &Grant,
    ) -> Result<SealedRecord, VaultError> {
        let payload = Payload {
            access_token: grant.access_token.expose().into(),
            refresh_token: grant.refresh_token.as_ref().map(|t| t.expose().into()),
            expires_at: grant.expires_at,
            scope: grant.scope.as_str().into(),
            account: grant.account.as_str().into(),
        };
        // Room for the JSON (escapes at most double a string) and the tag,
        // so the buffer holding the plaintext is never reallocated (which
        // would leave a copy behind in freed memory).
        let room = 2
            * (grant.access_token.expose().len()
                + grant.refresh_token.as_ref().map_or(0, |t| t.expose().len())
                + grant.scope.len()
                + grant.account.len())
            + 96
            + TAG_LEN;
        let mut buf = Zeroizing::new(Vec::with_capacity(room));
        serde_json::to_writer(&mut *buf, &payload)
            .map_err(|e| VaultError::Crypto(format!("cannot encode the grant: {e}")))?;
        let (key_id, key) = &self.keys[0];
        let nonce = key
            .seal_in_place_append_tag(Aad::from(associated_data(domain, sub, server)), &mut *buf)
            .map_err(|_| VaultError::Crypto("sealing failed".into()))?;
        Ok(SealedRecord {
            key_id: key_id.clone(),
            nonce: *nonce.as_ref(),
            // `buf` now holds only ciphertext; the copy keeps it, `buf` is
            // wiped when dropped.
            ciphertext: buf.to_vec(),
        })
    }

    /// Opens the record of (`sub`, `server`) in `domain`.
    pub(crate) fn open_in(
        &self,
        domain: &[u8],
        sub: &str,
        server: &str,
        record: &SealedRecord,
    ) -> Result<Grant, VaultError> {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == record.key_id) else {
            return Err(VaultError::UnknownKey {
                key_id: record.key_id.clone(),
                server: server.to_string(),
            });
        };
        let unreadable = || VaultError::Unreadable {
            key_id: record.key_id.clone(),
            server: server.to_string(),
        };
        let mut buf = Zeroizing::new(record.ciphertext.clone());
        let nonce = Nonce::assume_unique_for_key(record.nonce);
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(associated_data(domain, sub, server)),
                &mut buf,
            )
            .map_err(|_| unreadable())?;
        let payload: Payload<'_> = serde_json::from_slice(plain).map_err(|_| unreadable())?;
        Ok(Grant {
            access_token: Secret::new(payload.access_token.into_owned()),
            refresh_token: payload.refresh_token.map(|t| Secret::new(t.into_owned())),
            expires_at: payload.expires_at,
            scope: payload.scope.into_owned(),
            account: payload.account.into_owned(),
        })
    }
}

/// Wipes a key's bytes when dropped (the parsed configuration holds them
/// until the keyring is built).
#[derive(Clone)]
pub(crate) struct KeyBytes(pub(crate) Box<[u8; 32]>);

impl Drop for KeyBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[(&str, u8)]) -> VaultKeys {
        VaultKeys::from_pairs(
            ids.iter()
                .map(|(id, b)| (id.to_string(), KeyBytes(Box::new([*b; 32]))))
                .collect(),
        )
    }

    fn grant() -> Grant {
        Grant {
            access_token: Secret::new("at-\"quoted\"-secret".into()),
            refresh_token: Some(Secret::new("rt-secret".into())),
            expires_at: Some(1_900_000_000),
            scope: "read write".into(),
            account: "alice@tracker.example".into(),
        }
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let ring = Keyring::new(&keys(&[("k1", 1)])).unwrap();
        let a = ring.seal("alice", "tracker", &grant()).unwrap();
        let b = ring.seal("alice", "tracker", &grant()).unwrap();
        assert_ne!(a.nonce, b.nonce, "every seal draws a new nonce");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(a.key_id, "k1");
        let opened = ring.open("alice", "tracker", &a).unwrap();
        assert_eq!(opened.access_token.expose(), "at-\"quoted\"-secret");
        assert_eq!(opened.refresh_token.unwrap().expose(), "rt-secret");
        assert_eq!(opened.expires_at, Some(1_900_000_000));
        assert_eq!(opened.account, "alice@tracker.example");
        assert_eq!(opened.scope, "read write");
        let plain = String::from_utf8_lossy(&a.ciphertext);
        assert!(!plain.contains("secret"));
    }

    #[test]
    fn the_record_is_bound_to_its_sub_and_server() {
        let ring = Keyring::new(&keys(&[("k1", 1)])).unwrap();
        let sealed = ring.seal("ab", "c", &grant()).unwrap();
        for (sub, server) in [("a", "bc"), ("abc", ""), ("ab", "d"), ("b", "c")] {
            assert!(
                matches!(
                    ring.open(sub, server, &sealed),
                    Err(VaultError::Unreadable { .. })
                ),
                "({sub}, {server}) must not open the record of (ab, c)"
            );
        }
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(ring.open("ab", "c", &tampered).is_err());
        let mut other_nonce = sealed.clone();
        other_nonce.nonce[0] ^= 1;
        assert!(ring.open("ab", "c", &other_nonce).is_err());
        assert!(ring.open("ab", "c", &sealed).is_ok());
    }

    #[test]
    fn a_record_of_one_domain_does_not_open_in_another() {
        let ring = Keyring::new(&keys(&[("k1", 1)])).unwrap();
        let client = ring
            .seal_in(CLIENT_DOMAIN, "https://as", "x", &grant())
            .unwrap();
        assert!(ring.open("https://as", "x", &client).is_err());
        assert!(
            ring.open_in(CLIENT_DOMAIN, "https://as", "x", &client)
                .is_ok()
        );
    }

    #[test]
    fn any_listed_key_opens_and_an_unknown_id_is_named() {
        let old = Keyring::new(&keys(&[("old", 1)])).unwrap();
        let sealed = old.seal("alice", "tracker", &grant()).unwrap();
        let both = Keyring::new(&keys(&[("new", 2), ("old", 1)])).unwrap();
        assert_eq!(both.primary_id(), "new");
        assert!(both.open("alice", "tracker", &sealed).is_ok());
        assert_eq!(both.seal("a", "b", &grant()).unwrap().key_id, "new");
        let new_only = Keyring::new(&keys(&[("new", 2)])).unwrap();
        match new_only.open("alice", "tracker", &sealed) {
            Err(e @ VaultError::UnknownKey { .. }) => assert!(e.to_string().contains("`old`")),
            other => panic!("expected an unknown key, got {other:?}"),
        }
        // Same id, other bytes: refused, not misread.
        let impostor = Keyring::new(&keys(&[("old", 3)])).unwrap();
        assert!(matches!(
            impostor.open("alice", "tracker", &sealed),
            Err(VaultError::Unreadable { .. })
        ));
    }

    #[test]
    fn derived_keys_follow_the_first_key_and_the_label() {
        let a = Keyring::new(&keys(&[("new", 2), ("old", 1)])).unwrap();
        let same = Keyring::new(&keys(&[("new", 2)])).unwrap();
        let other = Keyring::new(&keys(&[("old", 1), ("new", 2)])).unwrap();
        assert_eq!(*a.derive(b"x"), *same.derive(b"x"));
        assert_ne!(*a.derive(b"x"), *a.derive(b"y"));
        assert_ne!(*a.derive(b"x"), *other.derive(b"x"));
        assert_ne!(*a.derive(b"x"), [0u8; 32]);
    }

    #[test]
    fn debug_shows_no_key_or_token() {
        let ring = Keyring::new(&keys(&[("k1", 0x41)])).unwrap();
        let sealed = ring.seal("alice", "tracker", &grant()).unwrap();
        let shown = format!("{ring:?} {sealed:?} {:?}", grant());
        assert!(shown.contains("k1"));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            !shown.contains("AAAA") && !shown.contains("65, 65"),
            "{shown}"
        );
    }
}

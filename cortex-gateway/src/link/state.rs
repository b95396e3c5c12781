//! The OAuth `state` of a link in progress, sealed with AES-256-GCM.
//!
//! The state carries everything the callback needs: the ticket (redeemed
//! there, once), the `sub` and server it was issued for, the PKCE
//! verifier, a browser-binding nonce (also set as a cookie at the start,
//! so a callback completed in another browser is refused) and an expiry.
//! It is sealed, not signed: the verifier stays secret from everyone who
//! sees the redirect URLs. The key is derived with HKDF from the vault's
//! first key, so every replica opens what another sealed; the associated
//! data names the server, so a state made for one server does not open at
//! another's callback.

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey},
    digest::{SHA256, digest},
    rand::{SecureRandom as _, SystemRandom},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The HKDF label of the state key.
pub(crate) const KEY_LABEL: &[u8] = b"cortex-link/state/v1";
/// The longest state text opened (a sealed state is far shorter).
const MAX_STATE_CHARS: usize = 4096;

/// A link in progress.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LinkState {
    /// The ticket of the link URL.
    #[serde(rename = "t")]
    pub(crate) ticket: String,
    /// The caller the ticket was issued to.
    #[serde(rename = "s")]
    pub(crate) sub: String,
    /// The server being linked.
    #[serde(rename = "v")]
    pub(crate) server: String,
    /// The PKCE code verifier.
    #[serde(rename = "k")]
    pub(crate) verifier: String,
    /// The browser-binding nonce (also in a cookie).
    #[serde(rename = "b")]
    pub(crate) browser: String,
    /// Unix seconds after which the state is refused.
    #[serde(rename = "e")]
    pub(crate) expires_at: u64,
}

impl std::fmt::Debug for LinkState {
    /// Names only: the ticket, verifier and nonce are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkState")
            .field("sub", &self.sub)
            .field("server", &self.server)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_text(n: usize) -> String {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    // The system generator does not fail on supported platforms; a zeroed
    // buffer would be caught by the nonce and ticket checks anyway.
    let _ = SystemRandom::new().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(&*bytes)
}

/// The PKCE S256 challenge of `verifier`.
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

fn associated_data(server: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(KEY_LABEL.len() + 4 + server.len());
    aad.extend_from_slice(KEY_LABEL);
    aad.extend_from_slice(
        &u32::try_from(server.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    aad.extend_from_slice(server.as_bytes());
    aad
}

/// Seals and opens link states.
pub(crate) struct StateSealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSealer")
    }
}

impl StateSealer {
    /// A sealer with this 32-byte key.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            // A 32-byte key is always valid for AES-256-GCM.
            key: RandomizedNonceKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key"),
        }
    }

    /// The state as URL-safe text.
    pub(crate) fn seal(&self, state: &LinkState) -> String {
        let mut buf = Zeroizing::new(serde_json::to_vec(state).unwrap_or_default());
        buf.reserve(16);
        match self
            .key
            .seal_in_place_append_tag(Aad::from(associated_data(&state.server)), &mut *buf)
        {
            Ok(nonce) => {
                let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
                out.extend_from_slice(nonce.as_ref());
                out.extend_from_slice(&buf);
                URL_SAFE_NO_PAD.encode(out)
            }
            // Sealing fails only on absurd lengths; an empty state is
            // refused at the callback.
            Err(_) => String::new(),
        }
    }

    /// The state sealed for `server`, if `text` opens and has not expired
    /// at `now`.
    pub(crate) fn open(&self, server: &str, text: &str, now: u64) -> Option<LinkState> {
        if text.len() > MAX_STATE_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated_data(server)), &mut buf)
            .ok()?;
        let state: LinkState = serde_json::from_slice(plain).ok()?;
        (state.server == server && state.expires_at > now).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LinkState {
        LinkState {
            ticket: "t".repeat(32),
            sub: "ana".into(),
            server: "tracker".into(),
            verifier: random_text(32),
            browser: random_text(16),
            expires_at: 2_000,
        }
    }

    #[test]
    fn a_state_opens_only_unaltered_in_time_for_its_server_under_its_key() {
        let sealer = StateSealer::new(&[7; 32]);
        let original = state();
        let text = sealer.seal(&original);
        assert!(!text.contains("ana") && !text.contains(&"t".repeat(32)));
        assert_eq!(sealer.open("tracker", &text, 1_999), Some(original));
        assert_eq!(sealer.open("tracker", &text, 2_000), None, "expired");
        assert_eq!(sealer.open("design", &text, 1_000), None, "other server");
        assert_eq!(
            StateSealer::new(&[8; 32]).open("tracker", &text, 1_000),
            None
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            sealer.open("tracker", &URL_SAFE_NO_PAD.encode(bytes), 1_000),
            None
        );
        assert_eq!(sealer.open("tracker", "", 1_000), None);
        assert_eq!(sealer.open("tracker", "%%%", 1_000), None);
        assert_ne!(sealer.seal(&state()), text, "a fresh nonce each time");
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_text(32).len(), 43);
    }
}

//! Keyed hashes: the caller's identity and the arguments, pseudonymised
//! with HMAC-SHA256 so that lines about the same person (or the same
//! arguments) can be correlated by whoever holds the key, and by nobody
//! else.

use std::sync::Arc;

use aws_lc_rs::hmac;
use cortex_backend::Caller;
use serde_json::Value;

use crate::store::memo::CallerMemo;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What an audit line says about a verified caller.
#[derive(Debug)]
pub(crate) struct Who {
    /// [`Pseudonymizer::caller`] of the caller.
    pub pseudonym: Arc<str>,
    /// The token's `sub`.
    pub sub: Arc<str>,
    /// The OAuth client id.
    pub client_id: Option<Arc<str>>,
}

/// The audit key.
pub(crate) struct Pseudonymizer {
    key: hmac::Key,
    ephemeral: bool,
    /// Each verified caller's audit identity, computed once.
    callers: CallerMemo<Who>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key", &"[secret]")
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

impl Pseudonymizer {
    /// A key from the configured secret.
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ephemeral: false,
            callers: CallerMemo::default(),
        }
    }

    /// A random key for this process only: hashes do not correlate across
    /// restarts or replicas (used when no secret is configured).
    pub(crate) fn ephemeral() -> Self {
        let mut secret = [0u8; 32];
        // aws-lc's system RNG fails only when the OS has none.
        aws_lc_rs::rand::fill(&mut secret).expect("the operating system's random generator");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            ephemeral: true,
            callers: CallerMemo::default(),
        }
    }

    #[cfg(test)]
    /// Whether the key is random for this process.
    pub(crate) fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// HMAC of `domain` and `data`, in hex (the domain keeps a caller hash
    /// from ever equalling an argument hash).
    fn tag(&self, domain: &str, data: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        let tag = ctx.sign();
        let mut hex = String::with_capacity(64);
        for b in tag.as_ref() {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        hex
    }

    /// The caller's pseudonym: from the email when there is one (stable
    /// across identity providers' `sub` formats), else from the `sub`.
    pub(crate) fn caller(&self, sub: &str, email: Option<&str>) -> String {
        match email {
            Some(e) => self.tag("email", e.trim().to_lowercase().as_bytes()),
            None => self.tag("sub", sub.as_bytes()),
        }
    }

    /// The audit identity of a verified caller ([`Self::caller`], `sub`,
    /// client id), computed once per caller and shared by its lines.
    pub(crate) fn verified_caller(&self, caller: &Arc<Caller>) -> Arc<Who> {
        let Ok(who) = self.callers.get_or_try_insert(caller, |c| {
            Ok::<_, std::convert::Infallible>(Who {
                pseudonym: self.caller(&c.sub, c.email.as_deref()).into(),
                sub: bounded(&c.sub).into(),
                client_id: c.client_id.as_deref().map(|id| Arc::from(bounded(id))),
            })
        });
        who
    }

    /// The arguments' hash, key order normalised.
    pub(crate) fn arguments(&self, arguments: &Value) -> String {
        let mut text = Vec::with_capacity(128);
        crate::canonical::write_canonical(arguments, &mut text);
        self.tag("arguments", &text)
    }
}

/// A claim as an audit line keeps it: its first [`super::ID_CHARS`]
/// characters.
pub(crate) fn bounded(claim: &str) -> &str {
    match claim.char_indices().nth(super::ID_CHARS) {
        Some((at, _)) => &claim[..at],
        None => claim,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keyed_stable_and_domain_separated() {
        let k = Pseudonymizer::new(b"audit secret of the operator");
        let other = Pseudonymizer::new(b"another secret");
        let a = k.caller("u1", Some("Ada@Example.com"));
        assert_eq!(a, k.caller("u2", Some("ada@example.com")));
        assert_ne!(a, other.caller("u1", Some("ada@example.com")));
        assert!(!a.contains("ada"));
        assert_eq!(a.len(), 64);
        assert_eq!(
            k.arguments(&json!({"b": 1, "a": "x"})),
            k.arguments(&json!({"a": "x", "b": 1}))
        );
        assert_ne!(k.arguments(&json!("u1")), k.caller("u1", None));
        assert!(Pseudonymizer::ephemeral().is_ephemeral());
    }
}

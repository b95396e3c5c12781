//! The identity a backend sees when the caller's token is not forwarded:
//! `assert` mode (a short-lived assertion the gateway signs with its own
//! keys), and how a failure to obtain a backend's token in any mode
//! (`exchange`, `obo`, `assert`) is told to the caller.
//!
//! An assertion carries exactly: `iss` (the gateway), `aud` (the backend's
//! audience), `sub`, `email`, `name`, `role`, `pool` (when the caller has
//! them), `scope` (the caller's scopes, space-separated), `client_id` (when
//! known), `act: {"sub": <the gateway>}` (RFC 8693 actor), a random `jti`,
//! `iat` and `exp` (`iat` + `CORTEX_ASSERT_TTL_S`, or the caller token's own
//! `exp` when that is sooner: an assertion never outlives the authority it
//! stands for). It is cached per caller token and backend until 30 s before
//! it expires.

// Public for the `testing` feature (the gateway's integration tests).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use cortex_backend::Caller;
use serde::Serialize;

use super::UpstreamError;
use super::settings::{BackendConfig, TokenMode};
use crate::keys::SigningKeys;
use crate::store::tokens::{TokenCache, TokenKey};

/// An assertion is dropped from the cache this long before it expires, so
/// that the backend never receives one about to expire.
const MARGIN: Duration = Duration::from_secs(30);

/// Signs and caches the assertions sent to `assert` backends.
#[derive(Debug)]
pub(crate) struct Asserter {
    keys: Arc<SigningKeys>,
    ttl: Duration,
    cache: Arc<TokenCache>,
}

/// The RFC 8693 actor: the gateway.
#[derive(Serialize)]
struct Actor<'a> {
    sub: &'a str,
}

/// The claims of an assertion.
#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    act: Actor<'a>,
    jti: String,
    iat: u64,
    exp: u64,
}

/// 128 random bits, base64url.
fn random_jti() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness for a jti".to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Asserter {
    /// Signs with `keys`, assertions living `ttl`, cached in `cache`.
    pub(crate) fn new(keys: Arc<SigningKeys>, ttl: Duration, cache: Arc<TokenCache>) -> Self {
        Self { keys, ttl, cache }
    }

    /// The assertion `backend` receives for `caller`: from the cache, or
    /// signed now.
    pub(crate) async fn assertion_for(
        &self,
        caller: &Caller,
        backend: &BackendConfig,
    ) -> Result<String, UpstreamError> {
        let key = TokenKey::new(&backend.id, caller.token());
        if let Some(token) = self.cache.get(&key).await {
            return Ok(token);
        }
        let (token, lifetime) = self.sign(caller, backend).map_err(|detail| {
            tracing::warn!(backend = %backend.id, detail = %detail, "signing an assertion failed");
            UpstreamError::Token(TokenFailure::new(backend, FailureKind::Signing, detail))
        })?;
        self.cache
            .put(key, &token, lifetime.saturating_sub(MARGIN))
            .await;
        Ok(token)
    }

    /// A signed assertion and its lifetime.
    fn sign(&self, caller: &Caller, backend: &BackendConfig) -> Result<(String, Duration), String> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let exp = (iat + self.ttl.as_secs()).min(caller.expires_at);
        let issuer = self.keys.issuer();
        let claims = Assertion {
            iss: issuer,
            aud: backend.exchange_audience(),
            sub: &caller.sub,
            email: caller.email.as_deref(),
            name: caller.claims.get("name").and_then(|v| v.as_str()),
            role: caller.role.as_deref(),
            pool: caller.pool.as_deref(),
            scope: caller.scopes.join(" "),
            client_id: caller.client_id.as_deref(),
            act: Actor { sub: issuer },
            jti: random_jti()?,
            iat,
            exp,
        };
        let token = self
            .keys
            .sign(&claims, "at+jwt")
            .map_err(|e| e.to_string())?;
        Ok((token, Duration::from_secs(exp.saturating_sub(iat))))
    }
}

/// Why the gateway could not obtain the token a backend receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The identity provider refused the grant (not permitted for this
    /// audience or scope).
    Refused,
    /// The identity provider wants the user's consent or a fresh sign-in.
    Interaction,
    /// The identity provider refused the gateway's own client credentials.
    ClientRejected,
    /// The identity provider could not be reached, or answered nonsense.
    Unavailable,
    /// The gateway could not sign an assertion.
    Signing,
}

impl FailureKind {
    /// The kind of a token endpoint's error answer.
    pub(crate) fn of_answer(status: u16, error: Option<&str>, description: &str) -> Self {
        match error {
            _ if status >= 500 => Self::Unavailable,
            Some("interaction_required" | "consent_required" | "login_required") => {
                Self::Interaction
            }
            // Entra: the user or administrator has not consented.
            _ if description.contains("AADSTS65001") => Self::Interaction,
            Some("invalid_client" | "unauthorized_client") => Self::ClientRejected,
            Some(_) if (400..500).contains(&status) => Self::Refused,
            _ => Self::Unavailable,
        }
    }
}

/// A failure to obtain a backend's token, in any mode. The detail is
/// logged where it happens and never shown; callers read a fixed sentence
/// that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailure {
    /// The backend's token mode.
    pub mode: TokenMode,
    /// What went wrong.
    pub kind: FailureKind,
    /// What the gateway asked for, from its configuration: the scope
    /// (`obo`) or the audience.
    pub asked: String,
    /// The detail, for the log only.
    pub detail: String,
}

impl std::fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} for {}: {}",
            self.mode.name(),
            self.asked,
            self.detail
        )
    }
}

impl TokenFailure {
    pub(crate) fn new(backend: &BackendConfig, kind: FailureKind, detail: String) -> Self {
        let asked = match backend.token_mode {
            TokenMode::Obo => backend.obo_scope().into_owned(),
            _ => backend.exchange_audience().to_string(),
        };
        Self {
            mode: backend.token_mode,
            kind,
            asked,
            detail,
        }
    }

    /// What the caller reads: what happened to the call to `backend`
    /// (`not_run`, e.g. "so search was not run") and what to do.
    pub(crate) fn caller_text(&self, backend: &str, not_run: &str) -> String {
        let asked = &self.asked;
        let grant = match self.mode {
            TokenMode::Obo => "the on-behalf-of exchange",
            _ => "the token exchange",
        };
        match self.kind {
            FailureKind::Refused if self.mode == TokenMode::Obo => format!(
                "the identity provider refused {grant} for backend {backend}, {not_run}: \
                 ask the operator to grant the gateway's app permission to {asked}."
            ),
            FailureKind::Refused => format!(
                "the identity provider refused {grant} for backend {backend}, {not_run}: \
                 ask the operator to allow the gateway's client to exchange tokens for {asked}."
            ),
            FailureKind::Interaction => format!(
                "the identity provider wants your consent or a fresh sign-in before the gateway \
                 may act for you at backend {backend}, {not_run}: sign in again; if that does not \
                 help, ask the operator to grant admin consent for {asked}."
            ),
            FailureKind::ClientRejected => format!(
                "the identity provider did not accept the gateway's own client credentials when \
                 asked for a token for backend {backend}, {not_run}: ask the operator to check \
                 OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET."
            ),
            FailureKind::Unavailable => format!(
                "the gateway could not obtain a token for backend {backend} from the identity \
                 provider, {not_run}. Retry later; if it persists, tell the gateway's operator \
                 (the gateway's log has the reason)."
            ),
            FailureKind::Signing => format!(
                "the gateway could not sign an assertion for backend {backend}, {not_run}: \
                 tell the gateway's operator (the gateway's log has the reason)."
            ),
        }
    }

    /// A short class, for the audit line and metrics.
    pub(crate) fn class(&self) -> &'static str {
        match self.mode {
            TokenMode::Obo => "token_obo",
            TokenMode::Assert => "token_assert",
            _ => "token_exchange",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cortex_backend::{auth::JwtValidator, testing::TestIssuer};

    use super::*;
    use crate::store::tokens::{TOKEN_ENTRY_OVERHEAD_BYTES, TokenCacheLimits};

    const TTL: Duration = Duration::from_secs(120);

    async fn caller(issuer: &TestIssuer, sub: &str) -> Arc<Caller> {
        let token = issuer.token("https://mcp.example.com/mcp").sub(sub).mint();
        let v = JwtValidator::new(issuer.jwt_config("https://mcp.example.com/mcp")).unwrap();
        v.validate(&token).await.unwrap()
    }

    fn asserter(limits: TokenCacheLimits) -> (Asserter, Arc<TokenCache>) {
        let keys = SigningKeys::load(None, "https://gw.example.com".into(), TTL).unwrap();
        let cache = Arc::new(TokenCache::in_memory(limits));
        (Asserter::new(Arc::new(keys), TTL, cache.clone()), cache)
    }

    /// Many callers cannot grow the cache past its bounds: the oldest
    /// assertions go first.
    #[tokio::test]
    async fn the_assertion_cache_stays_within_its_bounds() {
        let issuer = TestIssuer::start().await.unwrap();
        let (a, cache) = asserter(TokenCacheLimits {
            max_entries: 4,
            max_bytes: 1 << 20,
        });
        let crm = BackendConfig::new("crm", "https://crm.example.com");
        let mut callers = Vec::new();
        for i in 0..12 {
            let c = caller(&issuer, &format!("user-{i}")).await;
            a.assertion_for(&c, &crm).await.unwrap();
            callers.push(c);
        }
        assert_eq!(kept(&cache, &callers).await, 4, "bounded by count");
        let last = callers.last().unwrap();
        assert!(
            cache
                .get(&TokenKey::new("crm", last.token()))
                .await
                .is_some()
        );
        // Bounded by bytes too: room for about two assertions.
        let one = a.assertion_for(last, &crm).await.unwrap().len();
        let (a, cache) = asserter(TokenCacheLimits {
            max_entries: 1000,
            max_bytes: 2 * (TOKEN_ENTRY_OVERHEAD_BYTES + one + 4),
        });
        for c in &callers {
            a.assertion_for(c, &crm).await.unwrap();
        }
        let kept = kept(&cache, &callers).await;
        assert!((1..=2).contains(&kept), "bounded by bytes: {kept}");
    }

    /// How many of `callers` have an assertion for crm in `cache`.
    async fn kept(cache: &TokenCache, callers: &[Arc<Caller>]) -> usize {
        let mut kept = 0;
        for c in callers {
            kept += usize::from(cache.get(&TokenKey::new("crm", c.token())).await.is_some());
        }
        kept
    }

    /// An assertion never outlives the caller's token, and one about to
    /// expire is not kept.
    #[tokio::test]
    async fn an_assertion_ends_with_the_callers_token() {
        let issuer = TestIssuer::start().await.unwrap();
        let (a, cache) = asserter(TokenCacheLimits {
            max_entries: 10,
            max_bytes: 1 << 20,
        });
        let crm = BackendConfig::new("crm", "https://crm.example.com");
        let token = issuer
            .token("https://mcp.example.com/mcp")
            .ttl(Duration::from_secs(20))
            .mint();
        let v = JwtValidator::new(issuer.jwt_config("https://mcp.example.com/mcp")).unwrap();
        let short = v.validate(&token).await.unwrap();
        let assertion = a.assertion_for(&short, &crm).await.unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(assertion.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), short.expires_at);
        assert!(
            cache
                .get(&TokenKey::new("crm", short.token()))
                .await
                .is_none()
        );
        let long = caller(&issuer, "ana").await;
        let assertion = a.assertion_for(&long, &crm).await.unwrap();
        assert_eq!(
            cache.get(&TokenKey::new("crm", long.token())).await,
            Some(assertion)
        );
    }

    #[test]
    fn answers_map_to_kinds() {
        use FailureKind::*;
        for (status, error, description, kind) in [
            (
                400,
                Some("invalid_grant"),
                "AADSTS65001: consent",
                Interaction,
            ),
            (
                400,
                Some("interaction_required"),
                "AADSTS50079",
                Interaction,
            ),
            (401, Some("invalid_client"), "bad secret", ClientRejected),
            (400, Some("invalid_scope"), "no such scope", Refused),
            (
                400,
                Some("invalid_request"),
                "AADSTS9010010: resource",
                Refused,
            ),
            (503, Some("temporarily_unavailable"), "later", Unavailable),
            (200, None, "no access_token in the answer", Unavailable),
        ] {
            assert_eq!(FailureKind::of_answer(status, error, description), kind);
        }
    }
}

//! What a run needs: the technical token, where user tokens come from, and
//! a few knobs.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use cortex_backend::{scopes, testing::BrokenToken, testing::TestIssuer};
use serde_json::{Map, Value};

use crate::probe::Cred;

/// How the gateway presents callers to the backend under test: the
/// gateway's `CORTEX_BACKEND_<ID>_TOKEN_MODE` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Identity {
    /// The caller's own token from the identity provider (`forward`, and
    /// `exchange`/`obo`, whose tokens the provider issues too): user tokens
    /// are minted by an identity provider ([`TestIssuer::start`]).
    #[default]
    Forward,
    /// Gateway assertions (`assert`): the backend trusts only the gateway
    /// (`CORTEX_GATEWAY_ISSUER`). User tokens are ES256 assertions minted by
    /// a gateway issuer ([`TestIssuer::start_gateway`]); the `auth.*`
    /// checks send broken assertions, and the `assert.*` checks run.
    Assert,
}

impl Identity {
    /// `forward` or `assert`, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Assert => "assert",
        }
    }
}

/// The gateway's public audience the `assert.*` checks use when none is
/// given ([`Options::gateway_audience`]).
pub const DEFAULT_GATEWAY_AUDIENCE: &str = "https://gateway.cortex-conformance.invalid/mcp";

/// Where the run's user tokens come from.
#[derive(Clone, Default)]
pub enum UserTokens {
    /// None: every check that needs a user token is skipped.
    #[default]
    None,
    /// One token the backend accepts. Checks that need another token (a
    /// broken one, one without a given scope) run only where this token
    /// serves; the rest are skipped with the reason.
    Token(String),
    /// A [`TestIssuer`] the backend trusts: the run mints every token it
    /// needs, valid and broken, for `audience`.
    Issuer {
        /// The issuer (in this process, or restored from its state file).
        issuer: Arc<TestIssuer>,
        /// The audience the backend expects (`OAUTH_AUDIENCE`).
        audience: String,
    },
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(<hidden>)"),
            Self::Issuer { issuer, audience } => f
                .debug_struct("Issuer")
                .field("issuer", &issuer.issuer())
                .field("audience", audience)
                .finish(),
        }
    }
}

/// The options of a run. Start with [`Options::new`].
///
/// ```no_run
/// # async fn demo(issuer: std::sync::Arc<cortex_backend::testing::TestIssuer>) -> Result<(), contract_tests::CheckError> {
/// use contract_tests::Options;
/// let options = Options::new("the-technical-token-of-the-backend")
///     .issuer(issuer, "https://mcp.example.com/mcp")
///     .call_read_only(true);
/// let report = contract_tests::check("http://127.0.0.1:8080/api/cortex/backend", options).await?;
/// report.assert_passed();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) technical_token: Secret,
    pub(crate) users: UserTokens,
    pub(crate) call_read_only: bool,
    pub(crate) only: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) oversized_body: usize,
    pub(crate) claims: Map<String, Value>,
    pub(crate) identity: Identity,
    pub(crate) gateway_audience: String,
}

/// A string that never shows in `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Default size of the oversized body: larger than the SDK's 1 MiB limit
/// and the common framework defaults (2 MB).
pub const DEFAULT_OVERSIZED_BODY: usize = 4 << 20;

impl Options {
    /// Options with the backend's technical token, no user tokens, a 10 s
    /// timeout per request, and no calls to real tools beyond the checks
    /// that refuse them.
    pub fn new(technical_token: impl Into<String>) -> Self {
        Self {
            technical_token: Secret(technical_token.into()),
            users: UserTokens::None,
            call_read_only: false,
            only: Vec::new(),
            timeout: Duration::from_secs(10),
            oversized_body: DEFAULT_OVERSIZED_BODY,
            claims: Map::new(),
            identity: Identity::Forward,
            gateway_audience: DEFAULT_GATEWAY_AUDIENCE.to_string(),
        }
    }

    /// How the backend under test is configured to learn who calls
    /// ([`Identity`]). With [`Identity::Assert`], the issuer of
    /// [`Options::issuer`] must be a gateway ([`TestIssuer::start_gateway`]),
    /// whose issuer URL the backend trusts as `CORTEX_GATEWAY_ISSUER`.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// The gateway's public audience (its canonical URI) for
    /// `assert.idp-token` and `assert.gateway-audience`; give the
    /// backend's `CORTEX_GATEWAY_AUDIENCE` when it sets one (default
    /// [`DEFAULT_GATEWAY_AUDIENCE`]).
    #[must_use]
    pub fn gateway_audience(mut self, audience: impl Into<String>) -> Self {
        self.gateway_audience = audience.into();
        self
    }

    /// Uses one user token the backend accepts.
    #[must_use]
    pub fn user_token(mut self, token: impl Into<String>) -> Self {
        self.users = UserTokens::Token(token.into());
        self
    }

    /// Mints every user token from `issuer`, for `audience`.
    #[must_use]
    pub fn issuer(mut self, issuer: Arc<TestIssuer>, audience: impl Into<String>) -> Self {
        self.users = UserTokens::Issuer {
            issuer,
            audience: audience.into(),
        };
        self
    }

    /// Calls every tool annotated `readOnlyHint: true` with arguments made
    /// up from its input schema (`tools.read-only-call`, `tools.output-schema`).
    #[must_use]
    pub fn call_read_only(mut self, yes: bool) -> Self {
        self.call_read_only = yes;
        self
    }

    /// Runs only this check (repeat for several); see [`crate::CHECKS`].
    #[must_use]
    pub fn only(mut self, id: impl Into<String>) -> Self {
        self.only.push(id.into());
        self
    }

    /// Timeout of each request.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Size in bytes of the body `transport.oversized-body` sends (default
    /// 4 MiB); it must exceed the backend's limit.
    #[must_use]
    pub fn oversized_body(mut self, bytes: usize) -> Self {
        self.oversized_body = bytes;
        self
    }

    /// Adds a claim to every minted token (a role the backend's ACL wants,
    /// for instance).
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }
}

/// The `sub` of minted tokens.
pub(crate) const SUB: &str = "cortex-conformance-user";
/// The email of minted tokens.
pub(crate) const EMAIL: &str = "conformance-user@example.com";

/// The payload of a JWT, decoded without verification (only to learn which
/// scopes a given token holds).
pub(crate) fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .as_object()
        .cloned()
}

/// The scopes a token's claims grant (`scope` string or `scp` array).
pub(crate) fn claimed_scopes(claims: &Map<String, Value>) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(String::from).collect(),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

impl UserTokens {
    /// `issuer`, `user token` or `none`, for the report.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token(_) => "one given user token",
            Self::Issuer { .. } => "minted by the harness's issuer",
        }
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    fn mint(&self, scopes: &[&str], claims: &Map<String, Value>) -> Option<String> {
        let Self::Issuer { issuer, audience } = self else {
            return None;
        };
        let mut builder = issuer
            .token(audience)
            .sub(SUB)
            .email(EMAIL)
            .scopes(scopes.iter().copied());
        for (k, v) in claims {
            builder = builder.claim(k, v.clone());
        }
        Some(builder.mint())
    }

    /// A valid token holding every scope in `all`.
    pub(crate) fn full(&self, all: &[String], claims: &Map<String, Value>) -> Option<Cred> {
        match self {
            Self::None => None,
            Self::Token(t) => Some(Cred::new("user token", t.clone())),
            Self::Issuer { .. } => {
                let scopes: Vec<&str> = all.iter().map(String::as_str).collect();
                self.mint(&scopes, claims)
                    .map(|t| Cred::new("user token with every listed scope", t))
            }
        }
    }

    /// A valid token that does not satisfy `scope` (and holds the others of
    /// `all`), when one is available.
    pub(crate) fn without(
        &self,
        scope: &str,
        all: &[String],
        claims: &Map<String, Value>,
    ) -> Option<Cred> {
        match self {
            Self::None => None,
            Self::Token(t) => {
                let granted = unverified_claims(t)
                    .map(|c| claimed_scopes(&c))
                    .unwrap_or_default();
                (!scopes::satisfies(&granted, scope)).then(|| Cred::new("user token", t.clone()))
            }
            Self::Issuer { .. } => {
                let implied = scopes::implied_by(scope);
                let kept: Vec<&str> = all
                    .iter()
                    .map(String::as_str)
                    .filter(|s| *s != scope && Some(*s) != implied.as_deref())
                    .collect();
                self.mint(&kept, claims)
                    .map(|t| Cred::new(format!("user token without {scope}"), t))
            }
        }
    }

    /// Whether a token from [`UserTokens::full`] satisfies `scope`.
    pub(crate) fn full_holds(&self, scope: &str) -> bool {
        match self {
            Self::None => false,
            Self::Token(t) => {
                let granted = unverified_claims(t)
                    .map(|c| claimed_scopes(&c))
                    .unwrap_or_default();
                scopes::satisfies(&granted, scope)
            }
            Self::Issuer { .. } => true,
        }
    }

    /// The `sub` the backend should see, when known.
    pub(crate) fn sub(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Token(t) => unverified_claims(t)
                .and_then(|c| c.get("sub").and_then(Value::as_str).map(String::from)),
            Self::Issuer { .. } => Some(SUB.to_string()),
        }
    }

    /// A token broken in one way (otherwise valid, every scope in `all`).
    pub(crate) fn broken(&self, kind: BrokenToken, all: &[String]) -> Option<Cred> {
        let Self::Issuer { issuer, audience } = self else {
            return None;
        };
        let scopes: Vec<&str> = all.iter().map(String::as_str).collect();
        let token = issuer.broken(kind, audience, SUB, &scopes);
        Some(Cred::new(format!("{} token", kind.name()), token))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn scopes_of_a_given_token() {
        let enc = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let t = format!(
            "h.{}.s",
            enc(json!({"sub": "ana", "scope": "mcp:a:read mcp:b:write"}))
        );
        let users = UserTokens::Token(t);
        assert!(users.full_holds("mcp:b:read"));
        assert!(!users.full_holds("mcp:c:read"));
        assert_eq!(users.sub().as_deref(), Some("ana"));
        assert!(users.without("mcp:a:read", &[], &Map::new()).is_none());
        assert!(users.without("mcp:c:read", &[], &Map::new()).is_some());
        let t = format!("h.{}.s", enc(json!({"scp": ["mcp:x:read"]})));
        assert!(UserTokens::Token(t).full_holds("mcp:x:read"));
    }
}

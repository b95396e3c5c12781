//! Authentication: technical tokens for discovery, user JWTs for everything
//! else (contract §2).
//!
//! * Technical tokens are compared in constant time (SHA-256 of both sides,
//!   then `subtle`), against every configured token so rotation is possible.
//! * User JWTs are validated by [`JwtValidator`]: keys from the issuer's
//!   JWKS (RFC 8414 / OpenID discovery, a configured URL, or static keys),
//!   `iss`, `aud`, `exp`, `sub` required, `nbf` checked when present, header
//!   `typ` `at+jwt` or `JWT` (or absent), algorithms from configuration only
//!   (asymmetric), `oct` keys and keys not meant for signatures never used. A successful verification is cached
//!   by token hash until the token expires, in a bounded cache.
//! * Identity comes from the validated claims only; the `X-Cortex-*` headers
//!   are never read for it.

mod caller;
mod jwt;
mod keys;
mod settings;

use std::sync::Arc;

use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

pub use caller::Caller;
pub use jsonwebtoken::Algorithm;
pub use jwt::{JwtConfig, JwtValidator, KeySource};
pub use keys::{
    check_transport, fetch_issuer_metadata, get_json_capped, is_loopback_authority, metadata_urls,
    read_body_capped,
};
pub use settings::{GATEWAY_SETTINGS, JWT_SETTINGS, JwtSettings, Setting, parse_bool};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A technical token: discovery methods only.
    Technical,
    /// A validated user.
    User(Arc<Caller>),
}

/// Why a request is not authenticated (always HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    Malformed,
    /// The backend accepts no user tokens (no issuer configured).
    #[error("this backend accepts no user tokens (no issuer configured)")]
    NoIssuer,
    /// The token was refused; the reason names the failed check.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The issuer's keys could not be loaded. The text shown is fixed; the
    /// detail (URLs, connection errors) is for the log only
    /// ([`AuthError::log_detail`]).
    #[error(
        "cannot verify the token right now: the issuer's signing keys are unavailable; retry later"
    )]
    KeysUnavailable(String),
}

impl AuthError {
    /// Logs what the caller is not told (the detail of
    /// [`AuthError::KeysUnavailable`]); never the token.
    pub fn log_detail(&self) {
        if let Self::KeysUnavailable(detail) = self {
            tracing::warn!(detail = %detail, "token verification: the issuer's keys are unavailable");
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct AuthConfigError {
    /// The setting (environment variable name) at fault.
    pub variable: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl AuthConfigError {
    pub(crate) fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
}

/// Minimum length of a technical token: shorter secrets are guessable.
pub const MIN_TECHNICAL_TOKEN_LEN: usize = 16;

/// The backend's authentication settings.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Accepted technical tokens (several, for rotation).
    pub technical_tokens: Vec<String>,
    /// User-token validation; `None` refuses every user token.
    pub jwt: Option<JwtConfig>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "technical_tokens",
                &format!("[{} masked]", self.technical_tokens.len()),
            )
            .field("jwt", &self.jwt)
            .finish()
    }
}

/// The authenticator a backend uses: technical tokens plus a JWT validator.
#[derive(Clone)]
pub struct Auth {
    technical: Arc<Vec<[u8; 32]>>,
    jwt: Option<Arc<JwtValidator>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("technical_tokens", &self.technical.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Auth {
    /// Builds the authenticator.
    pub fn new(config: AuthConfig) -> Result<Self, AuthConfigError> {
        let mut technical = Vec::new();
        for token in &config.technical_tokens {
            if token.len() < MIN_TECHNICAL_TOKEN_LEN {
                return Err(AuthConfigError::new(
                    "CORTEX_TECHNICAL_TOKENS",
                    format!(
                        "a technical token is shorter than {MIN_TECHNICAL_TOKEN_LEN} characters; \
                         generate one with `openssl rand -hex 32`"
                    ),
                ));
            }
            technical.push(sha256(token.as_bytes()));
        }
        let jwt = config.jwt.map(JwtValidator::new).transpose()?.map(Arc::new);
        Ok(Self {
            technical: Arc::new(technical),
            jwt,
        })
    }

    /// Reads the settings from the environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `CORTEX_TECHNICAL_TOKENS` | comma-separated technical tokens (rotation) | none |
    /// | `CORTEX_TECHNICAL_TOKEN` | one more technical token (gateway-compatible name) | none |
    /// | `OAUTH_ISSUER` | the issuer; unset = no user tokens accepted | none |
    /// | `OAUTH_AUDIENCE` | comma-separated accepted audiences; required with an issuer | none |
    ///
    /// plus every token-validation setting of [`JWT_SETTINGS`] (JWKS,
    /// algorithms, leeway, `nbf`, `typ`, claim paths, plaintext transport),
    /// the same variables and defaults as the gateway's, and the
    /// gateway-assertion settings of [`GATEWAY_SETTINGS`]
    /// (`CORTEX_GATEWAY_ISSUER`: trust only the gateway's assertions).
    pub fn from_env() -> Result<Self, AuthConfigError> {
        Self::new(config_from_env(|k| std::env::var(k).ok())?)
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = bearer_token(header)?;
        let digest = sha256(token.as_bytes());
        if self.is_technical_digest(&digest) {
            return Ok(Principal::Technical);
        }
        let jwt = self.jwt.as_ref().ok_or(AuthError::NoIssuer)?;
        jwt.validate_hashed(token, digest)
            .await
            .map(Principal::User)
    }

    /// Constant-time check of a technical token against every configured one.
    pub fn is_technical(&self, token: &str) -> bool {
        self.is_technical_digest(&sha256(token.as_bytes()))
    }

    /// Compares digests, so the time taken depends on neither the candidate
    /// nor which configured token (if any) matches.
    fn is_technical_digest(&self, candidate: &[u8; 32]) -> bool {
        let mut found = subtle::Choice::from(0u8);
        for known in self.technical.iter() {
            found |= known.ct_eq(candidate);
        }
        bool::from(found)
    }

    /// The JWT validator, when user tokens are accepted.
    pub fn jwt(&self) -> Option<&Arc<JwtValidator>> {
        self.jwt.as_ref()
    }
}

/// Extracts the token of a `Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Builds an [`AuthConfig`] from a variable lookup (the environment in
/// [`Auth::from_env`]; a map in tests). The token-validation settings are
/// read by [`JwtSettings::from_lookup`], the same parser the gateway uses.
pub fn config_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> Result<AuthConfig, AuthConfigError> {
    let list = |k: &str| -> Vec<String> {
        get(k)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut technical_tokens = list("CORTEX_TECHNICAL_TOKENS");
    technical_tokens.extend(list("CORTEX_TECHNICAL_TOKEN"));
    let settings = JwtSettings::from_lookup(&get)?;
    let set = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(gateway) = set("CORTEX_GATEWAY_ISSUER") {
        return Ok(AuthConfig {
            technical_tokens,
            jwt: Some(gateway_assertion_config(
                &settings,
                &gateway,
                list("OAUTH_AUDIENCE"),
                set("OAUTH_ISSUER").is_some(),
                set("CORTEX_GATEWAY_AUDIENCE"),
            )?),
        });
    }
    if set("CORTEX_GATEWAY_AUDIENCE").is_some() {
        return Err(AuthConfigError::new(
            "CORTEX_GATEWAY_AUDIENCE",
            "only meaningful with CORTEX_GATEWAY_ISSUER (gateway-assertion mode); set that \
             too, or remove this",
        ));
    }
    let jwt = match get("OAUTH_ISSUER").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(issuer) => {
            let audiences = list("OAUTH_AUDIENCE");
            if audiences.is_empty() {
                return Err(AuthConfigError::new(
                    "OAUTH_AUDIENCE",
                    "required when OAUTH_ISSUER is set: the audience your tokens are minted for \
                     (behind a Cortex gateway, its canonical URI, e.g. https://mcp.example.com/mcp)",
                ));
            }
            Some(settings.jwt_config(issuer.trim(), audiences)?)
        }
    };
    Ok(AuthConfig {
        technical_tokens,
        jwt,
    })
}

/// The validator configuration of gateway-assertion mode: the gateway is
/// the only issuer, its assertions carry `act.sub` = the gateway and
/// header `typ: at+jwt`, and are signed with ES256.
fn gateway_assertion_config(
    settings: &JwtSettings,
    gateway: &str,
    audiences: Vec<String>,
    idp_issuer_set: bool,
    gateway_audience: Option<String>,
) -> Result<JwtConfig, AuthConfigError> {
    if idp_issuer_set {
        return Err(AuthConfigError::new(
            "OAUTH_ISSUER",
            "must not be set with CORTEX_GATEWAY_ISSUER: in gateway-assertion mode the backend \
             trusts only the gateway's assertions, never the identity provider's tokens; remove \
             OAUTH_ISSUER (and an OAUTH_JWKS_URL naming the provider's keys)",
        ));
    }
    if audiences.is_empty() {
        return Err(AuthConfigError::new(
            "OAUTH_AUDIENCE",
            "required with CORTEX_GATEWAY_ISSUER: this backend's own audience, the one the \
             gateway mints its assertions for (the gateway's CORTEX_BACKEND_<ID>_AUDIENCE, by \
             default the backend's URL)",
        ));
    }
    if !settings.algorithms.contains(&Algorithm::ES256) {
        return Err(AuthConfigError::new(
            "OAUTH_ALGORITHMS",
            "the gateway signs its assertions with ES256; include it (CORTEX_GATEWAY_ISSUER is set)",
        ));
    }
    if settings.require_nbf {
        return Err(AuthConfigError::new(
            "OAUTH_REQUIRE_NBF",
            "the gateway's assertions carry no `nbf` (they live two minutes from `iat`); \
             remove this setting (CORTEX_GATEWAY_ISSUER is set)",
        ));
    }
    let defaults = JwtSettings::default();
    for (name, value, default) in [
        (
            "CORTEX_ROLE_CLAIM",
            &settings.role_claim,
            &defaults.role_claim,
        ),
        (
            "CORTEX_POOL_CLAIM",
            &settings.pool_claim,
            &defaults.pool_claim,
        ),
    ] {
        if value != default {
            return Err(AuthConfigError::new(
                name,
                format!(
                    "the gateway's assertions carry the caller's {default} as `{default}` (the \
                     gateway reads your identity provider's claim path with its own {name}); \
                     remove this setting (CORTEX_GATEWAY_ISSUER is set)"
                ),
            ));
        }
    }
    let mut config = settings.jwt_config(gateway, audiences)?;
    if matches!(config.keys, KeySource::Discover) {
        config.keys = KeySource::JwksUrl(format!(
            "{}/.well-known/jwks.json",
            gateway.trim_end_matches('/')
        ));
    }
    keys::check_transport(gateway, config.allow_insecure_http)
        .map_err(|p| AuthConfigError::new("CORTEX_GATEWAY_ISSUER", p))?;
    config.require_at_jwt = true;
    config.required_actor = Some(gateway.to_string());
    config.refused_audience = gateway_audience;
    Ok(config)
}

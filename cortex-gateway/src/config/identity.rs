//! The gateway's own identity (the `[identity]` table): the keys it signs
//! with, the issuer it signs as, and the lifetime of the assertions it
//! sends to `assert` backends.

use std::{collections::HashMap, path::PathBuf};

use cortex_backend::auth::check_transport;
use serde::{Deserialize, Serialize};

use super::{ConfigError, GatewayConfig, TokenMode, backend_env, env_value, parse_num};

/// The default lifetime of an assertion, seconds.
pub const DEFAULT_ASSERT_TTL_S: u64 = 120;
/// The shortest assertion lifetime accepted, seconds.
pub const MIN_ASSERT_TTL_S: u64 = 60;
/// The longest assertion lifetime accepted, seconds.
pub const MAX_ASSERT_TTL_S: u64 = 300;

fn default_ttl() -> u64 {
    DEFAULT_ASSERT_TTL_S
}

/// The gateway's signing identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM file of PKCS#8 P-256 private keys (`CORTEX_SIGNING_KEY_FILE`):
    /// the first signs, the others are only published. `None`: a key is
    /// generated at start (one replica only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The `iss` of what the gateway signs (`CORTEX_GATEWAY_ISSUER`);
    /// `None`: the origin of the canonical URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_issuer: Option<String>,
    /// Lifetime of an assertion sent to an `assert` backend, seconds
    /// (`CORTEX_ASSERT_TTL_S`, 60 to 300).
    #[serde(default = "default_ttl")]
    pub assert_ttl_s: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            gateway_issuer: None,
            assert_ttl_s: DEFAULT_ASSERT_TTL_S,
        }
    }
}

impl IdentityConfig {
    /// Reads `CORTEX_SIGNING_KEY_FILE`, `CORTEX_GATEWAY_ISSUER` and
    /// `CORTEX_ASSERT_TTL_S`.
    pub(super) fn from_env_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| env_value(env, k);
        let mut identity = Self {
            signing_key_file: get("CORTEX_SIGNING_KEY_FILE").map(PathBuf::from),
            gateway_issuer: get("CORTEX_GATEWAY_ISSUER"),
            ..Self::default()
        };
        if let Some(v) = get("CORTEX_ASSERT_TTL_S") {
            identity.assert_ttl_s = parse_num("CORTEX_ASSERT_TTL_S", &v, "120")?;
        }
        Ok(identity)
    }

    /// Checks the issuer, the lifetime, and the settings each backend's
    /// token mode needs.
    pub(super) fn validate(&self, config: &GatewayConfig) -> Result<(), ConfigError> {
        if !(MIN_ASSERT_TTL_S..=MAX_ASSERT_TTL_S).contains(&self.assert_ttl_s) {
            return Err(ConfigError::new(
                "CORTEX_ASSERT_TTL_S",
                format!(
                    "{} is outside {MIN_ASSERT_TTL_S}..={MAX_ASSERT_TTL_S} seconds; an assertion must \
                     outlive a call yet expire soon after, e.g. {DEFAULT_ASSERT_TTL_S}",
                    self.assert_ttl_s
                ),
            ));
        }
        if let Some(issuer) = &self.gateway_issuer {
            let bad = |why: &str| {
                ConfigError::new(
                    "CORTEX_GATEWAY_ISSUER",
                    format!(
                        "`{issuer}` {why}; use the gateway's public origin, e.g. https://mcp.example.com"
                    ),
                )
            };
            check_transport(issuer, config.oauth.allow_insecure_http).map_err(|e| bad(&e))?;
            if issuer.ends_with('/') || issuer.contains(['?', '#']) {
                return Err(bad("must not end with `/` nor carry a query or fragment"));
            }
        }
        let canonical = config.canonical_uri.trim_end_matches('/');
        for b in &config.backends {
            if b.token_mode == TokenMode::Assert
                && b.exchange_audience().trim_end_matches('/') == canonical
            {
                return Err(ConfigError::new(
                    backend_env(b, "AUDIENCE"),
                    format!(
                        "backend `{}` would receive assertions whose audience is the gateway's own \
                         canonical URI, which the gateway itself accepts; give the backend an \
                         audience of its own, e.g. its URL",
                        b.id
                    ),
                ));
            }
            if b.token_mode == TokenMode::Obo && config.token_exchange.is_none() {
                return Err(ConfigError::new(
                    "OAUTH_CLIENT_ID",
                    format!(
                        "backend `{}` uses the on-behalf-of grant, which needs the gateway's client \
                         credentials at the identity provider: set OAUTH_CLIENT_ID and \
                         OAUTH_CLIENT_SECRET, or set {}=forward",
                        b.id,
                        backend_env(b, "TOKEN_MODE")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// The `iss` of what the gateway signs: `CORTEX_GATEWAY_ISSUER`, or the
    /// origin of the canonical URI.
    pub fn gateway_issuer(&self) -> String {
        self.identity
            .gateway_issuer
            .clone()
            .unwrap_or_else(|| self.canonical_origin())
    }
}

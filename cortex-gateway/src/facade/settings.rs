//! The facade's settings, as `crate::config` reads them
//! (`config/facade.rs` parses the environment; the TOML table is this
//! struct) and re-exports them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default lifetime of a facade access token, seconds.
pub const DEFAULT_FACADE_ACCESS_TTL_S: u64 = 600;
/// The default lifetime of a facade grant (its refresh token), seconds.
pub const DEFAULT_FACADE_REFRESH_TTL_S: u64 = 14 * 86_400;
/// The default cap on dynamically registered clients.
pub const DEFAULT_FACADE_MAX_CLIENTS: usize = 10_000;

/// Which identity provider the facade delegates sign-in to: each is a row
/// of differences (`facade::profile`), not a code path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FacadeProfile {
    /// Microsoft Entra ID (v2 endpoints).
    Entra,
    /// Okta (a custom authorization server).
    Okta,
    /// Keycloak (a realm).
    Keycloak,
    /// Auth0.
    Auth0,
    /// Any other OpenID Connect provider.
    Oidc,
}

impl FacadeProfile {
    /// The profile named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "entra" => Self::Entra,
            "okta" => Self::Okta,
            "keycloak" => Self::Keycloak,
            "auth0" => Self::Auth0,
            "oidc" => Self::Oidc,
            _ => return None,
        })
    }
}

fn default_access_ttl() -> u64 {
    DEFAULT_FACADE_ACCESS_TTL_S
}
fn default_refresh_ttl() -> u64 {
    DEFAULT_FACADE_REFRESH_TTL_S
}
fn default_max_clients() -> usize {
    DEFAULT_FACADE_MAX_CLIENTS
}

/// The OAuth facade's settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacadeConfig {
    /// The identity provider's kind (`CORTEX_OAUTH_FACADE`).
    pub profile: FacadeProfile,
    /// The identity provider's issuer (`CORTEX_FACADE_ISSUER`).
    pub issuer: String,
    /// The gateway's client there (`CORTEX_FACADE_CLIENT_ID`).
    pub client_id: String,
    /// Its secret (`CORTEX_FACADE_CLIENT_SECRET`); masked.
    pub client_secret: String,
    /// Prefix of the provider's scope names (`CORTEX_FACADE_SCOPE_PREFIX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_prefix: Option<String>,
    /// The provider's access-token audience (`CORTEX_FACADE_AUDIENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Group → Cortex scopes (`CORTEX_FACADE_GROUP_SCOPES`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_scopes: BTreeMap<String, Vec<String>>,
    /// Access-token lifetime, seconds (`CORTEX_FACADE_ACCESS_TTL_S`).
    #[serde(default = "default_access_ttl")]
    pub access_ttl_s: u64,
    /// Grant lifetime, seconds; 0: no refresh tokens
    /// (`CORTEX_FACADE_REFRESH_TTL_S`).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl_s: u64,
    /// Registered clients kept (`CORTEX_FACADE_MAX_CLIENTS`).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Extra root certificates (DER) trusted when fetching client metadata
    /// documents, besides the system's (for an embedding application or a
    /// test authority; not read from the environment or a file).
    #[serde(skip)]
    pub document_roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for FacadeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacadeConfig")
            .field("profile", &self.profile)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[masked]")
            .field("scope_prefix", &self.scope_prefix)
            .field("audience", &self.audience)
            .field("group_scopes", &self.group_scopes)
            .finish_non_exhaustive()
    }
}

impl FacadeConfig {
    /// A facade for `profile` at `issuer` with the gateway's client there,
    /// everything else at its default.
    pub fn new(
        profile: FacadeProfile,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            profile,
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope_prefix: None,
            audience: None,
            group_scopes: BTreeMap::new(),
            access_ttl_s: DEFAULT_FACADE_ACCESS_TTL_S,
            refresh_ttl_s: DEFAULT_FACADE_REFRESH_TTL_S,
            max_clients: DEFAULT_FACADE_MAX_CLIENTS,
            document_roots: Vec::new(),
        }
    }
}

//! `whoami`, the caller's identity, and `get_help` params.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `get_help` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetHelpParams {
    /// One topic; absent means all sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The caller's identity as the `X-Cortex-*` headers carry it, and as
/// `whoami` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserContext {
    /// The token's `sub`.
    pub sub: String,
    /// The token's email claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Role, from the configured claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Pool, from the configured claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// `whoami` result of an SDK backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The backend's id.
    pub backend: String,
    /// The validated identity.
    #[serde(flatten)]
    pub user: UserContext,
    /// The tools this caller may call here.
    pub tools: Vec<String>,
    /// Who presented the token on the caller's behalf (`act.sub`): the
    /// gateway, when the backend trusts gateway assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

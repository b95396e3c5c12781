//! The settings of one backend and of token exchange (filled by
//! [`crate::config`]).

use std::time::Duration;

use cortex_backend::contract::DEFAULT_PATH;
use serde::{Deserialize, Serialize};

/// The default per-backend call timeout in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

fn default_path() -> String {
    DEFAULT_PATH.to_string()
}
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_true() -> bool {
    true
}

/// How the caller's token reaches a backend (design.md, "Forwarding the
/// caller's token").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// The validated caller token is forwarded as is (one trust domain, one
    /// authorization server; the backend validates it itself).
    #[default]
    Forward,
    /// RFC 8693 token exchange: the gateway trades the validated caller
    /// token at the authorization server for one whose audience is this
    /// backend alone, caches it until shortly before it expires, and sends
    /// that instead.
    Exchange,
    /// The gateway signs a short-lived assertion (`iss` the gateway, `aud`
    /// this backend, the caller's claims, `act` the gateway) with its own
    /// keys; the caller's token never reaches the backend.
    Assert,
    /// Entra ID's on-behalf-of grant (RFC 7523 `jwt-bearer` with
    /// `requested_token_use=on_behalf_of`): like `exchange`, for identity
    /// providers that offer on-behalf-of instead of RFC 8693.
    Obo,
}

impl TokenMode {
    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Exchange => "exchange",
            Self::Assert => "assert",
            Self::Obo => "obo",
        }
    }

    /// Parses a configured name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Forward, Self::Exchange, Self::Assert, Self::Obo]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// One federated backend.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The backend's id: the tool prefix (`crm` gives `crm_search`).
    pub id: String,
    /// Base URL, e.g. `https://crm.internal.example.com`.
    pub url: String,
    /// Contract endpoint path.
    #[serde(default = "default_path")]
    pub path: String,
    /// Per-call timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How the caller's token is forwarded.
    #[serde(default)]
    pub token_mode: TokenMode,
    /// Allow plaintext `http://` to a non-loopback host (the caller's token
    /// would travel in clear). Off by default.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Prefix tool names with `<id>_` (default). Without a prefix, a name
    /// clash with another backend or a builtin stops the start.
    #[serde(default = "default_true")]
    pub prefix: bool,
    /// This backend's audience: requested in `exchange` mode, the `aud` of
    /// its assertions in `assert` mode (default: the backend's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The scope requested for this backend in `obo` mode (default:
    /// `<audience>/.default`, Entra's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obo_scope: Option<String>,
    /// The technical token sent to this backend's discovery methods
    /// (`CORTEX_BACKEND_<ID>_TECHNICAL_TOKEN`); `None` = the shared
    /// `CORTEX_TECHNICAL_TOKEN`. With one token per backend, a backend
    /// cannot replay the token it receives at another. Masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technical_token: Option<String>,
}

impl std::fmt::Debug for BackendConfig {
    /// Every field but the technical token, which shows as masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("path", &self.path)
            .field("timeout_ms", &self.timeout_ms)
            .field("token_mode", &self.token_mode)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("prefix", &self.prefix)
            .field("audience", &self.audience)
            .field("obo_scope", &self.obo_scope)
            .field(
                "technical_token",
                &self.technical_token.as_ref().map(|_| "[masked]"),
            )
            .finish()
    }
}

/// The gateway's client credentials at the authorization server, for RFC
/// 8693 token exchange.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The token endpoint (`OAUTH_TOKEN_ENDPOINT`); `None` = from the
    /// issuer's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The gateway's client id (`OAUTH_CLIENT_ID`).
    pub client_id: String,
    /// The gateway's client secret (`OAUTH_CLIENT_SECRET`). Masked.
    pub client_secret: String,
}

impl std::fmt::Debug for TokenExchangeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeConfig")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[masked]")
            .finish()
    }
}

impl BackendConfig {
    /// A backend with the defaults (path, 10 s timeout, forward, prefixed).
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            path: default_path(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            token_mode: TokenMode::Forward,
            allow_insecure_http: false,
            prefix: true,
            audience: None,
            obo_scope: None,
            technical_token: None,
        }
    }

    /// The technical token for this backend's discovery calls: its own,
    /// or the shared one.
    pub fn technical_token<'a>(&'a self, shared: &'a str) -> &'a str {
        self.technical_token.as_deref().unwrap_or(shared)
    }

    /// The backend's audience (`exchange` and `assert` modes).
    pub fn exchange_audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.url)
    }

    /// The scope requested in `obo` mode.
    pub fn obo_scope(&self) -> std::borrow::Cow<'_, str> {
        match &self.obo_scope {
            Some(s) => s.as_str().into(),
            None => format!(
                "{}/.default",
                self.exchange_audience().trim_end_matches('/')
            )
            .into(),
        }
    }

    /// The full endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), self.path)
    }

    /// The call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

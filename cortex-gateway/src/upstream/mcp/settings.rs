//! The settings of one third-party MCP server (filled by
//! [`crate::config`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::settings::DEFAULT_TIMEOUT_MS;

/// The default cap on the downstream sessions kept, over every (user,
/// server) pair.
pub const DEFAULT_MCP_MAX_SESSIONS: usize = 10_000;
/// The default cap on the bytes those sessions may hold.
pub const DEFAULT_MCP_MAX_SESSION_BYTES: usize = 4 << 20;
/// The default cap on the `tools/list` pages read from one server at a
/// refresh.
pub const DEFAULT_MCP_MAX_LIST_PAGES: usize = 20;

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
fn default_true() -> bool {
    true
}

/// One third-party MCP server reached over Streamable HTTP
/// (`[[mcp_server]]`, `CORTEX_MCP_<ID>_*`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The server id: the tool prefix (`tracker` gives `tracker_<tool>`).
    pub id: String,
    /// The server's MCP endpoint, e.g. `https://mcp.tracker.example/mcp`.
    pub url: String,
    /// The Cortex scope a caller needs for the server's read-only tools
    /// (`CORTEX_MCP_<ID>_SCOPE`); `None`: `mcp:<id>:read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The Cortex scope a caller needs for every tool whose
    /// `annotations.readOnlyHint` is not `true`
    /// (`CORTEX_MCP_<ID>_WRITE_SCOPE`); `None`: `mcp:<id>:write`; an empty
    /// string: the read scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_scope: Option<String>,
    /// A client pre-registered at the server's authorization server
    /// (`CORTEX_MCP_<ID>_CLIENT_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its secret (`CORTEX_MCP_<ID>_CLIENT_SECRET`). Masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The OAuth scope asked for when a user links
    /// (`CORTEX_MCP_<ID>_OAUTH_SCOPE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_scope: Option<String>,
    /// The `sub` whose linked account lists the tools
    /// (`CORTEX_MCP_<ID>_CATALOG_SUB`); `None`: listed without a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_sub: Option<String>,
    /// Per-request timeout in milliseconds (`CORTEX_MCP_<ID>_TIMEOUT_MS`).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Prefix tool names with `<id>_` (`CORTEX_MCP_<ID>_PREFIX`).
    #[serde(default = "default_true")]
    pub prefix: bool,
}

impl std::fmt::Debug for McpServerConfig {
    /// Every field but the client secret, which shows as masked.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("scope", &self.scope)
            .field("write_scope", &self.write_scope)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[masked]"),
            )
            .field("oauth_scope", &self.oauth_scope)
            .field("catalog_sub", &self.catalog_sub)
            .field("timeout_ms", &self.timeout_ms)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl McpServerConfig {
    /// A server with the defaults (scopes `mcp:<id>:read`/`write`, no
    /// client, no catalog account, 10 s timeout, prefixed).
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
            scope: None,
            write_scope: None,
            client_id: None,
            client_secret: None,
            oauth_scope: None,
            catalog_sub: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            prefix: true,
        }
    }

    /// The scope of the read-only tools.
    pub fn read_scope(&self) -> String {
        match &self.scope {
            Some(s) => s.clone(),
            None => format!("mcp:{}:read", self.id),
        }
    }

    /// The scope of the other tools.
    pub fn write_scope(&self) -> String {
        match self.write_scope.as_deref() {
            Some("") => self.read_scope(),
            Some(s) => s.to_string(),
            None => format!("mcp:{}:write", self.id),
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Bounds of the downstream MCP client (`CORTEX_MCP_MAX_SESSIONS`,
/// `CORTEX_MCP_MAX_SESSION_BYTES`, `CORTEX_MCP_MAX_LIST_PAGES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpClientLimits {
    /// Sessions kept over every (user, server) pair; the oldest goes first.
    pub max_sessions: usize,
    /// Bytes those sessions may hold.
    pub max_session_bytes: usize,
    /// `tools/list` pages read from one server at a refresh.
    pub max_list_pages: usize,
}

impl Default for McpClientLimits {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MCP_MAX_SESSIONS,
            max_session_bytes: DEFAULT_MCP_MAX_SESSION_BYTES,
            max_list_pages: DEFAULT_MCP_MAX_LIST_PAGES,
        }
    }
}

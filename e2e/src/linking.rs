//! The gateway in front of third-party MCP servers that users link their
//! own accounts to: [`LinkStack`] starts the gateway's issuer
//! (`oauth/issuer.mjs`), two [`Tracker`]s with authorization servers of
//! their own (`tracker`, which keeps sessions, and `board`, stateless), and
//! the gateway configured with `CORTEX_MCP_SERVERS=tracker,board` the way
//! an operator would, with its vault in SQLite or PostgreSQL. Linking to
//! `tracker` asks for `openid` too (the page then names the account);
//! `board` gets the gateway's default scope.

use std::{collections::HashMap, path::Path};

use meridian::apps::serve::ShutdownTrigger;
use serde_json::json;

use crate::{
    real_issuer::{OidcProvider, serve_gateway},
    tracker::Tracker,
};

/// The gateway's public client at its issuer (code + PKCE), for the users'
/// gateway tokens.
pub const GATEWAY_CLIENT_ID: &str = "e2e-agent";
/// Its registered redirect URI (never listened on).
pub const GATEWAY_REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// The Cortex scopes of both servers' tools.
pub const GATEWAY_SCOPES: &str =
    "mcp:tracker:read mcp:tracker:write mcp:board:read mcp:board:write";
/// The gateway user whose linked accounts list the servers' tools
/// (`CORTEX_MCP_<ID>_CATALOG_SUB`): both servers need a token even to list.
pub const CATALOG_SUB: &str = "catalog-bot";
/// The vault key the stack starts with, id `k1` (a test key: 32 bytes).
pub const FIRST_KEY: (&str, &str) = ("k1", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");

/// Where the vault keeps its records.
#[derive(Debug, Clone)]
pub enum VaultAt {
    /// `CORTEX_VAULT_PATH`: one SQLite file.
    Sqlite(std::path::PathBuf),
    /// `CORTEX_DATABASE_URL`: a PostgreSQL server.
    Postgres(String),
}

impl VaultAt {
    /// The variable and value that select this storage.
    pub fn variable(&self) -> (&'static str, String) {
        match self {
            Self::Sqlite(path) => ("CORTEX_VAULT_PATH", path.display().to_string()),
            Self::Postgres(url) => ("CORTEX_DATABASE_URL", url.clone()),
        }
    }
}

/// The gateway's issuer, the two third-party servers and the gateway.
#[derive(Debug)]
pub struct LinkStack {
    url: String,
    issuer: OidcProvider,
    tracker: Tracker,
    board: Tracker,
    env: HashMap<String, String>,
    trigger: ShutdownTrigger,
    gateway: tokio::task::JoinHandle<()>,
}

impl LinkStack {
    /// Starts everything on loopback; `node` runs the Node.js parts.
    pub async fn start(node: &Path, vault: VaultAt) -> anyhow::Result<Self> {
        let gateway_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let gateway_addr = gateway_listener.local_addr()?;
        let url = format!("http://{gateway_addr}/mcp");
        let issuer_config = json!({
            "port": 0,
            "resources": { url.as_str(): GATEWAY_SCOPES },
            "clients": [{
                "client_id": GATEWAY_CLIENT_ID,
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [GATEWAY_REDIRECT_URI],
                "scope": GATEWAY_SCOPES,
            }],
        });
        let node = node.to_owned();
        let (issuer, tracker, board) = tokio::task::spawn_blocking(move || {
            anyhow::Ok((
                OidcProvider::start(
                    &node,
                    &crate::tracker::oauth_script("issuer.mjs"),
                    &issuer_config,
                )?,
                Tracker::start(&node, false)?,
                Tracker::start(&node, true)?,
            ))
        })
        .await??;
        let (vault_variable, vault_value) = vault.variable();
        let env: HashMap<String, String> = [
            ("CORTEX_CANONICAL_URI", url.clone()),
            ("OAUTH_ISSUER", issuer.issuer().to_owned()),
            ("CORTEX_LISTEN", gateway_addr.to_string()),
            // Required even with no contract backend configured.
            (
                "CORTEX_TECHNICAL_TOKEN",
                "e2e-linking-technical-token-0123456789".into(),
            ),
            ("CORTEX_MCP_SERVERS", "tracker,board".into()),
            ("CORTEX_MCP_TRACKER_URL", tracker.url().to_owned()),
            ("CORTEX_MCP_BOARD_URL", board.url().to_owned()),
            ("CORTEX_MCP_TRACKER_CATALOG_SUB", CATALOG_SUB.into()),
            // `openid` brings an ID token, which names the linked account;
            // `board` gets the gateway's default scope.
            (
                "CORTEX_MCP_TRACKER_OAUTH_SCOPE",
                "openid tracker:read tracker:write".into(),
            ),
            ("CORTEX_MCP_BOARD_CATALOG_SUB", CATALOG_SUB.into()),
            (
                "CORTEX_VAULT_KEYS",
                format!("{}:{}", FIRST_KEY.0, FIRST_KEY.1),
            ),
            (vault_variable, vault_value),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let (trigger, _) = ShutdownTrigger::new();
        let task = serve_gateway(&env, gateway_listener, &trigger).await?;
        Ok(Self {
            url,
            issuer,
            tracker,
            board,
            env,
            trigger,
            gateway: task,
        })
    }

    /// The gateway's MCP URL (its canonical URI).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gateway's origin, where `/link/...` is served.
    pub fn origin(&self) -> &str {
        self.url.trim_end_matches("/mcp")
    }

    /// The gateway's issuer.
    pub fn issuer(&self) -> &str {
        self.issuer.issuer()
    }

    /// A third-party server by id: `tracker` (stateful) or `board`
    /// (stateless).
    pub fn server(&self, id: &str) -> &Tracker {
        match id {
            "tracker" => &self.tracker,
            "board" => &self.board,
            _ => panic!("no third-party server {id}; there are tracker and board"),
        }
    }

    /// The gateway's callback for `server`'s consent.
    pub fn callback_prefix(&self, server: &str) -> String {
        format!("{}/link/{server}/callback", self.origin())
    }

    /// The variables the gateway was configured with (for the CLI).
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// Stops the gateway; the Node.js parts stop when this is dropped.
    pub async fn shutdown(self) {
        self.trigger.fire();
        let _ = self.gateway.await;
    }
}

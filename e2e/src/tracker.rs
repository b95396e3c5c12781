//! "Tracker", a third-party MCP server with its own authorization server
//! (`oauth/tracker.mjs`: the official TypeScript SDK's `McpServer` in its
//! resource-server mode, and oidc-provider), and the user's side of
//! linking an account to it, scripted ([`headless_consent`]).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::node::NodeProcess;

/// The scopes the tracker's authorization server knows for its MCP server.
pub const SCOPES: &str = "tracker:read tracker:write";
/// The tracker's static public client (code + PKCE), for tests that get a
/// token themselves.
pub const TEST_CLIENT_ID: &str = "tracker-test-app";
/// Its registered redirect URI (never listened on).
pub const TEST_REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// A script of `e2e/oauth/`.
pub fn oauth_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("oauth")
        .join(name)
}

/// A running `oauth/tracker.mjs`: its authorization server and its MCP
/// server, each on a loopback port of its own. Dropping it stops both.
#[derive(Debug)]
pub struct Tracker {
    issuer: String,
    url: String,
    admin: String,
    stateless: bool,
    _process: NodeProcess,
}

impl Tracker {
    /// Starts it with `node` and waits until both servers listen. The MCP
    /// server keeps sessions unless `stateless`. Blocks while Node starts.
    pub fn start(node: &Path, stateless: bool) -> anyhow::Result<Self> {
        let what = if stateless {
            "the stateless tracker"
        } else {
            "the stateful tracker"
        };
        let process = NodeProcess::start(
            node,
            &oauth_script("tracker.mjs"),
            &json!({ "stateless": stateless }),
            what,
        )?;
        Ok(Self {
            issuer: process.field("issuer")?,
            url: process.field("url")?,
            admin: process.field("admin")?,
            stateless,
            _process: process,
        })
    }

    /// Its authorization server's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its MCP endpoint, `http://127.0.0.1:<port>/mcp` (the token audience).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether its MCP server runs without sessions.
    pub fn stateless(&self) -> bool {
        self.stateless
    }

    /// The RFC 9728 metadata URL its 401 answers name.
    pub fn metadata_url(&self) -> String {
        let origin = self.url.trim_end_matches("/mcp");
        format!("{origin}/.well-known/oauth-protected-resource/mcp")
    }

    /// Revokes everything `sub` granted at the authorization server: its
    /// grants, and the access and refresh tokens issued under them. The
    /// number of grants revoked.
    pub async fn revoke_account(&self, sub: &str) -> anyhow::Result<u64> {
        let answer = self
            .hook("POST", "/_test/revoke", Some(json!({ "sub": sub })))
            .await?;
        answer["revoked"]
            .as_u64()
            .with_context(|| format!("revoking {sub}: no count in {answer}"))
    }

    /// Every access and refresh token value the authorization server has
    /// issued to `sub`.
    pub async fn issued_tokens(&self, sub: &str) -> anyhow::Result<Vec<String>> {
        let path = format!(
            "/_test/tokens?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("sub", sub)
                .finish()
        );
        let answer = self.hook("GET", &path, None).await?;
        Ok(answer["tokens"]
            .as_array()
            .with_context(|| format!("no token list in {answer}"))?
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect())
    }

    /// A test hook of the authorization server; its JSON answer.
    async fn hook(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, _, text) = crate::http::request(
            method,
            &format!("{}{path}", self.issuer),
            &[
                ("authorization", &format!("Bearer {}", self.admin)),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string()),
        )
        .await?;
        if status != 200 {
            bail!("{method} {path} at the tracker answered HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }
}

/// Where the user's side of a link ended.
#[derive(Debug, Clone)]
pub struct Consented {
    /// The redirect to the client's callback (carrying `code` and `state`,
    /// or `error`), not followed.
    pub callback: String,
    /// The cookies collected on the way, as a `Cookie` header value (the
    /// gateway's browser-binding cookie among them).
    pub cookie: String,
}

/// The user's side of linking, headless (`oauth/consent.mjs`): opens
/// `start` (the gateway's link URL, or any authorization URL), presses
/// "Continue" on the gateway's confirmation page, follows redirects with a
/// cookie jar, signs in as `login` on oidc-provider's
/// login form, confirms its consent form, and stops at the first redirect
/// starting with `callback_prefix`, without following it.
pub async fn headless_consent(
    node: &Path,
    start: &str,
    login: &str,
    callback_prefix: &str,
) -> anyhow::Result<Consented> {
    let request = json!({ "start": start, "login": login, "redirect": callback_prefix });
    let mut command = std::process::Command::new(node);
    command
        .arg(oauth_script("consent.mjs"))
        .arg(request.to_string())
        .stdin(std::process::Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running oauth/consent.mjs")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "headless consent as {login} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let answer: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("oauth/consent.mjs printed {stdout}"))?;
    Ok(Consented {
        callback: answer["callback"]
            .as_str()
            .context("no callback URL")?
            .to_owned(),
        cookie: answer["cookie"].as_str().unwrap_or_default().to_owned(),
    })
}

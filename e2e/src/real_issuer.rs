//! A real authorization server in front of the gateway: the npm package
//! `oidc-provider` run by `oauth/issuer.mjs`, and [`RealIssuerStack`], the
//! gateway configured for it the way an operator would (`OAUTH_ISSUER` and
//! nothing else about tokens) in front of two Meridian apps.

use std::{collections::HashMap, path::Path};

use anyhow::Context as _;
use cortex_backend::Auth;
use cortex_gateway::{Gateway, config::GatewayConfig};
use meridian::apps::{
    App,
    serve::{Served, ShutdownTrigger},
};
use serde_json::{Value, json};

use crate::node::NodeProcess;

/// A running `oauth/issuer.mjs`. It exits when its stdin closes, so it never
/// outlives the test process; dropping this handle kills it at once.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    _process: NodeProcess,
}

impl OidcProvider {
    /// Starts `script` with `node` and `config` (the script's JSON argument)
    /// and waits for its ready line.
    pub fn start(node: &Path, script: &Path, config: &Value) -> anyhow::Result<Self> {
        let process = NodeProcess::start(node, script, config, "oidc-provider")?;
        Ok(Self {
            issuer: process.field("issuer")?,
            _process: process,
        })
    }

    /// The issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Starts a gateway configured by `env` on `listener`, serving until
/// `trigger` fires, once its first catalog refresh is done.
pub async fn serve_gateway(
    env: &HashMap<String, String>,
    listener: std::net::TcpListener,
    trigger: &ShutdownTrigger,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let config = GatewayConfig::from_env_map(env)?;
    let gateway = Gateway::new(config).await.context("starting the gateway")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shutdown = trigger.subscribe();
    let task = tokio::spawn({
        let gateway = gateway.clone();
        async move {
            let _ = gateway.serve(listener, shutdown.wait()).await;
        }
    });
    gateway
        .wait_ready()
        .await
        .context("the gateway's first catalog refresh")?;
    Ok(task)
}

/// The static client that gets tokens by client credentials.
pub const SERVICE_CLIENT_ID: &str = "e2e-reporting-service";
/// Its secret (loopback only, lives as long as the test process).
pub const SERVICE_CLIENT_SECRET: &str = "e2e-reporting-service-secret-0123456789";
/// The static public client of the scripted authorization-code + PKCE flow.
pub const PUBLIC_CLIENT_ID: &str = "e2e-desktop-app";
/// Its registered redirect URI (never listened on: the script stops at the
/// redirect).
pub const PUBLIC_REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// A second resource server at the same issuer: its tokens are not for the
/// gateway.
pub const OTHER_RESOURCE: &str = "https://reports.other.example/mcp";
/// The scopes the issuer knows for the gateway's resource.
pub const GATEWAY_SCOPES: &str = "mcp:crm:read mcp:crm:write mcp:docs:read mcp:docs:write";

/// Shared secret between the gateway and the apps (loopback only).
const TECHNICAL_TOKEN: &str = "e2e-real-issuer-technical-token-0123456789";

/// oidc-provider, the Meridian `crm` and `docs` apps trusting it, and the
/// gateway federating them with `OAUTH_ISSUER` set to it.
#[derive(Debug)]
pub struct RealIssuerStack {
    url: String,
    issuer: OidcProvider,
    trigger: ShutdownTrigger,
    apps: Vec<Served>,
    gateway: tokio::task::JoinHandle<()>,
}

impl RealIssuerStack {
    /// Starts everything on loopback. `node` and `script` run the issuer.
    pub async fn start(node: &Path, script: &Path) -> anyhow::Result<Self> {
        let gateway_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let gateway_addr = gateway_listener.local_addr()?;
        let url = format!("http://{gateway_addr}/mcp");
        let config = json!({
            "port": 0,
            "resources": {
                url.as_str(): GATEWAY_SCOPES,
                OTHER_RESOURCE: GATEWAY_SCOPES,
            },
            "clients": [
                {
                    "client_id": SERVICE_CLIENT_ID,
                    "client_secret": SERVICE_CLIENT_SECRET,
                    "grant_types": ["client_credentials"],
                    "response_types": [],
                    "redirect_uris": [],
                    "scope": GATEWAY_SCOPES,
                },
                {
                    "client_id": PUBLIC_CLIENT_ID,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "redirect_uris": [PUBLIC_REDIRECT_URI],
                    "scope": GATEWAY_SCOPES,
                },
            ],
        });
        let (node, script) = (node.to_owned(), script.to_owned());
        let issuer =
            tokio::task::spawn_blocking(move || OidcProvider::start(&node, &script, &config))
                .await??;

        // The apps validate the forwarded user token themselves, with the
        // SDK's defaults for everything but the issuer and the audience.
        let app_env: HashMap<&str, String> = HashMap::from([
            ("OAUTH_ISSUER", issuer.issuer().to_owned()),
            ("OAUTH_AUDIENCE", url.clone()),
            ("CORTEX_TECHNICAL_TOKENS", TECHNICAL_TOKEN.to_owned()),
        ]);
        let app_auth = Auth::new(cortex_backend::auth::config_from_env(|k| {
            app_env.get(k).cloned()
        })?)?;
        let (trigger, _) = ShutdownTrigger::new();
        let mut apps = Vec::new();
        let mut env: HashMap<String, String> = HashMap::from([
            ("CORTEX_CANONICAL_URI".into(), url.clone()),
            ("OAUTH_ISSUER".into(), issuer.issuer().to_owned()),
            ("CORTEX_TECHNICAL_TOKEN".into(), TECHNICAL_TOKEN.into()),
            ("CORTEX_BACKENDS".into(), "crm,docs".into()),
            ("CORTEX_LISTEN".into(), gateway_addr.to_string()),
        ]);
        for app in [App::Crm, App::Docs] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let served = app
                .serve(app_auth.clone(), listener, trigger.subscribe())
                .await
                .with_context(|| format!("starting the {} app", app.id()))?;
            env.insert(
                format!("CORTEX_BACKEND_{}_URL", app.id().to_ascii_uppercase()),
                served.base_url.clone(),
            );
            apps.push(served);
        }
        let task = serve_gateway(&env, gateway_listener, &trigger).await?;
        Ok(Self {
            url,
            issuer,
            trigger,
            apps,
            gateway: task,
        })
    }

    /// The gateway's MCP URL: its canonical URI and the token audience.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The authorization server's issuer URL.
    pub fn issuer(&self) -> &str {
        self.issuer.issuer()
    }

    /// Stops the gateway, the apps and the issuer.
    pub async fn shutdown(self) {
        self.trigger.fire();
        let _ = self.gateway.await;
        for served in self.apps {
            served.stopped().await;
        }
    }
}

//! A real authorization server in front of the gateway: the npm package
//! `oidc-provider` run by `oauth/issuer.mjs`, and [`RealIssuerStack`], the
//! gateway configured for it the way an operator would (`OAUTH_ISSUER` and
//! nothing else about tokens) in front of two Meridian apps.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use anyhow::{Context as _, bail};
use cortex_backend::Auth;
use cortex_gateway::{Gateway, config::GatewayConfig};
use meridian::apps::{
    App,
    serve::{Served, ShutdownTrigger},
};
use serde_json::{Value, json};

/// How long the issuer may take to print its ready line (a cold Node start
/// on a loaded 2-core machine takes a few seconds).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Keeps at most this much of the issuer's output, for error messages.
const OUTPUT_KEPT: usize = 16 * 1024;

fn keep(output: &Mutex<String>, line: &str) {
    let mut kept = cortex_backend::sync::lock(output);
    if kept.len() + line.len() < OUTPUT_KEPT {
        kept.push_str(line);
        kept.push('\n');
    }
}

/// A running `oauth/issuer.mjs`. It exits when its stdin closes, so it never
/// outlives the test process; dropping this handle kills it at once.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    child: Child,
    _stdin: ChildStdin,
}

impl OidcProvider {
    /// Starts `script` with `node` and `config` (the script's JSON argument)
    /// and waits for its ready line.
    pub fn start(node: &Path, script: &Path, config: &Value) -> anyhow::Result<Self> {
        let mut child = Command::new(node)
            .arg(script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} {}", node.display(), script.display()))?;
        let stdin = child.stdin.take().context("the issuer's stdin")?;
        let stdout = child.stdout.take().context("the issuer's stdout")?;
        let stderr = child.stderr.take().context("the issuer's stderr")?;
        // Both pipes are read until the issuer exits (it prints notices on
        // stdout after the ready line; a closed pipe would make it fail);
        // the start of its output is kept for error messages.
        let output = Arc::new(Mutex::new(String::new()));
        let (ready, line) = mpsc::channel();
        let stdout_reader = std::thread::spawn({
            let output = output.clone();
            move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(first)) = lines.next() {
                    let _ = ready.send(first);
                }
                for line in lines.map_while(Result::ok) {
                    keep(&output, &line);
                }
            }
        });
        let stderr_reader = std::thread::spawn({
            let output = output.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    keep(&output, &line);
                }
            }
        });
        let first = line.recv_timeout(READY_LIMIT).ok();
        let issuer = first.as_deref().and_then(|first| {
            serde_json::from_str::<Value>(first.trim())
                .ok()
                .and_then(|v| v["issuer"].as_str().map(String::from))
        });
        let Some(issuer) = issuer else {
            // Everything the issuer said, once it has stopped saying it.
            let _ = child.kill();
            let _ = child.wait();
            let _ = stdout_reader.join();
            let _ = stderr_reader.join();
            let output = output.lock().map(|o| o.clone()).unwrap_or_default();
            bail!(
                "oidc-provider did not start (no ready line within {READY_LIMIT:?}; first line \
                 {first:?}); its output:\n{output}"
            );
        };
        Ok(Self {
            issuer,
            child,
            _stdin: stdin,
        })
    }

    /// The issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let config = GatewayConfig::from_env_map(&env)?;
        let gateway = Gateway::new(config).await.context("starting the gateway")?;
        gateway_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(gateway_listener)?;
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

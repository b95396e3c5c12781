//! Starting the whole example in-process: issuer, four apps, the tracker
//! (a third-party MCP server with its own authorization server), gateway.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use cortex_backend::{
    Auth,
    testing::{IssuerState, TestIssuer},
};
use cortex_gateway::{
    Gateway,
    config::{BackendConfig, GatewayConfig, McpServerConfig, TokenMode, VaultConfig},
    vault::{VaultKeys, VaultStorage},
};
use serde::Serialize;

use crate::{
    apps::{
        App, gateway_assertion_auth,
        serve::{Served, ShutdownTrigger},
    },
    firm::Persona,
    issuer::{AuthServer, ClientCredentials, Settings, TRACKER_SCOPES},
    tracker::Tracker,
};

/// The tracker's server id at the gateway: its tools are `tracker_<tool>`,
/// its link pages `/link/tracker/...`.
pub const TRACKER_ID: &str = "tracker";

/// Seconds the gateway reuses an introspection answer: how long a revoked
/// token keeps working at most.
pub const INTROSPECTION_CACHE_S: u64 = 3;

/// Settings of [`start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The gateway's port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Lifetime of the persona tokens.
    pub token_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 3213,
            token_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

/// One bearer token per persona, as written to `--tokens-file`.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    /// Lena Fischer, sales-north: `mcp:crm:write`.
    pub sales_rep: String,
    /// Omar Haddad: `mcp:docs:write mcp:crm:read`.
    pub project_manager: String,
    /// Claire Dubois: `mcp:billing:write mcp:crm:read`.
    pub cfo: String,
    /// Victor Almeida: every `:read` scope.
    pub ceo: String,
}

impl Tokens {
    /// The token of one persona.
    pub fn get(&self, persona: Persona) -> &str {
        match persona {
            Persona::SalesRep => &self.sales_rep,
            Persona::ProjectManager => &self.project_manager,
            Persona::Cfo => &self.cfo,
            Persona::Ceo => &self.ceo,
        }
    }
}

/// The running example. Dropping it also stops the servers, without
/// waiting for them; [`Running::shutdown`] waits until they have stopped.
#[derive(Debug)]
pub struct Running {
    /// The MCP URL (the gateway's canonical URI and the tokens' audience).
    pub url: String,
    /// The persona tokens (minted without a sign-in, for scripts and tests).
    pub tokens: Tokens,
    apps: Vec<(App, Served)>,
    tracker: Tracker,
    gateway: tokio::task::JoinHandle<()>,
    auth: AuthServer,
    /// Mints what the gateway signs, with the gateway's own key.
    gateway_minter: TestIssuer,
    trigger: ShutdownTrigger,
    _vault: RunDir,
}

impl Running {
    /// The contract endpoint of one app (to call it directly or point the
    /// conformance harness at it).
    pub fn app_url(&self, app: App) -> &str {
        self.apps
            .iter()
            .find(|(a, _)| *a == app)
            .map(|(_, s)| s.url.as_str())
            .expect("every app is started")
    }

    /// A minter with the authorization server's key and `iss`, to mint
    /// more tokens without a sign-in (audience: [`Running::url`]).
    pub fn issuer(&self) -> &TestIssuer {
        self.auth.minter()
    }

    /// The audience the gateway's assertions for `app` carry: the app's
    /// URL (what [`App::ASSERTED`] accepts as `OAUTH_AUDIENCE`).
    pub fn app_audience(&self, app: App) -> &str {
        self.apps
            .iter()
            .find(|(a, _)| *a == app)
            .map(|(_, s)| s.base_url.as_str())
            .expect("every app is started")
    }

    /// A minter with the gateway's signing key and issuer: its tokens are
    /// the assertions the gateway signs (`act`, ES256, its `kid`), to call
    /// [`App::ASSERTED`] directly in tests as the gateway does.
    pub fn gateway_minter(&self) -> &TestIssuer {
        &self.gateway_minter
    }

    /// The assertion the gateway would send `app` for a persona (its `sub`,
    /// `email`, `name`, `role` and scopes), valid two minutes.
    pub fn assertion(&self, app: App, persona: Persona) -> String {
        let claims = persona.claims();
        let mut token = self
            .gateway_minter
            .token(self.app_audience(app))
            .scopes(persona.scopes().iter().copied());
        for name in ["sub", "email", "name", "role"] {
            if let Some(value) = claims.get(name) {
                token = token.claim(name, value.clone());
            }
        }
        token.mint()
    }

    /// The dev authorization server (sign-in, tokens, revocation).
    pub fn auth_server(&self) -> &AuthServer {
        &self.auth
    }

    /// The tracker: a third-party MCP server with its own authorization
    /// server, behind the gateway as the MCP server `tracker`.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Mints a token for a persona with a given lifetime.
    pub fn mint(&self, persona: Persona, ttl: Duration) -> String {
        mint(self.auth.minter(), &self.url, persona, ttl)
    }

    /// Stops the gateway and the apps and waits until they have stopped.
    pub async fn shutdown(self) {
        self.trigger.fire();
        let _ = self.gateway.await;
        for (_, served) in self.apps {
            served.stopped().await;
        }
    }
}

fn mint(issuer: &TestIssuer, audience: &str, persona: Persona, ttl: Duration) -> String {
    let mut token = issuer
        .token(audience)
        .scopes(persona.scopes().iter().copied())
        .ttl(ttl);
    if let serde_json::Value::Object(claims) = persona.claims() {
        for (name, value) in claims {
            token = token.claim(&name, value);
        }
    }
    token.mint()
}

/// Starts the gateway in front of the apps (prefixed tool names, forward
/// mode but [`App::ASSERTED`] in assert mode, audience = the MCP URL,
/// every token introspected at the authorization server) and waits until
/// its catalog holds them all.
async fn start_gateway(
    auth: &AuthServer,
    introspection: ClientCredentials,
    url: &str,
    technical: String,
    sources: Sources<'_>,
    listener: std::net::TcpListener,
    trigger: &ShutdownTrigger,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut config = GatewayConfig::new(url, auth.issuer(), technical);
    config.listen = listener.local_addr()?;
    // The `iss` of the assertions and where the gateway publishes its
    // keys (its origin, the default, spelled out: the asserted app trusts it).
    config.identity.gateway_issuer = Some(gateway_issuer(&listener)?);
    config.identity.signing_key_file = Some(sources.signing_key_file.clone());
    config.oauth.jwks_url = Some(auth.jwks_url());
    config.controls.introspection_url = Some(auth.introspection_url());
    config.controls.introspection_client_id = Some(introspection.client_id);
    config.controls.introspection_client_secret = Some(introspection.client_secret);
    config.controls.introspection_cache_s = INTROSPECTION_CACHE_S;
    // Audit lines (one per tool call) go to standard output, with caller
    // pseudonyms keyed by a secret of this run.
    config.controls.audit_secret = Some(random_secret()?);
    let Sources {
        apps,
        tracker,
        vault,
        ..
    } = sources;
    for (app, served) in apps {
        let mut backend = BackendConfig::new(app.id(), served.base_url.clone());
        backend.prefix = true;
        // CORTEX_BACKEND_<ID>_TOKEN_MODE; the assertion's audience is the
        // app's URL (the default CORTEX_BACKEND_<ID>_AUDIENCE).
        backend.token_mode = if *app == App::ASSERTED {
            TokenMode::Assert
        } else {
            TokenMode::Forward
        };
        config.backends.push(backend);
    }
    config.mcp_servers.push(tracker);
    config.vault = Some(vault);
    let gateway = Gateway::new(config).await.context("starting the gateway")?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let shutdown = trigger.subscribe();
    let task = tokio::spawn({
        let gateway = gateway.clone();
        async move {
            if let Err(e) = gateway.serve(listener, shutdown.wait()).await {
                tracing::error!(error = %e, "the gateway failed");
            }
        }
    });
    gateway
        .wait_ready()
        .await
        .context("the gateway's first catalog refresh")?;
    let catalog = gateway.catalog();
    let healthy: Vec<&str> = catalog.healthy().collect();
    let mut sources = apps.iter().map(|(a, _)| a.id()).chain([TRACKER_ID]);
    if let Some(source) = sources.find(|s| !healthy.contains(s)) {
        anyhow::bail!(
            "the gateway could not load the {source} catalog: {}",
            catalog.warnings.join("; ")
        );
    }
    Ok(task)
}

/// The gateway's issuer: the origin of its MCP URL, on `listener`.
fn gateway_issuer(listener: &std::net::TcpListener) -> std::io::Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}

/// What the gateway federates.
struct Sources<'a> {
    /// The four apps (contract backends).
    apps: &'a [(App, Served)],
    /// The tracker: a third-party MCP server the gateway reaches with each
    /// person's own linked tracker account, never with their gateway token.
    tracker: McpServerConfig,
    /// Where those accounts' grants are kept sealed.
    vault: VaultConfig,
    /// The gateway's signing key (`CORTEX_SIGNING_KEY_FILE`), in the run's
    /// directory.
    signing_key_file: std::path::PathBuf,
}

impl<'a> Sources<'a> {
    /// The apps, the tracker, and the vault of linked accounts: a SQLite file in the
    /// run's directory, sealed with a key generated for this run and kept
    /// in memory only. Links do not outlive the run.
    fn new(
        apps: &'a [(App, Served)],
        tracker: &Tracker,
        dir: &RunDir,
        gateway_key: &IssuerState,
    ) -> anyhow::Result<Self> {
        let mut server = McpServerConfig::new(TRACKER_ID, tracker.url());
        server.oauth_scope = Some(TRACKER_SCOPES.join(" "));
        let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()?);
        let keys = VaultKeys::parse_single("CORTEX_VAULT_KEY", &key)?;
        let storage = VaultStorage::Sqlite {
            path: dir.path.join("vault.db"),
        };
        let signing_key_file = dir.path.join("gateway-signing-key.pem");
        write_private(&signing_key_file, gateway_key.private_key_pem()?.as_bytes())?;
        Ok(Self {
            apps,
            tracker: server,
            vault: VaultConfig::new(keys, storage),
            signing_key_file,
        })
    }
}

/// A directory of one run, readable by its owner only, removed on drop.
#[derive(Debug)]
struct RunDir {
    path: std::path::PathBuf,
}

impl RunDir {
    fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("meridian-{}", &random_secret()?[..16]));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Where a running Meridian on `port` keeps what `meridian revoke` needs
/// (the authorization server's revoke URL and this run's admin secret).
pub fn admin_file(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("meridian-{port}.admin.json"))
}

/// Writes the admin file, readable by its owner only.
pub fn write_admin_file(path: &std::path::Path, auth: &AuthServer) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "revoke_url": format!("{}/admin/revoke", auth.issuer()),
        "secret": auth.admin_secret(),
    });
    let _ = std::fs::remove_file(path);
    write_private(path, body.to_string().as_bytes()).context("the admin file")
}

/// Creates `path` readable by its owner only and writes `bytes`.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// `N` random bytes.
fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(bytes)
}

/// A random secret of 32 bytes, hex-encoded.
pub(crate) fn random_secret() -> anyhow::Result<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Parses a lifetime: `8h`, `30m`, `90s`, `2d` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 8h, 30m, 90s or 3600"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`; use s, m, h or d"
            ));
        }
    };
    if secs == 0 {
        return Err("a token lifetime of 0 makes every token expired; use e.g. 8h".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Starts the authorization server, the four apps, the tracker and the
/// gateway; returns once the gateway's catalog holds every app and the
/// tracker.
pub async fn start(options: Options) -> anyhow::Result<Running> {
    start_with(options, Settings::default()).await
}

/// [`start`] with authorization server settings.
pub async fn start_with(options: Options, settings: Settings) -> anyhow::Result<Running> {
    let gateway_listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port)))
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}; is another Meridian running? Pick another port with --port",
                options.port
            )
        })?;
    let gateway_issuer = gateway_issuer(&gateway_listener)?;
    let url = format!("{gateway_issuer}/mcp");
    let auth_server = AuthServer::start(&url, settings.clone())
        .await
        .context("starting the dev authorization server")?;
    let introspection = auth_server.register_confidential("cortex-gateway", "")?;
    let issuer = auth_server.minter();
    let technical = random_secret()?;
    let auth = Auth::new(issuer.auth_config(&url, &[&technical]))?;
    let (trigger, _) = ShutdownTrigger::new();
    let mut apps = Vec::new();
    for app in App::ALL {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let auth = if app == App::ASSERTED {
            let own_audience = format!("http://{}", listener.local_addr()?);
            gateway_assertion_auth(&gateway_issuer, &own_audience, &url, &technical)
                .with_context(|| format!("the {} app's gateway-assertion settings", app.id()))?
        } else {
            auth.clone()
        };
        let served = app
            .serve(auth, listener, trigger.subscribe())
            .await
            .with_context(|| format!("starting the {} app", app.id()))?;
        apps.push((app, served));
    }
    let tracker = Tracker::start(settings, trigger.subscribe())
        .await
        .context("starting the tracker")?;
    let run_dir = RunDir::create()?;
    let gateway_key = IssuerState::new_gateway(&gateway_issuer);
    let gateway_minter = TestIssuer::from_state(&gateway_key)
        .await
        .context("the gateway's assertion minter")?;
    let gateway = start_gateway(
        &auth_server,
        introspection,
        &url,
        technical,
        Sources::new(&apps, &tracker, &run_dir, &gateway_key)?,
        gateway_listener,
        &trigger,
    )
    .await?;
    let tokens = Tokens {
        sales_rep: mint(issuer, &url, Persona::SalesRep, options.token_ttl),
        project_manager: mint(issuer, &url, Persona::ProjectManager, options.token_ttl),
        cfo: mint(issuer, &url, Persona::Cfo, options.token_ttl),
        ceo: mint(issuer, &url, Persona::Ceo, options.token_ttl),
    };
    Ok(Running {
        url,
        tokens,
        apps,
        tracker,
        gateway,
        auth: auth_server,
        gateway_minter,
        trigger,
        _vault: run_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(28_800)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3_600)));
        assert!(parse_duration("0").is_err());
        assert!(
            parse_duration("8 hours")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("h").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn the_run_directory_is_private_and_removed() {
        let dir = RunDir::create().unwrap();
        let path = dir.path.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        std::fs::write(path.join("vault.db"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

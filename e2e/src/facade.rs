//! The gateway as the OAuth facade (`CORTEX_OAUTH_FACADE`) in front of a
//! company identity provider: `oauth/idp.mjs` (oidc-provider shaped like
//! Entra ID, or like a generic OpenID Connect provider) with the gateway's
//! one confidential client, and the conformance [`fixture`] backend, which
//! trusts the tokens the gateway signs (its issuer, its JWKS).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use cortex_backend::{
    Auth,
    auth::{AuthConfig, JwtConfig, KeySource},
};
use cortex_gateway::{
    Gateway,
    config::{BackendConfig, FacadeConfig, FacadeProfile, GatewayConfig},
    vault::{VaultConfig, VaultKeys, VaultStorage},
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{fixture, node::NodeProcess, tracker::oauth_script};

/// The gateway's client at the identity provider.
pub const CLIENT_ID: &str = "cortex-gateway";
/// Its secret (loopback only, lives as long as the test process).
const CLIENT_SECRET: &str = "e2e-facade-client-secret-0123456789";
/// Shared secret between this gateway and the fixture backend.
const TECHNICAL_TOKEN: &str = "e2e-facade-technical-token-0123456789";
/// The generic provider's API (its RFC 8707 resource).
pub const GENERIC_AUDIENCE: &str = "https://api.cortex.example";

/// How the identity provider behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Like Entra ID: no registration, `resource` refused, `scp` and
    /// `api://` scopes, `oid` and `preferred_username`.
    Entra,
    /// A generic OpenID Connect provider.
    Oidc,
}

/// The running stack; dropping it stops the provider, the gateway and the
/// backend.
#[derive(Debug)]
pub struct FacadeStack {
    url: String,
    idp_issuer: String,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _idp: NodeProcess,
}

impl Drop for FacadeStack {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl FacadeStack {
    /// Starts everything on loopback: the provider (`shape`), the backend,
    /// and the gateway with its vault under `vault_dir`, trusting
    /// `document_roots` (DER) for client metadata documents; waits for the
    /// gateway's first catalog refresh.
    pub async fn start(
        node: &Path,
        shape: Shape,
        vault_dir: &Path,
        document_roots: Vec<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", gateway_listener.local_addr()?);
        let url = format!("{origin}/mcp");

        let idp_config = json!({
            "shape": match shape { Shape::Entra => "entra", Shape::Oidc => "oidc" },
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": format!("{origin}/oauth/callback"),
            "scopes": [fixture::SCOPE],
            "audience": GENERIC_AUDIENCE,
        });
        let (node, script): (PathBuf, PathBuf) = (node.to_path_buf(), oauth_script("idp.mjs"));
        let idp = tokio::task::spawn_blocking(move || {
            NodeProcess::start(&node, &script, &idp_config, "the identity provider")
        })
        .await??;
        let idp_issuer = idp.field("issuer")?;

        // The backend trusts what the gateway signs.
        let mut jwt = JwtConfig::new(origin.clone(), vec![url.clone()]);
        jwt.keys = KeySource::JwksUrl(format!("{origin}/.well-known/jwks.json"));
        let auth = Auth::new(AuthConfig {
            technical_tokens: vec![TECHNICAL_TOKEN.to_string()],
            jwt: Some(jwt),
        })?;
        let app = fixture::router(auth, Arc::new(fixture::Catalog::default()))
            .context("building the fixture backend")?;
        let backend_listener = TcpListener::bind("127.0.0.1:0").await?;
        let backend_url = format!("http://{}", backend_listener.local_addr()?);
        let backend_task = tokio::spawn({
            let stop = stop.subscribe();
            async move {
                let _ = axum::serve(backend_listener, app)
                    .with_graceful_shutdown(stopped(stop))
                    .await;
            }
        });

        let profile = match shape {
            Shape::Entra => FacadeProfile::Entra,
            Shape::Oidc => FacadeProfile::Oidc,
        };
        let mut facade = FacadeConfig::new(profile, &idp_issuer, CLIENT_ID, CLIENT_SECRET);
        if shape == Shape::Oidc {
            facade.audience = Some(GENERIC_AUDIENCE.to_string());
        }
        facade.document_roots = document_roots;
        let mut config = GatewayConfig::new(url.clone(), origin, TECHNICAL_TOKEN);
        config.facade = Some(facade);
        config.vault = Some(VaultConfig::new(
            VaultKeys::parse_single(
                "CORTEX_VAULT_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )?,
            VaultStorage::Sqlite {
                path: vault_dir.join("vault.db"),
            },
        ));
        let mut backend = BackendConfig::new(fixture::ID, backend_url);
        backend.prefix = false;
        config.backends.push(backend);
        let gateway = Gateway::new(config).await.context("starting the gateway")?;
        let gateway_task = tokio::spawn({
            let gateway = gateway.clone();
            let stop = stop.subscribe();
            async move {
                let _ = gateway.serve(gateway_listener, stopped(stop)).await;
            }
        });
        gateway
            .wait_ready()
            .await
            .context("the gateway refused the fixture catalog")?;
        Ok(Self {
            url,
            idp_issuer,
            stop,
            tasks: vec![backend_task, gateway_task],
            _idp: idp,
        })
    }

    /// The MCP URL (the gateway's canonical URI).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The identity provider's issuer.
    pub fn idp_issuer(&self) -> &str {
        &self.idp_issuer
    }
}

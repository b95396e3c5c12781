//! The gateway the conformance suite runs against: a dev issuer, the
//! fixture backend federated without prefix, and the bearer proxy in front.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use cortex_backend::{Auth, testing::TestIssuer};
use cortex_gateway::{
    Gateway,
    config::{BackendConfig, GatewayConfig},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{fixture, proxy::BearerProxy};

/// Shared secret between this gateway and the fixture backend (loopback
/// only, lives as long as the test process).
const TECHNICAL_TOKEN: &str = "e2e-conformance-technical-token-0123456789";

/// The running stack. [`ConformanceStack::url`] is what the suite targets.
#[derive(Debug)]
pub struct ConformanceStack {
    url: String,
    issuer: TestIssuer,
    proxy: BearerProxy,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl ConformanceStack {
    /// Starts everything on loopback and waits for the gateway's first
    /// catalog refresh (which also checks for unprefixed name clashes).
    pub async fn start() -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/mcp", proxy_listener.local_addr()?);
        let issuer = TestIssuer::start()
            .await
            .context("starting the test issuer")?;

        let auth = Auth::new(issuer.auth_config(&url, &[TECHNICAL_TOKEN]))?;
        let catalog = Arc::new(fixture::Catalog::default());
        let app = fixture::router(auth, catalog.clone()).context("building the fixture backend")?;
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

        let mut config = GatewayConfig::new(url.clone(), issuer.issuer(), TECHNICAL_TOKEN);
        let mut backend_config = BackendConfig::new(fixture::ID, backend_url);
        backend_config.prefix = false;
        config.backends.push(backend_config);
        // The suite waits about a second for list-changed notifications
        // after a trigger tool changes the fixture's catalog: the harness
        // refreshes at once on a change (below), and every second anyway.
        config.refresh_interval_s = 1;
        // The suite sends hundreds of requests as one caller in seconds; the
        // per-caller budget is an operator control, not what is under test.
        config.controls.rate_limit_per_minute = 100_000;
        config.controls.rate_limit_burst = 10_000;
        let gateway = Gateway::new(config).await.context("starting the gateway")?;
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await?;
        let gateway_addr: SocketAddr = gateway_listener.local_addr()?;
        let gateway_task = tokio::spawn({
            let gateway = gateway.clone();
            let stop = stop.subscribe();
            async move {
                let _ = gateway.serve(gateway_listener, stopped(stop)).await;
            }
        });
        let refresher = tokio::spawn({
            let gateway = gateway.clone();
            async move {
                loop {
                    catalog.changed().await;
                    gateway.refresh_now().await;
                }
            }
        });
        gateway
            .wait_ready()
            .await
            .context("the gateway refused the fixture catalog")?;

        let token = issuer
            .token(&url)
            .sub("conformance-suite")
            .scopes([fixture::SCOPE])
            .mint();
        let proxy = BearerProxy::start(proxy_listener, gateway_addr, &token)?;
        Ok(Self {
            url,
            issuer,
            proxy,
            stop,
            tasks: vec![backend_task, gateway_task],
            refresher,
        })
    }

    /// The MCP URL (the proxy; also the gateway's canonical URI).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The issuer, to mint more tokens (audience: [`ConformanceStack::url`]).
    pub fn issuer(&self) -> &TestIssuer {
        &self.issuer
    }

    /// Stops the proxy, the gateway and the backend.
    pub async fn shutdown(self) {
        self.proxy.stop();
        self.refresher.abort();
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

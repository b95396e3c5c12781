//! # cortex-gateway
//!
//! The bundled Cortex gateway: one OAuth 2.1-protected MCP endpoint that
//! federates Cortex backends (department apps speaking the backend
//! contract). It serves MCP revision 2026-07-28 (stateless) and the
//! `initialize`-based revisions 2025-11-25, 2025-06-18 and 2025-03-26 on the
//! same path.
//!
//! ## Running it in-process
//!
//! ```no_run
//! use cortex_gateway::{Gateway, config::{BackendConfig, GatewayConfig}};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = GatewayConfig::new(
//!     "http://127.0.0.1:3213/mcp",          // canonical URI = token audience
//!     "https://sso.example.com",            // OAUTH_ISSUER
//!     "a-technical-token-of-32-characters", // CORTEX_TECHNICAL_TOKEN
//! );
//! config.backends.push(BackendConfig::new("crm", "http://127.0.0.1:4001"));
//! let gateway = Gateway::new(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3213").await?;
//! let server = tokio::spawn(gateway.clone().serve(listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//! gateway.wait_ready().await?; // first catalog refresh done
//! server.await??;
//! # Ok(()) }
//! ```
//!
//! ## Modules
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | environment / TOML configuration, validation, masking |
//! | [`auth`] | OAuth 2.1 resource server, RFC 9728 metadata, challenges |
//! | [`federation`] | backends, refresher, merged catalog, change notifications |
//! | [`mcp`] | JSON-RPC, era dispatch, sessions, methods, builtins |
//! | [`upstream`] | the pooled client calling backends |
//! | [`audit`] | one pseudonymised JSON line per MCP request, off the request path |
//! | [`controls`] | the operator controls' settings and their middleware stack |
//! | [`ratelimit`] | per-caller request budget (GCRA) and stream cap |
//! | [`origin`] | `Origin` allow-list, CORS, `Host` check (before authentication) |
//! | [`integrity`] | tool-definition fingerprints, quarantine, baseline file |
//! | [`admin`] | the operator endpoint `/admin/tool-integrity` |
//! | [`metrics`] | Prometheus text at `/metrics` |
//! | [`introspection`] | optional RFC 7662 revocation check with a short cache |
//! | [`vault`] | linked third-party accounts: sealed grants per (`sub`, server), SQLite or PostgreSQL, key rotation |
//! | `transport` | the HTTP routes (axum); `Gateway::serve`'s accept loop and serving threads (one single-threaded runtime per CPU, `CORTEX_WORKERS`), which send POST on the MCP path to its handler directly, inside the same perimeter; the connection cap, header-read and idle timeouts |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
pub mod controls;
pub mod federation;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod integrity;
pub mod introspection;
pub mod mcp;
pub mod metrics;
pub mod origin;
pub mod ratelimit;
mod transport;
pub mod upstream;
pub mod vault;

use std::{future::Future, sync::Arc};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    auth::ResourceServer,
    config::{ConfigError, GatewayConfig},
    federation::Federation,
    mcp::session::{SessionLimits, SessionStore},
    upstream::UpstreamClient,
};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A bad configuration.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Unprefixed backends produce clashing tool names.
    #[error(
        "tool name clash caused by an unprefixed backend: {0}; set CORTEX_BACKEND_<ID>_PREFIX=true on one of them or rename the tool"
    )]
    NameClash(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The shared state behind every request.
pub(crate) struct Inner {
    pub(crate) config: GatewayConfig,
    pub(crate) auth: ResourceServer,
    pub(crate) federation: Arc<Federation>,
    pub(crate) sessions: SessionStore,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) controls: controls::Controls,
    refresher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    /// No secret and no session id: the configuration masks its secrets,
    /// the federation and the session store show counts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("federation", &self.federation)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn mcp_path(&self) -> String {
        let p = self.config.canonical_path();
        if p.is_empty() { "/".into() } else { p }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = crate::lock(&self.refresher).take() {
            task.abort();
        }
    }
}

/// A gateway: configuration, resource server, federation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Validates the configuration, builds the token validator and the
    /// upstream client, and starts the refresher (first refresh at once).
    /// Does not wait for the backends: see [`Gateway::wait_ready`].
    pub async fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let auth = ResourceServer::new(&config).map_err(|e| {
            GatewayError::Config(ConfigError {
                variable: e.variable,
                problem: e.problem,
            })
        })?;
        let mut upstream = UpstreamClient::new(config.max_response_bytes)
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        if let Some(x) = &config.token_exchange {
            upstream = upstream.with_exchange(
                config.issuer.clone(),
                x.clone(),
                config.oauth.allow_insecure_http,
            );
        }
        let mcp_path = {
            let p = config.canonical_path();
            if p.is_empty() { "/".to_string() } else { p }
        };
        let controls = controls::Controls::new(&config, &mcp_path)?;
        let federation = Arc::new(
            Federation::new(
                config.backends.clone(),
                config.technical_token.clone(),
                upstream,
            )
            .with_controls(controls.integrity.clone(), controls.metrics.clone()),
        );
        let (shutdown, _) = watch::channel(false);
        let sessions = SessionStore::new(SessionLimits {
            max_sessions: config.controls.max_sessions,
            max_per_caller: config.controls.max_sessions_per_caller,
            max_bytes: config.controls.max_session_bytes,
        });
        let interval = config.refresh_interval();
        let refresher = {
            let federation = federation.clone();
            tokio::spawn(async move {
                federation.refresh().await;
                federation.run_refresher(interval).await;
            })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                auth,
                federation,
                sessions,
                shutdown,
                controls,
                refresher: std::sync::Mutex::new(Some(refresher)),
            }),
        })
    }

    /// Waits for the first catalog refresh. Fails if unprefixed backends
    /// produced clashing tool names (the start must stop).
    pub async fn wait_ready(&self) -> Result<(), GatewayError> {
        self.inner.federation.wait_ready().await;
        let catalog = self.inner.federation.catalog();
        match catalog.unprefixed_clashes.first() {
            Some(clash) => Err(GatewayError::NameClash(clash.clone())),
            None => Ok(()),
        }
    }

    /// Whether the first refresh is done (what `/readyz` reports).
    pub fn is_ready(&self) -> bool {
        self.inner.federation.is_ready()
    }

    /// Refreshes the catalog now (tests, admin); returns what changed.
    pub async fn refresh_now(&self) -> federation::ListChanged {
        self.inner.federation.refresh().await
    }

    /// The federation (catalog, health).
    pub fn federation(&self) -> &Arc<Federation> {
        &self.inner.federation
    }

    /// The configuration in use.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The axum router (MCP path, metadata, health), for embedding. It
    /// answers exactly as [`Gateway::serve`] does; `serve` only skips the
    /// route lookup for `POST` on the MCP path, the hot path.
    pub fn router(&self) -> axum::Router {
        self.inner.controls.wrap(
            transport::router(self.inner.clone()),
            self.inner.federation.clone(),
        )
    }

    /// The `/metrics` router, for a separate listener
    /// (`CORTEX_METRICS_LISTEN`); without that option `/metrics` is also
    /// served by [`Gateway::router`].
    pub fn metrics_router(&self) -> axum::Router {
        self.inner.controls.metrics_router()
    }

    /// The tool-integrity checker (quarantines, approvals).
    pub fn integrity(&self) -> &Arc<integrity::IntegrityGuard> {
        &self.inner.controls.integrity
    }

    /// Serves on `listener` until `shutdown` resolves, then ends the open
    /// notification streams and drains in-flight requests.
    ///
    /// Connections run on threads of the gateway's own, one per CPU unless
    /// [`GatewayConfig::workers`] says otherwise; the accept loop, the
    /// catalog refresh and the other background work stay on the runtime
    /// that calls this.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        // POST on the MCP path skips the router (same perimeter, same
        // handler); every other request is routed.
        let app = transport::MakeFront::new(self.inner.clone(), self.router());
        let workers = transport::Workers::from_setting(self.inner.config.workers);
        let controls = &self.inner.config.controls;
        let limits = transport::ConnectionLimits {
            max_connections: controls.max_connections,
            header_read_timeout: std::time::Duration::from_millis(controls.header_read_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(controls.idle_timeout_ms),
            buffer_bytes: transport::ConnectionLimits::buffer_for(controls.max_header_bytes),
        };
        let serving = transport::serve(
            listener,
            app,
            workers,
            limits,
            self.inner.shutdown.subscribe(),
        );
        let inner = self.inner.clone();
        // Sets the flag the accept loop, the connections and the streams
        // watch; then `serving` ends once the connections have drained.
        let signal = async move {
            shutdown.await;
            inner.shutdown.send_replace(true);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            served = serving => served?,
            () = signal => {}
        }
        self.inner.controls.flush_audit().await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what orchestrators send): the
/// usual `shutdown` future for [`Gateway::serve`].
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Builds a gateway and serves it until `shutdown` (same as
/// [`Gateway::new`] then [`Gateway::serve`]).
pub async fn serve(
    config: GatewayConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    Gateway::new(config).await?.serve(listener, shutdown).await
}

/// How many slots [`thread_slot`] hands out (threads beyond this many
/// share them).
pub(crate) const THREAD_SLOTS: usize = 32;

thread_local! {
    static SLOT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The calling thread's slot, below [`THREAD_SLOTS`]. State that every
/// request writes (the metric counters, the backends' idle connections) is
/// kept per slot, so that threads on different cores do not write the same
/// cache lines, and a serving thread gets back the backend connections it
/// opened. Serving thread `i` has slot `i` ([`claim_thread_slot`]); other
/// threads take slots in turn from the last one down, the first time they
/// ask, so they meet the serving threads only when there are many of both.
pub(crate) fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SLOT.with(|slot| {
        slot.get().unwrap_or_else(|| {
            let taken = THREAD_SLOTS - 1 - NEXT.fetch_add(1, Ordering::Relaxed) % THREAD_SLOTS;
            slot.set(Some(taken));
            taken
        })
    })
}

/// Gives the calling thread slot `index` (modulo [`THREAD_SLOTS`]).
pub(crate) fn claim_thread_slot(index: usize) {
    SLOT.with(|slot| slot.set(Some(index % THREAD_SLOTS)));
}

/// Locks `mutex`, taking the data even if a thread panicked while holding
/// it (every value kept behind these locks stays valid between statements).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `lock`, taking the data even if a writer panicked (as [`lock`]).
pub(crate) fn read_lock<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `lock`, taking the data even if a writer panicked (as [`lock`]).
pub(crate) fn write_lock<T>(lock: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The largest header map kept for reuse; a larger one (a message with
/// unusually many headers) is dropped instead, so it does not stay behind.
const REUSED_HEADER_CAPACITY: usize = 32;

/// `map` emptied for reuse, or `None` when it is too large to keep. hyper
/// parses a connection's next message into the header map of the last one
/// it sent, so handing it a map that already fits saves an allocation per
/// message (the server's responses and the backend requests both do).
pub(crate) fn reusable_header_map(mut map: axum::http::HeaderMap) -> Option<axum::http::HeaderMap> {
    if map.capacity() > REUSED_HEADER_CAPACITY {
        return None;
    }
    map.clear();
    Some(map)
}

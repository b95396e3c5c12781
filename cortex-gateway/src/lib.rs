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
//! ## Layers
//!
//! A request goes down through five layers; each gets narrow handles on the
//! one below it and never imports one above it (a test checks the
//! direction). docs/architecture.md follows one `tools/call` through them.
//!
//! | layer | concern |
//! |---|---|
//! | `http` | listener, serving threads, connection limits, request checks (audit scope, `Origin`/`Host`/CORS, header size, deadline), admission (token, rate budget, revocation), routes, operator endpoints |
//! | `mcp` | eras, sessions, JSON-RPC, one dispatch of the methods and builtins, the envelope writer, notification streams |
//! | `catalog` | federation: backends, refresher, merged catalog, change notices; tool integrity |
//! | `upstream` | the pooled client calling backends, token exchange |
//! | `store` | state that outlives a request: sessions, budgets, token caches, link tickets, integrity document; bounded caches, per-caller memo |
//! | `vault` | linked third-party accounts: sealed grants per (`sub`, server), SQLite or PostgreSQL, key rotation |
//!
//! Beside them: [`config`] (one parser for the environment and TOML, above
//! every layer), `auth` (token validation, introspection), `audit`,
//! `metrics`, `link` (linked third-party accounts and the linking flow,
//! beside the vault), and small leaves (`protocol`, `canonical`, `sync`,
//! `config_error`, `headers`), and [`telemetry`] (OpenTelemetry traces,
//! off unless the `OTEL_*` variables turn them on). [`bridge`] and
//! [`baseline`] are not part of a running gateway: they are
//! `cortex-gateway stdio` and `cortex-gateway baseline`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod auth;
pub mod baseline;
pub mod bridge;
mod canonical;
mod catalog;
pub mod config;
mod config_error;
mod facade;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod http;
mod keys;
mod link;
mod mcp;
mod metrics;
mod protocol;
#[cfg(any(test, feature = "testing"))]
mod redis_server;
#[cfg(test)]
mod scratch;
mod store;
mod sync;
pub mod telemetry;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod upstream;
pub mod vault;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

pub use crate::catalog::{
    Catalog, CatalogPrompt, CatalogTemplate, CatalogTool, Health, ListChanged, NameClash,
    integrity::Mode as IntegrityMode,
};
use crate::{
    audit::{AuditDatabase, AuditWriter, Auditor, Pseudonymizer},
    auth::{
        ResourceServer, ResourceSettings,
        introspection::{IntrospectionConfig, Introspector},
    },
    catalog::{Federation, integrity::IntegrityGuard},
    config::{ConfigError, GatewayConfig},
    facade::Facade,
    http::{
        App, Limits, RequestChecks,
        admin::{self, AdminSecret, AfterApproval},
        origin::{HostPolicy, OriginGuard, OriginPolicy},
    },
    link::{Accounts, LinkServer},
    metrics::Metrics,
    store::{MemorySettings, Store, sessions::SessionLimits},
    upstream::{UpstreamClient, mcp::McpClient},
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

/// What a gateway holds: the HTTP layer (and through it every layer
/// below), plus what only the gateway as a whole uses.
struct Assembled {
    config: GatewayConfig,
    app: Arc<App>,
    federation: Arc<Federation>,
    integrity: Arc<IntegrityGuard>,
    metrics: Arc<Metrics>,
    auditor: Arc<Auditor>,
    /// The last refusals (the status page).
    refusals: Arc<audit::Refusals>,
    /// Kept for the life of the gateway (the writer thread ends with it).
    _audit_writer: AuditWriter,
    admin_secret: Option<AdminSecret>,
    shutdown: watch::Sender<bool>,
    refresher: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The shared store's change relay (none in memory) and the audit
    /// database's writer and purge.
    store_tasks: Vec<JoinHandle<()>>,
    /// The status page's rejections (in the store).
    rejections: Arc<store::rejections::Rejections>,
}

impl std::fmt::Debug for Assembled {
    /// No secret and no session id: the configuration masks its secrets,
    /// the federation and the session store show counts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl Drop for Assembled {
    fn drop(&mut self) {
        if let Some(task) = crate::sync::lock(&self.refresher).take() {
            task.abort();
        }
        for task in &self.store_tasks {
            task.abort();
        }
    }
}

fn config_error(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        problem: problem.into(),
    }
}

/// A gateway: configuration, resource server, federation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Assembled>,
}

impl Gateway {
    /// Validates the configuration, builds the token validator and the
    /// upstream client, and starts the refresher (first refresh at once).
    /// Does not wait for the backends: see [`Gateway::wait_ready`].
    pub async fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let c = &config.controls;
        c.validate(&config)?;
        let mcp_path = {
            let p = config.canonical_path();
            if p.is_empty() { "/".to_string() } else { p }
        };
        let settings = ResourceSettings {
            canonical_uri: config.canonical_uri.clone(),
            metadata_url: format!(
                "{}/.well-known/oauth-protected-resource{}",
                config.canonical_origin(),
                config.canonical_path()
            ),
            issuer: config.issuer.clone(),
            required_scopes: config.required_scopes.clone(),
        };
        let signing = signing_keys(&config)?;
        let auth = if config.facade.is_some() {
            ResourceServer::for_own_tokens(settings, signing.clone())
        } else {
            let jwt = config
                .oauth
                .jwt_config(&config.issuer, vec![config.canonical_uri.clone()])
                .map_err(ConfigError::from)?;
            ResourceServer::new(settings, jwt)
        }
        .map_err(ConfigError::from)?;
        let memory = MemorySettings {
            sessions: SessionLimits {
                max_sessions: c.max_sessions,
                max_per_caller: c.max_sessions_per_caller,
                max_bytes: c.max_session_bytes,
            },
            rate_per_minute: c.rate_limit_per_minute,
            rate_burst: c.rate_limit_burst,
            streams_per_caller: c.max_streams_per_caller,
            baseline: c.tool_baseline.clone(),
            facade: store::facade::FacadeLimits {
                max_clients: config
                    .facade
                    .as_ref()
                    .map_or(config::DEFAULT_FACADE_MAX_CLIENTS, |f| f.max_clients),
                ..Default::default()
            },
        };
        let vault = open_vault(&config).await?;
        let (store, shared) = match &c.store {
            config::StoreKind::Redis(url) => {
                // Replicas share the facade's sign-ins on Redis, sealed
                // with a key derived from the vault's.
                let facade_key = match (&config.facade, &vault) {
                    (None, _) => None,
                    (Some(_), Some(v)) => Some(v.derive_key(store::redis_facade::SEAL_LABEL)),
                    (Some(_), None) => {
                        return Err(config_error(
                            "CORTEX_VAULT_KEY",
                            "the OAuth facade keeps its sign-ins, codes and grants on Redis \
                             (CORTEX_STORE), sealed with a key derived from the vault's; set \
                             CORTEX_VAULT_KEY to the output of `openssl rand -base64 32` (the \
                             same on every replica)",
                        )
                        .into());
                    }
                };
                let (store, shared) = Store::on_redis(
                    memory,
                    store::RedisSettings {
                        url: url.clone(),
                        prefix: c.store_prefix.clone(),
                        on_failure: c.store_rate_limit_on_failure,
                        facade_key,
                        // Exchanged tokens and assertions are shared only
                        // sealed, with a key derived from the vault's.
                        token_key: match &config.vault {
                            Some(v) => Some(
                                vault::derive_key_of(v, store::redis_tokens::SEAL_LABEL)
                                    .map_err(|e| config_error("CORTEX_VAULT_KEY", e.to_string()))?,
                            ),
                            None => None,
                        },
                    },
                )
                .await
                .map_err(|e| config_error("CORTEX_STORE", e.to_string()))?;
                (store, Some(shared))
            }
            _ => (Store::in_memory(memory), None),
        };
        let rejections = store.rejections.clone();
        let mut upstream = UpstreamClient::new(config.max_response_bytes)
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        if let Some(x) = &config.token_exchange {
            upstream = upstream.with_exchange_in(
                config.issuer.clone(),
                x.clone(),
                config.oauth.allow_insecure_http,
                store.exchange.clone(),
            );
        }
        upstream = upstream.with_assertions(
            signing.clone(),
            Duration::from_secs(config.identity.assert_ttl_s),
            store.assertions.clone(),
        );
        let metrics = Arc::new(Metrics::new());
        let accounts = linked_accounts(&config, vault.clone())?;
        let facade = match &config.facade {
            Some(f) => Some(Arc::new(
                Facade::new(
                    f,
                    &config.canonical_uri,
                    signing.clone(),
                    store.facade.clone(),
                    vault,
                )
                .map_err(GatewayError::Client)?,
            )),
            None => None,
        };
        let integrity = Arc::new(IntegrityGuard::with_signed_document(
            c.tool_integrity,
            store.integrity.clone(),
            c.baseline_signing()?,
        ));
        let mcp_client = McpClient::new(
            config.max_response_bytes,
            config.mcp_limits,
            upstream.connector(),
        )
        .map_err(|e| GatewayError::Client(e.to_string()))?;
        let federation = Arc::new(
            Federation::new(
                config.backends.clone(),
                config.technical_token.clone(),
                upstream,
            )
            .with_mcp_servers(config.mcp_servers.clone(), mcp_client, accounts.clone())
            .with_controls(integrity.clone(), metrics.clone())
            .with_accounts_tool(!config.mcp_servers.is_empty()),
        );
        let audit_database = audit_database(c)?;
        if let Some(database) = &audit_database {
            database.prepare().await?;
        }
        let (sink, audit_writer, audit_tasks) = audit::start_sink(
            c.audit_file.as_deref(),
            audit::Rotation {
                max_bytes: c.audit_max_bytes,
                keep: c.audit_keep,
            },
            audit_database,
        )?;
        let keys = match &c.audit_secret {
            Some(s) => Pseudonymizer::new(s.as_bytes()),
            None => {
                tracing::warn!(
                    "CORTEX_AUDIT_SECRET is not set: audit pseudonyms use a random key and will not match \
                     across restarts or replicas"
                );
                Pseudonymizer::ephemeral()
            }
        };
        let refusals = Arc::new(audit::Refusals::default());
        let auditor =
            Arc::new(
                Auditor::new(
                    sink,
                    keys,
                    [
                        mcp_path.clone(),
                        admin::PATH.to_string(),
                        http::admin_page::PATH.to_string(),
                        http::admin_page::AUDITED.to_string(),
                        http::link::AUDITED.to_string(),
                    ]
                    .into_iter()
                    .chain(facade.iter().flat_map(|f| {
                        http::facade::AUDITED.map(|p| format!("{}{p}", f.issuer_path()))
                    }))
                    .collect(),
                )
                .with_metrics(metrics.clone())
                .with_refusals(refusals.clone()),
            );
        let introspector = match (
            &c.introspection_url,
            &c.introspection_client_id,
            &c.introspection_client_secret,
        ) {
            (Some(endpoint), Some(id), Some(secret)) => Some(
                Introspector::new(IntrospectionConfig {
                    endpoint: endpoint.clone(),
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                    cache_ttl: Duration::from_secs(c.introspection_cache_s),
                    timeout: Duration::from_secs(5),
                })
                .map_err(|e| config_error("CORTEX_INTROSPECTION_URL", e.0))?
                .with_cache(store.introspection.clone()),
            ),
            _ => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mcp = mcp::Service {
            catalog: federation.clone(),
            integrity: integrity.clone(),
            sessions: store.sessions.clone(),
            budgets: store.budgets.clone(),
            auditor: auditor.clone(),
            accounts: accounts.clone(),
            settings: mcp::Settings {
                list_ttl_ms: config.refresh_interval_s * 1000,
                whoami_timeout: Duration::from_millis(config.whoami_timeout_ms),
                // At least every half idle timeout, so that an open stream
                // is never an idle connection.
                keep_alive: Duration::from_secs(config.keep_alive_s.max(1))
                    .min(Duration::from_millis(c.idle_timeout_ms.max(2)) / 2),
                max_batch_messages: c.max_batch_messages,
                instructions: config.agent.instructions.clone(),
                icon_url: config.agent.icon_url.clone(),
                website_url: config.agent.website_url.clone(),
                canonical_uri: config.canonical_uri.clone(),
            },
            feedback: store.feedback.clone(),
            webhook: match (
                &config.agent.feedback_webhook_url,
                &config.agent.feedback_webhook_secret,
            ) {
                (Some(url), Some(secret)) => Some(
                    mcp::webhook::Webhook::start(url.clone(), secret)
                        .map_err(|e| config_error("CORTEX_FEEDBACK_WEBHOOK_URL", e.to_string()))?,
                ),
                _ => None,
            },
            shutdown: shutdown_rx,
        };
        let checks = Arc::new(RequestChecks {
            auditor: auditor.clone(),
            origin: origin_guard(&config)?,
            limits: Limits {
                deadline: Duration::from_millis(c.request_timeout_ms),
                max_header_bytes: c.max_header_bytes,
            },
        });
        let app = Arc::new(App {
            mcp,
            admission: http::Admission {
                auth,
                budgets: store.budgets.clone(),
                introspector,
                catalog: federation.clone(),
                facade: facade.clone(),
            },
            checks,
            mcp_path,
            max_request_bytes: config.max_request_bytes,
            accounts,
            keys: signing,
            facade,
        });
        let interval = config.refresh_interval();
        let refresher = {
            let federation = federation.clone();
            let linked = federation.subscribe_linked();
            tokio::spawn(async move {
                federation.refresh().await;
                federation.run_refresher(interval, linked).await;
            })
        };
        let store_tasks = shared.map(|shared| {
            let federation = federation.clone();
            store::redis::relay_changes(shared, federation.subscribe(), move || {
                let federation = federation.clone();
                async move {
                    federation.refresh().await;
                }
            })
        });
        Ok(Self {
            inner: Arc::new(Assembled {
                store_tasks: store_tasks
                    .into_iter()
                    .flatten()
                    .chain(audit_tasks)
                    .collect(),
                rejections,
                admin_secret: c.admin_secret.as_deref().map(AdminSecret::new),
                config,
                app,
                federation,
                integrity,
                metrics,
                auditor,
                refusals,
                _audit_writer: audit_writer,
                shutdown,
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
    pub async fn refresh_now(&self) -> ListChanged {
        self.inner.federation.refresh().await
    }

    /// The current merged catalog (tools, prompts, templates, each
    /// backend's health), read-only; a refresh publishes a new one.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.federation.catalog()
    }

    /// The configuration in use.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The axum router (MCP path, metadata, health), for embedding. It
    /// answers exactly as [`Gateway::serve`] does; `serve` only skips the
    /// route lookup for `POST` on the MCP path, the hot path.
    pub fn router(&self) -> axum::Router {
        let mut extra = axum::Router::new();
        if let Some(secret) = &self.inner.admin_secret {
            let federation = self.inner.federation.clone();
            let after: AfterApproval = Arc::new(move || {
                let federation = federation.clone();
                Box::pin(async move {
                    federation.refresh().await;
                })
            });
            extra = extra.merge(admin::router(
                secret.clone(),
                self.inner.integrity.clone(),
                after.clone(),
            ));
            extra = extra.merge(http::admin_page::router(http::admin_page::PageDeps {
                secret: secret.clone(),
                integrity: self.inner.integrity.clone(),
                federation: self.inner.federation.clone(),
                accounts: self.inner.app.accounts.clone(),
                refusals: self.inner.refusals.clone(),
                after_approval: after,
                config_toml: self.inner.config.masked_toml(),
                canonical_uri: self.inner.config.canonical_uri.clone(),
                rejections: self.inner.rejections.clone(),
            }));
        }
        if self.inner.config.controls.metrics_listen.is_none() {
            extra = extra.merge(self.metrics_router());
        }
        http::router(self.inner.app.clone(), extra)
    }

    /// The `/metrics` router, for a separate listener
    /// (`CORTEX_METRICS_LISTEN`); without that option `/metrics` is also
    /// served by [`Gateway::router`].
    pub fn metrics_router(&self) -> axum::Router {
        metrics::router(self.inner.metrics.clone())
    }

    /// Reopens the audit file after the line being written (what SIGHUP
    /// does, for logrotate); nothing when the lines go to standard output
    /// or the database only. A failure keeps the old file, logs a warning
    /// and counts in `cortex_audit_file_reopen_failures_total`.
    pub fn reopen_audit_file(&self) {
        self.inner.auditor.sink().reopen();
    }

    /// The tool-integrity mode in force.
    pub fn integrity_mode(&self) -> IntegrityMode {
        self.inner.integrity.mode()
    }

    /// Serves `/metrics` alone on `listener` (`CORTEX_METRICS_LISTEN`), with
    /// the same connection cap and timeouts as the main listener, until
    /// [`Gateway::serve`] shuts down.
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
    ) -> Result<(), GatewayError> {
        let app =
            http::ConnectionServices::routes_only(self.inner.app.clone(), self.metrics_router());
        http::serve(
            listener,
            app,
            http::Workers::Caller,
            self.connection_limits(),
            self.inner.shutdown.subscribe(),
        )
        .await?;
        Ok(())
    }

    fn connection_limits(&self) -> http::ConnectionLimits {
        let controls = &self.inner.config.controls;
        http::ConnectionLimits {
            max_connections: controls.max_connections,
            header_read_timeout: Duration::from_millis(controls.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(controls.idle_timeout_ms),
            buffer_bytes: http::ConnectionLimits::buffer_for(controls.max_header_bytes),
        }
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
        let app = http::ConnectionServices::new(self.inner.app.clone(), self.router());
        let workers = http::Workers::from_setting(self.inner.config.workers);
        let serving = http::serve(
            listener,
            app,
            workers,
            self.connection_limits(),
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
        self.inner.auditor.sink().flush().await;
        Ok(())
    }
}

/// The audit database of `controls` (`CORTEX_AUDIT_DATABASE_URL`),
/// checked; `None` when unset.
fn audit_database(controls: &config::ControlsConfig) -> Result<Option<AuditDatabase>, ConfigError> {
    controls
        .audit_database_url
        .as_deref()
        .map(|url| {
            AuditDatabase::from_settings(
                url,
                controls.audit_database_ca_file.as_deref(),
                controls.audit_retention_days,
            )
        })
        .transpose()
}

/// Deletes the audit database's rows older than `older_than` (default:
/// `CORTEX_AUDIT_RETENTION_DAYS`), a batch at a time, and returns how
/// many (`cortex-gateway audit purge`). Fails when no audit database is
/// configured, when neither an age nor a retention is given, or when
/// another gateway is purging at the moment.
pub async fn purge_audit(
    controls: &config::ControlsConfig,
    older_than: Option<Duration>,
) -> Result<u64, GatewayError> {
    let Some(database) = audit_database(controls)? else {
        return Err(config_error(
            "CORTEX_AUDIT_DATABASE_URL",
            "not set: the purge deletes rows of the audit database; set it to its URL",
        )
        .into());
    };
    let Some(older_than) = older_than.or(database.retention()) else {
        return Err(config_error(
            "CORTEX_AUDIT_RETENTION_DAYS",
            "is 0 (rows are kept forever): give the age to purge, e.g. --older-than 90d",
        )
        .into());
    };
    database.prepare().await?;
    match database.purge(older_than).await {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(GatewayError::Io(std::io::Error::other(
            "another gateway is purging the audit database now; try again later",
        ))),
        Err(e) => Err(GatewayError::Io(std::io::Error::other(format!(
            "the audit purge failed: {e}"
        )))),
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

/// The gateway's signing keys: from `CORTEX_SIGNING_KEY_FILE`, or generated.
/// A key that leaves the file stays published for the longest assertion
/// lifetime allowed.
fn signing_keys(config: &GatewayConfig) -> Result<Arc<keys::SigningKeys>, ConfigError> {
    // A key that leaves the file stays published as long as the longest
    // token signed with it may live: an assertion, or a facade access token.
    let longest = config
        .facade
        .as_ref()
        .map_or(0, |f| f.access_ttl_s)
        .max(config::MAX_ASSERT_TTL_S);
    let keys = keys::SigningKeys::load(
        config.identity.signing_key_file.as_deref(),
        config.gateway_issuer(),
        Duration::from_secs(longest),
    )
    .map_err(|e| config_error("CORTEX_SIGNING_KEY_FILE", e.to_string()))?;
    if keys.generated() {
        tracing::info!(
            "CORTEX_SIGNING_KEY_FILE is not set: the gateway signs with a key generated at start; \
             replicas must share a key file"
        );
    }
    Ok(Arc::new(keys))
}

/// The vault, opened (and migrated) only when something keeps grants in
/// it: third-party MCP servers (required then) or the OAuth facade (which
/// issues no refresh tokens without one).
async fn open_vault(config: &GatewayConfig) -> Result<Option<Arc<vault::Vault>>, GatewayError> {
    let needed = !config.mcp_servers.is_empty();
    match &config.vault {
        Some(v) if needed || config.facade.is_some() => Ok(Some(Arc::new(
            vault::Vault::open(v).await.map_err(|e| {
                let variable = match v.storage {
                    vault::VaultStorage::Postgres { .. } => "CORTEX_DATABASE_URL",
                    _ => "CORTEX_VAULT_PATH",
                };
                config_error(variable, format!("the vault cannot be opened: {e}"))
            })?,
        ))),
        None if needed => Err(GatewayError::Config(config_error(
            "CORTEX_VAULT_KEY",
            "third-party MCP servers are configured (CORTEX_MCP_SERVERS) but the vault that \
             keeps users' linked accounts has no key; set CORTEX_VAULT_KEY to the output of \
             `openssl rand -base64 32`",
        ))),
        _ => Ok(None),
    }
}

/// The linked accounts of the configured MCP servers, with grants in
/// `vault` (used only when there is a server to link with).
fn linked_accounts(
    config: &GatewayConfig,
    vault: Option<Arc<vault::Vault>>,
) -> Result<Arc<Accounts>, GatewayError> {
    let vault = vault.filter(|_| !config.mcp_servers.is_empty());
    let servers = config
        .mcp_servers
        .iter()
        .map(|m| LinkServer {
            id: m.id.clone(),
            url: m.url.clone(),
            client_id: m.client_id.clone(),
            client_secret: m.client_secret.clone().map(vault::Secret::new),
            oauth_scope: m.oauth_scope.clone(),
            catalog_sub: m.catalog_sub.clone(),
        })
        .collect();
    Accounts::new(
        vault,
        servers,
        &config.canonical_origin(),
        Default::default(),
    )
    .map(Arc::new)
    .map_err(GatewayError::Client)
}

/// The `Origin` and `Host` checks for the configured listener: a loopback
/// listener accepts its own loopback origins on its own port (the listen
/// port, and the canonical URI's when that names a loopback host) and
/// checks `Host` against DNS rebinding; any other listener checks origins
/// only.
fn origin_guard(config: &GatewayConfig) -> Result<OriginGuard, ConfigError> {
    let mut origins = OriginPolicy::new(
        &config.canonical_origin(),
        config.allowed_origins.iter().map(String::as_str),
    )
    .map_err(|e| config_error("CORTEX_ALLOWED_ORIGINS", e.to_string()))?;
    let hosts = if config.listen.ip().is_loopback() {
        let canonical = http::origin::loopback_port(&config.canonical_uri);
        for port in std::iter::once(config.listen.port()).chain(canonical) {
            origins = origins.with_loopback_port(port);
        }
        HostPolicy::loopback(
            &config.canonical_uri,
            config.controls.allowed_hosts.iter().map(String::as_str),
        )
    } else {
        HostPolicy::off()
    };
    Ok(OriginGuard::new(origins, hosts))
}

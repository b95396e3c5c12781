//! Federation: the registry of backends, the background refresher, and the
//! merged catalog it publishes.
//!
//! Two kinds of source are federated the same way (prefixing, scope
//! filtering, integrity, audit, rate limits): contract backends, and
//! third-party MCP servers, whose `tools/list` is projected into the same
//! tool descriptors (see `upstream::mcp::project_tool`). An MCP server is
//! listed with its catalog account's linked token (or none), and is
//! listed again as soon as that account links.
//!
//! Each refresh calls every backend's `list_tools`, `list_prompts` and
//! `list_resource_templates` in parallel with the technical token, each
//! bounded by that backend's timeout. A backend that fails `list_tools` is
//! marked down and contributes nothing until it answers again; a missing
//! optional method (400 `unknown_method`) counts as an empty list. The new
//! catalog replaces the old one atomically, and subscribers hear which lists
//! changed.
//!
//! A public tool name belongs to the backend that had it at the previous
//! refresh ([`settle_names`], before the integrity check): a backend that
//! later offers a tool of the same name, or offers it while the owner is
//! down, is refused for that tool, so no backend can take over another's
//! tool by name.

pub(crate) mod integrity;
mod merged;

use std::{
    cell::RefCell,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cortex_backend::contract::{PromptList, ResourceTemplateList, ToolList, methods};
use tokio::sync::{broadcast, watch};

pub(crate) use merged::{ACCOUNTS_TOOL, BUILTINS, BackendOffer, Page, compact, settle_names};
pub use merged::{Catalog, CatalogPrompt, CatalogTemplate, CatalogTool, Health, NameClash};
#[cfg(feature = "testing")]
pub use merged::{PAGE_CACHE_BYTES, PAGE_CACHE_ENTRIES, RENDER_CACHE_BYTES, RENDER_CACHE_ENTRIES};

use crate::{
    catalog::integrity::{BackendTools, IntegrityGuard},
    link::{AccountError, Accounts},
    metrics::Metrics,
    upstream::{
        Upstream, UpstreamClient, UpstreamError,
        mcp::{McpClient, project_tool, settings::McpServerConfig},
        settings::BackendConfig,
    },
};

/// The third-party MCP servers of a federation.
struct McpSources {
    client: McpClient,
    servers: Vec<McpServerConfig>,
    accounts: Arc<Accounts>,
}

/// Which lists changed at a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListChanged {
    /// `tools/list` changed.
    pub tools: bool,
    /// `prompts/list` changed.
    pub prompts: bool,
    /// `resources/templates/list` changed.
    pub resources: bool,
}

/// A thread's own counted handle on a catalog ([`Federation::catalog_here`]).
#[derive(Debug)]
pub(crate) struct ThreadCatalog(Arc<Catalog>);

impl std::ops::Deref for ThreadCatalog {
    type Target = Catalog;

    fn deref(&self) -> &Catalog {
        &self.0
    }
}

/// What a thread keeps for [`Federation::catalog_here`].
struct Here {
    federation: u64,
    generation: u64,
    catalog: Arc<ThreadCatalog>,
}

/// Source of [`Federation`] ids.
static NEXT_FEDERATION: AtomicU64 = AtomicU64::new(0);

/// The registry and its current catalog.
pub(crate) struct Federation {
    backends: Vec<BackendConfig>,
    technical_token: String,
    upstream: UpstreamClient,
    current: RwLock<Arc<Catalog>>,
    /// Bumped after every change of `current` (see [`Federation::catalog_here`]).
    generation: AtomicU64,
    /// Tells this registry's catalogs from another's in a thread's cache.
    id: u64,
    changes: broadcast::Sender<ListChanged>,
    ready: watch::Sender<bool>,
    refresh_lock: tokio::sync::Mutex<()>,
    integrity: Option<Arc<IntegrityGuard>>,
    metrics: Option<Arc<Metrics>>,
    /// Whether the catalog serves the `accounts` builtin.
    accounts_tool: bool,
    mcp: Option<McpSources>,
    /// What the last refresh saw of each source (the status page).
    sources: std::sync::Mutex<Vec<SourceStatus>>,
}

/// What the last refresh saw of one source (a contract backend or an MCP
/// server), for the operator status page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceStatus {
    /// The source's id.
    pub(crate) id: String,
    /// Whether it is an MCP server (else a contract backend).
    pub(crate) mcp: bool,
    /// When its listing was last asked for.
    pub(crate) at: std::time::SystemTime,
    /// How long the listing took (to an answer or a failure).
    pub(crate) latency: std::time::Duration,
}

impl std::fmt::Debug for Federation {
    /// The backend ids and the state, never a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field(
                "backends",
                &self
                    .backends
                    .iter()
                    .map(|b| b.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "mcp_servers",
                &self
                    .mcp
                    .iter()
                    .flat_map(|m| m.servers.iter().map(|s| s.id.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field("ready", &*self.ready.borrow())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// A registry with an empty catalog (not ready until the first refresh).
    pub(crate) fn new(
        backends: Vec<BackendConfig>,
        technical_token: String,
        upstream: UpstreamClient,
    ) -> Self {
        let (changes, _) = broadcast::channel(64);
        let (ready, _) = watch::channel(false);
        Self {
            backends,
            technical_token,
            upstream,
            current: RwLock::new(Arc::new(Catalog::default())),
            generation: AtomicU64::new(0),
            id: NEXT_FEDERATION.fetch_add(1, Ordering::Relaxed),
            changes,
            ready,
            refresh_lock: tokio::sync::Mutex::new(()),
            integrity: None,
            metrics: None,
            accounts_tool: false,
            mcp: None,
            sources: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Serves the `accounts` builtin (third-party MCP servers are
    /// configured, so callers have accounts to link).
    pub(crate) fn with_accounts_tool(mut self, on: bool) -> Self {
        self.accounts_tool = on;
        self
    }

    /// Federates `servers` too, called through `client` with the tokens of
    /// the accounts in `accounts`.
    pub(crate) fn with_mcp_servers(
        mut self,
        servers: Vec<McpServerConfig>,
        client: McpClient,
        accounts: Arc<Accounts>,
    ) -> Self {
        if !servers.is_empty() {
            self.mcp = Some(McpSources {
                client,
                servers,
                accounts,
            });
        }
        self
    }

    /// The configured MCP servers.
    pub(crate) fn mcp_servers(&self) -> &[McpServerConfig] {
        self.mcp.as_ref().map_or(&[], |m| m.servers.as_slice())
    }

    /// Screens every refresh with the tool-integrity check (withheld tools
    /// never reach the catalog) and reports refreshes in the metrics.
    pub(crate) fn with_controls(
        mut self,
        integrity: Arc<IntegrityGuard>,
        metrics: Arc<Metrics>,
    ) -> Self {
        self.integrity = Some(integrity);
        self.metrics = Some(metrics);
        self
    }

    /// What the last refresh saw of each source.
    pub(crate) fn sources(&self) -> Vec<SourceStatus> {
        crate::sync::lock(&self.sources).clone()
    }

    /// The configured backends.
    pub(crate) fn backends(&self) -> &[BackendConfig] {
        &self.backends
    }

    /// The source `id`, to call.
    pub(crate) fn source(&self, id: &str) -> Option<Upstream<'_>> {
        if let Some(backend) = self.backends.iter().find(|b| b.id == id) {
            return Some(Upstream::Contract {
                client: &self.upstream,
                backend,
            });
        }
        let mcp = self.mcp.as_ref()?;
        let server = mcp.servers.iter().find(|s| s.id == id)?;
        Some(Upstream::Mcp {
            client: &mcp.client,
            server,
            accounts: &mcp.accounts,
        })
    }

    /// The current catalog (cheap: an `Arc` clone).
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        crate::sync::read_lock(&self.current).clone()
    }

    /// The current catalog through a handle of this thread's own. Every
    /// [`Federation::catalog`] takes the catalog's lock and clones its
    /// `Arc`: atomic writes to cache lines that every core shares, on every
    /// request. Here the thread keeps its own counted handle, checked
    /// against a generation number that only a refresh writes, so a
    /// request writes only to its own core's lines. A thread keeps the
    /// catalog it last used (one per thread) until it next asks.
    pub(crate) fn catalog_here(&self) -> Arc<ThreadCatalog> {
        thread_local! {
            static HERE: RefCell<Option<Here>> = const { RefCell::new(None) };
        }
        let generation = self.generation.load(Ordering::Acquire);
        HERE.with(|here| {
            let mut here = here.borrow_mut();
            if let Some(h) = &*here
                && h.federation == self.id
                && h.generation == generation
            {
                return h.catalog.clone();
            }
            let fresh = Arc::new(ThreadCatalog(self.catalog()));
            *here = Some(Here {
                federation: self.id,
                generation,
                catalog: fresh.clone(),
            });
            fresh
        })
    }

    /// Subscribes to list changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ListChanged> {
        self.changes.subscribe()
    }

    /// Whether the first refresh is done.
    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first refresh is done.
    pub(crate) async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Refreshes the catalog now; returns which lists changed.
    pub(crate) async fn refresh(&self) -> ListChanged {
        let _guard = self.refresh_lock.lock().await;
        let started = std::time::Instant::now();
        if let Some(guard) = &self.integrity {
            // A shared baseline: write what changed here, read what
            // another replica approved.
            guard.sync_shared().await;
        }
        let at = std::time::SystemTime::now();
        let contract = futures::future::join_all(self.backends.iter().map(|b| async move {
            let asked = std::time::Instant::now();
            let offer = self.fetch(b).await;
            if let Err(e) = &offer {
                tracing::warn!(backend = %b.id, "backend left the catalog: {e}");
            }
            ((b.id.clone(), b.prefix, offer), asked.elapsed())
        }));
        let servers = futures::future::join_all(self.mcp.iter().flat_map(|m| {
            m.servers.iter().map(move |s| async move {
                let asked = std::time::Instant::now();
                let offer = fetch_mcp(m, s).await;
                if let Err(e) = &offer {
                    tracing::warn!(mcp_server = %s.id, "MCP server left the catalog: {e}");
                }
                ((s.id.clone(), s.prefix, offer), asked.elapsed())
            })
        }));
        let (contract, servers) = tokio::join!(contract, servers);
        let mut sources = Vec::with_capacity(contract.len() + servers.len());
        let mut offers = Vec::with_capacity(contract.len() + servers.len());
        for (i, (offer, latency)) in contract.into_iter().chain(servers).enumerate() {
            sources.push(SourceStatus {
                id: offer.0.clone(),
                mcp: i >= self.backends.len(),
                at,
                latency,
            });
            offers.push(offer);
        }
        *crate::sync::lock(&self.sources) = sources;
        let previous = self.catalog();
        // Before the integrity check: a tool refused for its name is never
        // screened, so never approved as new.
        let (owners, clashes) = settle_names(&mut offers, &previous.owners);
        if let Some(guard) = &self.integrity {
            guard.note_clashes(&clashes);
            let seen: Vec<BackendTools<'_>> = offers
                .iter()
                .map(|(id, prefix, offer)| BackendTools {
                    backend: id,
                    prefix: *prefix,
                    tools: offer.as_ref().ok().map(|o| o.tools.as_slice()),
                })
                .collect();
            guard.observe(&seen);
            guard.sync_shared().await;
            for (id, _, offer) in &mut offers {
                if let Ok(o) = offer {
                    o.tools.retain(|t| !guard.is_withheld(id, &t.name));
                }
            }
        }
        let mut next = Catalog::build_with(&offers, self.accounts_tool);
        let unprefixed: Vec<&str> = self
            .backends
            .iter()
            .filter(|b| !b.prefix)
            .map(|b| b.id.as_str())
            .chain(
                self.mcp_servers()
                    .iter()
                    .filter(|s| !s.prefix)
                    .map(|s| s.id.as_str()),
            )
            .collect();
        for clash in &clashes {
            let message = clash.message();
            if unprefixed.contains(&clash.owner.as_str())
                || unprefixed.contains(&clash.refused.as_str())
            {
                next.unprefixed_clashes.push(message.clone());
            }
            next.warnings.push(message);
        }
        next.owners = owners;
        next.clashes = clashes;
        if let Some(m) = &self.metrics {
            let health: Vec<(String, bool)> = next
                .health
                .iter()
                .map(|(id, h)| (id.clone(), *h == Health::Up))
                .collect();
            let quarantined = self.integrity.as_ref().map_or(0, |g| g.withheld_count());
            m.observe_refresh(started.elapsed(), next.tools.len(), &health, quarantined);
            m.observe_name_clashes(next.clashes.len());
        }
        for w in &next.warnings {
            tracing::warn!("{w}");
        }
        let (t0, p0, r0) = previous.fingerprints();
        let (t1, p1, r1) = next.fingerprints();
        let changed = ListChanged {
            tools: t0 != t1,
            prompts: p0 != p1,
            resources: r0 != r1,
        };
        *crate::sync::write_lock(&self.current) = Arc::new(next);
        // After the swap: a thread that sees the new number finds the new
        // catalog behind the lock.
        self.generation.fetch_add(1, Ordering::Release);
        let was_ready = self.is_ready();
        self.ready.send_replace(true);
        if was_ready && (changed.tools || changed.prompts || changed.resources) {
            let _ = self.changes.send(changed);
        }
        changed
    }

    async fn fetch(&self, b: &BackendConfig) -> Result<BackendOffer, String> {
        let source = Upstream::Contract {
            client: &self.upstream,
            backend: b,
        };
        let call = |method: &'static str| source.discover(method, &self.technical_token);
        let optional = |r: Result<serde_json::Value, UpstreamError>| match r {
            Err(e) if e.is_unknown_method() => Ok(None),
            other => other.map(Some),
        };
        let (tools, prompts, templates) = tokio::join!(
            call(methods::LIST_TOOLS),
            call(methods::LIST_PROMPTS),
            call(methods::LIST_RESOURCE_TEMPLATES)
        );
        let tools: ToolList =
            serde_json::from_value(tools.map_err(|e| format!("list_tools: {e}"))?)
                .map_err(|e| format!("list_tools answered an invalid catalog: {e}"))?;
        let mut offer = BackendOffer {
            tools: tools.tools,
            ..BackendOffer::default()
        };
        match optional(prompts) {
            Ok(Some(v)) => match serde_json::from_value::<PromptList>(v) {
                Ok(p) => offer.prompts = p.prompts,
                Err(e) => tracing::warn!(backend = %b.id, "list_prompts ignored: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(backend = %b.id, "list_prompts failed: {e}"),
        }
        match optional(templates) {
            Ok(Some(v)) => match serde_json::from_value::<ResourceTemplateList>(v) {
                Ok(t) => offer.templates = t.resource_templates,
                Err(e) => tracing::warn!(backend = %b.id, "list_resource_templates ignored: {e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(backend = %b.id, "list_resource_templates failed: {e}"),
        }
        Ok(offer)
    }

    /// A receiver of the server ids whose catalog account linked (none
    /// without MCP servers). Taken before the first refresh, so that a
    /// link during it is not missed.
    pub(crate) fn subscribe_linked(&self) -> Option<broadcast::Receiver<String>> {
        self.mcp.as_ref().map(|m| m.accounts.subscribe_linked())
    }

    /// Runs refreshes every `interval`, and at once when an MCP server's
    /// catalog account links, until the task is dropped.
    pub(crate) async fn run_refresher(
        self: Arc<Self>,
        interval: Duration,
        mut linked: Option<broadcast::Receiver<String>>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let on_link = async {
                match linked.as_mut() {
                    Some(rx) => rx.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => {
                    self.upstream.prune_idle();
                }
                heard = on_link => match heard {
                    // Lagged: some link was missed, which a refresh covers.
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        tracing::info!("a catalog account linked: refreshing the catalog");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        linked = None;
                        continue;
                    }
                },
            }
            self.refresh().await;
        }
    }
}

/// One MCP server's tools, listed with its catalog account's token (or
/// none), projected into tool descriptors.
async fn fetch_mcp(mcp: &McpSources, server: &McpServerConfig) -> Result<BackendOffer, String> {
    let listed = match &server.catalog_sub {
        None => match mcp.client.list_tools(server, None).await {
            Err(UpstreamError::Status { status: 401, .. }) => {
                return Err(format!(
                    "tools/list: {} lists its tools only with a token: name a user whose linked \
                     account lists them in its CATALOG_SUB setting",
                    server.id
                ));
            }
            other => other,
        },
        Some(sub) => {
            let token = mcp
                .accounts
                .access_token(sub, &server.id)
                .await
                .map_err(|e| catalog_account_error(server, e))?;
            match mcp.client.list_tools(server, Some(token.expose())).await {
                Err(UpstreamError::Status { status: 401, .. }) => {
                    let token = mcp
                        .accounts
                        .rejected(sub, &server.id, &token)
                        .await
                        .map_err(|e| catalog_account_error(server, e))?;
                    mcp.client.list_tools(server, Some(token.expose())).await
                }
                other => other,
            }
        }
    };
    let listed = listed.map_err(|e| format!("tools/list: {}", e.caller_text(&server.id)))?;
    let mut offer = BackendOffer::default();
    for tool in &listed {
        match project_tool(server, tool) {
            Ok(t) => offer.tools.push(t),
            Err(e) => tracing::warn!(mcp_server = %server.id, "tool left out: {e}"),
        }
    }
    Ok(offer)
}

/// Why the catalog account could not list: without its link URL (the
/// health reason is shown to operators, the ticket is the account's).
fn catalog_account_error(server: &McpServerConfig, e: AccountError) -> String {
    let sub = server.catalog_sub.as_deref().unwrap_or_default();
    match e {
        AccountError::NotLinked { .. } => format!(
            "its catalog account (`{sub}`) has not linked an account yet; its tools appear when it does"
        ),
        AccountError::Relink { reason, .. } => {
            format!("its catalog account ({sub}) must link again: {reason}")
        }
        AccountError::Unavailable(why) => format!("linked accounts are unavailable: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog account linking refreshes at once, without waiting for
    /// the interval (here an hour: only the link can make the first
    /// refresh happen).
    #[tokio::test]
    async fn a_catalog_account_linking_refreshes_at_once() {
        let upstream = UpstreamClient::new(1 << 20).unwrap();
        let federation = Arc::new(Federation::new(Vec::new(), "t".repeat(32), upstream));
        let (linked, rx) = broadcast::channel(4);
        let refresher = tokio::spawn(
            federation
                .clone()
                .run_refresher(Duration::from_secs(3600), Some(rx)),
        );
        assert!(!federation.is_ready());
        linked.send("tracker".to_string()).unwrap();
        let refreshed =
            tokio::time::timeout(Duration::from_secs(30), federation.wait_ready()).await;
        refresher.abort();
        assert!(refreshed.is_ok(), "no refresh followed the link");
    }
}

//! What the MCP layer works with: narrow handles on the catalog, the
//! integrity state, the sessions and the budgets, and its own settings.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    audit::Auditor,
    catalog::{Federation, integrity::IntegrityGuard},
    store::{ratelimit::Budgets, sessions::Sessions},
};

/// The MCP layer's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How long a client may cache a list (the stateless era's hint): the
    /// catalog's refresh interval.
    pub(crate) list_ttl_ms: u64,
    /// How long `whoami` waits for each backend.
    pub(crate) whoami_timeout: Duration,
    /// How often an open notification stream sends a keep-alive comment.
    pub(crate) keep_alive: Duration,
    /// Messages of one JSON-RPC batch at most.
    pub(crate) max_batch_messages: usize,
}

/// The MCP layer of a gateway.
pub(crate) struct Service {
    /// The federation: the merged catalog, the backends, change notices.
    pub(crate) catalog: Arc<Federation>,
    /// Which tools are withheld.
    pub(crate) integrity: Arc<IntegrityGuard>,
    /// The legacy sessions.
    pub(crate) sessions: Arc<Sessions>,
    /// Per-caller budgets (each batch message is charged; streams capped).
    pub(crate) budgets: Arc<Budgets>,
    /// Audit lines of batch messages.
    pub(crate) auditor: Arc<Auditor>,
    /// Settings.
    pub(crate) settings: Settings,
    /// Becomes `true` when the gateway shuts down (streams end).
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Service {
    /// Counts only: no session id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("catalog", &self.catalog)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};
    use cortex_backend::Caller;
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        audit::{AuditSink, Pseudonymizer},
        catalog::integrity::Mode,
        store::{MemorySettings, Store, sessions::SessionLimits},
        upstream::UpstreamClient,
    };

    /// The MCP layer on its own: built from its parts (a federation with
    /// no backend, memory state), driven by calling its endpoint with
    /// headers and a body, with no gateway, listener or token around it.
    #[tokio::test]
    async fn the_mcp_layer_answers_without_a_gateway_or_a_socket() {
        let store = Store::in_memory(MemorySettings {
            sessions: SessionLimits::default(),
            rate_per_minute: 0,
            rate_burst: 1,
            streams_per_caller: 1,
            baseline: None,
        });
        let upstream = UpstreamClient::new(1 << 20).unwrap();
        let catalog = Arc::new(Federation::new(Vec::new(), "t".repeat(32), upstream));
        catalog.refresh().await;
        let (sink, _writer) = AuditSink::spawn(std::io::sink());
        let (_shutdown, shutdown) = watch::channel(false);
        let mcp = Service {
            catalog,
            integrity: Arc::new(IntegrityGuard::with_document(
                Mode::Off,
                store.integrity.clone(),
            )),
            sessions: store.sessions.clone(),
            budgets: store.budgets.clone(),
            auditor: Arc::new(Auditor::new(sink, Pseudonymizer::ephemeral(), Vec::new())),
            settings: Settings {
                list_ttl_ms: 60_000,
                whoami_timeout: Duration::from_secs(1),
                keep_alive: Duration::from_secs(15),
                max_batch_messages: 32,
            },
            shutdown,
        };
        let caller = Arc::new(Caller::for_tests("ana", &[]));
        let post = |headers: HeaderMap, body: Value| {
            super::super::endpoint::post(&mcp, headers, caller.clone(), body.to_string().into())
        };
        let json_of = |response: axum::response::Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        // 2026-07-28: server/discover, no session.
        let mut modern = HeaderMap::new();
        modern.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2026-07-28"),
        );
        modern.insert("mcp-method", HeaderValue::from_static("server/discover"));
        let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
            "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientCapabilities": {}}}});
        let answer = json_of(post(modern, discover).await).await;
        assert_eq!(answer["id"], 1, "{answer}");
        assert!(
            answer["result"]["supportedVersions"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{answer}"
        );
        // An initialize-based session: initialize, then tools/list in it.
        let init = json!({"jsonrpc": "2.0", "id": "a", "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}});
        let response = post(HeaderMap::new(), init).await;
        let session = response.headers()["mcp-session-id"].clone();
        assert_eq!(
            json_of(response).await["result"]["protocolVersion"],
            "2025-11-25"
        );
        let mut legacy = HeaderMap::new();
        legacy.insert("mcp-session-id", session);
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let answer = json_of(post(legacy, list).await).await;
        let names: Vec<&str> = answer["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["find_tools", "whoami"], "{answer}");
    }
}

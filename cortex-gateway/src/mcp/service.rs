//! What the MCP layer works with: narrow handles on the catalog, the
//! integrity state, the sessions and the budgets, and its own settings.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    audit::Auditor,
    catalog::{Federation, integrity::IntegrityGuard},
    link::Accounts,
    store::{feedback::FeedbackTickets, ratelimit::Budgets, sessions::Sessions},
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
    /// The operator's text put before the gateway's `instructions`.
    pub(crate) instructions: Option<String>,
    /// `serverInfo.icons` (one icon at this URL).
    pub(crate) icon_url: Option<String>,
    /// `serverInfo.websiteUrl`.
    pub(crate) website_url: Option<String>,
    /// The canonical URI of the MCP endpoint (the server card's remote).
    pub(crate) canonical_uri: String,
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
    /// Linked third-party accounts (the `accounts` builtin).
    pub(crate) accounts: Arc<Accounts>,
    /// The feedback tickets the gateway keeps.
    pub(crate) feedback: Arc<FeedbackTickets>,
    /// Where new blocking tickets are POSTed, when configured.
    pub(crate) webhook: Option<super::webhook::Webhook>,
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
        audit::{AuditSink, AuditWriter, Pseudonymizer},
        catalog::integrity::Mode,
        store::{MemorySettings, Store, sessions::SessionLimits},
        upstream::UpstreamClient,
    };

    /// The MCP layer built from its parts (a federation with no backend,
    /// memory state), with these linked accounts.
    async fn layer(
        accounts: Accounts,
        accounts_tool: bool,
    ) -> (Service, (AuditWriter, watch::Sender<bool>)) {
        let store = Store::in_memory(MemorySettings {
            sessions: SessionLimits::default(),
            rate_per_minute: 0,
            rate_burst: 1,
            streams_per_caller: 1,
            baseline: None,
            facade: Default::default(),
        });
        let upstream = UpstreamClient::new(1 << 20).unwrap();
        let catalog = Arc::new(
            Federation::new(Vec::new(), "t".repeat(32), upstream).with_accounts_tool(accounts_tool),
        );
        catalog.refresh().await;
        let (sink, writer) = AuditSink::spawn(std::io::sink());
        let (stop, shutdown) = watch::channel(false);
        let service = Service {
            catalog,
            integrity: Arc::new(IntegrityGuard::with_document(
                Mode::Off,
                store.integrity.clone(),
            )),
            sessions: store.sessions.clone(),
            budgets: store.budgets.clone(),
            auditor: Arc::new(Auditor::new(sink, Pseudonymizer::ephemeral(), Vec::new())),
            accounts: Arc::new(accounts),
            settings: Settings {
                list_ttl_ms: 60_000,
                whoami_timeout: Duration::from_secs(1),
                keep_alive: Duration::from_secs(15),
                max_batch_messages: 32,
                instructions: None,
                icon_url: None,
                website_url: None,
                canonical_uri: "https://mcp.example.com/mcp".into(),
            },
            feedback: store.feedback.clone(),
            webhook: None,
            shutdown,
        };
        (service, (writer, stop))
    }

    fn json_body(value: &Value) -> axum::body::Bytes {
        value.to_string().into()
    }

    async fn json_of(response: axum::response::Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    }

    /// An `initialize`-based session of `sub` with `mcp`: its headers.
    async fn session(mcp: &Service, caller: &Arc<Caller>) -> HeaderMap {
        let init = json!({"jsonrpc": "2.0", "id": "a", "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}});
        let response = super::super::endpoint::post(
            mcp,
            HeaderMap::new(),
            caller.clone(),
            json_body(&init),
            crate::telemetry::RequestTrace::begin(&HeaderMap::new()),
        )
        .await;
        let mut headers = HeaderMap::new();
        headers.insert(
            "mcp-session-id",
            response.headers()["mcp-session-id"].clone(),
        );
        headers
    }

    async fn call(mcp: &Service, caller: &Arc<Caller>, headers: &HeaderMap, args: Value) -> Value {
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "accounts", "arguments": args}});
        let response = super::super::endpoint::post(
            mcp,
            headers.clone(),
            caller.clone(),
            json_body(&call),
            crate::telemetry::RequestTrace::begin(&HeaderMap::new()),
        )
        .await;
        json_of(response).await
    }

    #[tokio::test]
    async fn the_accounts_builtin_lists_and_unlinks_the_callers_own_accounts() {
        let accounts =
            Accounts::for_tests(&[("ana", "tracker", "at-ana"), ("bo", "design", "at-bo")]).await;
        let (mcp, _guards) = layer(accounts, true).await;
        let ana = Arc::new(Caller::for_tests("ana", &[]));
        let headers = session(&mcp, &ana).await;
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let answer = json_of(
            super::super::endpoint::post(
                &mcp,
                headers.clone(),
                ana.clone(),
                json_body(&list),
                crate::telemetry::RequestTrace::begin(&HeaderMap::new()),
            )
            .await,
        )
        .await;
        let names: Vec<&str> = answer["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "find_tools",
                "whoami",
                "report_missing_capability",
                "list_cortex_tickets",
                "list_cortex_resources",
                "read_cortex_resource",
                "accounts"
            ],
            "{answer}"
        );

        let listed = call(&mcp, &ana, &headers, json!({"action": "list"})).await;
        let servers = &listed["result"]["structuredContent"]["servers"];
        assert_eq!(
            servers[0],
            json!({"server": "tracker", "linked": true, "account": "ana"})
        );
        assert_eq!(servers[1]["server"], "design");
        assert_eq!(servers[1]["linked"], false, "bo's account is not ana's");
        let url = servers[1]["linkUrl"].as_str().unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:3213/link/design/start?ticket="),
            "{url}"
        );
        assert!(!listed.to_string().contains("at-ana"), "{listed}");

        let unlinked = call(
            &mcp,
            &ana,
            &headers,
            json!({"action": "unlink", "server": "tracker"}),
        )
        .await;
        assert_eq!(
            unlinked["result"]["structuredContent"],
            json!({"server": "tracker", "unlinked": true}),
            "{unlinked}"
        );
        let listed = call(&mcp, &ana, &headers, json!({})).await;
        assert_eq!(
            listed["result"]["structuredContent"]["servers"][0]["linked"],
            false
        );
        assert!(
            mcp.accounts.access_token("bo", "design").await.is_ok(),
            "bo keeps his"
        );

        for bad in [
            json!({"action": "unlink"}),
            json!({"action": "unlink", "server": "nope"}),
            json!({"action": "explode"}),
        ] {
            let answer = call(&mcp, &ana, &headers, bad.clone()).await;
            assert_eq!(answer["result"]["isError"], true, "{bad}: {answer}");
        }
    }

    /// The MCP layer on its own: built from its parts (a federation with
    /// no backend, memory state), driven by calling its endpoint with
    /// headers and a body, with no gateway, listener or token around it.
    #[tokio::test]
    async fn the_mcp_layer_answers_without_a_gateway_or_a_socket() {
        let (mcp, _guards) = layer(Accounts::for_tests(&[]).await, false).await;
        let caller = Arc::new(Caller::for_tests("ana", &[]));
        let post = |headers: HeaderMap, body: Value| {
            super::super::endpoint::post(
                &mcp,
                headers,
                caller.clone(),
                body.to_string().into(),
                crate::telemetry::RequestTrace::begin(&HeaderMap::new()),
            )
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
        let answer = json_of(post(legacy.clone(), list).await).await;
        let names: Vec<&str> = answer["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "find_tools",
                "whoami",
                "report_missing_capability",
                "list_cortex_tickets",
                "list_cortex_resources",
                "read_cortex_resource"
            ],
            "{answer}"
        );
        // Without third-party servers there is no `accounts` builtin.
        let answer = call(&mcp, &caller, &legacy, json!({"action": "list"})).await;
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Unknown tool"),
            "{answer}"
        );
    }
}

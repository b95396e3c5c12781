//! Prometheus metrics, kept in a [`prometheus_client`] registry and served
//! in the Prometheus text format, version 0.0.4
//! (`text/plain; version=0.0.4; charset=utf-8`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_response_status_code` |
//! | `mcp_server_operation_duration_seconds` | histogram | `mcp_method_name`, `error_type` |
//! | `cortex_requests_total` | counter | `method`, `outcome` |
//! | `cortex_tool_call_duration_seconds` | histogram | `backend` |
//! | `cortex_rate_limited_total` | counter | – |
//! | `cortex_backend_up` | gauge | `backend` |
//! | `cortex_catalog_tools` | gauge | – |
//! | `cortex_tools_quarantined` | gauge | – |
//! | `cortex_catalog_name_clashes` | gauge | – |
//! | `cortex_refresh_duration_seconds` | histogram | – |
//! | `cortex_audit_lines_dropped_total` | counter | – |
//! | `cortex_audit_file_reopen_failures_total` | counter | – |
//!
//! The first two follow OpenTelemetry's HTTP and MCP conventions (the
//! Prometheus form of `http.server.request.duration` and
//! `mcp.server.operation.duration`); the `cortex_*` ones are the gateway's
//! own. docs/operations.md has the full table.
//!
//! Label values are bounded: methods outside the MCP set count as
//! `other`, HTTP methods outside the four served as `_OTHER`, backends come
//! from the configuration, error types are the audit's classes.
//!
//! This module is a leaf: it takes plain values and imports nothing from
//! the rest of the gateway but the thread-slot and lock helpers.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// JSON-RPC methods counted under their own name.
pub(crate) const METHODS: [&str; 16] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "admin/tool-integrity",
];

/// Latency buckets (seconds).
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The labels of `cortex_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// One of [`METHODS`], `other` or `none`.
    method: &'static str,
    /// The audit line's outcome (a few fixed words).
    outcome: Cow<'static, str>,
}

/// The labels of `http_server_request_duration_seconds` (OpenTelemetry
/// HTTP conventions, `http.server.request.duration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// One of [`HTTP_METHODS`], else `_OTHER`.
    http_request_method: &'static str,
    /// The status sent.
    http_response_status_code: u16,
}

/// The labels of `mcp_server_operation_duration_seconds` (OpenTelemetry
/// MCP conventions, `mcp.server.operation.duration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpLabels {
    /// One of [`METHODS`], `other` or `none`.
    mcp_method_name: &'static str,
    /// The audit line's error class; empty when the request succeeded.
    error_type: Cow<'static, str>,
}

/// HTTP methods counted under their own name.
const HTTP_METHODS: [&str; 4] = ["POST", "GET", "DELETE", "OPTIONS"];

/// The label of the per-backend metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    /// A backend id from the configuration.
    backend: String,
}

/// A histogram with [`BUCKETS`].
fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A gauge of a count.
type CountGauge = Gauge<u64, AtomicU64>;

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Handles on the per-request series, one map per thread slot: a
    /// request finds its counter in its thread's map, so two cores do not
    /// take the same lock on every request, and the series are created in
    /// the registry's families only on a thread's first sight of them.
    shards: Box<[Shard]>,
    requests: Family<RequestLabels, Counter>,
    tool_latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
    http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    mcp_duration: Family<McpLabels, Histogram, fn() -> Histogram>,
    rate_limited: Counter,
    backend_up: Family<BackendLabels, CountGauge>,
    catalog_tools: CountGauge,
    quarantined: CountGauge,
    name_clashes: CountGauge,
    refresh: Histogram,
    audit_dropped: SharedCounter,
    audit_reopen_failures: SharedCounter,
}

/// Handle maps, one per thread slot.
const SHARDS: usize = crate::sync::THREAD_SLOTS;

/// One thread slot's handles on the registry's series, on cache lines of
/// their own. Each map holds at most the series of its family, whose label
/// values are bounded.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    requests: RwLock<HashMap<RequestLabels, Counter>>,
    tool_latency: RwLock<HashMap<String, Histogram>>,
    http: RwLock<HashMap<HttpLabels, Histogram>>,
    mcp: RwLock<HashMap<McpLabels, Histogram>>,
}

/// A counter kept elsewhere (the audit sink's), read at scrape time.
#[derive(Debug, Clone, Default)]
struct SharedCounter(Arc<RwLock<Option<Arc<AtomicU64>>>>);

impl EncodeMetric for SharedCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let dropped = crate::sync::read_lock(&self.0)
            .as_ref()
            .map_or(0, |c| c.load(Ordering::Relaxed));
        encoder.encode_counter::<NoLabelSet, _, u64>(&dropped, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A family whose `HELP` and `TYPE` lines are written even before its
/// first series (the registry skips an empty family otherwise), so a
/// scrape always declares every metric.
#[derive(Debug)]
struct Declared<F>(F);

impl<F: EncodeMetric> EncodeMetric for Declared<F> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::default();
        let tool_latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let http_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let mcp_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let rate_limited = Counter::default();
        let backend_up = Family::default();
        let catalog_tools = CountGauge::default();
        let quarantined = CountGauge::default();
        let name_clashes = CountGauge::default();
        let refresh = latency_histogram();
        let audit_dropped = SharedCounter::default();
        let audit_reopen_failures = SharedCounter::default();
        // The registry adds `_total` to counters and a full stop to help
        // texts.
        let mut registry = Registry::default();
        registry.register(
            "cortex_requests",
            "MCP requests by JSON-RPC method and outcome",
            Declared(requests.clone()),
        );
        registry.register(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests (OpenTelemetry http.server.request.duration)",
            Declared(http_duration.clone()),
        );
        registry.register(
            "mcp_server_operation_duration_seconds",
            "Duration of MCP requests by method and error type (OpenTelemetry mcp.server.operation.duration)",
            Declared(mcp_duration.clone()),
        );
        registry.register(
            "cortex_tool_call_duration_seconds",
            "Tool call latency by backend",
            Declared(tool_latency.clone()),
        );
        registry.register(
            "cortex_rate_limited",
            "Requests refused by the per-caller rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "cortex_backend_up",
            "Whether the backend answered the last refresh",
            Declared(backend_up.clone()),
        );
        registry.register(
            "cortex_catalog_tools",
            "Federated tools in the current catalog",
            catalog_tools.clone(),
        );
        registry.register(
            "cortex_tools_quarantined",
            "Tools withheld by the tool-integrity check",
            quarantined.clone(),
        );
        registry.register(
            "cortex_catalog_name_clashes",
            "Tools not served because another backend owns their name",
            name_clashes.clone(),
        );
        registry.register(
            "cortex_refresh_duration_seconds",
            "Catalog refresh duration",
            refresh.clone(),
        );
        registry.register(
            "cortex_audit_lines_dropped",
            "Audit lines dropped because the audit output could not keep up",
            audit_dropped.clone(),
        );
        registry.register(
            "cortex_audit_file_reopen_failures",
            "Reopens (SIGHUP) and size rotations of the audit file that failed; lines went on to the open file",
            audit_reopen_failures.clone(),
        );
        Self {
            registry,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            requests,
            tool_latency,
            http_duration,
            mcp_duration,
            rate_limited,
            backend_up,
            catalog_tools,
            quarantined,
            name_clashes,
            refresh,
            audit_dropped,
            audit_reopen_failures,
        }
    }
}

fn method_label(method: Option<&str>) -> &'static str {
    match method {
        None => "none",
        Some(m) => METHODS
            .iter()
            .find(|k| **k == m)
            .copied()
            .unwrap_or("other"),
    }
}

impl Metrics {
    /// Empty metrics.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Counts one finished request: its JSON-RPC `method` (any text; the
    /// label is one of [`METHODS`], `other` or `none`), its `outcome`, its
    /// `error_class`, and for a `tools/call` the `backend` that answered
    /// and the `latency`.
    // A `&Cow`: cloning a borrowed one (every known outcome) allocates
    // nothing, where a `&str` would be copied into a `String` per request.
    #[allow(clippy::ptr_arg)]
    pub(crate) fn observe_request(
        &self,
        method: Option<&str>,
        outcome: &Cow<'static, str>,
        error_class: Option<&str>,
        backend: Option<&str>,
        latency: Duration,
    ) {
        let shard = self.shard();
        let key = RequestLabels {
            method: method_label(method),
            outcome: outcome.clone(),
        };
        let counted = crate::sync::read_lock(&shard.requests)
            .get(&key)
            .map(Counter::inc)
            .is_some();
        if !counted {
            let counter = self.requests.get_or_create_owned(&key);
            counter.inc();
            crate::sync::write_lock(&shard.requests).insert(key, counter);
        }
        if error_class == Some("rate_limited") {
            self.rate_limited.inc();
        }
        if method == Some("tools/call")
            && let Some(backend) = backend
        {
            self.observe_tool_call(backend, latency);
        }
    }

    /// Records one audited HTTP request's duration under the
    /// OpenTelemetry names: by HTTP method and status, and (for an MCP
    /// request) by JSON-RPC method and error class.
    pub(crate) fn observe_duration(
        &self,
        http_method: &str,
        status: u16,
        method: Option<&str>,
        error_class: Option<&Cow<'static, str>>,
        latency: Duration,
    ) {
        let shard = self.shard();
        let secs = latency.as_secs_f64();
        let http = HttpLabels {
            http_request_method: HTTP_METHODS
                .iter()
                .find(|m| **m == http_method)
                .copied()
                .unwrap_or("_OTHER"),
            http_response_status_code: status,
        };
        observe_in(&shard.http, &self.http_duration, http, secs);
        if method.is_some() {
            let mcp = McpLabels {
                mcp_method_name: method_label(method),
                error_type: error_class.cloned().unwrap_or(Cow::Borrowed("")),
            };
            observe_in(&shard.mcp, &self.mcp_duration, mcp, secs);
        }
    }

    /// Records one tool call's latency.
    pub(crate) fn observe_tool_call(&self, backend: &str, latency: Duration) {
        let shard = self.shard();
        let secs = latency.as_secs_f64();
        if let Some(h) = crate::sync::read_lock(&shard.tool_latency).get(backend) {
            h.observe(secs);
            return;
        }
        let h = self.tool_latency.get_or_create_owned(&BackendLabels {
            backend: backend.to_owned(),
        });
        h.observe(secs);
        crate::sync::write_lock(&shard.tool_latency).insert(backend.to_owned(), h);
    }

    fn shard(&self) -> &Shard {
        &self.shards[crate::sync::thread_slot()]
    }

    /// Records a catalog refresh: its duration, the catalog size, each
    /// backend's health and the number of quarantined tools.
    pub(crate) fn observe_refresh(
        &self,
        took: Duration,
        tools: usize,
        health: &[(String, bool)],
        quarantined: usize,
    ) {
        self.refresh.observe(took.as_secs_f64());
        self.catalog_tools.set(tools as u64);
        self.quarantined.set(quarantined as u64);
        for (id, ok) in health {
            self.backend_up
                .get_or_create(&BackendLabels {
                    backend: id.clone(),
                })
                .set(u64::from(*ok));
        }
    }

    /// Reports how many tools the last refresh refused because another
    /// backend owns their name.
    pub(crate) fn observe_name_clashes(&self, clashes: usize) {
        self.name_clashes.set(clashes as u64);
    }

    /// Reports the audit sink's dropped-line counter.
    pub(crate) fn track_audit_dropped(&self, counter: Arc<AtomicU64>) {
        *crate::sync::write_lock(&self.audit_dropped.0) = Some(counter);
    }

    /// Reports the audit file's failed reopens and rotations.
    pub(crate) fn track_audit_reopen_failures(&self, counter: Arc<AtomicU64>) {
        *crate::sync::write_lock(&self.audit_reopen_failures.0) = Some(counter);
    }

    /// The Prometheus text exposition (format version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// Observes `secs` in the series `key` of `family`, through the thread
/// slot's handle `handles` (made on its first sight).
fn observe_in<K>(
    handles: &RwLock<HashMap<K, Histogram>>,
    family: &Family<K, Histogram, fn() -> Histogram>,
    key: K,
    secs: f64,
) where
    K: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
{
    if let Some(h) = crate::sync::read_lock(handles).get(&key) {
        h.observe(secs);
        return;
    }
    let h = family.get_or_create_owned(&key);
    h.observe(secs);
    crate::sync::write_lock(handles).insert(key, h);
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    let mut r = metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    r
}

/// A router serving `GET /metrics`.
pub(crate) fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
}

#[cfg(test)]
mod tests;

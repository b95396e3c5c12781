//! Prometheus metrics, rendered by hand in the text exposition format
//! (atomics and a few small maps; no exporter crate).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `cortex_requests_total` | counter | `method`, `outcome` |
//! | `cortex_tool_call_duration_seconds` | histogram | `backend` |
//! | `cortex_rate_limited_total` | counter | – |
//! | `cortex_backend_up` | gauge | `backend` |
//! | `cortex_catalog_tools` | gauge | – |
//! | `cortex_tools_quarantined` | gauge | – |
//! | `cortex_catalog_name_clashes` | gauge | – |
//! | `cortex_refresh_duration_seconds` | histogram | – |
//! | `cortex_audit_lines_dropped_total` | counter | – |
//!
//! Label values are bounded: methods outside the MCP set count as
//! `other`, backends come from the configuration.

mod histogram;

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
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

pub(crate) use histogram::Histogram;

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

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// The per-request counters, one shard per thread slot: a request is
    /// counted in its thread's shard, so two cores do not write to the same
    /// cache lines on every request; [`Metrics::render`] adds them up.
    shards: Box<[Shard]>,
    backend_up: RwLock<BTreeMap<String, bool>>,
    catalog_tools: AtomicU64,
    quarantined: AtomicU64,
    name_clashes: AtomicU64,
    refresh: Histogram,
    audit_dropped: RwLock<Option<Arc<AtomicU64>>>,
}

/// Counter shards, one per thread slot.
const SHARDS: usize = crate::sync::THREAD_SLOTS;

/// One thread slot's counters, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    requests: RwLock<HashMap<(&'static str, Cow<'static, str>), AtomicU64>>,
    tool_latency: RwLock<HashMap<String, Histogram>>,
    rate_limited: AtomicU64,
}

/// The shard of the calling thread.
fn shard_index() -> usize {
    crate::sync::thread_slot()
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            backend_up: RwLock::default(),
            catalog_tools: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            name_clashes: AtomicU64::new(0),
            refresh: Histogram::new(&BUCKETS),
            audit_dropped: RwLock::default(),
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

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let key = (method_label(method), outcome.clone());
        let counted = crate::sync::read_lock(&shard.requests)
            .get(&key)
            .map(|c| c.fetch_add(1, Ordering::Relaxed))
            .is_some();
        if !counted {
            crate::sync::write_lock(&shard.requests)
                .entry(key)
                .or_insert_with(|| AtomicU64::new(0))
                .fetch_add(1, Ordering::Relaxed);
        }
        if error_class == Some("rate_limited") {
            shard.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if method == Some("tools/call")
            && let Some(backend) = backend
        {
            self.observe_tool_call(backend, latency);
        }
    }

    /// Records one tool call's latency.
    pub(crate) fn observe_tool_call(&self, backend: &str, latency: Duration) {
        let shard = self.shard();
        if let Some(h) = crate::sync::read_lock(&shard.tool_latency).get(backend) {
            h.observe(latency);
            return;
        }
        crate::sync::write_lock(&shard.tool_latency)
            .entry(backend.to_string())
            .or_insert_with(|| Histogram::new(&BUCKETS))
            .observe(latency);
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
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
        self.refresh.observe(took);
        self.catalog_tools.store(tools as u64, Ordering::Relaxed);
        self.quarantined
            .store(quarantined as u64, Ordering::Relaxed);
        let mut up = crate::sync::write_lock(&self.backend_up);
        for (id, ok) in health {
            up.insert(id.clone(), *ok);
        }
    }

    /// Reports how many tools the last refresh refused because another
    /// backend owns their name.
    pub(crate) fn observe_name_clashes(&self, clashes: usize) {
        self.name_clashes.store(clashes as u64, Ordering::Relaxed);
    }

    /// Reports the audit sink's dropped-line counter.
    pub(crate) fn track_audit_dropped(&self, counter: Arc<AtomicU64>) {
        *crate::sync::write_lock(&self.audit_dropped) = Some(counter);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP cortex_requests_total MCP requests by JSON-RPC method and outcome.\n");
        out.push_str("# TYPE cortex_requests_total counter\n");
        let mut requests: BTreeMap<(&'static str, Cow<'static, str>), u64> = BTreeMap::new();
        let mut latency: BTreeMap<String, Histogram> = BTreeMap::new();
        for shard in &self.shards {
            let counts = crate::sync::read_lock(&shard.requests);
            for (key, n) in counts.iter() {
                *requests.entry(key.clone()).or_default() += n.load(Ordering::Relaxed);
            }
            drop(counts);
            let histograms = crate::sync::read_lock(&shard.tool_latency);
            for (backend, h) in histograms.iter() {
                latency
                    .entry(backend.clone())
                    .or_insert_with(|| Histogram::new(&BUCKETS))
                    .add(h);
            }
        }
        for ((method, outcome), n) in requests {
            let _ = writeln!(
                out,
                "cortex_requests_total{{method=\"{method}\",outcome=\"{}\"}} {n}",
                escape(&outcome),
            );
        }
        out.push_str("# HELP cortex_tool_call_duration_seconds Tool call latency by backend.\n");
        out.push_str("# TYPE cortex_tool_call_duration_seconds histogram\n");
        for (backend, h) in &latency {
            h.render(
                &mut out,
                "cortex_tool_call_duration_seconds",
                &format!("backend=\"{}\"", escape(backend)),
            );
        }
        let simple = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        simple(
            &mut out,
            "cortex_rate_limited_total",
            "counter",
            "Requests refused by the per-caller rate limit.",
            self.shards
                .iter()
                .map(|s| s.rate_limited.load(Ordering::Relaxed))
                .sum(),
        );
        out.push_str("# HELP cortex_backend_up Whether the backend answered the last refresh.\n");
        out.push_str("# TYPE cortex_backend_up gauge\n");
        for (id, up) in crate::sync::read_lock(&self.backend_up).iter() {
            let _ = writeln!(
                out,
                "cortex_backend_up{{backend=\"{}\"}} {}",
                escape(id),
                u8::from(*up)
            );
        }
        simple(
            &mut out,
            "cortex_catalog_tools",
            "gauge",
            "Federated tools in the current catalog.",
            self.catalog_tools.load(Ordering::Relaxed),
        );
        simple(
            &mut out,
            "cortex_tools_quarantined",
            "gauge",
            "Tools withheld by the tool-integrity check.",
            self.quarantined.load(Ordering::Relaxed),
        );
        simple(
            &mut out,
            "cortex_catalog_name_clashes",
            "gauge",
            "Tools not served because another backend owns their name.",
            self.name_clashes.load(Ordering::Relaxed),
        );
        out.push_str("# HELP cortex_refresh_duration_seconds Catalog refresh duration.\n");
        out.push_str("# TYPE cortex_refresh_duration_seconds histogram\n");
        self.refresh
            .render(&mut out, "cortex_refresh_duration_seconds", "");
        let dropped = crate::sync::read_lock(&self.audit_dropped)
            .as_ref()
            .map_or(0, |c| c.load(Ordering::Relaxed));
        simple(
            &mut out,
            "cortex_audit_lines_dropped_total",
            "counter",
            "Audit lines dropped because the audit output could not keep up.",
            dropped,
        );
        out
    }
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    let mut r = metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
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
mod tests {
    use super::*;

    /// One request of 12 ms.
    fn observe(
        m: &Metrics,
        method: &str,
        outcome: &str,
        class: Option<&str>,
        backend: Option<&str>,
    ) {
        let outcome: Cow<'static, str> = outcome.to_string().into();
        m.observe_request(
            Some(method),
            &outcome,
            class,
            backend,
            Duration::from_millis(12),
        );
    }

    #[test]
    fn counts_from_every_thread_add_up() {
        let m = Metrics::new();
        // More threads than shards, so some share one.
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 3 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        observe(&m, "tools/call", "ok", None, Some("crm"));
                    }
                    observe(&m, "tools/list", "refused", Some("rate_limited"), None);
                });
            }
        });
        let calls = 10 * (SHARDS + 3);
        let text = m.render();
        assert!(
            text.contains(&format!(
                "cortex_requests_total{{method=\"tools/call\",outcome=\"ok\"}} {calls}\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("cortex_rate_limited_total {}\n", SHARDS + 3)));
        assert!(text.contains(&format!(
            "cortex_tool_call_duration_seconds_count{{backend=\"crm\"}} {calls}\n"
        )));
        assert!(text.contains(&format!(
            "cortex_tool_call_duration_seconds_sum{{backend=\"crm\"}} {}\n",
            0.012 * calls as f64
        )));
    }

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        observe(&m, "tools/call", "ok", None, Some("crm"));
        observe(&m, "tools/call", "ok", None, Some("crm"));
        observe(&m, "evil/\"method", "rejected", None, None);
        observe(&m, "tools/list", "refused", Some("rate_limited"), None);
        m.observe_refresh(
            Duration::from_millis(30),
            7,
            &[("crm".into(), true), ("docs".into(), false)],
            1,
        );
        let text = m.render();
        assert!(
            text.contains("cortex_requests_total{method=\"tools/call\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("cortex_requests_total{method=\"other\",outcome=\"rejected\"} 1"));
        assert!(text.contains("cortex_rate_limited_total 1"));
        assert!(
            text.contains(
                "cortex_tool_call_duration_seconds_bucket{backend=\"crm\",le=\"0.025\"} 2"
            )
        );
        assert!(text.contains("cortex_tool_call_duration_seconds_count{backend=\"crm\"} 2"));
        assert!(text.contains("cortex_backend_up{backend=\"docs\"} 0"));
        assert!(text.contains("cortex_catalog_tools 7"));
        assert!(text.contains("cortex_tools_quarantined 1"));
        assert!(text.contains("cortex_refresh_duration_seconds_bucket{le=\"+Inf\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}

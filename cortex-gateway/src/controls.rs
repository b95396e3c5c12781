//! The operator controls wired together: their configuration
//! (`[controls]` in TOML, `CORTEX_*` variables), the runtime state built
//! from it, and the middleware stack around the MCP router.
//!
//! Order of the layers, outermost first: audit (so refusals get a line
//! too), origin/host/CORS (before any token is looked at), limits (header
//! size, per-request deadline), then the routes. The per-caller rate limit
//! and introspection run inside authentication (`Controls::admit`),
//! because they need the validated caller.

use std::{
    collections::HashMap, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
};
use cortex_backend::Caller;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::{
    admin::{self, AdminSecret, AfterApproval},
    audit::{self, AuditSink, AuditWriter, Auditor, Pseudonymizer},
    config::{ConfigError, GatewayConfig},
    federation::Federation,
    integrity::{self, IntegrityGuard},
    introspection::{IntrospectionConfig, IntrospectionError, Introspector},
    mcp::session,
    metrics::{self, Metrics},
    origin::{self, HostPolicy, OriginGuard, OriginPolicy},
    ratelimit::{CallerKey, RateLimited, RateLimiter, StreamLimiter, StreamSlot, TooManyStreams},
};

/// Default per-caller budget (requests a minute).
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 600;
/// Default burst.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 60;
/// Default cap on open notification streams per caller.
pub const DEFAULT_MAX_STREAMS_PER_CALLER: usize = 4;
/// Default per-request deadline (time to response headers).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Default limit on the total size of request headers.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default introspection cache time.
pub const DEFAULT_INTROSPECTION_CACHE_S: u64 = 30;
/// Callers remembered by the rate limiter.
const MAX_TRACKED_CALLERS: usize = 100_000;
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default time a connection has to deliver a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time an idle keep-alive connection is kept.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default cap on the messages of one JSON-RPC batch (2025-03-26).
pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 32;

fn default_rate() -> u32 {
    DEFAULT_RATE_LIMIT_PER_MINUTE
}
fn default_burst() -> u32 {
    DEFAULT_RATE_LIMIT_BURST
}
fn default_streams() -> usize {
    DEFAULT_MAX_STREAMS_PER_CALLER
}
fn default_deadline() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}
fn default_header_bytes() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}
fn default_introspection_cache() -> u64 {
    DEFAULT_INTROSPECTION_CACHE_S
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_header_read_timeout() -> u64 {
    DEFAULT_HEADER_READ_TIMEOUT_MS
}
fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}
fn default_max_sessions() -> usize {
    session::DEFAULT_MAX_SESSIONS
}
fn default_max_sessions_per_caller() -> usize {
    session::DEFAULT_MAX_SESSIONS_PER_CALLER
}
fn default_max_session_bytes() -> usize {
    session::DEFAULT_MAX_SESSION_BYTES
}
fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH_MESSAGES
}

/// The operator controls' settings (`[controls]` table in TOML).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlsConfig {
    /// Audit lines go to this file (`CORTEX_AUDIT_FILE`, `--audit-file`);
    /// `None`: standard output.
    #[serde(default)]
    pub audit_file: Option<PathBuf>,
    /// HMAC key of the audit pseudonyms (`CORTEX_AUDIT_SECRET`). Without
    /// it a random key per process is used. A secret: masked.
    #[serde(default)]
    pub audit_secret: Option<String>,
    /// Requests a minute per caller (`CORTEX_RATE_LIMIT_PER_MINUTE`); 0 = off.
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// Back-to-back requests allowed (`CORTEX_RATE_LIMIT_BURST`).
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    /// Open notification streams per caller (`CORTEX_MAX_STREAMS_PER_CALLER`).
    #[serde(default = "default_streams")]
    pub max_streams_per_caller: usize,
    /// Extra `Host` names accepted on a loopback listener (`CORTEX_ALLOWED_HOSTS`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Tool-definition integrity: `off`, `warn` or `block` (`CORTEX_TOOL_INTEGRITY`).
    #[serde(default)]
    pub tool_integrity: integrity::Mode,
    /// Baseline file of approved definitions (`CORTEX_TOOL_BASELINE`).
    #[serde(default)]
    pub tool_baseline: Option<PathBuf>,
    /// Secret of `/admin/tool-integrity` (`CORTEX_ADMIN_SECRET`); `None`:
    /// the endpoint does not exist. A secret: masked.
    #[serde(default)]
    pub admin_secret: Option<String>,
    /// Serve `/metrics` on this address only (`CORTEX_METRICS_LISTEN`);
    /// `None`: on the main listener.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Per-request deadline to response headers (`CORTEX_REQUEST_TIMEOUT_MS`).
    #[serde(default = "default_deadline")]
    pub request_timeout_ms: u64,
    /// Limit on the total size of request headers (`CORTEX_MAX_HEADER_BYTES`).
    #[serde(default = "default_header_bytes")]
    pub max_header_bytes: usize,
    /// RFC 7662 introspection endpoint (`CORTEX_INTROSPECTION_URL`).
    #[serde(default)]
    pub introspection_url: Option<String>,
    /// Client id for introspection (`CORTEX_INTROSPECTION_CLIENT_ID`).
    #[serde(default)]
    pub introspection_client_id: Option<String>,
    /// Client secret for introspection (`CORTEX_INTROSPECTION_CLIENT_SECRET`). Masked.
    #[serde(default)]
    pub introspection_client_secret: Option<String>,
    /// Seconds an introspection answer is reused (`CORTEX_INTROSPECTION_CACHE_S`).
    #[serde(default = "default_introspection_cache")]
    pub introspection_cache_s: u64,
    /// Open client connections at most (`CORTEX_MAX_CONNECTIONS`); one more
    /// is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a connection has to deliver a complete request head, from its
    /// start or from the first byte after the previous request
    /// (`CORTEX_HEADER_READ_TIMEOUT_MS`).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// Time a connection with no request in progress and no traffic is kept
    /// (`CORTEX_IDLE_TIMEOUT_MS`).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Live legacy sessions in total (`CORTEX_MAX_SESSIONS`).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Live legacy sessions of one caller (`CORTEX_MAX_SESSIONS_PER_CALLER`).
    #[serde(default = "default_max_sessions_per_caller")]
    pub max_sessions_per_caller: usize,
    /// Bytes the live legacy sessions may hold (`CORTEX_MAX_SESSION_BYTES`).
    #[serde(default = "default_max_session_bytes")]
    pub max_session_bytes: usize,
    /// Messages of one JSON-RPC batch at most (`CORTEX_MAX_BATCH_MESSAGES`).
    #[serde(default = "default_max_batch")]
    pub max_batch_messages: usize,
}

impl Default for ControlsConfig {
    fn default() -> Self {
        Self {
            audit_file: None,
            audit_secret: None,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            max_streams_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
            allowed_hosts: Vec::new(),
            tool_integrity: integrity::Mode::Warn,
            tool_baseline: None,
            admin_secret: None,
            metrics_listen: None,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            introspection_url: None,
            introspection_client_id: None,
            introspection_client_secret: None,
            introspection_cache_s: DEFAULT_INTROSPECTION_CACHE_S,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_sessions: session::DEFAULT_MAX_SESSIONS,
            max_sessions_per_caller: session::DEFAULT_MAX_SESSIONS_PER_CALLER,
            max_session_bytes: session::DEFAULT_MAX_SESSION_BYTES,
            max_batch_messages: DEFAULT_MAX_BATCH_MESSAGES,
        }
    }
}

impl std::fmt::Debug for ControlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlsConfig")
            .field("audit_file", &self.audit_file)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("tool_integrity", &self.tool_integrity)
            .field("tool_baseline", &self.tool_baseline)
            .field(
                "admin_secret",
                &self.admin_secret.as_ref().map(|_| "[masked]"),
            )
            .field("metrics_listen", &self.metrics_listen)
            .finish_non_exhaustive()
    }
}

fn num<T: std::str::FromStr>(var: &str, value: &str, example: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError {
        variable: var.into(),
        problem: format!("`{value}` is not a valid value; use e.g. {example}"),
    })
}

fn masked(secret: &Option<String>) -> Option<String> {
    secret
        .as_ref()
        .map(|s| format!("[masked, {} characters]", s.chars().count()))
}

impl ControlsConfig {
    /// Reads the `CORTEX_*` variables of the controls (see the README).
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut c = Self {
            audit_file: get("CORTEX_AUDIT_FILE").map(PathBuf::from),
            audit_secret: get("CORTEX_AUDIT_SECRET"),
            tool_baseline: get("CORTEX_TOOL_BASELINE").map(PathBuf::from),
            admin_secret: get("CORTEX_ADMIN_SECRET"),
            introspection_url: get("CORTEX_INTROSPECTION_URL"),
            introspection_client_id: get("CORTEX_INTROSPECTION_CLIENT_ID"),
            introspection_client_secret: get("CORTEX_INTROSPECTION_CLIENT_SECRET"),
            ..Self::default()
        };
        if let Some(v) = get("CORTEX_RATE_LIMIT_PER_MINUTE") {
            c.rate_limit_per_minute =
                num("CORTEX_RATE_LIMIT_PER_MINUTE", &v, "600 (0 turns it off)")?;
        }
        if let Some(v) = get("CORTEX_RATE_LIMIT_BURST") {
            c.rate_limit_burst = num("CORTEX_RATE_LIMIT_BURST", &v, "60")?;
        }
        if let Some(v) = get("CORTEX_MAX_STREAMS_PER_CALLER") {
            c.max_streams_per_caller = num("CORTEX_MAX_STREAMS_PER_CALLER", &v, "4")?;
        }
        if let Some(v) = get("CORTEX_ALLOWED_HOSTS") {
            c.allowed_hosts = v
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get("CORTEX_TOOL_INTEGRITY") {
            c.tool_integrity = v.parse().map_err(|problem| ConfigError {
                variable: "CORTEX_TOOL_INTEGRITY".into(),
                problem,
            })?;
        }
        if let Some(v) = get("CORTEX_METRICS_LISTEN") {
            c.metrics_listen = Some(num("CORTEX_METRICS_LISTEN", &v, "127.0.0.1:9464")?);
        }
        if let Some(v) = get("CORTEX_REQUEST_TIMEOUT_MS") {
            c.request_timeout_ms = num("CORTEX_REQUEST_TIMEOUT_MS", &v, "60000")?;
        }
        if let Some(v) = get("CORTEX_MAX_HEADER_BYTES") {
            c.max_header_bytes = num("CORTEX_MAX_HEADER_BYTES", &v, "16384")?;
        }
        if let Some(v) = get("CORTEX_INTROSPECTION_CACHE_S") {
            c.introspection_cache_s = num("CORTEX_INTROSPECTION_CACHE_S", &v, "30")?;
        }
        let sizes: [(&str, &mut usize, &str); 5] = [
            ("CORTEX_MAX_CONNECTIONS", &mut c.max_connections, "4096"),
            ("CORTEX_MAX_SESSIONS", &mut c.max_sessions, "50000"),
            (
                "CORTEX_MAX_SESSIONS_PER_CALLER",
                &mut c.max_sessions_per_caller,
                "64",
            ),
            (
                "CORTEX_MAX_SESSION_BYTES",
                &mut c.max_session_bytes,
                "33554432",
            ),
            ("CORTEX_MAX_BATCH_MESSAGES", &mut c.max_batch_messages, "32"),
        ];
        for (var, field, example) in sizes {
            if let Some(v) = get(var) {
                *field = num(var, &v, example)?;
            }
        }
        if let Some(v) = get("CORTEX_HEADER_READ_TIMEOUT_MS") {
            c.header_read_timeout_ms = num("CORTEX_HEADER_READ_TIMEOUT_MS", &v, "10000")?;
        }
        if let Some(v) = get("CORTEX_IDLE_TIMEOUT_MS") {
            c.idle_timeout_ms = num("CORTEX_IDLE_TIMEOUT_MS", &v, "60000")?;
        }
        Ok(c)
    }

    /// Checks the settings (with the gateway's own origin and listen
    /// address for the origin list).
    pub fn validate(&self, gateway: &GatewayConfig) -> Result<(), ConfigError> {
        let err = |variable: &str, problem: String| ConfigError {
            variable: variable.into(),
            problem,
        };
        OriginPolicy::new(
            &gateway.canonical_origin(),
            gateway.allowed_origins.iter().map(String::as_str),
        )
        .map_err(|e| err("CORTEX_ALLOWED_ORIGINS", e.to_string()))?;
        if let Some(bad) = HostPolicy::bad_entry(self.allowed_hosts.iter().map(String::as_str)) {
            return Err(err(
                "CORTEX_ALLOWED_HOSTS",
                format!(
                    "`{bad}` is not a host; list names or IP literals, e.g. gateway.local,[fd00::1]"
                ),
            ));
        }
        if self.rate_limit_per_minute > 0 && self.rate_limit_burst == 0 {
            return Err(err(
                "CORTEX_RATE_LIMIT_BURST",
                "must be at least 1 when the rate limit is on".into(),
            ));
        }
        if self.max_streams_per_caller == 0 {
            return Err(err(
                "CORTEX_MAX_STREAMS_PER_CALLER",
                "must be at least 1 (notification streams would be impossible)".into(),
            ));
        }
        if self.request_timeout_ms == 0 || self.max_header_bytes < 1024 {
            return Err(err(
                "CORTEX_REQUEST_TIMEOUT_MS / CORTEX_MAX_HEADER_BYTES",
                "the deadline must be at least 1 ms and the header limit at least 1024 bytes"
                    .into(),
            ));
        }
        let min_session_bytes = session::SESSION_OVERHEAD_BYTES * 16;
        let bounds = [
            (
                "CORTEX_MAX_CONNECTIONS",
                self.max_connections >= 1,
                "at least 1, e.g. 4096".to_string(),
            ),
            (
                "CORTEX_HEADER_READ_TIMEOUT_MS",
                self.header_read_timeout_ms >= 1,
                "at least 1 (milliseconds), e.g. 10000".into(),
            ),
            (
                "CORTEX_IDLE_TIMEOUT_MS",
                self.idle_timeout_ms >= 1,
                "at least 1 (milliseconds), e.g. 60000".into(),
            ),
            (
                "CORTEX_MAX_SESSIONS",
                self.max_sessions >= 1,
                "at least 1, e.g. 50000".into(),
            ),
            (
                "CORTEX_MAX_SESSIONS_PER_CALLER",
                self.max_sessions_per_caller >= 1,
                "at least 1, e.g. 64".into(),
            ),
            (
                "CORTEX_MAX_SESSION_BYTES",
                self.max_session_bytes >= min_session_bytes,
                format!("at least {min_session_bytes}, e.g. 33554432"),
            ),
            (
                "CORTEX_MAX_BATCH_MESSAGES",
                self.max_batch_messages >= 1,
                "at least 1, e.g. 32".into(),
            ),
        ];
        if let Some((var, _, fix)) = bounds.into_iter().find(|(_, ok, _)| !ok) {
            return Err(err(var, format!("must be {fix}")));
        }
        if self.tool_integrity == integrity::Mode::Block && self.tool_baseline.is_none() {
            return Err(err(
                "CORTEX_TOOL_BASELINE",
                "required with CORTEX_TOOL_INTEGRITY=block: a file where approvals survive restarts, \
                 e.g. /var/lib/cortex/tool-baseline.json"
                    .into(),
            ));
        }
        if let Some(s) = &self.admin_secret
            && s.len() < admin::MIN_SECRET_LEN
        {
            return Err(err(
                "CORTEX_ADMIN_SECRET",
                format!(
                    "shorter than {} characters; generate one with `openssl rand -hex 32`",
                    admin::MIN_SECRET_LEN
                ),
            ));
        }
        if let Some(s) = &self.audit_secret
            && s.len() < 16
        {
            return Err(err(
                "CORTEX_AUDIT_SECRET",
                "shorter than 16 characters; generate one with `openssl rand -hex 32`".into(),
            ));
        }
        if let Some(url) = &self.introspection_url {
            cortex_backend::auth::check_transport(url, gateway.oauth.allow_insecure_http)
                .map_err(|p| err("CORTEX_INTROSPECTION_URL", p))?;
            if self.introspection_client_id.is_none() || self.introspection_client_secret.is_none()
            {
                return Err(err(
                    "CORTEX_INTROSPECTION_CLIENT_ID",
                    "introspection needs the gateway's client id and secret at the authorization server \
                     (CORTEX_INTROSPECTION_CLIENT_ID, CORTEX_INTROSPECTION_CLIENT_SECRET)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// A copy with every secret masked.
    pub fn masked(&self) -> Self {
        let mut copy = self.clone();
        copy.audit_secret = masked(&self.audit_secret);
        copy.admin_secret = masked(&self.admin_secret);
        copy.introspection_client_secret = masked(&self.introspection_client_secret);
        copy
    }
}

/// Why [`Controls::admit`] refused an authenticated caller.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Over the per-caller budget (429).
    RateLimited(RateLimited),
    /// Introspection says the token is no longer active (401).
    Revoked,
    /// Introspection could not answer (503, fail closed).
    Unavailable(IntrospectionError),
}

impl Refused {
    /// The answer; `revoked` builds the 401 challenge for a revoked token.
    pub(crate) fn into_response(self, revoked: impl FnOnce() -> Response) -> Response {
        match self {
            Self::RateLimited(e) => e.into_response(),
            Self::Revoked => revoked(),
            Self::Unavailable(e) => {
                let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
        }
    }
}

/// The runtime state of the controls.
pub(crate) struct Controls {
    pub(crate) origin: Arc<OriginGuard>,
    limiter: Option<RateLimiter>,
    streams: StreamLimiter,
    auditor: Arc<Auditor>,
    /// Kept for the life of the gateway (the writer thread ends with the sink).
    _audit_writer: AuditWriter,
    pub(crate) integrity: Arc<IntegrityGuard>,
    pub(crate) metrics: Arc<Metrics>,
    introspector: Option<Introspector>,
    admin_secret: Option<AdminSecret>,
    metrics_separate: bool,
    limits: Arc<Limits>,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Limits {
    deadline: Duration,
    max_header_bytes: usize,
}

fn json_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "error": {"code": -32000, "message": message}});
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl Controls {
    /// Builds the controls (inside the runtime: the audit writer is a task).
    pub(crate) fn new(config: &GatewayConfig, mcp_path: &str) -> Result<Self, ConfigError> {
        let c = &config.controls;
        c.validate(config)?;
        let mut origins = OriginPolicy::new(
            &config.canonical_origin(),
            config.allowed_origins.iter().map(String::as_str),
        )
        .map_err(|e| ConfigError {
            variable: "CORTEX_ALLOWED_ORIGINS".into(),
            problem: e.to_string(),
        })?;
        let loopback = config.listen.ip().is_loopback();
        let hosts = if loopback {
            // A loopback listener's own origins on its own port: the listen
            // port, and the canonical URI's when that names a loopback host.
            let canonical = origin::loopback_port(&config.canonical_uri);
            for port in std::iter::once(config.listen.port()).chain(canonical) {
                origins = origins.with_loopback_port(port);
            }
            HostPolicy::loopback(
                &config.canonical_uri,
                c.allowed_hosts.iter().map(String::as_str),
            )
        } else {
            HostPolicy::off()
        };
        let (sink, writer) = match &c.audit_file {
            Some(path) => AuditSink::file(path).map_err(|e| ConfigError {
                variable: "CORTEX_AUDIT_FILE".into(),
                problem: e.to_string(),
            })?,
            None => AuditSink::stdout(),
        };
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
        let metrics = Arc::new(Metrics::new());
        let auditor = Auditor::new(
            sink,
            keys,
            vec![mcp_path.to_string(), admin::PATH.to_string()],
        )
        .with_metrics(metrics.clone());
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
                .map_err(|e| ConfigError {
                    variable: "CORTEX_INTROSPECTION_URL".into(),
                    problem: e.0,
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            origin: Arc::new(OriginGuard::new(origins, hosts)),
            limiter: (c.rate_limit_per_minute > 0).then(|| {
                RateLimiter::new(
                    c.rate_limit_per_minute,
                    c.rate_limit_burst,
                    MAX_TRACKED_CALLERS,
                )
            }),
            streams: StreamLimiter::new(c.max_streams_per_caller),
            auditor: Arc::new(auditor),
            _audit_writer: writer,
            integrity: Arc::new(IntegrityGuard::open(
                c.tool_integrity,
                c.tool_baseline.clone(),
            )),
            metrics,
            introspector,
            admin_secret: c.admin_secret.as_deref().map(AdminSecret::new),
            metrics_separate: c.metrics_listen.is_some(),
            limits: Arc::new(Limits {
                deadline: Duration::from_millis(c.request_timeout_ms),
                max_header_bytes: c.max_header_bytes,
            }),
        })
    }

    /// Charges a request that failed authentication to the client address;
    /// `Err` is the 429 to send instead of the 401.
    pub(crate) fn charge_anonymous(&self) -> Result<(), RateLimited> {
        let (Some(limiter), Some(peer)) = (&self.limiter, audit::peer()) else {
            return Ok(());
        };
        limiter.check(&CallerKey::Address(peer))
    }

    /// After authentication: records the caller, charges its budget, and
    /// checks revocation.
    pub(crate) async fn admit(&self, caller: &Arc<Caller>) -> Result<(), Refused> {
        audit::note_caller(caller);
        if let Some(limiter) = &self.limiter {
            limiter
                .check_subject(&caller.sub)
                .map_err(Refused::RateLimited)?;
        }
        if let Some(introspector) = &self.introspector {
            // Boxed: its HTTP client future would otherwise be part of
            // every request's future, introspection or not.
            match Box::pin(introspector.is_active(caller.token())).await {
                Ok(true) => {}
                Ok(false) => {
                    audit::note_outcome("refused", Some("revoked"));
                    return Err(Refused::Revoked);
                }
                Err(e) => {
                    audit::note_outcome("error", Some("introspection"));
                    return Err(Refused::Unavailable(e));
                }
            }
        }
        Ok(())
    }

    /// Charges one more request to an authenticated caller (each message
    /// of a batch after the first, which [`Self::admit`] charged).
    pub(crate) fn charge_caller(&self, caller: &Caller) -> Result<(), RateLimited> {
        match &self.limiter {
            Some(limiter) => limiter.check_subject(&caller.sub),
            None => Ok(()),
        }
    }

    /// The audit middleware's state (for the lines of batch messages).
    pub(crate) fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    /// Takes a notification-stream slot for the caller.
    pub(crate) fn open_stream(&self, caller: &Caller) -> Result<StreamSlot, TooManyStreams> {
        self.streams.acquire(CallerKey::Subject(caller.sub.clone()))
    }

    /// Writes what the audit queue holds (at shutdown).
    pub(crate) async fn flush_audit(&self) {
        self.auditor.sink().flush().await;
    }

    /// The `/metrics` router.
    pub(crate) fn metrics_router(&self) -> Router {
        metrics::router(self.metrics.clone())
    }

    /// Adds the operator routes and wraps `router` in the middleware stack.
    pub(crate) fn wrap(&self, mut router: Router, federation: Arc<Federation>) -> Router {
        if let Some(secret) = &self.admin_secret {
            let after: AfterApproval = Arc::new(move || {
                let federation = federation.clone();
                Box::pin(async move {
                    federation.refresh().await;
                })
            });
            router = router.merge(admin::router(secret.clone(), self.integrity.clone(), after));
        }
        if !self.metrics_separate {
            router = router.merge(self.metrics_router());
        }
        router.layer(from_fn_with_state(self.perimeter(), perimeter_layer))
    }

    /// The checks every request passes (see [`Perimeter::run`]).
    pub(crate) fn perimeter(&self) -> Arc<Perimeter> {
        Arc::new(Perimeter {
            auditor: self.auditor.clone(),
            origin: self.origin.clone(),
            limits: self.limits.clone(),
        })
    }
}

/// Keeps `slot` for as long as the response body (the stream) lives.
pub(crate) fn hold_slot(response: Response, slot: StreamSlot) -> Response {
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _ = &slot;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The checks every request passes, in one middleware (one boxed future
/// and one service clone per request instead of one per check).
pub(crate) struct Perimeter {
    auditor: Arc<Auditor>,
    origin: Arc<OriginGuard>,
    limits: Arc<Limits>,
}

impl Perimeter {
    /// Audit (outermost, so refusals get a line too), then origin/host/CORS
    /// (before any token is looked at), then limits, then `handler`. The
    /// middleware of the router runs this with the routes as `handler`;
    /// the server runs it with the MCP POST handler directly (the hot path,
    /// see `transport::Front`).
    ///
    /// A plain function returning [`Self::run_from`]'s future: an `async fn`
    /// here would hold the request both as its argument and inside that
    /// future.
    pub(crate) fn run<'a, F, Fut>(
        &'a self,
        request: Request,
        handler: F,
    ) -> impl Future<Output = Response> + 'a
    where
        F: FnOnce(Request) -> Fut + 'a,
        Fut: Future<Output = Response> + 'a,
    {
        let peer = audit::connect_peer(&request);
        self.run_from(request, peer, handler)
    }

    /// [`Self::run`] for a request from `peer`, given directly rather than
    /// in a `ConnectInfo` extension (the server's hot path stores none).
    pub(crate) async fn run_from<F, Fut>(
        &self,
        request: Request,
        peer: Option<std::net::IpAddr>,
        handler: F,
    ) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        audit::audited_from(&self.auditor, request, peer, |request| {
            self.origin
                .guard(request, |request| limits(&self.limits, request, handler))
        })
        .await
    }
}

async fn perimeter_layer(
    State(perimeter): State<Arc<Perimeter>>,
    request: Request,
    next: Next,
) -> Response {
    perimeter.run(request, |request| next.run(request)).await
}

/// Header size limit and per-request deadline (to response headers, so
/// streams are not cut).
async fn limits<F, Fut>(limits: &Limits, request: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let size: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limits.max_header_bytes {
        audit::note_outcome("rejected", Some("headers_too_large"));
        return json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers total {size} bytes, more than the {} allowed; send fewer or smaller headers",
                limits.max_header_bytes
            ),
        );
    }
    match tokio::time::timeout(limits.deadline, handler(request)).await {
        Ok(response) => response,
        Err(_) => {
            audit::note_outcome("error", Some("deadline"));
            json_error(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request did not finish within the gateway's deadline of {} ms; retry, or ask \
                     for less (the operator sets CORTEX_REQUEST_TIMEOUT_MS)",
                    limits.deadline.as_millis()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_validation_and_masking() {
        let env: HashMap<String, String> = [
            ("CORTEX_TOOL_INTEGRITY", "block"),
            ("CORTEX_ADMIN_SECRET", "0123456789abcdef0123456789abcdef"),
            ("CORTEX_RATE_LIMIT_PER_MINUTE", "120"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = ControlsConfig::from_env_map(&env).unwrap();
        assert_eq!(c.rate_limit_per_minute, 120);
        let gateway = GatewayConfig::new(
            "https://mcp.example.com/mcp",
            "https://sso.example.com",
            "0123456789abcdef0123",
        );
        let e = c.validate(&gateway).unwrap_err();
        assert_eq!(e.variable, "CORTEX_TOOL_BASELINE");
        let mut ok = c.clone();
        ok.tool_baseline = Some("/var/lib/cortex/baseline.json".into());
        ok.validate(&gateway).unwrap();
        let shown = format!("{:?} {}", ok.masked().admin_secret, json_of(&ok.masked()));
        assert!(
            !shown.contains("0123456789abcdef0123456789abcdef"),
            "{shown}"
        );
        let mut bad = HashMap::new();
        bad.insert("CORTEX_TOOL_INTEGRITY".to_string(), "strict".to_string());
        assert_eq!(
            ControlsConfig::from_env_map(&bad).unwrap_err().variable,
            "CORTEX_TOOL_INTEGRITY"
        );
    }

    #[test]
    fn perimeter_bounds_from_env_and_toml_and_bad_values_name_their_variable() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = ControlsConfig::from_env_map(&env(&[
            ("CORTEX_MAX_CONNECTIONS", "10"),
            ("CORTEX_HEADER_READ_TIMEOUT_MS", "500"),
            ("CORTEX_IDLE_TIMEOUT_MS", "700"),
            ("CORTEX_MAX_SESSIONS", "9"),
            ("CORTEX_MAX_SESSIONS_PER_CALLER", "3"),
            ("CORTEX_MAX_SESSION_BYTES", "20000"),
            ("CORTEX_MAX_BATCH_MESSAGES", "4"),
        ]))
        .unwrap();
        assert_eq!(
            (
                c.max_connections,
                c.header_read_timeout_ms,
                c.idle_timeout_ms
            ),
            (10, 500, 700)
        );
        assert_eq!(
            (
                c.max_sessions,
                c.max_sessions_per_caller,
                c.max_session_bytes
            ),
            (9, 3, 20000)
        );
        assert_eq!(c.max_batch_messages, 4);
        let toml: ControlsConfig =
            toml::from_str("max_connections = 10\nmax_batch_messages = 4\n").unwrap();
        assert_eq!((toml.max_connections, toml.max_batch_messages), (10, 4));
        assert_eq!(toml.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
        let e = ControlsConfig::from_env_map(&env(&[("CORTEX_MAX_BATCH_MESSAGES", "many")]))
            .unwrap_err();
        assert_eq!(e.variable, "CORTEX_MAX_BATCH_MESSAGES");
        let gateway = GatewayConfig::new(
            "https://mcp.example.com/mcp",
            "https://sso.example.com",
            "0123456789abcdef0123",
        );
        for (var, value) in [
            ("CORTEX_MAX_CONNECTIONS", "0"),
            ("CORTEX_IDLE_TIMEOUT_MS", "0"),
            ("CORTEX_HEADER_READ_TIMEOUT_MS", "0"),
            ("CORTEX_MAX_SESSION_BYTES", "100"),
            ("CORTEX_MAX_BATCH_MESSAGES", "0"),
            ("CORTEX_ALLOWED_HOSTS", "bad host!"),
        ] {
            let c = ControlsConfig::from_env_map(&env(&[(var, value)])).unwrap();
            assert_eq!(c.validate(&gateway).unwrap_err().variable, var, "{value}");
        }
    }

    fn json_of(c: &ControlsConfig) -> String {
        serde_json::to_string(c).unwrap()
    }
}

//! The operator controls' settings: the `[controls]` TOML table and its
//! `CORTEX_*` variables (audit, rate limit, origins and hosts, tool
//! integrity, admin endpoint, metrics, limits, introspection, sessions).

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, GatewayConfig};
use crate::{
    catalog::integrity,
    http::{
        admin,
        origin::{HostPolicy, OriginPolicy},
    },
    store::sessions as session,
};

pub use super::store::StoreKind;
use super::store::{DEFAULT_STORE_PREFIX, RateLimitOnFailure};

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
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default time a connection has to deliver a complete request head.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time an idle keep-alive connection is kept.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default cap on the messages of one JSON-RPC batch (2025-03-26).
pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 32;
/// Default number of rotated audit files kept.
pub const DEFAULT_AUDIT_KEEP: u32 = 5;
/// Default retention of audit rows in the audit database, in days: one
/// year, what common audit-trail rules ask for at least.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 365;
/// The smallest size limit of a rotated audit file.
pub const MIN_AUDIT_MAX_BYTES: u64 = 4096;

fn default_rate() -> u32 {
    DEFAULT_RATE_LIMIT_PER_MINUTE
}
fn default_store_prefix() -> String {
    DEFAULT_STORE_PREFIX.to_string()
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
fn default_audit_keep() -> u32 {
    DEFAULT_AUDIT_KEEP
}
fn default_audit_retention() -> u32 {
    DEFAULT_AUDIT_RETENTION_DAYS
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
    /// Rotate the audit file before it exceeds this many bytes
    /// (`CORTEX_AUDIT_MAX_BYTES`); 0: never (rotate with logrotate and
    /// SIGHUP instead).
    #[serde(default)]
    pub audit_max_bytes: u64,
    /// Rotated audit files kept, `<file>.1` the newest (`CORTEX_AUDIT_KEEP`).
    #[serde(default = "default_audit_keep")]
    pub audit_keep: u32,
    /// Audit lines also go to this PostgreSQL database
    /// (`CORTEX_AUDIT_DATABASE_URL`). May hold a password: masked.
    #[serde(default)]
    pub audit_database_url: Option<String>,
    /// The certificate authorities of the audit database's server
    /// (`CORTEX_AUDIT_DATABASE_CA_FILE`); default: the platform's.
    #[serde(default)]
    pub audit_database_ca_file: Option<PathBuf>,
    /// Days audit rows are kept in the audit database
    /// (`CORTEX_AUDIT_RETENTION_DAYS`); 0: forever.
    #[serde(default = "default_audit_retention")]
    pub audit_retention_days: u32,
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
    /// Where shared state is kept (`CORTEX_STORE`).
    #[serde(default)]
    pub store: StoreKind,
    /// Prefix of every key on the shared store (`CORTEX_STORE_PREFIX`).
    #[serde(default = "default_store_prefix")]
    pub store_prefix: String,
    /// Allow a plaintext `redis://` store on a remote host
    /// (`CORTEX_STORE_ALLOW_PLAINTEXT`).
    #[serde(default)]
    pub store_allow_plaintext: bool,
    /// The rate limit while the shared store is lost
    /// (`CORTEX_STORE_RATE_LIMIT_ON_FAILURE`).
    #[serde(default)]
    pub store_rate_limit_on_failure: RateLimitOnFailure,
    /// Tool-definition integrity: `off`, `warn` or `block` (`CORTEX_TOOL_INTEGRITY`).
    #[serde(default)]
    pub tool_integrity: integrity::Mode,
    /// Baseline file of approved definitions (`CORTEX_TOOL_BASELINE`).
    #[serde(default)]
    pub tool_baseline: Option<PathBuf>,
    /// The Ed25519 public key the baseline must be signed with
    /// (`CORTEX_BASELINE_PUBLIC_KEY`): SPKI PEM text, or the path of a PEM
    /// file. Alone, the gateway verifies and never signs.
    #[serde(default)]
    pub baseline_public_key: Option<String>,
    /// A PKCS#8 PEM file with the Ed25519 private key the gateway signs its
    /// own baseline saves with (`CORTEX_BASELINE_PRIVATE_KEY_FILE`).
    #[serde(default)]
    pub baseline_private_key_file: Option<PathBuf>,
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
            audit_max_bytes: 0,
            audit_keep: DEFAULT_AUDIT_KEEP,
            audit_database_url: None,
            audit_database_ca_file: None,
            audit_retention_days: DEFAULT_AUDIT_RETENTION_DAYS,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            max_streams_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
            allowed_hosts: Vec::new(),
            store: StoreKind::Memory,
            store_prefix: DEFAULT_STORE_PREFIX.to_string(),
            store_allow_plaintext: false,
            store_rate_limit_on_failure: RateLimitOnFailure::Open,
            tool_integrity: integrity::Mode::Warn,
            tool_baseline: None,
            baseline_public_key: None,
            baseline_private_key_file: None,
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
            .field("audit_max_bytes", &self.audit_max_bytes)
            .field("audit_database", &self.audit_database_url.is_some())
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("store", &self.store)
            .field("tool_integrity", &self.tool_integrity)
            .field("tool_baseline", &self.tool_baseline)
            .field("baseline_public_key", &self.baseline_public_key.is_some())
            .field("baseline_private_key_file", &self.baseline_private_key_file)
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
            audit_database_url: get("CORTEX_AUDIT_DATABASE_URL"),
            audit_database_ca_file: get("CORTEX_AUDIT_DATABASE_CA_FILE").map(PathBuf::from),
            tool_baseline: get("CORTEX_TOOL_BASELINE").map(PathBuf::from),
            baseline_public_key: get("CORTEX_BASELINE_PUBLIC_KEY"),
            baseline_private_key_file: get("CORTEX_BASELINE_PRIVATE_KEY_FILE").map(PathBuf::from),
            admin_secret: get("CORTEX_ADMIN_SECRET"),
            introspection_url: get("CORTEX_INTROSPECTION_URL"),
            introspection_client_id: get("CORTEX_INTROSPECTION_CLIENT_ID"),
            introspection_client_secret: get("CORTEX_INTROSPECTION_CLIENT_SECRET"),
            ..Self::default()
        };
        if let Some(v) = get("CORTEX_AUDIT_MAX_BYTES") {
            c.audit_max_bytes = num("CORTEX_AUDIT_MAX_BYTES", &v, "104857600 (0 turns it off)")?;
        }
        if let Some(v) = get("CORTEX_AUDIT_KEEP") {
            c.audit_keep = num("CORTEX_AUDIT_KEEP", &v, "5")?;
        }
        if let Some(v) = get("CORTEX_AUDIT_RETENTION_DAYS") {
            c.audit_retention_days = num(
                "CORTEX_AUDIT_RETENTION_DAYS",
                &v,
                "365 (0 keeps rows forever)",
            )?;
        }
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
        if let Some(v) = get("CORTEX_STORE") {
            // The value may be a URL with a password: never echo it.
            c.store = v.parse().map_err(|problem| ConfigError {
                variable: "CORTEX_STORE".into(),
                problem,
            })?;
        }
        if let Some(v) = get("CORTEX_STORE_PREFIX") {
            c.store_prefix = v;
        }
        if let Some(v) = get("CORTEX_STORE_ALLOW_PLAINTEXT") {
            c.store_allow_plaintext = super::parse_bool("CORTEX_STORE_ALLOW_PLAINTEXT", &v)?;
        }
        if let Some(v) = get("CORTEX_STORE_RATE_LIMIT_ON_FAILURE") {
            c.store_rate_limit_on_failure = v.parse().map_err(|problem| ConfigError {
                variable: "CORTEX_STORE_RATE_LIMIT_ON_FAILURE".into(),
                problem,
            })?;
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
        if let StoreKind::Redis(url) = &self.store
            && !url.is_tls()
            && !url.is_loopback()
            && !self.store_allow_plaintext
        {
            return Err(err(
                "CORTEX_STORE",
                format!(
                    "{url} is plaintext to a remote host: the store carries sessions and budgets; use \
                     rediss:// or set CORTEX_STORE_ALLOW_PLAINTEXT=true on a private network"
                ),
            ));
        }
        if self.store_prefix.len() > 64 || self.store_prefix.bytes().any(|b| !b.is_ascii_graphic())
        {
            return Err(err(
                "CORTEX_STORE_PREFIX",
                "must be at most 64 visible ASCII characters, e.g. cortex:".into(),
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
        if self.store != StoreKind::Memory && self.tool_baseline.is_some() {
            return Err(err(
                "CORTEX_TOOL_BASELINE",
                "is for one gateway process; with a shared CORTEX_STORE the approvals live in the \
                 store: unset CORTEX_TOOL_BASELINE"
                    .into(),
            ));
        }
        if self.tool_integrity == integrity::Mode::Block
            && self.tool_baseline.is_none()
            && self.store == StoreKind::Memory
        {
            return Err(err(
                "CORTEX_TOOL_BASELINE",
                "required with CORTEX_TOOL_INTEGRITY=block: a file where approvals survive restarts, \
                 e.g. /var/lib/cortex/tool-baseline.json"
                    .into(),
            ));
        }
        self.baseline_signing()?;
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
        if self.audit_max_bytes != 0 && self.audit_max_bytes < MIN_AUDIT_MAX_BYTES {
            return Err(err(
                "CORTEX_AUDIT_MAX_BYTES",
                format!(
                    "must be 0 (no rotation by size) or at least {MIN_AUDIT_MAX_BYTES}, e.g. 104857600 (100 MiB)"
                ),
            ));
        }
        if !(1..=1000).contains(&self.audit_keep) {
            return Err(err(
                "CORTEX_AUDIT_KEEP",
                "must be from 1 to 1000 (rotated files kept), e.g. 5".into(),
            ));
        }
        if let Some(url) = &self.audit_database_url {
            crate::vault::VaultStorage::postgres("CORTEX_AUDIT_DATABASE_URL", url)?;
        }
        if self.audit_max_bytes != 0
            && self
                .audit_file
                .as_ref()
                .is_none_or(|f| f.as_os_str() == "-")
        {
            return Err(err(
                "CORTEX_AUDIT_MAX_BYTES",
                "rotates the audit file, but CORTEX_AUDIT_FILE is not set: set it, or unset CORTEX_AUDIT_MAX_BYTES"
                    .into(),
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

    /// Who signs and checks the integrity baseline, from
    /// `CORTEX_BASELINE_PUBLIC_KEY` and `CORTEX_BASELINE_PRIVATE_KEY_FILE`.
    pub(crate) fn baseline_signing(&self) -> Result<integrity::BaselineSigning, ConfigError> {
        use integrity::{BaselineSigning, signature};
        let err = |variable: &str, problem: String| ConfigError {
            variable: variable.to_owned(),
            problem,
        };
        let public = match &self.baseline_public_key {
            None => None,
            Some(v) => {
                let text = if v.contains("-----BEGIN") {
                    v.clone()
                } else {
                    std::fs::read_to_string(v).map_err(|e| {
                        err(
                            "CORTEX_BASELINE_PUBLIC_KEY",
                            format!("cannot read the public key file {v}: {e}; give the PEM text or a readable file"),
                        )
                    })?
                };
                Some(
                    signature::public_key(&text)
                        .map_err(|e| err("CORTEX_BASELINE_PUBLIC_KEY", e))?,
                )
            }
        };
        let private = match &self.baseline_private_key_file {
            None => None,
            Some(path) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    err(
                        "CORTEX_BASELINE_PRIVATE_KEY_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?);
                Some(
                    signature::private_key(&text)
                        .map_err(|e| err("CORTEX_BASELINE_PRIVATE_KEY_FILE", e))?,
                )
            }
        };
        let signing = match (public, private) {
            (None, None) => return Ok(BaselineSigning::Off),
            (Some(p), Some(k)) if p != k.verifying_key() => {
                return Err(err(
                    "CORTEX_BASELINE_PRIVATE_KEY_FILE",
                    "is not the private half of CORTEX_BASELINE_PUBLIC_KEY; give the matching pair, \
                     or only one of them"
                        .into(),
                ));
            }
            (_, Some(k)) => BaselineSigning::Sign(Box::new(k)),
            (Some(p), None) => BaselineSigning::VerifyOnly(p),
        };
        match (&signing, &self.store) {
            // The replicas sign what they save in the shared store.
            (BaselineSigning::Sign(_), StoreKind::Redis(_)) => {}
            (BaselineSigning::VerifyOnly(_), StoreKind::Redis(_)) => {
                return Err(err(
                    "CORTEX_BASELINE_PUBLIC_KEY",
                    "a baseline signed off-host is a file for one process; with a shared \
                     CORTEX_STORE give the replicas CORTEX_BASELINE_PRIVATE_KEY_FILE instead"
                        .into(),
                ));
            }
            _ if self.tool_baseline.is_none() => {
                let var = if matches!(signing, BaselineSigning::Sign(_)) {
                    "CORTEX_BASELINE_PRIVATE_KEY_FILE"
                } else {
                    "CORTEX_BASELINE_PUBLIC_KEY"
                };
                return Err(err(
                    var,
                    "a signed baseline needs a file: set CORTEX_TOOL_BASELINE".into(),
                ));
            }
            _ => {}
        }
        Ok(signing)
    }

    /// A copy with every secret masked.
    pub fn masked(&self) -> Self {
        let mut copy = self.clone();
        copy.audit_secret = masked(&self.audit_secret);
        copy.audit_database_url = masked(&self.audit_database_url);
        copy.admin_secret = masked(&self.admin_secret);
        copy.introspection_client_secret = masked(&self.introspection_client_secret);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_memory_unless_set_and_plaintext_redis_stays_local() {
        let parse = |pairs: &[(&str, &str)]| {
            let env: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ControlsConfig::from_env_map(&env)
        };
        let none: HashMap<String, String> = HashMap::new();
        let defaults = ControlsConfig::from_env_map(&none).unwrap();
        assert_eq!(defaults.store, StoreKind::Memory);
        assert_eq!(defaults.store_prefix, "cortex:");
        assert_eq!(
            defaults.store_rate_limit_on_failure,
            RateLimitOnFailure::Open
        );
        assert_eq!(
            parse(&[("CORTEX_STORE", " Memory ")]).unwrap().store,
            StoreKind::Memory
        );
        let gateway = GatewayConfig::new(
            "https://mcp.example.com/mcp",
            "https://sso.example.com",
            "0123456789abcdef0123",
        );
        let remote = parse(&[("CORTEX_STORE", "redis://:hunter2@cache:6379")]).unwrap();
        assert!(matches!(remote.store, StoreKind::Redis(_)));
        let e = remote.validate(&gateway).unwrap_err();
        assert_eq!(e.variable, "CORTEX_STORE");
        assert!(
            e.problem.contains("CORTEX_STORE_ALLOW_PLAINTEXT"),
            "{}",
            e.problem
        );
        let shown = format!("{e} {remote:?} {}", json_of(&remote.masked()));
        assert!(!shown.contains("hunter2"), "{shown}");
        let allowed = parse(&[
            ("CORTEX_STORE", "redis://:hunter2@cache:6379"),
            ("CORTEX_STORE_ALLOW_PLAINTEXT", "true"),
            ("CORTEX_STORE_PREFIX", "blue:"),
            ("CORTEX_STORE_RATE_LIMIT_ON_FAILURE", "closed"),
        ])
        .unwrap();
        allowed.validate(&gateway).unwrap();
        assert_eq!(allowed.store_prefix, "blue:");
        assert_eq!(
            allowed.store_rate_limit_on_failure,
            RateLimitOnFailure::Closed
        );
        for url in [
            "rediss://:pw@cache:6379",
            "redis://127.0.0.1:6379",
            "redis://localhost",
        ] {
            parse(&[("CORTEX_STORE", url)])
                .unwrap()
                .validate(&gateway)
                .unwrap();
        }
        let e = parse(&[("CORTEX_STORE_PREFIX", "a b")])
            .unwrap()
            .validate(&gateway)
            .unwrap_err();
        assert_eq!(e.variable, "CORTEX_STORE_PREFIX");
        let e = parse(&[("CORTEX_STORE_RATE_LIMIT_ON_FAILURE", "sometimes")]).unwrap_err();
        assert_eq!(e.variable, "CORTEX_STORE_RATE_LIMIT_ON_FAILURE");
        assert!(
            parse(&[("CORTEX_STORE", "postgres")])
                .unwrap_err()
                .problem
                .contains("use memory")
        );
    }

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

    /// Bad audit settings stop the start naming their variable; the
    /// database URL is masked.
    #[test]
    fn bad_audit_settings_name_their_variable() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let defaults = ControlsConfig::from_env_map(&env(&[])).unwrap();
        assert_eq!(
            (
                defaults.audit_max_bytes,
                defaults.audit_keep,
                defaults.audit_retention_days
            ),
            (0, 5, 365)
        );
        for var in [
            "CORTEX_AUDIT_MAX_BYTES",
            "CORTEX_AUDIT_KEEP",
            "CORTEX_AUDIT_RETENTION_DAYS",
        ] {
            let e = ControlsConfig::from_env_map(&env(&[(var, "ten")])).unwrap_err();
            assert_eq!(e.variable, var);
        }
        let gateway = GatewayConfig::new(
            "https://mcp.example.com/mcp",
            "https://sso.example.com",
            "0123456789abcdef0123",
        );
        let file = ("CORTEX_AUDIT_FILE", "/var/log/cortex/audit.log");
        for (pairs, var) in [
            (
                vec![file, ("CORTEX_AUDIT_MAX_BYTES", "100")],
                "CORTEX_AUDIT_MAX_BYTES",
            ),
            (
                vec![("CORTEX_AUDIT_MAX_BYTES", "1048576")],
                "CORTEX_AUDIT_MAX_BYTES",
            ),
            (vec![file, ("CORTEX_AUDIT_KEEP", "0")], "CORTEX_AUDIT_KEEP"),
            (
                vec![(
                    "CORTEX_AUDIT_DATABASE_URL",
                    "postgres://u:pw@db.example.com/audit?sslmode=disable",
                )],
                "CORTEX_AUDIT_DATABASE_URL",
            ),
        ] {
            let c = ControlsConfig::from_env_map(&env(&pairs)).unwrap();
            assert_eq!(c.validate(&gateway).unwrap_err().variable, var, "{pairs:?}");
        }
        let c = ControlsConfig::from_env_map(&env(&[
            file,
            ("CORTEX_AUDIT_MAX_BYTES", "1048576"),
            ("CORTEX_AUDIT_KEEP", "3"),
            (
                "CORTEX_AUDIT_DATABASE_URL",
                "postgres://u:pw-secret@db.example.com/audit",
            ),
        ]))
        .unwrap();
        c.validate(&gateway).unwrap();
        assert!(!json_of(&c.masked()).contains("pw-secret"));
        assert!(!format!("{c:?}").contains("pw-secret"));
    }

    fn json_of(c: &ControlsConfig) -> String {
        serde_json::to_string(c).unwrap()
    }
}

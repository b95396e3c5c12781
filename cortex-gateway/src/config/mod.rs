//! The gateway's configuration: environment variables compatible with the
//! public cortex-gateway, or the same settings in a TOML file.
//!
//! Every problem is reported as a [`ConfigError`] naming the variable (or
//! TOML key) and the fix, before anything listens.

use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

use cortex_backend::auth::{JwtSettings, check_transport};
use serde::{Deserialize, Serialize};

mod agent;
mod controls;
mod facade;
mod identity;
mod mcp;
mod store;

pub use crate::config_error::ConfigError;
pub use crate::facade::settings::{
    DEFAULT_FACADE_ACCESS_TTL_S, DEFAULT_FACADE_MAX_CLIENTS, DEFAULT_FACADE_REFRESH_TTL_S,
    FacadeConfig, FacadeProfile,
};
pub use crate::upstream::mcp::settings::{
    DEFAULT_MCP_MAX_LIST_PAGES, DEFAULT_MCP_MAX_SESSION_BYTES, DEFAULT_MCP_MAX_SESSIONS,
    McpClientLimits, McpServerConfig,
};
pub use crate::upstream::settings::{BackendConfig, TokenExchangeConfig, TokenMode};
pub use crate::vault::VaultConfig;
pub use agent::{AgentConfig, MAX_INSTRUCTIONS_BYTES};
pub use controls::{
    ControlsConfig, DEFAULT_AUDIT_KEEP, DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_INTROSPECTION_CACHE_S,
    DEFAULT_MAX_BATCH_MESSAGES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_STREAMS_PER_CALLER, DEFAULT_RATE_LIMIT_BURST, DEFAULT_RATE_LIMIT_PER_MINUTE,
    DEFAULT_REQUEST_TIMEOUT_MS, MIN_AUDIT_MAX_BYTES, StoreKind,
};
pub use identity::{DEFAULT_ASSERT_TTL_S, IdentityConfig, MAX_ASSERT_TTL_S, MIN_ASSERT_TTL_S};
pub use store::{DEFAULT_STORE_PREFIX, RateLimitOnFailure, RedisUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3213";
/// The default catalog refresh interval in seconds.
pub const DEFAULT_REFRESH_INTERVAL_S: u64 = 60;
pub use crate::upstream::settings::DEFAULT_TIMEOUT_MS;
/// The default limit on a backend response body (bytes).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;
/// The default limit on an MCP request body (bytes).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}
fn default_refresh() -> u64 {
    DEFAULT_REFRESH_INTERVAL_S
}
fn default_max_response() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}
fn default_max_request() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}
fn default_whoami_timeout() -> u64 {
    2_000
}
fn default_keep_alive() -> u64 {
    15
}

/// `CORTEX_BACKEND_<ID>_<suffix>` for `backend`.
fn backend_env(backend: &BackendConfig, suffix: &str) -> String {
    format!("CORTEX_BACKEND_{}_{suffix}", env_id(&backend.id))
}

/// The gateway's whole configuration (serde/TOML-able; the vault's
/// settings always come from the environment).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listen address (`CORTEX_LISTEN`, `--listen`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The canonical URI of the MCP endpoint, exactly as clients configure
    /// it (`CORTEX_CANONICAL_URI`); also the token audience and the
    /// metadata's `resource`.
    pub canonical_uri: String,
    /// The authorization server (`OAUTH_ISSUER`).
    pub issuer: String,
    /// How tokens are validated (the `[oauth]` table): the settings of
    /// [`cortex_backend::auth::JWT_SETTINGS`], shared with the SDK.
    #[serde(default)]
    pub oauth: JwtSettings,
    /// The technical token sent to backends' discovery methods
    /// (`CORTEX_TECHNICAL_TOKEN`). A secret: masked in `check-config`.
    pub technical_token: String,
    /// Origins allowed in addition to the canonical URI's own
    /// (`CORTEX_ALLOWED_ORIGINS`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Baseline scopes every caller must hold (`OAUTH_REQUIRED_SCOPES`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Catalog refresh interval in seconds (`CORTEX_REFRESH_INTERVAL_S`).
    #[serde(default = "default_refresh")]
    pub refresh_interval_s: u64,
    /// Limit on a backend response body.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// Limit on an MCP request body.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: usize,
    /// Timeout of each backend's `whoami` in the builtin `whoami`.
    #[serde(default = "default_whoami_timeout")]
    pub whoami_timeout_ms: u64,
    /// Interval of SSE keep-alive comments, seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Threads that serve connections (`CORTEX_WORKERS`): `None`, one per
    /// CPU; `Some(n)`, `n` threads, each with a single-threaded runtime of
    /// its own that keeps a connection for its whole life; `Some(0)`, no
    /// threads of the gateway's own: connections are tasks of the runtime
    /// that calls [`crate::Gateway::serve`] (for `cortex-gateway serve`,
    /// Tokio's multi-threaded runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Client credentials for token exchange (needed when a backend uses
    /// `token_mode = "exchange"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchangeConfig>,
    /// The federated backends, in configuration order.
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    /// The third-party MCP servers (`[[mcp_server]]`, `CORTEX_MCP_SERVERS`),
    /// in configuration order.
    #[serde(default, rename = "mcp_server", skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerConfig>,
    /// Bounds of the downstream MCP client (`[mcp_limits]`).
    #[serde(default)]
    pub mcp_limits: McpClientLimits,
    /// The vault of linked accounts (`CORTEX_VAULT_*`,
    /// `CORTEX_DATABASE_URL`); required when MCP servers are configured.
    /// Never in a TOML file: read from the environment.
    #[serde(skip)]
    pub vault: Option<VaultConfig>,
    /// The operator controls (`[controls]`): audit, rate limit, origins,
    /// tool integrity, admin endpoint, metrics, limits, introspection.
    #[serde(default)]
    pub controls: ControlsConfig,
    /// The gateway's signing identity (`[identity]`): keys, issuer,
    /// assertion lifetime.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The OAuth facade (`[facade]`, `CORTEX_OAUTH_FACADE`): the gateway as
    /// the agents' authorization server, sign-in delegated to the company
    /// identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facade: Option<FacadeConfig>,
    /// What the agents are told and where their feedback goes
    /// (`[agent]`): instructions, icon, website, feedback webhook.
    #[serde(default)]
    pub agent: AgentConfig,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("canonical_uri", &self.canonical_uri)
            .field("issuer", &self.issuer)
            .field("technical_token", &"[masked]")
            .field("backends", &self.backends)
            .field("mcp_servers", &self.mcp_servers)
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl PartialEq for GatewayConfig {
    /// Field by field; two vaults are equal when their key ids, storage
    /// and cache bounds are (key bytes are not compared).
    fn eq(&self, other: &Self) -> bool {
        let Self {
            listen,
            canonical_uri,
            issuer,
            oauth,
            technical_token,
            allowed_origins,
            required_scopes,
            refresh_interval_s,
            max_response_bytes,
            max_request_bytes,
            whoami_timeout_ms,
            keep_alive_s,
            workers,
            token_exchange,
            backends,
            mcp_servers,
            mcp_limits,
            vault,
            controls,
            identity,
            facade,
            agent,
        } = self;
        let vault_view = |v: &Option<VaultConfig>| {
            v.as_ref().map(|v| {
                (
                    v.keys.ids().map(String::from).collect::<Vec<_>>(),
                    format!("{:?}", v.storage),
                    v.cache,
                )
            })
        };
        *listen == other.listen
            && *canonical_uri == other.canonical_uri
            && *issuer == other.issuer
            && *oauth == other.oauth
            && *technical_token == other.technical_token
            && *allowed_origins == other.allowed_origins
            && *required_scopes == other.required_scopes
            && *refresh_interval_s == other.refresh_interval_s
            && *max_response_bytes == other.max_response_bytes
            && *max_request_bytes == other.max_request_bytes
            && *whoami_timeout_ms == other.whoami_timeout_ms
            && *keep_alive_s == other.keep_alive_s
            && *workers == other.workers
            && *token_exchange == other.token_exchange
            && *backends == other.backends
            && *mcp_servers == other.mcp_servers
            && *mcp_limits == other.mcp_limits
            && vault_view(vault) == vault_view(&other.vault)
            && *controls == other.controls
            && *identity == other.identity
            && *facade == other.facade
            && *agent == other.agent
    }
}

/// Upper-cases an id for environment names (`hr-tools` gives `HR_TOOLS`).
pub fn env_id(id: &str) -> String {
    id.to_ascii_uppercase().replace('-', "_")
}

/// The trimmed, non-empty value of `key` in `env`.
fn env_value(env: &HashMap<String, String>, key: &str) -> Option<String> {
    env.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    Ok(cortex_backend::auth::parse_bool(var, value)?)
}

fn parse_num<T: std::str::FromStr>(
    var: &str,
    value: &str,
    example: &str,
) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError::new(
            var,
            format!("`{value}` is not a whole number; use e.g. {example}"),
        )
    })
}

impl GatewayConfig {
    /// A configuration with the defaults and no backends.
    pub fn new(
        canonical_uri: impl Into<String>,
        issuer: impl Into<String>,
        technical_token: impl Into<String>,
    ) -> Self {
        Self {
            listen: default_listen(),
            canonical_uri: canonical_uri.into(),
            issuer: issuer.into(),
            oauth: JwtSettings::default(),
            technical_token: technical_token.into(),
            allowed_origins: Vec::new(),
            required_scopes: Vec::new(),
            refresh_interval_s: DEFAULT_REFRESH_INTERVAL_S,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            whoami_timeout_ms: default_whoami_timeout(),
            keep_alive_s: default_keep_alive(),
            workers: None,
            token_exchange: None,
            backends: Vec::new(),
            mcp_servers: Vec::new(),
            mcp_limits: McpClientLimits::default(),
            vault: None,
            controls: ControlsConfig::default(),
            identity: IdentityConfig::default(),
            facade: None,
            agent: AgentConfig::default(),
        }
    }

    /// Reads the process environment (see [`GatewayConfig::from_env_map`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_map(&std::env::vars().collect())
    }

    /// Reads the settings from a map of environment variables:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `CORTEX_BACKENDS` | comma-separated backend ids | required unless `CORTEX_MCP_SERVERS` is set |
    /// | `CORTEX_BACKEND_<ID>_URL` | base URL of the backend | required |
    /// | `CORTEX_BACKEND_<ID>_PATH` | contract path | `/api/cortex/backend` |
    /// | `CORTEX_BACKEND_<ID>_TIMEOUT_MS` | per-call timeout | `10000` |
    /// | `CORTEX_BACKEND_<ID>_TOKEN_MODE` | `forward`, `exchange`, `assert` or `obo` | `forward` |
    /// | `CORTEX_BACKEND_<ID>_AUDIENCE` | the backend's audience (`exchange`, `assert`) | its URL |
    /// | `CORTEX_BACKEND_<ID>_OBO_SCOPE` | the scope requested in `obo` mode | `<audience>/.default` |
    /// | `CORTEX_BACKEND_<ID>_ALLOW_INSECURE_HTTP` | allow `http://` to a remote host | `false` |
    /// | `CORTEX_BACKEND_<ID>_PREFIX` | prefix tool names with `<id>_` | `true` |
    /// | `CORTEX_BACKEND_<ID>_TECHNICAL_TOKEN` | this backend's own technical token | `CORTEX_TECHNICAL_TOKEN` |
    /// | `CORTEX_CANONICAL_URI` | the public MCP URL (token audience) | `OAUTH_AUDIENCE` |
    /// | `OAUTH_ISSUER` | the authorization server | required |
    /// | `OAUTH_AUDIENCE` | compatibility alias of the canonical URI | – |
    /// | `CORTEX_TECHNICAL_TOKEN` | secret for backend discovery | required |
    /// | `CORTEX_ALLOWED_ORIGINS` | extra allowed `Origin`s | – |
    /// | `OAUTH_REQUIRED_SCOPES` | baseline scopes | – |
    /// | `CORTEX_REFRESH_INTERVAL_S` | catalog refresh | `60` |
    /// | `CORTEX_LISTEN` | listen address | `127.0.0.1:3213` |
    /// | `CORTEX_WORKERS` | threads serving connections; `0`: the caller's runtime | one per CPU |
    ///
    /// plus every token-validation setting of
    /// [`cortex_backend::auth::JWT_SETTINGS`] (JWKS, algorithms, leeway,
    /// `nbf`, `typ`, claim paths, plaintext transport), read by the SDK's own
    /// parser, the MCP servers' `CORTEX_MCP_*` and the vault's
    /// `CORTEX_VAULT_*` (see the README). `<ID>` is the id upper-cased with
    /// `-` as `_`.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| env_value(env, k);
        let required = |k: &str, fix: &str| get(k).ok_or_else(|| ConfigError::new(k, fix));

        let audience = get("OAUTH_AUDIENCE");
        let canonical_uri = match (get("CORTEX_CANONICAL_URI"), audience) {
            (Some(c), Some(a)) if c.trim_end_matches('/') != a.trim_end_matches('/') => {
                return Err(ConfigError::new(
                    "OAUTH_AUDIENCE",
                    format!(
                        "`{a}` differs from CORTEX_CANONICAL_URI `{c}`; tokens must be minted for \
                         the gateway's canonical URI: set both to the same URL or unset OAUTH_AUDIENCE"
                    ),
                ));
            }
            (Some(c), _) => c,
            (None, Some(a)) => a,
            (None, None) => {
                return Err(ConfigError::new(
                    "CORTEX_CANONICAL_URI",
                    "required: the MCP URL clients use, e.g. https://mcp.example.com/mcp \
                     (tokens must carry it as their audience)",
                ));
            }
        };
        // With the facade the gateway is the authorization server.
        let issuer = match get("OAUTH_ISSUER") {
            Some(issuer) => issuer,
            None if get("CORTEX_OAUTH_FACADE").is_some() => {
                get("CORTEX_GATEWAY_ISSUER").unwrap_or_else(|| origin_of(&canonical_uri))
            }
            None => required(
                "OAUTH_ISSUER",
                "required: the authorization server's issuer URL, e.g. https://sso.example.com",
            )?,
        };
        let technical_token = required(
            "CORTEX_TECHNICAL_TOKEN",
            "required: the secret the backends accept for discovery; generate one with \
             `openssl rand -hex 32` and give the same value to every backend",
        )?;
        let mut config = Self::new(canonical_uri, issuer, technical_token);
        config.oauth = JwtSettings::from_lookup(|k| env.get(k).cloned())?;
        if let Some(v) = get("CORTEX_ALLOWED_ORIGINS") {
            config.allowed_origins = list(&v);
        }
        if let Some(v) = get("OAUTH_REQUIRED_SCOPES") {
            config.required_scopes = list(&v);
        }
        if let Some(v) = get("CORTEX_REFRESH_INTERVAL_S") {
            config.refresh_interval_s = parse_num("CORTEX_REFRESH_INTERVAL_S", &v, "60")?;
        }
        if let Some(v) = get("CORTEX_WORKERS") {
            config.workers = Some(parse_num("CORTEX_WORKERS", &v, "4 (or 0)")?);
        }
        if let Some(v) = get("CORTEX_LISTEN") {
            config.listen = v.parse().map_err(|_| {
                ConfigError::new(
                    "CORTEX_LISTEN",
                    format!("`{v}` is not an address; use e.g. 127.0.0.1:3213"),
                )
            })?;
        }
        if let (Some(client_id), Some(client_secret)) =
            (get("OAUTH_CLIENT_ID"), get("OAUTH_CLIENT_SECRET"))
        {
            config.token_exchange = Some(TokenExchangeConfig {
                token_endpoint: get("OAUTH_TOKEN_ENDPOINT"),
                client_id,
                client_secret,
            });
        }
        let ids = match get("CORTEX_BACKENDS") {
            Some(v) => list(&v),
            None if get("CORTEX_MCP_SERVERS").is_some() => Vec::new(),
            None => {
                return Err(ConfigError::new(
                    "CORTEX_BACKENDS",
                    "required: comma-separated backend ids, e.g. crm,docs \
                     (or third-party MCP servers in CORTEX_MCP_SERVERS)",
                ));
            }
        };
        for id in ids {
            let name = |suffix: &str| format!("CORTEX_BACKEND_{}_{suffix}", env_id(&id));
            let url = required(
                &name("URL"),
                &format!(
                    "required for backend `{id}`: its base URL, e.g. https://{id}.internal.example.com"
                ),
            )?;
            let mut backend = BackendConfig::new(id.clone(), url);
            if let Some(v) = get(&name("PATH")) {
                backend.path = v;
            }
            if let Some(v) = get(&name("TIMEOUT_MS")) {
                backend.timeout_ms = parse_num(&name("TIMEOUT_MS"), &v, "10000")?;
            }
            if let Some(v) = get(&name("TOKEN_MODE")) {
                backend.token_mode = TokenMode::parse(&v).ok_or_else(|| {
                    ConfigError::new(
                        name("TOKEN_MODE"),
                        format!("`{v}` is not a token mode; use forward, exchange, assert or obo"),
                    )
                })?;
            }
            if let Some(v) = get(&name("ALLOW_INSECURE_HTTP")) {
                backend.allow_insecure_http = parse_bool(&name("ALLOW_INSECURE_HTTP"), &v)?;
            }
            if let Some(v) = get(&name("PREFIX")) {
                backend.prefix = parse_bool(&name("PREFIX"), &v)?;
            }
            backend.audience = get(&name("AUDIENCE"));
            backend.obo_scope = get(&name("OBO_SCOPE"));
            backend.technical_token = get(&name("TECHNICAL_TOKEN"));
            config.backends.push(backend);
        }
        mcp::read_env(env, &mut config)?;
        facade::read_env(env, &mut config)?;
        config.controls = ControlsConfig::from_env_map(env)?;
        config.identity = IdentityConfig::from_env_map(env)?;
        config.agent = AgentConfig::from_env_map(env);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file (same keys as the struct fields; backends as
    /// `[[backend]]` tables) and validates it.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the configuration file: {e}"),
            )
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses TOML text, reads the vault's settings from the process
    /// environment, and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str_with(text, |k| std::env::var(k).ok())
    }

    /// Parses TOML text, reads the vault's settings through `lookup`
    /// (see [`VaultConfig::from_lookup`]), and validates it.
    pub fn from_toml_str_with(
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| {
            ConfigError::new(
                "config file",
                format!("{}; see `cortex-gateway check-config --help`", e.message()),
            )
        })?;
        config.vault = VaultConfig::from_lookup(lookup)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let uri = &self.canonical_uri;
        if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains('#') {
            return Err(ConfigError::new(
                "CORTEX_CANONICAL_URI",
                format!(
                    "`{uri}` is not an absolute http(s) URL without fragment; use e.g. https://mcp.example.com/mcp"
                ),
            ));
        }
        check_transport(&self.issuer, self.oauth.allow_insecure_http)
            .map_err(|p| ConfigError::new("OAUTH_ISSUER", p))?;
        self.oauth.check()?;
        self.agent.check()?;
        if self.technical_token.len() < cortex_backend::auth::MIN_TECHNICAL_TOKEN_LEN {
            return Err(ConfigError::new(
                "CORTEX_TECHNICAL_TOKEN",
                format!(
                    "shorter than {} characters; generate one with `openssl rand -hex 32`",
                    cortex_backend::auth::MIN_TECHNICAL_TOKEN_LEN
                ),
            ));
        }
        if let Some(x) = &self.token_exchange {
            if let Some(endpoint) = &x.token_endpoint {
                check_transport(endpoint, self.oauth.allow_insecure_http)
                    .map_err(|p| ConfigError::new("OAUTH_TOKEN_ENDPOINT", p))?;
            }
            if x.client_id.is_empty() || x.client_secret.is_empty() {
                return Err(ConfigError::new(
                    "OAUTH_CLIENT_SECRET",
                    "the client id and secret must not be empty",
                ));
            }
        }
        if self.refresh_interval_s == 0 {
            return Err(ConfigError::new(
                "CORTEX_REFRESH_INTERVAL_S",
                "must be at least 1 (seconds)",
            ));
        }
        if self.backends.is_empty() && self.mcp_servers.is_empty() {
            return Err(ConfigError::new(
                "CORTEX_BACKENDS",
                "no backend configured; list at least one id, e.g. CORTEX_BACKENDS=crm \
                 (or a third-party MCP server in CORTEX_MCP_SERVERS)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.backends {
            if !mcp::valid_id(&b.id) {
                return Err(ConfigError::new(
                    "CORTEX_BACKENDS",
                    format!(
                        "`{}` is not a valid backend id; use 1-32 letters, digits or `-`",
                        b.id
                    ),
                ));
            }
            if !seen.insert(b.id.to_ascii_lowercase()) {
                return Err(ConfigError::new(
                    "CORTEX_BACKENDS",
                    format!("backend `{}` is listed twice; list each id once", b.id),
                ));
            }
            check_transport(&b.url, b.allow_insecure_http).map_err(|_| {
                ConfigError::new(
                    backend_env(b, "URL"),
                    format!(
                        "`{}` uses plaintext http to a non-loopback host: callers' tokens would travel \
                         in clear; use https, or set {}=true for a lab network",
                        b.url,
                        backend_env(b, "ALLOW_INSECURE_HTTP")
                    ),
                )
            })?;
            if let Some(token) = &b.technical_token
                && token.len() < cortex_backend::auth::MIN_TECHNICAL_TOKEN_LEN
            {
                return Err(ConfigError::new(
                    backend_env(b, "TECHNICAL_TOKEN"),
                    format!(
                        "shorter than {} characters; generate one with `openssl rand -hex 32` \
                         and give it to backend `{}` as one of its CORTEX_TECHNICAL_TOKENS",
                        cortex_backend::auth::MIN_TECHNICAL_TOKEN_LEN,
                        b.id
                    ),
                ));
            }
            if !b.path.starts_with('/') {
                return Err(ConfigError::new(
                    backend_env(b, "PATH"),
                    format!("`{}` must start with `/`, e.g. /api/cortex/backend", b.path),
                ));
            }
            if b.timeout_ms == 0 {
                return Err(ConfigError::new(
                    backend_env(b, "TIMEOUT_MS"),
                    "must be at least 1 (milliseconds), e.g. 10000",
                ));
            }
            if b.token_mode == TokenMode::Exchange && self.token_exchange.is_none() {
                return Err(ConfigError::new(
                    "OAUTH_CLIENT_ID",
                    format!(
                        "backend `{}` uses token exchange, which needs the gateway's client credentials: \
                         set OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET (and OAUTH_TOKEN_ENDPOINT unless the \
                         issuer's metadata names it), or set {}=forward",
                        b.id,
                        backend_env(b, "TOKEN_MODE")
                    ),
                ));
            }
        }
        mcp::validate(self)?;
        self.identity.validate(self)?;
        facade::validate(self)?;
        self.controls.validate(self)
    }

    /// The refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval_s)
    }

    /// The configuration as TOML with secrets masked (for `check-config`).
    pub fn masked_toml(&self) -> String {
        let mut copy = self.clone();
        copy.technical_token = mask(&self.technical_token);
        for b in &mut copy.backends {
            if let Some(t) = &mut b.technical_token {
                *t = mask(t);
            }
        }
        if let Some(x) = &mut copy.token_exchange {
            x.client_secret = mask(&x.client_secret);
        }
        for s in &mut copy.mcp_servers {
            if let Some(secret) = &mut s.client_secret {
                *secret = mask(secret);
            }
        }
        copy.controls = self.controls.masked();
        copy.agent = self.agent.masked();
        if let Some(f) = &mut copy.facade {
            f.client_secret = mask(&f.client_secret);
        }
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// The origin (`scheme://host[:port]`) of the canonical URI.
    pub fn canonical_origin(&self) -> String {
        origin_of(&self.canonical_uri)
    }

    /// The path of the canonical URI (`/mcp`), or empty for a bare origin.
    pub fn canonical_path(&self) -> String {
        let origin = self.canonical_origin();
        self.canonical_uri[origin.len()..]
            .trim_end_matches('/')
            .to_string()
    }
}

/// `scheme://authority` of a URL.
pub(crate) fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

fn mask(secret: &str) -> String {
    format!("[masked, {} characters]", secret.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            ("CORTEX_BACKENDS", "crm, hr-tools"),
            ("CORTEX_BACKEND_CRM_URL", "http://127.0.0.1:9001"),
            ("CORTEX_BACKEND_HR_TOOLS_URL", "https://hr.example.com"),
            ("CORTEX_BACKEND_HR_TOOLS_PREFIX", "false"),
            ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
            ("OAUTH_ISSUER", "https://sso.example.com"),
            ("CORTEX_TECHNICAL_TOKEN", "0123456789abcdef0123"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn env_round_trip_and_masking() {
        let c = GatewayConfig::from_env_map(&base()).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert!(!c.backends[1].prefix);
        assert_eq!(c.canonical_path(), "/mcp");
        let shown = c.masked_toml();
        assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
        let mut env = base();
        env.insert("CORTEX_BACKEND_CRM_TOKEN_MODE".into(), "exchange".into());
        assert_eq!(
            GatewayConfig::from_env_map(&env).unwrap_err().variable,
            "OAUTH_CLIENT_ID"
        );
        env.insert("OAUTH_CLIENT_ID".into(), "gw".into());
        env.insert("OAUTH_CLIENT_SECRET".into(), "very-secret-value".into());
        let x = GatewayConfig::from_env_map(&env).unwrap();
        assert!(!x.masked_toml().contains("very-secret-value"));
        assert!(!format!("{x:?}").contains("very-secret-value"));
        let again = GatewayConfig::from_toml_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn errors_name_the_variable() {
        let mut env = base();
        env.insert(
            "CORTEX_BACKEND_HR_TOOLS_URL".into(),
            "http://hr.example.com".into(),
        );
        let e = GatewayConfig::from_env_map(&env).unwrap_err();
        assert_eq!(e.variable, "CORTEX_BACKEND_HR_TOOLS_URL");
        assert!(e.problem.contains("ALLOW_INSECURE_HTTP"));
        env.insert(
            "CORTEX_BACKEND_HR_TOOLS_ALLOW_INSECURE_HTTP".into(),
            "true".into(),
        );
        assert!(GatewayConfig::from_env_map(&env).is_ok());
        env.remove("OAUTH_ISSUER");
        assert_eq!(
            GatewayConfig::from_env_map(&env).unwrap_err().variable,
            "OAUTH_ISSUER"
        );
        let mut env = base();
        env.insert("CORTEX_BACKEND_CRM_TIMEOUT_MS".into(), "soon".into());
        assert_eq!(
            GatewayConfig::from_env_map(&env).unwrap_err().variable,
            "CORTEX_BACKEND_CRM_TIMEOUT_MS"
        );
    }

    #[test]
    fn workers_from_the_environment_and_toml() {
        assert_eq!(GatewayConfig::from_env_map(&base()).unwrap().workers, None);
        let mut env = base();
        env.insert("CORTEX_WORKERS".into(), "3".into());
        let c = GatewayConfig::from_env_map(&env).unwrap();
        assert_eq!(c.workers, Some(3));
        let again = GatewayConfig::from_toml_str(&c.masked_toml()).unwrap();
        assert_eq!(again.workers, Some(3), "{}", c.masked_toml());
        env.insert("CORTEX_WORKERS".into(), "0".into());
        assert_eq!(GatewayConfig::from_env_map(&env).unwrap().workers, Some(0));
        env.insert("CORTEX_WORKERS".into(), "all".into());
        let e = GatewayConfig::from_env_map(&env).unwrap_err();
        assert_eq!(e.variable, "CORTEX_WORKERS");
        assert!(e.problem.contains("whole number"), "{}", e.problem);
    }
}

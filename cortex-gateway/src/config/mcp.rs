//! Third-party MCP servers (`CORTEX_MCP_*`, `[[mcp_server]]`) and the
//! vault that holds the users' linked accounts (`CORTEX_VAULT_*`).
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CORTEX_MCP_SERVERS` | comma-separated server ids | – |
//! | `CORTEX_MCP_<ID>_URL` | the server's MCP endpoint (`https://`, or `http://` to loopback) | required |
//! | `CORTEX_MCP_<ID>_SCOPE` | Cortex scope of its read-only tools | `mcp:<id>:read` |
//! | `CORTEX_MCP_<ID>_WRITE_SCOPE` | Cortex scope of the others (`readOnlyHint` not `true`); empty: the read scope | `mcp:<id>:write` |
//! | `CORTEX_MCP_<ID>_CLIENT_ID` | pre-registered OAuth client at its authorization server | – |
//! | `CORTEX_MCP_<ID>_CLIENT_SECRET` | its secret (masked) | – |
//! | `CORTEX_MCP_<ID>_OAUTH_SCOPE` | OAuth scope asked for when linking | the server's `scopes_supported` (+ `openid`, `offline_access` if offered) |
//! | `CORTEX_MCP_<ID>_CATALOG_SUB` | the `sub` whose linked account lists its tools | – (listed without a token) |
//! | `CORTEX_MCP_<ID>_TIMEOUT_MS` | per-request timeout | `10000` |
//! | `CORTEX_MCP_<ID>_PREFIX` | prefix tool names with `<id>_` | `true` |
//! | `CORTEX_MCP_MAX_SESSIONS` | downstream sessions kept, all users and servers | `10000` |
//! | `CORTEX_MCP_MAX_SESSION_BYTES` | bytes those sessions may hold | `4194304` |
//! | `CORTEX_MCP_MAX_LIST_PAGES` | `tools/list` pages read per server and refresh | `20` |
//!
//! The vault's variables are read by [`VaultConfig::from_lookup`]; they
//! are never read from a TOML file (the keys are secrets).

use std::collections::HashMap;

use super::{ConfigError, GatewayConfig, env_id, list, parse_bool, parse_num};
use crate::{
    upstream::mcp::settings::{McpClientLimits, McpServerConfig},
    vault::VaultConfig,
};

/// `CORTEX_MCP_<ID>_<suffix>`.
pub(super) fn server_env(id: &str, suffix: &str) -> String {
    format!("CORTEX_MCP_{}_{suffix}", env_id(id))
}

/// Reads the MCP servers, their client's limits and the vault from `env`
/// into `config`.
pub(super) fn read_env(
    env: &HashMap<String, String>,
    config: &mut GatewayConfig,
) -> Result<(), ConfigError> {
    let get = |k: &str| {
        env.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    for id in get("CORTEX_MCP_SERVERS")
        .as_deref()
        .map(list)
        .unwrap_or_default()
    {
        let name = |suffix: &str| server_env(&id, suffix);
        let url = get(&name("URL")).ok_or_else(|| {
            ConfigError::new(
                name("URL"),
                format!(
                    "required for MCP server `{id}`: its MCP endpoint, e.g. https://mcp.{id}.example.com/mcp"
                ),
            )
        })?;
        let mut server = McpServerConfig::new(id.clone(), url);
        server.scope = get(&name("SCOPE"));
        // Present but empty is meaningful here: the read scope.
        server.write_scope = env.get(&name("WRITE_SCOPE")).map(|v| v.trim().to_string());
        server.client_id = get(&name("CLIENT_ID"));
        server.client_secret = get(&name("CLIENT_SECRET"));
        server.oauth_scope = get(&name("OAUTH_SCOPE"));
        server.catalog_sub = get(&name("CATALOG_SUB"));
        if let Some(v) = get(&name("TIMEOUT_MS")) {
            server.timeout_ms = parse_num(&name("TIMEOUT_MS"), &v, "10000")?;
        }
        if let Some(v) = get(&name("PREFIX")) {
            server.prefix = parse_bool(&name("PREFIX"), &v)?;
        }
        config.mcp_servers.push(server);
    }
    let limits = &mut config.mcp_limits;
    if let Some(v) = get("CORTEX_MCP_MAX_SESSIONS") {
        limits.max_sessions = parse_num("CORTEX_MCP_MAX_SESSIONS", &v, "10000")?;
    }
    if let Some(v) = get("CORTEX_MCP_MAX_SESSION_BYTES") {
        limits.max_session_bytes = parse_num("CORTEX_MCP_MAX_SESSION_BYTES", &v, "4194304")?;
    }
    if let Some(v) = get("CORTEX_MCP_MAX_LIST_PAGES") {
        limits.max_list_pages = parse_num("CORTEX_MCP_MAX_LIST_PAGES", &v, "20")?;
    }
    config.vault = VaultConfig::from_lookup(|k| env.get(k).cloned())?;
    Ok(())
}

/// A valid id for a backend or an MCP server.
pub(super) fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Checks the MCP servers and that a vault holds their accounts.
pub(super) fn validate(config: &GatewayConfig) -> Result<(), ConfigError> {
    let mut seen: std::collections::HashSet<String> = config
        .backends
        .iter()
        .map(|b| b.id.to_ascii_lowercase())
        .collect();
    for s in &config.mcp_servers {
        if !valid_id(&s.id) {
            return Err(ConfigError::new(
                "CORTEX_MCP_SERVERS",
                format!(
                    "`{}` is not a valid server id; use 1-32 letters, digits or `-`",
                    s.id
                ),
            ));
        }
        if !seen.insert(s.id.to_ascii_lowercase()) {
            return Err(ConfigError::new(
                "CORTEX_MCP_SERVERS",
                format!(
                    "`{}` is listed twice (as an MCP server or a backend); give each source its own id",
                    s.id
                ),
            ));
        }
        let url_var = server_env(&s.id, "URL");
        if s.url.contains('#') || s.url.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                url_var,
                format!(
                    "`{}` is not a URL without fragment; use e.g. https://mcp.example.com/mcp",
                    s.url
                ),
            ));
        }
        cortex_backend::auth::check_transport(&s.url, false).map_err(|_| {
            ConfigError::new(
                &url_var,
                format!(
                    "`{}` is not an https URL (plaintext http is only allowed to loopback): the \
                     users' linked tokens would travel in clear; use https://",
                    s.url
                ),
            )
        })?;
        if reqwest::Url::parse(&s.url).is_err() {
            return Err(ConfigError::new(
                url_var,
                format!(
                    "`{}` is not a URL; use e.g. https://mcp.example.com/mcp",
                    s.url
                ),
            ));
        }
        if s.timeout_ms == 0 {
            return Err(ConfigError::new(
                server_env(&s.id, "TIMEOUT_MS"),
                "must be at least 1 (milliseconds), e.g. 10000",
            ));
        }
        if s.client_secret.is_some() && s.client_id.is_none() {
            return Err(ConfigError::new(
                server_env(&s.id, "CLIENT_ID"),
                format!(
                    "{} is set without a client id; set the id of the pre-registered client too",
                    server_env(&s.id, "CLIENT_SECRET")
                ),
            ));
        }
        if let Some(scope) = &s.scope
            && scope.contains(char::is_whitespace)
        {
            return Err(ConfigError::new(
                server_env(&s.id, "SCOPE"),
                format!(
                    "`{scope}` is not one scope; give a single scope, e.g. mcp:{}:read",
                    s.id
                ),
            ));
        }
        if let Some(scope) = &s.write_scope
            && scope.contains(char::is_whitespace)
        {
            return Err(ConfigError::new(
                server_env(&s.id, "WRITE_SCOPE"),
                format!(
                    "`{scope}` is not one scope; give a single scope, e.g. mcp:{}:write (empty: the read scope)",
                    s.id
                ),
            ));
        }
    }
    let limits: &McpClientLimits = &config.mcp_limits;
    if !config.mcp_servers.is_empty() {
        if limits.max_sessions == 0 {
            return Err(ConfigError::new(
                "CORTEX_MCP_MAX_SESSIONS",
                "must be at least 1, e.g. 10000",
            ));
        }
        if limits.max_session_bytes < 1024 {
            return Err(ConfigError::new(
                "CORTEX_MCP_MAX_SESSION_BYTES",
                "must be at least 1024, e.g. 4194304",
            ));
        }
        if limits.max_list_pages == 0 {
            return Err(ConfigError::new(
                "CORTEX_MCP_MAX_LIST_PAGES",
                "must be at least 1, e.g. 20",
            ));
        }
        if config.vault.is_none() {
            return Err(ConfigError::new(
                "CORTEX_VAULT_KEY",
                "MCP servers are configured (CORTEX_MCP_SERVERS) but the vault that keeps the users' \
                 linked accounts has no key; generate one with `openssl rand -base64 32` and set \
                 CORTEX_VAULT_KEY (or CORTEX_VAULT_KEYS for rotation)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn base() -> HashMap<String, String> {
        [
            ("CORTEX_MCP_SERVERS", "tracker, design-hub"),
            ("CORTEX_MCP_TRACKER_URL", "https://mcp.tracker.example/mcp"),
            ("CORTEX_MCP_DESIGN_HUB_URL", "http://127.0.0.1:9100/mcp"),
            ("CORTEX_VAULT_KEY", KEY),
            ("CORTEX_VAULT_PATH", "/tmp/unused-vault.db"),
            ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
            ("OAUTH_ISSUER", "https://sso.example.com"),
            ("CORTEX_TECHNICAL_TOKEN", "0123456789abcdef0123"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn error_of(env: &HashMap<String, String>) -> ConfigError {
        GatewayConfig::from_env_map(env).unwrap_err()
    }

    #[test]
    fn servers_without_backends_with_defaults() {
        let c = GatewayConfig::from_env_map(&base()).unwrap();
        assert!(c.backends.is_empty());
        assert_eq!(c.mcp_servers.len(), 2);
        let t = &c.mcp_servers[0];
        assert_eq!(t.read_scope(), "mcp:tracker:read");
        assert_eq!(t.write_scope(), "mcp:tracker:write");
        assert_eq!(c.mcp_servers[1].id, "design-hub");
        assert!(c.vault.is_some());
        assert_eq!(c.mcp_limits, McpClientLimits::default());
    }

    #[test]
    fn every_setting_is_read() {
        let mut env = base();
        for (k, v) in [
            ("CORTEX_MCP_TRACKER_SCOPE", "tracker:use"),
            ("CORTEX_MCP_TRACKER_WRITE_SCOPE", ""),
            ("CORTEX_MCP_TRACKER_CLIENT_ID", "gw-client"),
            ("CORTEX_MCP_TRACKER_CLIENT_SECRET", "client-secret-value"),
            ("CORTEX_MCP_TRACKER_OAUTH_SCOPE", "issues:read issues:write"),
            ("CORTEX_MCP_TRACKER_CATALOG_SUB", "svc-catalog"),
            ("CORTEX_MCP_TRACKER_TIMEOUT_MS", "2500"),
            ("CORTEX_MCP_TRACKER_PREFIX", "false"),
            ("CORTEX_MCP_MAX_SESSIONS", "7"),
            ("CORTEX_MCP_MAX_SESSION_BYTES", "65536"),
            ("CORTEX_MCP_MAX_LIST_PAGES", "3"),
        ] {
            env.insert(k.into(), v.into());
        }
        let c = GatewayConfig::from_env_map(&env).unwrap();
        let t = &c.mcp_servers[0];
        assert_eq!(t.read_scope(), "tracker:use");
        assert_eq!(
            t.write_scope(),
            "tracker:use",
            "empty write scope = read scope"
        );
        assert_eq!(t.client_id.as_deref(), Some("gw-client"));
        assert_eq!(t.oauth_scope.as_deref(), Some("issues:read issues:write"));
        assert_eq!(t.catalog_sub.as_deref(), Some("svc-catalog"));
        assert_eq!(t.timeout_ms, 2500);
        assert!(!t.prefix);
        assert_eq!(
            c.mcp_limits,
            McpClientLimits {
                max_sessions: 7,
                max_session_bytes: 65536,
                max_list_pages: 3
            }
        );
        // check-config and Debug never show the client secret.
        let shown = c.masked_toml();
        assert!(!shown.contains("client-secret-value"), "{shown}");
        assert!(shown.contains("[[mcp_server]]"), "{shown}");
        assert!(!format!("{c:?}").contains("client-secret-value"));
        // The TOML form reads back (the vault comes from the environment).
        let toml_text = toml::to_string(&c).unwrap();
        let again = GatewayConfig::from_toml_str_with(&toml_text, |k| env.get(k).cloned()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "CORTEX_MCP_TRACKER_URL",
                "http://tracker.example/mcp",
                "CORTEX_MCP_TRACKER_URL",
            ),
            (
                "CORTEX_MCP_TRACKER_URL",
                "ftp://tracker.example/mcp",
                "CORTEX_MCP_TRACKER_URL",
            ),
            (
                "CORTEX_MCP_TRACKER_URL",
                "https://t.example/mcp#x",
                "CORTEX_MCP_TRACKER_URL",
            ),
            (
                "CORTEX_MCP_TRACKER_TIMEOUT_MS",
                "soon",
                "CORTEX_MCP_TRACKER_TIMEOUT_MS",
            ),
            (
                "CORTEX_MCP_TRACKER_TIMEOUT_MS",
                "0",
                "CORTEX_MCP_TRACKER_TIMEOUT_MS",
            ),
            (
                "CORTEX_MCP_TRACKER_PREFIX",
                "maybe",
                "CORTEX_MCP_TRACKER_PREFIX",
            ),
            (
                "CORTEX_MCP_TRACKER_SCOPE",
                "a b",
                "CORTEX_MCP_TRACKER_SCOPE",
            ),
            (
                "CORTEX_MCP_TRACKER_WRITE_SCOPE",
                "a b",
                "CORTEX_MCP_TRACKER_WRITE_SCOPE",
            ),
            (
                "CORTEX_MCP_TRACKER_CLIENT_SECRET",
                "s3cret",
                "CORTEX_MCP_TRACKER_CLIENT_ID",
            ),
            ("CORTEX_MCP_MAX_SESSIONS", "many", "CORTEX_MCP_MAX_SESSIONS"),
            ("CORTEX_MCP_MAX_SESSIONS", "0", "CORTEX_MCP_MAX_SESSIONS"),
            (
                "CORTEX_MCP_MAX_SESSION_BYTES",
                "-1",
                "CORTEX_MCP_MAX_SESSION_BYTES",
            ),
            (
                "CORTEX_MCP_MAX_SESSION_BYTES",
                "10",
                "CORTEX_MCP_MAX_SESSION_BYTES",
            ),
            (
                "CORTEX_MCP_MAX_LIST_PAGES",
                "0",
                "CORTEX_MCP_MAX_LIST_PAGES",
            ),
            (
                "CORTEX_MCP_SERVERS",
                "tracker,tracker",
                "CORTEX_MCP_SERVERS",
            ),
            ("CORTEX_MCP_SERVERS", "bad_id", "CORTEX_MCP_SERVERS"),
            ("CORTEX_VAULT_KEY", "short", "CORTEX_VAULT_KEY"),
        ];
        for (var, value, named) in cases {
            let mut env = base();
            env.insert((*var).into(), (*value).into());
            if *value == "bad_id" {
                env.insert(
                    "CORTEX_MCP_BAD_ID_URL".into(),
                    "https://x.example/mcp".into(),
                );
            }
            let e = error_of(&env);
            assert_eq!(e.variable, *named, "{var}={value}: {e}");
            assert!(!e.problem.is_empty());
        }
        let mut env = base();
        env.remove("CORTEX_MCP_TRACKER_URL");
        assert_eq!(error_of(&env).variable, "CORTEX_MCP_TRACKER_URL");
        // A server id may not reuse a backend's.
        let mut env = base();
        env.insert("CORTEX_BACKENDS".into(), "tracker".into());
        env.insert(
            "CORTEX_BACKEND_TRACKER_URL".into(),
            "https://t.example".into(),
        );
        assert_eq!(error_of(&env).variable, "CORTEX_MCP_SERVERS");
    }

    #[test]
    fn servers_without_a_vault_key_stop_the_start() {
        let mut env = base();
        env.remove("CORTEX_VAULT_KEY");
        env.remove("CORTEX_VAULT_PATH");
        let e = error_of(&env);
        assert_eq!(e.variable, "CORTEX_VAULT_KEY");
        assert!(
            e.problem.contains("openssl rand -base64 32"),
            "{}",
            e.problem
        );
        // No servers, no backends: nothing to federate.
        env.remove("CORTEX_MCP_SERVERS");
        assert_eq!(error_of(&env).variable, "CORTEX_BACKENDS");
    }
}

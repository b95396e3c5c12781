//! The OAuth facade (`CORTEX_OAUTH_FACADE`, `[facade]`): the gateway as
//! the authorization server agents see, with sign-in delegated to the
//! company's identity provider through one pre-registered confidential
//! client.
//!
//! | variable | TOML key (`[facade]`) | meaning | default |
//! |---|---|---|---|
//! | `CORTEX_OAUTH_FACADE` | `profile` | `entra`, `okta`, `keycloak`, `auth0` or `oidc`: turns the facade on | off |
//! | `CORTEX_FACADE_ISSUER` | `issuer` | the identity provider's issuer (Entra: `https://login.microsoftonline.com/<tenant>/v2.0`) | required |
//! | `CORTEX_FACADE_CLIENT_ID` | `client_id` | the gateway's client at the identity provider (redirect URI `<gateway issuer>/oauth/callback`) | required |
//! | `CORTEX_FACADE_CLIENT_SECRET` | `client_secret` | its secret (masked) | required |
//! | `CORTEX_FACADE_SCOPE_PREFIX` | `scope_prefix` | put before each Cortex scope asked of the provider, stripped from the scopes it grants | `entra`: `api://<client id>/`; others: none |
//! | `CORTEX_FACADE_AUDIENCE` | `audience` | the audience of the provider's access tokens for Cortex (`okta`, `auth0`: sent as `audience`; `oidc`: as `resource`) | `entra`: the client id; others: none |
//! | `CORTEX_FACADE_GROUP_SCOPES` | `group_scopes` | Cortex scopes granted by group membership: `group=scope scope;group2=scope` | – |
//! | `CORTEX_FACADE_ACCESS_TTL_S` | `access_ttl_s` | lifetime of the gateway's access tokens (60–3600) | `600` |
//! | `CORTEX_FACADE_REFRESH_TTL_S` | `refresh_ttl_s` | lifetime of a grant's refresh token (0: no refresh tokens) | `1209600` (14 days) |
//! | `CORTEX_FACADE_MAX_CLIENTS` | `max_clients` | dynamically registered clients kept | `10000` |
//!
//! With the facade on, `OAUTH_ISSUER` is the gateway's own issuer
//! (`CORTEX_GATEWAY_ISSUER`, default the canonical URI's origin) and may
//! be left unset.

use std::collections::{BTreeMap, HashMap};

use super::{ConfigError, GatewayConfig, parse_num};
use crate::facade::settings::{FacadeConfig, FacadeProfile};
use cortex_backend::auth::check_transport;

/// Parses `group=scope scope;group2=scope`.
fn group_scopes(value: &str) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = BTreeMap::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((group, scopes)) = entry.split_once('=') else {
            return Err(ConfigError::new(
                "CORTEX_FACADE_GROUP_SCOPES",
                format!("`{entry}` has no `=`; write group=scope scope;group2=scope"),
            ));
        };
        let scopes: Vec<String> = scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if group.trim().is_empty() || scopes.is_empty() {
            return Err(ConfigError::new(
                "CORTEX_FACADE_GROUP_SCOPES",
                format!("`{entry}` needs a group and at least one scope, e.g. sales=crm.read"),
            ));
        }
        out.insert(group.trim().to_string(), scopes);
    }
    Ok(out)
}

/// Reads the facade's variables from `env` into `config` (nothing when
/// `CORTEX_OAUTH_FACADE` is unset).
pub(super) fn read_env(
    env: &HashMap<String, String>,
    config: &mut GatewayConfig,
) -> Result<(), ConfigError> {
    let get = |k: &str| {
        env.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let Some(name) = get("CORTEX_OAUTH_FACADE") else {
        return Ok(());
    };
    let profile = FacadeProfile::parse(&name).ok_or_else(|| {
        ConfigError::new(
            "CORTEX_OAUTH_FACADE",
            format!("`{name}` is not a facade profile; use entra, okta, keycloak, auth0 or oidc"),
        )
    })?;
    let required = |k: &str, fix: &str| get(k).ok_or_else(|| ConfigError::new(k, fix));
    let mut facade = FacadeConfig::new(
        profile,
        required(
            "CORTEX_FACADE_ISSUER",
            "required with CORTEX_OAUTH_FACADE: the identity provider's issuer, e.g. \
             https://login.microsoftonline.com/<tenant>/v2.0",
        )?,
        required(
            "CORTEX_FACADE_CLIENT_ID",
            "required with CORTEX_OAUTH_FACADE: the client registered for the gateway at the \
             identity provider (its redirect URI is <gateway issuer>/oauth/callback)",
        )?,
        required(
            "CORTEX_FACADE_CLIENT_SECRET",
            "required with CORTEX_OAUTH_FACADE: the secret of CORTEX_FACADE_CLIENT_ID",
        )?,
    );
    facade.scope_prefix = get("CORTEX_FACADE_SCOPE_PREFIX");
    facade.audience = get("CORTEX_FACADE_AUDIENCE");
    if let Some(v) = get("CORTEX_FACADE_GROUP_SCOPES") {
        facade.group_scopes = group_scopes(&v)?;
    }
    if let Some(v) = get("CORTEX_FACADE_ACCESS_TTL_S") {
        facade.access_ttl_s = parse_num("CORTEX_FACADE_ACCESS_TTL_S", &v, "600")?;
    }
    if let Some(v) = get("CORTEX_FACADE_REFRESH_TTL_S") {
        facade.refresh_ttl_s = parse_num("CORTEX_FACADE_REFRESH_TTL_S", &v, "1209600")?;
    }
    if let Some(v) = get("CORTEX_FACADE_MAX_CLIENTS") {
        facade.max_clients = parse_num("CORTEX_FACADE_MAX_CLIENTS", &v, "10000")?;
    }
    config.facade = Some(facade);
    Ok(())
}

/// Checks the facade's settings.
pub(super) fn validate(config: &GatewayConfig) -> Result<(), ConfigError> {
    let Some(f) = &config.facade else {
        return Ok(());
    };
    check_transport(&f.issuer, false).map_err(|p| ConfigError::new("CORTEX_FACADE_ISSUER", p))?;
    if f.client_id.is_empty() {
        return Err(ConfigError::new(
            "CORTEX_FACADE_CLIENT_ID",
            "must not be empty",
        ));
    }
    if f.client_secret.len() < 8 {
        return Err(ConfigError::new(
            "CORTEX_FACADE_CLIENT_SECRET",
            "shorter than 8 characters; copy the secret the identity provider generated",
        ));
    }
    if !(60..=3600).contains(&f.access_ttl_s) {
        return Err(ConfigError::new(
            "CORTEX_FACADE_ACCESS_TTL_S",
            format!(
                "{} is outside 60-3600 seconds; short access tokens bound how long a revoked \
                 grant keeps working, e.g. 600",
                f.access_ttl_s
            ),
        ));
    }
    if f.refresh_ttl_s > 366 * 86_400 {
        return Err(ConfigError::new(
            "CORTEX_FACADE_REFRESH_TTL_S",
            "longer than a year; use e.g. 1209600 (14 days), or 0 for no refresh tokens",
        ));
    }
    if f.max_clients == 0 {
        return Err(ConfigError::new(
            "CORTEX_FACADE_MAX_CLIENTS",
            "must be at least 1, e.g. 10000",
        ));
    }
    if config.issuer != config.gateway_issuer() {
        return Err(ConfigError::new(
            "OAUTH_ISSUER",
            format!(
                "`{}` is set, but with CORTEX_OAUTH_FACADE the gateway is the authorization \
                 server agents use; unset OAUTH_ISSUER (the identity provider goes in \
                 CORTEX_FACADE_ISSUER)",
                config.issuer
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> HashMap<String, String> {
        [
            ("CORTEX_BACKENDS", "crm"),
            ("CORTEX_BACKEND_CRM_URL", "http://127.0.0.1:9001"),
            ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
            ("CORTEX_TECHNICAL_TOKEN", "0123456789abcdef0123"),
            ("CORTEX_OAUTH_FACADE", "entra"),
            (
                "CORTEX_FACADE_ISSUER",
                "https://login.microsoftonline.com/t1/v2.0",
            ),
            ("CORTEX_FACADE_CLIENT_ID", "app-1"),
            ("CORTEX_FACADE_CLIENT_SECRET", "the-client-secret"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn the_facade_is_read_and_oauth_issuer_becomes_the_gateway() {
        let c = GatewayConfig::from_env_map(&env(&[(
            "CORTEX_FACADE_GROUP_SCOPES",
            "sales=crm.read;admins=crm.write hr.read",
        )]))
        .unwrap();
        let f = c.facade.as_ref().unwrap();
        assert_eq!(f.profile, FacadeProfile::Entra);
        assert_eq!(c.issuer, "https://mcp.example.com");
        assert_eq!(f.group_scopes["admins"], vec!["crm.write", "hr.read"]);
        let shown = c.masked_toml();
        assert!(!shown.contains("the-client-secret"), "{shown}");
        assert!(!format!("{c:?}").contains("the-client-secret"));
        let again = GatewayConfig::from_toml_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("CORTEX_OAUTH_FACADE", "azure"),
            ("CORTEX_FACADE_ISSUER", "http://idp.example.com"),
            ("CORTEX_FACADE_CLIENT_SECRET", "short"),
            ("CORTEX_FACADE_ACCESS_TTL_S", "5"),
            ("CORTEX_FACADE_ACCESS_TTL_S", "soon"),
            ("CORTEX_FACADE_GROUP_SCOPES", "sales"),
            ("CORTEX_FACADE_MAX_CLIENTS", "0"),
            ("OAUTH_ISSUER", "https://sso.example.com"),
        ] {
            let e = GatewayConfig::from_env_map(&env(&[(k, v)])).unwrap_err();
            assert_eq!(e.variable, k, "{k}={v}: {e}");
        }
        let mut missing = env(&[]);
        missing.remove("CORTEX_FACADE_CLIENT_ID");
        assert_eq!(
            GatewayConfig::from_env_map(&missing).unwrap_err().variable,
            "CORTEX_FACADE_CLIENT_ID"
        );
    }
}

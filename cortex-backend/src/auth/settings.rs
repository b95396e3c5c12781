//! The user-token validation settings: one list and one parser, read by
//! the SDK's [`Auth::from_env`](super::Auth::from_env) and by the gateway's
//! configuration (environment and TOML), so both sides have the same
//! settings with the same defaults.
//!
//! The issuer and the accepted audiences are not in this list: a backend
//! names its audiences (`OAUTH_AUDIENCE`), the gateway's audience is its
//! canonical URI. Everything else about how a token is checked is here.

use std::{path::PathBuf, time::Duration};

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::{AuthConfigError, JwtConfig, KeySource, check_transport, jwt};

/// One setting: its environment variable, its key in the gateway's TOML
/// `[oauth]` table, what it does and its default (as the README shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The key in the gateway's TOML `[oauth]` table.
    pub toml_key: &'static str,
    /// What it does.
    pub meaning: &'static str,
    /// The default, as written in the README tables.
    pub default: &'static str,
}

/// Every token-validation setting shared by the SDK and the gateway. The
/// README tables (`README.md` "Auth settings" and `cortex-gateway/README.md`)
/// are tested against this list.
pub const JWT_SETTINGS: &[Setting] = &[
    Setting {
        name: "OAUTH_JWKS_URL",
        toml_key: "jwks_url",
        meaning: "the issuer's JWKS URL; unset = named by the issuer's RFC 8414 or OpenID metadata",
        default: "discovered",
    },
    Setting {
        name: "OAUTH_JWKS_FILE",
        toml_key: "jwks_file",
        meaning: "a JWKS file: static keys for air-gapped setups (wins over the URL, never refreshed)",
        default: "none",
    },
    Setting {
        name: "OAUTH_ALGORITHMS",
        toml_key: "algorithms",
        meaning: "accepted signature algorithms, asymmetric only (`HS*` stops the start); \
                  never taken from the token",
        default: "RS256,ES256",
    },
    Setting {
        name: "OAUTH_LEEWAY_S",
        toml_key: "leeway_s",
        meaning: "clock skew allowed on `exp` and `nbf`, in seconds",
        default: "30",
    },
    Setting {
        name: "OAUTH_REQUIRE_NBF",
        toml_key: "require_nbf",
        meaning: "refuse tokens without `nbf`; a present `nbf` is always checked \
                  (RFC 9068 does not require it; oidc-provider, Keycloak, Auth0 and Okta omit it)",
        default: "false",
    },
    Setting {
        name: "OAUTH_REQUIRE_AT_JWT",
        toml_key: "require_at_jwt",
        meaning: "accept only header `typ: at+jwt` (RFC 9068 access tokens); otherwise \
                  `at+jwt`, `application/at+jwt`, `JWT` or no `typ` pass and any other `typ` is refused",
        default: "false",
    },
    Setting {
        name: "CORTEX_ROLE_CLAIM",
        toml_key: "role_claim",
        meaning: "claim path of the caller's role (`metadata.role` walks objects)",
        default: "role",
    },
    Setting {
        name: "CORTEX_POOL_CLAIM",
        toml_key: "pool_claim",
        meaning: "claim path of the caller's pool",
        default: "pool",
    },
    Setting {
        name: "CORTEX_ALLOW_INSECURE_HTTP",
        toml_key: "allow_insecure_http",
        meaning: "allow plaintext `http://` issuer, JWKS, token-endpoint and introspection URLs \
                  on non-loopback hosts (lab only)",
        default: "false",
    },
];

/// The settings of gateway-assertion mode: the backend trusts only the
/// assertions a Cortex gateway mints for it (its `CORTEX_BACKEND_<ID>_TOKEN_MODE=assert`).
/// SDK only, so `toml_key` is empty. The README table "Gateway assertions"
/// is tested against this list.
pub const GATEWAY_SETTINGS: &[Setting] = &[
    Setting {
        name: "CORTEX_GATEWAY_ISSUER",
        toml_key: "",
        meaning: "the gateway's issuer (the gateway's own CORTEX_GATEWAY_ISSUER); set = \
                  gateway-assertion mode: only tokens with this `iss`, `act.sub` equal to it, \
                  header `typ: at+jwt` and an `aud` of OAUTH_AUDIENCE are accepted, the IdP is \
                  not trusted (OAUTH_ISSUER must be unset); keys from \
                  `<issuer>/.well-known/jwks.json` unless OAUTH_JWKS_URL or OAUTH_JWKS_FILE",
        default: "none",
    },
    Setting {
        name: "CORTEX_GATEWAY_AUDIENCE",
        toml_key: "",
        meaning: "the gateway's public audience (its CORTEX_CANONICAL_URI): a token whose `aud` \
                  contains it is refused with that reason, and an OAUTH_AUDIENCE equal to it \
                  stops the start; only with CORTEX_GATEWAY_ISSUER",
        default: "none",
    },
];

/// The token-validation settings (see [`JWT_SETTINGS`]). Serialized as the
/// gateway's TOML `[oauth]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// `OAUTH_JWKS_URL`: `None` = discovered from the issuer's metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// `OAUTH_JWKS_FILE`: static keys, read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// `OAUTH_ALGORITHMS`.
    pub algorithms: Vec<Algorithm>,
    /// `OAUTH_LEEWAY_S`.
    pub leeway_s: u64,
    /// `OAUTH_REQUIRE_NBF`.
    pub require_nbf: bool,
    /// `OAUTH_REQUIRE_AT_JWT`.
    pub require_at_jwt: bool,
    /// `CORTEX_ROLE_CLAIM`.
    pub role_claim: String,
    /// `CORTEX_POOL_CLAIM`.
    pub pool_claim: String,
    /// `CORTEX_ALLOW_INSECURE_HTTP`.
    pub allow_insecure_http: bool,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            jwks_url: None,
            jwks_file: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway_s: 30,
            require_nbf: false,
            require_at_jwt: false,
            role_claim: "role".into(),
            pool_claim: "pool".into(),
            allow_insecure_http: false,
        }
    }
}

/// Parses a boolean setting: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool, AuthConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(AuthConfigError::new(
            variable,
            format!("`{other}` is not a boolean; use true or false"),
        )),
    }
}

impl JwtSettings {
    /// Reads the settings of [`JWT_SETTINGS`] from a variable lookup (the
    /// environment, or a map); unset or blank variables keep their default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, AuthConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut s = Self {
            jwks_url: get("OAUTH_JWKS_URL"),
            jwks_file: get("OAUTH_JWKS_FILE").map(PathBuf::from),
            ..Self::default()
        };
        if let Some(v) = get("OAUTH_ALGORITHMS") {
            s.algorithms = v
                .split([',', ' '])
                .filter(|a| !a.is_empty())
                .map(jwt::parse_algorithm)
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get("OAUTH_LEEWAY_S") {
            s.leeway_s = v.parse().map_err(|_| {
                AuthConfigError::new(
                    "OAUTH_LEEWAY_S",
                    format!("`{v}` is not a whole number of seconds; use e.g. 30"),
                )
            })?;
        }
        if let Some(v) = get("OAUTH_REQUIRE_NBF") {
            s.require_nbf = parse_bool("OAUTH_REQUIRE_NBF", &v)?;
        }
        if let Some(v) = get("OAUTH_REQUIRE_AT_JWT") {
            s.require_at_jwt = parse_bool("OAUTH_REQUIRE_AT_JWT", &v)?;
        }
        if let Some(v) = get("CORTEX_ROLE_CLAIM") {
            s.role_claim = v;
        }
        if let Some(v) = get("CORTEX_POOL_CLAIM") {
            s.pool_claim = v;
        }
        if let Some(v) = get("CORTEX_ALLOW_INSECURE_HTTP") {
            s.allow_insecure_http = parse_bool("CORTEX_ALLOW_INSECURE_HTTP", &v)?;
        }
        Ok(s)
    }

    /// Checks what can be checked without the network (algorithms, key
    /// URL transport, claim paths); does not read the JWKS file.
    pub fn check(&self) -> Result<(), AuthConfigError> {
        if self.algorithms.is_empty() {
            return Err(AuthConfigError::new(
                "OAUTH_ALGORITHMS",
                "at least one algorithm is required, e.g. RS256,ES256",
            ));
        }
        for alg in &self.algorithms {
            jwt::check_asymmetric(*alg)?;
        }
        if let Some(url) = &self.jwks_url {
            check_transport(url, self.allow_insecure_http)
                .map_err(|p| AuthConfigError::new("OAUTH_JWKS_URL", p))?;
        }
        for (name, value) in [
            ("CORTEX_ROLE_CLAIM", &self.role_claim),
            ("CORTEX_POOL_CLAIM", &self.pool_claim),
        ] {
            if value.trim().is_empty() {
                return Err(AuthConfigError::new(
                    name,
                    "must not be empty; it names a claim, e.g. role",
                ));
            }
        }
        Ok(())
    }

    /// The validator configuration for `issuer` and `audiences`: checks the
    /// settings and reads the JWKS file when one is set.
    pub fn jwt_config(
        &self,
        issuer: &str,
        audiences: Vec<String>,
    ) -> Result<JwtConfig, AuthConfigError> {
        self.check()?;
        let mut config = JwtConfig::new(issuer, audiences);
        if let Some(url) = &self.jwks_url {
            config.keys = KeySource::JwksUrl(url.clone());
        }
        if let Some(path) = &self.jwks_file {
            let shown = path.display();
            let text = std::fs::read_to_string(path).map_err(|e| {
                AuthConfigError::new("OAUTH_JWKS_FILE", format!("cannot read {shown}: {e}"))
            })?;
            let set = serde_json::from_str(&text).map_err(|e| {
                AuthConfigError::new(
                    "OAUTH_JWKS_FILE",
                    format!("{shown} is not a JWKS ({{\"keys\": [...]}}): {e}"),
                )
            })?;
            config.keys = KeySource::Static(set);
        }
        config.algorithms = self.algorithms.clone();
        config.leeway = Duration::from_secs(self.leeway_s);
        config.require_nbf = self.require_nbf;
        config.require_at_jwt = self.require_at_jwt;
        config.role_claim = self.role_claim.clone();
        config.pool_claim = self.pool_claim.clone();
        config.allow_insecure_http = self.allow_insecure_http;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_match_the_list() {
        let d = JwtSettings::default();
        let shown = |name: &str| {
            JWT_SETTINGS
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .default
        };
        let algs: Vec<String> = d.algorithms.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(algs.join(","), shown("OAUTH_ALGORITHMS"));
        assert_eq!(d.leeway_s.to_string(), shown("OAUTH_LEEWAY_S"));
        assert_eq!(d.require_nbf.to_string(), shown("OAUTH_REQUIRE_NBF"));
        assert_eq!(d.require_at_jwt.to_string(), shown("OAUTH_REQUIRE_AT_JWT"));
        assert_eq!(d.role_claim, shown("CORTEX_ROLE_CLAIM"));
        assert_eq!(d.pool_claim, shown("CORTEX_POOL_CLAIM"));
        assert_eq!(
            d.allow_insecure_http.to_string(),
            shown("CORTEX_ALLOW_INSECURE_HTTP")
        );
        // JwtConfig::new has the same defaults.
        let c = d
            .jwt_config("https://id.example.com", vec!["a".into()])
            .unwrap();
        let n = JwtConfig::new("https://id.example.com", vec!["a".into()]);
        assert_eq!(
            (c.algorithms, c.leeway, c.require_nbf, c.require_at_jwt),
            (n.algorithms, n.leeway, n.require_nbf, n.require_at_jwt)
        );
        // Every variable is read by the parser.
        let every: Vec<(&str, &str)> = JWT_SETTINGS
            .iter()
            .map(|s| {
                let v = match s.name {
                    "OAUTH_JWKS_URL" => "https://id.example.com/jwks",
                    "OAUTH_JWKS_FILE" => "/keys.json",
                    "OAUTH_ALGORITHMS" => "PS256",
                    "OAUTH_LEEWAY_S" => "5",
                    "CORTEX_ROLE_CLAIM" | "CORTEX_POOL_CLAIM" => "x.y",
                    _ => "true",
                };
                (s.name, v)
            })
            .collect();
        let s = JwtSettings::from_lookup(lookup(&every)).unwrap();
        let back = toml_like(&s);
        for setting in JWT_SETTINGS {
            assert!(back.contains(setting.toml_key), "{}", setting.toml_key);
        }
        assert_ne!(s.jwks_url, d.jwks_url);
        assert_ne!(s.jwks_file, d.jwks_file);
        assert_ne!(s.algorithms, d.algorithms);
        assert_ne!(s.leeway_s, d.leeway_s);
        assert_ne!(s.require_nbf, d.require_nbf);
        assert_ne!(s.require_at_jwt, d.require_at_jwt);
        assert_ne!(s.role_claim, d.role_claim);
        assert_ne!(s.pool_claim, d.pool_claim);
        assert_ne!(s.allow_insecure_http, d.allow_insecure_http);
    }

    fn toml_like(s: &JwtSettings) -> String {
        serde_json::to_string(s).unwrap()
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("OAUTH_ALGORITHMS", "HS256"),
            ("OAUTH_ALGORITHMS", "RS999"),
            ("OAUTH_LEEWAY_S", "soon"),
            ("OAUTH_REQUIRE_NBF", "maybe"),
            ("OAUTH_REQUIRE_AT_JWT", "2"),
            ("CORTEX_ALLOW_INSECURE_HTTP", "please"),
        ] {
            let e = JwtSettings::from_lookup(lookup(&[(name, value)])).unwrap_err();
            assert_eq!(e.variable, name, "{value}");
        }
        let s = JwtSettings::from_lookup(lookup(&[("OAUTH_JWKS_URL", "http://id.example.com/k")]))
            .unwrap();
        assert_eq!(s.check().unwrap_err().variable, "OAUTH_JWKS_URL");
        let s = JwtSettings::from_lookup(lookup(&[("OAUTH_JWKS_FILE", "/nonexistent/jwks.json")]))
            .unwrap();
        let e = s.jwt_config("https://id.example.com", vec!["a".into()]);
        assert_eq!(e.unwrap_err().variable, "OAUTH_JWKS_FILE");
    }
}

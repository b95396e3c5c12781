//! The resource server: broken tokens, challenges, metadata, baseline scope.

use cortex_backend::testing::BrokenToken;
use serde_json::{Value, json};

use crate::{
    client::Client,
    support::{Options, World},
};

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}})
}

async fn post(w: &World, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut b = reqwest::Client::new()
        .post(format!("{}{query}", w.url))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize().to_string());
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    b.send().await.unwrap()
}

#[tokio::test]
async fn every_broken_token_gets_401_with_a_challenge() {
    let w = World::start().await;
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", w.base());
    for kind in BrokenToken::ALL {
        let token = w.issuer.broken(kind, &w.url, "ana", &["mcp:crm:read"]);
        let r = post(&w, Some(&token), "").await;
        assert_eq!(r.status(), 401, "{}", kind.name());
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
            "{challenge}"
        );
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{}: {challenge}",
            kind.name()
        );
        assert!(challenge.contains("scope=\""), "{challenge}");
    }
    // No token at all: a challenge without an error code.
    let r = post(&w, None, "").await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(!challenge.contains("invalid_token"));
    assert!(challenge.contains("mcp:crm:read"), "{challenge}");
    // A valid token in the query string is never read.
    let good = w.token("ana", &["mcp:crm:read"]);
    let r = post(&w, None, &format!("?access_token={good}")).await;
    assert_eq!(r.status(), 401);
    // GET and DELETE are protected too.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = reqwest::Client::new()
            .request(method, &w.url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // A valid token passes.
    assert_eq!(post(&w, Some(&good), "").await.status(), 200);
}

#[tokio::test]
async fn protected_resource_metadata_at_both_paths() {
    let w = World::start().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let doc: Value = reqwest::get(format!("{}{path}", w.base()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], w.url.as_str());
        assert_eq!(doc["authorization_servers"], json!([w.issuer.issuer()]));
        let scopes: Vec<&str> = doc["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(scopes, ["mcp:crm:read", "mcp:crm:write", "mcp:docs:read"]);
    }
    let ready = reqwest::get(format!("{}/readyz", w.base())).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn baseline_scope_missing_is_403_insufficient_scope() {
    let w = World::start_with(Options {
        required_scopes: vec!["mcp:gateway".into()],
        ..Options::default()
    })
    .await;
    let without = w.token("ana", &["mcp:crm:read"]);
    let r = post(&w, Some(&without), "").await;
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("mcp:gateway"), "{challenge}");
    assert!(
        challenge.contains("mcp:crm:read"),
        "keeps the existing scopes: {challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let with = w.token("ana", &["mcp:crm:read", "mcp:gateway"]);
    assert_eq!(post(&w, Some(&with), "").await.status(), 200);
}

#[tokio::test]
async fn foreign_origin_is_403() {
    let w = World::start().await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let r = reqwest::Client::new()
        .post(&w.url)
        .bearer_auth(&token)
        .header("origin", "https://evil.example.com")
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = reqwest::Client::new()
        .post(&w.url)
        .bearer_auth(&token)
        .header("origin", w.base())
        .header("content-type", "application/json")
        .body(initialize().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A stateless-era `tools/call` through the gateway; the call's result,
/// which must be a success. (Raw: the schema files of the client's
/// validation are not needed here.)
async fn call(w: &World, token: &str, name: &str, arguments: Value) -> Value {
    let mut client = Client::modern(&w.url, token);
    let (body, headers) =
        client.envelope("tools/call", json!({"name": name, "arguments": arguments}));
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = client.post_raw(&body, &h).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let result = reply.body["result"].clone();
    assert_eq!(result["isError"], json!(false), "{:#}", reply.body);
    result
}

#[tokio::test]
async fn tokens_as_real_issuers_mint_them_pass_on_default_settings() {
    let w = World::start().await;
    // RFC 9068 as oidc-provider, Keycloak, Auth0 and Okta issue it: no
    // `nbf`, header `typ: at+jwt`.
    let rfc9068 = w
        .issuer
        .token(&w.url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .without("nbf")
        .typ(Some("at+jwt"))
        .mint();
    assert_eq!(post(&w, Some(&rfc9068), "").await.status(), 200);
    // The backend validates the forwarded token with the SDK's defaults.
    let result = call(
        &w,
        &rfc9068,
        "crm_search_accounts",
        json!({"query": "acme"}),
    )
    .await;
    assert_eq!(result["structuredContent"]["caller"], "ana", "{result:#}");
    let plain = w
        .issuer
        .token(&w.url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .typ(None)
        .mint();
    assert_eq!(post(&w, Some(&plain), "").await.status(), 200);
    // Another kind of JWT (here a DPoP proof's type) is refused, saying why.
    let other = w
        .issuer
        .token(&w.url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .typ(Some("dpop+jwt"))
        .mint();
    let r = post(&w, Some(&other), "").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("`typ`"), "{why}");
}

#[tokio::test]
async fn gateway_settings_require_nbf_and_at_jwt_when_asked() {
    let w = World::start_with(Options {
        configure: Some(Box::new(|c| {
            c.oauth.require_nbf = true;
            c.oauth.require_at_jwt = true;
        })),
        ..Options::default()
    })
    .await;
    let mint = |nbf: bool, typ: &str| {
        let b = w
            .issuer
            .token(&w.url)
            .sub("ana")
            .scopes(["mcp:crm:read"])
            .typ(Some(typ));
        if nbf { b } else { b.without("nbf") }.mint()
    };
    assert_eq!(
        post(&w, Some(&mint(true, "at+jwt")), "").await.status(),
        200
    );
    assert_eq!(
        post(&w, Some(&mint(false, "at+jwt")), "").await.status(),
        401
    );
    assert_eq!(post(&w, Some(&mint(true, "JWT")), "").await.status(), 401);
}

#[test]
fn gateway_reads_every_token_setting_of_the_sdk() {
    use cortex_gateway::config::GatewayConfig;
    let mut env: std::collections::HashMap<String, String> = [
        ("CORTEX_BACKENDS", "crm"),
        ("CORTEX_BACKEND_CRM_URL", "http://127.0.0.1:9001"),
        ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
        ("OAUTH_ISSUER", "https://sso.example.com"),
        ("CORTEX_TECHNICAL_TOKEN", "0123456789abcdef0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let default = GatewayConfig::from_env_map(&env).unwrap();
    assert_eq!(default.oauth, cortex_backend::auth::JwtSettings::default());
    assert!(!default.oauth.require_nbf, "nbf is not required by default");
    for (k, v) in [
        ("OAUTH_JWKS_URL", "https://sso.example.com/keys"),
        ("OAUTH_JWKS_FILE", "/etc/keys.json"),
        ("OAUTH_ALGORITHMS", "PS256,EdDSA"),
        ("OAUTH_LEEWAY_S", "5"),
        ("OAUTH_REQUIRE_NBF", "true"),
        ("OAUTH_REQUIRE_AT_JWT", "true"),
        ("CORTEX_ROLE_CLAIM", "realm_access.role"),
        ("CORTEX_POOL_CLAIM", "org.pool"),
        ("CORTEX_ALLOW_INSECURE_HTTP", "true"),
    ] {
        env.insert(k.into(), v.into());
    }
    let set = GatewayConfig::from_env_map(&env).unwrap();
    let sdk = cortex_backend::auth::JwtSettings::from_lookup(|k| env.get(k).cloned()).unwrap();
    assert_eq!(set.oauth, sdk);
    // The TOML form round-trips the same settings.
    let again = GatewayConfig::from_toml_str(&set.masked_toml()).unwrap();
    assert_eq!(again.oauth, sdk);
    // Every variable of the list changed something.
    let names: Vec<&str> = cortex_backend::auth::JWT_SETTINGS
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), 9);
    for s in cortex_backend::auth::JWT_SETTINGS {
        let mut without = env.clone();
        without.remove(s.name);
        assert_ne!(
            GatewayConfig::from_env_map(&without).unwrap().oauth,
            set.oauth,
            "{} is not read by the gateway",
            s.name
        );
    }
    env.insert("OAUTH_REQUIRE_AT_JWT".into(), "sometimes".into());
    let e = GatewayConfig::from_env_map(&env).unwrap_err();
    assert_eq!(e.variable, "OAUTH_REQUIRE_AT_JWT");
}

/// The rows of the first Markdown table after the line `heading`: the
/// variable names of the first cell and the last cell (the default), with
/// backticks removed.
fn table_after(text: &str, heading: &str) -> Vec<(Vec<String>, String)> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}` in the README"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
            let names = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .map(String::from)
                .collect();
            let default = cells.last().unwrap().trim().replace('`', "");
            (names, default)
        })
        .collect()
}

#[test]
fn readme_tables_match_the_one_list_of_token_settings() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let sdk_readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let gw_readme = std::fs::read_to_string(format!("{root}/cortex-gateway/README.md")).unwrap();
    let tables = [
        (
            "README.md Auth settings",
            table_after(&sdk_readme, "### Auth settings"),
            // The SDK's own identity settings (not token validation).
            &[
                "CORTEX_TECHNICAL_TOKENS",
                "CORTEX_TECHNICAL_TOKEN",
                "OAUTH_ISSUER",
                "OAUTH_AUDIENCE",
            ][..],
        ),
        (
            "cortex-gateway/README.md",
            table_after(&gw_readme, "## Configuring the gateway"),
            &[][..],
        ),
    ];
    for (which, rows, own) in &tables {
        for s in cortex_backend::auth::JWT_SETTINGS {
            let row = rows
                .iter()
                .find(|(names, _)| names.iter().any(|n| n == s.name))
                .unwrap_or_else(|| panic!("{which} has no row for {}", s.name));
            assert_eq!(row.0.len(), 1, "{which}: {} shares a row", s.name);
            assert_eq!(row.1, s.default, "{which}: default of {}", s.name);
        }
        if !own.is_empty() {
            for (names, _) in rows {
                for n in names {
                    assert!(
                        own.contains(&n.as_str())
                            || cortex_backend::auth::JWT_SETTINGS
                                .iter()
                                .any(|s| s.name == n),
                        "{which} documents {n}, which is not in JWT_SETTINGS"
                    );
                }
            }
        }
    }
    // The gateway README names every TOML key of the `[oauth]` table.
    assert!(gw_readme.contains("`[oauth]`"));
    for s in cortex_backend::auth::JWT_SETTINGS {
        assert!(
            gw_readme.contains(&format!("`{}`", s.toml_key)),
            "cortex-gateway/README.md does not name the TOML key {}",
            s.toml_key
        );
    }
    // Any gateway-table row of the root README that repeats a setting
    // agrees with the list.
    for (names, default) in table_after(&sdk_readme, "## Configuring the gateway") {
        for s in cortex_backend::auth::JWT_SETTINGS {
            if names.iter().any(|n| n == s.name) {
                assert_eq!(default, s.default, "README.md gateway table: {}", s.name);
            }
        }
    }
}

#[tokio::test]
async fn non_ascii_and_control_characters_in_claims_travel_faithfully() {
    use cortex_backend::contract::headers;
    let w = World::start().await;
    let injected_role = "sales\r\nX-Injected: yes";
    let token = w
        .issuer
        .token(&w.url)
        .sub("zoë")
        .email("josé@example.com")
        .claim("role", json!(injected_role))
        .claim("pool", json!("emea\u{0}"))
        .scopes(["mcp:crm:read"])
        .mint();
    let result = call(&w, &token, "crm_search_accounts", json!({"query": "acme"})).await;
    assert_eq!(result["structuredContent"]["caller"], "zoë", "{result:#}");
    // What the backend received: one header line per claim, each decoding
    // to the exact claim, and no header made up from a claim.
    let received = w.crm.last_headers();
    assert!(!received.contains_key("x-injected"), "{received:?}");
    let read = |name: &str| {
        let all: Vec<_> = received.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {all:?}");
        headers::decode(all[0].to_str().unwrap())
            .unwrap()
            .into_owned()
    };
    assert_eq!(read(headers::USER_ID), "zoë");
    assert_eq!(read(headers::USER_EMAIL), "josé@example.com");
    assert_eq!(read(headers::USER_ROLE), injected_role);
    assert_eq!(read(headers::USER_POOL), "emea\u{0}");
    assert_eq!(read(headers::SCOPES), "mcp:crm:read");
    assert_eq!(
        received[headers::USER_EMAIL],
        "UTF-8''jos%C3%A9%40example.com"
    );
    // The backend's own view (the SDK reads the validated claims).
    let who = call(&w, &token, "whoami", json!({})).await;
    let crm = &who["structuredContent"]["backends"]["crm"];
    assert_eq!(crm["email"], "josé@example.com", "{who:#}");
    assert_eq!(crm["role"], injected_role, "{who:#}");
}

#[tokio::test]
async fn callers_never_see_internal_error_text() {
    // The issuer's keys cannot be fetched: the 401 says so in a stable
    // sentence, without the JWKS URL or the connection error.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!(
        "http://{}/internal-keys/jwks.json",
        dead.local_addr().unwrap()
    );
    drop(dead);
    let dead_authority = dead_url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let jwks = dead_url.clone();
    let w = World::start_with(Options {
        configure: Some(Box::new(move |c| c.oauth.jwks_url = Some(jwks))),
        ..Options::default()
    })
    .await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let r = post(&w, Some(&token), "").await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.text().await.unwrap();
    for shown in [&challenge, &body] {
        assert!(shown.contains("retry later"), "{shown}");
        for internal in [
            "internal-keys",
            dead_authority.as_str(),
            "error sending",
            "refused",
            "GET ",
        ] {
            assert!(!shown.contains(internal), "{internal} in {shown}");
        }
    }

    // A backend that became unreachable: the JSON-RPC error of a prompt
    // names the backend and what to do, not the connection error.
    let mut w = World::start().await;
    let gone = std::mem::replace(
        &mut w.crm,
        crate::support::BackendServer::start(crate::support::crm(&w.issuer, &w.url)).await,
    );
    let gone_addr = gone.url.trim_start_matches("http://").to_string();
    drop(gone);
    let token = w.token("ana", &["mcp:crm:read"]);
    let mut client = Client::modern(&w.url, &token);
    let (body, headers) = client.envelope(
        "prompts/get",
        json!({"name": "crm_follow_up", "arguments": {"account": "Acme"}}),
    );
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = client.post_raw(&body, &h).await;
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("crm") && message.contains("unreachable"),
        "{:#}",
        reply.body
    );
    let shown = reply.body.to_string();
    for internal in [
        gone_addr.as_str(),
        "os error",
        "refused",
        "tcp connect",
        "Connect",
    ] {
        assert!(!shown.contains(internal), "{internal} in {shown}");
    }
}

async fn pong(
    _ctx: cortex_backend::Ctx<()>,
    _args: crate::support::NoArgs,
) -> Result<u32, cortex_backend::ToolError> {
    Ok(1)
}

#[tokio::test]
async fn each_backend_gets_its_own_technical_token() {
    use cortex_backend::{Auth, Backend};
    use cortex_gateway::{Gateway, config::GatewayConfig};
    const CRM_TOKEN: &str = "crm-own-technical-token-0123456789";
    let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
    let url = "http://127.0.0.1:9/mcp";
    let backend = |id: &str, token: &str| {
        Backend::builder(id)
            .auth(Auth::new(issuer.auth_config(url, &[token])).unwrap())
            .tool(
                cortex_backend::ToolFn::new("pong")
                    .scope(format!("mcp:{id}:read"))
                    .description("Pong.")
                    .handler(pong),
            )
            .build()
            .unwrap()
    };
    // crm accepts only its own token, docs only the shared one.
    let crm = crate::support::BackendServer::start(backend("crm", CRM_TOKEN)).await;
    let docs = crate::support::BackendServer::start(backend("docs", crate::support::TECH)).await;
    let mut env: std::collections::HashMap<String, String> = [
        ("CORTEX_BACKENDS", "crm,docs"),
        ("CORTEX_BACKEND_CRM_URL", crm.url.as_str()),
        ("CORTEX_BACKEND_DOCS_URL", docs.url.as_str()),
        ("CORTEX_BACKEND_CRM_TECHNICAL_TOKEN", CRM_TOKEN),
        ("CORTEX_CANONICAL_URI", url),
        ("OAUTH_ISSUER", issuer.issuer()),
        ("CORTEX_TECHNICAL_TOKEN", crate::support::TECH),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = GatewayConfig::from_env_map(&env).unwrap();
    assert!(!format!("{config:?}").contains(CRM_TOKEN));
    assert!(!config.masked_toml().contains(CRM_TOKEN));
    assert_eq!(
        GatewayConfig::from_toml_str(&toml_of(&config)).unwrap(),
        config
    );
    let gateway = Gateway::new(config).await.unwrap();
    gateway.wait_ready().await.unwrap();
    let catalog = gateway.catalog();
    assert!(catalog.tool("crm_pong").is_some(), "crm refused its token");
    assert!(
        catalog.tool("docs_pong").is_some(),
        "docs refused its token"
    );
    // Too short a per-backend token stops the start, naming the variable.
    env.insert("CORTEX_BACKEND_CRM_TECHNICAL_TOKEN".into(), "short".into());
    let e = GatewayConfig::from_env_map(&env).unwrap_err();
    assert_eq!(e.variable, "CORTEX_BACKEND_CRM_TECHNICAL_TOKEN");
}

fn toml_of(config: &cortex_gateway::config::GatewayConfig) -> String {
    // The unmasked TOML (the form an operator writes).
    toml::to_string(config).unwrap()
}

#[test]
fn debug_output_of_auth_configuration_never_shows_a_secret() {
    use cortex_gateway::{
        config::{GatewayConfig, TokenExchangeConfig},
        testing::{IntrospectionConfig, Introspector, TokenExchanger},
    };
    const SHARED: &str = "shared-technical-secret-0001";
    const OWN: &str = "own-technical-secret-00002";
    const CLIENT: &str = "exchange-client-secret-0003";
    const INTROSPECTION: &str = "introspection-secret-0004";
    let mut config = GatewayConfig::new(
        "https://mcp.example.com/mcp",
        "https://sso.example.com",
        SHARED,
    );
    let mut b = cortex_gateway::config::BackendConfig::new("crm", "https://crm.example.com");
    b.technical_token = Some(OWN.into());
    config.backends.push(b);
    let exchange = TokenExchangeConfig {
        token_endpoint: None,
        client_id: "gateway".into(),
        client_secret: CLIENT.into(),
    };
    config.token_exchange = Some(exchange.clone());
    let introspection = IntrospectionConfig {
        endpoint: "https://sso.example.com/introspect".into(),
        client_id: "gateway".into(),
        client_secret: INTROSPECTION.into(),
        cache_ttl: std::time::Duration::from_secs(30),
        timeout: std::time::Duration::from_secs(5),
    };
    let shown = [
        format!("{config:?}"),
        format!("{:?}", config.backends),
        format!("{exchange:?}"),
        format!(
            "{:?}",
            TokenExchanger::new(
                reqwest::Client::new(),
                config.issuer.clone(),
                exchange,
                false
            )
        ),
        format!("{introspection:?}"),
        format!("{:?}", Introspector::new(introspection).unwrap()),
        format!(
            "{:?}",
            cortex_backend::auth::AuthConfig {
                technical_tokens: vec![SHARED.into(), OWN.into()],
                jwt: None,
            }
        ),
        config.masked_toml(),
    ];
    for text in &shown {
        for secret in [SHARED, OWN, CLIENT, INTROSPECTION] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

//! Gateway-assertion mode (`CORTEX_GATEWAY_ISSUER`): the backend trusts
//! only the assertions a Cortex gateway mints for it, never a caller's
//! identity-provider token.

use cortex_backend::{
    Auth,
    auth::{AuthError, GATEWAY_SETTINGS, Principal, config_from_env},
    testing::{BrokenToken, TestIssuer},
};
use serde_json::json;

use crate::support::{AUD, TECH};

/// The gateway's public audience (its canonical URI) in these tests.
const GATEWAY_AUD: &str = "https://gateway.test.example/mcp";

fn vars(pairs: Vec<(&str, String)>) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
    move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// A backend trusting `gateway` as `Auth::from_env` would read it, plus
/// `extra` settings and the technical token.
fn auth(gateway: &TestIssuer, extra: Vec<(&str, String)>) -> Auth {
    let mut pairs = vec![
        ("CORTEX_GATEWAY_ISSUER", gateway.issuer().to_string()),
        ("OAUTH_AUDIENCE", AUD.to_string()),
        ("CORTEX_TECHNICAL_TOKENS", TECH.to_string()),
    ];
    pairs.extend(extra);
    Auth::new(config_from_env(vars(pairs)).expect("a valid configuration")).expect("auth")
}

async fn refusal(auth: &Auth, token: &str) -> String {
    match auth.authenticate(Some(&format!("Bearer {token}"))).await {
        Err(AuthError::Invalid(reason)) => reason,
        other => panic!("expected an invalid-token refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_assertion_is_accepted_and_its_actor_and_name_are_exposed() {
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let auth = auth(&gateway, vec![]);
    let token = gateway
        .token(AUD)
        .sub("ana")
        .email("ana@example.com")
        .claim("name", json!("Ana Lima"))
        .claim("client_id", json!("claude"))
        .scopes(["mcp:notes:read"])
        .mint();
    let Principal::User(caller) = auth
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .unwrap()
    else {
        panic!("an assertion is a user")
    };
    assert_eq!(caller.sub, "ana");
    assert_eq!(caller.actor.as_deref(), Some(gateway.issuer()));
    assert_eq!(caller.name.as_deref(), Some("Ana Lima"));
    assert_eq!(caller.client_id.as_deref(), Some("claude"));
    assert!(caller.has_scope("mcp:notes:read"));
    // The keys came from <issuer>/.well-known/jwks.json (no JWKS setting).
    assert!(gateway.jwks_url().ends_with("/.well-known/jwks.json"));
    // Technical tokens keep working for discovery.
    assert!(matches!(
        auth.authenticate(Some(&format!("Bearer {TECH}"))).await,
        Ok(Principal::Technical)
    ));
}

#[tokio::test]
async fn an_identity_provider_token_is_refused_even_for_the_backends_audience() {
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let idp = TestIssuer::start().await.unwrap();
    let auth = auth(&gateway, vec![]);
    // As a forward-mode gateway passes them on, and as the backend's own;
    // even dressed as an assertion.
    for token in [
        idp.token(GATEWAY_AUD).sub("ana").mint(),
        idp.token(AUD).sub("ana").mint(),
        idp.token(AUD)
            .sub("ana")
            .claim("act", json!({"sub": gateway.issuer()}))
            .typ(Some("at+jwt"))
            .mint(),
    ] {
        let reason = refusal(&auth, &token).await;
        assert!(reason.contains("not issued by the gateway"), "{reason}");
    }
    // Claiming to be the gateway does not make the provider's key the
    // gateway's.
    let forged = idp
        .token(AUD)
        .sub("ana")
        .claim("iss", json!(gateway.issuer()))
        .claim("act", json!({"sub": gateway.issuer()}))
        .typ(Some("at+jwt"))
        .mint();
    let reason = refusal(&auth, &forged).await;
    assert!(reason.contains("unknown signing key"), "{reason}");
}

#[tokio::test]
async fn an_assertion_without_the_gateway_as_actor_is_refused() {
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let auth = auth(&gateway, vec![]);
    let without = gateway.token(AUD).sub("ana").without("act").mint();
    let reason = refusal(&auth, &without).await;
    assert!(reason.contains("no `act` claim"), "{reason}");
    for act in [
        json!({"sub": "https://another-gateway.example.com"}),
        json!({"client_id": "x"}),
        json!("gateway"),
    ] {
        let token = gateway.token(AUD).sub("ana").claim("act", act).mint();
        let reason = refusal(&auth, &token).await;
        assert!(reason.contains("`act.sub`"), "{reason}");
    }
    // An assertion-shaped token whose typ is not at+jwt (an ID token, say).
    let jwt = gateway.token(AUD).sub("ana").typ(Some("JWT")).mint();
    let reason = refusal(&auth, &jwt).await;
    assert!(reason.contains("at+jwt"), "{reason}");
}

#[tokio::test]
async fn forged_assertions_are_refused() {
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let auth = auth(&gateway, vec![]);
    for kind in BrokenToken::ALL {
        let token = gateway.broken(kind, AUD, "ana", &["mcp:notes:read"]);
        let result = auth.authenticate(Some(&format!("Bearer {token}"))).await;
        assert!(
            matches!(result, Err(AuthError::Invalid(_))),
            "{}: {result:?}",
            kind.name()
        );
    }
    // Another key of the same shape, served by another gateway.
    let other = TestIssuer::start_gateway().await.unwrap();
    let mut claims = other.token(AUD).sub("ana").claims().clone();
    claims.insert("iss".into(), json!(gateway.issuer()));
    claims.insert("act".into(), json!({"sub": gateway.issuer()}));
    let reason = refusal(&auth, &other.mint(&serde_json::Value::Object(claims))).await;
    assert!(reason.contains("unknown signing key"), "{reason}");
}

#[tokio::test]
async fn a_token_for_the_gateways_audience_is_refused_with_that_reason() {
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let auth = auth(
        &gateway,
        vec![("CORTEX_GATEWAY_AUDIENCE", GATEWAY_AUD.to_string())],
    );
    for aud in [json!(GATEWAY_AUD), json!([AUD, GATEWAY_AUD])] {
        let token = gateway.token(AUD).sub("ana").claim("aud", aud).mint();
        let reason = refusal(&auth, &token).await;
        assert!(reason.contains("CORTEX_GATEWAY_AUDIENCE"), "{reason}");
    }
    let ok = gateway.token(AUD).sub("ana").mint();
    assert!(
        auth.authenticate(Some(&format!("Bearer {ok}")))
            .await
            .is_ok()
    );
}

#[test]
fn a_bad_gateway_configuration_stops_the_start_naming_the_variable() {
    let gw = "http://127.0.0.1:9".to_string();
    // (settings, the variable named, what the problem says)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_ISSUER", "https://id.example.com".into()),
                ("OAUTH_AUDIENCE", AUD.into()),
            ],
            "OAUTH_ISSUER",
            "never the identity provider",
        ),
        (
            vec![("CORTEX_GATEWAY_ISSUER", gw.clone())],
            "OAUTH_AUDIENCE",
            "CORTEX_BACKEND_<ID>_AUDIENCE",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_AUDIENCE", GATEWAY_AUD.into()),
                ("CORTEX_GATEWAY_AUDIENCE", GATEWAY_AUD.into()),
            ],
            "CORTEX_GATEWAY_AUDIENCE",
            "must differ",
        ),
        (
            vec![
                ("OAUTH_ISSUER", "https://id.example.com".into()),
                ("OAUTH_AUDIENCE", AUD.into()),
                ("CORTEX_GATEWAY_AUDIENCE", GATEWAY_AUD.into()),
            ],
            "CORTEX_GATEWAY_AUDIENCE",
            "only meaningful with CORTEX_GATEWAY_ISSUER",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_AUDIENCE", AUD.into()),
                ("OAUTH_ALGORITHMS", "RS256".into()),
            ],
            "OAUTH_ALGORITHMS",
            "ES256",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_AUDIENCE", AUD.into()),
                ("OAUTH_REQUIRE_NBF", "true".into()),
            ],
            "OAUTH_REQUIRE_NBF",
            "no `nbf`",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_AUDIENCE", AUD.into()),
                ("CORTEX_ROLE_CLAIM", "metadata.role".into()),
            ],
            "CORTEX_ROLE_CLAIM",
            "as `role`",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", gw.clone()),
                ("OAUTH_AUDIENCE", AUD.into()),
                ("CORTEX_POOL_CLAIM", "org.pool".into()),
            ],
            "CORTEX_POOL_CLAIM",
            "as `pool`",
        ),
        (
            vec![
                ("CORTEX_GATEWAY_ISSUER", "http://gateway.example.com".into()),
                ("OAUTH_AUDIENCE", AUD.into()),
            ],
            "CORTEX_GATEWAY_ISSUER",
            "plaintext",
        ),
    ];
    for (pairs, variable, says) in cases {
        let shown = format!("{pairs:?}");
        let e = config_from_env(vars(pairs))
            .and_then(Auth::new)
            .expect_err(&shown);
        assert_eq!(e.variable, variable, "{shown}: {e}");
        assert!(e.problem.contains(says), "{shown}: {e}");
    }
    // The gateway's JWKS is the default key source; a configured one wins.
    let c = config_from_env(vars(vec![
        ("CORTEX_GATEWAY_ISSUER", gw.clone()),
        ("OAUTH_AUDIENCE", AUD.into()),
    ]))
    .unwrap();
    let jwt = c.jwt.unwrap();
    assert!(
        matches!(&jwt.keys, cortex_backend::auth::KeySource::JwksUrl(u) if *u == format!("{gw}/.well-known/jwks.json"))
    );
    assert_eq!(jwt.required_actor.as_deref(), Some(gw.as_str()));
    assert!(jwt.require_at_jwt);
}

/// The rows of the first Markdown table after `heading`: the variable of
/// the first cell and the default of the last, backticks removed.
fn table_after(text: &str, heading: &str) -> Vec<(String, String)> {
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
            let clean = |c: &str| c.trim().replace('`', "");
            (clean(cells[0]), clean(cells[cells.len() - 1]))
        })
        .collect()
}

#[test]
fn the_readme_table_lists_exactly_the_gateway_settings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("the workspace README");
    let rows = table_after(&readme, "#### Gateway assertions");
    let listed: Vec<(String, String)> = GATEWAY_SETTINGS
        .iter()
        .map(|s| (s.name.to_string(), s.default.to_string()))
        .collect();
    assert_eq!(rows, listed);
}

#[tokio::test]
async fn whoami_names_the_gateway_as_actor() {
    use crate::support::{backend, call};
    let gateway = TestIssuer::start_gateway().await.unwrap();
    let b = backend(&gateway);
    let token = gateway
        .token(AUD)
        .sub("ana")
        .scopes(["mcp:notes:read"])
        .mint();
    let r = b.handle(call("whoami", json!({}), &token)).await;
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(r.json_body()["actor"], json!(gateway.issuer()));
    assert_eq!(r.json_body()["sub"], "ana");
    // The identity provider's token for the same backend: 401.
    let idp = TestIssuer::start().await.unwrap();
    let forwarded = crate::support::user(&idp, "ana", &["mcp:notes:read"]);
    let r = b.handle(call("whoami", json!({}), &forwarded)).await;
    assert_eq!(r.status, 401, "{}", r.json_body());
}

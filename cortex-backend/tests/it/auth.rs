//! User-token checks as real issuers send them: no `nbf`, `typ: at+jwt`,
//! JWKS keys with `use` and `alg`, and the shared settings parser.

use cortex_backend::{
    auth::{JwtConfig, JwtValidator, KeySource, config_from_env},
    testing::{BrokenToken, TestIssuer},
};
use serde_json::{Value, json};

use crate::support::AUD;

fn vars(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

async fn jwks_of(issuer: &TestIssuer) -> Value {
    reqwest::get(issuer.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A validator with the issuer's keys given statically, each edited by `edit`.
async fn with_keys(issuer: &TestIssuer, edit: impl Fn(&mut Value)) -> JwtValidator {
    let mut jwks = jwks_of(issuer).await;
    for key in jwks["keys"].as_array_mut().unwrap() {
        edit(key);
    }
    let mut config = JwtConfig::new(issuer.issuer(), vec![AUD.to_string()]);
    config.keys = KeySource::Static(serde_json::from_value(jwks).unwrap());
    JwtValidator::new(config).unwrap()
}

#[tokio::test]
async fn nbf_is_checked_when_present_and_optional_by_default() {
    let issuer = TestIssuer::start().await.unwrap();
    // As oidc-provider, Keycloak, Auth0 and Okta issue them: no nbf.
    let token = issuer.token(AUD).sub("ana").without("nbf").mint();
    let from_env = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("OAUTH_ISSUER", issuer.issuer().to_string()),
            ("OAUTH_AUDIENCE", AUD.to_string()),
            ("OAUTH_JWKS_URL", issuer.jwks_url()),
        ];
        pairs.extend(extra);
        cortex_backend::Auth::new(config_from_env(vars(pairs)).unwrap()).unwrap()
    };
    let default = from_env(vec![]);
    let p = default
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert!(matches!(p, cortex_backend::auth::Principal::User(c) if c.sub == "ana"));
    // A present nbf in the future is still refused.
    let early = issuer.broken(BrokenToken::NotYetValid, AUD, "ana", &[]);
    let e = default
        .authenticate(Some(&format!("Bearer {early}")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nbf"), "{e}");
    // OAUTH_REQUIRE_NBF=true makes it mandatory.
    let strict = from_env(vec![("OAUTH_REQUIRE_NBF", "true".into())]);
    let e = strict
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nbf"), "{e}");
}

#[tokio::test]
async fn typ_at_jwt_or_jwt_accepted_others_refused() {
    let issuer = TestIssuer::start().await.unwrap();
    let lenient = JwtValidator::new(issuer.jwt_config(AUD)).unwrap();
    let mut strict_config = issuer.jwt_config(AUD);
    strict_config.require_at_jwt = true;
    let strict = JwtValidator::new(strict_config).unwrap();
    let mint = |typ: Option<&str>| issuer.token(AUD).sub("ana").typ(typ).mint();
    for typ in [
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("AT+JWT"),
        Some("JWT"),
        None,
    ] {
        assert_eq!(
            lenient.verify(&mint(typ)).await.unwrap().sub,
            "ana",
            "{typ:?}"
        );
    }
    for typ in [Some("at+jwt"), Some("Application/AT+JWT")] {
        assert!(strict.verify(&mint(typ)).await.is_ok(), "{typ:?}");
    }
    for typ in [Some("dpop+jwt"), Some("logout+jwt")] {
        let e = lenient.verify(&mint(typ)).await.unwrap_err().to_string();
        assert!(e.contains("`typ`") && e.contains("at+jwt"), "{e}");
    }
    for typ in [Some("JWT"), None] {
        let e = strict.verify(&mint(typ)).await.unwrap_err().to_string();
        assert!(e.contains("OAUTH_REQUIRE_AT_JWT"), "{e}");
    }
}

#[tokio::test]
async fn keys_for_encryption_or_another_alg_are_not_used() {
    let issuer = TestIssuer::start().await.unwrap();
    let token = issuer.token(AUD).sub("ana").mint();
    let as_is = with_keys(&issuer, |_| {}).await;
    assert_eq!(as_is.verify(&token).await.unwrap().sub, "ana");
    let enc = with_keys(&issuer, |k| k["use"] = json!("enc")).await;
    let e = enc.verify(&token).await.unwrap_err().to_string();
    assert!(e.contains("unknown signing key"), "{e}");
    let ops = with_keys(&issuer, |k| k["key_ops"] = json!(["encrypt"])).await;
    assert!(ops.verify(&token).await.is_err());
    let oaep = with_keys(&issuer, |k| {
        k.as_object_mut().unwrap().remove("use");
        k["alg"] = json!("RSA-OAEP");
    })
    .await;
    assert!(oaep.verify(&token).await.is_err());
    // An RSA key that declares PS256 never verifies an RS256 token, though
    // the key's family would allow it.
    let ps = with_keys(&issuer, |k| k["alg"] = json!("PS256")).await;
    let e = ps.verify(&token).await.unwrap_err().to_string();
    assert!(e.contains("differs from the `alg`"), "{e}");
}

#[test]
fn settings_parser_is_shared_and_strict() {
    let e = config_from_env(vars(vec![
        ("OAUTH_ISSUER", "https://id.example.com".into()),
        ("OAUTH_AUDIENCE", "x".into()),
        ("OAUTH_REQUIRE_AT_JWT", "perhaps".into()),
    ]))
    .unwrap_err();
    assert_eq!(e.variable, "OAUTH_REQUIRE_AT_JWT");
    let c = config_from_env(vars(vec![
        ("OAUTH_ISSUER", "https://id.example.com".into()),
        ("OAUTH_AUDIENCE", "x".into()),
        ("OAUTH_REQUIRE_AT_JWT", "true".into()),
        ("OAUTH_REQUIRE_NBF", "yes".into()),
        ("OAUTH_ALGORITHMS", "PS256, EdDSA".into()),
    ]))
    .unwrap();
    let jwt = c.jwt.unwrap();
    assert!(jwt.require_at_jwt && jwt.require_nbf);
    assert_eq!(
        jwt.algorithms,
        [
            cortex_backend::auth::Algorithm::PS256,
            cortex_backend::auth::Algorithm::EdDSA
        ]
    );
}

#[tokio::test]
async fn user_discovery_needs_a_scope_of_the_backend() {
    use crate::support::{backend, call};
    let issuer = TestIssuer::start().await.unwrap();
    let b = backend(&issuer);
    let outsider = crate::support::user(&issuer, "eve", &["mcp:crm:read"]);
    let reader = crate::support::user(&issuer, "ana", &["mcp:notes:read"]);
    let writer = crate::support::user(&issuer, "bo", &["mcp:notes:write"]);
    for method in ["list_prompts", "list_resource_templates", "get_snapshot"] {
        let r = b.handle(call(method, json!({}), &outsider)).await;
        assert_eq!(r.status, 403, "{method}: {}", r.json_body());
        assert_eq!(r.json_body()["required"], "mcp:notes:read", "{method}");
        for t in [&reader, &writer, &crate::support::TECH.to_string()] {
            let r = b.handle(call(method, json!({}), t)).await;
            assert_eq!(r.status, 200, "{method}: {}", r.json_body());
        }
    }
}

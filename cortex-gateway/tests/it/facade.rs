//! The OAuth facade against a scripted identity provider on loopback: an
//! agent registers, signs a user in through the gateway, redeems the
//! gateway's code and calls the MCP endpoint with the gateway's token;
//! each way of getting that wrong is refused.

use std::collections::HashMap;

use cortex_gateway::config::FacadeProfile;
use serde_json::{Value, json};

pub(crate) use crate::support::idp::{Shared, start_idp, world_with};
use crate::{
    client::Client,
    support::{
        World,
        idp::{AGENT_REDIRECT, Broken, CLIENT_ID, world, world_at},
    },
};

const VERIFIER: &str = "agent-verifier-0123456789-0123456789-0123456789";

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub(crate) fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn challenge(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The agent's side of the flow.
pub(crate) struct Agent {
    pub(crate) base: String,
    pub(crate) client_id: String,
    pub(crate) http: reqwest::Client,
}

impl Agent {
    async fn register(world: &World) -> Self {
        Self::register_at(&world.base()).await
    }

    /// Registers at the facade whose issuer is `base`.
    pub(crate) async fn register_at(base: &str) -> Self {
        let http = http();
        let r = http
            .post(format!("{base}/register"))
            .json(&json!({"redirect_uris": [AGENT_REDIRECT], "client_name": "it agent"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let doc: Value = r.json().await.unwrap();
        Self {
            base: base.to_string(),
            client_id: doc["client_id"].as_str().unwrap().to_string(),
            http,
        }
    }

    /// `GET /authorize` with `extra` parameters; the response.
    pub(crate) async fn authorize(&self, scope: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut params = vec![
            ("response_type", "code".to_string()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", AGENT_REDIRECT.to_string()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".to_string()),
            ("state", "agent-state".to_string()),
            ("scope", scope.to_string()),
        ];
        for (k, v) in extra {
            params.retain(|(p, _)| p != k);
            params.push((k, v.to_string()));
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.http
            .get(format!("{}/authorize?{}", self.base, encode(&pairs)))
            .send()
            .await
            .unwrap()
    }

    /// Follows the sign-in through the provider and back: the query the
    /// agent's redirect URI receives.
    pub(crate) async fn sign_in(
        &self,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> HashMap<String, String> {
        let r = self.authorize(scope, extra).await;
        assert_eq!(r.status(), 302, "{:?}", r.text().await);
        let to_idp = r.headers()["location"].to_str().unwrap().to_string();
        let r = self.http.get(&to_idp).send().await.unwrap();
        let to_gateway = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to_gateway.starts_with(&format!("{}/oauth/callback", self.base)));
        let r = self.http.get(&to_gateway).send().await.unwrap();
        assert_eq!(r.status(), 302, "{:?}", r.text().await);
        let to_agent = r.headers()["location"].to_str().unwrap().to_string();
        assert!(to_agent.starts_with(AGENT_REDIRECT), "{to_agent}");
        query_of(&to_agent)
    }

    pub(crate) async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub(crate) async fn redeem(&self, code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &self.client_id),
            ("redirect_uri", AGENT_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    pub(crate) async fn refresh(&self, refresh: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &self.client_id),
        ])
        .await
    }
}

/// The status of `tools/list` with `token`.
async fn mcp_status(world: &World, token: &str) -> u16 {
    let mut client = Client::modern(&world.url, token);
    client.send("tools/list", json!({})).await.status.as_u16()
}

fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn an_entra_shaped_sign_in_gives_the_agent_a_gateway_token() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(false).await;
    // Even with an audience configured, Entra is sent neither `resource`
    // nor `audience`.
    let world = world(&idp, task, FacadeProfile::Entra, &dir, |f| {
        f.audience = Some("api://cortex".into());
    })
    .await;
    let http = http();
    // The metadata names the gateway, and the protected resource points at it.
    let meta: Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            world.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], world.base());
    assert_eq!(meta["token_endpoint"], format!("{}/token", world.base()));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    let prm: Value = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            world.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([world.base()]));

    let agent = Agent::register(&world).await;
    let back = agent
        .sign_in("crm.read", &[("resource", world.url.as_str())])
        .await;
    assert_eq!(back["state"], "agent-state");
    assert_eq!(back["iss"], world.base());
    // Entra never sees `resource` (AADSTS9010010), asks with api:// scopes.
    {
        let script = idp.script.lock().unwrap();
        let asked = &script.authorize_seen[0];
        assert!(!asked.contains_key("resource"), "{asked:?}");
        assert!(!asked.contains_key("audience"), "{asked:?}");
        assert!(
            asked["scope"].contains(&format!("api://{CLIENT_ID}/crm.read")),
            "{asked:?}"
        );
        assert_eq!(asked["code_challenge_method"], "S256");
        assert!(!script.token_seen[0].contains_key("resource"));
    }
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["iss"], world.base());
    assert_eq!(c["aud"], world.url);
    assert_eq!(c["sub"], "oid-ana", "Entra's oid names the user");
    assert_eq!(c["email"], "ana@corp.example");
    assert_eq!(c["scope"], "crm.read");
    assert_eq!(c["client_id"], agent.client_id);
    assert_eq!(mcp_status(&world, access).await, 200);

    // A refresh goes through the provider and rotates the refresh token.
    let refresh = answer["refresh_token"].as_str().unwrap();
    let (status, renewed) = agent.refresh(refresh).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        idp.script.lock().unwrap().token_seen.last().unwrap()["grant_type"],
        "refresh_token"
    );
    let renewed_access = renewed["access_token"].as_str().unwrap().to_string();
    assert_eq!(mcp_status(&world, &renewed_access).await, 200);
    // The old refresh token used again: someone holds a copy; the grant goes.
    let (status, e) = agent.refresh(refresh).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(mcp_status(&world, &renewed_access).await, 401);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_its_grant() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |_| {}).await;
    let agent = Agent::register(&world).await;
    let back = agent.sign_in("crm.read", &[]).await;
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&world, access).await, 200);
    let (status, e) = agent.redeem(&back["code"]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        mcp_status(&world, access).await,
        401,
        "the grant is revoked"
    );
    let (status, _) = agent
        .refresh(answer["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 400);
    // Every facade request has its audit line; no line holds the code.
    let mut world = world;
    world.shutdown().await;
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (path, status) in [
        ("/register", 201),
        ("/authorize", 302),
        ("/oauth/callback", 302),
        ("/token", 200),
        ("/token", 400),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l["path"] == path && l["status"] == status),
            "no audit line for {path} {status}: {audit}"
        );
    }
    assert!(!audit.contains(&back["code"]), "{audit}");
}

#[tokio::test]
async fn a_mismatched_pkce_verifier_or_redirect_uri_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |_| {}).await;
    let agent = Agent::register(&world).await;

    let back = agent.sign_in("crm.read", &[]).await;
    let other_verifier = "another-verifier-0123456789-0123456789-0123456789";
    let (status, e) = agent
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("client_id", &agent.client_id),
            ("redirect_uri", AGENT_REDIRECT),
            ("code_verifier", other_verifier),
        ])
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));

    let back = agent.sign_in("crm.read", &[]).await;
    let (status, e) = agent
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("client_id", &agent.client_id),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));

    // A redirect URI the agent did not register never gets a redirect.
    let r = agent
        .authorize("crm.read", &[("redirect_uri", "http://127.0.0.1:9/evil")])
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // No PKCE: back to the agent with an error, never to the provider.
    let r = agent
        .authorize("crm.read", &[("code_challenge_method", "plain")])
        .await;
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(idp.script.lock().unwrap().authorize_seen.len(), 2);
}

#[tokio::test]
async fn an_identity_provider_error_reaches_the_agent_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    idp.script.lock().unwrap().authorize_error = Some("access_denied".into());
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |_| {}).await;
    let agent = Agent::register(&world).await;
    let back = agent.sign_in("crm.read", &[]).await;
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], "agent-state");
    assert!(!back.contains_key("code"));
    assert!(idp.script.lock().unwrap().token_seen.is_empty());

    // The provider refuses its own code at the token endpoint.
    {
        let mut script = idp.script.lock().unwrap();
        script.authorize_error = None;
        script.refuse_codes = true;
    }
    let back = agent.sign_in("crm.read", &[]).await;
    assert_eq!(back["error"], "access_denied");
    assert!(!back.contains_key("code"));
}

#[tokio::test]
async fn an_id_token_with_another_nonce_audience_or_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(false).await;
    let world = world(&idp, task, FacadeProfile::Entra, &dir, |_| {}).await;
    let agent = Agent::register(&world).await;
    for broken in [Broken::Nonce, Broken::Audience, Broken::Signature] {
        idp.script.lock().unwrap().broken_id_token = Some(broken);
        let back = agent.sign_in("crm.read", &[]).await;
        assert_eq!(back["error"], "server_error", "{broken:?}: {back:?}");
        assert!(!back.contains_key("code"), "{broken:?}");
    }
    idp.script.lock().unwrap().broken_id_token = None;
    let back = agent.sign_in("crm.read", &[]).await;
    assert!(back.contains_key("code"), "{back:?}");
}

#[tokio::test]
async fn a_refresh_the_provider_refuses_revokes_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |_| {}).await;
    let agent = Agent::register(&world).await;
    let back = agent.sign_in("crm.read", &[]).await;
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&world, access).await, 200);
    idp.script.lock().unwrap().refuse_refresh = true;
    let (status, e) = agent
        .refresh(answer["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        mcp_status(&world, access).await,
        401,
        "the grant is revoked"
    );
}

#[tokio::test]
async fn the_agent_never_gets_more_than_the_provider_granted() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    idp.script.lock().unwrap().groups = vec!["sales".into()];
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |f| {
        f.group_scopes
            .insert("admins".into(), vec!["crm.write".into()]);
        f.group_scopes
            .insert("sales".into(), vec!["docs.read".into()]);
    })
    .await;
    let agent = Agent::register(&world).await;
    // Asked for write; the provider granted read (scp) and docs.read (a
    // group); admins' crm.write is not Ana's.
    let back = agent
        .sign_in("crm.read crm.write docs.read hr.read", &[])
        .await;
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["scope"], "crm.read docs.read");
    assert_eq!(
        claims(answer["access_token"].as_str().unwrap())["scope"],
        "crm.read docs.read"
    );
    // Nothing asked for that the provider granted: an error, no code.
    let back = agent.sign_in("hr.read", &[]).await;
    assert_eq!(back["error"], "invalid_scope");
    assert!(!back.contains_key("code"));
}

#[tokio::test]
async fn revoking_cuts_the_agents_access_and_a_cimd_client_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world(&idp, task, FacadeProfile::Keycloak, &dir, |_| {}).await;
    let agent = Agent {
        base: world.base(),
        client_id: format!("{}/agent/client.json", idp.url),
        http: http(),
    };
    let back = agent.sign_in("crm.read", &[]).await;
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap();
    let refresh = answer["refresh_token"].as_str().unwrap();
    assert_eq!(mcp_status(&world, access).await, 200);
    let r = agent
        .http
        .post(format!("{}/revoke", world.base()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[
            ("token", access),
            ("client_id", &agent.client_id),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mcp_status(&world, access).await, 401);
    let (status, e) = agent.refresh(refresh).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn registrations_beyond_the_bound_push_out_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world(&idp, task, FacadeProfile::Oidc, &dir, |f| f.max_clients = 5).await;
    let first = Agent::register(&world).await;
    for _ in 0..20 {
        Agent::register(&world).await;
    }
    let last = Agent::register(&world).await;
    let r = first.authorize("crm.read", &[]).await;
    assert_eq!(r.status(), 400, "the oldest registration is gone");
    let r = last.authorize("crm.read", &[]).await;
    assert_eq!(r.status(), 302);
    let big = json!({"redirect_uris": [AGENT_REDIRECT], "client_name": "x".repeat(20_000)});
    let r = http()
        .post(format!("{}/register", world.base()))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn an_issuer_with_a_path_serves_the_facade_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = start_idp(true).await;
    let world = world_at(
        &idp,
        task,
        FacadeProfile::Oidc,
        &dir,
        Some("/cortex"),
        |_| {},
    )
    .await;
    let issuer = format!("{}/cortex", world.base());
    let meta: Value = http()
        .get(format!(
            "{}/.well-known/oauth-authorization-server/cortex",
            world.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{issuer}/authorize")
    );
    let agent = Agent::register_at(&issuer).await;
    let back = agent.sign_in("crm.read", &[]).await;
    assert_eq!(back["iss"], issuer);
    assert_eq!(
        idp.script.lock().unwrap().authorize_seen[0]["redirect_uri"],
        format!("{issuer}/oauth/callback")
    );
    let (status, answer) = agent.redeem(&back["code"]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        claims(answer["access_token"].as_str().unwrap())["iss"],
        issuer
    );
    assert_eq!(
        mcp_status(&world, answer["access_token"].as_str().unwrap()).await,
        200
    );
}

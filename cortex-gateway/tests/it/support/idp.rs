//! A scripted identity provider on loopback (OIDC metadata, an
//! authorization endpoint that answers at once, a token endpoint with
//! refresh, and a client metadata document), and the gateway in facade
//! mode in front of it, with a vault.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cortex_backend::testing::TestIssuer;
use cortex_gateway::{
    config::{FacadeConfig, FacadeProfile, GatewayConfig},
    vault::{VaultConfig, VaultKeys, VaultStorage},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{Options, World};

pub(crate) const CLIENT_ID: &str = "gateway-at-idp";
pub(crate) const CLIENT_SECRET: &str = "the-gateway-client-secret";
pub(crate) const AGENT_REDIRECT: &str = "http://127.0.0.1:9/agent/callback";

/// How the provider's ID token can be wrong.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Broken {
    /// Another sign-in's nonce.
    Nonce,
    /// Issued to another client.
    Audience,
    /// Its claims changed after signing.
    Signature,
}

/// What the scripted provider does and what it saw.
#[derive(Default)]
pub(crate) struct Script {
    /// Scopes in the access token's `scp` (space-separated, bare names as
    /// Entra writes them).
    pub(crate) scp: String,
    /// Groups in the ID token.
    pub(crate) groups: Vec<String>,
    /// Answer the authorization request with this error.
    pub(crate) authorize_error: Option<String>,
    /// Refuse every code at the token endpoint.
    pub(crate) refuse_codes: bool,
    /// Answer codes with an ID token broken this way.
    pub(crate) broken_id_token: Option<Broken>,
    /// Refuse refresh tokens.
    pub(crate) refuse_refresh: bool,
    /// Every authorization request's query.
    pub(crate) authorize_seen: Vec<HashMap<String, String>>,
    /// Every token request's form.
    pub(crate) token_seen: Vec<HashMap<String, String>>,
    /// code → nonce of its sign-in.
    pub(crate) codes: HashMap<String, String>,
}

pub(crate) struct Idp {
    pub(crate) url: String,
    pub(crate) keys: TestIssuer,
    pub(crate) script: Mutex<Script>,
    /// Whether the metadata advertises PKCE (Entra's does not).
    pub(crate) advertise_pkce: bool,
}

pub(crate) type Shared = Arc<Idp>;

async fn metadata(State(idp): State<Shared>) -> Json<Value> {
    let mut doc = json!({
        "issuer": idp.url,
        "authorization_endpoint": format!("{}/authorize", idp.url),
        "token_endpoint": format!("{}/token", idp.url),
        "revocation_endpoint": format!("{}/revoke", idp.url),
        "jwks_uri": idp.keys.jwks_url(),
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "response_types_supported": ["code"],
    });
    if idp.advertise_pkce {
        doc["code_challenge_methods_supported"] = json!(["S256"]);
    }
    Json(doc)
}

async fn authorize(
    State(idp): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut script = idp.script.lock().unwrap();
    script.authorize_seen.push(query.clone());
    let back = &query["redirect_uri"];
    let state = &query["state"];
    let location = match &script.authorize_error {
        Some(e) => format!("{back}?error={e}&state={state}"),
        None => {
            let code = format!("idp-code-{}", script.codes.len());
            script.codes.insert(
                code.clone(),
                query.get("nonce").cloned().unwrap_or_default(),
            );
            format!("{back}?code={code}&state={state}")
        }
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn tokens(
    idp: &Idp,
    nonce: Option<&str>,
    scp: &str,
    groups: &[String],
    broken: Option<Broken>,
) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut id = json!({
        "iss": idp.url, "aud": CLIENT_ID, "sub": "pairwise-ana", "oid": "oid-ana",
        "preferred_username": "ana@corp.example", "name": "Ana", "groups": groups,
        "iat": now, "exp": now + 3600,
    });
    if let Some(n) = nonce {
        id["nonce"] = json!(n);
    }
    match broken {
        Some(Broken::Nonce) => id["nonce"] = json!("another-sign-in"),
        Some(Broken::Audience) => id["aud"] = json!("another-client"),
        _ => {}
    }
    let mut id_token = idp.keys.mint(&id);
    if let Some(Broken::Signature) = broken {
        use base64::Engine as _;
        id["oid"] = json!("oid-mallory");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string());
        let parts: Vec<&str> = id_token.split('.').collect();
        id_token = format!("{}.{payload}.{}", parts[0], parts[2]);
    }
    let access = json!({
        "iss": idp.url, "aud": CLIENT_ID, "sub": "pairwise-ana", "oid": "oid-ana",
        "scp": scp, "scope": scp, "iat": now, "exp": now + 3600,
    });
    json!({
        "access_token": idp.keys.mint(&access),
        "id_token": id_token,
        "refresh_token": format!("idp-refresh-{now}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    })
}

async fn token(State(idp): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut script = idp.script.lock().unwrap();
    script.token_seen.push(form.clone());
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let refuse = |e: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    if basic != expected {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") if !script.refuse_codes => {
            let Some(nonce) = script.codes.remove(&form["code"]) else {
                return refuse("invalid_grant");
            };
            Json(tokens(
                &idp,
                Some(&nonce),
                &script.scp,
                &script.groups,
                script.broken_id_token,
            ))
            .into_response()
        }
        Some("refresh_token") if !script.refuse_refresh => {
            Json(tokens(&idp, None, &script.scp, &script.groups, None)).into_response()
        }
        _ => refuse("invalid_grant"),
    }
}

/// A client metadata document for the CIMD agent.
async fn client_document(State(idp): State<Shared>) -> Json<Value> {
    Json(json!({
        "client_id": format!("{}/agent/client.json", idp.url),
        "client_name": "CIMD agent",
        "redirect_uris": [AGENT_REDIRECT],
        "token_endpoint_auth_method": "none",
    }))
}

/// A client metadata document for a native client (the stdio bridge):
/// a loopback redirect URI, any port.
async fn bridge_document(State(idp): State<Shared>) -> Json<Value> {
    Json(json!({
        "client_id": format!("{}/bridge/client.json", idp.url),
        "client_name": "Bridge by document",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
    }))
}

pub(crate) async fn start_idp(advertise_pkce: bool) -> (Shared, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let idp = Arc::new(Idp {
        url,
        keys: TestIssuer::start().await.unwrap(),
        script: Mutex::new(Script {
            scp: "crm.read".into(),
            ..Script::default()
        }),
        advertise_pkce,
    });
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(|| async { StatusCode::OK }))
        .route("/agent/client.json", get(client_document))
        .route("/bridge/client.json", get(bridge_document))
        .with_state(idp.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (idp, task)
}

/// The gateway in facade mode in front of `idp`, with a vault in `dir`.
pub(crate) async fn world(
    idp: &Shared,
    task: JoinHandle<()>,
    profile: FacadeProfile,
    dir: &tempfile::TempDir,
    tune: impl FnOnce(&mut FacadeConfig) + Send + 'static,
) -> World {
    world_at(idp, task, profile, dir, None, tune).await
}

/// [`world`] with the gateway's issuer at `issuer_path` under its origin.
pub(crate) async fn world_at(
    idp: &Shared,
    task: JoinHandle<()>,
    profile: FacadeProfile,
    dir: &tempfile::TempDir,
    issuer_path: Option<&'static str>,
    tune: impl FnOnce(&mut FacadeConfig) + Send + 'static,
) -> World {
    world_with(idp, task, profile, dir, issuer_path, tune, |_| {}).await
}

/// [`world_at`], with `more` configuring the gateway last.
pub(crate) async fn world_with(
    idp: &Shared,
    task: JoinHandle<()>,
    profile: FacadeProfile,
    dir: &tempfile::TempDir,
    issuer_path: Option<&'static str>,
    tune: impl FnOnce(&mut FacadeConfig) + Send + 'static,
    more: impl FnOnce(&mut GatewayConfig) + Send + 'static,
) -> World {
    let mut facade = FacadeConfig::new(profile, &idp.url, CLIENT_ID, CLIENT_SECRET);
    tune(&mut facade);
    let vault = VaultConfig::new(
        VaultKeys::parse_single(
            "CORTEX_VAULT_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .unwrap(),
        VaultStorage::Sqlite {
            path: dir.path().join("vault.db"),
        },
    );
    let audit = dir.path().join("audit.jsonl");
    World::start_with(Options {
        extra_tasks: vec![task],
        configure: Some(Box::new(move |c: &mut GatewayConfig| {
            c.controls.audit_file = Some(audit);
            if let Some(path) = issuer_path {
                c.identity.gateway_issuer = Some(format!("{}{path}", c.canonical_origin()));
            }
            c.issuer = c.gateway_issuer();
            c.facade = Some(facade);
            c.vault = Some(vault);
            more(c);
        })),
        ..Options::default()
    })
    .await
}

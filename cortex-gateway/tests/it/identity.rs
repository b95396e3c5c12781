//! Identity modes: what reaches a backend in each token mode, asserted
//! through an SDK backend that echoes the token and claims it received;
//! the gateway's published keys and their rotation; the identity provider's
//! refusals as tool errors, with no fallback to another mode.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use base64::Engine as _;
use cortex_backend::{
    Auth, Backend, Ctx, ToolError, ToolFn,
    auth::{AuthConfig, JwtConfig, JwtValidator, KeySource},
    testing::TestIssuer,
};
use cortex_gateway::{
    Gateway,
    config::{BackendConfig, GatewayConfig, TokenExchangeConfig, TokenMode},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::{
    client::Client,
    support::{BackendServer, NoArgs, TECH},
};

const READ: &str = "mcp:crm:read";
const CLIENT_ID: &str = "cortex-gateway";
const CLIENT_SECRET: &str = "gateway-secret-0123456789";

async fn echo_claims(ctx: Ctx<()>, _args: NoArgs) -> Result<Value, ToolError> {
    let caller = ctx.caller();
    Ok(json!({"token": caller.token(), "claims": caller.claims}))
}

/// An SDK backend whose one tool answers the token and claims it received.
fn echo(jwt: JwtConfig) -> Backend {
    Backend::builder("echo")
        .auth(
            Auth::new(AuthConfig {
                technical_tokens: vec![TECH.to_string()],
                jwt: Some(jwt),
            })
            .unwrap(),
        )
        .tool(
            ToolFn::new("claims")
                .scope(READ)
                .description("The token and claims this backend received.")
                .handler(echo_claims),
        )
        .build()
        .unwrap()
}

/// A validator of `issuer`'s tokens for `audiences`, keys from `jwks_url`.
fn trusting(issuer: &str, audiences: &[&str], jwks_url: String) -> JwtConfig {
    let mut c = JwtConfig::new(issuer, audiences.iter().map(|a| a.to_string()).collect());
    c.keys = KeySource::JwksUrl(jwks_url);
    c
}

/// A gateway on its own loopback port, before it starts.
struct Site {
    listener: tokio::net::TcpListener,
    /// `http://127.0.0.1:<port>`: the gateway's issuer by default.
    origin: String,
    /// The canonical MCP URL.
    url: String,
}

impl Site {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let url = format!("{origin}/mcp");
        Self {
            listener,
            origin,
            url,
        }
    }

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.origin)
    }

    async fn serve(self, config: GatewayConfig) -> Running {
        let gateway = Gateway::new(config).await.unwrap();
        let task = tokio::spawn({
            let gateway = gateway.clone();
            async move {
                let _ = gateway.serve(self.listener, std::future::pending()).await;
            }
        });
        gateway.wait_ready().await.unwrap();
        Running {
            _gateway: gateway,
            task,
        }
    }
}

struct Running {
    _gateway: Gateway,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A caller token for the gateway with every claim an assertion copies.
fn caller_token(issuer: &TestIssuer, url: &str, sub: &str) -> String {
    issuer
        .token(url)
        .sub(sub)
        .email(&format!("{sub}@example.com"))
        .role("manager")
        .scopes([READ, "mcp:docs:read"])
        .claim("name", json!("Ana Lima"))
        .claim("pool", json!("emea"))
        .claim("client_id", json!("agent-7"))
        .mint()
}

/// What the echo tool of `tool` answered `client`.
async fn echoed(client: &mut Client, tool: &str) -> Value {
    let r = client.call(tool, json!({})).await;
    assert_eq!(r["isError"], false, "{r:#}");
    r["structuredContent"].clone()
}

fn base_config(site: &Site, issuer: &TestIssuer) -> GatewayConfig {
    let mut config = GatewayConfig::new(site.url.clone(), issuer.issuer(), TECH);
    config.oauth.jwks_url = Some(issuer.jwks_url());
    config
}

#[tokio::test]
async fn forward_mode_sends_the_callers_own_token() {
    let issuer = TestIssuer::start().await.unwrap();
    let site = Site::bind().await;
    let backend = BackendServer::start(echo(trusting(
        issuer.issuer(),
        &[&site.url],
        issuer.jwks_url(),
    )))
    .await;
    let mut config = base_config(&site, &issuer);
    config.backends = vec![BackendConfig::new("crm", &backend.url)];
    let (_gw, (url, _)) = site_serve(site, config).await;
    let mut c = Client::modern(&url, &caller_token(&issuer, &url, "ana"));
    let got = echoed(&mut c, "crm_claims").await;
    assert_eq!(got["token"], token_of(&c));
    assert_eq!(got["claims"]["aud"], url.as_str());
}

/// Starts the gateway of `site` with `config`; answers the running gateway
/// and (canonical URL, its origin).
async fn site_serve(site: Site, config: GatewayConfig) -> (Running, (String, String)) {
    let names = (site.url.clone(), site.origin.clone());
    (site.serve(config).await, names)
}

fn token_of(c: &Client) -> String {
    c.token.clone().unwrap()
}

/// An RFC 8693 authorization server on loopback minting, with `issuer`'s
/// key, a token for the requested audience; counts and keeps what it
/// minted.
async fn exchange_server(
    issuer: Arc<TestIssuer>,
    minted: Arc<Mutex<Vec<String>>>,
) -> (String, JoinHandle<()>) {
    let app = Router::new().route(
        "/token",
        post(move |body: Bytes| {
            let issuer = issuer.clone();
            let minted = minted.clone();
            async move {
                let form = form(&body);
                assert_eq!(
                    form["grant_type"],
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                );
                let token = issuer
                    .token(&form["audience"])
                    .sub("ana")
                    .scopes([READ])
                    .mint();
                minted.lock().unwrap().push(token.clone());
                Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 600}))
            }
        }),
    );
    serve_router(app, "/token").await
}

async fn serve_router(app: Router, path: &str) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The audience of the `exchange` world's backend.
const EXCHANGE_AUD: &str = "https://crm.internal.example.com";

/// An `exchange` world before its gateway starts: the echo backend `crm`
/// trusting tokens for [`EXCHANGE_AUD`], and an authorization server that
/// mints them (its tokens go to the returned list).
struct ExchangeWorld {
    issuer: Arc<TestIssuer>,
    site: Site,
    config: GatewayConfig,
    minted: Arc<Mutex<Vec<String>>>,
    _backend: BackendServer,
    _as: JoinHandle<()>,
}

impl ExchangeWorld {
    async fn new() -> Self {
        let issuer = Arc::new(TestIssuer::start().await.unwrap());
        let site = Site::bind().await;
        let backend = BackendServer::start(echo(trusting(
            issuer.issuer(),
            &[EXCHANGE_AUD],
            issuer.jwks_url(),
        )))
        .await;
        let minted = Arc::new(Mutex::new(Vec::new()));
        let (token_endpoint, auth_server) = exchange_server(issuer.clone(), minted.clone()).await;
        let mut config = base_config(&site, &issuer);
        config.token_exchange = Some(TokenExchangeConfig {
            token_endpoint: Some(token_endpoint),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        });
        let mut crm = BackendConfig::new("crm", &backend.url);
        crm.token_mode = TokenMode::Exchange;
        crm.audience = Some(EXCHANGE_AUD.into());
        config.backends = vec![crm];
        Self {
            issuer,
            site,
            config,
            minted,
            _backend: backend,
            _as: auth_server,
        }
    }
}

#[tokio::test]
async fn exchange_mode_sends_the_exchanged_token() {
    let ExchangeWorld {
        issuer,
        site,
        config,
        minted,
        _backend,
        _as,
    } = ExchangeWorld::new().await;
    let (_gw, (url, _)) = site_serve(site, config).await;
    let mut c = Client::modern(&url, &caller_token(&issuer, &url, "ana"));
    let got = echoed(&mut c, "crm_claims").await;
    let minted = minted.lock().unwrap().clone();
    assert_eq!(minted.len(), 1);
    assert_eq!(got["token"], minted[0].as_str());
    assert_ne!(got["token"], token_of(&c).as_str());
    assert_eq!(got["claims"]["aud"], EXCHANGE_AUD);
}

/// Two replicas on one Redis, each with the vault key: a token exchanged on
/// one is reused by the other (the authorization server mints once), and
/// Redis holds neither the caller's token nor the exchanged one.
#[tokio::test]
async fn replicas_on_redis_share_exchanged_tokens_sealed() {
    use cortex_gateway::{
        config::StoreKind,
        testing::RedisServer,
        vault::{VaultConfig, VaultKeys, VaultStorage},
    };
    let redis = RedisServer::start_new();
    let dir = tempfile::tempdir().unwrap();
    let ExchangeWorld {
        issuer,
        site,
        mut config,
        minted,
        _backend,
        _as,
    } = ExchangeWorld::new().await;
    config.controls.store = redis.url().parse::<StoreKind>().unwrap();
    config.vault = Some(VaultConfig::new(
        VaultKeys::parse_single(
            "CORTEX_VAULT_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .unwrap(),
        VaultStorage::Sqlite {
            path: dir.path().join("vault.db"),
        },
    ));
    let (b, b_url) = {
        let b = Site::bind().await;
        let url = b.url.clone();
        (b.serve(config.clone()).await, url)
    };
    let (_a, (a_url, _)) = site_serve(site, config).await;
    let token = caller_token(&issuer, &a_url, "ana");
    let on_a = echoed(&mut Client::modern(&a_url, &token), "crm_claims").await;
    let on_b = echoed(&mut Client::modern(&b_url, &token), "crm_claims").await;
    let minted = minted.lock().unwrap().clone();
    assert_eq!(minted.len(), 1, "one exchange for both replicas");
    assert_eq!(on_a["token"], minted[0].as_str());
    assert_eq!(on_b["token"], minted[0].as_str());
    let dump = redis.dump();
    assert!(!dump.contains(&minted[0]), "the exchanged token is sealed");
    assert!(!dump.contains(&token), "the caller's token is never stored");
    drop(b);
}

/// The claims an assertion carries, exactly.
const ASSERTION_CLAIMS: [&str; 13] = [
    "act",
    "aud",
    "client_id",
    "email",
    "exp",
    "iat",
    "iss",
    "jti",
    "name",
    "pool",
    "role",
    "scope",
    "sub",
];

/// An `assert` world: the echo backend trusting only the gateway's
/// assertions for `crm` (and `erp`, the same server under another id and
/// audience).
struct AssertWorld {
    issuer: TestIssuer,
    backend: BackendServer,
    url: String,
    origin: String,
    _gw: Running,
}

const CRM_AUD: &str = "https://crm.internal.example.com";
const ERP_AUD: &str = "https://erp.internal.example.com";

impl AssertWorld {
    async fn start(ttl: u64, key_file: Option<&Path>) -> Self {
        let issuer = TestIssuer::start().await.unwrap();
        let site = Site::bind().await;
        let mut jwt = trusting(&site.origin, &[CRM_AUD, ERP_AUD], site.jwks_url());
        jwt.require_at_jwt = true;
        // The test rotates keys faster than a backend's usual cooldown.
        jwt.refresh_cooldown = Duration::ZERO;
        let backend = BackendServer::start(echo(jwt)).await;
        let mut config = base_config(&site, &issuer);
        config.identity.assert_ttl_s = ttl;
        config.identity.signing_key_file = key_file.map(Path::to_path_buf);
        let mut crm = BackendConfig::new("crm", &backend.url);
        crm.token_mode = TokenMode::Assert;
        crm.audience = Some(CRM_AUD.into());
        let mut erp = BackendConfig::new("erp", &backend.url);
        erp.token_mode = TokenMode::Assert;
        erp.audience = Some(ERP_AUD.into());
        config.backends = vec![crm, erp];
        let (gw, (url, origin)) = site_serve(site, config).await;
        Self {
            issuer,
            backend,
            url,
            origin,
            _gw: gw,
        }
    }

    fn client(&self, sub: &str) -> Client {
        Client::modern(&self.url, &caller_token(&self.issuer, &self.url, sub))
    }

    async fn jwks(&self) -> Value {
        let r = reqwest::get(format!("{}/.well-known/jwks.json", self.origin))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
        r.json().await.unwrap()
    }

    /// The kids published once `ready` holds for them (the key file is
    /// looked at once a second at most).
    async fn published_when(&self, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..500 {
            let published = kids(&self.jwks().await);
            if ready(&published) {
                return published;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the key file was not read again");
    }

    /// Verifies `token` against the JWKS the gateway serves now.
    async fn verify(&self, token: &str, aud: &str) -> Result<Value, String> {
        let mut config = JwtConfig::new(self.origin.clone(), vec![aud.to_string()]);
        config.keys = KeySource::Static(serde_json::from_value(self.jwks().await).unwrap());
        config.require_at_jwt = true;
        JwtValidator::new(config)
            .unwrap()
            .validate(token)
            .await
            .map(|c| c.claims.clone())
            .map_err(|e| e.to_string())
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn assert_mode_sends_exactly_the_gateway_signed_claims() {
    let w = AssertWorld::start(90, None).await;
    let mut c = w.client("ana");
    let got = echoed(&mut c, "crm_claims").await;
    let assertion = got["token"].as_str().unwrap().to_string();
    let claims = &got["claims"];
    let names: BTreeSet<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ASSERTION_CLAIMS.into_iter().collect(), "{claims:#}");
    assert_eq!(claims["iss"], w.origin.as_str());
    assert_eq!(claims["aud"], CRM_AUD);
    assert_eq!(claims["sub"], "ana");
    assert_eq!(claims["email"], "ana@example.com");
    assert_eq!(claims["name"], "Ana Lima");
    assert_eq!(claims["role"], "manager");
    assert_eq!(claims["pool"], "emea");
    assert_eq!(claims["scope"], format!("{READ} mcp:docs:read"));
    assert_eq!(claims["client_id"], "agent-7");
    assert_eq!(claims["act"], json!({"sub": w.origin}));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        90
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 16);

    // Signed with a key the gateway publishes, header as agreed.
    let header = jsonwebtoken::decode_header(&assertion).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwks = w.jwks().await;
    assert_eq!(kids(&jwks), vec![header.kid.clone().unwrap()]);
    assert_eq!(&w.verify(&assertion, CRM_AUD).await.unwrap(), claims);
    assert!(w.verify(&assertion, ERP_AUD).await.is_err(), "aud is crm's");

    // The caller's own token reaches the backend nowhere.
    let own = token_of(&c);
    assert_ne!(assertion, own);
    let headers = w.backend.last_headers();
    for (name, value) in &headers {
        let value = value.to_str().unwrap_or_default();
        assert!(!value.contains(&own), "{name} carries the caller's token");
    }
    assert_eq!(headers["authorization"], format!("Bearer {assertion}"));

    // A backend replaying it at the gateway is refused.
    let replay = Client::modern(&w.url, &assertion)
        .post_raw(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
            &[],
        )
        .await;
    assert_eq!(replay.status, 401, "{:?}", replay.body);
}

#[tokio::test]
async fn an_assertion_is_reused_within_its_lifetime_and_never_shared() {
    let w = AssertWorld::start(120, None).await;
    let mut ana = w.client("ana");
    let first = echoed(&mut ana, "crm_claims").await;
    let again = echoed(&mut ana, "crm_claims").await;
    assert_eq!(first["token"], again["token"], "a cache hit");
    // Another backend: its own assertion.
    let erp = echoed(&mut ana, "erp_claims").await;
    assert_ne!(erp["token"], first["token"]);
    assert_eq!(erp["claims"]["aud"], ERP_AUD);
    assert_ne!(erp["claims"]["jti"], first["claims"]["jti"]);
    // Another caller: their own assertion.
    let mut bob = w.client("bob");
    let theirs = echoed(&mut bob, "crm_claims").await;
    assert_eq!(theirs["claims"]["sub"], "bob");
    assert_ne!(theirs["claims"]["jti"], first["claims"]["jti"]);
    // Another token of the same user: a new assertion too.
    let mut ana2 = Client::modern(
        &w.url,
        &w.issuer
            .token(&w.url)
            .sub("ana")
            .scopes([READ])
            .claim("jti", json!("second-token"))
            .mint(),
    );
    let second = echoed(&mut ana2, "crm_claims").await;
    assert_ne!(second["claims"]["jti"], first["claims"]["jti"]);
}

/// A PEM `PRIVATE KEY` block of a fresh P-256 key.
pub(crate) fn p256_pem() -> String {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
    };
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    )
}

#[tokio::test]
async fn rotation_keeps_the_old_kid_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.pem");
    std::fs::write(&path, p256_pem()).unwrap();
    let w = AssertWorld::start(120, Some(&path)).await;
    let old_kid = kids(&w.jwks().await)[0].clone();
    let before = echoed(&mut w.client("ana"), "crm_claims").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&before).unwrap().kid.as_deref(),
        Some(old_kid.as_str())
    );

    // The documented procedure, read again without a restart: the new key
    // second (published only), then first with the old one gone.
    let old = std::fs::read_to_string(&path).unwrap();
    let new = p256_pem();
    std::fs::write(&path, format!("{old}{new}")).unwrap();
    let published = w.published_when(|kids| kids.len() == 2).await;
    assert_eq!(published[0], old_kid, "the old key still signs");
    let new_kid = published[1].clone();
    std::fs::write(&path, &new).unwrap();
    let published = w.published_when(|kids| kids[0] != old_kid).await;
    assert_eq!(
        published,
        vec![new_kid, old_kid.clone()],
        "the old kid stays published"
    );
    // What the old key signed still verifies; new assertions use the new key.
    w.verify(&before, CRM_AUD).await.unwrap();
    let after = echoed(&mut w.client("bob"), "crm_claims").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().kid,
        Some(published[0].clone())
    );
}

/// What the scripted Entra-like authorization server saw and decides.
#[derive(Default)]
struct Entra {
    /// The form of every token request.
    forms: Mutex<Vec<BTreeMap<String, String>>>,
    /// The audience of the tokens it accepts as assertions (the gateway).
    gateway: Mutex<String>,
    /// The scope it grants (others are refused: no consent).
    granted_scope: Mutex<String>,
    /// Answer 503 to everything.
    down: std::sync::atomic::AtomicBool,
}

/// An authorization server answering like Entra ID: OpenID metadata only
/// (no RFC 8414 document) under an issuer with a path; the token endpoint
/// takes only `jwt-bearer` with `requested_token_use=on_behalf_of` and
/// the client credentials in the body, refuses the RFC 8707 `resource`
/// parameter (AADSTS9010010), an assertion that is not a valid token for
/// the gateway, and any scope but the granted one; it mints (with `idp`'s
/// key, as the issuer) a token for the scope's resource.
async fn entra(idp: Arc<TestIssuer>, state: Arc<Entra>) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{base}/tenant-1/v2.0");
    let metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/tenant-1/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/tenant-1/oauth2/v2.0/authorize"),
        "jwks_uri": idp.jwks_url(),
    });
    let own_issuer = issuer.clone();
    let app = Router::new()
        .route(
            "/tenant-1/v2.0/.well-known/openid-configuration",
            get(move || async move { Json(metadata) }),
        )
        .route(
            "/tenant-1/oauth2/v2.0/token",
            post(move |body: Bytes| {
                let (idp, state, issuer) = (idp.clone(), state.clone(), own_issuer.clone());
                async move { entra_token(&idp, &state, &issuer, form(&body)).await }
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (issuer, task)
}

async fn entra_token(
    idp: &TestIssuer,
    state: &Entra,
    issuer: &str,
    form: BTreeMap<String, String>,
) -> axum::response::Response {
    state.forms.lock().unwrap().push(form.clone());
    let refuse = |code: &str, text: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": code, "error_description": text})),
        )
            .into_response()
    };
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let field = |k: &str| form.get(k).map(String::as_str);
    if form.contains_key("resource") {
        return refuse(
            "invalid_target",
            "AADSTS9010010: The resource parameter provided in the request doesn't match \
             with the requested scopes.",
        );
    }
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        || field("requested_token_use") != Some("on_behalf_of")
    {
        return refuse("unsupported_grant_type", "AADSTS70003: grant not supported");
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return refuse("invalid_client", "AADSTS7000215: Invalid client secret");
    }
    let gateway = state.gateway.lock().unwrap().clone();
    let validator = JwtValidator::new(trusting(issuer, &[&gateway], idp.jwks_url())).unwrap();
    let Ok(caller) = validator
        .validate(field("assertion").unwrap_or_default())
        .await
    else {
        return refuse(
            "invalid_grant",
            "AADSTS50013: Assertion failed signature validation",
        );
    };
    let scope = field("scope").unwrap_or_default().to_string();
    if scope != *state.granted_scope.lock().unwrap() {
        return refuse(
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid",
        );
    }
    let token = idp
        .token(scope.trim_end_matches("/.default"))
        .claim("iss", json!(issuer))
        .sub(&caller.sub)
        .scopes(caller.scopes.iter().map(String::as_str))
        .mint();
    Json(json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": token,
    }))
    .into_response()
}

/// An `obo` world: callers' tokens from the Entra-like issuer; the echo
/// backend trusts that issuer's tokens for `api://crm` only.
struct OboWorld {
    entra: Arc<Entra>,
    backend: BackendServer,
    idp: Arc<TestIssuer>,
    issuer: String,
    url: String,
    _gw: Running,
    _as: JoinHandle<()>,
}

impl OboWorld {
    async fn start(scope: Option<&str>) -> Self {
        let idp = Arc::new(TestIssuer::start().await.unwrap());
        let state = Arc::new(Entra::default());
        *state.granted_scope.lock().unwrap() = "api://crm/.default".into();
        let (issuer, task) = entra(idp.clone(), state.clone()).await;
        let site = Site::bind().await;
        *state.gateway.lock().unwrap() = site.url.clone();
        let backend =
            BackendServer::start(echo(trusting(&issuer, &["api://crm"], idp.jwks_url()))).await;
        let mut config = GatewayConfig::new(site.url.clone(), issuer.clone(), TECH);
        config.oauth.jwks_url = Some(idp.jwks_url());
        config.token_exchange = Some(TokenExchangeConfig {
            token_endpoint: None,
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        });
        let mut crm = BackendConfig::new("crm", &backend.url);
        crm.token_mode = TokenMode::Obo;
        crm.audience = Some("api://crm".into());
        crm.obo_scope = scope.map(String::from);
        config.backends = vec![crm];
        let (gw, (url, _)) = site_serve(site, config).await;
        Self {
            entra: state,
            backend,
            idp,
            issuer,
            url,
            _gw: gw,
            _as: task,
        }
    }

    fn client(&self, sub: &str) -> Client {
        let token = self
            .idp
            .token(&self.url)
            .claim("iss", json!(self.issuer))
            .sub(sub)
            .scopes([READ])
            .mint();
        Client::modern(&self.url, &token)
    }

    fn forms(&self) -> Vec<BTreeMap<String, String>> {
        self.entra.forms.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn obo_mode_uses_the_on_behalf_of_grant_and_caches_its_token() {
    let w = OboWorld::start(None).await;
    let mut c = w.client("ana");
    let got = echoed(&mut c, "crm_claims").await;
    assert_eq!(got["claims"]["aud"], "api://crm");
    assert_eq!(got["claims"]["iss"], w.issuer.as_str());
    assert_ne!(got["token"], token_of(&c).as_str());
    let forms = w.forms();
    assert_eq!(forms.len(), 1, "{forms:?}");
    let sent: BTreeMap<&str, &str> = forms[0]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let own = token_of(&c);
    let expected: BTreeMap<&str, &str> = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", own.as_str()),
        ("requested_token_use", "on_behalf_of"),
        ("scope", "api://crm/.default"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]
    .into_iter()
    .collect();
    assert_eq!(sent, expected);
    // Cached: the second call asks nothing; another caller asks again.
    let again = echoed(&mut c, "crm_claims").await;
    assert_eq!(again["token"], got["token"]);
    assert_eq!(w.forms().len(), 1);
    let theirs = echoed(&mut w.client("bob"), "crm_claims").await;
    assert_eq!(theirs["claims"]["sub"], "bob");
    assert_eq!(w.forms().len(), 2);
}

/// The text of the tool error `client` gets calling `tool`.
async fn tool_error(client: &mut Client, tool: &str) -> String {
    let r = client.call(tool, json!({})).await;
    assert_eq!(r["isError"], true, "{r:#}");
    r["content"][0]["text"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_identity_provider_refusal_is_a_tool_error_and_nothing_falls_back() {
    // A scope the identity provider has not granted.
    let w = OboWorld::start(Some("api://crm/crm.read")).await;
    let mut c = w.client("ana");
    let text = tool_error(&mut c, "crm_claims").await;
    assert_eq!(
        text,
        "the identity provider refused the on-behalf-of exchange for backend crm, so crm_claims \
         was not run: ask the operator to grant the gateway's app permission to api://crm/crm.read."
    );
    for hidden in ["AADSTS", "127.0.0.1", "invalid_scope", &token_of(&c)] {
        assert!(!text.contains(hidden), "{text}");
    }
    assert!(
        w.backend.seen_users().is_empty(),
        "the backend is never called"
    );

    // The identity provider is down: the same, and no fallback either.
    let w = OboWorld::start(None).await;
    w.entra.down.store(true, Ordering::SeqCst);
    let mut c = w.client("ana");
    let text = tool_error(&mut c, "crm_claims").await;
    assert!(
        text.starts_with(
            "the gateway could not obtain a token for backend crm from the identity provider"
        ),
        "{text}"
    );
    assert!(
        w.backend.seen_users().is_empty(),
        "the backend is never called"
    );
}

#[tokio::test]
async fn the_jwks_is_served_and_bad_identity_settings_stop_the_start() {
    let issuer = TestIssuer::start().await.unwrap();
    let site = Site::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.pem");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut config = base_config(&site, &issuer);
    config.backends = vec![BackendConfig::new("crm", "http://127.0.0.1:9")];
    config.identity.signing_key_file = Some(path.clone());
    let e = Gateway::new(config.clone()).await.unwrap_err();
    match e {
        cortex_gateway::GatewayError::Config(e) => {
            assert_eq!(e.variable, "CORTEX_SIGNING_KEY_FILE", "{e}");
            assert!(e.problem.contains("signing.pem"), "{e}");
        }
        other => panic!("{other}"),
    }

    let env = |extra: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        [
            ("CORTEX_BACKENDS", "crm"),
            ("CORTEX_BACKEND_CRM_URL", "https://crm.example.com"),
            ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
            ("OAUTH_ISSUER", "https://sso.example.com"),
            ("CORTEX_TECHNICAL_TOKEN", TECH),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    for (extra, variable) in [
        (
            &[("CORTEX_BACKEND_CRM_TOKEN_MODE", "passthrough")][..],
            "CORTEX_BACKEND_CRM_TOKEN_MODE",
        ),
        (&[("CORTEX_ASSERT_TTL_S", "30")][..], "CORTEX_ASSERT_TTL_S"),
        (&[("CORTEX_ASSERT_TTL_S", "301")][..], "CORTEX_ASSERT_TTL_S"),
        (
            &[("CORTEX_ASSERT_TTL_S", "soon")][..],
            "CORTEX_ASSERT_TTL_S",
        ),
        (
            &[("CORTEX_BACKEND_CRM_TOKEN_MODE", "obo")][..],
            "OAUTH_CLIENT_ID",
        ),
        (
            &[("CORTEX_GATEWAY_ISSUER", "http://gw.example.com")][..],
            "CORTEX_GATEWAY_ISSUER",
        ),
        (
            &[
                ("CORTEX_BACKEND_CRM_TOKEN_MODE", "assert"),
                (
                    "CORTEX_BACKEND_CRM_AUDIENCE",
                    "https://mcp.example.com/mcp/",
                ),
            ][..],
            "CORTEX_BACKEND_CRM_AUDIENCE",
        ),
    ] {
        let e = GatewayConfig::from_env_map(&env(extra)).unwrap_err();
        assert_eq!(e.variable, variable, "{extra:?}: {e}");
    }
    let c = GatewayConfig::from_env_map(&env(&[
        ("CORTEX_BACKEND_CRM_TOKEN_MODE", "Assert"),
        ("CORTEX_ASSERT_TTL_S", "300"),
        ("CORTEX_GATEWAY_ISSUER", "https://gw.example.com"),
    ]))
    .unwrap();
    assert_eq!(c.backends[0].token_mode, TokenMode::Assert);
    assert_eq!(c.identity.assert_ttl_s, 300);
    assert_eq!(c.gateway_issuer(), "https://gw.example.com");
    let again = GatewayConfig::from_toml_str(&c.masked_toml()).unwrap();
    assert_eq!(again.identity, c.identity);
    assert_eq!(again.backends[0].token_mode, TokenMode::Assert);
    let obo = GatewayConfig::from_env_map(&env(&[
        ("CORTEX_BACKEND_CRM_TOKEN_MODE", "obo"),
        ("CORTEX_BACKEND_CRM_OBO_SCOPE", "api://crm/crm.read"),
        ("OAUTH_CLIENT_ID", CLIENT_ID),
        ("OAUTH_CLIENT_SECRET", CLIENT_SECRET),
    ]))
    .unwrap();
    assert_eq!(obo.backends[0].obo_scope(), "api://crm/crm.read");

    // The published keys, at the origin and under the issuer's path.
    let mut config = base_config(&site, &issuer);
    config.backends = vec![BackendConfig::new("crm", "http://127.0.0.1:9")];
    config.identity.gateway_issuer = Some(format!("{}/idp", site.origin));
    let (jwks_url, under_issuer) = (
        site.jwks_url(),
        format!("{}/idp/.well-known/jwks.json", site.origin),
    );
    let (_gw, _) = site_serve(site, config).await;
    let jwks: Value = reqwest::get(jwks_url).await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none());
    let again: Value = reqwest::get(under_issuer)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, jwks);
}

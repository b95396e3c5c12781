//! Meridian's dev authorization server: a small, spec-following OAuth 2.1
//! server for the demo. **Development only**: anyone who reaches its
//! sign-in page can sign in as any of the 140 people, with no password.
//!
//! | endpoint | spec | module |
//! |---|---|---|
//! | `GET /.well-known/oauth-authorization-server`, `GET /jwks.json` | RFC 8414, RFC 7517 | here |
//! | `GET /authorize`, `POST /authorize/person`, `POST /authorize/consent` | OAuth 2.1 code + PKCE (S256), RFC 8707, RFC 8252, RFC 9207 | [`authorize`] |
//! | `POST /token` | code, refresh (rotated), client credentials | [`token`] |
//! | `POST /revoke`, `POST /introspect` | RFC 7009, RFC 7662 | [`token`] |
//! | `GET /userinfo` | OpenID Connect Core 5.3 (the person behind a token) | [`token`] |
//! | `POST /register` | RFC 7591 | [`clients`] |
//! | a `client_id` that is a URL | Client ID Metadata Documents | [`clients`] |
//! | `GET /admin`, `POST /admin/revoke` | revoke every grant of a person | [`admin`] |
//!
//! Access tokens are RS256 JWTs for one resource (the gateway, or the
//! tracker for a [`Realm::Tracker`] instance), with the claims the apps
//! read: `sub`, `email`, `name`, `role`, `team`, `scope` (plus `client_id`
//! and `jti`, RFC 9068). Scopes come from the [`Realm`] and the person's
//! role ([`crate::firm::role_scopes`] in Meridian's own realm), whatever
//! the client asks for; the token response says which were granted. Refresh tokens are opaque and
//! rotate on every use; presenting a rotated one revokes the grant.
//!
//! Every store a request can grow is bounded by count, and every stored
//! string by length, so by bytes too (see [`store`]). Secrets (client
//! secrets, codes, refresh tokens) are kept as SHA-256 digests and compared
//! in constant time.

pub mod admin;
pub mod authorize;
pub mod clients;
mod pages;
pub mod store;
pub mod token;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use aws_lc_rs::{
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
    signature::KeyPair as _,
};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use cortex_backend::testing::{IssuerState, TestIssuer};
use serde_json::{Value, json};

use crate::firm::{self, Employee};

pub use store::Limits;

/// Requests to the authorization server carry small forms and JSON.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The label printed next to everything this server shows.
pub const DEV_ONLY: &str =
    "development only: anyone who can open the sign-in page can sign in as anyone";

/// Whose accounts an instance signs in, and which scopes it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Realm {
    /// Meridian's own sign-in, for the gateway: scopes from the person's
    /// role ([`crate::firm::role_scopes`]).
    #[default]
    Firm,
    /// The accounts of the tracker, a third-party SaaS the employees use:
    /// everyone gets [`TRACKER_SCOPES`].
    Tracker,
}

/// The scopes of the tracker's authorization server.
pub const TRACKER_SCOPES: &[&str] = &["issues:read", "issues:write"];

impl Realm {
    /// The name shown on the sign-in and consent pages.
    pub fn title(self) -> &'static str {
        match self {
            Self::Firm => "Meridian Partners",
            Self::Tracker => "Tracker (Meridian's workspace)",
        }
    }

    /// The scopes a person with `role` is granted.
    pub fn granted(self, role: &str) -> &'static [&'static str] {
        match self {
            Self::Firm => crate::firm::role_scopes(role),
            Self::Tracker => TRACKER_SCOPES,
        }
    }

    /// Every scope this realm knows.
    pub fn scopes(self) -> Vec<String> {
        match self {
            Self::Firm => {
                let mut out = Vec::new();
                let ids = crate::apps::App::ALL.iter().map(|a| a.id());
                for id in ids.chain([crate::TRACKER_ID]) {
                    for action in ["read", "write"] {
                        out.push(format!("mcp:{id}:{action}"));
                    }
                }
                out
            }
            Self::Tracker => TRACKER_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Settings of the authorization server.
#[derive(Clone)]
pub struct Settings {
    /// Whose accounts it signs in and which scopes it grants.
    pub realm: Realm,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of a grant's refresh token (each rotation starts it again).
    pub refresh_ttl: Duration,
    /// Lifetime of an authorization code (RFC 6749 recommends at most 10 minutes).
    pub code_ttl: Duration,
    /// Lifetime of a sign-in in progress (from `/authorize` to the consent).
    pub sign_in_ttl: Duration,
    /// Client ID Metadata Documents: timeout of one fetch.
    pub cimd_timeout: Duration,
    /// Client ID Metadata Documents: largest accepted document.
    pub cimd_max_bytes: usize,
    /// How long a fetched metadata document is reused.
    pub cimd_cache_ttl: Duration,
    /// Extra trusted root certificates (DER) for fetching metadata
    /// documents over https, besides the platform's.
    pub cimd_roots: Vec<Vec<u8>>,
    /// Store sizes.
    pub limits: Limits,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("realm", &self.realm)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("code_ttl", &self.code_ttl)
            .field("cimd_timeout", &self.cimd_timeout)
            .field("cimd_max_bytes", &self.cimd_max_bytes)
            .field("cimd_roots", &self.cimd_roots.len())
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            realm: Realm::Firm,
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(8 * 3600),
            code_ttl: Duration::from_secs(60),
            sign_in_ttl: Duration::from_secs(600),
            cimd_timeout: Duration::from_secs(5),
            cimd_max_bytes: 5 * 1024,
            cimd_cache_ttl: Duration::from_secs(300),
            cimd_roots: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// The confidential client the gateway uses for introspection.
#[derive(Clone)]
pub struct ClientCredentials {
    /// Its `client_id`.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[masked]")
            .finish()
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    pub(crate) issuer: String,
    /// The one protected resource: the gateway's MCP URL (`aud`).
    pub(crate) resource: String,
    pub(crate) minter: TestIssuer,
    pub(crate) jwk: Value,
    pub(crate) decoding: jsonwebtoken::DecodingKey,
    pub(crate) settings: Settings,
    pub(crate) http: reqwest::Client,
    pub(crate) people: Vec<Employee>,
    pub(crate) admin_secret: String,
    store: Mutex<store::Store>,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, store::Store> {
        cortex_backend::sync::lock(&self.store)
    }

    pub(crate) fn person(&self, id: &str) -> Option<&Employee> {
        self.people.iter().find(|e| e.id == id)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// A running authorization server. Dropping it stops its server.
pub struct AuthServer {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.shared.issuer)
            .field("resource", &self.shared.resource)
            .finish_non_exhaustive()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    /// Starts the server on `127.0.0.1:0` for tokens to `resource` (the
    /// gateway's MCP URL, or the tracker's).
    pub async fn start(resource: &str, settings: Settings) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the authorization server to 127.0.0.1")?;
        Self::serve(listener, resource, settings).await
    }

    /// Starts the server on `listener` for tokens to `resource` (when the
    /// resource must know the issuer's URL before the server exists).
    pub async fn serve(
        listener: tokio::net::TcpListener,
        resource: &str,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let issuer = format!("http://{}", listener.local_addr()?);
        // The signing key: Meridian's is the test issuer's (generated once
        // per process); the tracker has a key of its own, so its tokens and
        // Meridian's differ by signature as well as by `iss`.
        let state = match settings.realm {
            Realm::Firm => {
                let donor = TestIssuer::start()
                    .await
                    .context("generating the signing key")?;
                let state = donor.state();
                drop(donor);
                state
            }
            Realm::Tracker => tokio::task::spawn_blocking(tracker_key)
                .await
                .context("generating the tracker's signing key")??,
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(&state.private_key_pkcs8)
            .context("the signing key")?;
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("the signing key: {e}"))?;
        let public = pair.public_key();
        let (n, e) = (
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        );
        let jwk = json!({"kty": "RSA", "kid": state.kid, "use": "sig", "alg": "RS256",
                         "n": b64url(n), "e": b64url(e)});
        let decoding = jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e);
        let minter = TestIssuer::from_state(&IssuerState {
            issuer: issuer.clone(),
            ..state
        })
        .await
        .context("the token minter")?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.cimd_timeout)
            .connect_timeout(settings.cimd_timeout)
            .user_agent(concat!(
                "meridian-dev-authorization-server/",
                env!("CARGO_PKG_VERSION")
            ));
        for der in &settings.cimd_roots {
            let cert = reqwest::Certificate::from_der(der)
                .context("a root certificate for metadata documents")?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .context("the HTTP client for metadata documents")?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(settings.limits.clone())),
            issuer,
            resource: resource.to_string(),
            minter,
            jwk,
            decoding,
            settings,
            http,
            people: firm::directory(),
            admin_secret: random_token(32)?,
        });
        let router = router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the authorization server failed");
            }
        });
        Ok(Self { shared, task })
    }

    /// The issuer URL, `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        self.shared.url("/jwks.json")
    }

    /// The introspection endpoint.
    pub fn introspection_url(&self) -> String {
        self.shared.url("/introspect")
    }

    /// The sign-in in a browser starts at `/authorize`; this page lists
    /// who holds grants and revokes them.
    pub fn admin_url(&self) -> String {
        self.shared.url("/admin")
    }

    /// The secret of `POST /admin/revoke` (`Authorization: Bearer`).
    pub fn admin_secret(&self) -> &str {
        &self.shared.admin_secret
    }

    /// A minter with this server's key and `iss`, for tokens issued without
    /// a sign-in (the pasted persona tokens, tests).
    pub fn minter(&self) -> &TestIssuer {
        &self.shared.minter
    }

    /// Registers a confidential client (client credentials, introspection).
    pub fn register_confidential(
        &self,
        name: &str,
        scope: &str,
    ) -> anyhow::Result<ClientCredentials> {
        let secret = random_token(32)?;
        let id = format!("{}-{}", name, random_token(6)?);
        let client = clients::Client::confidential(&id, name, scope, &secret);
        self.shared
            .store()
            .add_client(client)
            .map_err(|e| anyhow::anyhow!("registering {name}: {e}"))?;
        Ok(ClientCredentials {
            client_id: id,
            client_secret: secret,
        })
    }

    /// Revokes every grant of a person (and every token minted for them
    /// before now); returns how many grants ended.
    pub fn revoke_person(&self, sub: &str) -> usize {
        self.shared.store().revoke_subject(sub, now())
    }
}

/// The tracker realm's signing key (generated once per process: RSA key
/// generation takes about a second in a debug build).
fn tracker_key() -> anyhow::Result<IssuerState> {
    static KEY: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let pkcs8 = KEY.get_or_init(|| {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| e.to_string())?;
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&pair)
            .map_err(|e| e.to_string())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der.as_ref()))
    });
    let pkcs8 = pkcs8
        .clone()
        .map_err(|e| anyhow::anyhow!("generating the tracker's signing key: {e}"))?;
    Ok(IssuerState {
        issuer: String::new(),
        kid: "tracker-1".into(),
        private_key_pkcs8: pkcs8,
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/jwks.json", get(jwks))
        .route("/authorize", get(authorize::start))
        .route("/authorize/person", post(authorize::person))
        .route("/authorize/consent", post(authorize::consent))
        .route("/token", post(token::token))
        .route("/revoke", post(token::revoke))
        .route("/introspect", post(token::introspect))
        .route("/userinfo", get(token::userinfo))
        .route("/register", post(clients::register))
        .route("/admin", get(admin::page))
        .route("/admin/revoke", post(admin::revoke))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

async fn metadata(axum::extract::State(s): axum::extract::State<Arc<Shared>>) -> Response {
    let body = json!({
        "issuer": s.issuer,
        "authorization_endpoint": s.url("/authorize"),
        "token_endpoint": s.url("/token"),
        "registration_endpoint": s.url("/register"),
        "revocation_endpoint": s.url("/revoke"),
        "introspection_endpoint": s.url("/introspect"),
        "userinfo_endpoint": s.url("/userinfo"),
        "jwks_uri": s.url("/jwks.json"),
        "scopes_supported": s.settings.realm.scopes(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "dev_only": DEV_ONLY,
    });
    json_response(StatusCode::OK, &body)
}

async fn jwks(axum::extract::State(s): axum::extract::State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &json!({"keys": [s.jwk]}))
}

/// A JSON response that is never cached (token responses carry secrets).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An OAuth error (RFC 6749 section 5.2 shape).
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl OAuthError {
    pub(crate) fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &json!({"error": self.error, "error_description": self.description}),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"meridian-dev\""),
            );
        }
        response
    }
}

/// Parses `application/x-www-form-urlencoded` (a body or a query);
/// a parameter given twice is refused (RFC 6749 section 3.1).
pub(crate) fn parse_form(bytes: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("the parameter `{k}` appears twice; send each parameter once"),
            ));
        }
    }
    Ok(out)
}

/// `count` random bytes, base64url without padding.
pub(crate) fn random_token(count: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; count];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(b64url(&bytes))
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 digest of a secret, the only form in which secrets are kept.
pub(crate) fn digest_of(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
    out
}

/// Constant-time equality of two byte strings.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

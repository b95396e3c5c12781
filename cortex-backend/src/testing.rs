//! A local OAuth issuer for tests and demos (feature `testing`).
//!
//! It generates an RSA key pair, serves RFC 8414 and OpenID metadata and a
//! JWKS on a loopback port, and mints valid tokens with any claims and
//! tokens broken in every way a backend must refuse. The SDK's tests, the
//! conformance harness, the gateway's tests and the Meridian demo all use
//! this one issuer.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use cortex_backend::testing::{BrokenToken, TestIssuer};
//! let issuer = TestIssuer::start().await?;
//! let ok = issuer.token("https://mcp.example.com/mcp").sub("ana").scopes(["mcp:crm:read"]).mint();
//! let expired = issuer.broken(BrokenToken::Expired, "https://mcp.example.com/mcp", "ana", &["mcp:crm:read"]);
//! # let _ = (ok, expired); Ok(()) }
//! ```

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    encoding::AsDer,
    rsa::{KeyPair, KeySize},
    signature::KeyPair as _,
};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::auth::{AuthConfig, JwtConfig, KeySource};

/// Every kind of token a backend must refuse with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokenToken {
    /// `exp` an hour ago.
    Expired,
    /// `nbf` an hour ahead.
    NotYetValid,
    /// Another `iss`.
    WrongIssuer,
    /// Another `aud`.
    WrongAudience,
    /// Signed by another key under the issuer's `kid`.
    BadSignature,
    /// A `kid` the JWKS does not have.
    UnknownKid,
    /// `HS256` with the issuer's public key (PEM) as the HMAC secret.
    Hs256WithPublicKey,
    /// `alg: none`, no signature.
    AlgNone,
    /// No `aud` claim.
    MissingAud,
}

impl BrokenToken {
    /// All kinds.
    pub const ALL: [BrokenToken; 9] = [
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::BadSignature,
        Self::UnknownKid,
        Self::Hs256WithPublicKey,
        Self::AlgNone,
        Self::MissingAud,
    ];

    /// A stable kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::WrongIssuer => "wrong-issuer",
            Self::WrongAudience => "wrong-audience",
            Self::BadSignature => "bad-signature",
            Self::UnknownKid => "unknown-kid",
            Self::Hs256WithPublicKey => "hs256-with-public-key",
            Self::AlgNone => "alg-none",
            Self::MissingAud => "missing-aud",
        }
    }
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
    pkcs8: Vec<u8>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads one DER TLV; returns (tag, content, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// PKCS#8 `PrivateKeyInfo` → the PKCS#1 `RSAPrivateKey` inside it.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (_, seq, _) = der_tlv(pkcs8)?;
    let (_, _version, rest) = der_tlv(seq)?;
    let (_, _alg, rest) = der_tlv(rest)?;
    let (tag, key, _) = der_tlv(rest)?;
    (tag == 0x04).then(|| key.to_vec())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// RSA key generation costs about a second in a debug build, and a test
/// process starts many issuers: each process generates two key pairs once
/// (slot 0: the issuer's, slot 1: the rogue one for broken tokens) and every
/// issuer it starts reuses them. Issuers of one process therefore share a
/// key but not an `iss`, so a token of one is still refused by the others.
fn process_key(slot: usize, kid: &str) -> SigningKey {
    static KEYS: std::sync::OnceLock<[KeyPair; 2]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let make = || KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        [make(), make()]
    });
    signing_key(kid, &keys[slot])
}

fn signing_key(kid: &str, pair: &KeyPair) -> SigningKey {
    let pkcs8 = pair.as_der().expect("PKCS#8 encoding");
    let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).expect("PKCS#1 inside PKCS#8");
    let public = pair.public_key();
    let spki = public.as_der().expect("SPKI encoding");
    let jwk = json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": b64url(public.modulus().big_endian_without_leading_zero()),
        "e": b64url(public.exponent().big_endian_without_leading_zero()),
    });
    SigningKey {
        kid: kid.into(),
        encoding: EncodingKey::from_rsa_der(&pkcs1),
        jwk,
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
        pkcs8: pkcs8.as_ref().to_vec(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What another process needs to mint tokens as a [`TestIssuer`]: its URL,
/// key id and RSA private key (PKCS#8 DER, base64). Serializable so it can
/// be written to a file; `Debug` hides the key.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerState {
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The `kid` of the signing key.
    pub kid: String,
    /// The RSA private key, PKCS#8 DER in standard base64.
    pub private_key_pkcs8: String,
}

impl std::fmt::Debug for IssuerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerState")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("private_key_pkcs8", &"<hidden>")
            .finish()
    }
}

impl IssuerState {
    fn signing_key(&self) -> std::io::Result<SigningKey> {
        let invalid = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("issuer state: {what}; start the issuer again to write a fresh state"),
            )
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(self.private_key_pkcs8.trim())
            .map_err(|_| invalid("privateKeyPkcs8 is not base64"))?;
        let pair =
            KeyPair::from_pkcs8(&der).map_err(|_| invalid("privateKeyPkcs8 is not an RSA key"))?;
        Ok(signing_key(&self.kid, &pair))
    }
}

struct Shared {
    issuer: String,
    key: SigningKey,
    rogue: SigningKey,
}

/// A running local issuer. Dropping it stops its server.
pub struct TestIssuer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Starts an issuer on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts an issuer on a given loopback address.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::serve(addr, None).await
    }

    /// Starts an issuer on a given loopback address with the signing key of
    /// a saved [`IssuerState`], so backends that cached its JWKS keep
    /// accepting its tokens after a restart. The issuer URL is the new
    /// listening address.
    pub async fn start_with_state(addr: SocketAddr, state: &IssuerState) -> std::io::Result<Self> {
        let key = state.signing_key()?;
        Self::serve(addr, Some(key)).await
    }

    /// An issuer that only mints, from a saved [`IssuerState`]: it serves
    /// nothing (the process that saved the state serves the JWKS). This is
    /// how a second process mints tokens a backend trusting the first one
    /// accepts.
    pub async fn from_state(state: &IssuerState) -> std::io::Result<Self> {
        let key = state.signing_key()?;
        let rogue = tokio::task::spawn_blocking(|| process_key(1, "cortex-test-1"))
            .await
            .map_err(std::io::Error::other)?;
        let addr = state
            .issuer
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Arc::new(Shared {
            issuer: state.issuer.clone(),
            key,
            rogue,
        });
        Ok(Self {
            shared,
            addr,
            task: tokio::spawn(async {}),
        })
    }

    /// The key material and issuer URL, to save for [`TestIssuer::from_state`]
    /// or [`TestIssuer::start_with_state`]. It holds the private key: store
    /// it with owner-only permissions.
    pub fn state(&self) -> IssuerState {
        IssuerState {
            issuer: self.shared.issuer.clone(),
            kid: self.shared.key.kid.clone(),
            private_key_pkcs8: base64::engine::general_purpose::STANDARD
                .encode(&self.shared.key.pkcs8),
        }
    }

    async fn serve(addr: SocketAddr, key: Option<SigningKey>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let (key, rogue) = tokio::task::spawn_blocking(move || {
            (
                key.unwrap_or_else(|| process_key(0, "cortex-test-1")),
                process_key(1, "cortex-test-1"),
            )
        })
        .await
        .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared { issuer, key, rogue });
        let metadata = json!({
            "issuer": shared.issuer,
            "jwks_uri": format!("{}/jwks.json", shared.issuer),
            "token_endpoint": format!("{}/token", shared.issuer),
            "authorization_endpoint": format!("{}/authorize", shared.issuer),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
        });
        // The JWKS also carries a symmetric key: a validator that used it
        // would accept HMAC tokens forged with a published secret.
        let jwks = json!({"keys": [
            shared.key.jwk.clone(),
            {"kty": "oct", "kid": "cortex-test-oct", "k": b64url(b"a-published-secret-never-to-be-used")}
        ]});
        let router = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get({
                    let m = metadata.clone();
                    move || async move { axum::Json(m) }
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { shared, addr, task })
    }

    /// The issuer URL (`iss`), `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.issuer)
    }

    /// The issuer's public key as PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.shared.key.public_pem
    }

    /// A validator configuration trusting this issuer (keys discovered from
    /// its metadata, as with a real issuer).
    pub fn jwt_config(&self, audience: &str) -> JwtConfig {
        let mut c = JwtConfig::new(self.shared.issuer.clone(), vec![audience.to_string()]);
        c.keys = KeySource::Discover;
        c
    }

    /// An auth configuration trusting this issuer plus technical tokens.
    pub fn auth_config(&self, audience: &str, technical_tokens: &[&str]) -> AuthConfig {
        AuthConfig {
            technical_tokens: technical_tokens.iter().map(|s| (*s).to_string()).collect(),
            jwt: Some(self.jwt_config(audience)),
        }
    }

    /// The environment a backend using `Auth::from_env()` needs to trust
    /// this issuer.
    pub fn env(&self, audience: &str) -> Vec<(String, String)> {
        vec![
            ("OAUTH_ISSUER".into(), self.shared.issuer.clone()),
            ("OAUTH_AUDIENCE".into(), audience.into()),
            ("OAUTH_JWKS_URL".into(), self.jwks_url()),
        ]
    }

    /// Starts a token for `audience`, valid for an hour.
    pub fn token(&self, audience: &str) -> TokenBuilder<'_> {
        let t = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.shared.issuer));
        claims.insert("aud".into(), json!(audience));
        claims.insert("sub".into(), json!("test-user"));
        claims.insert("iat".into(), json!(t));
        claims.insert("nbf".into(), json!(t));
        claims.insert("exp".into(), json!(t + 3600));
        TokenBuilder {
            issuer: self,
            claims,
            typ: Some("JWT".into()),
        }
    }

    /// Signs arbitrary claims with the issuer's key (RS256, its `kid`).
    pub fn mint(&self, claims: &Value) -> String {
        sign(&self.shared.key, claims)
    }

    /// A token broken in one way, otherwise valid for `audience`, `sub`
    /// and `scopes`.
    pub fn broken(&self, kind: BrokenToken, audience: &str, sub: &str, scopes: &[&str]) -> String {
        let base = self.token(audience).sub(sub).scopes(scopes.iter().copied());
        let t = now();
        match kind {
            BrokenToken::Expired => base
                .claim("exp", json!(t - 3600))
                .claim("nbf", json!(t - 7200))
                .claim("iat", json!(t - 7200))
                .mint(),
            BrokenToken::NotYetValid => base
                .claim("nbf", json!(t + 3600))
                .claim("exp", json!(t + 7200))
                .mint(),
            BrokenToken::WrongIssuer => base
                .claim("iss", json!("https://attacker.example.com"))
                .mint(),
            BrokenToken::WrongAudience => base
                .claim("aud", json!("https://another-resource.example.com"))
                .mint(),
            BrokenToken::MissingAud => {
                let mut claims = base.claims;
                claims.remove("aud");
                self.mint(&Value::Object(claims))
            }
            BrokenToken::BadSignature => sign(&self.shared.rogue, &Value::Object(base.claims)),
            BrokenToken::UnknownKid => {
                let mut header = Header::new(Algorithm::RS256);
                header.kid = Some("not-in-the-jwks".into());
                jsonwebtoken::encode(
                    &header,
                    &Value::Object(base.claims),
                    &self.shared.rogue.encoding,
                )
                .expect("signing")
            }
            BrokenToken::Hs256WithPublicKey => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(self.shared.key.kid.clone());
                let secret = EncodingKey::from_secret(self.shared.key.public_pem.as_bytes());
                jsonwebtoken::encode(&header, &Value::Object(base.claims), &secret)
                    .expect("signing")
            }
            BrokenToken::AlgNone => {
                let header = json!({"alg": "none", "typ": "JWT", "kid": self.shared.key.kid});
                let claims = Value::Object(base.claims);
                format!(
                    "{}.{}.",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                )
            }
        }
    }
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    sign_typed(key, claims, Some("JWT"))
}

fn sign_typed(key: &SigningKey, claims: &Value, typ: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    header.typ = typ.map(String::from);
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .expect("RS256 signing with a generated key")
}

/// Builds the claims of a valid token.
#[derive(Debug)]
pub struct TokenBuilder<'a> {
    issuer: &'a TestIssuer,
    claims: Map<String, Value>,
    typ: Option<String>,
}

impl TokenBuilder<'_> {
    /// Sets `sub`.
    #[must_use]
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Sets `email`.
    #[must_use]
    pub fn email(self, email: &str) -> Self {
        self.claim("email", json!(email))
    }

    /// Sets `role`.
    #[must_use]
    pub fn role(self, role: &str) -> Self {
        self.claim("role", json!(role))
    }

    /// Sets `scope` (space-separated).
    #[must_use]
    pub fn scopes<'s>(self, scopes: impl IntoIterator<Item = &'s str>) -> Self {
        let joined: Vec<&str> = scopes.into_iter().collect();
        self.claim("scope", json!(joined.join(" ")))
    }

    /// Sets the lifetime from now.
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        let exp = now() + ttl.as_secs();
        self.claim("exp", json!(exp))
    }

    /// Sets any claim.
    #[must_use]
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// Removes a claim (e.g. `nbf`, which many issuers never send).
    #[must_use]
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets the header `typ` (`JWT` by default; `None` leaves it out). RFC
    /// 9068 access tokens carry `at+jwt`.
    #[must_use]
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(String::from);
        self
    }

    /// The claims so far.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Signs the token.
    pub fn mint(self) -> String {
        sign_typed(
            &self.issuer.shared.key,
            &Value::Object(self.claims),
            self.typ.as_deref(),
        )
    }
}

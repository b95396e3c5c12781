//! A local OAuth issuer for tests and demos (feature `testing`).
//!
//! It generates an RSA key pair, serves RFC 8414 and OpenID metadata and a
//! JWKS on a loopback port, and mints valid tokens with any claims and
//! tokens broken in every way a backend must refuse. The SDK's tests, the
//! conformance harness, the gateway's tests and the Meridian demo all use
//! this one issuer. [`TestIssuer::start_gateway`] plays a Cortex gateway in
//! `assert` mode instead: a P-256 key, a JWKS at
//! `/.well-known/jwks.json`, and ES256 assertions with `act`.
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
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _},
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
    alg: Algorithm,
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
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(&pkcs1),
        jwk,
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
        pkcs8: pkcs8.as_ref().to_vec(),
    }
}

/// A fresh P-256 key pair, as the gateway signs its assertions with.
fn generate_ec() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation")
}

/// The RFC 7638 thumbprint of a P-256 public key (x, y base64url): the
/// gateway's `kid`.
fn ec_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// An ES256 signing key; `kid` `None` = its RFC 7638 thumbprint.
fn ec_signing_key(kid: Option<&str>, pair: &EcdsaKeyPair) -> SigningKey {
    let pkcs8 = pair.to_pkcs8v1().expect("PKCS#8 encoding");
    let public = pair.public_key();
    // Uncompressed point: 0x04 || x || y.
    let point = public.as_ref();
    let (x, y) = (b64url(&point[1..33]), b64url(&point[33..65]));
    let kid = kid.map_or_else(|| ec_thumbprint(&x, &y), String::from);
    let spki = public.as_der().expect("SPKI encoding");
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
        "x": x,
        "y": y,
    });
    SigningKey {
        kid,
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
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
/// key id and private key (PKCS#8 DER, base64: RSA for an identity
/// provider, P-256 for a gateway, see [`TestIssuer::start_gateway`]).
/// Serializable so it can be written to a file; `Debug` hides the key.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerState {
    /// The issuer URL (`iss`).
    pub issuer: String,
    /// The `kid` of the signing key.
    pub kid: String,
    /// The private key (RSA or P-256), PKCS#8 DER in standard base64.
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
    /// A new gateway identity for `issuer`: a fresh P-256 key whose `kid`
    /// is its RFC 7638 thumbprint, as the Cortex gateway names its keys. The
    /// gateway signs with it when [`IssuerState::private_key_pem`] is its
    /// `CORTEX_SIGNING_KEY_FILE`; [`TestIssuer::from_state`] then mints the
    /// assertions that gateway would sign.
    pub fn new_gateway(issuer: &str) -> Self {
        let key = ec_signing_key(None, &generate_ec());
        Self {
            issuer: issuer.to_string(),
            kid: key.kid,
            private_key_pkcs8: base64::engine::general_purpose::STANDARD.encode(&key.pkcs8),
        }
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). It
    /// is a secret: write it with owner-only permissions.
    pub fn private_key_pem(&self) -> std::io::Result<String> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(self.private_key_pkcs8.trim())
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "issuer state: privateKeyPkcs8 is not base64",
                )
            })?;
        Ok(pem("PRIVATE KEY", &der))
    }

    /// Whether the key is a gateway's (P-256; see
    /// [`TestIssuer::start_gateway`]) rather than an identity provider's.
    pub fn is_gateway(&self) -> bool {
        base64::engine::general_purpose::STANDARD
            .decode(self.private_key_pkcs8.trim())
            .is_ok_and(|der| {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).is_ok()
            })
    }

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
        if let Ok(pair) = KeyPair::from_pkcs8(&der) {
            return Ok(signing_key(&self.kid, &pair));
        }
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| invalid("privateKeyPkcs8 is neither an RSA nor a P-256 key"))?;
        Ok(ec_signing_key(Some(&self.kid), &pair))
    }
}

struct Shared {
    issuer: String,
    key: SigningKey,
    rogue: SigningKey,
}

impl Shared {
    /// A gateway signs with P-256; an identity provider with RSA.
    fn is_gateway(&self) -> bool {
        self.key.alg == Algorithm::ES256
    }

    fn typ(&self) -> &'static str {
        if self.is_gateway() { "at+jwt" } else { "JWT" }
    }
}

/// Where a gateway serves its JWKS.
const GATEWAY_JWKS_PATH: &str = "/.well-known/jwks.json";

/// The lifetime of a gateway's assertions (the gateway's default
/// `CORTEX_ASSERT_TTL_S`).
pub const ASSERTION_TTL: Duration = Duration::from_secs(120);

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
        Self::serve(addr, None, false).await
    }

    /// Starts an issuer that plays a Cortex gateway in `assert` mode, on
    /// `127.0.0.1:0`: a P-256 key (`kid` its RFC 7638 thumbprint), its JWKS
    /// at `<issuer>/.well-known/jwks.json`, and [`TestIssuer::token`] and
    /// [`TestIssuer::broken`] minting ES256 assertions as the gateway does.
    /// A backend trusts it with [`TestIssuer::env`] (`CORTEX_GATEWAY_ISSUER`).
    pub async fn start_gateway() -> std::io::Result<Self> {
        Self::start_gateway_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// [`TestIssuer::start_gateway`] on a given loopback address.
    pub async fn start_gateway_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::serve(addr, None, true).await
    }

    /// Starts an issuer on a given loopback address with the signing key of
    /// a saved [`IssuerState`], so backends that cached its JWKS keep
    /// accepting its tokens after a restart. The issuer URL is the new
    /// listening address. A P-256 key restores a gateway
    /// ([`TestIssuer::start_gateway`]).
    pub async fn start_with_state(addr: SocketAddr, state: &IssuerState) -> std::io::Result<Self> {
        let key = state.signing_key()?;
        Self::serve(addr, Some(key), false).await
    }

    /// An issuer that only mints, from a saved [`IssuerState`]: it serves
    /// nothing (the process that saved the state serves the JWKS). This is
    /// how a second process mints tokens a backend trusting the first one
    /// accepts.
    pub async fn from_state(state: &IssuerState) -> std::io::Result<Self> {
        let (key, rogue) = key_pair_for(Some(state.signing_key()?), false).await?;
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

    async fn serve(
        addr: SocketAddr,
        key: Option<SigningKey>,
        gateway: bool,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let issuer = format!("http://{addr}");
        let (key, rogue) = key_pair_for(key, gateway).await?;
        let shared = Arc::new(Shared { issuer, key, rogue });
        let alg = format!("{:?}", shared.key.alg);
        let jwks_path = if shared.is_gateway() {
            GATEWAY_JWKS_PATH
        } else {
            "/jwks.json"
        };
        let metadata = json!({
            "issuer": shared.issuer,
            "jwks_uri": format!("{}{jwks_path}", shared.issuer),
            "token_endpoint": format!("{}/token", shared.issuer),
            "authorization_endpoint": format!("{}/authorize", shared.issuer),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": [alg],
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
                jwks_path,
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

    /// The JWKS URL: `<issuer>/jwks.json`, or for a gateway
    /// `<issuer>/.well-known/jwks.json` as the Cortex gateway serves it.
    pub fn jwks_url(&self) -> String {
        if self.is_gateway() {
            format!("{}{GATEWAY_JWKS_PATH}", self.shared.issuer)
        } else {
            format!("{}/jwks.json", self.shared.issuer)
        }
    }

    /// Whether this issuer mints gateway assertions
    /// ([`TestIssuer::start_gateway`]).
    pub fn is_gateway(&self) -> bool {
        self.shared.is_gateway()
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        &self.shared.key.kid
    }

    /// The signing algorithm: RS256, or ES256 for a gateway.
    pub fn algorithm(&self) -> Algorithm {
        self.shared.key.alg
    }

    /// The issuer's public key as PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.shared.key.public_pem
    }

    /// A validator configuration trusting this issuer (keys discovered from
    /// its metadata, as with a real issuer). For a gateway: the
    /// gateway-assertion configuration [`TestIssuer::env`] makes.
    pub fn jwt_config(&self, audience: &str) -> JwtConfig {
        if self.is_gateway() {
            let env = self.env(audience);
            let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            return crate::auth::config_from_env(lookup)
                .ok()
                .and_then(|c| c.jwt)
                .expect("a gateway-assertion configuration for a loopback issuer");
        }
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
    /// this issuer. For a gateway: `CORTEX_GATEWAY_ISSUER` and
    /// `OAUTH_AUDIENCE` (keys from `<issuer>/.well-known/jwks.json`).
    pub fn env(&self, audience: &str) -> Vec<(String, String)> {
        if self.is_gateway() {
            return vec![
                ("CORTEX_GATEWAY_ISSUER".into(), self.shared.issuer.clone()),
                ("OAUTH_AUDIENCE".into(), audience.into()),
            ];
        }
        vec![
            ("OAUTH_ISSUER".into(), self.shared.issuer.clone()),
            ("OAUTH_AUDIENCE".into(), audience.into()),
            ("OAUTH_JWKS_URL".into(), self.jwks_url()),
        ]
    }

    /// Starts a token for `audience`, valid for an hour. For a gateway,
    /// an assertion as the Cortex gateway mints it: header `typ: at+jwt`,
    /// `act: {"sub": <issuer>}`, a random `jti`, no `nbf`, valid for
    /// [`ASSERTION_TTL`].
    pub fn token(&self, audience: &str) -> TokenBuilder<'_> {
        let t = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.shared.issuer));
        claims.insert("aud".into(), json!(audience));
        claims.insert("sub".into(), json!("test-user"));
        claims.insert("iat".into(), json!(t));
        if self.is_gateway() {
            claims.insert("act".into(), json!({"sub": self.shared.issuer}));
            claims.insert("jti".into(), json!(random_id()));
            claims.insert("exp".into(), json!(t + ASSERTION_TTL.as_secs()));
        } else {
            claims.insert("nbf".into(), json!(t));
            claims.insert("exp".into(), json!(t + 3600));
        }
        TokenBuilder {
            issuer: self,
            claims,
            typ: Some(self.shared.typ().into()),
        }
    }

    /// Signs arbitrary claims with the issuer's key (RS256, or ES256 for a
    /// gateway; its `kid`; `typ` `JWT`, or `at+jwt` for a gateway).
    pub fn mint(&self, claims: &Value) -> String {
        sign_typed(&self.shared.key, claims, Some(self.shared.typ()))
    }

    /// A token broken in one way, otherwise valid for `audience`, `sub`
    /// and `scopes`.
    pub fn broken(&self, kind: BrokenToken, audience: &str, sub: &str, scopes: &[&str]) -> String {
        let base = self.token(audience).sub(sub).scopes(scopes.iter().copied());
        let typ = base.typ.clone();
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
            BrokenToken::BadSignature => sign_typed(
                &self.shared.rogue,
                &Value::Object(base.claims),
                typ.as_deref(),
            ),
            BrokenToken::UnknownKid => {
                let mut header = Header::new(self.shared.rogue.alg);
                header.kid = Some("not-in-the-jwks".into());
                header.typ = typ;
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
                header.typ = typ;
                let secret = EncodingKey::from_secret(self.shared.key.public_pem.as_bytes());
                jsonwebtoken::encode(&header, &Value::Object(base.claims), &secret)
                    .expect("signing")
            }
            BrokenToken::AlgNone => {
                let header = json!({"alg": "none", "typ": typ, "kid": self.shared.key.kid});
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

fn sign_typed(key: &SigningKey, claims: &Value, typ: Option<&str>) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = typ.map(String::from);
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signing with a generated key")
}

/// 128 random bits, base64url: a `jti`.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    b64url(&bytes)
}

/// The signing key and the rogue one (same `kid`, another key: for
/// [`BrokenToken::BadSignature`]), of the flavor `key` has, or of a
/// gateway (P-256) or an identity provider (RSA) when `key` is `None`.
async fn key_pair_for(
    key: Option<SigningKey>,
    gateway: bool,
) -> std::io::Result<(SigningKey, SigningKey)> {
    tokio::task::spawn_blocking(move || {
        let gateway = key.as_ref().map_or(gateway, |k| k.alg == Algorithm::ES256);
        if gateway {
            let key = key.unwrap_or_else(|| ec_signing_key(None, &generate_ec()));
            let rogue = ec_signing_key(Some(&key.kid), &generate_ec());
            (key, rogue)
        } else {
            (
                key.unwrap_or_else(|| process_key(0, "cortex-test-1")),
                process_key(1, "cortex-test-1"),
            )
        }
    })
    .await
    .map_err(std::io::Error::other)
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

//! User-token validation, shared by backends and the gateway.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::Value;

pub use super::keys::KeySource;
use super::{AuthConfigError, AuthError, Caller, keys::KeyStore, sha256};

/// How user JWTs are validated.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The expected `iss`, exactly.
    pub issuer: String,
    /// Accepted `aud` values (one must match).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Accepted algorithms; the token's header must name one of them. Only
    /// asymmetric algorithms are allowed.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Claim path of the role (`role`, `metadata.role`, ...).
    pub role_claim: String,
    /// Claim path of the pool.
    pub pool_claim: String,
    /// Minimum time between two JWKS refreshes caused by unknown `kid`s.
    pub refresh_cooldown: Duration,
    /// How many verified tokens are remembered.
    pub cache_capacity: usize,
    /// Allow `http://` key URLs to non-loopback hosts.
    pub allow_insecure_http: bool,
    /// Refuse tokens without `nbf` (default false: RFC 9068 does not
    /// require it and most issuers omit it). A present `nbf` is always
    /// checked.
    pub require_nbf: bool,
    /// Accept only header `typ: at+jwt` (default false: `at+jwt`, `JWT` or
    /// no `typ` are accepted, any other `typ` is refused).
    pub require_at_jwt: bool,
    /// Gateway-assertion mode: the `act.sub` every token must carry (the
    /// gateway's issuer, RFC 8693 actor). `None`: no actor required.
    pub required_actor: Option<String>,
    /// An audience that gets a token refused even when another of its
    /// audiences is accepted: the gateway's public audience in
    /// gateway-assertion mode, so a caller's own token forwarded by the
    /// gateway never passes. `None`: no such audience.
    pub refused_audience: Option<String>,
}

impl JwtConfig {
    /// A configuration with the defaults: keys discovered from the issuer,
    /// RS256 and ES256, 30 s leeway, `nbf` checked when present, `typ`
    /// `at+jwt` or `JWT` or none, claims `role` and `pool`, 30 s refresh
    /// cooldown, 10,000 cached tokens (the defaults of
    /// [`JWT_SETTINGS`](super::JWT_SETTINGS)).
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            keys: KeySource::Discover,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: Duration::from_secs(30),
            role_claim: "role".into(),
            pool_claim: "pool".into(),
            refresh_cooldown: Duration::from_secs(30),
            cache_capacity: 10_000,
            allow_insecure_http: false,
            require_nbf: false,
            require_at_jwt: false,
            required_actor: None,
            refused_audience: None,
        }
    }
}

/// Parses an algorithm name from configuration, refusing symmetric ones.
pub(crate) fn parse_algorithm(name: &str) -> Result<Algorithm, AuthConfigError> {
    let alg: Algorithm = name.trim().parse().map_err(|_| {
        AuthConfigError::new(
            "OAUTH_ALGORITHMS",
            format!("`{name}` is not a known algorithm; use e.g. RS256,ES256"),
        )
    })?;
    check_asymmetric(alg)?;
    Ok(alg)
}

pub(crate) fn check_asymmetric(alg: Algorithm) -> Result<(), AuthConfigError> {
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(AuthConfigError::new(
            "OAUTH_ALGORITHMS",
            format!(
                "{alg:?} is symmetric; only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are allowed"
            ),
        ));
    }
    Ok(())
}

/// Bytes of verified callers the token cache holds at most (estimated by
/// [`entry_bytes`]); beyond, entries are evicted as for the count bound.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

struct CacheEntry {
    caller: Arc<Caller>,
    /// [`entry_bytes`] of `caller`, kept so eviction need not recompute it.
    bytes: usize,
}

/// The verified entries and their estimated size.
#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], CacheEntry>,
    bytes: usize,
}

impl Cache {
    /// Drops the entries expiring at or before `t`, keeping the byte total.
    fn keep_expiring_after(&mut self, t: u64) {
        let total = &mut self.bytes;
        self.entries.retain(|_, e| {
            let keep = e.caller.expires_at > t;
            if !keep {
                *total -= e.bytes;
            }
            keep
        });
    }
}

/// Estimated heap bytes of one cached caller: the structures, the token,
/// the strings taken from the claims, and the claims tree (counted as
/// twice the token's length, which bounds the claims' JSON text).
fn entry_bytes(caller: &Caller) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<Caller>()
        + std::mem::size_of::<CacheEntry>()
        + 32
        + 3 * caller.token().len()
        + caller.sub.len()
        + opt(&caller.email)
        + opt(&caller.name)
        + opt(&caller.actor)
        + opt(&caller.role)
        + opt(&caller.pool)
        + opt(&caller.client_id)
        + caller
            .scopes
            .iter()
            .map(|s| s.len() + std::mem::size_of::<String>())
            .sum::<usize>()
}

/// Validates user JWTs and caches the verified ones until they expire.
pub struct JwtValidator {
    config: JwtConfig,
    keys: KeyStore,
    cache: Mutex<Cache>,
    /// Byte bound of the cache ([`CACHE_BYTES`]; smaller in tests).
    cache_bytes: usize,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf in the future)".into(),
        ErrorKind::InvalidIssuer => "the token was issued by another issuer".into(),
        ErrorKind::InvalidAudience => "the token was issued for another audience".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the required claim `{c}` is missing"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "the token's algorithm does not match the issuer's key".into()
        }
        ErrorKind::InvalidClaimFormat(c) => format!("the claim `{c}` has the wrong type"),
        _ => "the token is malformed".into(),
    }
}

impl JwtValidator {
    /// Builds a validator; refuses symmetric algorithms and empty audiences.
    pub fn new(config: JwtConfig) -> Result<Self, AuthConfigError> {
        if config.issuer.is_empty() {
            return Err(AuthConfigError::new("OAUTH_ISSUER", "must not be empty"));
        }
        if config.audiences.is_empty() {
            return Err(AuthConfigError::new(
                "OAUTH_AUDIENCE",
                "at least one audience is required",
            ));
        }
        if config.algorithms.is_empty() {
            return Err(AuthConfigError::new(
                "OAUTH_ALGORITHMS",
                "at least one algorithm is required, e.g. RS256",
            ));
        }
        for alg in &config.algorithms {
            check_asymmetric(*alg)?;
        }
        if let Some(refused) = &config.refused_audience
            && config.audiences.contains(refused)
        {
            return Err(AuthConfigError::new(
                "CORTEX_GATEWAY_AUDIENCE",
                format!(
                    "`{refused}` is also an accepted audience (OAUTH_AUDIENCE): the backend's own \
                     audience must differ from the gateway's public one, or callers' tokens \
                     forwarded by the gateway would be accepted; set the gateway's \
                     CORTEX_BACKEND_<ID>_AUDIENCE and this backend's OAUTH_AUDIENCE to the \
                     backend's own URL"
                ),
            ));
        }
        if let KeySource::JwksUrl(url) = &config.keys {
            super::keys::check_transport(url, config.allow_insecure_http)
                .map_err(|p| AuthConfigError::new("OAUTH_JWKS_URL", p))?;
        }
        if matches!(config.keys, KeySource::Discover) {
            super::keys::check_transport(&config.issuer, config.allow_insecure_http)
                .map_err(|p| AuthConfigError::new("OAUTH_ISSUER", p))?;
        }
        let keys = KeyStore::new(
            config.keys.clone(),
            config.issuer.clone(),
            config.allow_insecure_http,
            config.refresh_cooldown,
        );
        Ok(Self {
            config,
            keys,
            cache: Mutex::default(),
            cache_bytes: CACHE_BYTES,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Validates a token: cache hit when this exact token was verified before
    /// and has not expired; full verification otherwise.
    pub async fn validate(&self, token: &str) -> Result<Arc<Caller>, AuthError> {
        self.validate_hashed(token, sha256(token.as_bytes())).await
    }

    /// [`Self::validate`] with the token's SHA-256 already computed (the
    /// authenticator hashes once for both the technical-token check and the
    /// cache).
    pub(crate) async fn validate_hashed(
        &self,
        token: &str,
        digest: [u8; 32],
    ) -> Result<Arc<Caller>, AuthError> {
        if let Some(caller) = self.cached(&digest) {
            return Ok(caller);
        }
        // Boxed: the verification (and a JWKS fetch) is the rare path; its
        // future would otherwise make every caller's future larger, and a
        // future is copied whole at each layer that awaits it.
        let caller = Arc::new(Box::pin(self.verify(token)).await?);
        self.remember(digest, caller.clone());
        Ok(caller)
    }

    /// The cache lookup alone (exposed for benchmarks).
    pub fn cached_for(&self, token: &str) -> Option<Arc<Caller>> {
        self.cached(&sha256(token.as_bytes()))
    }

    /// How many verified tokens are remembered now.
    pub fn cache_len(&self) -> usize {
        self.cache.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Arc<Caller>> {
        let mut cache = crate::sync::lock(&self.cache);
        let entry = cache.entries.get(digest)?;
        if entry.caller.expires_at > now() {
            return Some(entry.caller.clone());
        }
        if let Some(gone) = cache.entries.remove(digest) {
            cache.bytes -= gone.bytes;
        }
        None
    }

    fn remember(&self, digest: [u8; 32], caller: Arc<Caller>) {
        let capacity = self.config.cache_capacity;
        let bytes = entry_bytes(&caller);
        if capacity == 0 || bytes > self.cache_bytes {
            return;
        }
        let max_bytes = self.cache_bytes - bytes;
        let mut guard = crate::sync::lock(&self.cache);
        let cache = &mut *guard;
        let full = |c: &Cache| c.entries.len() >= capacity || c.bytes > max_bytes;
        if full(cache) {
            cache.keep_expiring_after(now());
            // Still full: drop the entries closest to expiry (about a tenth),
            // so the cost of eviction is amortised over many inserts.
            if full(cache) {
                let mut exps: Vec<u64> = cache
                    .entries
                    .values()
                    .map(|e| e.caller.expires_at)
                    .collect();
                let cut = (capacity / 10).max(1);
                let nth = cut.min(exps.len() - 1);
                exps.select_nth_unstable(nth);
                cache.keep_expiring_after(exps[nth]);
                while full(cache) {
                    let Some(k) = cache.entries.keys().next().copied() else {
                        break;
                    };
                    if let Some(gone) = cache.entries.remove(&k) {
                        cache.bytes -= gone.bytes;
                    }
                }
            }
        }
        if let Some(old) = cache.entries.insert(digest, CacheEntry { caller, bytes }) {
            cache.bytes -= old.bytes;
        }
        cache.bytes += bytes;
    }

    /// Gateway-assertion mode: refuses, before any key is looked up, a
    /// token whose `aud` contains the gateway's public audience or whose
    /// `iss` is not the gateway (a caller's own token sent straight to the
    /// backend), saying so. The claims are not verified yet: this only
    /// refuses early, with the reason; acceptance still takes the full
    /// verification.
    fn not_obviously_foreign(&self, token: &str) -> Result<(), AuthError> {
        let Some(claims) = unverified_payload(token) else {
            return Ok(());
        };
        if let Some(refused) = &self.config.refused_audience
            && audience_contains(&claims, refused)
        {
            return Err(gateway_audience_refused());
        }
        if self.config.required_actor.is_some()
            && claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str())
        {
            return Err(AuthError::Invalid(
                "the token was not issued by the gateway (CORTEX_GATEWAY_ISSUER): this backend \
                 accepts only the assertions the Cortex gateway signs for it; call it through \
                 the gateway"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Full verification, no cache (exposed for benchmarks).
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(describe_header(e.kind())))?;
        if self.config.required_actor.is_some() || self.config.refused_audience.is_some() {
            self.not_obviously_foreign(token)?;
        }
        check_typ(header.typ.as_deref(), self.config.require_at_jwt)?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "the algorithm {:?} is not accepted here",
                header.alg
            )));
        }
        let key = self.keys.find(header.kid.as_deref()).await?;
        if !key.family.contains(&header.alg) {
            return Err(AuthError::Invalid(
                "the token's algorithm does not match the issuer's key".into(),
            ));
        }
        if let Some(declared) = key.alg
            && declared != header.alg
        {
            return Err(AuthError::Invalid(format!(
                "the token's algorithm {:?} differs from the `alg` {declared:?} its signing key declares",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&self.config.audiences);
        if self.config.require_nbf {
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        } else {
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = self.config.leeway.as_secs();
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(describe(e.kind())))?;
        if let Some(actor) = &self.config.required_actor {
            check_actor(&data.claims, actor)?;
        }
        Caller::from_claims(
            data.claims,
            token,
            &self.config.role_claim,
            &self.config.pool_claim,
        )
        .map_err(AuthError::Invalid)
    }
}

/// Whether the `aud` claim (a string or an array) contains `audience`.
fn audience_contains(claims: &Value, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// The payload of a token, unverified: only to refuse it with a reason.
fn unverified_payload(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn gateway_audience_refused() -> AuthError {
    AuthError::Invalid(
        "the token is for the gateway's public audience (CORTEX_GATEWAY_AUDIENCE): this backend \
         accepts only the gateway's assertions for its own audience, never a caller's token \
         passed through; set the gateway's CORTEX_BACKEND_<ID>_TOKEN_MODE=assert for it"
            .into(),
    )
}

/// Gateway-assertion mode: `act.sub` must name the trusted gateway (RFC
/// 8693 section 4.1; the outermost `act` is the current actor).
fn check_actor(claims: &Value, gateway: &str) -> Result<(), AuthError> {
    match claims
        .get("act")
        .map(|act| act.get("sub").and_then(Value::as_str))
    {
        None => Err(AuthError::Invalid(
            "the token has no `act` claim: this backend accepts only assertions the Cortex \
             gateway mints (CORTEX_GATEWAY_ISSUER), whose `act.sub` names the gateway"
                .into(),
        )),
        Some(Some(actor)) if actor == gateway => Ok(()),
        Some(_) => Err(AuthError::Invalid(
            "the token's actor (`act.sub`) is not the trusted gateway (CORTEX_GATEWAY_ISSUER)"
                .into(),
        )),
    }
}

/// Checks the JOSE header `typ` (RFC 9068 section 2.1, RFC 8725 section
/// 3.11): `at+jwt` (or `application/at+jwt`), case-insensitive, always;
/// `JWT` (or `application/jwt`) and no `typ` unless `require_at_jwt`. The
/// value itself is never echoed: it is the caller's text.
fn check_typ(typ: Option<&str>, require_at_jwt: bool) -> Result<(), AuthError> {
    let bare = typ.map(|t| {
        let t = t.trim();
        match t.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &t[12..],
            _ => t,
        }
    });
    let at_jwt = bare.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"));
    if at_jwt {
        return Ok(());
    }
    if require_at_jwt {
        return Err(AuthError::Invalid(
            "the token's header `typ` is not `at+jwt`: this resource accepts only RFC 9068 \
             access tokens (OAUTH_REQUIRE_AT_JWT)"
                .into(),
        ));
    }
    match bare {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("jwt") => Ok(()),
        Some(_) => Err(AuthError::Invalid(
            "the token's header `typ` is neither `at+jwt` nor `JWT`: present an OAuth access \
             token, not another kind of JWT"
                .into(),
        )),
    }
}

fn describe_header(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::Json(_) => {
            "the token header is not acceptable (unknown or `none` algorithm)".into()
        }
        _ => "the token is malformed (expected a signed JWT)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller whose claims carry `pad` bytes of padding.
    fn big_caller(n: usize, pad: usize) -> Arc<Caller> {
        let claims = serde_json::json!({
            "sub": format!("user{n}"),
            "exp": now() + 3600 + n as u64,
            "pad": "p".repeat(pad),
        });
        let token = format!("h.{}.s", "t".repeat(pad));
        Arc::new(Caller::from_claims(claims, &token, "role", "pool").unwrap())
    }

    #[test]
    fn the_token_cache_is_bounded_by_bytes() {
        let mut validator = JwtValidator::new(JwtConfig::new(
            "https://issuer.example.com",
            vec!["aud".into()],
        ))
        .unwrap();
        validator.cache_bytes = 1024 * 1024;
        let mut last = None;
        for n in 0..200 {
            let caller = big_caller(n, 16 * 1024);
            let digest = sha256(format!("token{n}").as_bytes());
            validator.remember(digest, caller);
            last = Some(digest);
            let cache = validator.cache.lock().unwrap();
            let sum: usize = cache.entries.values().map(|e| e.bytes).sum();
            assert_eq!(cache.bytes, sum);
            assert!(cache.bytes <= validator.cache_bytes, "{}", cache.bytes);
        }
        assert!(validator.cache_len() > 1);
        let hit = validator
            .cached(&last.unwrap())
            .expect("the newest entry is cached");
        assert_eq!(hit.sub, "user199");
        // An entry larger than the whole bound is not cached at all.
        validator.remember(sha256(b"huge"), big_caller(1, 1024 * 1024));
        assert!(validator.cached(&sha256(b"huge")).is_none());
    }

    #[test]
    fn typ_values() {
        for ok in [
            None,
            Some("at+jwt"),
            Some("AT+JWT"),
            Some("application/at+jwt"),
            Some("Application/At+JWT"),
            Some("JWT"),
            Some("jwt"),
            Some("application/jwt"),
        ] {
            assert!(check_typ(ok, false).is_ok(), "{ok:?}");
        }
        for bad in [
            Some("dpop+jwt"),
            Some("secevent+jwt"),
            Some("logout+jwt"),
            Some(""),
            Some("application/"),
            Some("JWS"),
        ] {
            let e = check_typ(bad, false).unwrap_err().to_string();
            assert!(e.contains("neither"), "{bad:?}: {e}");
        }
        assert!(check_typ(Some("at+jwt"), true).is_ok());
        assert!(check_typ(Some("application/AT+JWT"), true).is_ok());
        for refused in [None, Some("JWT"), Some("dpop+jwt")] {
            let e = check_typ(refused, true).unwrap_err().to_string();
            assert!(e.contains("OAUTH_REQUIRE_AT_JWT"), "{refused:?}: {e}");
        }
    }
}

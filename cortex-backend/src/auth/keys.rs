//! The issuer's verification keys: loaded from a JWKS (discovered or
//! configured) or given statically, refreshed on an unknown `kid` at most once
//! per cooldown.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse},
};
use serde_json::Value;

use super::AuthError;

/// Largest JWKS or metadata document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// A usable public key and the algorithms its family allows.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) family: &'static [Algorithm],
    /// The JWK's own `alg`, when it declares one: a token signed with
    /// another algorithm is refused.
    pub(crate) alg: Option<Algorithm>,
}

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Converts JWKS entries to keys, skipping symmetric (`oct`) keys,
/// unsupported curves and keys not meant for verifying signatures (`use`
/// other than `sig`, `key_ops` without `verify`, an encryption `alg`): a
/// JWKS must never turn into an HMAC secret, and an encryption key is not a
/// signing key.
pub(crate) fn usable_keys(set: &JwkSet) -> Vec<VerificationKey> {
    set.keys.iter().filter_map(usable_key).collect()
}

fn usable_key(jwk: &Jwk) -> Option<VerificationKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let alg = match common.key_algorithm {
        None => None,
        Some(declared) => Some(Algorithm::try_from(declared).ok()?),
    };
    let family: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey {
        kid: common.key_id.clone(),
        key,
        family,
        alg,
    })
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The issuer's metadata (RFC 8414, then OpenID discovery) names the JWKS.
    Discover,
    /// A JWKS URL.
    JwksUrl(String),
    /// Keys given in configuration (air-gapped setups); never refreshed.
    Static(JwkSet),
}

struct Loaded {
    keys: Arc<Vec<VerificationKey>>,
    fetched_at: Option<Instant>,
}

pub(crate) struct KeyStore {
    source: KeySource,
    issuer: String,
    allow_insecure_http: bool,
    cooldown: Duration,
    max_age: Duration,
    client: reqwest::Client,
    loaded: RwLock<Loaded>,
    jwks_url: tokio::sync::Mutex<Option<String>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyStore {
    pub(crate) fn new(
        source: KeySource,
        issuer: String,
        allow_insecure_http: bool,
        cooldown: Duration,
    ) -> Self {
        let keys = match &source {
            KeySource::Static(set) => usable_keys(set),
            _ => Vec::new(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            source,
            issuer,
            allow_insecure_http,
            cooldown,
            max_age: Duration::from_secs(600),
            client,
            loaded: RwLock::new(Loaded {
                keys: Arc::new(keys),
                fetched_at: None,
            }),
            jwks_url: tokio::sync::Mutex::new(None),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn snapshot(&self) -> (Arc<Vec<VerificationKey>>, Option<Instant>) {
        let loaded = crate::sync::read_lock(&self.loaded);
        (loaded.keys.clone(), loaded.fetched_at)
    }

    /// The key for `kid` (or the only key when the token has no `kid`),
    /// fetching or refreshing the JWKS when needed.
    pub(crate) async fn find(&self, kid: Option<&str>) -> Result<VerificationKey, AuthError> {
        let (keys, fetched_at) = self.snapshot();
        if matches!(self.source, KeySource::Static(_)) {
            return pick(&keys, kid).ok_or_else(|| unknown_kid(kid));
        }
        let stale = fetched_at.is_none_or(|t| t.elapsed() > self.max_age);
        match pick(&keys, kid) {
            Some(key) if !stale => Ok(key),
            Some(key) => {
                // Old keys: refresh, but keep the known key when the issuer
                // is unreachable (a key it removed is refused after a refresh).
                if let Err(e) = self.refresh_if_allowed().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; using the cached keys");
                    return Ok(key);
                }
                pick(&self.snapshot().0, kid).ok_or_else(|| unknown_kid(kid))
            }
            None => {
                self.refresh_if_allowed().await?;
                pick(&self.snapshot().0, kid).ok_or_else(|| unknown_kid(kid))
            }
        }
    }

    async fn refresh_if_allowed(&self) -> Result<(), AuthError> {
        let mut last = self.refresh.lock().await;
        let (_, fetched_at) = self.snapshot();
        if let (Some(attempt), Some(fetched)) = (*last, fetched_at) {
            // Someone refreshed while we waited, or we refreshed too recently.
            if fetched >= attempt && attempt.elapsed() < self.cooldown {
                return Ok(());
            }
        }
        if let Some(attempt) = *last
            && attempt.elapsed() < self.cooldown
        {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set = self.fetch_jwks().await?;
        let keys = usable_keys(&set);
        let mut loaded = crate::sync::write_lock(&self.loaded);
        *loaded = Loaded {
            keys: Arc::new(keys),
            fetched_at: Some(Instant::now()),
        };
        Ok(())
    }

    async fn fetch_jwks(&self) -> Result<JwkSet, AuthError> {
        let url = match &self.source {
            KeySource::JwksUrl(url) => url.clone(),
            KeySource::Discover => self.discover_jwks_url().await?,
            KeySource::Static(set) => return Ok(set.clone()),
        };
        let doc = self.get_json(&url).await?;
        serde_json::from_value(doc).map_err(|e| {
            AuthError::KeysUnavailable(format!("the JWKS at {url} is not a valid key set: {e}"))
        })
    }

    async fn discover_jwks_url(&self) -> Result<String, AuthError> {
        let mut cached = self.jwks_url.lock().await;
        if let Some(url) = cached.as_ref() {
            return Ok(url.clone());
        }
        let doc = fetch_issuer_metadata(&self.client, &self.issuer, self.allow_insecure_http)
            .await
            .map_err(AuthError::KeysUnavailable)?;
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AuthError::KeysUnavailable(format!(
                    "the metadata of {} has no jwks_uri",
                    self.issuer
                ))
            })?
            .to_string();
        *cached = Some(jwks.clone());
        Ok(jwks)
    }

    async fn get_json(&self, url: &str) -> Result<Value, AuthError> {
        get_json_capped(
            &self.client,
            url,
            self.allow_insecure_http,
            MAX_DOCUMENT_BYTES,
        )
        .await
        .map_err(AuthError::KeysUnavailable)
    }
}

/// Reads at most `max` bytes of a response body; a longer body is an
/// error (never buffered whole).
pub async fn read_body_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs a JSON document over a transport [`check_transport`] allows, with
/// a size cap. The error names the URL (for logs, not for callers).
pub async fn get_json_capped(
    client: &reqwest::Client,
    url: &str,
    allow_insecure_http: bool,
    max: usize,
) -> Result<Value, String> {
    check_transport(url, allow_insecure_http)?;
    let fail = |e: String| format!("GET {url}: {e}");
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("status {}", resp.status())));
    }
    let body = read_body_capped(resp, max).await.map_err(fail)?;
    serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
}

/// An authorization server's metadata: RFC 8414 first (the issuer's path
/// inserted after `/.well-known/oauth-authorization-server`), then OpenID
/// discovery; the first document whose `issuer` equals `issuer` exactly.
/// Plaintext only to loopback (unless allowed), at most 1 MiB.
pub async fn fetch_issuer_metadata(
    client: &reqwest::Client,
    issuer: &str,
    allow_insecure_http: bool,
) -> Result<Value, String> {
    let mut errors = Vec::new();
    for url in metadata_urls(issuer) {
        match get_json_capped(client, &url, allow_insecure_http, MAX_DOCUMENT_BYTES).await {
            Ok(doc) if doc.get("issuer").and_then(Value::as_str) == Some(issuer) => {
                return Ok(doc);
            }
            Ok(_) => errors.push(format!("{url} names another issuer")),
            Err(e) => errors.push(e),
        }
    }
    Err(format!(
        "no issuer metadata found for {issuer}: {}",
        errors.join("; ")
    ))
}

fn unknown_kid(kid: Option<&str>) -> AuthError {
    match kid {
        // The caller's own text, cut: it is echoed in the 401.
        Some(kid) => AuthError::Invalid(format!(
            "unknown signing key `{}`",
            kid.chars().take(64).collect::<String>()
        )),
        None => AuthError::Invalid("the token has no `kid` and the issuer has several keys".into()),
    }
}

fn pick(keys: &[VerificationKey], kid: Option<&str>) -> Option<VerificationKey> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
        None if keys.len() == 1 => keys.first().cloned(),
        None => None,
    }
}

/// RFC 8414 first (path inserted after the host), then OpenID discovery.
pub fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = Vec::new();
    if let Some((scheme, rest)) = trimmed.split_once("://") {
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        urls.push(format!(
            "{scheme}://{host}/.well-known/oauth-authorization-server{path}"
        ));
    }
    urls.push(format!("{trimmed}/.well-known/openid-configuration"));
    urls
}

/// Refuses plaintext `http://` to anything but a loopback host: keys fetched
/// in clear could be replaced on the way.
pub fn check_transport(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return if url.starts_with("https://") {
            Ok(())
        } else {
            Err(format!("{url} is not an http(s) URL"))
        };
    };
    if allow_insecure_http || is_loopback_authority(rest) {
        return Ok(());
    }
    Err(format!(
        "{url} uses plaintext http to a non-loopback host; use https \
         (or set CORTEX_ALLOW_INSECURE_HTTP=1 for a lab setup)"
    ))
}

/// Whether the authority part of a URL (after `scheme://`) is a loopback host.
pub fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(stripped) = authority.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_forms() {
        assert_eq!(
            metadata_urls("https://id.example.com/tenant1"),
            [
                "https://id.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://id.example.com/tenant1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://id.example.com/")[0],
            "https://id.example.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn plaintext_only_to_loopback() {
        assert!(check_transport("http://127.0.0.1:9/jwks", false).is_ok());
        assert!(check_transport("http://localhost/jwks", false).is_ok());
        assert!(check_transport("http://[::1]:80/jwks", false).is_ok());
        assert!(check_transport("https://idp.example.com/jwks", false).is_ok());
        assert!(check_transport("http://idp.example.com/jwks", false).is_err());
        assert!(check_transport("http://127.0.0.1.evil.com/jwks", false).is_err());
        assert!(check_transport("http://user@evil.com/jwks", false).is_err());
        assert!(check_transport("http://idp.example.com/jwks", true).is_ok());
        assert!(check_transport("ftp://x", true).is_err());
    }

    #[test]
    fn oct_keys_are_never_used() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}
        ]}))
        .unwrap();
        assert!(usable_keys(&set).is_empty());
    }
}

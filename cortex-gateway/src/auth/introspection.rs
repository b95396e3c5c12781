//! Optional RFC 7662 token introspection, for revocation.
//!
//! A JWT stays valid until it expires, even after the user is disabled or
//! the token revoked. With introspection configured, every validated token
//! is also checked at the authorization server's introspection endpoint,
//! and the answer is cached for a short time (`CORTEX_INTROSPECTION_CACHE_S`,
//! default 30 s): a revoked token stops working within that time. Cache
//! keys are SHA-256 digests of tokens, never the tokens. When the endpoint
//! cannot answer, the request is refused (fail closed).

// Public for the `testing` feature (the gateway's integration tests).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::{fmt::Write as _, sync::Arc, time::Duration};

use base64::Engine as _;
use serde::Deserialize;

use crate::store::tokens::{INTROSPECTION_CACHE_LIMITS as CACHE_LIMITS, TokenCache, TokenKey};

/// The cached answer for an active token.
const ACTIVE: &str = "active";
/// The cached answer for an inactive (revoked, expired) token.
const INACTIVE: &str = "inactive";
/// The largest introspection answer read (an answer is a small JSON object).
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How to reach the introspection endpoint.
#[derive(Clone)]
pub struct IntrospectionConfig {
    /// The endpoint URL (`CORTEX_INTROSPECTION_URL`).
    pub endpoint: String,
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// Its client secret (a secret: never logged).
    pub client_secret: String,
    /// How long an answer is reused.
    pub cache_ttl: Duration,
    /// Timeout of one introspection call.
    pub timeout: Duration,
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[masked]")
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

/// The endpoint could not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "token introspection failed ({0}); the request was refused because revocation could not be checked. \
     Retry shortly; operators: check CORTEX_INTROSPECTION_URL and the gateway's client credentials"
)]
pub struct IntrospectionError(pub String);

#[derive(Deserialize)]
struct Answer {
    active: bool,
}

/// The introspection client with its cache.
#[derive(Debug)]
pub struct Introspector {
    config: IntrospectionConfig,
    client: reqwest::Client,
    cache: Arc<TokenCache>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    out
}

impl Introspector {
    /// A client for `config`. Its HTTP client never follows redirects: a
    /// redirect would send the token (and the gateway's credentials) to
    /// another URL.
    pub fn new(config: IntrospectionConfig) -> Result<Self, IntrospectionError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| IntrospectionError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            config,
            client,
            cache: Arc::new(TokenCache::in_memory(CACHE_LIMITS)),
        })
    }

    /// Keeps the answers in `cache` (the gateway's store) instead of a
    /// cache of its own.
    #[must_use]
    pub(crate) fn with_cache(mut self, cache: Arc<TokenCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Whether the authorization server still considers `token` active.
    pub async fn is_active(&self, token: &str) -> Result<bool, IntrospectionError> {
        let key = TokenKey::new("", token);
        if let Some(active) = self.cache.get_map(&key, |a| a == ACTIVE).await {
            return Ok(active);
        }
        let active = self.ask(token).await?;
        let answer = if active { ACTIVE } else { INACTIVE };
        self.cache.put(key, answer, self.config.cache_ttl).await;
        Ok(active)
    }

    async fn ask(&self, token: &str) -> Result<bool, IntrospectionError> {
        let credentials = format!(
            "{}:{}",
            form_encode(&self.config.client_id),
            form_encode(&self.config.client_secret)
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let response = self
            .client
            .post(&self.config.endpoint)
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|e| {
                IntrospectionError(format!("endpoint unreachable: {}", e.without_url()))
            })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(IntrospectionError(format!(
                "endpoint answered with a redirect (HTTP {}), which is not followed; \
                 set CORTEX_INTROSPECTION_URL to the final URL",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(IntrospectionError(format!(
                "endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        let body = cortex_backend::auth::read_body_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| IntrospectionError(format!("endpoint: {e}")))?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|_| IntrospectionError("the answer has no boolean `active`".into()))?;
        Ok(answer.active)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};

    use super::*;

    #[derive(Clone, Default)]
    struct Server {
        revoked: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
    }

    async fn introspect(
        State(s): State<Server>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::Json<serde_json::Value> {
        s.calls.fetch_add(1, Ordering::SeqCst);
        let auth = headers["authorization"].to_str().unwrap().to_string();
        let expected = base64::engine::general_purpose::STANDARD.encode("gateway:s%C3%A9cret+%26");
        assert_eq!(auth, format!("Basic {expected}"));
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.starts_with("token=tok.en%2B1&"), "{body}");
        axum::Json(serde_json::json!({"active": !s.revoked.load(Ordering::SeqCst)}))
    }

    async fn start(server: Server) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/introspect", post(introspect))
            .with_state(server);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/introspect")
    }

    fn introspector(endpoint: String, ttl: Duration) -> Introspector {
        Introspector::new(IntrospectionConfig {
            endpoint,
            client_id: "gateway".into(),
            client_secret: "sécret &".into(),
            cache_ttl: ttl,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn answers_are_cached_and_revocation_shows_without_cache() {
        let server = Server::default();
        let url = start(server.clone()).await;
        let cached = introspector(url.clone(), Duration::from_secs(60));
        assert!(cached.is_active("tok.en+1").await.unwrap());
        assert!(cached.is_active("tok.en+1").await.unwrap());
        assert_eq!(server.calls.load(Ordering::SeqCst), 1);

        let uncached = introspector(url, Duration::ZERO);
        assert!(uncached.is_active("tok.en+1").await.unwrap());
        server.revoked.store(true, Ordering::SeqCst);
        assert!(!uncached.is_active("tok.en+1").await.unwrap());
        // Within its cache time the cached answer still holds (the documented window).
        assert!(cached.is_active("tok.en+1").await.unwrap());
    }

    #[tokio::test]
    async fn answers_are_kept_in_the_cache_it_is_given_keyed_by_digest() {
        let server = Server::default();
        let url = start(server.clone()).await;
        let shared = Arc::new(TokenCache::in_memory(CACHE_LIMITS));
        let first = introspector(url.clone(), Duration::from_secs(60)).with_cache(shared.clone());
        assert!(first.is_active("tok.en+1").await.unwrap());
        assert_eq!(
            shared.get(&TokenKey::new("", "tok.en+1")).await.as_deref(),
            Some(ACTIVE)
        );
        // Another introspector on the same store sees the answer.
        let second = introspector(url, Duration::from_secs(60)).with_cache(shared.clone());
        server.revoked.store(true, Ordering::SeqCst);
        assert!(second.is_active("tok.en+1").await.unwrap());
        assert_eq!(server.calls.load(Ordering::SeqCst), 1);
        assert!(!format!("{shared:?}").contains("tok.en"));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        drop(listener);
        let i = introspector(url, Duration::from_secs(60));
        let e = i.is_active("t").await.unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert!(!format!("{:?}", i.config).contains("sécret"));
        assert!(!format!("{i:?}").contains("sécret"));
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_answers_are_capped() {
        let elsewhere = Arc::new(AtomicUsize::new(0));
        let hits = elsewhere.clone();
        let app = Router::new()
            .route(
                "/moved",
                post(|| async {
                    (
                        axum::http::StatusCode::TEMPORARY_REDIRECT,
                        [("location", "/elsewhere")],
                    )
                }),
            )
            .route(
                "/elsewhere",
                post(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({"active": true}))
                }),
            )
            .route(
                "/huge",
                post(|| async {
                    let padding = "x".repeat(MAX_ANSWER_BYTES);
                    axum::Json(serde_json::json!({"active": true, "padding": padding}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let moved = introspector(format!("{base}/moved"), Duration::ZERO);
        let e = moved.is_active("t").await.unwrap_err().to_string();
        assert!(e.contains("redirect"), "{e}");
        assert_eq!(
            elsewhere.load(Ordering::SeqCst),
            0,
            "the token was re-posted"
        );

        let huge = introspector(format!("{base}/huge"), Duration::ZERO);
        let e = huge.is_active("t").await.unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }
}

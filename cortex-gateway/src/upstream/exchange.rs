//! Tokens obtained from the identity provider for one backend: RFC 8693
//! token exchange (`exchange` mode) or Entra ID's on-behalf-of grant (RFC
//! 7523 `jwt-bearer` with `requested_token_use=on_behalf_of`, `obo` mode).
//! Either trades the validated caller token for one issued to that backend
//! alone, cached until shortly before it expires (per caller token and
//! backend). One discovery, one client, one capped read, one cache for both.

// Public for the `testing` feature (the gateway's integration tests).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use cortex_backend::{
    Caller,
    auth::{check_transport, fetch_issuer_metadata, read_body_capped},
};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::settings::{BackendConfig, TokenExchangeConfig, TokenMode};
use super::{FailureKind, TokenFailure, UpstreamError};
use crate::store::tokens::{EXCHANGE_CACHE_LIMITS as CACHE_LIMITS, TokenCache, TokenKey};

/// Exchanged tokens are dropped this long before they expire.
const MARGIN: Duration = Duration::from_secs(30);
/// An exchanged token is reused for at most this long, whatever its
/// `expires_in` says (a huge value must not overflow `Instant`).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The largest token-endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Obtains and caches backend-specific tokens.
pub struct TokenExchanger {
    http: reqwest::Client,
    issuer: String,
    config: TokenExchangeConfig,
    allow_insecure_http: bool,
    endpoint: OnceCell<String>,
    cache: Arc<TokenCache>,
}

impl std::fmt::Debug for TokenExchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchanger")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

impl TokenExchanger {
    /// An exchanger using the gateway's client credentials; plaintext
    /// `http://` to a non-loopback token endpoint only with
    /// `allow_insecure_http`.
    pub fn new(
        http: reqwest::Client,
        issuer: String,
        config: TokenExchangeConfig,
        allow_insecure_http: bool,
    ) -> Self {
        Self {
            http,
            issuer,
            config,
            allow_insecure_http,
            endpoint: OnceCell::new(),
            cache: Arc::new(TokenCache::in_memory(CACHE_LIMITS)),
        }
    }

    /// Keeps the exchanged tokens in `cache` (the gateway's store) instead
    /// of a cache of its own.
    #[must_use]
    pub(crate) fn with_cache(mut self, cache: Arc<TokenCache>) -> Self {
        self.cache = cache;
        self
    }

    async fn token_endpoint(&self) -> Result<&str, String> {
        self.endpoint
            .get_or_try_init(|| async {
                if let Some(e) = &self.config.token_endpoint {
                    return Ok(e.clone());
                }
                let doc = fetch_issuer_metadata(&self.http, &self.issuer, self.allow_insecure_http)
                    .await?;
                let endpoint = doc
                    .get("token_endpoint")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!(
                            "the metadata of {} names no token_endpoint; set OAUTH_TOKEN_ENDPOINT",
                            self.issuer
                        )
                    })?;
                check_transport(endpoint, self.allow_insecure_http)
                    .map_err(|e| format!("the discovered token_endpoint is refused: {e}"))?;
                Ok(endpoint.to_string())
            })
            .await
            .map(String::as_str)
    }

    /// A token for `backend` on behalf of `caller`, by the grant of the
    /// backend's mode (`obo`: on-behalf-of; otherwise RFC 8693).
    pub async fn token_for(
        &self,
        caller: &Caller,
        backend: &BackendConfig,
    ) -> Result<String, UpstreamError> {
        let key = TokenKey::new(&backend.id, caller.token());
        if let Some(token) = self.cache.get(&key).await {
            return Ok(token);
        }
        let fail = |kind, detail| failure(backend, kind, detail);
        let endpoint = self
            .token_endpoint()
            .await
            .map_err(|detail| fail(FailureKind::Unavailable, detail))?;
        let obo = backend.token_mode == TokenMode::Obo;
        let scope = backend.obo_scope();
        let form: Vec<(&str, &str)> = if obo {
            // Entra documents the secret in the body (client_secret_post),
            // and refuses the RFC 8707 `resource` parameter: none is sent.
            vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", caller.token()),
                ("requested_token_use", "on_behalf_of"),
                ("scope", &scope),
                ("client_id", &self.config.client_id),
                ("client_secret", &self.config.client_secret),
            ]
        } else {
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", caller.token()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("audience", backend.exchange_audience()),
            ]
        };
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if !obo {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                form_encode(&self.config.client_id),
                form_encode(&self.config.client_secret)
            ));
            request = request.header("authorization", format!("Basic {basic}"));
        }
        let response = request.send().await.map_err(|e| {
            fail(
                FailureKind::Unavailable,
                format!("{endpoint} is unreachable: {e}"),
            )
        })?;
        let status = response.status().as_u16();
        let body = read_body_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| fail(FailureKind::Unavailable, format!("{endpoint}: {e}")))?;
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let token = doc
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|_| (200..300).contains(&status))
            .ok_or_else(|| {
                let reason = doc
                    .get("error_description")
                    .or_else(|| doc.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no access_token in the answer");
                let code = doc.get("error").and_then(Value::as_str);
                fail(
                    FailureKind::of_answer(status, code, reason),
                    format!("{endpoint} answered HTTP {status}: {reason}"),
                )
            })?
            .to_string();
        let lifetime = doc
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(300))
            .min(MAX_LIFETIME);
        self.cache
            .put(key, &token, lifetime.saturating_sub(MARGIN))
            .await;
        Ok(token)
    }
}

/// A failure to obtain `backend`'s token: the detail (URLs, connection
/// errors, the identity provider's words) goes to the log; callers get the
/// fixed sentence of its kind (see `TokenFailure`).
fn failure(backend: &BackendConfig, kind: FailureKind, detail: String) -> UpstreamError {
    tracing::warn!(backend = %backend.id, mode = backend.token_mode.name(), detail = %detail, "obtaining the backend's token failed");
    UpstreamError::Token(TokenFailure::new(backend, kind, detail))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{Json, Router, routing::get, routing::post};
    use cortex_backend::{auth::JwtValidator, testing::TestIssuer};
    use serde_json::json;

    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(super::form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }

    /// What the loopback authorization server answers.
    #[derive(Clone)]
    struct As {
        /// The `issuer` its metadata names (`None`: the real one).
        issuer: Option<String>,
        /// The `token_endpoint` its metadata names (`None`: its own).
        token_endpoint: Option<String>,
        /// The token answer.
        answer: Value,
    }

    /// Serves RFC 8414 metadata only at the path-inserted URL of issuer
    /// `http://<addr>/tenant`, and a token endpoint.
    async fn serve(r#as: As) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let issuer = format!("{base}/tenant");
        let metadata = json!({
            "issuer": r#as.issuer.clone().unwrap_or(issuer.clone()),
            "token_endpoint": r#as.token_endpoint.clone().unwrap_or(format!("{base}/token")),
        });
        let answer = r#as.answer.clone();
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server/tenant",
                get(move || async move { Json(metadata) }),
            )
            .route("/token", post(move || async move { Json(answer) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    }

    async fn caller() -> (TestIssuer, Arc<Caller>) {
        let issuer = TestIssuer::start().await.unwrap();
        let token = issuer
            .token("https://mcp.example.com/mcp")
            .sub("ana")
            .mint();
        let v = JwtValidator::new(issuer.jwt_config("https://mcp.example.com/mcp")).unwrap();
        let caller = v.validate(&token).await.unwrap();
        (issuer, caller)
    }

    fn exchanger(issuer: String) -> TokenExchanger {
        TokenExchanger::new(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            issuer,
            TokenExchangeConfig {
                token_endpoint: None,
                client_id: "gateway".into(),
                client_secret: "gateway-secret-0123".into(),
            },
            false,
        )
    }

    fn good() -> As {
        As {
            issuer: None,
            token_endpoint: None,
            answer: json!({"access_token": "for-crm", "expires_in": 300}),
        }
    }

    /// Serves `r#as`, then asks twice (the second answer comes from the
    /// cache) for a token; `configured`: the token endpoint is set in the
    /// configuration instead of discovered.
    async fn exchange(r#as: As, configured: bool) -> Result<String, UpstreamError> {
        let (_issuer, caller) = caller().await;
        let backend = BackendConfig::new("crm", "http://127.0.0.1:9");
        let served = serve(r#as).await;
        let mut x = exchanger(served.clone());
        if configured {
            x.config.token_endpoint = Some(served.replace("/tenant", "/token"));
        }
        let first = x.token_for(&caller, &backend).await?;
        assert_eq!(x.token_for(&caller, &backend).await?, first);
        Ok(first)
    }

    #[tokio::test]
    async fn discovery_uses_the_rfc_8414_path_form_and_checks_the_issuer() {
        assert_eq!(exchange(good(), false).await.unwrap(), "for-crm");
        let other = As {
            issuer: Some("https://evil.example.com/tenant".into()),
            ..good()
        };
        let e = exchange(other, false).await.unwrap_err();
        assert!(e.to_string().contains("another issuer"), "{e}");
    }

    #[tokio::test]
    async fn a_plaintext_remote_token_endpoint_is_refused() {
        let plaintext = As {
            token_endpoint: Some("http://idp.example.com/token".into()),
            ..good()
        };
        let e = exchange(plaintext, false).await.unwrap_err();
        assert!(e.to_string().contains("plaintext"), "{e}");
    }

    #[tokio::test]
    async fn a_huge_expires_in_does_not_panic() {
        for configured in [true, false] {
            let forever = As {
                answer: json!({"access_token": "long", "expires_in": u64::MAX}),
                ..good()
            };
            assert_eq!(exchange(forever, configured).await.unwrap(), "long");
        }
    }

    #[tokio::test]
    async fn tokens_are_kept_per_backend_in_the_cache_it_is_given() {
        let (_issuer, caller) = caller().await;
        let served = serve(good()).await;
        let shared = Arc::new(TokenCache::in_memory(CACHE_LIMITS));
        let x = exchanger(served).with_cache(shared.clone());
        let crm = BackendConfig::new("crm", "http://127.0.0.1:9");
        assert_eq!(x.token_for(&caller, &crm).await.unwrap(), "for-crm");
        let key = TokenKey::new("crm", caller.token());
        assert_eq!(shared.get(&key).await.as_deref(), Some("for-crm"));
        assert_eq!(
            shared.get(&TokenKey::new("erp", caller.token())).await,
            None
        );
        shared
            .put(key, "from-the-store", Duration::from_secs(60))
            .await;
        assert_eq!(x.token_for(&caller, &crm).await.unwrap(), "from-the-store");
    }

    #[tokio::test]
    async fn a_huge_answer_is_refused() {
        let huge = As {
            answer: json!({"access_token": "x".repeat(MAX_ANSWER_BYTES), "expires_in": 60}),
            ..good()
        };
        let e = exchange(huge, true).await.unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}

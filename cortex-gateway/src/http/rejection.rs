//! Every refusal the HTTP layer answers itself, before (or instead of) the
//! MCP layer: one type with a variant per refusal, and one
//! [`IntoResponse`] that writes its status, body and headers.
//!
//! The refusals of the perimeter, the body limit and the budgets are
//! JSON-RPC error objects without an `id` (the request was never read as
//! JSON-RPC); the authentication refusals are RFC 6750 answers, an
//! `error`/`error_description` object with a `WWW-Authenticate` challenge.
//! The store and auth modules describe what went wrong as plain data
//! ([`RateLimited`], [`TooManyStreams`], [`Challenge`]); only this file
//! knows how it looks on the wire.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    auth::{Challenge, ChallengeError, introspection::IntrospectionError},
    mcp::jsonrpc::{self, INVALID_REQUEST, RpcError, SERVER_ERROR},
    store::ratelimit::{RateLimited, TooManyStreams},
};

/// `Retry-After` of the refusals that do not compute one: long enough for
/// a stream to close or an authorization server to come back.
const RETRY_SOON_SECS: u64 = 5;

/// Why the HTTP layer refused a request. The message (`Display`) says what
/// to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Rejection {
    /// 431: the request headers exceed the limit.
    #[error(
        "request headers total {size} bytes, more than the {limit} allowed; send fewer or smaller headers"
    )]
    HeadersTooLarge {
        /// Their total size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// 504: no response headers within the per-request deadline.
    #[error(
        "the request did not finish within the gateway's deadline of {ms} ms; retry, or ask \
         for less (the operator sets CORTEX_REQUEST_TIMEOUT_MS)"
    )]
    Deadline {
        /// The deadline in milliseconds.
        ms: u128,
    },
    /// 403: a `Host` a loopback listener does not answer (DNS rebinding).
    #[error(
        "host `{0}` is not allowed on this loopback listener (DNS rebinding defence); \
         use localhost or 127.0.0.1, or add the name to CORTEX_ALLOWED_HOSTS"
    )]
    HostNotAllowed(String),
    /// 403: a browser `Origin` not on the allow-list.
    #[error(
        "origin {0} is not allowed; if it is yours, add it to CORTEX_ALLOWED_ORIGINS \
         (exact origin or *.suffix)"
    )]
    OriginNotAllowed(String),
    /// 413: the body exceeds the request limit.
    #[error(
        "the request body is larger than the gateway's limit of {limit} bytes; \
         send smaller arguments (the operator sets max_request_bytes)"
    )]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 400: the body could not be read.
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    /// 401 or 403 with a `WWW-Authenticate` challenge.
    #[error("{}", .0.description)]
    Auth(Challenge),
    /// 429: over the caller's request budget.
    #[error(
        "rate limit exceeded: too many requests from this caller; retry after {} s \
         or ask the gateway operator for a larger budget (CORTEX_RATE_LIMIT_PER_MINUTE)",
        .0.retry_after_secs()
    )]
    RateLimited(RateLimited),
    /// 429: the caller has as many notification streams open as allowed.
    #[error(
        "too many open notification streams for this caller (at most {}); \
         close one before opening another",
        .0.cap
    )]
    TooManyStreams(TooManyStreams),
    /// 503: introspection could not say whether the token is revoked
    /// (fail closed).
    #[error(transparent)]
    IntrospectionUnavailable(IntrospectionError),
    /// 503: the shared store cannot say whether the token's grant was
    /// revoked (fail closed).
    #[error(
        "the gateway cannot check the token's grant right now (its shared store is \
         unavailable); retry in a few seconds"
    )]
    StoreUnavailable(String),
}

impl Rejection {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::HostNotAllowed(_) | Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::Auth(c) => match c.error {
                ChallengeError::InsufficientScope => StatusCode::FORBIDDEN,
                ChallengeError::Unauthorized | ChallengeError::InvalidToken => {
                    StatusCode::UNAUTHORIZED
                }
            },
            Self::RateLimited(_) | Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::IntrospectionUnavailable(_) | Self::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The body: a JSON-RPC error object without `id`, or for the
    /// authentication refusals the RFC 6750 `error` object.
    fn body(&self) -> Value {
        let code = match self {
            Self::Auth(c) => {
                return json!({
                    "error": c.error.as_str(),
                    "error_description": c.description,
                });
            }
            Self::HostNotAllowed(_)
            | Self::OriginNotAllowed(_)
            | Self::BodyTooLarge { .. }
            | Self::BodyUnreadable(_) => INVALID_REQUEST,
            Self::HeadersTooLarge { .. }
            | Self::Deadline { .. }
            | Self::RateLimited(_)
            | Self::TooManyStreams(_)
            | Self::IntrospectionUnavailable(_)
            | Self::StoreUnavailable(_) => SERVER_ERROR,
        };
        jsonrpc::error_response(None, &RpcError::new(code, self.to_string()))
    }

    /// `Retry-After` in seconds, for the refusals that pass with time.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited(r) => Some(r.retry_after_secs()),
            Self::TooManyStreams(_)
            | Self::IntrospectionUnavailable(_)
            | Self::StoreUnavailable(_) => Some(RETRY_SOON_SECS),
            _ => None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(
            serde_json::to_vec(&self.body()).unwrap_or_default(),
        ));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::Auth(c) = &self {
            // A challenge that cannot be a header value (never, as auth
            // builds them) is left out rather than sent broken.
            if let Ok(v) = HeaderValue::from_str(&c.header) {
                h.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }
}

impl From<RateLimited> for Rejection {
    fn from(e: RateLimited) -> Self {
        Self::RateLimited(e)
    }
}

impl From<TooManyStreams> for Rejection {
    fn from(e: TooManyStreams) -> Self {
        Self::TooManyStreams(e)
    }
}

impl From<Challenge> for Rejection {
    fn from(c: Challenge) -> Self {
        Self::Auth(c)
    }
}

impl From<IntrospectionError> for Rejection {
    fn from(e: IntrospectionError) -> Self {
        Self::IntrospectionUnavailable(e)
    }
}

/// The stream cap is checked in the MCP layer (a `subscriptions/listen`
/// request or a legacy GET), which answers with this response; the
/// answer's shape is still decided here, with the other refusals.
impl IntoResponse for TooManyStreams {
    fn into_response(self) -> Response {
        Rejection::TooManyStreams(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::Bytes, http::HeaderMap};
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::auth::{AuthRejection, ResourceServer, ResourceSettings};

    /// Status, every header as `name: value` (in order), and the body.
    async fn wire(r: Response) -> (StatusCode, Vec<String>, String) {
        let status = r.status();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn server(required: &[&str]) -> ResourceServer {
        let required_scopes: Vec<String> = required.iter().map(|s| s.to_string()).collect();
        ResourceServer::new(
            ResourceSettings {
                canonical_uri: "https://mcp.example.com/mcp".into(),
                metadata_url: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
                    .into(),
                issuer: "https://id.example.com".into(),
                required_scopes,
            },
            cortex_backend::auth::JwtConfig::new(
                "https://id.example.com",
                vec!["https://mcp.example.com/mcp".into()],
            ),
        )
        .unwrap()
    }

    const JSON: &str = "content-type: application/json";

    async fn pinned(r: Response, status: StatusCode, headers: &[&str], body: &str) {
        let (s, h, b) = wire(r).await;
        assert_eq!(s, status);
        assert_eq!(h, headers);
        assert_eq!(b, body);
    }

    #[tokio::test]
    async fn headers_too_large_is_431() {
        let r = Rejection::HeadersTooLarge {
            size: 9000,
            limit: 8192,
        };
        pinned(
            r.into_response(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &[JSON],
            r#"{"error":{"code":-32000,"message":"request headers total 9000 bytes, more than the 8192 allowed; send fewer or smaller headers"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn deadline_is_504() {
        let r = Rejection::Deadline { ms: 1500 }.into_response();
        pinned(
            r,
            StatusCode::GATEWAY_TIMEOUT,
            &[JSON],
            r#"{"error":{"code":-32000,"message":"the request did not finish within the gateway's deadline of 1500 ms; retry, or ask for less (the operator sets CORTEX_REQUEST_TIMEOUT_MS)"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    fn guard() -> super::super::origin::OriginGuard {
        use super::super::origin::{HostPolicy, OriginGuard, OriginPolicy};
        OriginGuard::new(
            OriginPolicy::new("http://127.0.0.1:3213/mcp", ["https://*.corp.example"]).unwrap(),
            HostPolicy::loopback("http://127.0.0.1:3213/mcp", []),
        )
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn foreign_host_and_origin_are_403() {
        let r = guard()
            .check(&headers(&[(header::HOST, "evil.example:3213")]))
            .unwrap()
            .into_response();
        pinned(
            r,
            StatusCode::FORBIDDEN,
            &[JSON],
            r#"{"error":{"code":-32600,"message":"host `evil.example:3213` is not allowed on this loopback listener (DNS rebinding defence); use localhost or 127.0.0.1, or add the name to CORTEX_ALLOWED_HOSTS"},"jsonrpc":"2.0"}"#,
        )
        .await;
        let r = guard()
            .check(&headers(&[
                (header::HOST, "127.0.0.1:3213"),
                (header::ORIGIN, "https://evil.example"),
            ]))
            .unwrap()
            .into_response();
        pinned(
            r,
            StatusCode::FORBIDDEN,
            &[JSON],
            r#"{"error":{"code":-32600,"message":"origin https://evil.example is not allowed; if it is yours, add it to CORTEX_ALLOWED_ORIGINS (exact origin or *.suffix)"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn rate_limited_is_429_with_retry_after() {
        let r = Rejection::from(RateLimited {
            retry_after: Duration::from_millis(1200),
        })
        .into_response();
        pinned(
            r,
            StatusCode::TOO_MANY_REQUESTS,
            &[JSON, "retry-after: 2"],
            r#"{"error":{"code":-32000,"message":"rate limit exceeded: too many requests from this caller; retry after 2 s or ask the gateway operator for a larger budget (CORTEX_RATE_LIMIT_PER_MINUTE)"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn too_many_streams_is_429_with_retry_after() {
        let r = TooManyStreams { cap: 3 }.into_response();
        pinned(
            r,
            StatusCode::TOO_MANY_REQUESTS,
            &[JSON, "retry-after: 5"],
            r#"{"error":{"code":-32000,"message":"too many open notification streams for this caller (at most 3); close one before opening another"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn introspection_down_is_503_with_retry_after() {
        let r = Rejection::from(IntrospectionError("timed out".into())).into_response();
        pinned(
            r,
            StatusCode::SERVICE_UNAVAILABLE,
            &[JSON, "retry-after: 5"],
            r#"{"error":{"code":-32000,"message":"token introspection failed (timed out); the request was refused because revocation could not be checked. Retry shortly; operators: check CORTEX_INTROSPECTION_URL and the gateway's client credentials"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    fn catalog() -> Vec<String> {
        vec![
            "crm.write".into(),
            "offline_access".into(),
            "crm.read".into(),
        ]
    }

    #[tokio::test]
    async fn no_token_is_401_with_a_challenge() {
        let r = server(&[]).challenge(
            AuthRejection::Unauthenticated {
                presented: false,
                reason: "no token".into(),
            },
            catalog,
        );
        pinned(
            Rejection::from(r).into_response(),
            StatusCode::UNAUTHORIZED,
            &[
                JSON,
                r#"www-authenticate: Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="crm.read crm.write""#,
            ],
            r#"{"error":"unauthorized","error_description":"no token; get a token from https://id.example.com for resource https://mcp.example.com/mcp"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn a_bad_token_is_401_invalid_token_with_a_quoted_reason() {
        let r = server(&["mcp.use"]).challenge(
            AuthRejection::Unauthenticated {
                presented: true,
                reason: "unknown \"kid\" \\ é".into(),
            },
            catalog,
        );
        pinned(
            Rejection::from(r).into_response(),
            StatusCode::UNAUTHORIZED,
            &[
                JSON,
                r#"www-authenticate: Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp.use", error="invalid_token", error_description="unknown kid  ""#,
            ],
            r#"{"error":"invalid_token","error_description":"unknown \"kid\" \\ é; get a token from https://id.example.com for resource https://mcp.example.com/mcp"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn a_missing_baseline_scope_is_403_insufficient_scope() {
        let r = server(&["mcp.use"]).challenge(
            AuthRejection::InsufficientScope {
                needed: vec!["crm.read".into(), "mcp.use".into()],
            },
            catalog,
        );
        pinned(
            Rejection::from(r).into_response(),
            StatusCode::FORBIDDEN,
            &[
                JSON,
                r#"www-authenticate: Bearer error="insufficient_scope", scope="crm.read mcp.use", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", error_description="this gateway requires the scopes mcp.use""#,
            ],
            r#"{"error":"insufficient_scope","error_description":"every caller of this gateway needs the scopes mcp.use; ask for them when you get your token"}"#,
        )
        .await;
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_and_a_broken_one_400() {
        let r = super::super::read_body(Body::from(vec![b'x'; 10]), 4)
            .await
            .unwrap_err()
            .into_response();
        pinned(
            r,
            StatusCode::PAYLOAD_TOO_LARGE,
            &[JSON],
            r#"{"error":{"code":-32600,"message":"the request body is larger than the gateway's limit of 4 bytes; send smaller arguments (the operator sets max_request_bytes)"},"jsonrpc":"2.0"}"#,
        )
        .await;
        let broken = Body::from_stream(futures::stream::iter([Err::<Bytes, _>(
            std::io::Error::other("connection reset"),
        )]));
        let r = super::super::read_body(broken, 4)
            .await
            .unwrap_err()
            .into_response();
        pinned(
            r,
            StatusCode::BAD_REQUEST,
            &[JSON],
            r#"{"error":{"code":-32600,"message":"the request body could not be read: connection reset"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }
}

//! Pinned answers of every HTTP refusal.

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{
        body::{Body, Bytes},
        http::{HeaderMap, HeaderValue, StatusCode, header},
        response::{IntoResponse, Response},
    };
    use http_body_util::BodyExt as _;

    use crate::{
        auth::{AuthRejection, ResourceServer, ResourceSettings, introspection::IntrospectionError},
        store::ratelimit::{RateLimited, TooManyStreams},
    };

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

    #[tokio::test]
    async fn headers_too_large_is_431() {
        let r = super::super::perimeter::json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers total {} bytes, more than the {} allowed; send fewer or smaller headers",
                9000, 8192
            ),
        );
        assert_eq!(
            wire(r).await,
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                vec![JSON.into()],
                r#"{"error":{"code":-32000,"message":"request headers total 9000 bytes, more than the 8192 allowed; send fewer or smaller headers"},"jsonrpc":"2.0"}"#.into()
            )
        );
    }

    async fn pinned(r: Response, status: StatusCode, headers: &[&str], body: &str) {
        let (s, h, b) = wire(r).await;
        assert_eq!(s, status);
        assert_eq!(h, headers);
        assert_eq!(b, body);
    }

    #[tokio::test]
    async fn deadline_is_504() {
        let r = super::super::perimeter::json_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request did not finish within the gateway's deadline of {} ms; retry, or ask \
                 for less (the operator sets CORTEX_REQUEST_TIMEOUT_MS)",
                1500
            ),
        );
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
            .unwrap();
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
            .unwrap();
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
        let r = RateLimited {
            retry_after: Duration::from_millis(1200),
        }
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
        let r = super::super::admit::Refused::Unavailable(IntrospectionError("timed out".into()))
            .into_response(|| unreachable!());
        pinned(
            r,
            StatusCode::SERVICE_UNAVAILABLE,
            &[JSON, "retry-after: 5"],
            r#"{"error":{"code":-32000,"message":"token introspection failed (timed out); the request was refused because revocation could not be checked. Retry shortly; operators: check CORTEX_INTROSPECTION_URL and the gateway's client credentials"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }

    fn catalog() -> Vec<String> {
        vec!["crm.write".into(), "offline_access".into(), "crm.read".into()]
    }

    #[tokio::test]
    async fn no_token_is_401_with_a_challenge() {
        let r = server(&[]).reject(
            AuthRejection::Unauthenticated {
                presented: false,
                reason: "no token".into(),
            },
            catalog,
        );
        pinned(
            r,
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
        let r = server(&["mcp.use"]).reject(
            AuthRejection::Unauthenticated {
                presented: true,
                reason: "unknown \"kid\" \\ é".into(),
            },
            catalog,
        );
        pinned(
            r,
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
        let r = server(&["mcp.use"]).reject(
            AuthRejection::InsufficientScope {
                needed: vec!["crm.read".into(), "mcp.use".into()],
            },
            catalog,
        );
        pinned(
            r,
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
            .unwrap_err();
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
        let r = super::super::read_body(broken, 4).await.unwrap_err();
        pinned(
            r,
            StatusCode::BAD_REQUEST,
            &[JSON],
            r#"{"error":{"code":-32600,"message":"the request body could not be read: connection reset"},"jsonrpc":"2.0"}"#,
        )
        .await;
    }
}

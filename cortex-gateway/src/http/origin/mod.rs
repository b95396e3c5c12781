//! The browser-facing perimeter: `Origin` allow-list, CORS, and the `Host`
//! check against DNS rebinding. It runs before authentication, so a page
//! on a foreign origin is refused (403) whatever token it carries.
//!
//! Requests without `Origin` (desktop clients, CLIs, servers) pass: only
//! browsers send it, and only browsers need protecting from cross-site
//! use. Allowed origins get CORS answers with the MCP headers exposed.

mod policy;

use std::future::Future;

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};

pub(crate) use policy::{HostName, HostPolicy, OriginPolicy};

use super::rejection::Rejection;

/// The port of `uri` when its host is a loopback literal or `localhost`
/// (the default port of its scheme when it names none).
pub(crate) fn loopback_port(uri: &str) -> Option<u16> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = HostName::parse(authority)?;
    if !host.is_loopback() {
        return None;
    }
    let port = authority
        .rsplit_once(':')
        .filter(|(_, p)| !p.contains(']'))
        .and_then(|(_, p)| p.parse().ok());
    port.or(match scheme.to_ascii_lowercase().as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })
}

/// Request headers a browser client may send.
const ALLOW_HEADERS: &str = "authorization, content-type, accept, last-event-id, \
     mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, x-cortex-backends, x-cortex-tool-mode";
/// Response headers a browser client may read.
const EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate, retry-after";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The origin and host checks plus CORS, as one middleware.
#[derive(Debug, Clone)]
pub(crate) struct OriginGuard {
    origins: OriginPolicy,
    hosts: HostPolicy,
}

impl OriginGuard {
    /// A guard from its two policies.
    pub(crate) fn new(origins: OriginPolicy, hosts: HostPolicy) -> Self {
        Self { origins, hosts }
    }

    /// The refusal for a request, if any: a bad `Host` on a loopback
    /// listener, or a present `Origin` not on the list.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Option<Rejection> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !self.hosts.allows(host) {
            return Some(Rejection::HostNotAllowed(
                host.unwrap_or("(none)").to_string(),
            ));
        }
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().unwrap_or("(not text)");
        (!self.origins.allows(text)).then(|| Rejection::OriginNotAllowed(text.to_string()))
    }

    /// Answers a request: refusal, preflight, or the response of `inner`
    /// with CORS headers for an allowed origin.
    pub(crate) async fn guard<F, Fut>(&self, request: Request, inner: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        if let Some(refused) = self.check(request.headers()) {
            return refused.into_response();
        }
        let origin = request.headers().get(header::ORIGIN).cloned();
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut response = if preflight && origin.is_some() {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        } else {
            inner(request).await
        };
        if let Some(origin) = origin {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
            h.append(header::VARY, HeaderValue::from_static("origin"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> OriginGuard {
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

    #[test]
    fn no_origin_passes_foreign_origin_and_bad_host_do_not() {
        let g = guard();
        assert!(
            g.check(&headers(&[(header::HOST, "127.0.0.1:3213")]))
                .is_none()
        );
        assert!(
            g.check(&headers(&[
                (header::HOST, "127.0.0.1:3213"),
                (header::ORIGIN, "https://chat.corp.example")
            ]))
            .is_none()
        );
        let refused = g
            .check(&headers(&[
                (header::HOST, "127.0.0.1:3213"),
                (header::ORIGIN, "https://evil.example"),
            ]))
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let rebinding = g
            .check(&headers(&[(header::HOST, "evil.example:3213")]))
            .unwrap();
        assert_eq!(rebinding.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn the_loopback_port_of_a_uri() {
        assert_eq!(loopback_port("http://127.0.0.1:3213/mcp"), Some(3213));
        assert_eq!(loopback_port("http://localhost/mcp"), Some(80));
        assert_eq!(loopback_port("https://[::1]/mcp"), Some(443));
        assert_eq!(loopback_port("http://[::1]:9/"), Some(9));
        assert_eq!(loopback_port("https://mcp.example.com:3213/mcp"), None);
        assert_eq!(loopback_port("http://127.0.0.1.evil.example:3213/"), None);
    }
}

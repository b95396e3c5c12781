//! The checks every request passes before any handler, in one middleware:
//! the audit scope (outermost, so refusals get a line too), the `Origin`
//! and `Host` checks with CORS (before any token is looked at), then the
//! header-size limit and the per-request deadline.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{origin::OriginGuard, rejection::Rejection};
use crate::audit::Auditor;

/// The header-size limit and the deadline to response headers.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Per-request deadline to response headers (streams are not cut).
    pub(crate) deadline: Duration,
    /// Limit on the total size of request headers.
    pub(crate) max_header_bytes: usize,
}

/// The checks every request passes (one boxed future and one service
/// clone per request instead of one per check).
pub(crate) struct RequestChecks {
    pub(crate) auditor: Arc<Auditor>,
    pub(crate) origin: OriginGuard,
    pub(crate) limits: Limits,
}

impl RequestChecks {
    /// Audit (outermost, so refusals get a line too), then origin/host/CORS
    /// (before any token is looked at), then limits, then `handler`. The
    /// middleware of the router runs this with the routes as `handler`;
    /// the server runs it with the MCP POST handler directly (the hot path,
    /// see `front.rs`).
    ///
    /// A plain function returning [`Self::run_from`]'s future: an `async fn`
    /// here would hold the request both as its argument and inside that
    /// future.
    pub(crate) fn run<'a, F, Fut>(
        &'a self,
        request: Request,
        handler: F,
    ) -> impl Future<Output = Response> + 'a
    where
        F: FnOnce(Request) -> Fut + 'a,
        Fut: Future<Output = Response> + 'a,
    {
        let peer = crate::audit::connect_peer(&request);
        self.run_from(request, peer, handler)
    }

    /// [`Self::run`] for a request from `peer`, given directly rather than
    /// in a `ConnectInfo` extension (the server's hot path stores none).
    pub(crate) async fn run_from<F, Fut>(
        &self,
        request: Request,
        peer: Option<std::net::IpAddr>,
        handler: F,
    ) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        crate::audit::audited_from(&self.auditor, request, peer, |request| {
            self.origin
                .guard(request, |request| limits(&self.limits, request, handler))
        })
        .await
    }
}

pub(crate) async fn layer(
    State(checks): State<Arc<RequestChecks>>,
    request: Request,
    next: Next,
) -> Response {
    checks.run(request, |request| next.run(request)).await
}

/// Header size limit and per-request deadline (to response headers, so
/// streams are not cut).
async fn limits<F, Fut>(limits: &Limits, request: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let size: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limits.max_header_bytes {
        crate::audit::note_outcome("rejected", Some("headers_too_large"));
        return Rejection::HeadersTooLarge {
            size,
            limit: limits.max_header_bytes,
        }
        .into_response();
    }
    match tokio::time::timeout(limits.deadline, handler(request)).await {
        Ok(response) => response,
        Err(_) => {
            crate::audit::note_outcome("error", Some("deadline"));
            Rejection::Deadline {
                ms: limits.deadline.as_millis(),
            }
            .into_response()
        }
    }
}

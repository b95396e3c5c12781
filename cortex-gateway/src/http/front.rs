//! The service [`crate::Gateway::serve`] runs for each connection.
//!
//! `POST` on the MCP path (every agent request) goes straight to its handler
//! inside the same perimeter the router's middleware applies (audit, origin,
//! limits); everything else goes through the router. The result is the same
//! as routing every request: the shortcut only skips the router's own
//! per-request work (route lookup, boxed service clones, the middleware's
//! `Next`), about a dozen allocations on the hot path.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::Method,
    response::Response,
};
use tower::{Service, ServiceExt as _};

use super::watch::Activity;
use super::{App, RequestChecks};

/// Makes one [`ConnectionService`] per accepted connection, remembering its peer
/// address (what `into_make_service_with_connect_info` does for the router).
/// Cloned to every serving thread.
#[derive(Clone)]
pub(crate) struct ConnectionServices {
    shared: Arc<Shared>,
}

/// What every connection's service uses.
struct Shared {
    app: Arc<App>,
    checks: Arc<RequestChecks>,
    /// Already wrapped in the perimeter middleware; for every other request.
    router: Router,
    /// The MCP path; `None` on a listener that serves only `router`.
    path: Option<String>,
}

impl ConnectionServices {
    /// The services of `app`, with `router` for every other request.
    pub(crate) fn new(app: Arc<App>, router: Router) -> Self {
        Self {
            shared: Arc::new(Shared {
                checks: app.checks.clone(),
                path: Some(app.mcp_path.clone()),
                app,
                router,
            }),
        }
    }

    /// The services of a listener that serves `router` alone (the
    /// separate metrics listener): no MCP path.
    pub(crate) fn routes_only(app: Arc<App>, router: Router) -> Self {
        Self {
            shared: Arc::new(Shared {
                checks: app.checks.clone(),
                path: None,
                app,
                router,
            }),
        }
    }

    /// A copy for one serving thread: the same gateway, but a reference
    /// count of its own, so that the clone each request makes is not a
    /// write to memory every serving thread writes.
    pub(crate) fn for_thread(&self) -> Self {
        Self {
            shared: Arc::new(Shared {
                app: self.shared.app.clone(),
                checks: self.shared.checks.clone(),
                router: self.shared.router.clone(),
                path: self.shared.path.clone(),
            }),
        }
    }

    /// The service of a connection from `peer`, counting its requests in
    /// `activity`.
    pub(crate) fn service(&self, peer: SocketAddr, activity: Arc<Activity>) -> ConnectionService {
        ConnectionService {
            shared: self.shared.clone(),
            peer,
            activity,
        }
    }
}

/// The per-connection service.
#[derive(Clone)]
pub(crate) struct ConnectionService {
    shared: Arc<Shared>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl ConnectionService {
    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl Service<Request> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let in_flight = self.activity.begin();
        if request.method() == Method::POST
            && self.shared.path.as_deref() == Some(request.uri().path())
        {
            // No `ConnectInfo` extension here: the MCP handler reads the
            // client address only through the audit scope, which gets it
            // directly.
            let shared = self.shared.clone();
            let peer = Some(self.peer.ip());
            return Box::pin(async move {
                let response = shared
                    .checks
                    .run_from(request, peer, |request| {
                        super::post_mcp_on(&shared.app, request)
                    })
                    .await;
                drop(in_flight);
                Ok(response)
            });
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let routed = self.shared.router.clone().oneshot(request);
        Box::pin(async move {
            let response = routed.await;
            drop(in_flight);
            response
        })
    }
}

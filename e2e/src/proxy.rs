//! A header-injecting forwarder for the conformance suite.
//!
//! The official suite connects without an `Authorization` header. Rather
//! than open an auth bypass in the gateway, the harness puts this proxy in
//! front of it: every request is forwarded unchanged (method, path, `Host`,
//! `Origin`, body, streamed responses) except that `Authorization: Bearer
//! <token>` is set. The gateway still validates that token like any other.

use std::{net::SocketAddr, sync::Arc};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{AUTHORIZATION, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, task::JoinSet};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A running proxy; dropping it stops it and its connections.
#[derive(Debug)]
pub struct BearerProxy {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl BearerProxy {
    /// Serves on `listener`, forwarding to `upstream` with `token` as bearer.
    pub fn start(
        listener: TcpListener,
        upstream: SocketAddr,
        token: &str,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let shared = Arc::new((client, bearer, upstream));
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move {
                            let (client, bearer, upstream) = &*shared;
                            Ok::<_, std::convert::Infallible>(
                                forward(client, bearer, *upstream, request).await,
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, tasks })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and ends the open connections.
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    bearer: &HeaderValue,
    upstream: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match format!("http://{upstream}{path}").parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &format!("bad request target: {e}")),
    }
    request.headers_mut().insert(AUTHORIZATION, bearer.clone());
    match client.request(request).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => failure(
            StatusCode::BAD_GATEWAY,
            &format!("the proxy could not reach the gateway at {upstream}: {e}"),
        ),
    }
}

fn failure(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

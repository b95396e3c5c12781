//! The `proxy` role: a bare reverse proxy, the cost floor of one extra hop.
//!
//! It forwards every request to one upstream over pooled keep-alive
//! connections and streams the bytes back: no parsing, no auth, no logging.
//! It runs its connections the way `cortex-gateway serve` does (one
//! single-threaded runtime per CPU, a client pool per thread), so that the
//! floor is built like the gateway it is compared with; `--shared-runtime`
//! runs it on one multi-threaded runtime instead, as a reference.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{Request, Response, StatusCode, Uri, body::Incoming};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Options of `role proxy`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ProxyArgs {
    /// The upstream, `http://HOST:PORT` (paths are kept as received).
    #[arg(long)]
    pub(crate) upstream: String,
    /// Serve on one multi-threaded Tokio runtime (its defaults) instead of
    /// one single-threaded runtime per CPU, the way `cortex-gateway serve`
    /// runs. A reference: it shows what the threading alone changes.
    #[arg(long)]
    pub(crate) shared_runtime: bool,
}

type Body = Either<Incoming, Full<Bytes>>;

/// Runs the role: binds loopback, prints `listening on http://ADDR`, forwards.
pub(crate) async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let upstream: Uri = args.upstream.parse()?;
    let authority = upstream
        .authority()
        .ok_or_else(|| anyhow::anyhow!("--upstream {upstream} has no host:port"))?
        .clone();
    // One client per serving thread: its pooled connections run as tasks
    // of that thread's runtime.
    let make = move || {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let authority = authority.clone();
        move |request: Request<Incoming>| {
            let client = client.clone();
            let authority = authority.clone();
            async move { Ok::<_, Infallible>(forward(&client, &authority, request).await) }
        }
    };
    let threads = if args.shared_runtime {
        crate::serve::Threads::Shared
    } else {
        crate::serve::Threads::PerCpu
    };
    crate::serve::serve_loopback(threads, make).await
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    authority: &hyper::http::uri::Authority,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return bad_gateway();
    };
    parts.uri = uri;
    parts.headers.remove(hyper::header::HOST);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Either::Left),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        br#"{"error":"the upstream did not answer"}"#,
    ))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

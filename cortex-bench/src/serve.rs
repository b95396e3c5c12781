//! The HTTP/1.1 server loop the bench roles share: loopback, keep-alive,
//! readiness announced on stdout.

use std::{error::Error as StdError, future::Future, io::Write as _};

use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The line a role prints on stdout once it accepts connections.
pub(crate) const READY_PREFIX: &str = "listening on http://";

/// Binds `127.0.0.1:0`, prints `listening on http://ADDR`, and serves every
/// connection with `handler` until the process is killed.
pub(crate) async fn serve_loopback<F, Fut, B, E>(handler: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(handler);
            // A client closing its connection is the normal end of a run.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Ends this process when its standard input closes: the driver holds the
/// other end, so the roles never outlive it.
pub(crate) fn exit_with_parent() {
    tokio::spawn(async {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        std::process::exit(0);
    });
}

/// Prints the readiness line for `addr` on stdout and flushes it.
pub(crate) fn announce(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{READY_PREFIX}{addr}")?;
    out.flush()?;
    Ok(())
}

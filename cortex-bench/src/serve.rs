//! The HTTP/1.1 server loop the bench roles share: loopback, keep-alive,
//! readiness announced on stdout.

use std::{error::Error as StdError, future::Future, io::Write as _, sync::Arc};

use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

/// The line a role prints on stdout once it accepts connections.
pub(crate) const READY_PREFIX: &str = "listening on http://";

/// Where a role serves its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// As tasks of the process's multi-threaded runtime.
    Shared,
    /// The way `cortex-gateway serve` runs: one thread per CPU, each with a
    /// single-threaded runtime of its own and its own handler from `make`
    /// (so its own client pool), each accepted connection handed to the
    /// threads in turn for its whole life.
    PerCpu,
}

/// Binds `127.0.0.1:0`, prints `listening on http://ADDR`, and serves every
/// keep-alive HTTP/1.1 connection with a handler from `make` (called once,
/// or once per thread) until the process is killed.
pub(crate) async fn serve_loopback<M, F, Fut, B, E>(threads: Threads, make: M) -> anyhow::Result<()>
where
    M: Fn() -> F + Send + Sync + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    // A client closing its connection is the normal end of a run.
    let connection = |stream: TcpStream, handler: F| async move {
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service_fn(handler))
            .await;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    if threads == Threads::Shared {
        let handler = make();
        announce(listener.local_addr()?)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, handler.clone()));
        }
    }
    let count = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let make = Arc::new(make);
    let mut lanes = Vec::with_capacity(count);
    for index in 0..count {
        let (lane, mut accepted) = mpsc::unbounded_channel::<std::net::TcpStream>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let make = make.clone();
        std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let handler = make();
                    while let Some(std_stream) = accepted.recv().await {
                        if let Ok(stream) = TcpStream::from_std(std_stream) {
                            tokio::spawn(connection(stream, handler.clone()));
                        }
                    }
                });
            })?;
        lanes.push(lane);
    }
    announce(listener.local_addr()?)?;
    for next in (0..count).cycle() {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        lanes[next]
            .send(stream.into_std()?)
            .map_err(|_| anyhow::anyhow!("serving thread {next} has stopped"))?;
    }
    Ok(())
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

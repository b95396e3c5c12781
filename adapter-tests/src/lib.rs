//! Support for the shared adapter suite (`tests/suite`) and the SDK
//! overhead benchmark (`sdk-bench`): one way to serve a backend through
//! each adapter on a loopback socket, so no test ever needs adapter-specific
//! code.
//!
//! Each server runs on its own thread with its own runtime (a tokio runtime
//! for axum, an actix system for actix-web) and lives until the process
//! exits, so servers started once can be shared by every test.

use std::{io, net::SocketAddr, sync::mpsc, thread};

use cortex_backend::Backend;

/// The framework adapters under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `cortex-backend-axum`.
    Axum,
    /// `cortex-backend-actix`.
    Actix,
}

impl Adapter {
    /// Both adapters.
    pub const ALL: [Adapter; 2] = [Adapter::Axum, Adapter::Actix];

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Axum => "axum",
            Adapter::Actix => "actix",
        }
    }

    /// Serves `backend` at the default contract path through this adapter,
    /// with `workers` threads, and returns the listening address.
    pub fn serve<T: Send + Sync + 'static>(
        self,
        backend: Backend<T>,
        workers: usize,
    ) -> io::Result<SocketAddr> {
        match self {
            Adapter::Axum => serve_axum(cortex_backend_axum::router(backend), workers),
            Adapter::Actix => serve_actix(cortex_backend_actix::configure(backend), workers),
        }
    }
}

/// Serves an axum router on `127.0.0.1:0` from a new thread running a tokio
/// runtime with `workers` worker threads.
pub fn serve_axum(router: axum::Router, workers: usize) -> io::Result<SocketAddr> {
    let (ready, started) = mpsc::channel();
    thread::Builder::new()
        .name("axum-server".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers.max(1))
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(listener.local_addr());
                let _ = axum::serve(listener, router).await;
            });
        })?;
    started.recv().map_err(io::Error::other)?
}

/// Serves an actix-web app made of `configure` on `127.0.0.1:0` from a new
/// thread running an actix system with `workers` workers.
pub fn serve_actix<F>(configure: F, workers: usize) -> io::Result<SocketAddr>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let (ready, started) = mpsc::channel();
    thread::Builder::new()
        .name("actix-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new().configure(configure.clone())
                })
                .workers(workers.max(1))
                .disable_signals()
                .listen(listener);
                match server {
                    Ok(server) => {
                        let _ = ready.send(Ok(()));
                        let _ = server.run().await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            });
        })?;
    started.recv().map_err(io::Error::other)??;
    Ok(addr)
}

//! Serving an app on a loopback listener: axum on the caller's tokio
//! runtime, actix-web on a thread of its own (actix runs its own
//! single-threaded runtimes, so it cannot share tokio's worker threads).

use cortex_backend::{Backend, contract::DEFAULT_PATH};
use tokio::sync::watch;

/// Fires once to stop everything that holds a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A shutdown signal, cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    /// A trigger and its first signal.
    pub fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), Shutdown(rx))
    }

    /// Asks every holder of a [`Shutdown`] to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Another signal tied to this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves when the trigger fires (or is dropped).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A running app.
#[derive(Debug)]
pub struct Served {
    /// The contract endpoint, `http://127.0.0.1:<port>/api/cortex/backend`.
    pub url: String,
    /// The app's base URL, `http://127.0.0.1:<port>`.
    pub base_url: String,
    done: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Resolves once the server has stopped (after the shutdown fired).
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// (base URL, contract endpoint) of a listener.
fn urls(listener: &std::net::TcpListener) -> std::io::Result<(String, String)> {
    let base = format!("http://{}", listener.local_addr()?);
    Ok((base.clone(), format!("{base}{DEFAULT_PATH}")))
}

fn home_page<S>(backend: &Backend<S>, framework: &str) -> String {
    format!(
        "Meridian {} (on {framework}). The Cortex contract endpoint is POST {DEFAULT_PATH}.\n",
        backend.id()
    )
}

/// Serves a backend with axum, next to a home page of the app's own.
pub async fn axum<S: Send + Sync + 'static>(
    backend: Backend<S>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<Served> {
    let (base_url, url) = urls(&listener)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let home = home_page(&backend, "axum");
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || async move { home }))
        .merge(cortex_backend_axum::router(backend));
    let done = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.wait())
            .await
        {
            tracing::error!(error = %e, "axum server failed");
        }
    });
    Ok(Served {
        url,
        base_url,
        done,
    })
}

/// Serves a backend with actix-web on a dedicated thread.
pub async fn actix<S: Send + Sync + 'static>(
    backend: Backend<S>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<Served> {
    let (base_url, url) = urls(&listener)?;
    let home = home_page(&backend, "actix-web");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("actix-{}", backend.id()))
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    let home = home.clone();
                    actix_web::App::new()
                        .route(
                            "/",
                            actix_web::web::get().to(move || {
                                let home = home.clone();
                                async move { home }
                            }),
                        )
                        .configure(cortex_backend_actix::configure(backend.clone()))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(5)
                .listen(listener);
                let server = match server {
                    Ok(server) => server.run(),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.handle()));
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "actix-web server failed");
                }
            });
        })?;
    let handle = ready_rx
        .await
        .map_err(|_| anyhow::anyhow!("the actix-web thread ended before starting its server"))??;
    let done = tokio::spawn(async move {
        shutdown.wait().await;
        handle.stop(true).await;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    });
    Ok(Served {
        url,
        base_url,
        done,
    })
}

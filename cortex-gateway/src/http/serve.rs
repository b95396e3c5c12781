//! The accept loop of [`crate::Gateway::serve`], and where each connection
//! runs.
//!
//! With [`Workers::Caller`] every connection is a task of the runtime that
//! called `serve`. With [`Workers::Threads`] the gateway starts that many
//! threads, each with a single-threaded Tokio runtime of its own, and hands
//! accepted connections to them in turn. A connection then lives on one
//! thread: its socket, its timers and the backend connections it opens are
//! registered with that thread's reactor, so a request is read, forwarded,
//! answered and audited without waking another core. On Tokio's
//! multi-threaded runtime a request's task moves to whichever worker polled
//! the I/O driver, and the two cores of a small machine keep waking each
//! other and passing the request's data between their caches (measured in
//! `docs/performance.md`: about a quarter of the gateway's CPU per call).
//! The price is balance: connections are spread evenly, not their load, so
//! a few very busy connections can leave a thread idle while another is
//! saturated. Agents of a company are many connections, which is the case
//! this serves.
//!
//! Shutdown is the same in both: the accept loop stops, every connection
//! finishes the request it is serving (a keep-alive connection between
//! requests closes at once), the notification streams end, and `serve`
//! returns when the last connection is closed.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tower::ServiceExt as _;

use super::{
    ConnectionServices,
    front::ConnectionService,
    watch::{Activity, ConnectionLimits, ConnectionSlot, OpenConnections, Watchdog, Watched},
};
use crate::sync::lock;

/// Where the gateway's connections run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    /// As tasks of the runtime that calls [`crate::Gateway::serve`] (for an
    /// application that embeds the gateway in its own runtime).
    Caller,
    /// On this many threads of the gateway's own, each running a
    /// single-threaded runtime and keeping its connections for their whole
    /// life. What `cortex-gateway serve` does, with one thread per CPU.
    Threads(NonZeroUsize),
}

impl Workers {
    /// What the `workers` setting ([`crate::config::GatewayConfig::workers`])
    /// asks for: `None`, one thread per CPU the process may use; `Some(0)`,
    /// the calling runtime; `Some(n)`, `n` threads.
    pub(crate) fn from_setting(workers: Option<usize>) -> Self {
        match workers.map(NonZeroUsize::new) {
            None => {
                Self::Threads(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
            }
            Some(None) => Self::Caller,
            Some(Some(n)) => Self::Threads(n),
        }
    }
}

/// Every connection task holds a clone; `serve` waits until all are gone.
type Drain = mpsc::Sender<()>;

/// An accepted connection on its way to a worker thread.
type Handoff = (std::net::TcpStream, SocketAddr, ConnectionSlot);

/// Accepts on `listener` until `shutdown` turns true, serving each
/// connection with `make` on `workers` within `limits`; returns when the
/// last connection has closed.
pub(crate) async fn run(
    listener: TcpListener,
    make: ConnectionServices,
    workers: Workers,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let open = OpenConnections::default();
    let stop = Arc::new(Stop::default());
    let (drain, mut drained) = mpsc::channel::<()>(1);
    let lanes = match workers {
        Workers::Caller => {
            tracing::info!("serving connections on the calling runtime");
            Vec::new()
        }
        Workers::Threads(n) => {
            tracing::info!("serving connections on {n} threads (CORTEX_WORKERS)");
            (0..n.get())
                .map(|i| start_thread(i, make.clone(), limits, stop.clone(), drain.clone()))
                .collect::<io::Result<Vec<_>>>()?
        }
    };
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let Some(slot) = open.admit(limits.max_connections) else {
            // Closed at once: the connections already open keep working.
            tracing::debug!(
                "refused a connection from {peer}: {} are open (CORTEX_MAX_CONNECTIONS)",
                limits.max_connections
            );
            continue;
        };
        // Answers are written in one piece; Nagle's algorithm would only
        // hold the last segment of a large one back.
        let _ = stream.set_nodelay(true);
        if lanes.is_empty() {
            spawn_connection(stream, &make, peer, limits, slot, &stop, drain.clone());
            continue;
        }
        // The socket leaves this runtime's reactor for the worker's.
        match stream.into_std() {
            Ok(std_stream) => {
                let _ = lanes[next].send((std_stream, peer, slot));
                next = (next + 1) % lanes.len();
            }
            Err(e) => tracing::warn!("cannot hand an accepted connection to a worker: {e}"),
        }
    }
    drop(listener);
    stop.trigger();
    drop(lanes);
    drop(drain);
    // `None` once every connection task (and every worker) has let go.
    let _ = drained.recv().await;
    Ok(())
}

/// Serves one accepted connection as a task of the current runtime.
fn spawn_connection(
    stream: TcpStream,
    make: &ConnectionServices,
    peer: SocketAddr,
    limits: ConnectionLimits,
    slot: ConnectionSlot,
    stop: &Arc<Stop>,
    drain: Drain,
) {
    let activity = Arc::new(Activity::default());
    let front = make.service(peer, activity.clone());
    let watchdog = Watchdog::new(activity.clone(), limits);
    let io = Watched::new(stream, activity);
    tokio::spawn(connection(
        io,
        front,
        watchdog,
        stop.signal(),
        (slot, drain),
    ));
}

/// Starts worker thread `index`; the sender hands it accepted connections.
fn start_thread(
    index: usize,
    make: ConnectionServices,
    limits: ConnectionLimits,
    stop: Arc<Stop>,
    drain: Drain,
) -> io::Result<mpsc::UnboundedSender<Handoff>> {
    let (lane, mut accepted) = mpsc::unbounded_channel::<Handoff>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("cortex-worker-{index}"))
        .spawn(move || {
            crate::sync::claim_thread_slot(index);
            let make = make.for_thread();
            runtime.block_on(async move {
                // This thread's connections hold `local`; the thread holds
                // `drain` until they are all gone.
                let (local, mut local_drained) = mpsc::channel::<()>(1);
                while let Some((std_stream, peer, slot)) = accepted.recv().await {
                    match TcpStream::from_std(std_stream) {
                        Ok(stream) => {
                            spawn_connection(
                                stream,
                                &make,
                                peer,
                                limits,
                                slot,
                                &stop,
                                local.clone(),
                            );
                        }
                        Err(e) => tracing::warn!("a worker cannot take a connection: {e}"),
                    }
                }
                // The accept loop has ended. A current-thread runtime drops
                // its tasks when `block_on` returns, so the connections are
                // waited for first.
                drop(local);
                let _ = local_drained.recv().await;
                drop(drain);
            });
        })?;
    Ok(lane)
}

/// Serves one connection (HTTP/1.1, or HTTP/2 with prior knowledge) until
/// it closes or `watchdog` finds it expired; on shutdown, finishes the
/// request in progress first. `_held` (the connection's slot and the drain
/// sender) is released when it ends.
async fn connection(
    io: Watched<TcpStream>,
    front: ConnectionService,
    mut watchdog: Watchdog,
    mut stop: StopSignal,
    _held: (ConnectionSlot, Drain),
) {
    let peer = front.peer();
    let service = front.map_request(|request: hyper::Request<Incoming>| request.map(Body::new));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's default (about 400 KiB) would let each connection hold that
    // much of an unfinished request head.
    builder.http1().max_buf_size(watchdog.buffer_bytes());
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service)));
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!("connection from {peer} ended: {e}");
                }
                return;
            }
            () = &mut stop, if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            expired = watchdog.expired() => {
                tracing::debug!("closing the connection from {peer}: {expired:?} timeout");
                return;
            }
        }
    }
}

/// What to do when `accept` fails: a connection that went away before it
/// was accepted is skipped; anything else (out of file descriptors, say)
/// is logged, and accepting pauses for a second so that the loop does not
/// spin while nothing can be accepted.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Tells every connection to stop after its current request.
///
/// A connection task is polled several times per request; a `watch`
/// receiver polled there would take the channel's one lock each time, from
/// every core. Here a poll reads one flag that only shutdown writes, and the
/// lock is taken once when a connection starts waiting and once when it
/// ends.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    wakers: HashMap<u64, Waker>,
}

impl Stop {
    fn trigger(&self) {
        self.stopped.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut lock(&self.waiting).wakers);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    fn signal(self: &Arc<Self>) -> StopSignal {
        StopSignal {
            stop: self.clone(),
            registered: None,
        }
    }
}

/// Resolves once [`Stop::trigger`] has run.
struct StopSignal {
    stop: Arc<Stop>,
    /// The key of the stored waker, and a copy to compare the next
    /// poll's waker with, without the lock.
    registered: Option<(u64, Waker)>,
}

impl Future for StopSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &self.registered
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut waiting = lock(&this.stop.waiting);
        // Checked again under the lock: `trigger` sets the flag before it
        // takes the wakers, so a waker stored now is always woken.
        if this.stop.stopped.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let id = match &this.registered {
            Some((id, _)) => *id,
            None => {
                waiting.next += 1;
                waiting.next
            }
        };
        waiting.wakers.insert(id, cx.waker().clone());
        drop(waiting);
        this.registered = Some((id, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.registered {
            lock(&self.stop.waiting).wakers.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    use super::*;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Counted>, Waker) {
        let c = Arc::new(Counted::default());
        (c.clone(), Waker::from(c))
    }

    type CountedWaker = (Arc<Counted>, Waker);

    fn stop_and_two_wakers() -> (Arc<Stop>, CountedWaker, CountedWaker) {
        (Arc::new(Stop::default()), counted(), counted())
    }

    fn poll(signal: &mut StopSignal, waker: &Waker) -> Poll<()> {
        Pin::new(signal).poll(&mut Context::from_waker(waker))
    }

    fn waiting(stop: &Stop) -> usize {
        lock(&stop.waiting).wakers.len()
    }

    #[test]
    fn a_stop_wakes_the_waiting_connections_and_a_closed_one_is_forgotten() {
        let (stop, (a_count, a), (b_count, b)) = stop_and_two_wakers();
        let mut first = stop.signal();
        let mut second = stop.signal();
        assert!(poll(&mut first, &a).is_pending());
        assert!(
            poll(&mut first, &a).is_pending(),
            "polled again, still waiting"
        );
        assert!(poll(&mut second, &b).is_pending());
        assert_eq!(waiting(&stop), 2);
        drop(second);
        assert_eq!(waiting(&stop), 1, "a closed connection leaves no waker");
        stop.trigger();
        assert_eq!(a_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(b_count.0.load(Ordering::SeqCst), 0);
        assert!(poll(&mut first, &a).is_ready());
        assert!(
            poll(&mut stop.signal(), &a).is_ready(),
            "a connection accepted after the stop stops at once"
        );
        assert_eq!(waiting(&stop), 0);
    }

    #[test]
    fn the_latest_waker_is_the_one_woken() {
        let (stop, (old_count, old), (new_count, new)) = stop_and_two_wakers();
        let mut signal = stop.signal();
        assert!(poll(&mut signal, &old).is_pending());
        assert!(poll(&mut signal, &new).is_pending());
        assert_eq!(waiting(&stop), 1);
        stop.trigger();
        assert_eq!(new_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(old_count.0.load(Ordering::SeqCst), 0);
    }
}

//! The connection bounds: how many connections may be open, how long one
//! may take to send a request head, and how long one may sit idle.
//!
//! hyper's own `header_read_timeout` would need a boxed timer per request
//! and also closes a keep-alive connection once that time has passed with
//! no new request, so the two limits could not differ. Here each
//! connection has one [`Activity`] record instead: its socket counts the
//! reads and writes that moved bytes, its service counts the requests that
//! started and finished, and one periodic check per connection
//! ([`Watchdog`]) decides from those counters. A request costs two atomic
//! additions and no timer.
//!
//! With no request in progress a connection is either
//! * waiting for a request head: its first one since the connection
//!   started, or bytes of a next one have arrived. It is closed when the
//!   head has not been complete for the header-read timeout (a client that
//!   sends header lines forever, or nothing at all after connecting);
//! * or idle: no byte read or written. It is closed after the idle
//!   timeout. A notification stream writes a keep-alive comment at least
//!   every half idle timeout (see `sse.rs`), so it is never idle.
//!
//! A request in progress is bounded by the per-request deadline instead.
//! On an HTTP/2 connection frames without a request (a client's pings)
//! count as bytes of a request head, so such a connection is closed after
//! the header-read timeout without a request.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Interval, MissedTickBehavior},
};

/// The connection bounds of `serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Open connections at most.
    pub(crate) max_connections: usize,
    /// Time to deliver a complete request head.
    pub(crate) header_read_timeout: Duration,
    /// Time a connection with nothing in progress and no traffic is kept.
    pub(crate) idle_timeout: Duration,
    /// The most an HTTP/1.1 connection buffers (a request head must fit;
    /// at least 8192, hyper's minimum).
    pub(crate) buffer_bytes: usize,
}

impl ConnectionLimits {
    /// What an HTTP/1.1 connection may buffer when request heads are at
    /// most `max_header_bytes`: the head plus room for the request line
    /// and the start of a body.
    pub(crate) fn buffer_for(max_header_bytes: usize) -> usize {
        max_header_bytes.saturating_add(8 * 1024).max(8192)
    }
}

impl ConnectionLimits {
    /// How often a connection's counters are looked at: a quarter of the
    /// shorter timeout, so a connection is closed at most a quarter late.
    fn period(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4).max(Duration::from_millis(1))
    }
}

/// The open connections, against [`ConnectionLimits::max_connections`].
#[derive(Debug, Default)]
pub(crate) struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    /// A slot for one more connection, or `None` at the cap.
    pub(crate) fn admit(&self, max: usize) -> Option<ConnectionSlot> {
        let open = self.0.fetch_add(1, Ordering::AcqRel);
        if open >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(self.0.clone()))
    }
}

/// Held by a connection for its whole life.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one connection has done, in counters.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Socket reads that returned bytes.
    reads: AtomicU64,
    /// Socket writes that took bytes.
    writes: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
}

impl Activity {
    /// Counts a request as started; the guard counts it as finished when
    /// its response is ready or it is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// A socket that counts its reads and writes in an [`Activity`].
#[derive(Debug)]
pub(crate) struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(io: S, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn wrote(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.writes.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// A request head took longer than the header-read timeout.
    HeaderRead,
    /// Nothing happened for the idle timeout.
    Idle,
}

/// The periodic check of one connection.
pub(crate) struct Watchdog {
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    tick: Interval,
    /// The counters at the last check.
    seen: (u64, u64, u64, u64),
    /// Since when the connection waits for a request head, when it does.
    head_since: Option<Instant>,
    /// The last check that saw traffic or a request.
    last_active: Instant,
}

impl Watchdog {
    pub(crate) fn new(activity: Arc<Activity>, limits: ConnectionLimits) -> Self {
        let mut tick = tokio::time::interval(limits.period());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = Instant::now();
        Self {
            activity,
            limits,
            tick,
            seen: (0, 0, 0, 0),
            // A new connection owes its first request head.
            head_since: Some(now),
            last_active: now,
        }
    }

    /// The buffer bound of the connection ([`ConnectionLimits::buffer_bytes`]).
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.limits.buffer_bytes
    }

    /// Resolves when the connection has expired.
    pub(crate) async fn expired(&mut self) -> Expired {
        loop {
            let now = self.tick.tick().await;
            if let Some(expired) = self.check(now) {
                return expired;
            }
        }
    }

    fn check(&mut self, now: Instant) -> Option<Expired> {
        let a = &self.activity;
        let counters = (
            a.reads.load(Ordering::Relaxed),
            a.writes.load(Ordering::Relaxed),
            a.started.load(Ordering::Relaxed),
            a.finished.load(Ordering::Relaxed),
        );
        let (reads, writes, started, finished) = counters;
        let (seen_reads, seen_writes, seen_started, seen_finished) = self.seen;
        self.seen = counters;
        if started != seen_started || finished != seen_finished || started != finished {
            // A request started or finished since the last check (the
            // traffic since belongs to it), or one is in progress.
            self.head_since = None;
            self.last_active = now;
            return None;
        }
        if reads != seen_reads && self.head_since.is_none() {
            // Bytes of a next request head.
            self.head_since = Some(now);
        }
        if reads != seen_reads || writes != seen_writes {
            self.last_active = now;
        }
        if let Some(since) = self.head_since
            && now.duration_since(since) >= self.limits.header_read_timeout
        {
            return Some(Expired::HeaderRead);
        }
        (now.duration_since(self.last_active) >= self.limits.idle_timeout).then_some(Expired::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watchdog() -> (Arc<Activity>, Watchdog, Instant) {
        let activity = Arc::new(Activity::default());
        let limits = ConnectionLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            buffer_bytes: 8192,
        };
        let dog = Watchdog::new(activity.clone(), limits);
        let t0 = dog.last_active;
        (activity, dog, t0)
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[tokio::test]
    async fn a_head_that_never_completes_expires_after_the_header_timeout() {
        let (activity, mut dog, t0) = watchdog();
        for s in 1..10 {
            activity.reads.fetch_add(1, Ordering::Relaxed);
            assert_eq!(dog.check(t0 + S(s)), None, "{s}");
        }
        activity.reads.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.check(t0 + S(10)), Some(Expired::HeaderRead));
    }

    #[tokio::test]
    async fn requests_reset_the_clock_and_an_idle_connection_expires() {
        let (activity, mut dog, t0) = watchdog();
        let request = activity.begin();
        assert_eq!(
            dog.check(t0 + S(30)),
            None,
            "in progress: the deadline governs"
        );
        drop(request);
        activity.writes.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.check(t0 + S(31)), None);
        assert_eq!(dog.check(t0 + S(60)), None, "idle for 29 s");
        assert_eq!(dog.check(t0 + S(91)), Some(Expired::Idle));
    }

    #[tokio::test]
    async fn a_stream_that_writes_is_not_idle_and_bytes_start_the_head_clock() {
        let (activity, mut dog, t0) = watchdog();
        drop(activity.begin());
        assert_eq!(dog.check(t0 + S(1)), None);
        for s in (2..200).step_by(20) {
            activity.writes.fetch_add(1, Ordering::Relaxed);
            assert_eq!(dog.check(t0 + S(s)), None, "{s}");
        }
        activity.reads.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.check(t0 + S(200)), None);
        assert_eq!(dog.check(t0 + S(210)), Some(Expired::HeaderRead));
    }

    #[test]
    fn the_connection_cap_admits_up_to_max_and_frees_on_drop() {
        let open = OpenConnections::default();
        let a = open.admit(2).unwrap();
        let _b = open.admit(2).unwrap();
        assert!(open.admit(2).is_none());
        drop(a);
        assert!(open.admit(2).is_some());
    }
}

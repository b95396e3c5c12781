//! Backend calls over HTTP/1.1 driven by the calling task itself.
//!
//! hyper-util's pooled client runs every connection in a task of its own:
//! a call hands its request to that task through a channel, and the answer
//! comes back through another, so each call wakes two tasks and pays for
//! the pool's general machinery (host header formatting, connector clones,
//! keyed checkout). Here an idle connection is taken from the backend's own
//! list, and the calling task polls the connection together with its
//! request until the whole answer is read; then the connection goes back
//! to the list. A call that is abandoned (timeout, client gone) drops its
//! connection with it, so a half-read answer can never be handed to the
//! next call.
//!
//! Rules, chosen to match what the pooled client did:
//! - at most [`MAX_IDLE`] idle connections per backend; more are closed;
//! - an idle connection older than [`IDLE_TIMEOUT`] is closed when the list
//!   is next touched, and [`Pool::prune`] (run after every catalog refresh)
//!   closes those and every idle connection the backend has closed, so a
//!   backend nobody calls does not keep half-closed sockets for long;
//! - a connection the backend has closed is noticed at checkout and
//!   skipped; a request that could not be sent at all is sent once more on
//!   a fresh connection, and one already sent is never repeated;
//! - a TLS backend that negotiates HTTP/2 (ALPN) is called through the
//!   pooled client from then on, which multiplexes HTTP/2 properly.

use std::{
    future::poll_fn,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::{
    HeaderMap, Request, Response, StatusCode, Uri,
    body::{Body as _, Incoming},
    client::conn::http1,
};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::{
    client::legacy::connect::{Connection as _, HttpConnector},
    rt::TokioIo,
};
use tower::ServiceExt as _;

use super::UpstreamError;
use crate::sync::lock;

/// Idle connections kept per backend.
pub(crate) const MAX_IDLE: usize = 128;
/// How long an idle connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
/// Boxed: a connection's state is several hundred bytes, and it moves in
/// and out of the idle list on every call.
type Conn = Box<http1::Connection<Io, Full<Bytes>>>;

struct Idle {
    send: http1::SendRequest<Full<Bytes>>,
    conn: Conn,
    since: Instant,
}

impl Idle {
    /// Idle for less than [`IDLE_TIMEOUT`] at `now`.
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT
    }

    /// Still open. An idle connection only reads: Ready means the backend
    /// closed it (or sent something unasked), so it is not kept.
    fn open(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_pending()
    }
}

/// One backend's idle connections, kept per thread slot
/// ([`crate::sync::thread_slot`]).
///
/// A connection's socket is registered with the reactor of the runtime
/// that opened it. On the gateway's worker threads (one single-threaded
/// runtime each) a connection taken by another thread would have every one
/// of its reads reported to the thread that opened it, which then wakes the
/// caller's: so each thread takes back only the connections it opened.
pub(super) struct Pool {
    idle_by_slot: Box<[SlotIdle]>,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle_by_slot: (0..crate::sync::THREAD_SLOTS)
                .map(|_| SlotIdle::default())
                .collect(),
        }
    }
}

/// A thread slot's share of a [`Pool`], on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct SlotIdle {
    idle: Mutex<Vec<Idle>>,
    /// Emptied header maps of answers, for the next requests' headers (see
    /// [`Pool::header_map`]).
    spare_maps: Mutex<Vec<HeaderMap>>,
}

/// The capacity a request's header map starts with: `Host`, content type,
/// authorization and the five caller headers, with room to spare.
const REQUEST_HEADERS: usize = 12;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

/// Says whether the part of an event stream read so far is enough.
pub(super) type Enough = dyn Fn(&[u8]) -> bool + Sync;

/// What a call got: the status, the whole body and whether it is an event
/// stream (`text/event-stream`), or a sign that the backend speaks HTTP/2
/// and the request must go through the pooled client.
pub(super) enum Answer {
    Done(StatusCode, Bytes, bool),
    Http2(Box<Request<Full<Bytes>>>),
}

impl Pool {
    /// Idle connections now held (for tests and debugging).
    pub(super) fn idle_count(&self) -> usize {
        self.idle_by_slot.iter().map(|l| lock(&l.idle).len()).sum()
    }

    /// The calling thread slot's share.
    fn own_slot(&self) -> &SlotIdle {
        &self.idle_by_slot[crate::sync::thread_slot()]
    }

    /// Closes the idle connections that are too old or that the backend has
    /// closed (on its side they would sit in `CLOSE_WAIT` until the next
    /// call). Returns how many are left.
    pub(super) fn prune(&self) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let now = Instant::now();
        let mut left = 0;
        for slot in &self.idle_by_slot {
            let mut idle = lock(&slot.idle);
            // The no-op waker is replaced by the caller's at the next
            // checkout.
            idle.retain_mut(|c| c.fresh(now) && c.open(&mut cx));
            left += idle.len();
        }
        left
    }

    /// An empty header map for a request to this backend. hyper parses a
    /// connection's answer into the header map of the request it sent, and
    /// [`Pool::call`] keeps that map when the call is done; reusing it saves
    /// an allocation per call (the map is about 1 KiB).
    pub(super) fn header_map(&self) -> HeaderMap {
        lock(&self.own_slot().spare_maps)
            .pop()
            .unwrap_or_else(|| HeaderMap::with_capacity(REQUEST_HEADERS))
    }

    fn keep_map(&self, map: HeaderMap) {
        let Some(map) = crate::headers::reusable_header_map(map) else {
            return;
        };
        let mut spare = lock(&self.own_slot().spare_maps);
        if spare.len() < MAX_IDLE {
            spare.push(map);
        }
    }

    /// Takes the most recently used idle connection that is still open.
    fn checkout(&self, cx: &mut Context<'_>) -> Option<Idle> {
        let mut idle = lock(&self.own_slot().idle);
        let now = Instant::now();
        idle.retain(|c| c.fresh(now));
        while let Some(mut c) = idle.pop() {
            if c.open(cx) && c.send.is_ready() {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, send: http1::SendRequest<Full<Bytes>>, conn: Conn) {
        let mut idle = lock(&self.own_slot().idle);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            send,
            conn,
            since: Instant::now(),
        });
    }

    /// Sends `request` (origin-form URI, `Host` set) to `authority` and
    /// reads the whole answer, at most `limit` bytes of body. An event
    /// stream is read only until `enough` says what came so far is enough
    /// (the connection is then closed, with the rest unread).
    pub(super) async fn call(
        &self,
        connector: &Connector,
        authority: &Uri,
        mut request: Request<Full<Bytes>>,
        limit: usize,
        enough: Option<&Enough>,
    ) -> Result<Answer, UpstreamError> {
        // One retry, and only for a request that was never sent.
        for attempt in 0..2 {
            let pooled = poll_fn(|cx| Poll::Ready(self.checkout(cx))).await;
            let (mut send, mut conn) = match pooled {
                Some(c) => (c.send, c.conn),
                // Boxed: connecting (TCP, maybe TLS) is the rare path, and
                // its future is larger than the rest of the call's.
                None => match Box::pin(connect(connector, authority)).await? {
                    Some(fresh) => fresh,
                    None => return Ok(Answer::Http2(Box::new(request))),
                },
            };
            let sent = send.try_send_request(request);
            let mut sent = std::pin::pin!(sent);
            let mut conn_done = false;
            let first = poll_fn(|cx| {
                if let Poll::Ready(r) = sent.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                if Pin::new(&mut conn).poll(cx).is_ready() {
                    // The connection ended: an answer it completed on the
                    // way is ready now; otherwise there is none.
                    conn_done = true;
                    return Poll::Ready(match sent.as_mut().poll(cx) {
                        Poll::Ready(r) => Some(r),
                        Poll::Pending => None,
                    });
                }
                Poll::Pending
            })
            .await;
            let outcome = match first {
                Some(outcome) => outcome,
                None => {
                    // The ended connection still holds the request; dropping
                    // it hands the request back (never sent) or fails it.
                    drop(conn);
                    request = unsent_or_fail(sent.await, attempt)?;
                    continue;
                }
            };
            let response = match outcome {
                Ok(response) => response,
                Err(e) => {
                    request = unsent_or_fail(Err(e), attempt)?;
                    continue;
                }
            };
            // An answer on a connection that has ended is used; the
            // connection is not.
            let (parts, body) = response.into_parts();
            let event_stream = parts
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let enough = enough.filter(|_| event_stream);
            let (body, reusable) =
                read_body(&parts.headers, body, &mut conn, limit, conn_done, enough).await?;
            if reusable && send.is_ready() {
                self.checkin(send, conn);
            }
            let status = parts.status;
            self.keep_map(parts.headers);
            return Ok(Answer::Done(status, body, event_stream));
        }
        Err(UpstreamError::Unreachable(
            "the backend closed every connection before the request was sent".into(),
        ))
    }
}

/// The request back, when it was never sent and may be tried once more;
/// otherwise the error that ends the call.
fn unsent_or_fail(
    outcome: Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>>,
    attempt: usize,
) -> Result<Request<Full<Bytes>>, UpstreamError> {
    match outcome {
        Ok(_) => Err(UpstreamError::Unreachable(
            "the backend closed the connection while answering".into(),
        )),
        Err(mut e) => match e.take_message() {
            Some(unsent) if attempt == 0 => Ok(unsent),
            _ => Err(UpstreamError::Unreachable(super::describe(e.error()))),
        },
    }
}

/// A new HTTP/1.1 connection, or `None` when the backend chose HTTP/2.
async fn connect(
    connector: &Connector,
    authority: &Uri,
) -> Result<Option<(http1::SendRequest<Full<Bytes>>, Conn)>, UpstreamError> {
    let io = connector
        .clone()
        .oneshot(authority.clone())
        .await
        .map_err(|e| UpstreamError::Unreachable(super::describe(&*e)))?;
    if io.connected().is_negotiated_h2() {
        return Ok(None);
    }
    let (send, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Unreachable(super::describe(&e)))?;
    Ok(Some((send, Box::new(conn))))
}

/// Reads the body while driving the connection (until `enough` says the
/// part read is enough); says whether the connection came back to idle and
/// can serve another call.
async fn read_body(
    headers: &HeaderMap,
    mut body: Incoming,
    conn: &mut Conn,
    limit: usize,
    mut conn_done: bool,
    enough: Option<&Enough>,
) -> Result<(Bytes, bool), UpstreamError> {
    super::refuse_declared_oversize(headers, limit)?;
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    // `enough` said yes; the stream is left unread at its next wait.
    let mut satisfied = false;
    let mut cut_short = false;
    poll_fn(|cx| {
        loop {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let held = first.as_ref().map_or(0, Bytes::len) + rest.len();
                    if held + data.len() > limit {
                        return Poll::Ready(Err(UpstreamError::TooLarge(limit)));
                    }
                    match &first {
                        None if rest.is_empty() => first = Some(data),
                        _ => {
                            if let Some(f) = first.take() {
                                rest.extend_from_slice(&f);
                            }
                            rest.extend_from_slice(&data);
                        }
                    }
                    if let Some(enough) = enough.filter(|_| !satisfied) {
                        satisfied = enough(first.as_deref().unwrap_or(&rest[..]));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(UpstreamError::Unreachable(super::describe(&e))));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    if !conn_done && Pin::new(&mut *conn).poll(cx).is_ready() {
                        // The body's end (or error) is now queued for it.
                        conn_done = true;
                        continue;
                    }
                    if satisfied {
                        // Ended right after it (reusable), or not: then the
                        // rest is never read.
                        cut_short =
                            !matches!(Pin::new(&mut body).poll_frame(cx), Poll::Ready(None));
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            }
        }
    })
    .await?;
    drop(body);
    // Let the connection take in the end of the exchange and go idle; one
    // with an answer left unread is not used again.
    let reusable = !conn_done
        && !cut_short
        && poll_fn(|cx| Poll::Ready(Pin::new(&mut *conn).poll(cx).is_pending())).await;
    let bytes = match first {
        Some(f) => f,
        None => rest.freeze(),
    };
    Ok((bytes, reusable))
}

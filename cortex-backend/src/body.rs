//! Reading a request body under the backend's limit, for adapters.
//!
//! Every adapter reads the raw body stream itself (never through its
//! framework's size-limited extractors) and feeds the chunks to a
//! [`BodyCollector`], so the limit and the 413 come from one place.

use bytes::{Bytes, BytesMut};

use crate::dispatch::RequestBody;

/// Collects body chunks up to a limit.
///
/// Once the limit is passed it keeps discarding chunks for up to another
/// `limit` bytes before asking the adapter to stop: a client still sending
/// a slightly oversized body then reads the 413 instead of a connection
/// reset. Bodies far over the limit are cut off.
///
/// ```
/// use cortex_backend::{RequestBody, body::BodyCollector};
/// let mut c = BodyCollector::new(4);
/// assert!(c.push(bytes::Bytes::from_static(b"{}")));
/// assert!(matches!(c.finish(), RequestBody::Complete(b) if &b[..] == b"{}"));
///
/// let mut c = BodyCollector::new(4);
/// assert!(c.push(bytes::Bytes::from_static(b"{\"a\":1}")));
/// assert!(matches!(c.finish(), RequestBody::TooLarge));
/// ```
#[derive(Debug)]
pub struct BodyCollector {
    limit: usize,
    seen: usize,
    // The common one-chunk body is kept without copying.
    first: Option<Bytes>,
    joined: BytesMut,
}

impl BodyCollector {
    /// A collector for at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: 0,
            first: None,
            joined: BytesMut::new(),
        }
    }

    /// Adds a chunk. Returns `false` when the adapter should stop reading.
    pub fn push(&mut self, chunk: Bytes) -> bool {
        self.seen = self.seen.saturating_add(chunk.len());
        if self.seen > self.limit {
            self.first = None;
            self.joined = BytesMut::new();
            return self.seen <= self.limit.saturating_mul(2);
        }
        if self.first.is_none() && self.joined.is_empty() {
            self.first = Some(chunk);
            return true;
        }
        if let Some(first) = self.first.take() {
            self.joined.reserve(first.len() + chunk.len());
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(&chunk);
        true
    }

    /// The body as the dispatcher takes it.
    pub fn finish(self) -> RequestBody {
        if self.seen > self.limit {
            RequestBody::TooLarge
        } else if let Some(first) = self.first {
            RequestBody::Complete(first)
        } else {
            RequestBody::Complete(self.joined.freeze())
        }
    }
}

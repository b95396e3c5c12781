//! The feedback webhook: tickets marked blocking are POSTed, as JSON, to
//! `CORTEX_FEEDBACK_WEBHOOK_URL`, signed so that the receiver can tell
//! them from forgeries.
//!
//! The header `Cortex-Signature: t=<unix seconds>,v1=<hex>` carries the
//! HMAC-SHA256, keyed by `CORTEX_FEEDBACK_WEBHOOK_SECRET`, of the bytes
//! `<t>.` followed by the exact body bytes; a receiver recomputes it,
//! compares in constant time and refuses an old `t`. The body never holds
//! a token. A failed delivery (no answer or not 2xx) is tried once more
//! after [`RETRY_AFTER`]. The queue between the builtin and the sender is
//! bounded by count and bytes: a report beyond either is dropped, logged,
//! and still kept as a ticket.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::hmac;
use bytes::Bytes;
use tokio::sync::mpsc;

/// Deliveries waiting at most.
pub(crate) const QUEUE_MESSAGES: usize = 256;
/// Bytes of waiting deliveries at most.
pub(crate) const QUEUE_BYTES: usize = 1 << 20;
/// The wait before the one retry.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header.
pub(crate) const SIGNATURE_HEADER: &str = "cortex-signature";

/// The signature header's value for `body` at `t`.
pub(crate) fn signature(key: &hmac::Key, t: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The sending side of the webhook.
#[derive(Clone)]
pub(crate) struct Webhook {
    queue: mpsc::Sender<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("queued_bytes", &self.queued_bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Starts the sender (a task of the current runtime) for `url`, signing
    /// with `secret`.
    pub(crate) fn start(url: String, secret: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let (queue, mut rx) = mpsc::channel::<Bytes>(QUEUE_MESSAGES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let counter = queued_bytes.clone();
        tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                let len = body.len();
                for attempt in 0..2 {
                    if attempt > 0 {
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    let t = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let sent = client
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, signature(&key, t, &body))
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) => tracing::warn!(
                            status = r.status().as_u16(),
                            attempt,
                            "the feedback webhook refused a ticket"
                        ),
                        Err(e) => tracing::warn!(
                            attempt,
                            "the feedback webhook could not be reached: {}",
                            e.without_url()
                        ),
                    }
                }
                counter.fetch_sub(len, Ordering::Relaxed);
            }
        });
        Ok(Self {
            queue,
            queued_bytes,
        })
    }

    /// Queues `body`; `false` when the queue is full (by count or bytes).
    pub(crate) fn send(&self, body: Bytes) -> bool {
        let len = body.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            tracing::warn!("feedback webhook queue full (bytes); a blocking ticket was not sent");
            return false;
        }
        if self.queue.try_send(body).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            tracing::warn!("feedback webhook queue full; a blocking ticket was not sent");
            return false;
        }
        true
    }

    /// Bytes waiting or in delivery.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef");
        let sig = signature(&key, 1_700_000_000, b"{\"a\":1}");
        let expected = hmac::sign(&key, b"1700000000.{\"a\":1}");
        let hex: String = expected
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("t=1700000000,v1={hex}"));
        // Another body, another signature.
        assert_ne!(sig, signature(&key, 1_700_000_000, b"{\"a\":2}"));
    }

    #[tokio::test]
    async fn the_queue_is_bounded_by_count_and_bytes() {
        // A receiver that never answers: nothing leaves the queue but the
        // one delivery in flight.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let hook = Webhook::start(url, "0123456789abcdef").unwrap();
        let mut accepted = 0;
        for _ in 0..10 * QUEUE_MESSAGES {
            if hook.send(Bytes::from_static(b"{}")) {
                accepted += 1;
            }
        }
        assert!(accepted <= QUEUE_MESSAGES + 1, "{accepted}");
        let hook = Webhook::start("http://127.0.0.1:9/none".into(), "0123456789abcdef").unwrap();
        let big = Bytes::from(vec![b' '; 100 << 10]);
        let mut accepted = 0;
        for _ in 0..100 {
            if hook.send(big.clone()) {
                accepted += 1;
            }
        }
        assert!(accepted <= QUEUE_BYTES / (100 << 10), "{accepted}");
        assert!(hook.queued_bytes() <= QUEUE_BYTES);
    }
}

//! Per-caller budgets: a request rate limit and a cap on open notification
//! streams.
//!
//! The rate limit is a keyed GCRA (generic cell rate algorithm): each caller
//! has one "theoretical arrival time"; a request is admitted when that time
//! is no further in the future than the burst allows, and pushes it one
//! emission interval (`60 s / budget`) further. One timestamp per caller,
//! no background task.
//!
//! Callers are keyed by their token's `sub` once authenticated, and by the
//! client address before (a failed authentication is charged to the
//! address). The two key spaces never mix, so two callers never share a
//! budget. The map is bounded: when full, fully replenished entries go first
//! (forgetting them changes nothing), then the ones closest to replenished.
//!
//! In memory, behind a load balancer each replica counts on its own; on
//! Redis a caller has one budget across replicas (`store/redis.rs`).

mod gcra;
mod streams;

use std::{net::IpAddr, time::Duration};

use crate::store::redis;

pub(crate) use gcra::RateLimiter;
pub(crate) use streams::{StreamLimiter, StreamSlot, TooManyStreams};

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CallerKey {
    /// An authenticated caller: the token's `sub`.
    Subject(String),
    /// A request not (yet) authenticated: the client address.
    Address(IpAddr),
}

/// Where the request-rate state is kept.
///
/// An enum rather than a trait object: a charge is made on every request, so
/// it is one match and a direct call, with no box and no virtual call. The
/// methods are synchronous: a shared implementation charges a local GCRA
/// and reconciles with the shared state off the request path (see
/// `docs/adr/0015-store-seam.md`).
#[derive(Debug)]
pub(crate) enum RateBudget {
    /// No rate limit.
    Off,
    /// A keyed GCRA in this process's memory.
    Memory(RateLimiter),
    /// A keyed GCRA on Redis: one budget across replicas.
    Redis(Box<crate::store::redis::RedisRate>),
}

/// Where the open-stream counts are kept.
#[derive(Debug)]
pub(crate) enum StreamSlots {
    /// Counts in this process's memory.
    Memory(StreamLimiter),
    /// Leases on Redis, counted across replicas.
    Redis(Box<crate::store::redis::RedisStreams>),
}

/// A gateway's per-caller budgets: the request rate (when on) and the
/// notification-stream cap.
#[derive(Debug)]
pub(crate) struct Budgets {
    rate: RateBudget,
    streams: StreamSlots,
}

impl Budgets {
    /// Budgets kept in `rate` and `streams`.
    pub(crate) fn new(rate: RateBudget, streams: StreamSlots) -> Self {
        Self { rate, streams }
    }

    /// In-memory budgets; `limiter` `None`: no rate limit.
    pub(crate) fn in_memory(limiter: Option<RateLimiter>, streams: StreamLimiter) -> Self {
        Self::new(
            limiter.map_or(RateBudget::Off, RateBudget::Memory),
            StreamSlots::Memory(streams),
        )
    }

    /// Charges one request to an authenticated caller. The in-memory
    /// budget never waits; the Redis one makes one round trip.
    pub(crate) async fn charge_subject(&self, sub: &str) -> Result<(), RateLimited> {
        match &self.rate {
            RateBudget::Memory(limiter) => limiter.check_subject(sub),
            RateBudget::Off => Ok(()),
            RateBudget::Redis(r) => r.charge_subject(sub).await,
        }
    }

    /// Charges one request to a client address (before authentication).
    /// This budget guards this process's work (checking a signature), so
    /// it is counted here even with a shared store.
    pub(crate) fn charge_address(&self, peer: IpAddr) -> Result<(), RateLimited> {
        match &self.rate {
            RateBudget::Memory(limiter) => limiter.check(&CallerKey::Address(peer)),
            RateBudget::Off => Ok(()),
            RateBudget::Redis(r) => r.local().check(&CallerKey::Address(peer)),
        }
    }

    /// Takes a notification-stream slot for the caller `sub`; the slot is
    /// released when dropped.
    pub(crate) async fn open_stream(&self, sub: &str) -> Result<StreamSlot, TooManyStreams> {
        match &self.streams {
            StreamSlots::Memory(limiter) => limiter.acquire(CallerKey::Subject(sub.to_string())),
            StreamSlots::Redis(r) => r
                .acquire(&redis::digest(&[b"sub", sub.as_bytes()]))
                .await
                .map(StreamSlot::shared)
                .map_err(|()| TooManyStreams { cap: r.cap() }),
        }
    }
}

/// A refused request: how long until the caller may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimited {
    /// Time until the next request would be admitted.
    pub retry_after: Duration,
}

impl RateLimited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let ms = self.retry_after.as_millis() as u64;
        ms.div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budgets_charge_the_limiter_and_cap_streams() {
        let b = Budgets::in_memory(Some(RateLimiter::new(60, 2, 100)), StreamLimiter::new(1));
        assert!(b.charge_subject("ana").await.is_ok());
        assert!(b.charge_subject("ana").await.is_ok());
        assert!(b.charge_subject("ana").await.unwrap_err().retry_after > Duration::ZERO);
        assert!(
            b.charge_subject("bo").await.is_ok(),
            "budgets are per caller"
        );
        let peer: IpAddr = [127, 0, 0, 1].into();
        assert!(b.charge_address(peer).is_ok());
        let slot = b.open_stream("ana").await.unwrap();
        assert_eq!(b.open_stream("ana").await.unwrap_err().cap, 1);
        drop(slot);
        b.open_stream("ana").await.unwrap();

        let off = Budgets::in_memory(None, StreamLimiter::new(1));
        for _ in 0..100 {
            assert!(off.charge_subject("ana").await.is_ok());
        }
    }

    #[test]
    fn refusal_carries_retry_after_in_whole_seconds() {
        let r = RateLimited {
            retry_after: Duration::from_millis(1200),
        };
        assert_eq!(r.retry_after_secs(), 2);
        let zero = RateLimited {
            retry_after: Duration::ZERO,
        };
        assert_eq!(zero.retry_after_secs(), 1);
    }
}

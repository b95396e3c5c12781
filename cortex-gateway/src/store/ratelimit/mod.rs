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
//! The state is in this process's memory: behind a load balancer each
//! replica counts on its own (see `docs/security.md`).

mod gcra;
mod streams;

use std::{net::IpAddr, time::Duration};

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

/// A gateway's per-caller budgets: the request rate (when on) and the
/// notification-stream cap.
#[derive(Debug)]
pub(crate) struct Budgets {
    limiter: Option<RateLimiter>,
    streams: StreamLimiter,
}

impl Budgets {
    /// `limiter` `None`: no rate limit.
    pub(crate) fn new(limiter: Option<RateLimiter>, streams: StreamLimiter) -> Self {
        Self { limiter, streams }
    }

    /// Charges one request to an authenticated caller.
    pub(crate) fn charge_subject(&self, sub: &str) -> Result<(), RateLimited> {
        match &self.limiter {
            Some(limiter) => limiter.check_subject(sub),
            None => Ok(()),
        }
    }

    /// Charges one request to a client address (before authentication).
    pub(crate) fn charge_address(&self, peer: IpAddr) -> Result<(), RateLimited> {
        match &self.limiter {
            Some(limiter) => limiter.check(&CallerKey::Address(peer)),
            None => Ok(()),
        }
    }

    /// Takes a notification-stream slot for the caller `sub`.
    pub(crate) fn open_stream(&self, sub: &str) -> Result<StreamSlot, TooManyStreams> {
        self.streams.acquire(CallerKey::Subject(sub.to_string()))
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

//! The cap on open notification streams per caller.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::CallerKey;

/// Counts open streams per caller and refuses one over the cap.
#[derive(Debug, Clone)]
pub(crate) struct StreamLimiter {
    cap: usize,
    open: Arc<Mutex<HashMap<CallerKey, usize>>>,
}

/// One open stream; dropping it (the stream ends) frees the slot.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    key: CallerKey,
    open: Arc<Mutex<HashMap<CallerKey, usize>>>,
    /// The slot's lease on the shared store, released with it.
    _shared: Option<crate::store::redis::RedisSlot>,
    /// The session whose stream holds the slot: its end signal lives as
    /// long as the stream.
    _session: Option<Arc<crate::store::sessions::Session>>,
}

impl StreamSlot {
    /// A slot held on the shared store (`None`: the store could not be
    /// reached and streams fail open).
    pub(crate) fn shared(slot: Option<crate::store::redis::RedisSlot>) -> Self {
        Self {
            key: CallerKey::Subject(String::new()),
            open: Arc::default(),
            _shared: slot,
            _session: None,
        }
    }

    /// The slot, keeping `session` (and so its end signal) alive with it.
    pub(crate) fn holding(mut self, session: Arc<crate::store::sessions::Session>) -> Self {
        self._session = Some(session);
        self
    }
}

/// Refusal of a stream over the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyStreams {
    /// The configured cap.
    pub cap: usize,
}

impl StreamLimiter {
    /// At most `cap` open streams per caller.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            open: Arc::default(),
        }
    }

    /// Takes a slot for `key`, or refuses when the caller is at the cap.
    pub(crate) fn acquire(&self, key: CallerKey) -> Result<StreamSlot, TooManyStreams> {
        let mut open = crate::sync::lock(&self.open);
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.cap {
            return Err(TooManyStreams { cap: self.cap });
        }
        *count += 1;
        Ok(StreamSlot {
            key,
            open: self.open.clone(),
            _shared: None,
            _session: None,
        })
    }

    #[cfg(test)]
    /// Open streams of `key`.
    pub(crate) fn open(&self, key: &CallerKey) -> usize {
        crate::sync::lock(&self.open).get(key).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = crate::sync::lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_caller_and_slots_free_on_drop() {
        let limiter = StreamLimiter::new(2);
        let alice = CallerKey::Subject("alice".into());
        let a1 = limiter.acquire(alice.clone()).unwrap();
        let _a2 = limiter.acquire(alice.clone()).unwrap();
        assert_eq!(limiter.acquire(alice.clone()).unwrap_err().cap, 2);
        limiter.acquire(CallerKey::Subject("bob".into())).unwrap();
        drop(a1);
        assert_eq!(limiter.open(&alice), 1);
        let _a3 = limiter.acquire(alice.clone()).unwrap();
    }
}

//! Token caches: answers derived from a caller's token (an introspection
//! verdict, an exchanged token), kept for a while so that the next request
//! with the same token skips a round trip to the authorization server.
//!
//! A cache is keyed by a [`TokenKey`], a SHA-256 digest of the token and of
//! what the answer is for (a backend's id, say), never by the token. Each
//! entry has its own time to live. The cache is bounded by count and by
//! bytes: over a bound, expired entries go first, then the oldest.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_lc_rs::digest::{Context, SHA256};

use crate::sync::lock;

/// What one entry costs besides its value: the key (twice: map and order),
/// the expiry, the map slot and the value's header, rounded up.
pub(crate) const TOKEN_ENTRY_OVERHEAD_BYTES: usize = 128;

/// The key of a cached answer: SHA-256 over what it is for and the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    /// Redacted: even a digest is a stable identifier of the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The key of the answer about `token` for `purpose` (empty when the
    /// cache holds one answer per token).
    pub(crate) fn new(purpose: &str, token: &str) -> Self {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&(purpose.len() as u64).to_be_bytes());
        ctx.update(purpose.as_bytes());
        ctx.update(token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// The digest.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The bounds of a token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenCacheLimits {
    /// Entries at most.
    pub max_entries: usize,
    /// Bytes at most ([`TOKEN_ENTRY_OVERHEAD_BYTES`] plus the value each).
    pub max_bytes: usize,
}

/// The bounds of the introspection-answer cache. An answer is one word,
/// so the count bound is the one that binds.
pub(crate) const INTROSPECTION_CACHE_LIMITS: TokenCacheLimits = TokenCacheLimits {
    max_entries: 10_000,
    max_bytes: 2 * 1024 * 1024,
};

/// The bounds of the exchanged-token cache (per caller token and backend).
pub(crate) const EXCHANGE_CACHE_LIMITS: TokenCacheLimits = TokenCacheLimits {
    max_entries: 10_000,
    max_bytes: 32 * 1024 * 1024,
};

/// The bounds of the cache of gateway-signed assertions (per caller token
/// and backend; an assertion is well under 2 KiB).
pub(crate) const ASSERTION_CACHE_LIMITS: TokenCacheLimits = TokenCacheLimits {
    max_entries: 10_000,
    max_bytes: 16 * 1024 * 1024,
};

/// A token cache, wherever it is kept.
#[derive(Debug)]
pub(crate) enum TokenCache {
    /// In this process's memory.
    Memory(MemoryTokenCache),
    /// On Redis (with a short-lived copy in this process).
    Redis(Box<super::redis_tokens::RedisTokenCache>),
}

impl TokenCache {
    /// A cache in this process's memory with these bounds.
    pub(crate) fn in_memory(limits: TokenCacheLimits) -> Self {
        Self::Memory(MemoryTokenCache::new(limits))
    }

    /// The unexpired answer under `key`.
    pub(crate) async fn get(&self, key: &TokenKey) -> Option<String> {
        self.get_map(key, str::to_owned).await
    }

    /// `read` of the unexpired answer under `key` (no copy of the answer
    /// in memory).
    pub(crate) async fn get_map<T>(
        &self,
        key: &TokenKey,
        read: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        match self {
            Self::Memory(m) => m.get_map(key, Instant::now(), read),
            Self::Redis(r) => r.get_map(key, read).await,
        }
    }

    /// Keeps `value` under `key` for `ttl` (nothing when `ttl` is zero or
    /// the value alone exceeds the byte bound).
    pub(crate) async fn put(&self, key: TokenKey, value: &str, ttl: Duration) {
        match self {
            Self::Memory(m) => m.put(key, value, ttl, Instant::now()),
            Self::Redis(r) => r.put(key, value, ttl).await,
        }
    }
}

fn cost(value: &str) -> usize {
    TOKEN_ENTRY_OVERHEAD_BYTES + value.len()
}

#[derive(Default)]
struct State {
    entries: HashMap<TokenKey, (Box<str>, Instant)>,
    /// Insertion order, oldest first (may name entries already expired).
    order: VecDeque<TokenKey>,
    bytes: usize,
}

impl State {
    fn remove(&mut self, key: &TokenKey) {
        if let Some((value, _)) = self.entries.remove(key) {
            self.bytes -= cost(&value);
        }
    }
}

/// A token cache in this process's memory.
pub(crate) struct MemoryTokenCache {
    limits: TokenCacheLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryTokenCache {
    /// Counts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("MemoryTokenCache")
            .field("entries", &state.entries.len())
            .field("bytes", &state.bytes)
            .field("limits", &self.limits)
            .finish()
    }
}

impl MemoryTokenCache {
    /// An empty cache with these bounds (the count at least 1).
    pub(crate) fn new(limits: TokenCacheLimits) -> Self {
        Self {
            limits: TokenCacheLimits {
                max_entries: limits.max_entries.max(1),
                max_bytes: limits.max_bytes,
            },
            state: Mutex::default(),
        }
    }

    pub(crate) fn get_map<T>(
        &self,
        key: &TokenKey,
        now: Instant,
        read: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let state = lock(&self.state);
        let (value, until) = state.entries.get(key)?;
        (*until > now).then(|| read(value))
    }

    #[cfg(test)]
    fn get(&self, key: &TokenKey, now: Instant) -> Option<String> {
        self.get_map(key, now, str::to_owned)
    }

    pub(crate) fn put(&self, key: TokenKey, value: &str, ttl: Duration, now: Instant) {
        let bytes = cost(value);
        if ttl.is_zero() || bytes > self.limits.max_bytes {
            return;
        }
        let Some(until) = now.checked_add(ttl) else {
            return;
        };
        let mut state = lock(&self.state);
        if state.entries.contains_key(&key) {
            state.remove(&key);
            state.order.retain(|k| *k != key);
        }
        let full = |s: &State| {
            s.entries.len() >= self.limits.max_entries || s.bytes + bytes > self.limits.max_bytes
        };
        if full(&state) {
            let State {
                entries,
                order,
                bytes: total,
            } = &mut *state;
            entries.retain(|_, (v, u)| {
                let keep = *u > now;
                if !keep {
                    *total -= cost(v);
                }
                keep
            });
            order.retain(|k| entries.contains_key(k));
        }
        while full(&state) {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            state.remove(&oldest);
        }
        state.bytes += bytes;
        state.entries.insert(key, (value.into(), until));
        state.order.push_back(key);
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.entries.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> MemoryTokenCache {
        MemoryTokenCache::new(TokenCacheLimits {
            max_entries,
            max_bytes,
        })
    }

    #[tokio::test]
    async fn answers_are_keyed_by_token_and_purpose_and_expire() {
        let c = TokenCache::in_memory(TokenCacheLimits {
            max_entries: 10,
            max_bytes: 1 << 20,
        });
        let key = TokenKey::new("crm", "tok.en");
        c.put(key, "exchanged", Duration::from_secs(60)).await;
        assert_eq!(c.get(&key).await.as_deref(), Some("exchanged"));
        assert_eq!(c.get(&TokenKey::new("erp", "tok.en")).await, None);
        assert_eq!(c.get(&TokenKey::new("crm", "tok.en2")).await, None);
        assert_ne!(TokenKey::new("ab", "c"), TokenKey::new("a", "bc"));
        c.put(TokenKey::new("", "zero"), "x", Duration::ZERO).await;
        assert_eq!(c.get(&TokenKey::new("", "zero")).await, None);
        let shown = format!("{c:?} {key:?}");
        assert!(
            !shown.contains("tok.en") && !shown.contains("exchanged"),
            "{shown}"
        );

        let m = cache(10, 1 << 20);
        let now = Instant::now();
        m.put(key, "v", Duration::from_secs(30), now);
        assert!(m.get(&key, now + Duration::from_secs(29)).is_some());
        assert!(m.get(&key, now + Duration::from_secs(30)).is_none());
    }

    #[test]
    fn the_cache_is_bounded_by_count_and_bytes() {
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        let m = cache(3, usize::MAX);
        for i in 0..10 {
            m.put(TokenKey::new("", &i.to_string()), "v", ttl, now);
        }
        assert_eq!(m.counts(), (3, 3 * cost("v")));
        assert!(
            m.get(&TokenKey::new("", "0"), now).is_none(),
            "oldest evicted"
        );
        assert!(m.get(&TokenKey::new("", "9"), now).is_some());

        let big = "t".repeat(1000);
        let m = cache(1000, 2 * cost(&big));
        for i in 0..10 {
            m.put(TokenKey::new("", &i.to_string()), &big, ttl, now);
            assert!(m.counts().1 <= 2 * cost(&big));
        }
        assert_eq!(m.counts(), (2, 2 * cost(&big)));
        // Replacing an entry charges it once.
        m.put(TokenKey::new("", "9"), &big, ttl, now);
        assert_eq!(m.counts(), (2, 2 * cost(&big)));
        // A value larger than the whole bound is not kept.
        m.put(TokenKey::new("", "huge"), &big.repeat(3), ttl, now);
        assert_eq!(m.counts(), (2, 2 * cost(&big)));
    }

    #[test]
    fn expired_entries_go_before_live_ones() {
        let now = Instant::now();
        let m = cache(2, usize::MAX);
        m.put(
            TokenKey::new("", "long"),
            "v",
            Duration::from_secs(600),
            now,
        );
        m.put(TokenKey::new("", "short"), "v", Duration::from_secs(1), now);
        let later = now + Duration::from_secs(2);
        m.put(
            TokenKey::new("", "new"),
            "v",
            Duration::from_secs(600),
            later,
        );
        assert!(m.get(&TokenKey::new("", "long"), later).is_some());
        assert!(m.get(&TokenKey::new("", "new"), later).is_some());
    }
}

//! Decrypted grants kept in memory, so a call does not open a record each
//! time. Bounded by entry count and by estimated bytes; an entry lives
//! until the grant's own expiry or the configured age, whichever is first.
//!
//! Entries are keyed by `sub`, then by server, so a lookup borrows the
//! caller's strings and allocates nothing. When full, expired entries go
//! first, then the ones that would expire soonest.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{StoredGrant, config::VaultCacheLimits};

/// How full the cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VaultCacheUsage {
    /// Grants held.
    pub entries: usize,
    /// Bytes charged for them (estimated).
    pub bytes: usize,
}

struct Entry {
    grant: Arc<StoredGrant>,
    until: Instant,
    bytes: usize,
}

#[derive(Default)]
struct Entries {
    by_sub: HashMap<String, HashMap<String, Entry>>,
    entries: usize,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, sub: &str, server: &str) {
        let Some(servers) = self.by_sub.get_mut(sub) else {
            return;
        };
        if let Some(old) = servers.remove(server) {
            self.entries -= 1;
            self.bytes -= old.bytes;
        }
        if servers.is_empty() {
            self.by_sub.remove(sub);
        }
    }

    /// Drops every entry kept until `t` or earlier.
    fn drop_until(&mut self, t: Instant) {
        let (entries, bytes) = (&mut self.entries, &mut self.bytes);
        self.by_sub.retain(|_, servers| {
            servers.retain(|_, e| {
                let keep = e.until > t;
                if !keep {
                    *entries -= 1;
                    *bytes -= e.bytes;
                }
                keep
            });
            !servers.is_empty()
        });
    }
}

/// Estimated heap bytes of one entry: keys, the grant's strings and the
/// structures around them.
fn entry_bytes(sub: &str, server: &str, g: &StoredGrant) -> usize {
    let grant = &g.grant;
    128 + std::mem::size_of::<Entry>()
        + std::mem::size_of::<StoredGrant>()
        + sub.len()
        + server.len()
        + grant.access_token.expose().len()
        + grant.refresh_token.as_ref().map_or(0, |t| t.expose().len())
        + grant.scope.len()
        + grant.account.len()
}

/// The cache of decrypted grants.
pub(crate) struct GrantCache {
    map: Mutex<Entries>,
    limits: VaultCacheLimits,
}

impl std::fmt::Debug for GrantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCache")
            .field("usage", &self.usage())
            .field("limits", &self.limits)
            .finish()
    }
}

impl GrantCache {
    pub(crate) fn new(limits: VaultCacheLimits) -> Self {
        Self {
            map: Mutex::default(),
            limits,
        }
    }

    /// The live grant of (`sub`, `server`), if kept.
    pub(crate) fn get(&self, sub: &str, server: &str) -> Option<Arc<StoredGrant>> {
        let map = crate::sync::lock(&self.map);
        let entry = map.by_sub.get(sub)?.get(server)?;
        (entry.until > Instant::now()).then(|| entry.grant.clone())
    }

    /// Keeps `grant` for (`sub`, `server`) until its expiry (unix seconds
    /// `now_unix` being now) or the configured age. A grant already
    /// expired, or larger than the whole byte bound, is not kept.
    pub(crate) fn insert(&self, sub: &str, server: &str, grant: Arc<StoredGrant>, now_unix: u64) {
        if self.limits.max_entries == 0 {
            return;
        }
        let mut age = self.limits.max_age_s;
        if let Some(exp) = grant.grant.expires_at {
            age = age.min(exp.saturating_sub(now_unix));
        }
        if age == 0 {
            return;
        }
        let bytes = entry_bytes(sub, server, &grant);
        if bytes > self.limits.max_bytes {
            return;
        }
        let now = Instant::now();
        let until = now + Duration::from_secs(age);
        let mut guard = crate::sync::lock(&self.map);
        let map = &mut *guard;
        map.remove(sub, server);
        let fits = |m: &Entries| {
            m.entries < self.limits.max_entries && m.bytes + bytes <= self.limits.max_bytes
        };
        if !fits(map) {
            map.drop_until(now);
        }
        while !fits(map) {
            // The entry that would go soonest anyway.
            let Some(soonest) = map
                .by_sub
                .values()
                .flat_map(|servers| servers.values())
                .map(|e| e.until)
                .min()
            else {
                break;
            };
            map.drop_until(soonest);
        }
        map.by_sub.entry(sub.to_string()).or_default().insert(
            server.to_string(),
            Entry {
                grant,
                until,
                bytes,
            },
        );
        map.entries += 1;
        map.bytes += bytes;
    }

    /// Forgets (`sub`, `server`).
    pub(crate) fn remove(&self, sub: &str, server: &str) {
        crate::sync::lock(&self.map).remove(sub, server);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        *crate::sync::lock(&self.map) = Entries::default();
    }

    pub(crate) fn usage(&self) -> VaultCacheUsage {
        let map = crate::sync::lock(&self.map);
        VaultCacheUsage {
            entries: map.entries,
            bytes: map.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{Grant, Secret};

    fn stored(token_bytes: usize, expires_at: Option<u64>) -> Arc<StoredGrant> {
        let mut grant = Grant::new(Secret::new("t".repeat(token_bytes)), "account");
        grant.expires_at = expires_at;
        Arc::new(StoredGrant {
            grant,
            created_at: 1,
            updated_at: 1,
        })
    }

    #[test]
    fn the_soonest_to_expire_go_first_and_both_bounds_hold() {
        let now = 1_000_000;
        let cache = GrantCache::new(VaultCacheLimits {
            max_entries: 3,
            max_bytes: 100_000,
            max_age_s: 600,
        });
        cache.insert("a", "s", stored(10, Some(now + 100)), now);
        cache.insert("b", "s", stored(10, Some(now + 50)), now);
        cache.insert("c", "s", stored(10, None), now);
        cache.insert("d", "s", stored(10, Some(now + 300)), now);
        assert!(cache.get("b", "s").is_none(), "the soonest to expire went");
        for sub in ["a", "c", "d"] {
            assert!(cache.get(sub, "s").is_some(), "{sub}");
        }
        assert_eq!(cache.usage().entries, 3);
        // Replacing an entry charges it once.
        cache.insert("a", "s", stored(10, Some(now + 100)), now);
        assert_eq!(cache.usage().entries, 3);
        // Already expired: not kept; larger than the byte bound: not kept.
        cache.insert("e", "s", stored(10, Some(now - 1)), now);
        cache.insert("f", "s", stored(200_000, None), now);
        assert!(cache.get("e", "s").is_none() && cache.get("f", "s").is_none());
        // The byte bound evicts as many as it takes.
        let one = cache.usage().bytes / 3;
        let tight = GrantCache::new(VaultCacheLimits {
            max_entries: 100,
            max_bytes: 3 * one,
            max_age_s: 600,
        });
        for (i, sub) in ["a", "b", "c"].into_iter().enumerate() {
            tight.insert(sub, "s", stored(10, Some(now + 10 + i as u64)), now);
        }
        tight.insert("z", "s", stored(10 + one, None), now);
        let usage = tight.usage();
        assert!(usage.bytes <= 3 * one, "{usage:?}");
        assert!(tight.get("a", "s").is_none() && tight.get("b", "s").is_none());
        assert!(tight.get("c", "s").is_some() && tight.get("z", "s").is_some());
        tight.remove("c", "s");
        tight.clear();
        assert_eq!(tight.usage(), VaultCacheUsage::default());
    }
}

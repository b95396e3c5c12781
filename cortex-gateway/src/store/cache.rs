//! A map bounded by entry count and by bytes, evicting its oldest entries
//! first: the per-catalog caches of `tools/list` renderings and pages.
//!
//! Oldest-first rather than least-recently-used: a hit then costs a hash
//! lookup and nothing else (no reordering under the lock on the
//! `tools/list` path), and the working set of a real deployment (a few
//! scope sets, revisions and pages) fits far below the bounds, so what is
//! evicted is what a hostile or unusual caller added last.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// How full one of the catalog's bounded caches is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheUsage {
    /// Entries held.
    pub entries: usize,
    /// Bytes charged for them (keys and values, estimated).
    pub bytes: usize,
}

/// A map with at most `max_entries` entries and `max_bytes` charged bytes.
#[derive(Debug)]
pub(crate) struct BoundedCache<K, V> {
    map: HashMap<K, (V, usize)>,
    /// Insertion order, oldest first.
    order: VecDeque<K>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    /// An empty cache with these bounds.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The value under `key`.
    pub(crate) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|(v, _)| v.clone())
    }

    /// The key as stored and the value under `key`.
    pub(crate) fn get_key_value<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        self.map
            .get_key_value(key)
            .map(|(k, (v, _))| (k.clone(), v.clone()))
    }

    /// Keeps `value` under `key`, charged `bytes`, evicting the oldest
    /// entries until both bounds hold. A value larger than the whole byte
    /// bound is not kept (the caller still has it).
    pub(crate) fn insert(&mut self, key: K, value: V, bytes: usize) {
        if bytes > self.max_bytes || self.max_entries == 0 {
            return;
        }
        if let Some((_, old)) = self.map.remove(&key) {
            self.bytes -= old;
            self.order.retain(|k| k != &key);
        }
        while self.map.len() + 1 > self.max_entries || self.bytes + bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = self.map.remove(&oldest) {
                self.bytes -= b;
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, (value, bytes));
        self.bytes += bytes;
    }

    /// How full it is.
    pub(crate) fn usage(&self) -> CacheUsage {
        CacheUsage {
            entries: self.map.len(),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bounds_hold_and_the_oldest_go_first() {
        let mut c = BoundedCache::new(3, 100);
        for i in 0..10 {
            c.insert(i, i, 10);
            assert!(c.usage().entries <= 3);
        }
        assert_eq!(c.get(&9), Some(9));
        assert_eq!(c.get(&6), None, "the oldest were evicted");
        assert_eq!(
            c.usage(),
            CacheUsage {
                entries: 3,
                bytes: 30
            }
        );
        // The byte bound: one large entry evicts several small ones.
        c.insert(100, 100, 80);
        assert_eq!(
            c.usage(),
            CacheUsage {
                entries: 3,
                bytes: 100
            }
        );
        assert_eq!(c.get(&8), Some(8));
        assert_eq!(c.get(&7), None);
        // Larger than the whole bound: not kept, nothing evicted.
        c.insert(200, 200, 101);
        assert_eq!(c.get(&200), None);
        assert_eq!(c.usage().entries, 3);
        // Replacing a key charges it once.
        c.insert(9, 90, 5);
        assert_eq!(c.get(&9), Some(90));
        assert_eq!(
            c.usage(),
            CacheUsage {
                entries: 3,
                bytes: 95
            }
        );
    }
}

//! Values derived from one verified caller, computed once per caller
//! instead of once per request.
//!
//! The token cache hands every request of the same token the same
//! `Arc<Caller>`, so the `Arc`'s address names the caller. An entry keeps a
//! `Weak` to it: while the entry exists that address cannot be given to
//! another caller (the `Weak` keeps the allocation), so a hit is always the
//! caller the value was made for. When the caller itself is dropped (token
//! evicted or expired, no request holding it) its claims and token are
//! freed at once; the entry only keeps the empty allocation until the memo
//! is pruned.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use cortex_backend::Caller;

/// Entries kept before dead callers are pruned.
const CAPACITY: usize = 4096;
/// Estimated bytes kept before dead callers are pruned (see [`entry_bytes`]).
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Address of the caller's `Arc` -> (the caller, the value, its estimated
/// bytes).
#[derive(Default)]
struct Entries<T> {
    map: HashMap<usize, (Weak<Caller>, Arc<T>, usize)>,
    bytes: usize,
}

/// Estimated heap bytes of one entry: the value, the caller allocation
/// its `Weak` keeps, and the caller's token and identity strings, which
/// bound what a value derived from them holds.
fn entry_bytes<T>(caller: &Caller) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<T>()
        + std::mem::size_of::<Caller>()
        + 64
        + caller.token().len()
        + caller.sub.len()
        + opt(&caller.email)
        + opt(&caller.role)
        + opt(&caller.pool)
        + opt(&caller.client_id)
        + caller.scopes.iter().map(|s| s.len() + 1).sum::<usize>()
}

/// One derived value per live caller.
pub(crate) struct CallerMemo<T> {
    map: Mutex<Entries<T>>,
    /// Byte bound ([`MAX_BYTES`]; smaller in tests).
    max_bytes: usize,
}

impl<T> Default for CallerMemo<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(Entries {
                map: HashMap::new(),
                bytes: 0,
            }),
            max_bytes: MAX_BYTES,
        }
    }
}

impl<T> std::fmt::Debug for CallerMemo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerMemo")
            .field("entries", &self.len())
            .finish()
    }
}

impl<T> CallerMemo<T> {
    /// The value for `caller`, made by `make` the first time. An error is
    /// returned as it is and not remembered.
    pub(crate) fn get_or_try_insert<E>(
        &self,
        caller: &Arc<Caller>,
        make: impl FnOnce(&Caller) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let key = Arc::as_ptr(caller) as usize;
        if let Some((weak, value, _)) = self.lock().map.get(&key)
            && std::ptr::eq(weak.as_ptr(), Arc::as_ptr(caller))
        {
            return Ok(value.clone());
        }
        let value = Arc::new(make(caller)?);
        let bytes = entry_bytes::<T>(caller);
        if bytes > self.max_bytes {
            return Ok(value);
        }
        let max_bytes = self.max_bytes - bytes;
        let mut guard = self.lock();
        let entries = &mut *guard;
        let full = |e: &Entries<T>| e.map.len() >= CAPACITY || e.bytes > max_bytes;
        if full(entries) {
            let total = &mut entries.bytes;
            entries.map.retain(|_, (weak, _, size)| {
                let keep = weak.strong_count() > 0;
                if !keep {
                    *total -= *size;
                }
                keep
            });
            if full(entries) {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        if let Some((_, _, old)) = entries
            .map
            .insert(key, (Arc::downgrade(caller), value.clone(), bytes))
        {
            entries.bytes -= old;
        }
        entries.bytes += bytes;
        Ok(value)
    }

    /// Entries held, live or not.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    #[cfg(test)]
    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        crate::sync::lock(&self.map)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    use cortex_backend::{auth::JwtValidator, testing::TestIssuer};

    /// A caller verified from a real token; tests clone it into callers of
    /// their own (each clone is a new allocation, as with a new token).
    async fn verified() -> Caller {
        let issuer = TestIssuer::start().await.unwrap();
        let validator = JwtValidator::new(issuer.jwt_config("memo-test")).unwrap();
        validator
            .verify(&issuer.token("memo-test").mint())
            .await
            .unwrap()
    }

    fn caller(base: &Caller, sub: &str) -> Arc<Caller> {
        let mut c = base.clone();
        c.sub = sub.to_string();
        Arc::new(c)
    }

    #[tokio::test]
    async fn made_once_per_caller_and_never_shared_between_callers() {
        let base = verified().await;
        let caller = |sub: &str| caller(&base, sub);
        let memo = CallerMemo::<String>::default();
        let made = AtomicUsize::new(0);
        let make = |c: &Caller| {
            made.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(c.sub.clone())
        };
        let alice = caller("alice");
        assert_eq!(*memo.get_or_try_insert(&alice, make).unwrap(), "alice");
        assert_eq!(*memo.get_or_try_insert(&alice, make).unwrap(), "alice");
        assert_eq!(made.load(Ordering::SeqCst), 1);
        // Another caller with the same claims is another entry.
        let alice_again = caller("alice");
        memo.get_or_try_insert(&alice_again, make).unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 2);
        // A caller allocated after one is dropped never sees its value,
        // even if the allocator hands it the same address.
        drop(alice);
        for n in 0..64 {
            let bob = caller(&format!("bob{n}"));
            assert_eq!(
                *memo.get_or_try_insert(&bob, make).unwrap(),
                format!("bob{n}")
            );
        }
    }

    #[tokio::test]
    async fn errors_are_not_remembered() {
        let base = verified().await;
        let memo = CallerMemo::<String>::default();
        let alice = caller(&base, "alice");
        assert!(memo.get_or_try_insert(&alice, |_| Err("no")).is_err());
        assert!(memo.is_empty());
        assert_eq!(
            *memo
                .get_or_try_insert(&alice, |c| Ok::<_, ()>(c.sub.clone()))
                .unwrap(),
            "alice"
        );
    }

    #[tokio::test]
    async fn bounded() {
        let base = verified().await;
        let memo = CallerMemo::<usize>::default();
        let mut live = Vec::new();
        for n in 0..(CAPACITY * 2 + 10) {
            let c = caller(&base, &format!("u{n}"));
            if n % 2 == 0 {
                // Half of them stay alive, as callers still in the token
                // cache would.
                live.push(c.clone());
            }
            memo.get_or_try_insert(&c, |_| Ok::<_, ()>(n)).unwrap();
        }
        assert!(memo.len() <= CAPACITY);
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        let base = verified().await;
        let memo = CallerMemo::<String> {
            max_bytes: 1024 * 1024,
            ..CallerMemo::default()
        };
        let mut live = Vec::new();
        for n in 0..200 {
            let c = caller(&base, &format!("{n}:{}", "u".repeat(16 * 1024)));
            live.push(c.clone());
            let made = memo
                .get_or_try_insert(&c, |c| Ok::<_, ()>(c.sub.clone()))
                .unwrap();
            assert_eq!(*made, c.sub);
            // A hit returns the value made for this caller, without making it again.
            let hit = memo.get_or_try_insert(&c, |_| Err(())).unwrap();
            assert!(Arc::ptr_eq(&hit, &made));
            let entries = memo.lock();
            let sum: usize = entries.map.values().map(|(_, _, b)| b).sum();
            assert_eq!(entries.bytes, sum);
            assert!(entries.bytes <= memo.max_bytes, "{}", entries.bytes);
        }
    }
}

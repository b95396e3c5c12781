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

/// Address of the caller's `Arc` -> (the caller, the value).
type Entries<T> = HashMap<usize, (Weak<Caller>, Arc<T>)>;

/// One derived value per live caller.
pub struct CallerMemo<T> {
    map: Mutex<Entries<T>>,
}

impl<T> Default for CallerMemo<T> {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
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
    pub fn get_or_try_insert<E>(
        &self,
        caller: &Arc<Caller>,
        make: impl FnOnce(&Caller) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let key = Arc::as_ptr(caller) as usize;
        if let Some((weak, value)) = self.lock().get(&key)
            && std::ptr::eq(weak.as_ptr(), Arc::as_ptr(caller))
        {
            return Ok(value.clone());
        }
        let value = Arc::new(make(caller)?);
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.retain(|_, (weak, _)| weak.strong_count() > 0);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(key, (Arc::downgrade(caller), value.clone()));
        Ok(value)
    }

    /// Entries held, live or not.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        crate::lock(&self.map)
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
}

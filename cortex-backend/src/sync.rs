//! Poison-tolerant locks.
//!
//! A `std::sync` lock is poisoned when a thread panics while holding it, and
//! every later `lock()` then returns an error. The values Cortex keeps behind
//! locks (caches, key sets, counters, logs) stay valid between statements, so
//! a panic elsewhere is no reason to stop serving: these helpers take the
//! guard either way. Every crate of the workspace locks through them.
//!
//! ```
//! use std::sync::{Mutex, RwLock};
//!
//! let seen = Mutex::new(Vec::new());
//! cortex_backend::sync::lock(&seen).push("crm");
//! assert_eq!(cortex_backend::sync::lock(&seen).len(), 1);
//!
//! let keys = RwLock::new(0u32);
//! *cortex_backend::sync::write_lock(&keys) += 1;
//! assert_eq!(*cortex_backend::sync::read_lock(&keys), 1);
//! ```

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, taking the data even if a thread panicked while holding it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `lock`, taking the data even if a writer panicked while holding it.
pub fn read_lock<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `lock`, taking the data even if a writer panicked while holding it.
pub fn write_lock<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let mutex = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(2));
        let (m, r) = (mutex.clone(), rw.clone());
        let panicked = std::thread::spawn(move || {
            let _held = m.lock().unwrap();
            let _written = r.write().unwrap();
            panic!("poison both locks");
        })
        .join();
        assert!(panicked.is_err());
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *lock(&mutex) += 10;
        assert_eq!(*lock(&mutex), 11);
        *write_lock(&rw) += 20;
        assert_eq!(*read_lock(&rw), 22);
    }
}

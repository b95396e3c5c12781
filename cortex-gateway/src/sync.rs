//! Small concurrency helpers every layer uses: per-thread slots for state
//! that every request writes, and poison-tolerant locks.

/// How many slots [`thread_slot`] hands out (threads beyond this many
/// share them).
pub(crate) const THREAD_SLOTS: usize = 32;

thread_local! {
    static SLOT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The calling thread's slot, below [`THREAD_SLOTS`]. State that every
/// request writes (the metric counters, the backends' idle connections) is
/// kept per slot, so that threads on different cores do not write the same
/// cache lines, and a serving thread gets back the backend connections it
/// opened. Serving thread `i` has slot `i` ([`claim_thread_slot`]); other
/// threads take slots in turn from the last one down, the first time they
/// ask, so they meet the serving threads only when there are many of both.
pub(crate) fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SLOT.with(|slot| {
        slot.get().unwrap_or_else(|| {
            let taken = THREAD_SLOTS - 1 - NEXT.fetch_add(1, Ordering::Relaxed) % THREAD_SLOTS;
            slot.set(Some(taken));
            taken
        })
    })
}

/// Gives the calling thread slot `index` (modulo [`THREAD_SLOTS`]).
pub(crate) fn claim_thread_slot(index: usize) {
    SLOT.with(|slot| slot.set(Some(index % THREAD_SLOTS)));
}

/// The workspace's poison-tolerant locks (every value kept behind these
/// locks stays valid between statements).
pub(crate) use cortex_backend::sync::{lock, read_lock, write_lock};

//! Time limits on the serving threads, checked by one sweep per thread
//! instead of one Tokio timer per limit.
//!
//! Every `tools/call` has two limits: the gateway's per-request deadline and
//! the backend's timeout. As Tokio timers they cost a registration in the
//! runtime's timer wheel (behind its lock) and a removal per call, and when
//! a new timer is the earliest one a current-thread runtime also writes its
//! own wake-up descriptor (measured: 0.58 writes per call). Here a limit is
//! an entry in a list kept by the thread ([`within`]): adding and removing
//! one touches no lock and no atomic besides the task's waker. A sweeper task
//! per serving thread ([`sweep`]) wakes every [`TICK`] while the list is not
//! empty and ends the limits that have passed, so a limit ends between its
//! time and one tick later. The limits here are seconds long (a backend's
//! `timeout_ms`, `CORTEX_REQUEST_TIMEOUT_MS`), so the tick is noise.
//!
//! A thread without a sweeper (the calling runtime with `CORTEX_WORKERS=0`,
//! a refresh task, a test) gets a Tokio timer, as before.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// How often a thread's sweeper checks its limits while it has any.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A limit ended before the future it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Runs `future` for at most `limit` (from now).
///
/// Not an `async fn`: that would hold `future` twice over (as the
/// argument and inside the limit), and the futures bounded here are a few
/// KiB each.
pub(crate) fn within<F: Future>(limit: Duration, future: F) -> Within<F> {
    match WHEEL.with(|w| w.borrow().as_ref().map(|w| w.id)) {
        Some(wheel) => Within::Swept {
            limited: Limited {
                future,
                deadline: Instant::now() + limit,
                wheel,
                key: None,
            },
        },
        None => Within::Timer {
            timeout: tokio::time::timeout(limit, future),
        },
    }
}

pin_project_lite::pin_project! {
    /// What [`within`] returns.
    #[project = WithinProj]
    pub(crate) enum Within<F> {
        Swept { #[pin] limited: Limited<F> },
        Timer { #[pin] timeout: tokio::time::Timeout<F> },
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WithinProj::Swept { limited } => limited.poll(cx),
            WithinProj::Timer { timeout } => timeout.poll(cx).map(|r| r.map_err(|_| Elapsed)),
        }
    }
}

pin_project_lite::pin_project! {
    /// `future`, ended with [`Elapsed`] once the thread's sweeper has found
    /// `deadline` passed.
    pub(crate) struct Limited<F> {
        #[pin]
        future: F,
        deadline: Instant,
        // The wheel of the thread that created this.
        wheel: u64,
        // The entry, once polled.
        key: Option<Key>,
    }

    impl<F> PinnedDrop for Limited<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(key) = this.key {
                with_wheel(key.wheel, |w| w.remove(key));
            }
        }
    }
}

impl<F: Future> Future for Limited<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let deadline = *this.deadline;
        let wheel = *this.wheel;
        let state = with_wheel(wheel, |w| match *this.key {
            None => {
                *this.key = Some(w.add(deadline, cx.waker()));
                Poll::Pending
            }
            Some(key) => w.check(key, cx.waker()),
        });
        match state {
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(())) => Poll::Ready(Err(Elapsed)),
            // Polled on another thread than the one it was made on, which
            // the serving threads' single-threaded runtimes never do: the
            // clock decides, and the bounded future's own wake-ups drive it.
            None if Instant::now() >= deadline => Poll::Ready(Err(Elapsed)),
            None => Poll::Pending,
        }
    }
}

/// The sweeper of the calling thread, which must be a serving thread with a
/// single-threaded runtime: from now on, limits created on this thread are
/// entries in its list, and this task ends the ones that have passed. Runs
/// until the runtime is dropped.
pub(crate) async fn sweep() {
    static IDS: AtomicU64 = AtomicU64::new(1);
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    WHEEL.with(|w| *w.borrow_mut() = Some(Wheel::new(id)));
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = Vec::new();
    loop {
        // Idle (no ticks) while there is nothing to end.
        std::future::poll_fn(|cx| with_wheel(id, |w| w.idle(cx.waker())).unwrap_or(Poll::Pending))
            .await;
        ticks.tick().await;
        with_wheel(id, |w| w.take_due(Instant::now(), &mut due));
        // Woken outside the borrow: waking only queues the task, but a
        // waker is foreign code.
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}

thread_local! {
    static WHEEL: RefCell<Option<Wheel>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's wheel if it is wheel `id`.
fn with_wheel<T>(id: u64, f: impl FnOnce(&mut Wheel) -> T) -> Option<T> {
    WHEEL
        .try_with(|w| match w.borrow_mut().as_mut() {
            Some(wheel) if wheel.id == id => Some(f(wheel)),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Where an entry is; the generation tells a reused slot from the entry's
/// own.
#[derive(Debug, Clone, Copy)]
struct Key {
    wheel: u64,
    index: usize,
    generation: u64,
}

/// One thread's limits.
struct Wheel {
    id: u64,
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    sweeper: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    entry: Option<(Instant, Waker)>,
}

impl Wheel {
    fn new(id: u64) -> Self {
        Self {
            id,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            sweeper: None,
        }
    }

    fn add(&mut self, deadline: Instant, waker: &Waker) -> Key {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        let slot = &mut self.slots[index];
        slot.entry = Some((deadline, waker.clone()));
        self.live += 1;
        if self.live == 1
            && let Some(sweeper) = self.sweeper.take()
        {
            sweeper.wake();
        }
        Key {
            wheel: self.id,
            index,
            generation: slot.generation,
        }
    }

    /// `Ready` once the sweeper has ended the entry; otherwise keeps the
    /// waker of this poll.
    fn check(&mut self, key: Key, waker: &Waker) -> Poll<()> {
        let slot = &mut self.slots[key.index];
        match &mut slot.entry {
            Some((_, stored)) if slot.generation == key.generation => {
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    fn remove(&mut self, key: Key) {
        let slot = &mut self.slots[key.index];
        if slot.generation == key.generation && slot.entry.take().is_some() {
            self.release(key.index);
        }
    }

    fn release(&mut self, index: usize) {
        self.slots[index].generation += 1;
        self.free.push(index);
        self.live -= 1;
    }

    /// `Ready` when there are entries; otherwise the sweeper waits for the
    /// next one.
    fn idle(&mut self, sweeper: &Waker) -> Poll<()> {
        if self.live > 0 {
            return Poll::Ready(());
        }
        self.sweeper = Some(sweeper.clone());
        Poll::Pending
    }

    /// Ends the entries due at `now`, handing over their wakers.
    fn take_due(&mut self, now: Instant, due: &mut Vec<Waker>) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if matches!(slot.entry, Some((deadline, _)) if deadline <= now) {
                if let Some((_, waker)) = slot.entry.take() {
                    due.push(waker);
                }
                self.release(index);
            }
        }
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> usize {
        WHEEL.with(|w| w.borrow().as_ref().map_or(0, Wheel::live))
    }

    /// Runs `test` on a single-threaded runtime whose thread sweeps, as a
    /// serving thread's. A limit the sweeper never ends fails the test
    /// after 10 s instead of hanging it.
    fn serving_thread<T>(test: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(sweep());
            tokio::task::yield_now().await;
            tokio::time::timeout(Duration::from_secs(10), test)
                .await
                .expect("a limit was never ended")
        })
    }

    #[test]
    fn a_limit_ends_a_future_that_takes_too_long_within_a_tick() {
        serving_thread(async {
            let started = Instant::now();
            let limited = within(Duration::from_millis(30), std::future::pending::<()>()).await;
            let took = started.elapsed();
            assert_eq!(limited, Err(Elapsed));
            assert!(took >= Duration::from_millis(30), "ended early: {took:?}");
            // Generous: a loaded CI machine may run the sweeper late.
            assert!(took < Duration::from_secs(2), "ended late: {took:?}");
            assert_eq!(live(), 0, "an ended limit leaves its entry");
        });
    }

    #[test]
    fn a_future_that_finishes_in_time_keeps_its_output_and_leaves_no_entry() {
        serving_thread(async {
            let quick = async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                7
            };
            assert_eq!(within(Duration::from_secs(5), quick).await, Ok(7));
            assert_eq!(within(Duration::from_secs(5), async { 8 }).await, Ok(8));
            assert_eq!(live(), 0);
        });
    }

    #[test]
    fn a_dropped_limit_frees_its_entry_and_slots_are_reused() {
        serving_thread(async {
            let mut held = Vec::new();
            for _ in 0..3 {
                let mut limited = Box::pin(within(
                    Duration::from_secs(60),
                    std::future::pending::<()>(),
                ));
                // One poll registers it.
                assert!(futures::FutureExt::now_or_never(&mut limited).is_none());
                held.push(limited);
            }
            assert_eq!(live(), 3);
            held.clear();
            assert_eq!(live(), 0);
            // A stale key of a reused slot is not mistaken for a new entry:
            // a new limit in a reused slot still waits for its own time.
            let limited = within(Duration::from_millis(20), std::future::pending::<()>()).await;
            assert_eq!(limited, Err(Elapsed));
            let slots = WHEEL.with(|w| w.borrow().as_ref().unwrap().slots.len());
            assert_eq!(slots, 3, "freed slots were not reused");
        });
    }

    #[test]
    fn limits_of_different_lengths_each_wait_for_their_own() {
        serving_thread(async {
            let set = tokio::task::LocalSet::new();
            let started = Instant::now();
            for ms in [60u64, 20, 40] {
                set.spawn_local(async move {
                    let r = within(Duration::from_millis(ms), std::future::pending::<()>()).await;
                    assert_eq!(r, Err(Elapsed));
                    let took = started.elapsed();
                    assert!(
                        took >= Duration::from_millis(ms),
                        "{ms} ms ended at {took:?}"
                    );
                });
            }
            set.await;
            assert_eq!(live(), 0);
        });
    }

    #[test]
    fn a_thread_without_a_sweeper_uses_a_tokio_timer() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limited = within(Duration::from_millis(20), std::future::pending::<()>());
            // Sent to another worker: fine, it holds a Tokio timer.
            let r = tokio::spawn(limited).await.unwrap();
            assert_eq!(r, Err(Elapsed));
            assert_eq!(live(), 0);
        });
    }
}

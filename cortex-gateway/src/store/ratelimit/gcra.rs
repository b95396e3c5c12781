//! The keyed GCRA limiter.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{CallerKey, RateLimited};

const SHARDS: usize = 16;

/// A per-caller request budget: `per_minute` requests a minute, with bursts
/// of up to `burst` back-to-back requests.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    shard_capacity: usize,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

/// The two key spaces of [`CallerKey`] in separate maps, so that a subject
/// is looked up by `&str` (no copy of it per request).
#[derive(Debug, Default)]
struct Shard {
    subjects: HashMap<Box<str>, Instant>,
    addresses: HashMap<IpAddr, Instant>,
}

impl Shard {
    fn len(&self) -> usize {
        self.subjects.len() + self.addresses.len()
    }
}

impl RateLimiter {
    /// A limiter admitting `per_minute` requests a minute per caller, in
    /// bursts of at most `burst` (at least 1), remembering at most
    /// `max_callers` callers (at least one per shard).
    ///
    /// # Panics
    /// If `per_minute` is zero (a budget of nothing is a configuration
    /// error, refused before this is built).
    pub(crate) fn new(per_minute: u32, burst: u32, max_callers: usize) -> Self {
        assert!(per_minute > 0, "a rate limit needs a budget of at least 1");
        let interval = Duration::from_secs(60) / per_minute;
        let tolerance = interval * burst.max(1).saturating_sub(1);
        Self {
            interval,
            tolerance,
            shard_capacity: max_callers.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// Charges one request to `key` now.
    pub(crate) fn check(&self, key: &CallerKey) -> Result<(), RateLimited> {
        match key {
            CallerKey::Subject(sub) => self.check_subject(sub),
            CallerKey::Address(address) => {
                self.charge(address, |s| &mut s.addresses, |a| *a, Instant::now)
            }
        }
    }

    /// Charges one request to the authenticated caller `sub` now: the same
    /// budget as `CallerKey::Subject(sub)`, without building the key.
    pub(crate) fn check_subject(&self, sub: &str) -> Result<(), RateLimited> {
        self.charge(
            sub,
            |s| &mut s.subjects,
            |s: &str| Box::from(s),
            Instant::now,
        )
    }

    /// Charges one request to `key` at `now` (tests drive the clock).
    #[cfg(test)]
    pub(crate) fn check_at(&self, key: &CallerKey, now: Instant) -> Result<(), RateLimited> {
        match key {
            CallerKey::Subject(sub) => self.charge(
                sub.as_str(),
                |s| &mut s.subjects,
                |s: &str| Box::from(s),
                || now,
            ),
            CallerKey::Address(address) => {
                self.charge(address, |s| &mut s.addresses, |a| *a, || now)
            }
        }
    }

    /// Charges one request to `key` in the map `pick` selects from its
    /// shard; `own` makes the stored key of a new caller. The time is read
    /// from `clock` once the shard is locked: read before, a thread that
    /// waited for the lock longer than the burst tolerance would find the
    /// caller's time moved past its own by the threads served meanwhile,
    /// and be refused though within the budget.
    fn charge<K, Q>(
        &self,
        key: &Q,
        pick: impl Fn(&mut Shard) -> &mut HashMap<K, Instant>,
        own: impl FnOnce(&Q) -> K,
        clock: impl FnOnce() -> Instant,
    ) -> Result<(), RateLimited>
    where
        K: Borrow<Q> + Hash + Eq,
        Q: Hash + Eq + ?Sized,
    {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut shard = crate::sync::lock(shard);
        let now = clock();
        let admit = |tat: Instant| {
            let tat = tat.max(now);
            match (tat - now).checked_sub(self.tolerance) {
                Some(wait) if !wait.is_zero() => Err(RateLimited { retry_after: wait }),
                _ => Ok(tat + self.interval),
            }
        };
        // A known caller is updated in place: one lookup, no copy of its key.
        if let Some(tat) = pick(&mut shard).get_mut(key) {
            *tat = admit(*tat)?;
            return Ok(());
        }
        // A new caller starts with a full burst: admitted, next slot one
        // interval from now.
        if shard.len() >= self.shard_capacity {
            evict(&mut shard, now);
        }
        pick(&mut shard).insert(own(key), now + self.interval);
        Ok(())
    }

    #[cfg(test)]
    /// How many callers are remembered.
    pub(crate) fn tracked(&self) -> usize {
        self.shards.iter().map(|s| crate::sync::lock(s).len()).sum()
    }
}

/// Frees room in a full shard: drops every replenished entry (its next
/// request would be admitted anyway); if none is, drops the one closest to
/// replenished.
fn evict(shard: &mut Shard, now: Instant) {
    let before = shard.len();
    shard.subjects.retain(|_, tat| *tat > now);
    shard.addresses.retain(|_, tat| *tat > now);
    if shard.len() < before {
        return;
    }
    let subject = shard.subjects.iter().min_by_key(|(_, tat)| **tat);
    let address = shard.addresses.iter().min_by_key(|(_, tat)| **tat);
    match (subject, address) {
        (Some((s, ts)), a) if a.is_none_or(|(_, ta)| ts <= ta) => {
            let s = s.clone();
            shard.subjects.remove(&s);
        }
        (_, Some((a, _))) => {
            let a = *a;
            shard.addresses.remove(&a);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn sub(s: &str) -> CallerKey {
        CallerKey::Subject(s.into())
    }

    #[test]
    fn burst_then_refusal_then_recovery() {
        let limiter = RateLimiter::new(60, 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&sub("alice"), t0).unwrap();
        }
        let refused = limiter.check_at(&sub("alice"), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        // One emission interval later, exactly one more request fits.
        let t1 = t0 + Duration::from_secs(1);
        limiter.check_at(&sub("alice"), t1).unwrap();
        assert!(limiter.check_at(&sub("alice"), t1).is_err());
    }

    #[test]
    fn callers_never_share_a_budget() {
        let limiter = RateLimiter::new(60, 1, 100);
        let t0 = Instant::now();
        limiter.check_at(&sub("alice"), t0).unwrap();
        assert!(limiter.check_at(&sub("alice"), t0).is_err());
        limiter.check_at(&sub("bob"), t0).unwrap();
        // A subject that looks like an address is still another key.
        limiter.check_at(&sub("127.0.0.1"), t0).unwrap();
        limiter
            .check_at(&CallerKey::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)), t0)
            .unwrap();
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_busy_callers() {
        let limiter = RateLimiter::new(1, 1, 16);
        let t0 = Instant::now();
        for i in 0..1000 {
            let _ = limiter.check_at(&sub(&format!("caller-{i}")), t0);
        }
        assert!(limiter.tracked() <= 16, "{}", limiter.tracked());
        // Replenished entries are the first to go, without harm.
        let later = t0 + Duration::from_secs(120);
        limiter.check_at(&sub("busy"), later).unwrap();
        assert!(limiter.check_at(&sub("busy"), later).is_err());
    }

    #[test]
    fn a_subject_checked_by_name_shares_the_keyed_budget() {
        let limiter = RateLimiter::new(60, 2, 100);
        let t0 = Instant::now();
        limiter.check_at(&sub("alice"), t0).unwrap();
        limiter.check_at(&sub("alice"), t0).unwrap();
        assert!(limiter.check_at(&sub("alice"), t0).is_err());
        // By name, on the real clock (a second per request, so still
        // within the burst just used).
        assert!(limiter.check_subject("alice").is_err());
        // The address space is still separate.
        limiter
            .check_at(&CallerKey::Address(IpAddr::V4(Ipv4Addr::LOCALHOST)), t0)
            .unwrap();
        assert_eq!(limiter.tracked(), 2);
    }

    /// A full shard drops the entry closest to replenished, whichever of
    /// the two maps it is in.
    #[test]
    fn eviction_picks_the_oldest_subject_or_address() {
        for address_is_older in [false, true] {
            // Two callers per shard.
            let limiter = RateLimiter::new(1, 1, 2 * SHARDS);
            let shard_of = |key: &CallerKey| match key {
                CallerKey::Subject(s) => limiter.hasher.hash_one(s.as_str()) as usize % SHARDS,
                CallerKey::Address(a) => limiter.hasher.hash_one(a) as usize % SHARDS,
            };
            let alice = sub("alice");
            let home = shard_of(&alice);
            let address = (0..=255u8)
                .map(|i| CallerKey::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))))
                .find(|k| shard_of(k) == home)
                .unwrap();
            let newcomer = (0..1000)
                .map(|i| sub(&format!("caller-{i}")))
                .find(|k| shard_of(k) == home)
                .unwrap();
            let t0 = Instant::now();
            let (first, second) = if address_is_older {
                (&address, &alice)
            } else {
                (&alice, &address)
            };
            limiter.check_at(first, t0).unwrap();
            limiter
                .check_at(second, t0 + Duration::from_secs(10))
                .unwrap();
            // Full, nothing replenished: the first one goes.
            limiter
                .check_at(&newcomer, t0 + Duration::from_secs(20))
                .unwrap();
            assert_eq!(limiter.tracked(), 2);
            let later = t0 + Duration::from_secs(20);
            assert!(
                limiter.check_at(second, later).is_err(),
                "the younger entry was kept"
            );
            limiter
                .check_at(first, later)
                .expect("the older entry was forgotten, so it starts afresh");
        }
    }
}

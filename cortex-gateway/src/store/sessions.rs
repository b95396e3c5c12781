//! Legacy-era sessions: random ids minted on `initialize`, bound to the
//! token's `sub`, ended by DELETE. [`Sessions`] is the store's interface;
//! [`MemorySessions`] keeps them in this process. A session is never authentication: every
//! request still carries and re-validates its bearer token; the session only
//! remembers the negotiated revision.
//!
//! The store is bounded three ways, because any caller with a token can
//! open sessions: per caller (`max_sessions_per_caller`), in total
//! (`max_sessions`) and by the bytes it holds (`max_session_bytes`). A new
//! session beyond a bound evicts the least recently used one (of the same
//! caller for the per-caller bound, of anyone for the others); the evicted
//! id then gets 404 and its client initializes again, as the transport
//! specification tells clients to. A session idle for [`SESSION_IDLE`] ends.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{protocol::Revision, sync::lock};

/// How long an idle session lives.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Default cap on live sessions in total.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 50_000;
/// Default cap on one caller's live sessions.
pub(crate) const DEFAULT_MAX_SESSIONS_PER_CALLER: usize = 64;
/// Default cap on the bytes the live sessions hold.
pub(crate) const DEFAULT_MAX_SESSION_BYTES: usize = 32 << 20;
/// What one session costs besides its owner's `sub`: the session with its
/// end signal (about 400 bytes, measured with a counting allocator) and its
/// entries in the id map, the LRU index and the per-caller list (about 150),
/// rounded up.
pub(crate) const SESSION_OVERHEAD_BYTES: usize = 640;

/// The bounds of the session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionLimits {
    /// Live sessions in total.
    pub max_sessions: usize,
    /// Live sessions of one `sub`.
    pub max_per_caller: usize,
    /// Bytes of all live sessions ([`SESSION_OVERHEAD_BYTES`] plus the
    /// `sub` each).
    pub max_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_per_caller: DEFAULT_MAX_SESSIONS_PER_CALLER,
            max_bytes: DEFAULT_MAX_SESSION_BYTES,
        }
    }
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The owner's `sub`.
    pub sub: Arc<str>,
    /// The negotiated revision.
    pub revision: Revision,
    ended: watch::Sender<bool>,
}

impl Session {
    fn new(sub: Arc<str>, revision: Revision) -> Self {
        let (ended, _) = watch::channel(false);
        Self {
            sub,
            revision,
            ended,
        }
    }

    /// Resolves when the session ends (DELETE, eviction or expiry).
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }

    fn end(&self) {
        self.ended.send_replace(true);
    }
}

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// Unknown, expired, ended, evicted, or owned by someone else (404).
    NotFound,
    /// The shared store cannot be reached now (503, retry later).
    Unavailable,
}

/// A session id: 128 random bits, written as 32 lower-case hex digits.
type Id = u128;

fn parse_id(text: &str) -> Option<Id> {
    let canonical =
        text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical
        .then(|| Id::from_str_radix(text, 16).ok())
        .flatten()
}

struct Entry {
    session: Arc<Session>,
    /// Position in [`State::by_use`].
    used: u64,
    last_seen: Instant,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Id, Entry>,
    /// Least recently used first.
    by_use: BTreeMap<u64, Id>,
    /// Each caller's session ids.
    by_caller: HashMap<Arc<str>, Vec<Id>>,
    next_use: u64,
    bytes: usize,
}

impl State {
    fn touch(&mut self, id: Id, now: Instant) {
        let next = self.next_use;
        if let Some(entry) = self.sessions.get_mut(&id) {
            self.by_use.remove(&entry.used);
            entry.used = next;
            entry.last_seen = now;
            self.by_use.insert(next, id);
            self.next_use += 1;
        }
    }

    fn remove(&mut self, id: Id) -> Option<Arc<Session>> {
        let entry = self.sessions.remove(&id)?;
        self.by_use.remove(&entry.used);
        let sub = &entry.session.sub;
        if let Some(ids) = self.by_caller.get_mut(sub) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_caller.remove(sub);
            }
        }
        self.bytes -= cost(sub);
        entry.session.end();
        Some(entry.session)
    }

    /// The least recently used session of `sub`.
    fn idlest_of(&self, sub: &str) -> Option<Id> {
        self.by_caller
            .get(sub)?
            .iter()
            .min_by_key(|id| self.sessions.get(id).map_or(0, |e| e.used))
            .copied()
    }

    fn idlest(&self) -> Option<(Id, Instant)> {
        let (_, id) = self.by_use.first_key_value()?;
        Some((*id, self.sessions.get(id)?.last_seen))
    }
}

fn cost(sub: &str) -> usize {
    SESSION_OVERHEAD_BYTES + sub.len()
}

/// The legacy sessions, wherever they are kept.
///
/// The methods are `async` so that a shared implementation can make a round
/// trip; the in-memory one never waits.
#[derive(Debug)]
pub(crate) enum Sessions {
    /// In this process's memory.
    Memory(MemorySessions),
    /// On Redis, shared by the replicas.
    Redis(Box<super::redis::RedisSessions>),
}

impl Sessions {
    /// Creates a session for `sub` and returns its id (visible ASCII, 128
    /// random bits), evicting what the bounds require first.
    pub(crate) async fn create(
        &self,
        sub: &str,
        revision: Revision,
    ) -> Result<String, SessionError> {
        match self {
            Self::Memory(m) => Ok(m.create(sub, revision)),
            Self::Redis(r) => {
                let id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
                r.create(&id, sub, revision)
                    .await
                    .map_err(|_| SessionError::Unavailable)?;
                Ok(id)
            }
        }
    }

    /// The session `id` if it exists and belongs to `sub`; refreshes its
    /// idle time.
    pub(crate) async fn get(&self, id: &str, sub: &str) -> Result<Arc<Session>, SessionError> {
        match self {
            Self::Memory(m) => m.get(id, sub),
            Self::Redis(r) => {
                parse_id(id).ok_or(SessionError::NotFound)?;
                match r.get(id, sub).await {
                    Ok(Some(revision)) => Ok(Arc::new(Session::new(Arc::from(sub), revision))),
                    Ok(None) => Err(SessionError::NotFound),
                    Err(_) => Err(SessionError::Unavailable),
                }
            }
        }
    }

    /// Ends a session owned by `sub`.
    pub(crate) async fn end(&self, id: &str, sub: &str) -> Result<(), SessionError> {
        match self {
            Self::Memory(m) => m.end(id, sub),
            Self::Redis(r) => {
                parse_id(id).ok_or(SessionError::NotFound)?;
                match r.end(id, sub).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(SessionError::NotFound),
                    Err(_) => Err(SessionError::Unavailable),
                }
            }
        }
    }

    /// Whether the store answers (what `/readyz` adds to the catalog's
    /// readiness); the in-memory store always does.
    pub(crate) async fn reachable(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(r) => r.shared().ping().await.is_ok(),
        }
    }
}

/// The live sessions, in this process's memory.
pub(crate) struct MemorySessions {
    limits: SessionLimits,
    state: Mutex<State>,
}

impl Default for MemorySessions {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

impl std::fmt::Debug for MemorySessions {
    /// Counts only: a session id lets its owner's token be used on it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("MemorySessions")
            .field("live", &state.sessions.len())
            .field("bytes", &state.bytes)
            .field("limits", &self.limits)
            .finish()
    }
}

impl MemorySessions {
    /// An empty store with these bounds (each at least 1).
    pub(crate) fn new(limits: SessionLimits) -> Self {
        Self {
            limits: SessionLimits {
                max_sessions: limits.max_sessions.max(1),
                max_per_caller: limits.max_per_caller.max(1),
                max_bytes: limits.max_bytes.max(1),
            },
            state: Mutex::default(),
        }
    }

    /// Creates a session and returns its id (visible ASCII, 128 random
    /// bits), evicting what the bounds require first.
    pub(crate) fn create(&self, sub: &str, revision: Revision) -> String {
        self.create_at(sub, revision, Instant::now())
    }

    fn create_at(&self, sub: &str, revision: Revision, now: Instant) -> String {
        let raw = uuid::Uuid::new_v4().as_u128();
        let mut state = lock(&self.state);
        while let Some((idlest, seen)) = state.idlest()
            && now.duration_since(seen) > SESSION_IDLE
        {
            state.remove(idlest);
        }
        if state.by_caller.get(sub).map_or(0, Vec::len) >= self.limits.max_per_caller
            && let Some(idlest) = state.idlest_of(sub)
        {
            state.remove(idlest);
        }
        while state.sessions.len() >= self.limits.max_sessions
            || state.bytes + cost(sub) > self.limits.max_bytes
        {
            match state.idlest() {
                Some((idlest, _)) => {
                    state.remove(idlest);
                }
                None => break,
            }
        }
        let owner: Arc<str> = match state.by_caller.get_key_value(sub) {
            Some((owner, _)) => owner.clone(),
            None => Arc::from(sub),
        };
        let session = Arc::new(Session::new(owner.clone(), revision));
        let used = state.next_use;
        state.next_use += 1;
        state.by_use.insert(used, raw);
        state.by_caller.entry(owner).or_default().push(raw);
        state.bytes += cost(sub);
        state.sessions.insert(
            raw,
            Entry {
                session,
                used,
                last_seen: now,
            },
        );
        format!("{raw:032x}")
    }

    /// The session `id` if it exists and belongs to `sub`.
    pub(crate) fn get(&self, id: &str, sub: &str) -> Result<Arc<Session>, SessionError> {
        self.get_at(id, sub, Instant::now())
    }

    fn get_at(&self, id: &str, sub: &str, now: Instant) -> Result<Arc<Session>, SessionError> {
        let id = parse_id(id).ok_or(SessionError::NotFound)?;
        let mut state = lock(&self.state);
        let entry = state.sessions.get(&id).ok_or(SessionError::NotFound)?;
        if now.saturating_duration_since(entry.last_seen) > SESSION_IDLE {
            state.remove(id);
            return Err(SessionError::NotFound);
        }
        if *entry.session.sub != *sub {
            return Err(SessionError::NotFound);
        }
        let session = entry.session.clone();
        state.touch(id, now);
        Ok(session)
    }

    /// Ends a session owned by `sub`.
    pub(crate) fn end(&self, id: &str, sub: &str) -> Result<(), SessionError> {
        self.get(id, sub)?;
        let id = parse_id(id).ok_or(SessionError::NotFound)?;
        lock(&self.state).remove(id);
        Ok(())
    }

    #[cfg(test)]
    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    #[cfg(test)]
    /// Whether no session is live.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    /// The bytes the live sessions are counted as.
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_sessions: usize, max_per_caller: usize, max_bytes: usize) -> MemorySessions {
        MemorySessions::new(SessionLimits {
            max_sessions,
            max_per_caller,
            max_bytes,
        })
    }

    #[test]
    fn one_caller_beyond_its_cap_loses_its_least_recently_used_session() {
        let s = store(1000, 3, usize::MAX);
        let ids: Vec<String> = (0..3)
            .map(|_| s.create("mallory", Revision::V2025_11_25))
            .collect();
        let other = s.create("alice", Revision::V2025_11_25);
        let ended = s.get(&ids[1], "mallory").unwrap().ended();
        s.get(&ids[0], "mallory").unwrap();
        s.get(&ids[2], "mallory").unwrap(); // ids[1] is now the idlest
        let newest = s.create("mallory", Revision::V2025_11_25);
        assert_eq!(
            s.get(&ids[1], "mallory").unwrap_err(),
            SessionError::NotFound
        );
        assert!(*ended.borrow(), "an evicted session's streams end");
        for kept in [&ids[0], &ids[2], &newest] {
            s.get(kept, "mallory").unwrap();
        }
        s.get(&other, "alice").unwrap();
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn the_total_count_and_bytes_are_bounded() {
        let s = store(5, 100, usize::MAX);
        let first = s.create("a", Revision::V2025_11_25);
        for i in 0..20 {
            s.create(&format!("caller-{i}"), Revision::V2025_11_25);
        }
        assert_eq!(s.len(), 5);
        assert!(s.get(&first, "a").is_err());

        let long = "x".repeat(1000);
        let s = store(1000, 1000, 3 * cost(&long));
        for _ in 0..10 {
            s.create(&long, Revision::V2025_11_25);
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.bytes(), 3 * cost(&long));
        s.create("y", Revision::V2025_11_25);
        assert!(s.bytes() <= 3 * cost(&long));
    }

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle() {
        let s = MemorySessions::default();
        let start = Instant::now();
        let id = s.create_at("ana", Revision::V2025_11_25, start);
        let almost = SESSION_IDLE - Duration::from_secs(1);
        s.get_at(&id, "ana", start + almost).unwrap();
        // Each use starts the idle time again.
        let ended = s.get_at(&id, "ana", start + almost * 2).unwrap().ended();
        let idle = start + almost * 2 + SESSION_IDLE + Duration::from_secs(1);
        assert_eq!(
            s.get_at(&id, "ana", idle).unwrap_err(),
            SessionError::NotFound
        );
        assert!(*ended.borrow(), "an expired session's streams end");
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }

    #[tokio::test]
    async fn the_store_interface_reaches_the_memory_sessions() {
        let s = Sessions::Memory(MemorySessions::default());
        let id = s.create("ana", Revision::V2025_06_18).await.unwrap();
        assert_eq!(
            s.get(&id, "ana").await.unwrap().revision,
            Revision::V2025_06_18
        );
        assert!(s.get(&id, "eve").await.is_err());
        s.end(&id, "ana").await.unwrap();
        assert_eq!(s.get(&id, "ana").await.unwrap_err(), SessionError::NotFound);
    }

    #[test]
    fn ids_are_checked_owned_and_ended() {
        let s = MemorySessions::default();
        let id = s.create("ana", Revision::V2025_06_18);
        assert_eq!(id.len(), 32);
        assert_eq!(s.get(&id, "ana").unwrap().revision, Revision::V2025_06_18);
        assert!(s.get(&id, "eve").is_err());
        assert!(s.get(&id.to_uppercase(), "ana").is_err());
        assert!(s.get(&format!("+{}", &id[1..]), "ana").is_err());
        assert!(s.end(&id, "eve").is_err());
        s.end(&id, "ana").unwrap();
        assert!(s.get(&id, "ana").is_err());
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        let shown = format!("{s:?}");
        let id = s.create("ana", Revision::V2025_06_18);
        let shown_after = format!("{s:?}");
        assert!(!shown_after.contains(&id), "{shown_after}");
        assert_ne!(shown, shown_after);
    }
}

//! The OAuth facade's state: registered clients, sign-ins in progress,
//! the gateway's authorization codes, grants with their refresh tokens,
//! and revoked grants.
//!
//! Every secret the agent or the identity provider holds (state, code,
//! refresh token) is kept as its SHA-256 digest and looked up by it, so
//! the lookup's timing says nothing about the text and a memory dump
//! holds nothing redeemable. Each kind is bounded by count and bytes; at a
//! bound the oldest entry goes (all entries of a kind live about equally
//! long, so the oldest is the next to expire). Codes and sign-ins are
//! single use: taking one removes it. A redeemed code leaves a tombstone
//! until it would have expired, so a replay is recognised and revokes the
//! grant it produced (RFC 6749 section 4.1.2).
//!
//! The facade (`crate::facade`) is the caller.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::digest::{SHA256, digest};
use zeroize::Zeroizing;

use super::{redis::Unavailable, redis_facade::RedisFacade};
use crate::sync::lock;

/// How long a sign-in at the identity provider may take (seconds).
pub(crate) const PENDING_TTL_S: u64 = 10 * 60;
/// How long a gateway authorization code lives (seconds).
pub(crate) const CODE_TTL_S: u64 = 60;
/// What one entry costs besides its strings: digest, slot, order entry.
const ENTRY_OVERHEAD_BYTES: usize = 192;

/// The bounds of the facade's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FacadeLimits {
    /// Registered clients.
    pub(crate) max_clients: usize,
    /// Bytes of registered clients.
    pub(crate) max_client_bytes: usize,
    /// Sign-ins in progress, and codes waiting to be redeemed (each).
    pub(crate) max_pending: usize,
    /// Bytes of sign-ins in progress, and of codes (each).
    pub(crate) max_pending_bytes: usize,
    /// Live grants (refresh tokens), and remembered revocations (each).
    pub(crate) max_grants: usize,
    /// Bytes of live grants.
    pub(crate) max_grant_bytes: usize,
}

impl Default for FacadeLimits {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_client_bytes: 16 << 20,
            max_pending: 10_000,
            max_pending_bytes: 16 << 20,
            max_grants: 100_000,
            max_grant_bytes: 64 << 20,
        }
    }
}

/// A client registered with `/register` (RFC 7591): a public client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RegisteredClient {
    /// Its `client_name`, if it gave one.
    pub(crate) name: Option<String>,
    /// Its `redirect_uris`, compared exactly.
    pub(crate) redirect_uris: Vec<String>,
}

/// A sign-in sent to the identity provider, waiting for its callback.
pub(crate) struct Pending {
    /// The agent's client id.
    pub(crate) client_id: String,
    /// The agent's redirect URI.
    pub(crate) redirect_uri: String,
    /// The agent's PKCE challenge (S256).
    pub(crate) code_challenge: String,
    /// The agent's `state`, returned as it came.
    pub(crate) agent_state: Option<String>,
    /// The Cortex scopes the agent asked for.
    pub(crate) scopes: Vec<String>,
    /// The gateway's own PKCE verifier at the identity provider.
    pub(crate) verifier: Zeroizing<String>,
    /// The OpenID nonce sent to the identity provider.
    pub(crate) nonce: Zeroizing<String>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Who signed in, what they were granted, and for which client: what a
/// code carries and a grant keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct GrantRecord {
    /// The grant's id (the `sid` of its access tokens).
    pub(crate) id: String,
    /// The agent's client id.
    pub(crate) client_id: String,
    /// The user (`sub` of the gateway's tokens).
    pub(crate) sub: String,
    /// The user's e-mail, if the provider said.
    pub(crate) email: Option<String>,
    /// The user's name, if the provider said.
    pub(crate) name: Option<String>,
    /// The Cortex scopes granted.
    pub(crate) scopes: Vec<String>,
    /// Unix seconds after which the grant's refresh token is refused.
    pub(crate) expires_at: u64,
}

impl GrantRecord {
    pub(crate) fn bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.id.len()
            + self.client_id.len()
            + self.sub.len()
            + opt(&self.email)
            + opt(&self.name)
            + self.scopes.iter().map(|s| s.len() + 24).sum::<usize>()
    }
}

/// A gateway authorization code waiting to be redeemed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IssuedCode {
    /// The grant the code turns into.
    pub(crate) grant: GrantRecord,
    /// The redirect URI the code was sent to.
    pub(crate) redirect_uri: String,
    /// The agent's PKCE challenge.
    pub(crate) code_challenge: String,
    /// The identity provider's refresh token, moved to the vault when the
    /// code is redeemed.
    pub(crate) idp_refresh: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for IssuedCode {
    /// The provider's refresh token is not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCode")
            .field("grant", &self.grant)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What redeeming a code found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Redeemed {
    /// A fresh code (now used up).
    Fresh(Box<IssuedCode>),
    /// A code redeemed before: the grant it produced.
    Replayed {
        /// That grant's id.
        grant_id: String,
    },
    /// Unknown or expired.
    Unknown,
}

/// What a refresh token names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefreshLookup {
    /// The grant's current refresh token.
    Current(Box<GrantRecord>),
    /// A refresh token already rotated away: someone else holds a copy.
    Reused {
        /// The grant's id.
        grant_id: String,
    },
    /// Unknown, expired or revoked.
    Unknown,
}

/// The facade's state, wherever it is kept. On Redis every method can
/// fail with [`Unavailable`]: the facade answers 503 then.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per gateway, behind an Arc")]
pub(crate) enum FacadeState {
    /// In this process's memory.
    Memory(MemoryFacade),
    /// On Redis, shared by the replicas (`redis_facade.rs`).
    Redis(RedisFacade),
}

impl FacadeState {
    /// Registers a client under `client_id`.
    pub(crate) async fn register(
        &self,
        client_id: &str,
        client: RegisteredClient,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                m.register(client_id, client);
                Ok(())
            }
            Self::Redis(r) => r.register(client_id, &client).await,
        }
    }

    /// A registered client.
    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.client(client_id)),
            Self::Redis(r) => r.client(client_id).await,
        }
    }

    /// Keeps a sign-in under its `state`.
    pub(crate) async fn put_pending(
        &self,
        state: &str,
        pending: Pending,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                m.put_pending(state, pending, now());
                Ok(())
            }
            Self::Redis(r) => r.put_pending(state, &pending, now()).await,
        }
    }

    /// Takes the sign-in of `state` (once).
    pub(crate) async fn take_pending(&self, state: &str) -> Result<Option<Pending>, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.take_pending(state, now())),
            Self::Redis(r) => r.take_pending(state).await,
        }
    }

    /// Keeps a code.
    pub(crate) async fn put_code(&self, code: &str, issued: IssuedCode) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                m.put_code(code, issued, now());
                Ok(())
            }
            Self::Redis(r) => r.put_code(code, &issued, now()).await,
        }
    }

    /// Redeems a code.
    pub(crate) async fn redeem_code(&self, code: &str) -> Result<Redeemed, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.redeem_code(code, now())),
            Self::Redis(r) => r.redeem_code(code).await,
        }
    }

    /// Keeps a live grant, with `refresh` its refresh token when it has one.
    pub(crate) async fn put_grant(
        &self,
        grant: GrantRecord,
        refresh: Option<&str>,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                m.put_grant(grant, refresh, now());
                Ok(())
            }
            Self::Redis(r) => r.put_grant(&grant, refresh, now()).await,
        }
    }

    /// The grant `refresh` belongs to.
    pub(crate) async fn grant_by_refresh(
        &self,
        refresh: &str,
    ) -> Result<RefreshLookup, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.grant_by_refresh(refresh, now())),
            Self::Redis(r) => r.grant_by_refresh(refresh).await,
        }
    }

    /// Replaces the refresh token `old` of a live grant by `refresh` (and
    /// its scopes and identity); false when the grant is gone or `old` is
    /// no longer its current token (another request rotated it first).
    pub(crate) async fn rotate_refresh(
        &self,
        grant: GrantRecord,
        old: &str,
        refresh: &str,
    ) -> Result<bool, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.rotate_refresh(grant, old, refresh)),
            Self::Redis(r) => r.rotate_refresh(&grant, old, refresh, now()).await,
        }
    }

    /// Revokes a grant: its refresh token stops working and its access
    /// tokens are refused until `access_until` (unix seconds).
    pub(crate) async fn revoke(
        &self,
        grant_id: &str,
        access_until: u64,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                m.revoke(grant_id, access_until, now());
                Ok(())
            }
            Self::Redis(r) => r.revoke(grant_id, access_until, now()).await,
        }
    }

    /// Whether access tokens of `grant_id` are refused.
    pub(crate) async fn is_revoked(&self, grant_id: &str) -> Result<bool, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.is_revoked(grant_id, now())),
            Self::Redis(r) => r.is_revoked(grant_id).await,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type Digest = [u8; 32];

fn digest_of(secret: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
    out
}

/// A map bounded by count and bytes, oldest evicted first, entries
/// expiring at a unix second.
struct Shelf<K, V> {
    entries: HashMap<K, (V, usize, u64)>,
    order: VecDeque<K>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Shelf<K, V> {
    fn new(max_count: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count: max_count.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn remove(&mut self, key: &K) -> Option<(V, u64)> {
        let (value, bytes, expires) = self.entries.remove(key)?;
        self.bytes -= bytes;
        Some((value, expires))
    }

    /// Inserts, evicting expired entries and then the oldest until it fits.
    fn insert(&mut self, key: K, value: V, bytes: usize, expires: u64, now: u64) {
        let bytes = bytes + ENTRY_OVERHEAD_BYTES;
        self.remove(&key);
        while let Some(oldest) = self.order.front().cloned() {
            let stale = self.entries.get(&oldest).is_none_or(|e| e.2 <= now);
            let full = self.entries.len() >= self.max_count || self.bytes + bytes > self.max_bytes;
            if !(stale || full) {
                break;
            }
            self.order.pop_front();
            self.remove(&oldest);
        }
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
        self.bytes += bytes;
        self.entries.insert(key.clone(), (value, bytes, expires));
        self.order.push_back(key);
    }

    fn get<Q>(&self, key: &Q, now: u64) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries
            .get(key)
            .filter(|e| e.2 > now)
            .map(|(v, _, _)| v)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(v, _, _)| v)
    }

    fn take(&mut self, key: &K, now: u64) -> Option<V> {
        self.remove(key).filter(|(_, e)| *e > now).map(|(v, _)| v)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A live grant and its current and previous refresh token digests.
struct LiveGrant {
    record: GrantRecord,
    refresh: Option<Digest>,
}

enum CodeSlot {
    Fresh(Box<IssuedCode>),
    Used { grant_id: String },
}

struct Inner {
    clients: Shelf<String, RegisteredClient>,
    pending: Shelf<Digest, Pending>,
    codes: Shelf<Digest, CodeSlot>,
    grants: Shelf<String, LiveGrant>,
    /// Refresh digest → grant id; `true` when it is the grant's current
    /// one, `false` for one rotated away.
    refresh: Shelf<Digest, (String, bool)>,
    revoked: Shelf<String, ()>,
}

/// The facade's state in this process's memory.
pub(crate) struct MemoryFacade {
    inner: Mutex<Inner>,
    /// Whether any grant was ever revoked: until then the check every
    /// request of an agent makes takes no lock.
    any_revoked: AtomicBool,
}

impl std::fmt::Debug for MemoryFacade {
    /// Counts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("MemoryFacade")
            .field("clients", &inner.clients.len())
            .field("pending", &inner.pending.len())
            .field("codes", &inner.codes.len())
            .field("grants", &inner.grants.len())
            .field("revoked", &inner.revoked.len())
            .finish()
    }
}

impl MemoryFacade {
    /// An empty state with these bounds.
    pub(crate) fn new(limits: FacadeLimits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                clients: Shelf::new(limits.max_clients, limits.max_client_bytes),
                pending: Shelf::new(limits.max_pending, limits.max_pending_bytes),
                codes: Shelf::new(limits.max_pending, limits.max_pending_bytes),
                grants: Shelf::new(limits.max_grants, limits.max_grant_bytes),
                refresh: Shelf::new(2 * limits.max_grants, limits.max_grant_bytes),
                revoked: Shelf::new(limits.max_grants, limits.max_grant_bytes),
            }),
            any_revoked: AtomicBool::new(false),
        }
    }

    fn register(&self, client_id: &str, client: RegisteredClient) {
        let bytes = client_id.len()
            + client.name.as_ref().map_or(0, String::len)
            + client
                .redirect_uris
                .iter()
                .map(|u| u.len() + 24)
                .sum::<usize>();
        lock(&self.inner)
            .clients
            .insert(client_id.to_string(), client, bytes, u64::MAX, 0);
    }

    fn client(&self, client_id: &str) -> Option<RegisteredClient> {
        lock(&self.inner).clients.get(client_id, 0).cloned()
    }

    fn put_pending(&self, state: &str, pending: Pending, now: u64) {
        let bytes = pending.client_id.len()
            + pending.redirect_uri.len()
            + pending.code_challenge.len()
            + pending.agent_state.as_ref().map_or(0, String::len)
            + pending.scopes.iter().map(|s| s.len() + 24).sum::<usize>()
            + pending.verifier.len()
            + pending.nonce.len();
        lock(&self.inner).pending.insert(
            digest_of(state),
            pending,
            bytes,
            now + PENDING_TTL_S,
            now,
        );
    }

    fn take_pending(&self, state: &str, now: u64) -> Option<Pending> {
        lock(&self.inner).pending.take(&digest_of(state), now)
    }

    fn put_code(&self, code: &str, issued: IssuedCode, now: u64) {
        let bytes = issued.grant.bytes()
            + issued.redirect_uri.len()
            + issued.code_challenge.len()
            + issued.idp_refresh.as_ref().map_or(0, |t| t.len());
        lock(&self.inner).codes.insert(
            digest_of(code),
            CodeSlot::Fresh(Box::new(issued)),
            bytes,
            now + CODE_TTL_S,
            now,
        );
    }

    fn redeem_code(&self, code: &str, now: u64) -> Redeemed {
        let key = digest_of(code);
        let mut inner = lock(&self.inner);
        let Some(slot) = inner.codes.get_mut(&key) else {
            return Redeemed::Unknown;
        };
        match slot {
            CodeSlot::Used { grant_id } => Redeemed::Replayed {
                grant_id: grant_id.clone(),
            },
            CodeSlot::Fresh(issued) => {
                let grant_id = issued.grant.id.clone();
                let CodeSlot::Fresh(issued) = std::mem::replace(slot, CodeSlot::Used { grant_id })
                else {
                    return Redeemed::Unknown;
                };
                if inner.codes.get(&key, now).is_none() {
                    return Redeemed::Unknown;
                }
                Redeemed::Fresh(issued)
            }
        }
    }

    fn put_grant(&self, grant: GrantRecord, refresh: Option<&str>, now: u64) {
        let mut inner = lock(&self.inner);
        let refresh = refresh.map(digest_of);
        let bytes = grant.bytes();
        let expires = grant.expires_at;
        let id = grant.id.clone();
        if let Some(d) = refresh {
            inner
                .refresh
                .insert(d, (id.clone(), true), id.len(), expires, now);
        }
        inner.grants.insert(
            id,
            LiveGrant {
                record: grant,
                refresh,
            },
            bytes,
            expires,
            now,
        );
    }

    fn grant_by_refresh(&self, refresh: &str, now: u64) -> RefreshLookup {
        let inner = lock(&self.inner);
        let Some((grant_id, current)) = inner.refresh.get(&digest_of(refresh), now) else {
            return RefreshLookup::Unknown;
        };
        if !*current {
            return RefreshLookup::Reused {
                grant_id: grant_id.clone(),
            };
        }
        match inner.grants.get(grant_id, now) {
            Some(live) => RefreshLookup::Current(Box::new(live.record.clone())),
            None => RefreshLookup::Unknown,
        }
    }

    fn rotate_refresh(&self, grant: GrantRecord, old: &str, refresh: &str) -> bool {
        let mut inner = lock(&self.inner);
        let now = now();
        let Some(live) = inner.grants.get_mut(&grant.id) else {
            return false;
        };
        if live.refresh != Some(digest_of(old)) {
            return false;
        }
        let old = live.refresh.replace(digest_of(refresh));
        live.record = grant.clone();
        if let Some(old) = old
            && let Some(entry) = inner.refresh.get_mut(&old)
        {
            entry.1 = false;
        }
        inner.refresh.insert(
            digest_of(refresh),
            (grant.id.clone(), true),
            grant.id.len(),
            grant.expires_at,
            now,
        );
        true
    }

    fn revoke(&self, grant_id: &str, access_until: u64, now: u64) {
        self.any_revoked.store(true, Ordering::Release);
        let mut inner = lock(&self.inner);
        if let Some((live, _)) = inner.grants.remove(&grant_id.to_string())
            && let Some(d) = live.refresh
        {
            inner.refresh.remove(&d);
        }
        inner
            .revoked
            .insert(grant_id.to_string(), (), grant_id.len(), access_until, now);
    }

    fn is_revoked(&self, grant_id: &str, now: u64) -> bool {
        self.any_revoked.load(Ordering::Acquire)
            && lock(&self.inner).revoked.get(grant_id, now).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str) -> GrantRecord {
        GrantRecord {
            id: id.into(),
            client_id: "c".into(),
            sub: "ana".into(),
            email: None,
            name: None,
            scopes: vec!["crm.read".into()],
            expires_at: now() + 3600,
        }
    }

    fn pending() -> Pending {
        Pending {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".repeat(43),
            agent_state: Some("s".repeat(200)),
            scopes: vec![],
            verifier: Zeroizing::new("v".repeat(43)),
            nonce: Zeroizing::new("n".repeat(22)),
        }
    }

    #[test]
    fn every_map_a_request_grows_stays_within_its_bounds() {
        let limits = FacadeLimits {
            max_clients: 50,
            max_client_bytes: 20_000,
            max_pending: 40,
            max_pending_bytes: 16_000,
            max_grants: 30,
            max_grant_bytes: 12_000,
        };
        let m = MemoryFacade::new(limits);
        let t = now();
        for i in 0..5_000 {
            m.register(
                &format!("client-{i}"),
                RegisteredClient {
                    name: Some("n".repeat(100)),
                    redirect_uris: vec!["https://x.example/cb".repeat(10)],
                },
            );
            m.put_pending(&format!("state-{i}"), pending(), t);
            m.put_code(
                &format!("code-{i}"),
                IssuedCode {
                    grant: grant(&format!("g{i}")),
                    redirect_uri: "http://127.0.0.1/cb".into(),
                    code_challenge: "x".repeat(43),
                    idp_refresh: Some(Zeroizing::new("r".repeat(100))),
                },
                t,
            );
            m.put_grant(grant(&format!("g{i}")), Some(&format!("r{i}")), t);
            m.revoke(&format!("old{i}"), t + 600, t);
            let inner = lock(&m.inner);
            for (len, bytes, max, max_bytes) in [
                (
                    inner.clients.len(),
                    inner.clients.bytes,
                    limits.max_clients,
                    limits.max_client_bytes,
                ),
                (
                    inner.pending.len(),
                    inner.pending.bytes,
                    limits.max_pending,
                    limits.max_pending_bytes,
                ),
                (
                    inner.codes.len(),
                    inner.codes.bytes,
                    limits.max_pending,
                    limits.max_pending_bytes,
                ),
                (
                    inner.grants.len(),
                    inner.grants.bytes,
                    limits.max_grants,
                    limits.max_grant_bytes,
                ),
                (
                    inner.revoked.len(),
                    inner.revoked.bytes,
                    limits.max_grants,
                    limits.max_grant_bytes,
                ),
            ] {
                assert!(len <= max && bytes <= max_bytes, "{len} {bytes}");
            }
            assert!(inner.refresh.len() <= 2 * limits.max_grants);
            assert!(inner.clients.order.len() <= 2 * limits.max_clients + 16);
        }
        // The newest of each is still there.
        assert!(m.client("client-4999").is_some());
        assert!(m.take_pending("state-4999", t).is_some());
        assert!(matches!(m.redeem_code("code-4999", t), Redeemed::Fresh(_)));
    }

    #[test]
    fn codes_and_sign_ins_are_single_use_and_a_replay_names_the_grant() {
        let m = MemoryFacade::new(FacadeLimits::default());
        let t = now();
        m.put_pending("st", pending(), t);
        assert!(m.take_pending("st", t).is_some());
        assert!(m.take_pending("st", t).is_none());
        m.put_pending("late", pending(), t);
        assert!(m.take_pending("late", t + PENDING_TTL_S).is_none());
        m.put_code(
            "c1",
            IssuedCode {
                grant: grant("g1"),
                redirect_uri: "u".into(),
                code_challenge: "x".into(),
                idp_refresh: None,
            },
            t,
        );
        assert!(matches!(m.redeem_code("c1", t), Redeemed::Fresh(_)));
        assert_eq!(
            m.redeem_code("c1", t),
            Redeemed::Replayed {
                grant_id: "g1".into()
            }
        );
        assert_eq!(m.redeem_code("c2", t), Redeemed::Unknown);
    }

    #[test]
    fn a_rotated_refresh_token_is_recognised_and_revocation_cuts_the_grant() {
        let m = MemoryFacade::new(FacadeLimits::default());
        let t = now();
        m.put_grant(grant("g1"), Some("r1"), t);
        assert!(matches!(
            m.grant_by_refresh("r1", t),
            RefreshLookup::Current(_)
        ));
        assert!(m.rotate_refresh(grant("g1"), "r1", "r2"));
        assert!(
            !m.rotate_refresh(grant("g1"), "r1", "r3"),
            "r1 was rotated away already"
        );
        assert_eq!(
            m.grant_by_refresh("r1", t),
            RefreshLookup::Reused {
                grant_id: "g1".into()
            }
        );
        assert!(matches!(
            m.grant_by_refresh("r2", t),
            RefreshLookup::Current(_)
        ));
        assert!(!m.is_revoked("g1", t));
        m.revoke("g1", t + 600, t);
        assert!(m.is_revoked("g1", t));
        assert!(!m.is_revoked("g1", t + 600));
        assert_eq!(m.grant_by_refresh("r2", t), RefreshLookup::Unknown);
    }
}

//! The OAuth facade's state on Redis: registered clients, sign-ins in
//! progress, codes and their tombstones, grants with their refresh-token
//! digests, and revocations, shared by every replica on one Redis.
//!
//! Keys (after the store's prefix; `<d>` is the hex SHA-256 digest of the
//! named secret or id, length-prefixed like every digest of the store):
//! - `fc:<d(client id)>`: a registered client; 90 days, renewed on use;
//! - `fp:<d(state)>`: a sign-in at the identity provider; 600 s;
//!   `fpc:<d(client id)>` orders one client's sign-ins for its cap;
//! - `fk:<d(code)>`: a code (hash: `f` the code, `u` its grant id, both
//!   sealed); redeeming deletes `f` and leaves `u`, the tombstone, until
//!   the code would have expired (60 s);
//! - `fg:<d(grant id)>`: a grant (hash: `g` the sealed record, `r` the
//!   digest of its current refresh token), until its `expires_at`;
//! - `fr:<d(refresh)>`: a refresh token (hash: `c` 1 while current, 0
//!   once rotated away, `g` the grant's digest, `i` the sealed grant id);
//! - `fv:<d(grant id)>`: a revoked grant, until its last access token
//!   expires.
//!
//! Each kind `X` above has its own bounds, kept by three more keys: `Xi`,
//! a sorted set of its entries by expiry; `Xs`, a hash of each entry's
//! bytes; `Xb`, the total bytes. At a bound the entry closest to expiry
//! goes, as in memory. Every value that holds a secret or a user's
//! identity is sealed with AES-256-GCM under a key derived from the vault's
//! first key (`CORTEX_VAULT_KEY`), bound to its kind and key digest, so a
//! dump of Redis holds nothing redeemable and a value moved to another key
//! does not open. Each operation is one Lua script, hence atomic and one
//! round trip: a code or a sign-in is taken once, a refresh token rotated
//! once, across replicas.
//!
//! The revocation check on every request of an agent is answered from a
//! per-replica cache for at most [`REVOCATION_CACHE_TTL`]; a revocation is
//! published on the store's channel, so the other replicas drop the
//! grant's entry at once (the cache bounds the window only when that
//! message is lost).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use redis::Script;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    facade::{
        CODE_TTL_S, FacadeLimits, GrantRecord, IssuedCode, PENDING_TTL_S, Pending, Redeemed,
        RefreshLookup, RegisteredClient,
    },
    redis::{CHANGED_CHANNEL, Shared, Unavailable, digest, now_ms},
};
use crate::sync::lock;

/// The HKDF label of the key that seals the facade's values.
pub(crate) const SEAL_LABEL: &[u8] = b"cortex-facade/redis/v1";
/// How long a registered client is kept after its last use.
pub(crate) const CLIENT_TTL: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// How long a replica trusts what it learnt about a grant's revocation
/// when no revocation message reaches it.
pub(crate) const REVOCATION_CACHE_TTL: Duration = Duration::from_secs(5);
/// Grants whose revocation state a replica caches.
const MAX_CACHED_GRANTS: usize = 10_000;
/// The longest grant id cached (the facade's are 24 characters): the cache
/// holds at most [`MAX_CACHED_GRANTS`] × this many bytes of ids.
const MAX_CACHED_ID_BYTES: usize = 128;
/// What one entry costs besides its value: its index member, size field
/// and key, rounded up.
pub(super) const ENTRY_OVERHEAD_BYTES: usize = 256;
/// The message prefix of a revocation on the store's channel.
pub(crate) const REVOKED_MESSAGE: &str = "revoked ";

/// The shelf functions every script starts with. A shelf is a kind's
/// index (sorted set of members by expiry, ms), sizes (hash) and total
/// bytes (string); an entry's key is the kind's prefix and its member.
pub(super) const SHELF: &str = r"
local function shelf_drop(pfx, idx, sizes, total, m)
  redis.call('DEL', pfx .. m)
  redis.call('ZREM', idx, m)
  local b = redis.call('HGET', sizes, m)
  if b then
    redis.call('HDEL', sizes, m)
    redis.call('DECRBY', total, b)
  end
end
local function shelf_extend(idx, sizes, total)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')[2]
  if last then
    for _, k in ipairs({idx, sizes, total}) do redis.call('PEXPIREAT', k, last) end
  end
end
local function put_entry(pfx, idx, sizes, total, m, expiry, now, cap, maxb, size, value, group, gcap)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, 64)) do
    shelf_drop(pfx, idx, sizes, total, old)
  end
  shelf_drop(pfx, idx, sizes, total, m)
  while redis.call('ZCARD', idx) >= cap or tonumber(redis.call('GET', total) or '0') + size > maxb do
    local oldest = redis.call('ZRANGE', idx, 0, 0)[1]
    if not oldest then break end
    shelf_drop(pfx, idx, sizes, total, oldest)
  end
  if group then
    redis.call('ZREMRANGEBYSCORE', group, '-inf', now)
    while redis.call('ZCARD', group) >= gcap do
      local oldest = redis.call('ZRANGE', group, 0, 0)[1]
      if not oldest then break end
      redis.call('ZREM', group, oldest)
      shelf_drop(pfx, idx, sizes, total, oldest)
    end
    redis.call('ZADD', group, expiry, m)
    local last = redis.call('ZRANGE', group, -1, -1, 'WITHSCORES')[2]
    redis.call('PEXPIREAT', group, last)
  end
  if type(value) == 'table' then
    redis.call('HSET', pfx .. m, unpack(value))
    redis.call('PEXPIREAT', pfx .. m, expiry)
  else
    redis.call('SET', pfx .. m, value, 'PXAT', expiry)
  end
  redis.call('ZADD', idx, expiry, m)
  redis.call('HSET', sizes, m, size)
  redis.call('INCRBY', total, size)
  shelf_extend(idx, sizes, total)
end
";

/// Stores a value. KEYS: the shelf. ARGV: prefix, member, value, expiry
/// (unix ms), now (unix ms), cap, byte cap, size, then optionally the
/// group set and its cap, then optionally `f`'s value is ARGV[3] and `u`'s
/// ARGV[11] (a code: a hash).
pub(super) const PUT: &str = r"
local group, gcap = nil, nil
if ARGV[9] and ARGV[9] ~= '' then group, gcap = ARGV[9], tonumber(ARGV[10]) end
local value = ARGV[3]
if ARGV[11] then value = {'f', ARGV[3], 'u', ARGV[11]} end
put_entry(ARGV[1], KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[4], ARGV[5],
  tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), value, group, gcap)
return 1
";

/// Takes a value (once). KEYS: the shelf. ARGV: prefix, member.
const TAKE: &str = r"
local v = redis.call('GET', ARGV[1] .. ARGV[2])
if not v then return false end
shelf_drop(ARGV[1], KEYS[1], KEYS[2], KEYS[3], ARGV[2])
return v
";

/// Reads a value and renews it until a new expiry. KEYS: the shelf.
/// ARGV: prefix, member, expiry (unix ms).
const TOUCH: &str = r"
local k = ARGV[1] .. ARGV[2]
local v = redis.call('GET', k)
if not v then return false end
redis.call('PEXPIREAT', k, ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[2])
shelf_extend(KEYS[1], KEYS[2], KEYS[3])
return v
";

/// Redeems a code. KEYS: the code. Returns {1, code}, {2, grant id} (a
/// tombstone: redeemed before) or {0, false}.
const REDEEM: &str = r"
local f = redis.call('HGET', KEYS[1], 'f')
if f then
  redis.call('HDEL', KEYS[1], 'f')
  return {1, f}
end
local u = redis.call('HGET', KEYS[1], 'u')
if u then return {2, u} end
return {0, false}
";

/// Keeps a grant and its refresh token. KEYS: grant shelf, refresh shelf.
/// ARGV: grant prefix, refresh prefix, grant member, sealed record,
/// refresh member ('' for none), sealed grant id, expiry, now, grant cap,
/// grant byte cap, grant size, refresh cap, refresh byte cap, refresh
/// size.
const GRANT_PUT: &str = r"
put_entry(ARGV[1], KEYS[1], KEYS[2], KEYS[3], ARGV[3], ARGV[7], ARGV[8],
  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), {'g', ARGV[4], 'r', ARGV[5]})
if ARGV[5] ~= '' then
  put_entry(ARGV[2], KEYS[4], KEYS[5], KEYS[6], ARGV[5], ARGV[7], ARGV[8],
    tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]), {'c', '1', 'g', ARGV[3], 'i', ARGV[6]})
end
return 1
";

/// Looks a refresh token up. KEYS: the refresh token. ARGV: grant prefix.
/// Returns {1, sealed record} (current), {2, sealed grant id} (rotated
/// away) or {0, false}.
const REFRESH_GET: &str = r"
local c = redis.call('HGET', KEYS[1], 'c')
if not c then return {0, false} end
if c == '0' then return {2, redis.call('HGET', KEYS[1], 'i')} end
local g = redis.call('HGET', ARGV[1] .. redis.call('HGET', KEYS[1], 'g'), 'g')
if not g then return {0, false} end
return {1, g}
";

/// Rotates a grant's refresh token if `old` is still its current one.
/// KEYS: the grant, refresh shelf. ARGV: refresh prefix, grant member,
/// old refresh member, new refresh member, sealed record, sealed grant
/// id, expiry, now, refresh cap, refresh byte cap, refresh size.
const ROTATE: &str = r"
if redis.call('HGET', KEYS[1], 'r') ~= ARGV[3] then return 0 end
local old = ARGV[1] .. ARGV[3]
if redis.call('EXISTS', old) == 1 then redis.call('HSET', old, 'c', '0') end
redis.call('HSET', KEYS[1], 'g', ARGV[5], 'r', ARGV[4])
put_entry(ARGV[1], KEYS[2], KEYS[3], KEYS[4], ARGV[4], ARGV[7], ARGV[8],
  tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), {'c', '1', 'g', ARGV[2], 'i', ARGV[6]})
return 1
";

/// Revokes a grant and announces it. KEYS: grant shelf, refresh shelf,
/// revoked shelf. ARGV: grant prefix, refresh prefix, revoked prefix,
/// grant member, expiry, now, cap, byte cap, size, channel, message.
const REVOKE: &str = r"
local r = redis.call('HGET', ARGV[1] .. ARGV[4], 'r')
if r and r ~= '' then shelf_drop(ARGV[2], KEYS[4], KEYS[5], KEYS[6], r) end
shelf_drop(ARGV[1], KEYS[1], KEYS[2], KEYS[3], ARGV[4])
put_entry(ARGV[3], KEYS[7], KEYS[8], KEYS[9], ARGV[4], ARGV[5], ARGV[6],
  tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), '1')
redis.call('PUBLISH', ARGV[10], ARGV[11])
return 1
";

/// One kind of entry: its key prefix, its shelf's keys and its bounds.
#[derive(Debug)]
pub(super) struct Kind {
    /// The kind's name in keys and in the sealing's associated data.
    pub(super) name: &'static str,
    prefix: String,
    shelf: [String; 3],
    cap: usize,
    max_bytes: usize,
}

impl Kind {
    pub(super) fn new(shared: &Shared, name: &'static str, cap: usize, max_bytes: usize) -> Self {
        Self {
            name,
            prefix: shared.key(&format!("{name}:")),
            shelf: [
                shared.key(&format!("{name}i")),
                shared.key(&format!("{name}s")),
                shared.key(&format!("{name}b")),
            ],
            cap: cap.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn member(&self, secret: &str) -> String {
        digest(&[self.name.as_bytes(), secret.as_bytes()])
    }

    pub(super) fn key(&self, member: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + member.len());
        k.push_str(&self.prefix);
        k.push_str(member);
        k
    }

    pub(super) fn shelf(&self) -> [&str; 3] {
        [&self.shelf[0], &self.shelf[1], &self.shelf[2]]
    }
}

/// Seals values with AES-256-GCM: nonce, then ciphertext and tag. The
/// associated data names the kind and the key's member.
pub(super) struct Sealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

fn associated_data(kind: &str, member: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_LABEL.len() + kind.len() + member.len() + 2);
    aad.extend_from_slice(SEAL_LABEL);
    aad.push(0);
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(member.as_bytes());
    aad
}

impl Sealer {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        Self {
            // A 32-byte key is always valid for AES-256-GCM.
            key: RandomizedNonceKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key"),
        }
    }

    /// `value` as JSON, sealed for (`kind`, `member`).
    pub(super) fn seal(
        &self,
        kind: &str,
        member: &str,
        value: &impl Serialize,
    ) -> Result<Vec<u8>, Unavailable> {
        let failed = || Unavailable("a value cannot be sealed".into());
        let mut buf = Zeroizing::new(Vec::with_capacity(1024));
        serde_json::to_writer(&mut *buf, value).map_err(|_| failed())?;
        // Room for the tag, so sealing in place does not reallocate (and
        // leave a plaintext copy behind).
        buf.reserve(16);
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(associated_data(kind, member)), &mut *buf)
            .map_err(|_| failed())?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The value sealed for (`kind`, `member`); `None` when it does not
    /// open (another key, another place, altered).
    pub(super) fn open<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        member: &str,
        sealed: &[u8],
    ) -> Option<T> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated_data(kind, member)), &mut buf)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// A sign-in as sealed.
#[derive(Serialize, Deserialize)]
struct PendingValue {
    c: String,
    r: String,
    p: String,
    s: Option<String>,
    o: Vec<String>,
    v: String,
    n: String,
}

/// A code as sealed.
#[derive(Serialize, Deserialize)]
struct CodeValue {
    g: GrantRecord,
    r: String,
    p: String,
    t: Option<String>,
}

/// What this replica knows of grants' revocation, for a short time.
#[derive(Default)]
pub(crate) struct RevocationCache {
    entries: Mutex<HashMap<Box<str>, Known>>,
}

impl std::fmt::Debug for RevocationCache {
    /// The count only: no grant id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationCache")
            .field("grants", &lock(&self.entries).len())
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct Known {
    revoked: bool,
    at: Instant,
    /// The grant's member (digest), as revocation messages name it.
    member: [u8; 64],
}

impl RevocationCache {
    fn get(&self, grant_id: &str, now: Instant) -> Option<(bool, bool)> {
        let entries = lock(&self.entries);
        let k = entries.get(grant_id)?;
        Some((
            k.revoked,
            now.saturating_duration_since(k.at) < REVOCATION_CACHE_TTL,
        ))
    }

    fn put(&self, grant_id: &str, member: &str, revoked: bool, now: Instant) {
        if grant_id.len() > MAX_CACHED_ID_BYTES {
            return;
        }
        let mut m = [0u8; 64];
        if member.len() != m.len() {
            return;
        }
        m.copy_from_slice(member.as_bytes());
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_CACHED_GRANTS && !entries.contains_key(grant_id) {
            entries.retain(|_, k| now.saturating_duration_since(k.at) < REVOCATION_CACHE_TTL);
            if entries.len() >= MAX_CACHED_GRANTS {
                entries.clear();
            }
        }
        entries.insert(
            grant_id.into(),
            Known {
                revoked,
                at: now,
                member: m,
            },
        );
    }

    /// Forgets the grant whose member is `member`, or every grant.
    pub(crate) fn forget(&self, member: Option<&str>) {
        let mut entries = lock(&self.entries);
        match member {
            Some(m) => entries.retain(|_, k| k.member != m.as_bytes()),
            None => entries.clear(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// The facade's state on Redis.
#[derive(Debug)]
pub(crate) struct RedisFacade {
    shared: Shared,
    sealer: Sealer,
    clients: Kind,
    pending: Kind,
    /// One client's sign-ins in progress at most.
    pending_per_client: usize,
    codes: Kind,
    grants: Kind,
    refresh: Kind,
    revoked: Kind,
    cache: std::sync::Arc<RevocationCache>,
    put: Script,
    take: Script,
    touch: Script,
    redeem: Script,
    grant_put: Script,
    refresh_get: Script,
    rotate: Script,
    revoke: Script,
}

pub(super) fn script(body: &str) -> Script {
    Script::new(&format!("{SHELF}{body}"))
}

/// Stores `value` under `member` of `kind` until `expiry` (unix ms) with
/// `put` (the [`PUT`] script), within the kind's bounds: `size` is the
/// value's bytes, `group` an optional (set, cap) the entry also counts
/// against, `tombstone` a code's second field.
#[allow(clippy::too_many_arguments)]
pub(super) async fn put_on_shelf(
    shared: &Shared,
    put: &Script,
    kind: &Kind,
    member: &str,
    value: &[u8],
    expiry: u64,
    size: usize,
    group: Option<(&str, usize)>,
    tombstone: Option<&[u8]>,
) -> Result<(), Unavailable> {
    let (expiry, now) = (expiry.to_string(), now_ms().to_string());
    let (cap, max_bytes) = (kind.cap.to_string(), kind.max_bytes.to_string());
    let size = (size + ENTRY_OVERHEAD_BYTES).to_string();
    let (group, gcap) = group.map_or((String::new(), String::new()), |(g, c)| {
        (g.to_string(), c.max(1).to_string())
    });
    let mut args: Vec<&[u8]> = vec![
        kind.prefix.as_bytes(),
        member.as_bytes(),
        value,
        expiry.as_bytes(),
        now.as_bytes(),
        cap.as_bytes(),
        max_bytes.as_bytes(),
        size.as_bytes(),
        group.as_bytes(),
        gcap.as_bytes(),
    ];
    if let Some(t) = tombstone {
        args.push(t);
    }
    let _: i64 = shared.eval(put, &kind.shelf(), &args).await?;
    Ok(())
}

impl RedisFacade {
    /// The facade's state under `shared`, sealed with `key` (derived from
    /// the vault's first key), within `limits`.
    pub(crate) fn new(shared: Shared, limits: FacadeLimits, key: &[u8; 32]) -> Self {
        let cache = std::sync::Arc::new(RevocationCache::default());
        shared.on_revoked(cache.clone());
        Self {
            sealer: Sealer::new(key),
            clients: Kind::new(&shared, "fc", limits.max_clients, limits.max_client_bytes),
            pending: Kind::new(&shared, "fp", limits.max_pending, limits.max_pending_bytes),
            pending_per_client: (limits.max_pending / 10).max(1),
            codes: Kind::new(&shared, "fk", limits.max_pending, limits.max_pending_bytes),
            grants: Kind::new(&shared, "fg", limits.max_grants, limits.max_grant_bytes),
            refresh: Kind::new(&shared, "fr", 2 * limits.max_grants, limits.max_grant_bytes),
            revoked: Kind::new(&shared, "fv", limits.max_grants, limits.max_grant_bytes),
            cache,
            put: script(PUT),
            take: script(TAKE),
            touch: script(TOUCH),
            redeem: script(REDEEM),
            grant_put: script(GRANT_PUT),
            refresh_get: script(REFRESH_GET),
            rotate: script(ROTATE),
            revoke: script(REVOKE),
            shared,
        }
    }

    /// Stores `value` under `member` of `kind` until `expiry` (unix ms).
    #[allow(clippy::too_many_arguments)]
    async fn put_value(
        &self,
        kind: &Kind,
        member: &str,
        value: &[u8],
        expiry: u64,
        size: usize,
        group: Option<(&str, usize)>,
        tombstone: Option<&[u8]>,
    ) -> Result<(), Unavailable> {
        put_on_shelf(
            &self.shared,
            &self.put,
            kind,
            member,
            value,
            expiry,
            size,
            group,
            tombstone,
        )
        .await
    }

    pub(crate) async fn register(
        &self,
        client_id: &str,
        client: &RegisteredClient,
    ) -> Result<(), Unavailable> {
        let member = self.clients.member(client_id);
        let sealed = self.sealer.seal(self.clients.name, &member, client)?;
        let expiry = now_ms() + CLIENT_TTL.as_millis() as u64;
        self.put_value(
            &self.clients,
            &member,
            &sealed,
            expiry,
            sealed.len(),
            None,
            None,
        )
        .await
    }

    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<RegisteredClient>, Unavailable> {
        let member = self.clients.member(client_id);
        let expiry = (now_ms() + CLIENT_TTL.as_millis() as u64).to_string();
        let sealed: Option<Vec<u8>> = self
            .shared
            .eval(
                &self.touch,
                &self.clients.shelf(),
                &[
                    self.clients.prefix.as_bytes(),
                    member.as_bytes(),
                    expiry.as_bytes(),
                ],
            )
            .await?;
        Ok(sealed.and_then(|s| self.sealer.open(self.clients.name, &member, &s)))
    }

    pub(crate) async fn put_pending(
        &self,
        state: &str,
        pending: &Pending,
        now: u64,
    ) -> Result<(), Unavailable> {
        let member = self.pending.member(state);
        let value = PendingValue {
            c: pending.client_id.clone(),
            r: pending.redirect_uri.clone(),
            p: pending.code_challenge.clone(),
            s: pending.agent_state.clone(),
            o: pending.scopes.clone(),
            v: pending.verifier.to_string(),
            n: pending.nonce.to_string(),
        };
        let sealed = self.sealer.seal(self.pending.name, &member, &value);
        let PendingValue { v, n, .. } = value;
        drop((Zeroizing::new(v), Zeroizing::new(n)));
        let sealed = sealed?;
        let group = self.shared.key(&format!(
            "fpc:{}",
            digest(&[b"client", pending.client_id.as_bytes()])
        ));
        self.put_value(
            &self.pending,
            &member,
            &sealed,
            (now + PENDING_TTL_S) * 1000,
            sealed.len(),
            Some((&group, self.pending_per_client)),
            None,
        )
        .await
    }

    pub(crate) async fn take_pending(&self, state: &str) -> Result<Option<Pending>, Unavailable> {
        let member = self.pending.member(state);
        let sealed: Option<Vec<u8>> = self
            .shared
            .eval(
                &self.take,
                &self.pending.shelf(),
                &[self.pending.prefix.as_bytes(), member.as_bytes()],
            )
            .await?;
        let Some(v) = sealed.and_then(|s| {
            self.sealer
                .open::<PendingValue>(self.pending.name, &member, &s)
        }) else {
            return Ok(None);
        };
        Ok(Some(Pending {
            client_id: v.c,
            redirect_uri: v.r,
            code_challenge: v.p,
            agent_state: v.s,
            scopes: v.o,
            verifier: Zeroizing::new(v.v),
            nonce: Zeroizing::new(v.n),
        }))
    }

    pub(crate) async fn put_code(
        &self,
        code: &str,
        issued: &IssuedCode,
        now: u64,
    ) -> Result<(), Unavailable> {
        let member = self.codes.member(code);
        let value = CodeValue {
            g: issued.grant.clone(),
            r: issued.redirect_uri.clone(),
            p: issued.code_challenge.clone(),
            t: issued.idp_refresh.as_ref().map(|t| t.to_string()),
        };
        let sealed = self.sealer.seal(self.codes.name, &member, &value);
        drop(value.t.map(Zeroizing::new));
        let sealed = sealed?;
        let tomb = self
            .sealer
            .seal("fk-used", &member, &issued.grant.id.as_str())?;
        self.put_value(
            &self.codes,
            &member,
            &sealed,
            (now + CODE_TTL_S) * 1000,
            sealed.len() + tomb.len(),
            None,
            Some(&tomb),
        )
        .await
    }

    pub(crate) async fn redeem_code(&self, code: &str) -> Result<Redeemed, Unavailable> {
        let member = self.codes.member(code);
        let key = self.codes.key(&member);
        let (found, sealed): (i64, Option<Vec<u8>>) =
            self.shared.eval(&self.redeem, &[&key], &[]).await?;
        let sealed = sealed.unwrap_or_default();
        Ok(match found {
            1 => match self
                .sealer
                .open::<CodeValue>(self.codes.name, &member, &sealed)
            {
                Some(v) => Redeemed::Fresh(Box::new(IssuedCode {
                    grant: v.g,
                    redirect_uri: v.r,
                    code_challenge: v.p,
                    idp_refresh: v.t.map(Zeroizing::new),
                })),
                None => Redeemed::Unknown,
            },
            2 => match self.sealer.open::<String>("fk-used", &member, &sealed) {
                Some(grant_id) => Redeemed::Replayed { grant_id },
                None => Redeemed::Unknown,
            },
            _ => Redeemed::Unknown,
        })
    }

    pub(crate) async fn put_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&str>,
        now: u64,
    ) -> Result<(), Unavailable> {
        let g = self.grants.member(&grant.id);
        let record = with_member(&g, &self.sealer.seal(self.grants.name, &g, grant)?);
        let r = refresh.map(|t| self.refresh.member(t)).unwrap_or_default();
        let id = self
            .sealer
            .seal(self.refresh.name, &r, &grant.id.as_str())?;
        let expiry = grant.expires_at.max(now + 1) * 1000;
        let nums = [
            expiry.to_string(),
            now_ms().to_string(),
            self.grants.cap.to_string(),
            self.grants.max_bytes.to_string(),
            (record.len() + ENTRY_OVERHEAD_BYTES).to_string(),
            self.refresh.cap.to_string(),
            self.refresh.max_bytes.to_string(),
            (id.len() + ENTRY_OVERHEAD_BYTES).to_string(),
        ];
        let [gs0, gs1, gs2] = self.grants.shelf();
        let [rs0, rs1, rs2] = self.refresh.shelf();
        let mut args: Vec<&[u8]> = vec![
            self.grants.prefix.as_bytes(),
            self.refresh.prefix.as_bytes(),
            g.as_bytes(),
            &record,
            r.as_bytes(),
            &id,
        ];
        args.extend(nums.iter().map(String::as_bytes));
        let _: i64 = self
            .shared
            .eval(&self.grant_put, &[gs0, gs1, gs2, rs0, rs1, rs2], &args)
            .await?;
        Ok(())
    }

    pub(crate) async fn grant_by_refresh(
        &self,
        refresh: &str,
    ) -> Result<RefreshLookup, Unavailable> {
        let r = self.refresh.member(refresh);
        let key = self.refresh.key(&r);
        let (found, sealed): (i64, Option<Vec<u8>>) = self
            .shared
            .eval(&self.refresh_get, &[&key], &[self.grants.prefix.as_bytes()])
            .await?;
        let sealed = sealed.unwrap_or_default();
        Ok(match found {
            1 => {
                // The record is sealed under its grant's member, which the
                // script does not return: try the id the record names.
                match self.open_grant(&sealed) {
                    Some(g) => RefreshLookup::Current(Box::new(g)),
                    None => RefreshLookup::Unknown,
                }
            }
            2 => match self.sealer.open::<String>(self.refresh.name, &r, &sealed) {
                Some(grant_id) => RefreshLookup::Reused { grant_id },
                None => RefreshLookup::Unknown,
            },
            _ => RefreshLookup::Unknown,
        })
    }

    /// A grant record read through a refresh token. Its associated data
    /// names its grant: opened with the member of the grant id sealed with
    /// it, and checked to name that grant.
    fn open_grant(&self, sealed: &[u8]) -> Option<GrantRecord> {
        let (member, body) = split_member(sealed)?;
        let g: GrantRecord = self.sealer.open(self.grants.name, member, body)?;
        (self.grants.member(&g.id) == member).then_some(g)
    }

    pub(crate) async fn rotate_refresh(
        &self,
        grant: &GrantRecord,
        old: &str,
        refresh: &str,
        now: u64,
    ) -> Result<bool, Unavailable> {
        let g = self.grants.member(&grant.id);
        let record = self.sealer.seal(self.grants.name, &g, grant)?;
        let record = with_member(&g, &record);
        let (old, new) = (self.refresh.member(old), self.refresh.member(refresh));
        let id = self
            .sealer
            .seal(self.refresh.name, &new, &grant.id.as_str())?;
        let nums = [
            (grant.expires_at.max(now + 1) * 1000).to_string(),
            now_ms().to_string(),
            self.refresh.cap.to_string(),
            self.refresh.max_bytes.to_string(),
            (id.len() + ENTRY_OVERHEAD_BYTES).to_string(),
        ];
        let grant_key = self.grants.key(&g);
        let [rs0, rs1, rs2] = self.refresh.shelf();
        let mut args: Vec<&[u8]> = vec![
            self.refresh.prefix.as_bytes(),
            g.as_bytes(),
            old.as_bytes(),
            new.as_bytes(),
            &record,
            &id,
        ];
        args.extend(nums.iter().map(String::as_bytes));
        let n: i64 = self
            .shared
            .eval(&self.rotate, &[&grant_key, rs0, rs1, rs2], &args)
            .await?;
        Ok(n == 1)
    }

    pub(crate) async fn revoke(
        &self,
        grant_id: &str,
        access_until: u64,
        now: u64,
    ) -> Result<(), Unavailable> {
        let g = self.grants.member(grant_id);
        let expiry = (access_until.max(now + 1) * 1000).to_string();
        let nums = [
            expiry,
            now_ms().to_string(),
            self.revoked.cap.to_string(),
            self.revoked.max_bytes.to_string(),
            ENTRY_OVERHEAD_BYTES.to_string(),
        ];
        let channel = self.shared.key(CHANGED_CHANNEL);
        let message = format!("{REVOKED_MESSAGE}{g}");
        let [a0, a1, a2] = self.grants.shelf();
        let [b0, b1, b2] = self.refresh.shelf();
        let [c0, c1, c2] = self.revoked.shelf();
        let mut args: Vec<&[u8]> = vec![
            self.grants.prefix.as_bytes(),
            self.refresh.prefix.as_bytes(),
            self.revoked.prefix.as_bytes(),
            g.as_bytes(),
        ];
        args.extend(nums.iter().map(String::as_bytes));
        args.push(channel.as_bytes());
        args.push(message.as_bytes());
        let _: i64 = self
            .shared
            .eval(&self.revoke, &[a0, a1, a2, b0, b1, b2, c0, c1, c2], &args)
            .await?;
        self.cache.put(grant_id, &g, true, Instant::now());
        Ok(())
    }

    /// Whether `grant_id` is revoked: from this replica's cache while it
    /// is fresh, else one `EXISTS`. When Redis cannot answer, what was
    /// known last stands; with nothing known, the error.
    pub(crate) async fn is_revoked(&self, grant_id: &str) -> Result<bool, Unavailable> {
        let now = Instant::now();
        let known = self.cache.get(grant_id, now);
        if let Some((revoked, true)) = known {
            return Ok(revoked);
        }
        let g = self.grants.member(grant_id);
        let r: redis::RedisResult<bool> = redis::cmd("EXISTS")
            .arg(self.revoked.key(&g))
            .query_async(&mut self.shared.conn())
            .await;
        match self.shared.note(r) {
            Ok(revoked) => {
                self.cache.put(grant_id, &g, revoked, now);
                Ok(revoked)
            }
            Err(e) => known.map(|(revoked, _)| revoked).ok_or(e),
        }
    }
}

/// A grant record sealed under `member`, prefixed by that member (64 hex
/// characters), as grants and rotations store it.
fn with_member(member: &str, sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(member.len() + sealed.len());
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(sealed);
    out
}

fn split_member(stored: &[u8]) -> Option<(&str, &[u8])> {
    if stored.len() <= 64 {
        return None;
    }
    let (member, body) = stored.split_at(64);
    Some((std::str::from_utf8(member).ok()?, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::RedisServer;

    async fn facade(server: &RedisServer, limits: FacadeLimits) -> RedisFacade {
        let shared = Shared::open(&server.url(), &server.url(), "t:")
            .await
            .unwrap();
        RedisFacade::new(shared, limits, &[7; 32])
    }

    fn now() -> u64 {
        now_ms() / 1000
    }

    fn grant(id: &str) -> GrantRecord {
        GrantRecord {
            id: id.into(),
            client_id: "client-1".into(),
            sub: "oid-ana".into(),
            email: Some("ana@corp.example".into()),
            name: None,
            scopes: vec!["crm.read".into()],
            expires_at: now() + 3600,
        }
    }

    fn pending(client: &str) -> Pending {
        Pending {
            client_id: client.into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".repeat(43),
            agent_state: Some("agent-state".into()),
            scopes: vec!["crm.read".into()],
            verifier: Zeroizing::new("VERIFIER-SECRET-0123456789-0123456789-01".into()),
            nonce: Zeroizing::new("NONCE-SECRET-0123456".into()),
        }
    }

    fn code(id: &str) -> IssuedCode {
        IssuedCode {
            grant: grant(id),
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".repeat(43),
            idp_refresh: Some(Zeroizing::new("IDP-REFRESH-SECRET".into())),
        }
    }

    #[tokio::test]
    async fn two_replicas_share_single_use_sign_ins_codes_and_refresh_rotation() {
        let server = RedisServer::start_new();
        let a = facade(&server, FacadeLimits::default()).await;
        let b = facade(&server, FacadeLimits::default()).await;
        let t = now();
        a.register(
            "client-1",
            &RegisteredClient {
                name: Some("agent".into()),
                redirect_uris: vec!["http://127.0.0.1/cb".into()],
            },
        )
        .await
        .unwrap();
        assert_eq!(
            b.client("client-1").await.unwrap().unwrap().redirect_uris,
            ["http://127.0.0.1/cb"]
        );
        assert!(b.client("client-2").await.unwrap().is_none());

        a.put_pending("state-1", &pending("client-1"), t)
            .await
            .unwrap();
        let p = b.take_pending("state-1").await.unwrap().unwrap();
        assert_eq!(&*p.verifier, "VERIFIER-SECRET-0123456789-0123456789-01");
        assert_eq!(p.agent_state.as_deref(), Some("agent-state"));
        assert!(a.take_pending("state-1").await.unwrap().is_none());

        b.put_code("code-1", &code("g1"), t).await.unwrap();
        let (x, y) = tokio::join!(a.redeem_code("code-1"), b.redeem_code("code-1"));
        let outcomes = [x.unwrap(), y.unwrap()];
        let fresh = outcomes
            .iter()
            .filter(|o| matches!(o, Redeemed::Fresh(_)))
            .count();
        assert_eq!(fresh, 1, "{outcomes:?}");
        assert!(outcomes.contains(&Redeemed::Replayed {
            grant_id: "g1".into()
        }));
        let Some(Redeemed::Fresh(issued)) = outcomes
            .into_iter()
            .find(|o| matches!(o, Redeemed::Fresh(_)))
        else {
            unreachable!()
        };
        assert_eq!(
            issued.idp_refresh.as_deref().map(String::as_str),
            Some("IDP-REFRESH-SECRET")
        );
        assert_eq!(issued.grant, grant("g1"));
        assert_eq!(a.redeem_code("code-2").await.unwrap(), Redeemed::Unknown);

        a.put_grant(&grant("g1"), Some("refresh-1"), t)
            .await
            .unwrap();
        assert_eq!(
            b.grant_by_refresh("refresh-1").await.unwrap(),
            RefreshLookup::Current(Box::new(grant("g1")))
        );
        // Two replicas rotate the same token at once: one wins.
        let g1 = grant("g1");
        let (x, y) = tokio::join!(
            a.rotate_refresh(&g1, "refresh-1", "refresh-2a", t),
            b.rotate_refresh(&g1, "refresh-1", "refresh-2b", t)
        );
        assert!(x.unwrap() ^ y.unwrap());
        assert_eq!(
            a.grant_by_refresh("refresh-1").await.unwrap(),
            RefreshLookup::Reused {
                grant_id: "g1".into()
            }
        );

        // Revoked on A: B's cached "not revoked" goes at once (the
        // message), and the refresh token stops working.
        assert!(!b.is_revoked("g1").await.unwrap());
        let shown = format!("{b:?}");
        assert!(
            shown.contains("grants: 1") && !shown.contains("g1"),
            "{shown}"
        );
        let current = if matches!(
            b.grant_by_refresh("refresh-2a").await.unwrap(),
            RefreshLookup::Current(_)
        ) {
            "refresh-2a"
        } else {
            "refresh-2b"
        };
        let relay = super::super::redis::relay_changes(
            b.shared.clone(),
            tokio::sync::broadcast::channel::<()>(1).1,
            || async {},
        );
        // The subscription is up once a publication reaches a subscriber.
        let deadline = Instant::now() + Duration::from_secs(10);
        while server
            .command("PUBSUB NUMSUB t:changed")
            .trim_end()
            .ends_with(":0")
        {
            assert!(Instant::now() < deadline, "never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.revoke("g1", t + 600, t).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.cache.len() > 0 {
            assert!(Instant::now() < deadline, "the message never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(b.is_revoked("g1").await.unwrap());
        assert_eq!(
            b.grant_by_refresh(current).await.unwrap(),
            RefreshLookup::Unknown
        );
        for task in relay {
            task.abort();
        }

        // Nothing in Redis is a secret, an id or a user in clear.
        let all = server.dump();
        for kind in ["t:fc:", "t:fk:", "t:fr:", "t:fv:", "t:fci", "t:fpc:"] {
            assert!(all.contains(kind), "{kind} missing from {all}");
        }
        for secret in [
            "client-1",
            "state-1",
            "VERIFIER-SECRET",
            "NONCE-SECRET",
            "code-1",
            "IDP-REFRESH-SECRET",
            "refresh-1",
            "refresh-2",
            "oid-ana",
            "ana@corp.example",
            "agent-state",
            "g1",
        ] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
        // Every key expires.
        let keys = server.command("KEYS *");
        for key in keys.lines().filter(|l| l.starts_with("t:")) {
            let ttl = server.command(&format!("PTTL {key}"));
            assert!(!ttl.starts_with(":-"), "{key} has no expiry: {ttl}");
        }
    }

    #[tokio::test]
    async fn floods_of_registrations_and_sign_ins_stay_within_the_bounds() {
        let server = RedisServer::start_new();
        let limits = FacadeLimits {
            max_clients: 20,
            max_client_bytes: 8_000,
            max_pending: 30,
            max_pending_bytes: 20_000,
            ..FacadeLimits::default()
        };
        let f = facade(&server, limits).await;
        let t = now();
        for i in 0..120 {
            f.register(
                &format!("client-{i}"),
                &RegisteredClient {
                    name: Some("n".repeat(200)),
                    redirect_uris: vec!["https://x.example/cb".into()],
                },
            )
            .await
            .unwrap();
            // One client floods; the others' sign-ins survive its cap.
            let client = if i % 10 == 0 { "quiet" } else { "flood" };
            f.put_pending(&format!("state-{i}"), &pending(client), t)
                .await
                .unwrap();
            for (kind, cap, bytes) in [
                ("fc", limits.max_clients, limits.max_client_bytes),
                ("fp", limits.max_pending, limits.max_pending_bytes),
            ] {
                let n = server.command(&format!("ZCARD t:{kind}i"));
                let n: usize = n.trim().trim_start_matches(':').parse().unwrap();
                let b = server.command(&format!("GET t:{kind}b"));
                let b: usize = b.lines().nth(1).unwrap().parse().unwrap();
                let keys = server.command(&format!("KEYS t:{kind}:*"));
                let k = keys.lines().filter(|l| l.starts_with("t:")).count();
                assert!(n <= cap && k <= cap && b <= bytes, "{kind}: {n} {k} {b}");
            }
        }
        assert!(f.client("client-119").await.unwrap().is_some());
        assert!(f.client("client-0").await.unwrap().is_none());
        let flood = f.pending_per_client;
        assert_eq!(flood, 3);
        let mut kept = 0;
        for i in (0..120).filter(|i| i % 10 != 0) {
            if f.take_pending(&format!("state-{i}"))
                .await
                .unwrap()
                .is_some()
            {
                kept += 1;
            }
        }
        assert_eq!(kept, flood, "the flooding client keeps only its cap");
        assert!(f.take_pending("state-110").await.unwrap().is_some());
    }
}

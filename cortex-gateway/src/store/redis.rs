//! The shared store on Redis (`CORTEX_STORE=redis://…` or `rediss://…`):
//! what replicas behind one load balancer must agree on.
//!
//! One multiplexed connection per process ([`redis::aio::ConnectionManager`]):
//! concurrent requests share it and are pipelined on the wire, and it
//! reconnects by itself after a loss. Every key starts with the configured
//! prefix and names a SHA-256 digest, never a token, a session id, a
//! ticket or a `sub`; values hold no token. Multi-key updates are Lua
//! scripts (run by `EVALSHA`), so each is atomic and one round trip.
//!
//! Keys (after the prefix; `<d>` is a hex SHA-256 digest):
//! - `s:<d(id)>`: a legacy session, `"<revision> <d(sub)>"`, expires after
//!   the idle time and is refreshed on use; `sc:<d(sub)>` (a caller's
//!   sessions) and `sa` (all sessions) are sorted sets by last use that
//!   the caps trim;
//! - `r:<d(sub)>`, `ra:<d(address)>`: a caller's GCRA arrival time;
//! - `st:<d(sub)>`: a caller's open streams, a sorted set of leases;
//! - `ti:`, `tx:`, `tg:` and their bounds: the token caches
//!   (`redis_tokens.rs`);
//! - `t:<d(ticket)>`, `tc:<d(sub)>`, `ta`: link tickets and their caps;
//! - `integrity`: the integrity document;
//! - `f…`: the OAuth facade's state (`redis_facade.rs`);
//! - channel `changed`: a replica saw the catalog change (its id), or
//!   revoked a facade grant (`revoked <d(grant id)>`).
//!
//! Why this crate, one connection and these failure rules:
//! `docs/adr/0017-redis-store.md` and `docs/operations.md`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::digest::{Context, SHA256};
use redis::{AsyncCommands as _, Script, aio::ConnectionManager};

use crate::sync::lock;

/// How long one command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stream slot's lease lasts without renewal: the slots of a
/// replica that died free themselves after this.
pub(crate) const STREAM_LEASE: Duration = Duration::from_secs(60);

/// What to do with a request when the shared rate state cannot be reached
/// (`CORTEX_STORE_RATE_LIMIT_ON_FAILURE`).
pub(crate) use super::settings::RateLimitOnFailure as OnFailure;

/// A connection to the shared store, its key prefix and its health.
#[derive(Clone)]
pub(crate) struct Shared {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: Arc<str>,
    up: Arc<AtomicBool>,
    /// Where the store is, for messages (the URL without its password).
    place: Arc<str>,
    /// The OAuth facade's revocation cache, told of revocations that other
    /// replicas publish (`redis_facade.rs`).
    revocations: Arc<std::sync::OnceLock<Arc<super::redis_facade::RevocationCache>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("place", &self.place)
            .field("prefix", &self.prefix)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the Redis store at {place} cannot be reached ({reason}); start Redis or fix CORTEX_STORE")]
pub(crate) struct OpenError {
    place: String,
    reason: String,
}

impl OpenError {
    pub(crate) fn new(place: &str, reason: String) -> Self {
        Self {
            place: place.to_string(),
            reason,
        }
    }
}

/// A Redis failure, reduced to what may be shown (no URL, no value).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared store is unavailable: {0}")]
pub(crate) struct Unavailable(pub(crate) String);

impl From<redis::RedisError> for Unavailable {
    fn from(e: redis::RedisError) -> Self {
        Self(format!("{:?}: {}", e.kind(), e.detail().unwrap_or("")))
    }
}

/// Hex SHA-256 of `parts`, each prefixed by its length.
pub(crate) fn digest(parts: &[&[u8]]) -> String {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Shared {
    /// Connects to `url` and checks the server answers (`PING`).
    pub(crate) async fn open(url: &str, place: &str, prefix: &str) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError {
            place: place.to_string(),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| fail(Unavailable::from(e).0))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| fail("no answer".into()))?
        .map_err(|e| fail(Unavailable::from(e).0))?;
        let shared = Self {
            conn,
            client,
            prefix: Arc::from(prefix),
            up: Arc::new(AtomicBool::new(true)),
            place: Arc::from(place),
            revocations: Arc::default(),
        };
        shared.ping().await.map_err(|e| fail(e.0))?;
        Ok(shared)
    }

    /// The connection (a cheap clone of a shared handle).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `prefix` + `rest`.
    pub(crate) fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + rest.len());
        k.push_str(&self.prefix);
        k.push_str(rest);
        k
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the store is (no password).
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// Records the outcome of a command for `/readyz` and the logs.
    pub(crate) fn note<T>(&self, r: redis::RedisResult<T>) -> Result<T, Unavailable> {
        match r {
            Ok(v) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::warn!(store = %self.place, "the shared store is reachable again");
                }
                Ok(v)
            }
            Err(e) => {
                let e = Unavailable::from(e);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::error!(store = %self.place, "{e}");
                }
                Err(e)
            }
        }
    }

    /// Whether the server answers now.
    pub(crate) async fn ping(&self) -> Result<(), Unavailable> {
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut self.conn()).await;
        self.note(r).map(drop)
    }

    /// Runs `script` with `keys` and `args`.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, Unavailable> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let r = inv.invoke_async(&mut self.conn()).await;
        self.note(r)
    }

    /// A new publish/subscribe connection (not multiplexed).
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, Unavailable> {
        let r = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connect timeout",
                )))
            });
        self.note(r)
    }

    /// Registers the cache that revocation messages update.
    pub(crate) fn on_revoked(&self, cache: Arc<super::redis_facade::RevocationCache>) {
        let _ = self.revocations.set(cache);
    }

    /// A revocation message (`Some(member)`), or a lost subscription
    /// (`None`: any message may have been missed).
    fn revoked(&self, member: Option<&str>) {
        if let Some(cache) = self.revocations.get() {
            cache.forget(member);
        }
    }

    /// Publishes `message` on the channel `changed`.
    pub(crate) async fn publish_changed(&self, message: &str) -> Result<(), Unavailable> {
        let r: redis::RedisResult<i64> = self
            .conn()
            .publish(self.key(CHANGED_CHANNEL), message)
            .await;
        self.note(r).map(drop)
    }
}

/// The channel on which replicas announce catalog changes.
pub(crate) const CHANGED_CHANNEL: &str = "changed";

// ---------------------------------------------------------------- sessions

/// Creates a session. KEYS: session, caller set, all set. ARGV: unused,
/// idle (ms), per-caller cap, total cap, value, id digest. The sets are
/// scored by last use in µs of the server's clock (`TIME`): one clock for
/// every replica, and no two uses of one process share a score.
const SESSION_CREATE: &str = r"
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local idle = tonumber(ARGV[2])
local oldest = string.format('%.0f', tonumber(now) - idle * 1000)
local per, total = tonumber(ARGV[3]), tonumber(ARGV[4])
local pfx = string.sub(KEYS[1], 1, #KEYS[1] - 66)
local function drop(member)
  local v = redis.call('GET', pfx .. 's:' .. member)
  redis.call('DEL', pfx .. 's:' .. member)
  redis.call('ZREM', KEYS[3], member)
  if v then redis.call('ZREM', pfx .. 'sc:' .. string.sub(v, -64), member) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', oldest)
while redis.call('ZCARD', KEYS[2]) >= per do
  local m = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not m then break end
  drop(m)
  redis.call('ZREM', KEYS[2], m)
end
while redis.call('ZCARD', KEYS[3]) >= total do
  local m = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not m then break end
  drop(m)
end
redis.call('SET', KEYS[1], ARGV[5], 'PX', idle)
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('PEXPIRE', KEYS[2], idle)
redis.call('ZADD', KEYS[3], now, ARGV[6])
return 1
";

/// Uses a session. KEYS: session, caller set, all set. ARGV: unused,
/// idle (ms), sub digest, id digest. Returns the revision, or nil.
const SESSION_GET: &str = r"
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, -64) ~= ARGV[3] then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', now, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], 'XX', now, ARGV[4])
return string.sub(v, 1, #v - 65)
";

/// Ends a session. KEYS: session, caller set, all set. ARGV: sub digest,
/// id digest. Returns 1 when it was the caller's.
const SESSION_END: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, -64) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
";

/// Legacy sessions on Redis.
#[derive(Debug)]
pub(crate) struct RedisSessions {
    shared: Shared,
    limits: super::sessions::SessionLimits,
    create: Script,
    get: Script,
    end: Script,
}

/// Milliseconds since the Unix epoch (this process's clock).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisSessions {
    pub(crate) fn new(shared: Shared, limits: super::sessions::SessionLimits) -> Self {
        Self {
            shared,
            limits,
            create: Script::new(SESSION_CREATE),
            get: Script::new(SESSION_GET),
            end: Script::new(SESSION_END),
        }
    }

    /// The shared connection (for `/readyz`).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn keys(&self, id_digest: &str, sub_digest: &str) -> [String; 3] {
        [
            self.shared.key(&format!("s:{id_digest}")),
            self.shared.key(&format!("sc:{sub_digest}")),
            self.shared.key("sa"),
        ]
    }

    pub(crate) async fn create(
        &self,
        id: &str,
        sub: &str,
        revision: crate::protocol::Revision,
    ) -> Result<(), Unavailable> {
        let id_d = digest(&[b"session", id.as_bytes()]);
        let sub_d = digest(&[b"sub", sub.as_bytes()]);
        let [k1, k2, k3] = self.keys(&id_d, &sub_d);
        let idle = super::sessions::SESSION_IDLE.as_millis().to_string();
        let value = format!("{} {sub_d}", revision.as_str());
        let _: i64 = self
            .shared
            .eval(
                &self.create,
                &[&k1, &k2, &k3],
                &[
                    b"-",
                    idle.as_bytes(),
                    self.limits.max_per_caller.max(1).to_string().as_bytes(),
                    self.limits.max_sessions.max(1).to_string().as_bytes(),
                    value.as_bytes(),
                    id_d.as_bytes(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The revision of session `id` of `sub`; `Ok(None)`: not found.
    pub(crate) async fn get(
        &self,
        id: &str,
        sub: &str,
    ) -> Result<Option<crate::protocol::Revision>, Unavailable> {
        let id_d = digest(&[b"session", id.as_bytes()]);
        let sub_d = digest(&[b"sub", sub.as_bytes()]);
        let [k1, k2, k3] = self.keys(&id_d, &sub_d);
        let idle = super::sessions::SESSION_IDLE.as_millis().to_string();
        let found: Option<String> = self
            .shared
            .eval(
                &self.get,
                &[&k1, &k2, &k3],
                &[b"-", idle.as_bytes(), sub_d.as_bytes(), id_d.as_bytes()],
            )
            .await?;
        Ok(found.and_then(|r| crate::protocol::Revision::parse(&r)))
    }

    /// Ends session `id` of `sub`; false when it was not found.
    pub(crate) async fn end(&self, id: &str, sub: &str) -> Result<bool, Unavailable> {
        let id_d = digest(&[b"session", id.as_bytes()]);
        let sub_d = digest(&[b"sub", sub.as_bytes()]);
        let [k1, k2, k3] = self.keys(&id_d, &sub_d);
        let n: i64 = self
            .shared
            .eval(
                &self.end,
                &[&k1, &k2, &k3],
                &[sub_d.as_bytes(), id_d.as_bytes()],
            )
            .await?;
        Ok(n == 1)
    }
}

// -------------------------------------------------------------- rate limit

/// GCRA with the server's clock, charging up to `want` cells at once.
/// KEYS: the caller's arrival time. ARGV: emission interval (µs),
/// tolerance (µs), cells wanted. Returns `{granted, wait}`: the cells
/// charged (at least 1 when admitted), or 0 and the µs until the next
/// admission.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = tolerance - (tat - now)
if room < 0 then return {0, math.ceil(-room)} end
local granted = want
if interval > 0 then granted = math.min(want, math.floor(room / interval) + 1) end
local next = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1)
return {granted, 0}
";

/// How long cells charged ahead on Redis may be spent here: at most this
/// late, so a caller's requests in any window exceed what Redis admitted
/// in a window this much longer by no more than one chunk per replica.
const CELL_LIFETIME: Duration = Duration::from_secs(1);
/// The largest chunk charged ahead, whatever the burst.
const MAX_CHUNK: u32 = 64;

/// Cells a caller has charged on Redis and not spent yet here.
#[derive(Debug, Clone, Copy)]
struct Cells {
    left: u32,
    /// The size of the last chunk (the next one doubles it, up to the
    /// limit, while the caller keeps spending within the lifetime).
    chunk: u32,
    granted: std::time::Instant,
}

/// A per-caller GCRA on Redis: one budget for all replicas.
///
/// A caller who keeps sending charges cells ahead in chunks (1, 2, 4 … up
/// to an eighth of the burst, at most [`MAX_CHUNK`]) and spends them here
/// without a round trip for up to [`CELL_LIFETIME`]. Cells are charged
/// before they are spent, so Redis never admits more than the budget;
/// spending them up to a second late lets one replica exceed the rate over
/// a window by at most one chunk. With a burst below 16 the chunk is 1:
/// every request is one exact round trip.
#[derive(Debug)]
pub(crate) struct RedisRate {
    shared: Shared,
    interval_us: String,
    tolerance_us: String,
    max_chunk: u32,
    on_failure: OnFailure,
    script: Script,
    /// Cells charged ahead, per `sub`; bounded by [`MAX_AHEAD_CALLERS`].
    ahead: Mutex<HashMap<Box<str>, Cells>>,
    /// The budgets of client addresses, in this process (they guard its
    /// own work).
    local: super::ratelimit::RateLimiter,
}

/// Callers whose cells charged ahead are remembered (forgetting them only
/// loses cells: the caller is then admitted less, never more).
const MAX_AHEAD_CALLERS: usize = 10_000;

impl RedisRate {
    pub(crate) fn new(
        shared: Shared,
        per_minute: u32,
        burst: u32,
        on_failure: OnFailure,
        local: super::ratelimit::RateLimiter,
    ) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        let tolerance = interval * burst.max(1).saturating_sub(1);
        Self {
            shared,
            interval_us: interval.as_micros().to_string(),
            tolerance_us: tolerance.as_micros().to_string(),
            max_chunk: (burst / 8).clamp(1, MAX_CHUNK),
            on_failure,
            script: Script::new(GCRA),
            ahead: Mutex::default(),
            local,
        }
    }

    /// The in-process budgets of client addresses.
    pub(crate) fn local(&self) -> &super::ratelimit::RateLimiter {
        &self.local
    }

    /// Charges one request to the caller `sub`: a cell charged ahead, or
    /// a round trip.
    pub(crate) async fn charge_subject(
        &self,
        sub: &str,
    ) -> Result<(), super::ratelimit::RateLimited> {
        let now = std::time::Instant::now();
        let want = {
            let mut ahead = lock(&self.ahead);
            match ahead.get_mut(sub) {
                Some(c) if now.saturating_duration_since(c.granted) < CELL_LIFETIME => {
                    if c.left > 0 {
                        c.left -= 1;
                        return Ok(());
                    }
                    (c.chunk * 2).min(self.max_chunk)
                }
                _ => 1,
            }
        };
        let key = self
            .shared
            .key(&format!("r:{}", digest(&[b"sub", sub.as_bytes()])));
        let granted = self.charge(&key, want).await?;
        if self.max_chunk > 1 {
            let mut ahead = lock(&self.ahead);
            if ahead.len() >= MAX_AHEAD_CALLERS && !ahead.contains_key(sub) {
                ahead.retain(|_, c| {
                    c.left > 0 && now.saturating_duration_since(c.granted) < CELL_LIFETIME
                });
                if ahead.len() >= MAX_AHEAD_CALLERS {
                    ahead.clear();
                }
            }
            ahead.insert(
                sub.into(),
                Cells {
                    left: granted.saturating_sub(1),
                    chunk: granted.max(1),
                    granted: now,
                },
            );
        }
        Ok(())
    }

    /// Charges up to `want` cells under `key`; how many were charged.
    async fn charge(&self, key: &str, want: u32) -> Result<u32, super::ratelimit::RateLimited> {
        let r: Result<(i64, i64), Unavailable> = self
            .shared
            .eval(
                &self.script,
                &[key],
                &[
                    self.interval_us.as_bytes(),
                    self.tolerance_us.as_bytes(),
                    want.to_string().as_bytes(),
                ],
            )
            .await;
        match r {
            Ok((granted, _)) if granted > 0 => Ok(granted as u32),
            Ok((_, wait)) => Err(super::ratelimit::RateLimited {
                retry_after: Duration::from_micros(wait.max(0) as u64),
            }),
            Err(_) => match self.on_failure {
                OnFailure::Open => Ok(1),
                OnFailure::Closed => Err(super::ratelimit::RateLimited {
                    retry_after: Duration::from_secs(1),
                }),
            },
        }
    }
}

// ----------------------------------------------------------------- streams

/// Takes a stream slot. KEYS: the caller's leases. ARGV: now (ms), lease
/// (ms), cap, slot id. Returns 1 when taken.
const STREAM_ACQUIRE: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Open notification streams per caller on Redis, as leases that this
/// process renews while the streams are open.
#[derive(Debug)]
pub(crate) struct RedisStreams {
    shared: Shared,
    cap: usize,
    on_failure: OnFailure,
    script: Script,
    /// This process's open slots: slot id -> key of its set.
    live: Arc<Mutex<HashMap<String, String>>>,
}

/// A stream slot held on Redis; dropping it releases the slot.
#[derive(Debug)]
pub(crate) struct RedisSlot {
    id: String,
    shared: Option<Shared>,
    live: Arc<Mutex<HashMap<String, String>>>,
}

impl Drop for RedisSlot {
    fn drop(&mut self) {
        let Some(key) = lock(&self.live).remove(&self.id) else {
            return;
        };
        let (Some(shared), Ok(rt)) = (self.shared.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let id = std::mem::take(&mut self.id);
        rt.spawn(async move {
            let r: redis::RedisResult<i64> = shared.conn().zrem(key, id).await;
            let _ = shared.note(r);
        });
    }
}

impl RedisStreams {
    pub(crate) fn new(shared: Shared, cap: usize, on_failure: OnFailure) -> Self {
        let this = Self {
            shared,
            cap,
            on_failure,
            script: Script::new(STREAM_ACQUIRE),
            live: Arc::default(),
        };
        this.renew_leases();
        this
    }

    /// Renews this process's leases every third of a lease, while the
    /// store lives.
    fn renew_leases(&self) {
        let live = Arc::downgrade(&self.live);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STREAM_LEASE / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(live) = live.upgrade() else { return };
                let slots: Vec<(String, String)> = lock(&live)
                    .iter()
                    .map(|(id, key)| (id.clone(), key.clone()))
                    .collect();
                drop(live);
                if slots.is_empty() {
                    continue;
                }
                let until = now_ms() + STREAM_LEASE.as_millis() as u64;
                let mut pipe = redis::pipe();
                for (id, key) in &slots {
                    pipe.zadd(key, id, until).ignore();
                    pipe.pexpire(key, STREAM_LEASE.as_millis() as i64).ignore();
                }
                let r: redis::RedisResult<()> = pipe.query_async(&mut shared.conn()).await;
                let _ = shared.note(r);
            }
        });
    }

    /// The cap per caller.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Takes a slot for the caller whose digest is `who`.
    pub(crate) async fn acquire(&self, who: &str) -> Result<Option<RedisSlot>, ()> {
        let key = self.shared.key(&format!("st:{who}"));
        let id = hex(&uuid::Uuid::new_v4().into_bytes());
        let r: Result<i64, Unavailable> = self
            .shared
            .eval(
                &self.script,
                &[&key],
                &[
                    now_ms().to_string().as_bytes(),
                    STREAM_LEASE.as_millis().to_string().as_bytes(),
                    self.cap.to_string().as_bytes(),
                    id.as_bytes(),
                ],
            )
            .await;
        match r {
            Ok(1) => {
                lock(&self.live).insert(id.clone(), key);
                Ok(Some(RedisSlot {
                    id,
                    shared: Some(self.shared.clone()),
                    live: self.live.clone(),
                }))
            }
            Ok(_) => Err(()),
            Err(_) => match self.on_failure {
                OnFailure::Open => Ok(None),
                OnFailure::Closed => Err(()),
            },
        }
    }
}

// ----------------------------------------------------------------- tickets

/// Issues a ticket. KEYS: ticket, caller set, all set. ARGV: unused, ttl
/// (ms), per-caller cap, total cap, value, ticket digest. The sets are
/// scored by issue time in µs of the server's clock.
const TICKET_ISSUE: &str = r"
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local ttl = tonumber(ARGV[2])
local pfx = string.sub(KEYS[1], 1, #KEYS[1] - 66)
local oldest = string.format('%.0f', tonumber(now) - ttl * 1000)
for _, set in ipairs({KEYS[2], KEYS[3]}) do
  redis.call('ZREMRANGEBYSCORE', set, '-inf', oldest)
end
local function over(set, cap)
  while redis.call('ZCARD', set) >= cap do
    local m = redis.call('ZRANGE', set, 0, 0)[1]
    if not m then break end
    redis.call('DEL', pfx .. 't:' .. m)
    redis.call('ZREM', KEYS[2], m)
    redis.call('ZREM', KEYS[3], m)
  end
end
over(KEYS[2], tonumber(ARGV[3]))
over(KEYS[3], tonumber(ARGV[4]))
redis.call('SET', KEYS[1], ARGV[5], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now, ARGV[6])
return 1
";

/// Link tickets on Redis: the value is `"<d(sub)> <d(server)> <label>"`.
#[derive(Debug)]
pub(crate) struct RedisTickets {
    shared: Shared,
    limits: super::tickets::TicketLimits,
    issue: Script,
}

impl RedisTickets {
    pub(crate) fn new(shared: Shared, limits: super::tickets::TicketLimits) -> Self {
        Self {
            shared,
            limits,
            issue: Script::new(TICKET_ISSUE),
        }
    }

    pub(crate) async fn issue(
        &self,
        ticket: &str,
        sub: &str,
        label: &str,
        server: &str,
    ) -> Result<(), Unavailable> {
        let t = digest(&[b"ticket", ticket.as_bytes()]);
        let sub_d = digest(&[b"sub", sub.as_bytes()]);
        let value = format!(
            "{sub_d} {} {sub_len}:{sub}{label}",
            digest(&[b"server", server.as_bytes()]),
            sub_len = sub.len()
        );
        let k1 = self.shared.key(&format!("t:{t}"));
        let k2 = self.shared.key(&format!("tc:{sub_d}"));
        let k3 = self.shared.key("ta");
        let _: i64 = self
            .shared
            .eval(
                &self.issue,
                &[&k1, &k2, &k3],
                &[
                    b"-",
                    self.limits.ttl.as_millis().to_string().as_bytes(),
                    super::tickets::MAX_TICKETS_PER_SUB.to_string().as_bytes(),
                    self.limits.max_tickets.max(1).to_string().as_bytes(),
                    value.as_bytes(),
                    t.as_bytes(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The holder of `ticket` for `server`; `take` uses the ticket up.
    pub(crate) async fn read(
        &self,
        ticket: &str,
        server: &str,
        take: bool,
    ) -> Result<Option<super::tickets::Holder>, Unavailable> {
        let t = digest(&[b"ticket", ticket.as_bytes()]);
        let k = self.shared.key(&format!("t:{t}"));
        let mut conn = self.shared.conn();
        let r: redis::RedisResult<Option<String>> = if take {
            conn.get_del(&k).await
        } else {
            conn.get(&k).await
        };
        let Some(value) = self.shared.note(r)? else {
            return Ok(None);
        };
        let mut parts = value.splitn(3, ' ');
        let (Some(_), Some(server_d), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        if server_d != digest(&[b"server", server.as_bytes()]) {
            return Ok(None);
        }
        let Some((len, rest)) = rest.split_once(':') else {
            return Ok(None);
        };
        let Some(len) = len
            .parse::<usize>()
            .ok()
            .filter(|l| rest.is_char_boundary(*l))
        else {
            return Ok(None);
        };
        let (sub, label) = rest.split_at(len);
        Ok(Some(super::tickets::Holder {
            sub: sub.to_string(),
            label: label.to_string(),
        }))
    }
}

// --------------------------------------------------------------- integrity

/// The integrity document on Redis, mirrored in memory: the catalog reads
/// and writes the mirror (synchronously); [`RedisDocument::sync`] pushes a
/// changed mirror and pulls what another replica saved, before and after
/// each refresh and after an approval.
#[derive(Debug)]
pub(crate) struct RedisDocument {
    shared: Shared,
    state: Mutex<Mirror>,
}

#[derive(Debug, Default)]
struct Mirror {
    text: Option<Vec<u8>>,
    /// Saved here and not yet written to Redis.
    dirty: bool,
}

impl RedisDocument {
    /// The document, loaded from Redis once.
    pub(crate) async fn open(shared: Shared) -> Result<Self, Unavailable> {
        let r: redis::RedisResult<Option<Vec<u8>>> =
            shared.conn().get(shared.key("integrity")).await;
        let text = shared.note(r)?;
        Ok(Self {
            shared,
            state: Mutex::new(Mirror { text, dirty: false }),
        })
    }

    pub(crate) fn place(&self) -> String {
        format!(
            "{} (key {}integrity)",
            self.shared.place(),
            self.shared.prefix()
        )
    }

    pub(crate) fn load(&self) -> Option<Vec<u8>> {
        lock(&self.state).text.clone()
    }

    pub(crate) fn save(&self, text: &[u8]) {
        let mut m = lock(&self.state);
        m.text = Some(text.to_vec());
        m.dirty = true;
    }

    /// Writes the mirror if it changed here, then reads the document;
    /// true when what was read differs from the mirror (another replica
    /// saved it).
    pub(crate) async fn sync(&self) -> Result<bool, Unavailable> {
        let key = self.shared.key("integrity");
        let pending = {
            let m = lock(&self.state);
            m.dirty.then(|| m.text.clone()).flatten()
        };
        if let Some(text) = pending {
            let r: redis::RedisResult<()> = self.shared.conn().set(&key, &text).await;
            self.shared.note(r)?;
            let mut m = lock(&self.state);
            if m.text.as_deref() == Some(&text[..]) {
                m.dirty = false;
            }
            return Ok(false);
        }
        let r: redis::RedisResult<Option<Vec<u8>>> = self.shared.conn().get(&key).await;
        let text = self.shared.note(r)?;
        let mut m = lock(&self.state);
        if m.dirty || m.text == text {
            return Ok(false);
        }
        m.text = text;
        Ok(true)
    }
}

// ---------------------------------------------------------------- changes

/// Relays catalog changes between replicas: each change this replica
/// sees (`local`) is published on the channel `changed`; each change
/// another replica publishes runs `on_remote` (a refresh here, which finds
/// the change and notifies this replica's streams). After a lost
/// subscription is restored `on_remote` runs once too, for what was
/// missed meanwhile. The tasks end when dropped (abort them).
pub(crate) fn relay_changes<T, F, Fut>(
    shared: Shared,
    mut local: tokio::sync::broadcast::Receiver<T>,
    on_remote: F,
) -> [tokio::task::JoinHandle<()>; 2]
where
    T: Clone + Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let me: Arc<str> = Arc::from(hex(&uuid::Uuid::new_v4().into_bytes()));
    let publisher = {
        let shared = shared.clone();
        let me = me.clone();
        tokio::spawn(async move {
            loop {
                match local.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = shared.publish_changed(&me).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    let subscriber = tokio::spawn(async move {
        use futures::StreamExt as _;
        let channel = shared.key(CHANGED_CHANNEL);
        let mut lost = false;
        loop {
            let mut pubsub = match shared.pubsub().await {
                Ok(p) => p,
                Err(_) => {
                    lost = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if pubsub.subscribe(&channel).await.is_err() {
                lost = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if lost {
                shared.revoked(None);
                on_remote().await;
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let from: String = msg.get_payload().unwrap_or_default();
                if let Some(member) = from.strip_prefix(super::redis_facade::REVOKED_MESSAGE) {
                    shared.revoked(Some(member));
                } else if *from != *me {
                    on_remote().await;
                }
            }
            lost = true;
        }
    });
    [publisher, subscriber]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        redis_server::RedisServer,
        store::{sessions::SessionLimits, tickets::TicketLimits},
    };

    pub(crate) async fn shared(server: &RedisServer) -> Shared {
        Shared::open(&server.url(), &server.url(), "t:")
            .await
            .unwrap()
    }

    /// A replica that dies holding stream slots never releases them; its
    /// leases end [`STREAM_LEASE`] after its last renewal. The scores
    /// below stand for those times, so the test does not wait them out.
    #[tokio::test]
    async fn a_dead_replicas_stream_slots_free_when_their_leases_end() {
        let server = RedisServer::start_new();
        let streams = RedisStreams::new(shared(&server).await, 2, OnFailure::Closed);
        let who = "0123abcd";
        let now = now_ms();
        let lease = STREAM_LEASE.as_millis() as u64;
        // One lease of the dead replica ran out a moment ago, the other
        // was renewed just before it died.
        server.command(&format!(
            "ZADD t:st:{who} {} dead-expired {} dead-renewed",
            now - 1,
            now + lease - 1000
        ));
        let mine = streams.acquire(who).await.unwrap();
        assert!(mine.is_some(), "the ended lease no longer counts");
        assert!(
            streams.acquire(who).await.is_err(),
            "the unexpired lease and the new slot fill the cap of 2"
        );
        let held = server.command(&format!("ZRANGE t:st:{who} 0 -1"));
        assert!(!held.contains("dead-expired"), "{held}");
        assert!(held.contains("dead-renewed"), "{held}");
        // Once that lease ends too, its slot is free again.
        server.command(&format!("ZADD t:st:{who} XX {} dead-renewed", now_ms() - 1));
        let again = streams.acquire(who).await.unwrap();
        assert!(again.is_some(), "both leases of the dead replica ended");
        drop((mine, again));
    }

    #[tokio::test]
    async fn tickets_are_shared_single_use_and_stored_as_digests() {
        let server = RedisServer::start_new();
        let limits = TicketLimits::default();
        let a = RedisTickets::new(shared(&server).await, limits);
        let b = RedisTickets::new(shared(&server).await, limits);
        let ticket = "0123456789abcdef0123456789abcdef";
        a.issue(ticket, "ana", "Ana (ana@example.com)", "tracker")
            .await
            .unwrap();
        let keys = server.command("KEYS *");
        assert!(!keys.contains(ticket), "{keys}");
        let holder = b.read(ticket, "tracker", false).await.unwrap().unwrap();
        assert_eq!(holder.sub, "ana");
        assert_eq!(holder.label, "Ana (ana@example.com)");
        assert!(b.read(ticket, "other", false).await.unwrap().is_none());
        assert!(b.read(ticket, "tracker", true).await.unwrap().is_some());
        assert!(
            a.read(ticket, "tracker", true).await.unwrap().is_none(),
            "used up"
        );
        // The per-caller cap evicts the oldest.
        for i in 0..=super::super::tickets::MAX_TICKETS_PER_SUB {
            a.issue(&format!("{i:032x}"), "bo", "Bo", "tracker")
                .await
                .unwrap();
        }
        assert!(
            a.read(&format!("{:032x}", 0), "tracker", false)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            a.read(&format!("{:032x}", 1), "tracker", false)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn sessions_are_capped_in_total_least_recently_used_first() {
        let server = RedisServer::start_new();
        let limits = SessionLimits {
            max_sessions: 3,
            max_per_caller: 10,
            max_bytes: usize::MAX,
        };
        let s = RedisSessions::new(shared(&server).await, limits);
        let rev = crate::protocol::Revision::V2025_11_25;
        let ids: Vec<String> = (0..3).map(|i| format!("{i:032x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            s.create(id, &format!("caller-{i}"), rev).await.unwrap();
        }
        // The first is used again: the second is now the idlest.
        assert_eq!(s.get(&ids[0], "caller-0").await.unwrap(), Some(rev));
        s.create(&format!("{:032x}", 99), "caller-9", rev)
            .await
            .unwrap();
        assert_eq!(s.get(&ids[1], "caller-1").await.unwrap(), None);
        assert_eq!(s.get(&ids[0], "caller-0").await.unwrap(), Some(rev));
        assert_eq!(
            s.get(&ids[0], "caller-2").await.unwrap(),
            None,
            "not its owner"
        );
        assert!(!s.end(&ids[0], "caller-2").await.unwrap());
        assert!(s.end(&ids[0], "caller-0").await.unwrap());
        assert_eq!(s.get(&ids[0], "caller-0").await.unwrap(), None);
        let card = server.command("ZCARD t:sa");
        assert_eq!(card.trim(), ":2", "{card}");
    }

    fn rate(shared: Shared, per_minute: u32, burst: u32) -> RedisRate {
        RedisRate::new(
            shared,
            per_minute,
            burst,
            OnFailure::Open,
            crate::store::ratelimit::RateLimiter::new(per_minute, burst, 100),
        )
    }

    fn evalsha_calls(server: &RedisServer) -> u64 {
        server
            .command("INFO commandstats")
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|l| l.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_steady_caller_charges_cells_ahead_and_two_replicas_share_one_burst() {
        let server = RedisServer::start_new();
        // A large budget: chunks grow to 8 (burst / 8), so 200 calls take
        // far fewer round trips.
        let big = rate(shared(&server).await, 1_000_000, 64);
        for _ in 0..200 {
            big.charge_subject("ana").await.unwrap();
        }
        let trips = evalsha_calls(&server);
        assert!(trips < 60, "{trips} round trips for 200 calls");

        // 60 a minute, burst 16 (chunks of 2): two replicas alternating
        // admit the burst once, give or take one chunk each.
        let a = rate(shared(&server).await, 60, 16);
        let b = rate(shared(&server).await, 60, 16);
        let mut admitted = 0;
        for i in 0..60 {
            let r = if i % 2 == 0 { &a } else { &b };
            if r.charge_subject("bo").await.is_ok() {
                admitted += 1;
            }
        }
        assert!((14..=18).contains(&admitted), "admitted {admitted}");
    }
}

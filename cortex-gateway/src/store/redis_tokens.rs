//! Token caches on Redis, shared by replicas: introspection answers
//! (`ti:`), exchanged tokens (`tx:`) and gateway-signed assertions
//! (`tg:`), each under the [`TokenKey`] digest of the caller's token and
//! what the answer is for, never the token.
//!
//! Exchanged tokens and assertions are bearer credentials for a backend,
//! so their values are sealed with AES-256-GCM under a key derived from
//! the vault's first key (`CORTEX_VAULT_KEY`), bound to the cache and the
//! key digest: a dump of Redis holds no usable token, and a value moved to
//! another key does not open. Without a vault key those two caches stay in
//! each replica's memory. Introspection answers are one word and are kept
//! as they are.
//!
//! Each cache has the bounds it has in memory (count and bytes), kept on
//! Redis by the shelf script of `redis_facade.rs`: at a bound the entry
//! closest to expiry goes. A replica keeps what it read or wrote for at
//! most [`LOCAL_TOKEN_TTL`], so a steady caller costs one round trip per
//! that time, not one per request.

use std::{borrow::Cow, time::Duration};

use redis::Script;
use zeroize::Zeroizing;

use super::{
    redis::{Shared, hex, now_ms},
    redis_facade::{Kind, PUT, Sealer, put_on_shelf, script},
    tokens::{MemoryTokenCache, TokenCacheLimits, TokenKey},
};

/// The HKDF label of the key that seals cached tokens.
pub(crate) const SEAL_LABEL: &[u8] = b"cortex-tokens/redis/v1";
/// The introspection answers' kind.
pub(crate) const INTROSPECTION: &str = "ti";
/// The exchanged tokens' kind.
pub(crate) const EXCHANGED: &str = "tx";
/// The gateway-signed assertions' kind.
pub(crate) const ASSERTIONS: &str = "tg";
/// How long a value read from Redis is kept locally at most.
const LOCAL_TOKEN_TTL: Duration = Duration::from_secs(5);

/// One token cache on Redis, with a short-lived copy in this process.
#[derive(Debug)]
pub(crate) struct RedisTokenCache {
    shared: Shared,
    kind: Kind,
    /// Seals the values; `None`: kept as they are.
    sealer: Option<Sealer>,
    put: Script,
    /// Answers this process saw lately: a hit costs no round trip.
    local: MemoryTokenCache,
}

impl RedisTokenCache {
    /// The cache `name` under `shared` within `limits`, its values sealed
    /// with `seal_key` when given.
    pub(crate) fn new(
        shared: Shared,
        name: &'static str,
        limits: TokenCacheLimits,
        seal_key: Option<&[u8; 32]>,
    ) -> Self {
        Self {
            kind: Kind::new(&shared, name, limits.max_entries, limits.max_bytes),
            sealer: seal_key.map(Sealer::new),
            put: script(PUT),
            local: MemoryTokenCache::new(limits),
            shared,
        }
    }

    pub(crate) async fn get_map<T>(
        &self,
        key: &TokenKey,
        read: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let now = std::time::Instant::now();
        if let Some(v) = self
            .local
            .get_map(key, now, |v| Zeroizing::new(v.to_owned()))
        {
            return Some(read(&v));
        }
        let member = hex(key.bytes());
        let k = self.kind.key(&member);
        let mut conn = self.shared.conn();
        let r: redis::RedisResult<(Option<Vec<u8>>, i64)> =
            redis::pipe().get(&k).pttl(&k).query_async(&mut conn).await;
        let (raw, ttl) = self.shared.note(r).ok()?;
        let raw = raw?;
        let value: Zeroizing<String> = Zeroizing::new(match &self.sealer {
            Some(s) => s.open::<String>(self.kind.name, &member, &raw)?,
            None => String::from_utf8(raw).ok()?,
        });
        if ttl > 0 {
            let ttl = Duration::from_millis(ttl as u64).min(LOCAL_TOKEN_TTL);
            self.local.put(*key, &value, ttl, now);
        }
        Some(read(&value))
    }

    pub(crate) async fn put(&self, key: TokenKey, value: &str, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.local.put(
            key,
            value,
            ttl.min(LOCAL_TOKEN_TTL),
            std::time::Instant::now(),
        );
        let member = hex(key.bytes());
        let stored: Cow<'_, [u8]> = match &self.sealer {
            Some(s) => match s.seal(self.kind.name, &member, &value) {
                Ok(sealed) => Cow::Owned(sealed),
                Err(_) => return,
            },
            None => Cow::Borrowed(value.as_bytes()),
        };
        let expiry = now_ms().saturating_add(ttl.as_millis() as u64);
        // A lost Redis is noted by `eval`; the local copy still serves.
        let _ = put_on_shelf(
            &self.shared,
            &self.put,
            &self.kind,
            &member,
            &stored,
            expiry,
            stored.len(),
            None,
            None,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        redis_server::RedisServer,
        store::{redis::tests::shared, tokens::INTROSPECTION_CACHE_LIMITS},
    };

    #[tokio::test]
    async fn introspection_answers_are_shared_under_digests_for_their_ttl() {
        let server = RedisServer::start_new();
        let a = RedisTokenCache::new(
            shared(&server).await,
            INTROSPECTION,
            INTROSPECTION_CACHE_LIMITS,
            None,
        );
        let b = RedisTokenCache::new(
            shared(&server).await,
            INTROSPECTION,
            INTROSPECTION_CACHE_LIMITS,
            None,
        );
        let key = TokenKey::new("", "secret.token.value");
        a.put(key, "active", Duration::from_secs(30)).await;
        assert_eq!(
            b.get_map(&key, str::to_owned).await.as_deref(),
            Some("active")
        );
        assert_eq!(
            b.get_map(&TokenKey::new("", "other"), str::to_owned).await,
            None
        );
        let keys = server.command("KEYS *");
        assert!(!keys.contains("secret.token.value"), "{keys}");
        assert!(
            keys.contains(&format!("t:ti:{}", hex(key.bytes()))),
            "{keys}"
        );
        let ttl = server.command(&format!("PTTL t:ti:{}", hex(key.bytes())));
        let ms: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
        assert!((1..=30_000).contains(&ms), "{ttl}");
    }

    #[tokio::test]
    async fn sealed_tokens_are_shared_and_never_stored_in_plaintext() {
        let server = RedisServer::start_new();
        let seal = [7u8; 32];
        let limits = crate::store::tokens::EXCHANGE_CACHE_LIMITS;
        let a = RedisTokenCache::new(shared(&server).await, EXCHANGED, limits, Some(&seal));
        let b = RedisTokenCache::new(shared(&server).await, EXCHANGED, limits, Some(&seal));
        let key = TokenKey::new("crm", "caller.token.value");
        let exchanged = "eyJexchanged.token.for-crm";
        a.put(key, exchanged, Duration::from_secs(60)).await;
        assert_eq!(
            b.get_map(&key, str::to_owned).await.as_deref(),
            Some(exchanged)
        );
        let dump = server.dump();
        assert!(
            !dump.contains("exchanged.token") && !dump.contains("caller.token"),
            "{dump}"
        );
        // Another key opens nothing, nor does the value moved under another
        // key's name.
        let other =
            RedisTokenCache::new(shared(&server).await, EXCHANGED, limits, Some(&[8u8; 32]));
        assert_eq!(other.get_map(&key, str::to_owned).await, None);
        let moved = TokenKey::new("erp", "caller.token.value");
        server.command(&format!(
            "COPY t:tx:{} t:tx:{}",
            hex(key.bytes()),
            hex(moved.bytes())
        ));
        assert_eq!(b.get_map(&moved, str::to_owned).await, None);
    }

    #[tokio::test]
    async fn a_flood_of_tokens_stays_within_the_count_and_byte_bounds() {
        let server = RedisServer::start_new();
        let limits = TokenCacheLimits {
            max_entries: 20,
            max_bytes: 64 * 1024,
        };
        let cache =
            RedisTokenCache::new(shared(&server).await, ASSERTIONS, limits, Some(&[1u8; 32]));
        let big = "x".repeat(4096);
        for i in 0..200 {
            cache
                .put(
                    TokenKey::new("crm", &format!("token-{i}")),
                    &big,
                    Duration::from_secs(60),
                )
                .await;
        }
        let count: usize = server
            .command("ZCARD t:tgi")
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap();
        let bytes: usize = server
            .command("GET t:tgb")
            .trim()
            .trim_start_matches(['$', ':'])
            .lines()
            .last()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(count <= 20, "{count} entries");
        assert!(bytes <= 64 * 1024, "{bytes} bytes");
        let stored = server
            .command("KEYS t:tg:*")
            .lines()
            .filter(|l| l.contains("t:tg:"))
            .count();
        assert_eq!(stored, count, "every entry is on the index");
        // The newest is kept.
        assert!(
            cache
                .get_map(&TokenKey::new("crm", "token-199"), |v| v.len())
                .await
                .is_some()
        );
    }
}

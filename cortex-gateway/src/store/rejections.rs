//! The status page's rejections: the quarantined tools whose pending
//! definition an operator rejected, each with the digest of that
//! definition (a new definition is a new review). In memory, or on Redis
//! (the hash `rejected`, kept [`REJECTION_TTL`] after the last change) so a
//! reject on one replica shows on every replica's page.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use redis::{AsyncCommands as _, Script};

use super::redis::{Shared, Unavailable};
use crate::sync::lock;

/// Most rejections remembered (never more than the open quarantines).
pub(crate) const MAX_REJECTED: usize = 1024;
/// How long Redis keeps the rejections after the last one changed.
pub(crate) const REJECTION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The longest tool name remembered (public names are far shorter).
const MAX_TOOL_BYTES: usize = 512;

/// Adds a rejection unless the cap is reached. KEYS: the hash. ARGV:
/// tool, digest, cap, lifetime (ms). Returns 1 when kept.
const REJECT: &str = r"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// The rejections, wherever they are kept.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per gateway, behind an Arc")]
pub(crate) enum Rejections {
    /// In this process's memory.
    Memory(Mutex<HashMap<String, String>>),
    /// On Redis, shared by the replicas.
    Redis {
        /// The store.
        shared: Shared,
        /// The add script.
        reject: Script,
    },
}

impl Rejections {
    /// Rejections in memory.
    pub(crate) fn in_memory() -> Self {
        Self::Memory(Mutex::default())
    }

    /// Rejections on Redis.
    pub(crate) fn on_redis(shared: Shared) -> Self {
        Self::Redis {
            shared,
            reject: Script::new(REJECT),
        }
    }

    /// The rejections still current (tool -> digest) given the open
    /// quarantines' pending `digests`; the others are forgotten.
    pub(crate) async fn current(
        &self,
        digests: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, Unavailable> {
        let stale = |tool: &String, digest: &String| digests.get(tool) != Some(digest);
        match self {
            Self::Memory(m) => {
                let mut rejected = lock(m);
                rejected.retain(|t, d| !stale(t, d));
                Ok(rejected.clone())
            }
            Self::Redis { shared, .. } => {
                let key = shared.key("rejected");
                let r: redis::RedisResult<HashMap<String, String>> =
                    shared.conn().hgetall(&key).await;
                let mut all = shared.note(r)?;
                let gone: Vec<String> = all
                    .iter()
                    .filter(|(t, d)| stale(t, d))
                    .map(|(t, _)| t.clone())
                    .collect();
                if !gone.is_empty() {
                    let r: redis::RedisResult<i64> = shared.conn().hdel(&key, &gone).await;
                    shared.note(r)?;
                    all.retain(|t, _| !gone.contains(t));
                }
                Ok(all)
            }
        }
    }

    /// Rejects `tool`'s pending definition `digest`; false when
    /// [`MAX_REJECTED`] rejections are open already.
    pub(crate) async fn reject(&self, tool: &str, digest: &str) -> Result<bool, Unavailable> {
        if tool.len() > MAX_TOOL_BYTES {
            return Ok(false);
        }
        match self {
            Self::Memory(m) => {
                let mut rejected = lock(m);
                if rejected.len() >= MAX_REJECTED && !rejected.contains_key(tool) {
                    return Ok(false);
                }
                rejected.insert(tool.to_string(), digest.to_string());
                Ok(true)
            }
            Self::Redis { shared, reject } => {
                let key = shared.key("rejected");
                let n: i64 = shared
                    .eval(
                        reject,
                        &[&key],
                        &[
                            tool.as_bytes(),
                            digest.as_bytes(),
                            MAX_REJECTED.to_string().as_bytes(),
                            REJECTION_TTL.as_millis().to_string().as_bytes(),
                        ],
                    )
                    .await?;
                Ok(n == 1)
            }
        }
    }

    /// Forgets the rejection of `tool`.
    pub(crate) async fn reconsider(&self, tool: &str) -> Result<(), Unavailable> {
        match self {
            Self::Memory(m) => {
                lock(m).remove(tool);
                Ok(())
            }
            Self::Redis { shared, .. } => {
                let r: redis::RedisResult<i64> =
                    shared.conn().hdel(shared.key("rejected"), tool).await;
                shared.note(r).map(drop)
            }
        }
    }
}

//! The gateway's feedback tickets on Redis: a need reported on one replica
//! is deduplicated on every other, and each reporter lists the tickets
//! they took part in wherever their request lands.
//!
//! Keys (after the store's prefix; `<d>` a hex SHA-256 digest):
//! - `fbt:<id>`: a ticket (hash: `j` the report as JSON, `a` the digest of
//!   its author, `n` reports, `rc` and `r0`… the other reporters, `d:<d>`
//!   one per reporter), kept [`TICKET_TTL`];
//! - `fbf:<d(fingerprint)>`: the ticket a need's fingerprint names, for
//!   the dedup window (24 h);
//! - `fba:<d(sub)>`, `fbj:<d(sub)>`: the tickets a caller authored and
//!   joined, sorted sets by time;
//! - `fbi`, `fbs`, `fbb`: all tickets by creation time, each one's bytes,
//!   and the total, for the total bounds.
//!
//! Recording is one Lua script: the dedup check, the per-author bounds
//! (count and bytes: the author's oldest go first), the total bounds (the
//! oldest of all go) and the new ticket happen atomically.

use std::time::Duration;

use cortex_backend::contract::Severity;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{
    feedback::{FeedbackLimits, MAX_REPORTERS, NewTicket, Recorded, StoredTicket},
    redis::{Shared, Unavailable, digest, hex},
};

/// How long a ticket is kept on Redis after it was opened.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Records a report. KEYS: fingerprint, author's tickets, reporter's
/// joined tickets, all tickets, sizes, total bytes. ARGV: ticket prefix,
/// authored prefix, new id, report JSON, size, reporter, reporter digest,
/// now (ms), dedup window (ms), ticket lifetime (ms), per-author count,
/// per-author bytes, total count, total bytes, reporters per ticket.
/// Returns {id, 1 when deduplicated}.
const RECORD: &str = r"
local tp, now, ttl = ARGV[1], tonumber(ARGV[8]), tonumber(ARGV[10])
local function drop(id)
  local tk = tp .. id
  local a = redis.call('HGET', tk, 'a')
  redis.call('DEL', tk)
  redis.call('ZREM', KEYS[4], id)
  if a then redis.call('ZREM', ARGV[2] .. a, id) end
  local b = redis.call('HGET', KEYS[5], id)
  if b then
    redis.call('HDEL', KEYS[5], id)
    redis.call('DECRBY', KEYS[6], b)
  end
end
local old = redis.call('GET', KEYS[1])
if old and redis.call('EXISTS', tp .. old) == 1 then
  local tk = tp .. old
  redis.call('HINCRBY', tk, 'n', 1)
  if redis.call('HGET', tk, 'a') ~= ARGV[7] and redis.call('HEXISTS', tk, 'd:' .. ARGV[7]) == 0 then
    local rc = tonumber(redis.call('HGET', tk, 'rc') or '0')
    if rc < tonumber(ARGV[15]) then
      redis.call('HSET', tk, 'd:' .. ARGV[7], '1', 'r' .. rc, ARGV[6], 'rc', rc + 1)
      redis.call('HINCRBY', KEYS[5], old, #ARGV[6])
      redis.call('INCRBY', KEYS[6], #ARGV[6])
      redis.call('ZADD', KEYS[3], now, old)
      redis.call('PEXPIRE', KEYS[3], ttl)
      while redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[11]) do redis.call('ZPOPMIN', KEYS[3]) end
    end
  end
  return {old, 1}
end
local oldest = string.format('%.0f', now - ttl)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', oldest, 'LIMIT', 0, 64)) do drop(id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', oldest)
local size = tonumber(ARGV[5])
while true do
  local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
  if #ids == 0 then break end
  local used = 0
  for _, b in ipairs(redis.call('HMGET', KEYS[5], unpack(ids))) do used = used + (tonumber(b) or 0) end
  if #ids < tonumber(ARGV[11]) and used + size <= tonumber(ARGV[12]) then break end
  drop(ids[1])
  redis.call('ZREM', KEYS[2], ids[1])
end
while redis.call('ZCARD', KEYS[4]) > 0 and (redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[13])
    or tonumber(redis.call('GET', KEYS[6]) or '0') + size > tonumber(ARGV[14])) do
  drop(redis.call('ZRANGE', KEYS[4], 0, 0)[1])
end
local tk = tp .. ARGV[3]
redis.call('HSET', tk, 'j', ARGV[4], 'a', ARGV[7], 'n', 1, 'rc', 0)
redis.call('PEXPIRE', tk, ttl)
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[9])
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[4], now, ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], size)
redis.call('INCRBY', KEYS[6], size)
for _, k in ipairs({KEYS[4], KEYS[5], KEYS[6]}) do redis.call('PEXPIRE', k, ttl) end
return {ARGV[3], 0}
";

/// A caller's tickets, newest first. KEYS: authored, joined. ARGV: ticket
/// prefix, limit. Returns each ticket's hash (flat field, value pairs).
const LIST: &str = r"
local limit = tonumber(ARGV[2])
local ids = {}
for _, k in ipairs({KEYS[1], KEYS[2]}) do
  local r = redis.call('ZREVRANGE', k, 0, limit - 1, 'WITHSCORES')
  for i = 1, #r, 2 do ids[#ids + 1] = {r[i], tonumber(r[i + 1])} end
end
table.sort(ids, function(a, b) return a[2] > b[2] end)
local out = {}
for _, e in ipairs(ids) do
  if #out >= limit then break end
  local h = redis.call('HGETALL', ARGV[1] .. e[1])
  if #h > 0 then out[#out + 1] = h end
end
return out
";

/// A ticket's report as stored (`j`).
#[derive(Serialize, Deserialize)]
struct Report {
    id: String,
    created: u64,
    backend: Option<String>,
    reporter: String,
    severity: Severity,
    what: String,
    intent: String,
    tool: Option<String>,
    shape: Option<String>,
}

/// The tickets on Redis.
#[derive(Debug)]
pub(crate) struct RedisFeedback {
    shared: Shared,
    limits: FeedbackLimits,
    record: Script,
    list: Script,
}

impl RedisFeedback {
    pub(crate) fn new(shared: Shared, limits: FeedbackLimits) -> Self {
        Self {
            shared,
            limits,
            record: Script::new(RECORD),
            list: Script::new(LIST),
        }
    }

    fn sub_digest(sub: &str) -> String {
        digest(&[b"sub", sub.as_bytes()])
    }

    pub(crate) async fn record(&self, ticket: NewTicket) -> Result<Recorded, Unavailable> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!("cx-{:016x}", uuid::Uuid::new_v4().as_u128() as u64);
        let size = ticket.bytes();
        let reporter = Self::sub_digest(&ticket.reporter);
        let report = Report {
            id: id.clone(),
            created: now.as_secs(),
            backend: ticket.backend.clone(),
            reporter: ticket.reporter.clone(),
            severity: ticket.severity,
            what: ticket.what_i_wanted.clone(),
            intent: ticket.user_intent.clone(),
            tool: ticket.context_tool.clone(),
            shape: ticket.suggested_shape.clone(),
        };
        let json = serde_json::to_vec(&report)
            .map_err(|e| Unavailable(format!("a ticket cannot be encoded: {e}")))?;
        let keys = [
            self.shared
                .key(&format!("fbf:{}", hex(&ticket.fingerprint()))),
            self.shared.key(&format!("fba:{reporter}")),
            self.shared.key(&format!("fbj:{reporter}")),
            self.shared.key("fbi"),
            self.shared.key("fbs"),
            self.shared.key("fbb"),
        ];
        let (ticket_prefix, authored_prefix) = (self.shared.key("fbt:"), self.shared.key("fba:"));
        let nums = [
            size.to_string(),
            ticket.reporter.clone(),
            reporter,
            now.as_millis().to_string(),
            self.limits.dedup_window.as_millis().max(1).to_string(),
            TICKET_TTL.as_millis().to_string(),
            self.limits.per_caller_tickets.max(1).to_string(),
            self.limits.per_caller_bytes.to_string(),
            self.limits.max_tickets.max(1).to_string(),
            self.limits.max_bytes.to_string(),
            MAX_REPORTERS.to_string(),
        ];
        let mut args: Vec<&[u8]> = vec![
            ticket_prefix.as_bytes(),
            authored_prefix.as_bytes(),
            id.as_bytes(),
            &json,
        ];
        args.extend(nums.iter().map(String::as_bytes));
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (id, deduplicated): (String, i64) =
            self.shared.eval(&self.record, &key_refs, &args).await?;
        Ok(Recorded {
            id,
            deduplicated: deduplicated == 1,
        })
    }

    pub(crate) async fn list(
        &self,
        sub: &str,
        limit: usize,
    ) -> Result<Vec<StoredTicket>, Unavailable> {
        let d = Self::sub_digest(sub);
        let keys = [
            self.shared.key(&format!("fba:{d}")),
            self.shared.key(&format!("fbj:{d}")),
        ];
        let prefix = self.shared.key("fbt:");
        let limit_text = limit.max(1).to_string();
        let hashes: Vec<Vec<String>> = self
            .shared
            .eval(
                &self.list,
                &[&keys[0], &keys[1]],
                &[prefix.as_bytes(), limit_text.as_bytes()],
            )
            .await?;
        Ok(hashes.into_iter().filter_map(stored).collect())
    }
}

/// A ticket from its hash's flat field, value pairs.
fn stored(flat: Vec<String>) -> Option<StoredTicket> {
    let mut report = None;
    let mut reports = 1;
    let mut reporters: Vec<(usize, String)> = Vec::new();
    let mut pairs = flat.into_iter();
    while let (Some(field), Some(value)) = (pairs.next(), pairs.next()) {
        match field.as_str() {
            "j" => report = serde_json::from_str::<Report>(&value).ok(),
            "n" => reports = value.parse().unwrap_or(1),
            f => {
                if let Some(i) = f.strip_prefix('r').and_then(|i| i.parse().ok()) {
                    reporters.push((i, value));
                }
            }
        }
    }
    let r = report?;
    reporters.sort();
    Some(StoredTicket {
        id: r.id,
        report: NewTicket {
            backend: r.backend,
            reporter: r.reporter,
            severity: r.severity,
            what_i_wanted: r.what,
            user_intent: r.intent,
            context_tool: r.tool,
            suggested_shape: r.shape,
        },
        created_unix: r.created,
        reporters: reporters.into_iter().map(|(_, s)| s).collect(),
        reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::RedisServer;

    async fn tickets(server: &RedisServer, limits: FeedbackLimits) -> RedisFeedback {
        let shared = Shared::open(&server.url(), &server.url(), "t:")
            .await
            .unwrap();
        RedisFeedback::new(shared, limits)
    }

    fn report(sub: &str, what: &str) -> NewTicket {
        NewTicket {
            suggested_shape: Some("{\"name\":\"x\"}".into()),
            ..super::super::feedback::tests::report(sub, what)
        }
    }

    #[tokio::test]
    async fn a_need_reported_on_one_replica_is_one_ticket_on_the_other() {
        let server = RedisServer::start_new();
        let a = tickets(&server, FeedbackLimits::default()).await;
        let b = tickets(&server, FeedbackLimits::default()).await;
        let first = a
            .record(report("alice", "List invoices, by DATE!"))
            .await
            .unwrap();
        let again = b
            .record(report("bob", "list  invoices by date"))
            .await
            .unwrap();
        assert!(!first.deduplicated && again.deduplicated);
        assert_eq!(first.id, again.id);
        b.record(report("bob", "list invoices by date"))
            .await
            .unwrap();
        let listed = b.list("bob", 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        let t = &listed[0];
        assert_eq!(t.id, first.id);
        assert_eq!(t.reports, 3);
        assert_eq!(t.reporters, ["bob"]);
        assert_eq!(t.report.what_i_wanted, "List invoices, by DATE!");
        assert_eq!(
            t.report.suggested_shape.as_deref(),
            Some("{\"name\":\"x\"}")
        );
        assert_eq!(a.list("alice", 10).await.unwrap()[0].id, first.id);
        assert!(a.list("carol", 10).await.unwrap().is_empty());
        // The window is a key's lifetime: gone, the need opens a new one.
        let keys = server.command("KEYS t:fbf:*");
        let fp = keys.lines().find(|l| l.starts_with("t:fbf:")).unwrap();
        server.command(&format!("DEL {fp}"));
        let later = a
            .record(report("carol", "list invoices by date"))
            .await
            .unwrap();
        assert!(!later.deduplicated);
        assert_ne!(later.id, first.id);
    }

    #[tokio::test]
    async fn one_author_and_all_authors_stay_within_their_bounds() {
        let server = RedisServer::start_new();
        let limits = FeedbackLimits {
            max_tickets: 20,
            max_bytes: 40 << 10,
            per_caller_tickets: 5,
            per_caller_bytes: 8 << 10,
            dedup_window: Duration::from_secs(60),
        };
        let f = tickets(&server, limits).await;
        f.record(report("bob", "bob's one need")).await.unwrap();
        for i in 0..60 {
            f.record(report("mallory", &format!("need number {i}")))
                .await
                .unwrap();
        }
        assert_eq!(f.list("mallory", 100).await.unwrap().len(), 5);
        assert_eq!(f.list("bob", 10).await.unwrap().len(), 1);
        let big = "x".repeat(3 << 10);
        for i in 0..10 {
            f.record(report("mallory", &format!("{big} {i}")))
                .await
                .unwrap();
        }
        let kept = f.list("mallory", 100).await.unwrap();
        let bytes: usize = kept.iter().map(|t| t.report.bytes()).sum();
        assert!(bytes <= 8 << 10, "{bytes}");
        for i in 0..100 {
            f.record(report(&format!("user{i}"), &format!("need {i}")))
                .await
                .unwrap();
            let n = server.command("ZCARD t:fbi");
            let n: usize = n.trim().trim_start_matches(':').parse().unwrap();
            let keys = server.command("KEYS t:fbt:*");
            let k = keys.lines().filter(|l| l.starts_with("t:")).count();
            let b = server.command("GET t:fbb");
            let b: usize = b.lines().nth(1).unwrap().parse().unwrap();
            assert!(n <= 20 && k <= 20 && b <= 40 << 10, "{n} {k} {b}");
        }
        assert_eq!(f.list("user99", 1).await.unwrap().len(), 1);
        // The sub is not a key.
        assert!(!server.command("KEYS *").contains("user99"));
    }
}

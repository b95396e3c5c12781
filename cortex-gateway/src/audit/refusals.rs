//! The last refusals, by class, for the operator status page: a ring fed
//! by the audit lines whose outcome is not `ok`, bounded by count and by
//! bytes, so no caller can grow it past [`MAX_ENTRIES`] entries or
//! [`MAX_BYTES`] bytes whatever it sends. An entry holds no identity (no
//! caller hash, no `sub`): the class, the status, the method and the tool.

use std::{collections::VecDeque, sync::Mutex, time::SystemTime};

use super::AuditRecord;

/// Most refusals kept.
pub(crate) const MAX_ENTRIES: usize = 200;
/// Most bytes (entries' text plus their fixed size) kept.
pub(crate) const MAX_BYTES: usize = 64 * 1024;
/// Longest text kept per field (longer text is cut).
const FIELD_CHARS: usize = 96;

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// When the request arrived.
    pub(crate) at: SystemTime,
    /// The error class (`unauthenticated`, `rate_limited`, `quarantined`, ...).
    pub(crate) class: String,
    /// The HTTP status.
    pub(crate) status: u16,
    /// The JSON-RPC method, else the HTTP method and path.
    pub(crate) what: String,
    /// The tool, for `tools/call`.
    pub(crate) tool: Option<String>,
}

impl Refusal {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.class.len()
            + self.what.len()
            + self.tool.as_ref().map_or(0, String::len)
    }
}

fn cut(text: &str) -> String {
    text.chars().take(FIELD_CHARS).collect()
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Refusal>,
    bytes: usize,
}

/// The ring of the last refusals.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    ring: Mutex<Ring>,
}

impl Refusals {
    /// Keeps `r` if its outcome is not `ok` (a refusal, a rejection, an
    /// error): the oldest entries leave to stay within the bounds.
    pub(crate) fn observe(&self, r: &AuditRecord) {
        if r.outcome == "ok" {
            return;
        }
        let what = match &r.method {
            Some(m) => cut(m),
            None => cut(&format!("{} {}", r.http_method, r.path)),
        };
        self.push(Refusal {
            at: r.time.0,
            class: cut(r.error_class.as_deref().unwrap_or(&r.outcome)),
            status: r.status,
            what,
            tool: r.tool.as_deref().map(cut),
        });
    }

    fn push(&self, refusal: Refusal) {
        let mut ring = crate::sync::lock(&self.ring);
        ring.bytes += refusal.bytes();
        ring.entries.push_back(refusal);
        while ring.entries.len() > MAX_ENTRIES || ring.bytes > MAX_BYTES {
            match ring.entries.pop_front() {
                Some(old) => ring.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// The refusals kept, newest first.
    pub(crate) fn recent(&self) -> Vec<Refusal> {
        crate::sync::lock(&self.ring)
            .entries
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// (count, bytes) held.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let ring = crate::sync::lock(&self.ring);
        (ring.entries.len(), ring.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(class: &str, tool: &str) -> AuditRecord {
        AuditRecord {
            outcome: "refused".into(),
            error_class: Some(class.to_string().into()),
            status: 403,
            method: Some("tools/call".into()),
            tool: Some(tool.to_string()),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn the_ring_stays_within_its_count_and_byte_bounds() {
        let ring = Refusals::default();
        for i in 0..10_000 {
            ring.observe(&refused(&"c".repeat(i % 500), &"t".repeat(i % 5000)));
            let (count, bytes) = ring.usage();
            assert!(count <= MAX_ENTRIES, "{count}");
            assert!(bytes <= MAX_BYTES, "{bytes}");
        }
        let (count, _) = ring.usage();
        assert!(count > 0);
        assert!(ring.recent().iter().all(|r| r.class.len() <= FIELD_CHARS));
        assert!(
            ring.recent()
                .iter()
                .all(|r| r.tool.as_ref().is_some_and(|t| t.len() <= FIELD_CHARS))
        );
    }

    #[test]
    fn only_what_was_not_ok_is_kept_newest_first() {
        let ring = Refusals::default();
        ring.observe(&AuditRecord {
            outcome: "ok".into(),
            ..AuditRecord::default()
        });
        ring.observe(&refused("scope", "a"));
        ring.observe(&refused("quarantined", "b"));
        let kept = ring.recent();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].class, "quarantined");
        assert_eq!(kept[1].tool.as_deref(), Some("a"));
    }
}

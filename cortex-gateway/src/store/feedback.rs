//! The agents' feedback tickets (`report_missing_capability`) that the
//! gateway keeps itself: those about the gateway, or about a backend that
//! does not keep its own.
//!
//! A ticket is found again by its fingerprint, a SHA-256 digest of the
//! backend it concerns and its wording normalised (lower case, words of
//! letters and digits, one space between): the same need reported again
//! within the dedup window returns the first ticket, and the new reporter
//! is added to it (a bounded number of reporters per ticket). Tickets are
//! bounded by count and bytes, in total and per author; a new ticket beyond
//! a bound evicts its author's oldest (per-author bounds) or the oldest of
//! all (total bounds).
//!
//! On Redis (`redis_feedback.rs`) the replicas share the tickets, the
//! dedup window and the bounds.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::digest::{SHA256, digest};
use cortex_backend::contract::Severity;

use super::{redis::Unavailable, redis_feedback::RedisFeedback};
use crate::sync::lock;

/// How long a reported need is folded into its first ticket.
pub(crate) const DEDUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Reporters one ticket remembers besides its author (later ones are
/// counted, not named).
pub(crate) const MAX_REPORTERS: usize = 16;
/// What one ticket costs besides its texts: the map slots, the digest, the
/// times, rounded up.
pub(crate) const TICKET_OVERHEAD_BYTES: usize = 256;

/// The bounds of the ticket store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeedbackLimits {
    /// Tickets kept in total.
    pub(crate) max_tickets: usize,
    /// Bytes of all tickets.
    pub(crate) max_bytes: usize,
    /// Tickets one author keeps.
    pub(crate) per_caller_tickets: usize,
    /// Bytes of one author's tickets.
    pub(crate) per_caller_bytes: usize,
    /// How long a need is deduplicated.
    pub(crate) dedup_window: Duration,
}

impl Default for FeedbackLimits {
    fn default() -> Self {
        Self {
            max_tickets: 10_000,
            max_bytes: 16 << 20,
            per_caller_tickets: 100,
            per_caller_bytes: 512 << 10,
            dedup_window: DEDUP_WINDOW,
        }
    }
}

/// A report, checked by the builtin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewTicket {
    /// The backend it concerns; `None`: the gateway or unknown.
    pub(crate) backend: Option<String>,
    /// The reporter's `sub`.
    pub(crate) reporter: String,
    /// How much it hurts.
    pub(crate) severity: Severity,
    /// What the agent wanted.
    pub(crate) what_i_wanted: String,
    /// What the user was after.
    pub(crate) user_intent: String,
    /// The tool in use, if any.
    pub(crate) context_tool: Option<String>,
    /// A suggested tool shape (JSON text).
    pub(crate) suggested_shape: Option<String>,
}

impl NewTicket {
    pub(crate) fn bytes(&self) -> usize {
        TICKET_OVERHEAD_BYTES
            + self.backend.as_ref().map_or(0, String::len)
            + self.reporter.len()
            + self.what_i_wanted.len()
            + self.user_intent.len()
            + self.context_tool.as_ref().map_or(0, String::len)
            + self.suggested_shape.as_ref().map_or(0, String::len)
    }

    /// The dedup fingerprint: backend and normalised wording.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut text = self.backend.clone().unwrap_or_default();
        text.push('\n');
        text.push_str(&normalise(&self.what_i_wanted));
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, text.as_bytes()).as_ref());
        out
    }
}

/// `text` in lower case, its words of letters and digits joined by one
/// space: "List  invoices, by DATE!" and "list invoices by date" are one
/// need.
pub(crate) fn normalise(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A kept ticket, as listed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredTicket {
    /// Its id (`cx-…`).
    pub(crate) id: String,
    /// The report.
    pub(crate) report: NewTicket,
    /// Unix seconds of its creation.
    pub(crate) created_unix: u64,
    /// Other reporters' `sub`s (at most [`MAX_REPORTERS`]).
    pub(crate) reporters: Vec<String>,
    /// How many reported it (the author included).
    pub(crate) reports: u64,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The ticket's id (the earlier one when deduplicated).
    pub(crate) id: String,
    /// Whether an earlier ticket already covered it.
    pub(crate) deduplicated: bool,
}

/// The feedback tickets, wherever they are kept.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per gateway, behind an Arc")]
pub(crate) enum FeedbackTickets {
    /// In this process's memory.
    Memory(MemoryFeedback),
    /// On Redis, shared by the replicas.
    Redis(RedisFeedback),
}

impl FeedbackTickets {
    /// Records `ticket`, or adds its reporter to the ticket that covers it.
    pub(crate) async fn record(&self, ticket: NewTicket) -> Result<Recorded, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.record(ticket, Instant::now())),
            Self::Redis(r) => r.record(ticket).await,
        }
    }

    /// The tickets `sub` reported (authored or joined), newest first, at
    /// most `limit`.
    pub(crate) async fn list(
        &self,
        sub: &str,
        limit: usize,
    ) -> Result<Vec<StoredTicket>, Unavailable> {
        match self {
            Self::Memory(m) => Ok(m.list(sub, limit)),
            Self::Redis(r) => r.list(sub, limit).await,
        }
    }
}

#[derive(Debug)]
struct Entry {
    ticket: StoredTicket,
    fingerprint: [u8; 32],
    at: Instant,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// By creation order.
    entries: BTreeMap<u64, Entry>,
    /// Fingerprint to sequence number.
    by_fingerprint: HashMap<[u8; 32], u64>,
    /// Per author: tickets and bytes.
    authors: HashMap<String, (usize, usize)>,
    bytes: usize,
    next: u64,
}

impl Inner {
    fn remove(&mut self, seq: u64) {
        let Some(entry) = self.entries.remove(&seq) else {
            return;
        };
        if self.by_fingerprint.get(&entry.fingerprint) == Some(&seq) {
            self.by_fingerprint.remove(&entry.fingerprint);
        }
        self.bytes -= entry.bytes;
        let author = &entry.ticket.report.reporter;
        if let Some((count, bytes)) = self.authors.get_mut(author) {
            *count -= 1;
            *bytes -= entry.bytes;
            if *count == 0 {
                self.authors.remove(author);
            }
        }
    }
}

/// The tickets in this process's memory.
#[derive(Debug)]
pub(crate) struct MemoryFeedback {
    limits: FeedbackLimits,
    inner: Mutex<Inner>,
}

impl MemoryFeedback {
    /// An empty store with these bounds.
    pub(crate) fn new(limits: FeedbackLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Tickets and bytes held.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.entries.len(), inner.bytes)
    }

    fn record(&self, ticket: NewTicket, now: Instant) -> Recorded {
        let fingerprint = ticket.fingerprint();
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        if let Some(&seq) = inner.by_fingerprint.get(&fingerprint)
            && let Some(entry) = inner.entries.get_mut(&seq)
            && now.duration_since(entry.at) < self.limits.dedup_window
        {
            let t = &mut entry.ticket;
            t.reports += 1;
            if t.report.reporter != ticket.reporter
                && !t.reporters.contains(&ticket.reporter)
                && t.reporters.len() < MAX_REPORTERS
            {
                // A reporter's name counts against the ticket's bytes.
                let added = ticket.reporter.len();
                entry.bytes += added;
                inner.bytes += added;
                if let Some((_, bytes)) = inner.authors.get_mut(&t.report.reporter) {
                    *bytes += added;
                }
                t.reporters.push(ticket.reporter);
            }
            return Recorded {
                id: t.id.clone(),
                deduplicated: true,
            };
        }
        let bytes = ticket.bytes();
        // The author's own oldest make room first, then everyone's oldest.
        loop {
            let (count, used) = inner
                .authors
                .get(&ticket.reporter)
                .copied()
                .unwrap_or((0, 0));
            if count == 0
                || (count < self.limits.per_caller_tickets
                    && used + bytes <= self.limits.per_caller_bytes)
            {
                break;
            }
            let oldest = inner
                .entries
                .iter()
                .find(|(_, e)| e.ticket.report.reporter == ticket.reporter)
                .map(|(seq, _)| *seq);
            match oldest {
                Some(seq) => inner.remove(seq),
                None => break,
            }
        }
        while !inner.entries.is_empty()
            && (inner.entries.len() >= self.limits.max_tickets
                || inner.bytes + bytes > self.limits.max_bytes)
        {
            let Some(seq) = inner.entries.keys().next().copied() else {
                break;
            };
            inner.remove(seq);
        }
        let seq = inner.next;
        inner.next += 1;
        let id = format!("cx-{:016x}", uuid::Uuid::new_v4().as_u128() as u64);
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let author = inner.authors.entry(ticket.reporter.clone()).or_default();
        author.0 += 1;
        author.1 += bytes;
        inner.bytes += bytes;
        inner.by_fingerprint.insert(fingerprint, seq);
        inner.entries.insert(
            seq,
            Entry {
                ticket: StoredTicket {
                    id: id.clone(),
                    report: ticket,
                    created_unix,
                    reporters: Vec::new(),
                    reports: 1,
                },
                fingerprint,
                at: now,
                bytes,
            },
        );
        Recorded {
            id,
            deduplicated: false,
        }
    }

    fn list(&self, sub: &str, limit: usize) -> Vec<StoredTicket> {
        let inner = lock(&self.inner);
        inner
            .entries
            .values()
            .rev()
            .filter(|e| {
                e.ticket.report.reporter == sub || e.ticket.reporters.iter().any(|r| r == sub)
            })
            .take(limit)
            .map(|e| e.ticket.clone())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report about `crm` by `sub`.
    pub(crate) fn report(sub: &str, what: &str) -> NewTicket {
        NewTicket {
            backend: Some("crm".into()),
            reporter: sub.into(),
            severity: Severity::Blocking,
            what_i_wanted: what.into(),
            user_intent: "close the quarter".into(),
            context_tool: None,
            suggested_shape: None,
        }
    }

    #[test]
    fn same_need_in_other_words_is_one_ticket_within_the_window() {
        let m = MemoryFeedback::new(FeedbackLimits::default());
        let now = Instant::now();
        let a = m.record(report("alice", "List invoices, by DATE!"), now);
        let b = m.record(report("bob", "list  invoices by date"), now);
        assert!(!a.deduplicated);
        assert!(b.deduplicated);
        assert_eq!(a.id, b.id);
        // Bob sees the ticket he joined.
        assert_eq!(m.list("bob", 10).len(), 1);
        // Another backend is another need.
        let mut other = report("alice", "list invoices by date");
        other.backend = Some("erp".into());
        assert!(!m.record(other, now).deduplicated);
        // After the window, a new ticket.
        let later = now + DEDUP_WINDOW + Duration::from_secs(1);
        let c = m.record(report("carol", "list invoices by date"), later);
        assert!(!c.deduplicated);
        assert_ne!(c.id, a.id);
    }

    #[test]
    fn one_author_cannot_grow_the_store_past_their_bounds() {
        let limits = FeedbackLimits {
            max_tickets: 50,
            max_bytes: 1 << 20,
            per_caller_tickets: 5,
            per_caller_bytes: 64 << 10,
            dedup_window: DEDUP_WINDOW,
        };
        let m = MemoryFeedback::new(limits);
        let now = Instant::now();
        m.record(report("bob", "bob's one need"), now);
        for i in 0..1000 {
            m.record(report("mallory", &format!("need number {i}")), now);
        }
        assert_eq!(m.list("mallory", 1000).len(), 5);
        // Others' tickets survive one author's flood.
        assert_eq!(m.list("bob", 10).len(), 1);
        // Bytes per author: large reports evict the author's older ones.
        let big = "x".repeat(30 << 10);
        for i in 0..10 {
            m.record(report("mallory", &format!("{big} {i}")), now);
        }
        let (_, bytes) = m.usage();
        assert!(
            bytes <= (64 << 10) + 2 * TICKET_OVERHEAD_BYTES + 1024,
            "{bytes}"
        );
    }

    #[test]
    fn the_whole_store_is_bounded_by_count_and_bytes() {
        let limits = FeedbackLimits {
            max_tickets: 20,
            max_bytes: 40 << 10,
            per_caller_tickets: 100,
            per_caller_bytes: 1 << 20,
            dedup_window: DEDUP_WINDOW,
        };
        let m = MemoryFeedback::new(limits);
        let now = Instant::now();
        for i in 0..500 {
            m.record(report(&format!("user{i}"), &format!("need {i}")), now);
        }
        let (count, bytes) = m.usage();
        assert_eq!(count, 20);
        assert!(bytes <= 40 << 10);
        let big = "y".repeat(10 << 10);
        for i in 0..50 {
            m.record(report(&format!("big{i}"), &format!("{big} {i}")), now);
        }
        let (count, bytes) = m.usage();
        assert!(count <= 20 && bytes <= 40 << 10, "{count} {bytes}");
        // The newest is kept.
        assert_eq!(m.list("big49", 1).len(), 1);
    }

    #[test]
    fn reporters_of_one_ticket_are_bounded() {
        let m = MemoryFeedback::new(FeedbackLimits::default());
        let now = Instant::now();
        for i in 0..1000 {
            m.record(report(&format!("user{i}"), "same need"), now);
        }
        let t = &m.list("user0", 1)[0];
        assert_eq!(t.reports, 1000);
        assert_eq!(t.reporters.len(), MAX_REPORTERS);
        let (_, bytes) = m.usage();
        assert!(bytes < TICKET_OVERHEAD_BYTES + 1024, "{bytes}");
    }
}

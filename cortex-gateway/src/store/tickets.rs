//! Link tickets: single-use proofs that a caller asked to link an account
//! with one server. A ticket is issued to a (`sub`, server) pair, lives
//! [`TICKET_TTL`], and is redeemed at most once, by that `sub` for that
//! server.
//!
//! The store keeps a SHA-256 digest of each ticket, never the ticket: the
//! lookup is by digest, so its timing says nothing about the ticket's text,
//! and a memory dump or `Debug` output holds nothing redeemable. The set is
//! bounded by count and bytes; a new ticket beyond a bound evicts the oldest
//! (all tickets live equally long, so the oldest is the next to expire).
//!
//! The account-linking flow (`crate::link`) is the caller: it issues a
//! ticket into every link URL, looks one up (without using it) when the
//! browser starts the link, and redeems it when the provider sends the
//! browser back.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_lc_rs::digest::{SHA256, digest};

use crate::sync::lock;

/// How long a ticket may wait to be redeemed.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(10 * 60);
/// Default cap on outstanding tickets.
pub(crate) const DEFAULT_MAX_TICKETS: usize = 10_000;
/// Outstanding tickets one `sub` may hold (every link URL a tool error or
/// the `accounts` tool shows is one).
pub(crate) const MAX_TICKETS_PER_SUB: usize = 32;
/// Default cap on the bytes outstanding tickets hold.
pub(crate) const DEFAULT_MAX_TICKET_BYTES: usize = 4 << 20;
/// What one ticket costs besides its `sub`, label and server name: the
/// digest, the map slot, the expiry and the order entry, rounded up.
pub(crate) const TICKET_OVERHEAD_BYTES: usize = 176;
/// The longest label a ticket keeps (longer ones are cut at a character
/// boundary).
pub(crate) const MAX_LABEL_BYTES: usize = 256;

/// Why a ticket was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    /// Unknown, already used, expired or evicted, or issued to another
    /// caller or server.
    #[error(
        "the link ticket is unknown, used, expired or not yours; start the link again to get a new one"
    )]
    Invalid,
}

/// Whom a live ticket was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    /// The caller's `sub`.
    pub sub: String,
    /// What the link's confirmation page calls the caller (at most
    /// [`MAX_LABEL_BYTES`]).
    pub label: String,
}

/// The bounds of a ticket store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TicketLimits {
    /// Outstanding tickets.
    pub max_tickets: usize,
    /// Bytes of outstanding tickets.
    pub max_bytes: usize,
    /// How long a ticket lives.
    pub ttl: Duration,
}

impl Default for TicketLimits {
    fn default() -> Self {
        Self {
            max_tickets: DEFAULT_MAX_TICKETS,
            max_bytes: DEFAULT_MAX_TICKET_BYTES,
            ttl: TICKET_TTL,
        }
    }
}

/// The link tickets, wherever they are kept.
#[derive(Debug)]
pub(crate) enum LinkTickets {
    /// In this process's memory.
    Memory(MemoryTickets),
    /// On Redis, shared by the replicas. While Redis cannot be reached a
    /// ticket is still shown but cannot be redeemed (the caller starts the
    /// link again).
    Redis(Box<super::redis::RedisTickets>),
}

impl LinkTickets {
    /// Issues a ticket for `sub` (shown to the browser as `label`) to link
    /// with `server`.
    pub(crate) async fn issue(&self, sub: &str, label: &str, server: &str) -> String {
        match self {
            Self::Memory(m) => m.issue(sub, label, server, Instant::now()),
            Self::Redis(r) => {
                let text = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
                if let Err(e) = r.issue(&text, sub, capped(label), server).await {
                    tracing::error!("link ticket not kept: {e}");
                }
                text
            }
        }
    }

    /// Whom a live `ticket` was issued to, if it was issued for `server`;
    /// the ticket stays usable.
    pub(crate) async fn holder(&self, ticket: &str, server: &str) -> Option<Holder> {
        match self {
            Self::Memory(m) => m.holder(ticket, server, Instant::now()),
            Self::Redis(r) => r.read(ticket, server, false).await.ok().flatten(),
        }
    }

    /// Redeems `ticket` for `sub` and `server`. Any attempt uses the ticket
    /// up, so a ticket shown to the wrong caller cannot be tried again.
    pub(crate) async fn redeem(
        &self,
        ticket: &str,
        sub: &str,
        server: &str,
    ) -> Result<(), TicketError> {
        match self {
            Self::Memory(m) => m.redeem(ticket, sub, server, Instant::now()),
            Self::Redis(r) => match r.read(ticket, server, true).await {
                Ok(Some(holder)) if holder.sub == sub => Ok(()),
                _ => Err(TicketError::Invalid),
            },
        }
    }
}

type Digest = [u8; 32];

fn digest_of(ticket: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, ticket.as_bytes()).as_ref());
    out
}

struct Ticket {
    sub: Box<str>,
    label: Box<str>,
    server: Box<str>,
    expires: Instant,
}

fn cost(sub: &str, label: &str, server: &str) -> usize {
    TICKET_OVERHEAD_BYTES + sub.len() + label.len() + server.len()
}

/// `label` cut to at most [`MAX_LABEL_BYTES`], at a character boundary.
fn capped(label: &str) -> &str {
    if label.len() <= MAX_LABEL_BYTES {
        return label;
    }
    let mut end = MAX_LABEL_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

#[derive(Default)]
struct State {
    tickets: HashMap<Digest, Ticket>,
    /// Issue order, oldest first (may name tickets already redeemed; kept
    /// at most twice as long as `tickets`).
    order: VecDeque<Digest>,
    /// Outstanding tickets per `sub`.
    per_sub: HashMap<Box<str>, usize>,
    bytes: usize,
}

impl State {
    fn remove(&mut self, key: &Digest) -> Option<Ticket> {
        let ticket = self.tickets.remove(key)?;
        self.bytes -= cost(&ticket.sub, &ticket.label, &ticket.server);
        if let Some(n) = self.per_sub.get_mut(&ticket.sub) {
            *n -= 1;
            if *n == 0 {
                self.per_sub.remove(&ticket.sub);
            }
        }
        Some(ticket)
    }

    /// Drops the oldest ticket of `sub`.
    fn evict_oldest_of(&mut self, sub: &str) {
        let oldest = self
            .order
            .iter()
            .find(|d| self.tickets.get(*d).is_some_and(|t| *t.sub == *sub))
            .copied();
        if let Some(key) = oldest {
            self.remove(&key);
        }
    }

    /// Forgets order entries of tickets no longer held, once they are
    /// half of the list.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.tickets.len() + 16 {
            let tickets = &self.tickets;
            self.order.retain(|d| tickets.contains_key(d));
        }
    }

    /// Drops the oldest ticket (skipping order entries already redeemed);
    /// false when none is left.
    fn evict_oldest(&mut self) -> bool {
        while let Some(key) = self.order.pop_front() {
            if self.remove(&key).is_some() {
                return true;
            }
        }
        false
    }
}

/// Link tickets in this process's memory.
pub(crate) struct MemoryTickets {
    limits: TicketLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryTickets {
    /// Counts only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("MemoryTickets")
            .field("outstanding", &state.tickets.len())
            .field("bytes", &state.bytes)
            .field("limits", &self.limits)
            .finish()
    }
}

impl MemoryTickets {
    /// An empty store with these bounds (counts at least 1).
    pub(crate) fn new(limits: TicketLimits) -> Self {
        Self {
            limits: TicketLimits {
                max_tickets: limits.max_tickets.max(1),
                max_bytes: limits.max_bytes.max(1),
                ttl: limits.ttl,
            },
            state: Mutex::default(),
        }
    }

    fn issue(&self, sub: &str, label: &str, server: &str, now: Instant) -> String {
        let label = capped(label);
        let text = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
        let key = digest_of(&text);
        let mut state = lock(&self.state);
        while let Some(oldest) = state.order.front()
            && state.tickets.get(oldest).is_none_or(|t| t.expires <= now)
        {
            let oldest = *oldest;
            state.order.pop_front();
            state.remove(&oldest);
        }
        if state
            .per_sub
            .get(sub)
            .is_some_and(|n| *n >= MAX_TICKETS_PER_SUB)
        {
            state.evict_oldest_of(sub);
        }
        while state.tickets.len() >= self.limits.max_tickets
            || state.bytes + cost(sub, label, server) > self.limits.max_bytes
        {
            if !state.evict_oldest() {
                break;
            }
        }
        state.compact();
        state.bytes += cost(sub, label, server);
        *state.per_sub.entry(sub.into()).or_default() += 1;
        state.tickets.insert(
            key,
            Ticket {
                sub: sub.into(),
                label: label.into(),
                server: server.into(),
                expires: now + self.limits.ttl,
            },
        );
        state.order.push_back(key);
        text
    }

    fn holder(&self, ticket: &str, server: &str, now: Instant) -> Option<Holder> {
        let state = lock(&self.state);
        let t = state.tickets.get(&digest_of(ticket))?;
        (t.expires > now && *t.server == *server).then(|| Holder {
            sub: t.sub.to_string(),
            label: t.label.to_string(),
        })
    }

    fn redeem(
        &self,
        ticket: &str,
        sub: &str,
        server: &str,
        now: Instant,
    ) -> Result<(), TicketError> {
        let found = lock(&self.state).remove(&digest_of(ticket));
        match found {
            Some(t) if t.expires > now && *t.sub == *sub && *t.server == *server => Ok(()),
            _ => Err(TicketError::Invalid),
        }
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.tickets.len(), state.bytes)
    }

    #[cfg(test)]
    fn order_len(&self) -> usize {
        lock(&self.state).order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets(max_tickets: usize, max_bytes: usize) -> MemoryTickets {
        MemoryTickets::new(TicketLimits {
            max_tickets,
            max_bytes,
            ttl: TICKET_TTL,
        })
    }

    #[tokio::test]
    async fn a_ticket_is_redeemed_once_by_its_caller_for_its_server() {
        let t = LinkTickets::Memory(MemoryTickets::new(TicketLimits::default()));
        let ticket = t.issue("ana", "ana", "github").await;
        assert_eq!(ticket.len(), 32);
        t.redeem(&ticket, "ana", "github").await.unwrap();
        assert_eq!(
            t.redeem(&ticket, "ana", "github").await,
            Err(TicketError::Invalid),
            "single use"
        );

        for (sub, server) in [("eve", "github"), ("ana", "jira")] {
            let ticket = t.issue("ana", "ana", "github").await;
            assert_eq!(
                t.redeem(&ticket, sub, server).await,
                Err(TicketError::Invalid)
            );
            assert_eq!(
                t.redeem(&ticket, "ana", "github").await,
                Err(TicketError::Invalid),
                "a wrong attempt uses the ticket up"
            );
        }
        assert!(t.redeem("not a ticket", "ana", "github").await.is_err());

        let ticket = t.issue("ana", "ana", "github").await;
        assert_eq!(t.holder(&ticket, "jira").await, None, "another server");
        assert_eq!(t.holder("not a ticket", "github").await, None);
        for _ in 0..2 {
            assert_eq!(
                t.holder(&ticket, "github").await.map(|h| h.sub).as_deref(),
                Some("ana")
            );
        }
        t.redeem(&ticket, "ana", "github").await.unwrap();
        assert_eq!(t.holder(&ticket, "github").await, None, "used");
        let shown = format!("{t:?}");
        let ticket = t.issue("ana", "ana", "github").await;
        assert!(!format!("{t:?}").contains(&ticket), "{shown}");
    }

    #[test]
    fn tickets_expire() {
        let t = tickets(100, usize::MAX);
        let start = Instant::now();
        let early = t.issue("ana", "ana", "github", start);
        let late = t.issue("ana", "ana", "github", start);
        t.redeem(
            &early,
            "ana",
            "github",
            start + TICKET_TTL - Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(t.holder(&late, "github", start + TICKET_TTL), None);
        assert_eq!(
            t.redeem(&late, "ana", "github", start + TICKET_TTL),
            Err(TicketError::Invalid)
        );
        // Expired tickets are swept when new ones are issued.
        t.issue("ana", "ana", "x", start);
        t.issue("bo", "bo", "x", start + TICKET_TTL + Duration::from_secs(1));
        assert_eq!(t.counts(), (1, cost("bo", "bo", "x")));
    }

    #[test]
    fn outstanding_tickets_are_bounded_by_count_and_bytes() {
        let now = Instant::now();
        let t = tickets(3, usize::MAX);
        let first = t.issue("ana", "ana", "github", now);
        for i in 0..10 {
            t.issue(
                &format!("caller-{i}"),
                &format!("caller-{i}"),
                "github",
                now,
            );
        }
        assert_eq!(t.counts().0, 3);
        assert!(
            t.redeem(&first, "ana", "github", now).is_err(),
            "oldest evicted"
        );

        let long = "s".repeat(1000);
        let t = tickets(1000, 2 * cost(&long, "l", "github"));
        for _ in 0..10 {
            t.issue(&long, "l", "github", now);
        }
        assert_eq!(t.counts(), (2, 2 * cost(&long, "l", "github")));
        let newest = t.issue(&long, "l", "github", now);
        t.redeem(&newest, &long, "github", now).unwrap();
        assert_eq!(t.counts(), (1, cost(&long, "l", "github")));
    }

    #[test]
    fn one_caller_cannot_push_out_another_callers_tickets() {
        let now = Instant::now();
        let t = tickets(100, usize::MAX);
        let ana = t.issue("ana", "ana", "github", now);
        let first_of_eve = t.issue("eve", "eve", "github", now);
        for _ in 0..1000 {
            t.issue("eve", "eve", "github", now);
        }
        assert_eq!(t.counts().0, 1 + MAX_TICKETS_PER_SUB);
        assert!(t.order_len() <= 2 * t.counts().0 + 16, "{}", t.order_len());
        assert!(
            t.redeem(&first_of_eve, "eve", "github", now).is_err(),
            "eve's oldest went"
        );
        t.redeem(&ana, "ana", "github", now).unwrap();
        // Redeemed and evicted entries do not pile up in the order list.
        for i in 0..1000 {
            let x = t.issue(&format!("u{i}"), &format!("u{i}"), "github", now);
            t.redeem(&x, &format!("u{i}"), "github", now).unwrap();
        }
        assert!(t.order_len() <= 2 * t.counts().0 + 16, "{}", t.order_len());
    }

    #[test]
    fn a_ticket_keeps_its_label_capped_and_counted() {
        let now = Instant::now();
        let t = tickets(100, usize::MAX);
        let ticket = t.issue("u-1", "ana@corp.example", "github", now);
        assert_eq!(
            t.holder(&ticket, "github", now),
            Some(Holder {
                sub: "u-1".into(),
                label: "ana@corp.example".into()
            })
        );
        assert_eq!(t.counts().1, cost("u-1", "ana@corp.example", "github"));

        let long = "é".repeat(MAX_LABEL_BYTES);
        let ticket = t.issue("u-2", &long, "github", now);
        let label = t.holder(&ticket, "github", now).unwrap().label;
        assert_eq!(label.len(), MAX_LABEL_BYTES);
        assert!(long.starts_with(&label));
        assert_eq!(
            t.counts().1,
            cost("u-1", "ana@corp.example", "github") + cost("u-2", &label, "github")
        );
    }
}

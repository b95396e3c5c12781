//! Everything the authorization server remembers, in memory and bounded.
//!
//! Each map has a count limit ([`Limits`]); expired entries are dropped
//! when a map is full, and if it is still full the new entry is refused
//! (with an error that says to finish or restart), never a live one
//! evicted. Every string stored comes from a request and is capped at
//! [`MAX_FIELD_BYTES`] (scopes: a fixed set), and a client at
//! [`MAX_CLIENT_BYTES`], so count limits bound the bytes too.
//! Revoking a grant removes it: its access tokens then introspect as
//! inactive and its refresh tokens are unknown.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::clients::Client;

/// Longest accepted value of a request field (`state`, `redirect_uri`,
/// `client_id`, `client_name`, ...).
pub const MAX_FIELD_BYTES: usize = 512;
/// Largest registered client (all its metadata together).
pub const MAX_CLIENT_BYTES: usize = 8 * 1024;

/// Count limits of the stores.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Registered clients (DCR and pre-registered).
    pub clients: usize,
    /// Cached Client ID Metadata Documents.
    pub cimd_documents: usize,
    /// Sign-ins in progress.
    pub sign_ins: usize,
    /// Authorization codes (issued, and redeemed ones until they expire).
    pub codes: usize,
    /// Grants (one per consent, alive while its refresh token is).
    pub grants: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            clients: 1_000,
            cimd_documents: 256,
            sign_ins: 1_000,
            codes: 1_000,
            grants: 10_000,
        }
    }
}

/// Rotated-out refresh tokens remembered per grant, to detect replays.
pub const REPLAY_MEMORY: usize = 8;

/// A store is full of live entries.
#[derive(Debug, thiserror::Error)]
#[error(
    "the dev authorization server holds {0} {1} already (its limit); finish or cancel some sign-ins, \
     or restart Meridian"
)]
pub struct Full(pub usize, pub &'static str);

/// A sign-in between `/authorize` and the consent.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub(crate) client_id: String,
    pub(crate) client_name: String,
    pub(crate) client_note: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) resource: String,
    /// The person picked on the sign-in page.
    pub(crate) person: Option<String>,
    pub(crate) expires: Instant,
}

/// An authorization code, kept by digest.
#[derive(Debug, Clone)]
pub struct Code {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) code_challenge: String,
    pub(crate) resource: String,
    pub(crate) sub: String,
    pub(crate) scope: String,
    pub(crate) expires: Instant,
    /// Set once presented: a second presentation is a replay.
    pub(crate) used: bool,
    /// The grant its redemption created (revoked on a replay).
    pub(crate) grant: Option<String>,
}

/// What a consent (or a client-credentials request) granted.
#[derive(Debug, Clone)]
pub struct Grant {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) resource: String,
    /// Unix seconds after which the grant (its refresh token) is over.
    pub(crate) expires: u64,
    pub(crate) refresh: Option<[u8; 32]>,
    /// The last [`REPLAY_MEMORY`] rotated-out refresh tokens: presenting
    /// one revokes the grant.
    pub(crate) previous_refresh: Vec<[u8; 32]>,
    /// Access tokens issued so far (their `jti` is `<grant>.<seq>`).
    pub(crate) seq: u64,
}

/// Why a refresh token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshProblem {
    /// Not a refresh token of a live grant.
    Unknown,
    /// A rotated-out refresh token: the grant was revoked.
    Replayed,
    /// Issued to another client.
    OtherClient,
}

/// The server's memory.
#[derive(Debug)]
pub struct Store {
    limits: Limits,
    clients: HashMap<String, Client>,
    cimd: HashMap<String, (Client, Instant)>,
    sign_ins: HashMap<String, SignIn>,
    codes: HashMap<[u8; 32], Code>,
    grants: HashMap<String, Grant>,
    /// Refresh token digest → (grant, is the current one).
    refresh: HashMap<[u8; 32], (String, bool)>,
    /// Subject → Unix second of its last revocation: tokens issued at or
    /// before it without a grant (pasted tokens) are inactive.
    revoked_before: HashMap<String, u64>,
}

fn make_room<K, V>(
    map: &mut HashMap<K, V>,
    limit: usize,
    what: &'static str,
    live: impl Fn(&V) -> bool,
) -> Result<(), Full> {
    if map.len() >= limit {
        map.retain(|_, v| live(v));
    }
    if map.len() >= limit {
        return Err(Full(limit, what));
    }
    Ok(())
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            clients: HashMap::new(),
            cimd: HashMap::new(),
            sign_ins: HashMap::new(),
            codes: HashMap::new(),
            grants: HashMap::new(),
            refresh: HashMap::new(),
            revoked_before: HashMap::new(),
        }
    }

    pub(crate) fn add_client(&mut self, client: Client) -> Result<(), Full> {
        make_room(
            &mut self.clients,
            self.limits.clients,
            "registered clients",
            |_| true,
        )?;
        self.clients.insert(client.id.clone(), client);
        Ok(())
    }

    pub(crate) fn client(&self, id: &str) -> Option<Client> {
        self.clients.get(id).cloned()
    }

    pub(crate) fn cached_document(&self, url: &str) -> Option<Client> {
        self.cimd
            .get(url)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(c, _)| c.clone())
    }

    pub(crate) fn cache_document(&mut self, client: Client, ttl: Duration) {
        let now = Instant::now();
        if make_room(
            &mut self.cimd,
            self.limits.cimd_documents,
            "documents",
            |(_, until)| *until > now,
        )
        .is_err()
        {
            // A cache: dropping everything is safe, documents are fetched again.
            self.cimd.clear();
        }
        self.cimd.insert(client.id.clone(), (client, now + ttl));
    }

    pub(crate) fn add_sign_in(&mut self, id: String, sign_in: SignIn) -> Result<(), Full> {
        let now = Instant::now();
        make_room(
            &mut self.sign_ins,
            self.limits.sign_ins,
            "sign-ins in progress",
            |s| s.expires > now,
        )?;
        self.sign_ins.insert(id, sign_in);
        Ok(())
    }

    /// A sign-in in progress, unless expired.
    pub(crate) fn sign_in(&mut self, id: &str) -> Option<&mut SignIn> {
        let now = Instant::now();
        self.sign_ins.get_mut(id).filter(|s| s.expires > now)
    }

    pub(crate) fn take_sign_in(&mut self, id: &str) -> Option<SignIn> {
        let now = Instant::now();
        self.sign_ins.remove(id).filter(|s| s.expires > now)
    }

    pub(crate) fn add_code(&mut self, digest: [u8; 32], code: Code) -> Result<(), Full> {
        let now = Instant::now();
        make_room(
            &mut self.codes,
            self.limits.codes,
            "authorization codes",
            |c| c.expires > now,
        )?;
        self.codes.insert(digest, code);
        Ok(())
    }

    /// Marks a code presented and returns it. A code presented before has
    /// its grant revoked (RFC 6749 section 4.1.2) and is refused.
    pub(crate) fn present_code(&mut self, digest: &[u8; 32]) -> Result<Code, &'static str> {
        let code = self
            .codes
            .get_mut(digest)
            .ok_or("unknown authorization code")?;
        if code.used {
            let grant = code.grant.take();
            if let Some(grant) = grant {
                self.revoke_grant(&grant);
            }
            return Err(
                "this authorization code was already used; the tokens issued from it are revoked. \
                 Start a new authorization",
            );
        }
        code.used = true;
        if code.expires <= Instant::now() {
            return Err("the authorization code expired; start a new authorization");
        }
        Ok(code.clone())
    }

    /// Records the grant a code's redemption created.
    pub(crate) fn code_granted(&mut self, digest: &[u8; 32], grant: &str) {
        if let Some(code) = self.codes.get_mut(digest) {
            code.grant = Some(grant.to_string());
        }
    }

    pub(crate) fn add_grant(&mut self, id: String, grant: Grant, now: u64) -> Result<(), Full> {
        if self.grants.len() >= self.limits.grants {
            let expired: Vec<String> = self
                .grants
                .iter()
                .filter(|(_, g)| g.expires <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.revoke_grant(&id);
            }
        }
        if self.grants.len() >= self.limits.grants {
            return Err(Full(self.limits.grants, "grants"));
        }
        if let Some(refresh) = grant.refresh {
            self.refresh.insert(refresh, (id.clone(), true));
        }
        self.grants.insert(id, grant);
        Ok(())
    }

    /// A live grant.
    pub(crate) fn grant(&self, id: &str, now: u64) -> Option<&Grant> {
        self.grants.get(id).filter(|g| g.expires > now)
    }

    /// The next access-token sequence number of a live grant.
    pub(crate) fn next_seq(&mut self, id: &str) -> Option<u64> {
        let grant = self.grants.get_mut(id)?;
        grant.seq += 1;
        Some(grant.seq)
    }

    /// The grant a refresh token belongs to, if live and current.
    pub(crate) fn refresh_grant(&self, digest: &[u8; 32], now: u64) -> Option<(String, Grant)> {
        let (id, current) = self.refresh.get(digest)?;
        if !current {
            return None;
        }
        self.grant(id, now).map(|g| (id.clone(), g.clone()))
    }

    /// Rotates a grant's refresh token: `old` must be its current one.
    pub(crate) fn rotate(
        &mut self,
        old: &[u8; 32],
        new: [u8; 32],
        client_id: &str,
        expires: u64,
        now: u64,
    ) -> Result<(String, Grant), RefreshProblem> {
        let (id, current) = self
            .refresh
            .get(old)
            .cloned()
            .ok_or(RefreshProblem::Unknown)?;
        if !current {
            self.revoke_grant(&id);
            return Err(RefreshProblem::Replayed);
        }
        let Some(grant) = self.grants.get_mut(&id).filter(|g| g.expires > now) else {
            return Err(RefreshProblem::Unknown);
        };
        if grant.client_id != client_id {
            return Err(RefreshProblem::OtherClient);
        }
        if grant.previous_refresh.len() >= REPLAY_MEMORY {
            let oldest = grant.previous_refresh.remove(0);
            self.refresh.remove(&oldest);
        }
        if let Some(current) = grant.refresh.replace(new) {
            grant.previous_refresh.push(current);
        }
        grant.expires = expires;
        let grant = grant.clone();
        self.refresh.insert(*old, (id.clone(), false));
        self.refresh.insert(new, (id.clone(), true));
        Ok((id, grant))
    }

    /// Ends a grant; returns whether it existed.
    pub(crate) fn revoke_grant(&mut self, id: &str) -> bool {
        let Some(grant) = self.grants.remove(id) else {
            return false;
        };
        for digest in grant.refresh.iter().chain(&grant.previous_refresh) {
            self.refresh.remove(digest);
        }
        true
    }

    /// Ends every grant of a subject and every grant-less token issued to
    /// it up to `now`; returns the number of grants ended.
    pub(crate) fn revoke_subject(&mut self, sub: &str, now: u64) -> usize {
        let ids: Vec<String> = self
            .grants
            .iter()
            .filter(|(_, g)| g.sub == sub)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.revoke_grant(id);
        }
        // Only the operator revokes subjects (an authenticated admin call),
        // one entry per person or confidential client.
        self.revoked_before.insert(sub.to_string(), now);
        ids.len()
    }

    /// Whether a grant-less token of `sub` issued at `iat` was revoked.
    pub(crate) fn revoked(&self, sub: &str, iat: u64) -> bool {
        self.revoked_before.get(sub).is_some_and(|t| iat <= *t)
    }

    /// Live grants by subject: (sub, client ids).
    pub(crate) fn grants_by_subject(&self, now: u64) -> Vec<(String, Vec<String>)> {
        let mut by: HashMap<&str, Vec<String>> = HashMap::new();
        for g in self.grants.values().filter(|g| g.expires > now) {
            by.entry(&g.sub).or_default().push(g.client_id.clone());
        }
        let mut out: Vec<(String, Vec<String>)> =
            by.into_iter().map(|(s, c)| (s.to_string(), c)).collect();
        out.sort();
        out
    }
}

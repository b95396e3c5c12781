//! Legacy-era sessions: random ids minted on `initialize`, bound to the
//! token's `sub`, ended by DELETE. A session is never authentication: every
//! request still carries and re-validates its bearer token; the session only
//! remembers the negotiated revision.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::jsonrpc::Revision;

/// How long an idle session lives.
pub const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// At most this many live sessions; beyond, the idlest are dropped.
pub const MAX_SESSIONS: usize = 100_000;

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The owner's `sub`.
    pub sub: String,
    /// The negotiated revision.
    pub revision: Revision,
    last_seen: Mutex<Instant>,
    ended: watch::Sender<bool>,
}

impl Session {
    /// Resolves when the session ends (DELETE or expiry).
    pub fn ended(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }
}

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Unknown, expired, ended, or owned by someone else (404).
    NotFound,
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionStore {
    /// Creates a session and returns its id (visible ASCII, 128 random bits).
    pub fn create(&self, sub: &str, revision: Revision) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (ended, _) = watch::channel(false);
        let session = Arc::new(Session {
            sub: sub.to_string(),
            revision,
            last_seen: Mutex::new(Instant::now()),
            ended,
        });
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            let now = Instant::now();
            map.retain(|_, s| {
                let keep = now
                    .duration_since(*s.last_seen.lock().unwrap_or_else(|e| e.into_inner()))
                    < SESSION_IDLE / 24;
                if !keep {
                    s.ended.send_replace(true);
                }
                keep
            });
        }
        map.insert(id.clone(), session);
        id
    }

    /// The session `id` if it exists and belongs to `sub`.
    pub fn get(&self, id: &str, sub: &str) -> Result<Arc<Session>, SessionError> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get(id).cloned().ok_or(SessionError::NotFound)?;
        let mut seen = session.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.elapsed() > SESSION_IDLE {
            drop(seen);
            map.remove(id);
            session.ended.send_replace(true);
            return Err(SessionError::NotFound);
        }
        if session.sub != sub {
            return Err(SessionError::NotFound);
        }
        *seen = Instant::now();
        drop(seen);
        Ok(session)
    }

    /// Ends a session owned by `sub`.
    pub fn end(&self, id: &str, sub: &str) -> Result<(), SessionError> {
        let session = self.get(id, sub)?;
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        session.ended.send_replace(true);
        Ok(())
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

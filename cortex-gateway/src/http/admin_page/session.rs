//! The status page's sign-in sessions and its lock against guessing.
//!
//! A session is a random id (256 bits) the browser holds in a cookie; the
//! server keeps only the id's SHA-256 digest, the session's CSRF token, its
//! expiry and one notice of at most 600 characters. At most
//! [`MAX_SESSIONS`] live at once (every entry has a bounded size, so that
//! also bounds the bytes): a new sign-in beyond that
//! ends the session closest to expiry. After [`MAX_FAILURES`] wrong secrets
//! within [`FAILURE_WINDOW`], every sign-in is refused for [`LOCKOUT`] (the
//! right secret too), whoever sends it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// Most sessions alive at once.
pub(crate) const MAX_SESSIONS: usize = 16;
/// How long a session lasts from its sign-in.
pub(crate) const TTL: Duration = Duration::from_secs(15 * 60);
/// Wrong secrets tolerated within [`FAILURE_WINDOW`].
pub(crate) const MAX_FAILURES: usize = 5;
/// The window the wrong secrets are counted in.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long sign-in stays closed after too many wrong secrets.
pub(crate) const LOCKOUT: Duration = Duration::from_secs(60);

type IdDigest = [u8; 32];

#[derive(Debug)]
struct Session {
    csrf: String,
    expires: Instant,
    /// What the last form did, shown once by the next page.
    notice: Option<String>,
}

/// Longest notice kept (characters).
const NOTICE_CHARS: usize = 600;

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<IdDigest, Session>,
    /// The last wrong secrets (at most [`MAX_FAILURES`]).
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

/// The sessions of the status page.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn id_digest(id: &str) -> IdDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, id.as_bytes()).as_ref());
    out
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// `Err(wait)` while sign-in is locked after too many wrong secrets.
    pub(crate) fn sign_in_allowed(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.locked_until {
            Some(until) if until > now => Err(until - now),
            Some(_) => {
                inner.locked_until = None;
                inner.failures.clear();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a wrong secret; the last one allowed locks sign-in.
    pub(crate) fn failed(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner
            .failures
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        inner.failures.push_back(now);
        while inner.failures.len() > MAX_FAILURES {
            inner.failures.pop_front();
        }
        if inner.failures.len() >= MAX_FAILURES {
            inner.locked_until = Some(now + LOCKOUT);
            tracing::warn!(
                target: "cortex_gateway::admin",
                "{MAX_FAILURES} wrong admin secrets: sign-in on the status page is closed for {} s",
                LOCKOUT.as_secs()
            );
        }
    }

    /// Opens a session (a right secret was sent); its id (the cookie's
    /// value).
    pub(crate) fn open(&self) -> Option<String> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut inner = self.lock();
        inner.failures.clear();
        inner.live.retain(|_, s| s.expires > now);
        while inner.live.len() >= MAX_SESSIONS {
            let oldest = inner
                .live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)?;
            inner.live.remove(&oldest);
        }
        inner.live.insert(
            id_digest(&id),
            Session {
                csrf,
                expires: now + TTL,
                notice: None,
            },
        );
        Some(id)
    }

    /// The CSRF token of the live session `id`, if there is one.
    pub(crate) fn csrf_of(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let key = id_digest(id);
        let mut inner = self.lock();
        match inner.live.get(&key) {
            Some(s) if s.expires > now => Some(s.csrf.clone()),
            Some(_) => {
                inner.live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether `presented` is the CSRF token of the live session `id`
    /// (constant-time comparison).
    pub(crate) fn csrf_matches(&self, id: &str, presented: &str) -> bool {
        self.csrf_of(id)
            .is_some_and(|csrf| bool::from(csrf.as_bytes().ct_eq(presented.as_bytes())))
    }

    /// Keeps `text` for the next page of session `id`.
    pub(crate) fn set_notice(&self, id: &str, text: &str) {
        if let Some(s) = self.lock().live.get_mut(&id_digest(id)) {
            s.notice = Some(text.chars().take(NOTICE_CHARS).collect());
        }
    }

    /// The notice kept for session `id`, once.
    pub(crate) fn take_notice(&self, id: &str) -> Option<String> {
        self.lock()
            .live
            .get_mut(&id_digest(id))
            .and_then(|s| s.notice.take())
    }

    /// Ends the session `id`.
    pub(crate) fn close(&self, id: &str) {
        self.lock().live.remove(&id_digest(id));
    }

    /// Sessions alive.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stay_bounded_and_only_their_own_csrf_token_matches() {
        let sessions = Sessions::default();
        let first = sessions.open().unwrap();
        let first_csrf = sessions.csrf_of(&first).unwrap();
        assert!(sessions.csrf_matches(&first, &first_csrf));
        for _ in 0..10 * MAX_SESSIONS {
            let s = sessions.open().unwrap();
            assert!(!sessions.csrf_matches(&s, &first_csrf));
            assert!(sessions.len() <= MAX_SESSIONS);
            sessions.set_notice(&s, &"n".repeat(10_000));
            assert!(sessions.take_notice(&s).unwrap().len() <= NOTICE_CHARS);
        }
        let last = sessions.open().unwrap();
        let last_csrf = sessions.csrf_of(&last).unwrap();
        assert!(!sessions.csrf_matches(&last, ""));
        assert!(!sessions.csrf_matches("not-a-session", &last_csrf));
        sessions.close(&last);
        assert!(sessions.csrf_of(&last).is_none());
    }

    #[test]
    fn too_many_wrong_secrets_close_sign_in() {
        let sessions = Sessions::default();
        for _ in 0..MAX_FAILURES - 1 {
            sessions.failed();
            assert!(sessions.sign_in_allowed().is_ok());
        }
        sessions.failed();
        assert!(sessions.sign_in_allowed().is_err());
        for _ in 0..1000 {
            sessions.failed();
        }
        assert!(sessions.lock().failures.len() <= MAX_FAILURES);
    }
}

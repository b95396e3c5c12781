//! The settings of a shared store that its implementation reads: the
//! Redis URL (parsed from `CORTEX_STORE` by the configuration) and what to
//! do while the store is lost.

use serde::{Deserialize, Serialize};

/// A Redis URL. Its password is never shown: `Debug`, `Display` and the
/// serialized form (what `check-config` prints) replace it with `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    url: String,
    shown: String,
    tls: bool,
    loopback: bool,
}

impl RedisUrl {
    /// A URL with its text, its text without password, and what it names.
    pub(crate) fn new(url: String, shown: String, tls: bool, loopback: bool) -> Self {
        Self {
            url,
            shown,
            tls,
            loopback,
        }
    }

    /// The URL with its password, for the client only.
    pub(crate) fn secret_url(&self) -> &str {
        &self.url
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether the connection is TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// What the rate limit does while the shared store cannot be reached
/// (`CORTEX_STORE_RATE_LIMIT_ON_FAILURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitOnFailure {
    /// Admit the request (the default: the stateless era keeps serving,
    /// and every request is still authenticated).
    #[default]
    Open,
    /// Refuse it with 429 and `Retry-After`.
    Closed,
}

impl std::str::FromStr for RateLimitOnFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(
                "must be open (admit requests while Redis is lost) or closed (refuse them)".into(),
            ),
        }
    }
}

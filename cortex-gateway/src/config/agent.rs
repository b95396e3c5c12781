//! What the agents are told and where their feedback goes (`[agent]`).
//!
//! | variable | TOML key (`[agent]`) | meaning | default |
//! |---|---|---|---|
//! | `CORTEX_INSTRUCTIONS` | `instructions` | text put before the gateway's own `instructions` (at most 4096 bytes) | – |
//! | `CORTEX_SERVER_ICON_URL` | `icon_url` | `serverInfo.icons` and the server card's icon (https, or http to loopback) | – |
//! | `CORTEX_SERVER_WEBSITE_URL` | `website_url` | `serverInfo.websiteUrl` and the server card's (https, or http to loopback) | – |
//! | `CORTEX_FEEDBACK_WEBHOOK_URL` | `feedback_webhook_url` | where blocking tickets are POSTed (https, or http to loopback) | off |
//! | `CORTEX_FEEDBACK_WEBHOOK_SECRET` | `feedback_webhook_secret` | HMAC-SHA256 key of the webhook's `Cortex-Signature` (at least 16 bytes; masked) | required with the URL |

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The longest operator `instructions`.
pub const MAX_INSTRUCTIONS_BYTES: usize = 4096;
/// The shortest webhook secret.
pub(crate) const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// What the agents are told and where their feedback goes.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Text put before the gateway's own `instructions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The gateway's icon (`serverInfo.icons`, server card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// The gateway's website (`serverInfo.websiteUrl`, server card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_url: Option<String>,
    /// Where tickets marked blocking are POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_webhook_url: Option<String>,
    /// The webhook's signing key. A secret: masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_webhook_secret: Option<String>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("instructions", &self.instructions.as_ref().map(String::len))
            .field("icon_url", &self.icon_url)
            .field("website_url", &self.website_url)
            .field("feedback_webhook_url", &self.feedback_webhook_url)
            .field(
                "feedback_webhook_secret",
                &self.feedback_webhook_secret.as_ref().map(|_| "[masked]"),
            )
            .finish()
    }
}

/// Whether `url` is https, or http to a loopback host.
pub(crate) fn safe_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => match parsed.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

impl AgentConfig {
    /// Reads the variables of the table above.
    pub(super) fn from_env_map(env: &HashMap<String, String>) -> Self {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            instructions: get("CORTEX_INSTRUCTIONS"),
            icon_url: get("CORTEX_SERVER_ICON_URL"),
            website_url: get("CORTEX_SERVER_WEBSITE_URL"),
            feedback_webhook_url: get("CORTEX_FEEDBACK_WEBHOOK_URL"),
            feedback_webhook_secret: get("CORTEX_FEEDBACK_WEBHOOK_SECRET"),
        }
    }

    /// Checks the values; the error names the variable.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(text) = &self.instructions
            && text.len() > MAX_INSTRUCTIONS_BYTES
        {
            return Err(ConfigError::new(
                "CORTEX_INSTRUCTIONS",
                format!(
                    "{} bytes; at most {MAX_INSTRUCTIONS_BYTES}: agents read it on every connection, keep it short",
                    text.len()
                ),
            ));
        }
        for (var, value) in [
            ("CORTEX_SERVER_ICON_URL", &self.icon_url),
            ("CORTEX_SERVER_WEBSITE_URL", &self.website_url),
            ("CORTEX_FEEDBACK_WEBHOOK_URL", &self.feedback_webhook_url),
        ] {
            if let Some(url) = value
                && !safe_url(url)
            {
                return Err(ConfigError::new(
                    var,
                    format!(
                        "`{url}` is not an https URL (http only to localhost); use e.g. https://example.com/…"
                    ),
                ));
            }
        }
        match (&self.feedback_webhook_url, &self.feedback_webhook_secret) {
            (Some(_), None) => Err(ConfigError::new(
                "CORTEX_FEEDBACK_WEBHOOK_SECRET",
                "required with CORTEX_FEEDBACK_WEBHOOK_URL: the key the receiver checks the \
                 signature with; generate one with `openssl rand -hex 32`",
            )),
            (_, Some(secret)) if secret.len() < MIN_WEBHOOK_SECRET_BYTES => Err(ConfigError::new(
                "CORTEX_FEEDBACK_WEBHOOK_SECRET",
                format!(
                    "too short: at least {MIN_WEBHOOK_SECRET_BYTES} bytes; generate one with `openssl rand -hex 32`"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A copy with the secret masked.
    pub(super) fn masked(&self) -> Self {
        let mut copy = self.clone();
        if copy.feedback_webhook_secret.is_some() {
            copy.feedback_webhook_secret = Some("[masked]".into());
        }
        copy
    }
}

//! Where the state replicas share is kept: `CORTEX_STORE` and the
//! `CORTEX_STORE_*` settings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::store::settings::{RateLimitOnFailure, RedisUrl};

/// Where the state replicas would share is kept (`CORTEX_STORE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StoreKind {
    /// In this process's memory: one gateway process.
    #[default]
    Memory,
    /// A Redis server (`redis://…` or `rediss://…`), shared by replicas.
    Redis(RedisUrl),
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("memory") {
            return Ok(Self::Memory);
        }
        let scheme = s.split_once("://").map_or("", |(scheme, _)| scheme);
        let tls = scheme.eq_ignore_ascii_case("rediss");
        if !(tls || scheme.eq_ignore_ascii_case("redis")) {
            return Err(
                "names no store this gateway has; use memory (the default) or a redis:// or \
                 rediss:// URL"
                    .into(),
            );
        }
        // Never echo the value in an error: it may hold a password.
        let parsed = url::Url::parse(s).map_err(|e| {
            format!("is not a valid URL ({e}); write redis://[user:password@]host:port[/db]")
        })?;
        let host = match parsed.host() {
            Some(h) => h,
            None => return Err("has no host; write redis://host:port".into()),
        };
        let loopback = match host {
            // A URL of a non-special scheme keeps IP literals as names.
            url::Host::Domain(d) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            }
            url::Host::Ipv4(a) => a.is_loopback(),
            url::Host::Ipv6(a) => a.is_loopback(),
        };
        if !parsed.path().trim_start_matches('/').is_empty()
            && parsed
                .path()
                .trim_start_matches('/')
                .parse::<u32>()
                .is_err()
        {
            return Err(
                "has a path that is not a database number; write redis://host:port/0".into(),
            );
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        Ok(Self::Redis(RedisUrl::new(
            s.to_string(),
            shown.to_string(),
            tls,
            loopback,
        )))
    }
}

impl Serialize for StoreKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Memory => s.serialize_str("memory"),
            Self::Redis(url) => s.serialize_str(url.shown()),
        }
    }
}

impl<'de> Deserialize<'de> for StoreKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|problem: String| serde::de::Error::custom(format!("`store` {problem}")))
    }
}

/// The default key prefix on a shared store.
pub const DEFAULT_STORE_PREFIX: &str = "cortex:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_parse_and_hide_their_password() {
        let StoreKind::Redis(u) = "redis://:s3cret@10.0.0.5:6380/2".parse().unwrap() else {
            panic!("a Redis URL")
        };
        assert!(!u.is_tls() && !u.is_loopback());
        assert_eq!(u.secret_url(), "redis://:s3cret@10.0.0.5:6380/2");
        for shown in [
            format!("{u:?}"),
            u.to_string(),
            serde_json::to_string(&StoreKind::Redis(u.clone())).unwrap(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("10.0.0.5:6380"), "{shown}");
        }
        let StoreKind::Redis(u) = "rediss://user:pw@localhost".parse().unwrap() else {
            panic!("a Redis URL")
        };
        assert!(u.is_tls() && u.is_loopback());
        for bad in ["redis://", "redis://h/x", "postgres://h", "redis:// h"] {
            assert!(bad.parse::<StoreKind>().is_err(), "{bad}");
        }
        let e = "redis://:pw@h/not-a-db".parse::<StoreKind>().unwrap_err();
        assert!(!e.contains("pw"), "{e}");
        assert_eq!(
            "Closed".parse::<RateLimitOnFailure>().unwrap(),
            RateLimitOnFailure::Closed
        );
        assert!("maybe".parse::<RateLimitOnFailure>().is_err());
    }
}

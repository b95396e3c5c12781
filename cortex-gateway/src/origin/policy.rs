//! Which `Origin`s and `Host`s are allowed.

use std::collections::HashSet;

/// The origin allow-list: exact origins and `*.suffix` wildcards.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    exact: HashSet<String>,
    /// `(scheme, ".suffix", port)`: the host must end with the suffix.
    suffixes: Vec<(String, String, Option<u16>)>,
}

/// The parts of an origin, normalised (lower case, default port dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Parsed {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (scheme, rest) = value.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = split_port(&authority)?;
        let default = if scheme == "https" { 443 } else { 80 };
        Some(Self {
            host: host.to_string(),
            scheme,
            port: port.filter(|p| *p != default),
        })
    }

    fn render(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets).
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        // `[` + host + `]`, borrowed from `authority`.
        return Some((&authority[..close + 2], port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// An allow-list entry that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an origin; use scheme://host[:port] (https://app.example.com), \
     a wildcard (https://*.example.com or *.example.com), or *"
)]
pub struct BadOrigin(pub String);

impl OriginPolicy {
    /// Builds the list from configured entries plus the gateway's own
    /// origin (always allowed).
    pub fn new<'a>(
        own_origin: &'a str,
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, BadOrigin> {
        let mut policy = Self::default();
        for entry in std::iter::once(own_origin).chain(entries) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                policy.any = true;
                continue;
            }
            let with_scheme = if entry.contains("://") {
                entry.to_string()
            } else {
                format!("https://{entry}")
            };
            if let Some((scheme, rest)) = with_scheme.split_once("://*.") {
                let parsed = Parsed::parse(&format!("{scheme}://wildcard.{rest}"))
                    .ok_or_else(|| BadOrigin(entry.into()))?;
                let suffix = parsed.host.trim_start_matches("wildcard").to_string();
                if suffix.len() < 2 || rest.contains('*') {
                    return Err(BadOrigin(entry.into()));
                }
                policy.suffixes.push((parsed.scheme, suffix, parsed.port));
                continue;
            }
            let parsed = Parsed::parse(&with_scheme).ok_or_else(|| BadOrigin(entry.into()))?;
            if parsed.host.contains('*') {
                return Err(BadOrigin(entry.into()));
            }
            policy.exact.insert(parsed.render());
        }
        Ok(policy)
    }

    /// Whether a request carrying this `Origin` value may proceed.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(parsed) = Parsed::parse(origin) else {
            return false; // `null`, opaque or malformed origins
        };
        self.exact.contains(&parsed.render())
            || self.suffixes.iter().any(|(scheme, suffix, port)| {
                *scheme == parsed.scheme
                    && *port == parsed.port
                    && parsed.host.ends_with(suffix.as_str())
            })
    }
}

/// The `Host` check that defends a loopback listener against DNS
/// rebinding: a page on `evil.example` that rebinds its name to 127.0.0.1
/// still sends `Host: evil.example`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// `None`: no check (not bound to loopback).
    allowed: Option<HashSet<String>>,
}

impl HostPolicy {
    /// No check.
    pub fn off() -> Self {
        Self { allowed: None }
    }

    /// Only loopback names, the canonical URI's host and `extra` hosts.
    pub fn loopback<'a>(canonical_uri: &str, extra: impl IntoIterator<Item = &'a str>) -> Self {
        let mut allowed: HashSet<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(p) = Parsed::parse(canonical_uri) {
            allowed.insert(p.host);
        }
        allowed.extend(extra.into_iter().map(|h| h.trim().to_ascii_lowercase()));
        Self {
            allowed: Some(allowed),
        }
    }

    /// Whether a request with this `Host` value (port ignored) may proceed.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some(host) = host else {
            return false;
        };
        // Lowercased only when needed: this runs on every request.
        let host = host.trim();
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        match split_port(host) {
            Some((name, _)) => allowed.contains(name) || name.starts_with("127."),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::new("https://mcp.example.com/mcp", entries.iter().copied()).unwrap()
    }

    #[test]
    fn own_origin_exact_entries_and_default_ports() {
        let p = policy(&["http://localhost:6274", "https://app.partner.com"]);
        assert!(p.allows("https://mcp.example.com"));
        assert!(p.allows("https://MCP.example.com:443"));
        assert!(p.allows("http://localhost:6274"));
        assert!(p.allows("https://app.partner.com"));
        assert!(!p.allows("http://localhost:6275"));
        assert!(!p.allows("http://app.partner.com"));
        assert!(!p.allows("https://evil.example.com"));
        assert!(!p.allows("null"));
        assert!(!p.allows("https://app.partner.com@evil.com"));
    }

    #[test]
    fn wildcard_suffixes_match_subdomains_only() {
        let p = policy(&["*.corp.example", "http://*.lab.test:8080"]);
        assert!(p.allows("https://chat.corp.example"));
        assert!(p.allows("https://a.b.corp.example"));
        assert!(!p.allows("https://corp.example"));
        assert!(!p.allows("https://evilcorp.example"));
        assert!(!p.allows("http://chat.corp.example"));
        assert!(p.allows("http://x.lab.test:8080"));
        assert!(!p.allows("http://x.lab.test"));
    }

    #[test]
    fn star_allows_everything_and_bad_entries_are_refused() {
        assert!(policy(&["*"]).allows("https://anything.example"));
        for bad in [
            "ftp://x.example",
            "https://*",
            "https://a*.example.com",
            "https://",
        ] {
            assert!(
                OriginPolicy::new("https://mcp.example.com", [bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_check_on_loopback() {
        let h = HostPolicy::loopback("http://127.0.0.1:3213/mcp", ["gateway.local"]);
        assert!(h.allows(Some("127.0.0.1:3213")));
        assert!(h.allows(Some("localhost:3213")));
        assert!(h.allows(Some("[::1]:3213")));
        assert!(h.allows(Some("gateway.local")));
        assert!(!h.allows(Some("evil.example:3213")));
        assert!(!h.allows(None));
        assert!(HostPolicy::off().allows(Some("evil.example")));
    }
}

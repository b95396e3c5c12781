//! Which `Origin`s and `Host`s are allowed.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The origin allow-list: exact origins and `*.suffix` wildcards.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginPolicy {
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
pub(crate) struct BadOrigin(pub String);

impl OriginPolicy {
    /// Builds the list from configured entries plus the gateway's own
    /// origin (always allowed).
    pub(crate) fn new<'a>(
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

    /// Also allows the loopback origins of a listener on `port`:
    /// `http://localhost:PORT`, `http://127.0.0.1:PORT` and
    /// `http://[::1]:PORT` name the same host, so a page served by the
    /// listener itself may use any of them. Other ports stay foreign.
    pub(crate) fn with_loopback_port(mut self, port: u16) -> Self {
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let own = Parsed {
                scheme: "http".into(),
                host: host.into(),
                port: Some(port).filter(|p| *p != 80),
            };
            self.exact.insert(own.render());
        }
        self
    }

    /// Whether a request carrying this `Origin` value may proceed.
    pub(crate) fn allows(&self, origin: &str) -> bool {
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
///
/// The value is parsed as RFC 9110 says (`uri-host [":" port]`): an IP
/// literal (IPv4 dotted quad, or IPv6 in brackets) is allowed when it is a
/// loopback address or a configured one; a name is allowed when it is
/// `localhost`, the canonical URI's host or a configured name, compared
/// whole and without regard to case. Anything else (a name that merely
/// starts like an address, `127.0.0.1.evil.example`; a malformed value) is
/// refused. The port is not compared: a rebinding page cannot choose the
/// name, and the listener already fixes the port.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostPolicy {
    /// `None`: no check (not bound to loopback).
    allowed: Option<Allowed>,
}

/// The hosts a loopback listener accepts besides the loopback literals.
#[derive(Debug, Clone, Default)]
struct Allowed {
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    addresses: Vec<IpAddr>,
}

/// A `Host` (or URI authority) value, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostName<'a> {
    /// An IPv4 dotted quad or a bracketed IPv6 literal.
    Ip(IpAddr),
    /// A registered name, as sent (compare without regard to case); a
    /// trailing dot is removed.
    Name(&'a str),
}

impl<'a> HostName<'a> {
    /// Parses `host[:port]`; `None` for anything that is not a valid
    /// authority without user info (bad port, bad characters, unclosed
    /// bracket, empty host).
    pub(crate) fn parse(value: &'a str) -> Option<Self> {
        let value = value.trim();
        let (host, port) = match value.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']')?;
                let address: Ipv6Addr = inside.parse().ok()?;
                return valid_port(after.strip_prefix(':'), after)
                    .then_some(Self::Ip(IpAddr::V6(address)));
            }
            None => match value.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (value, None),
            },
        };
        if !valid_port(port, port.unwrap_or_default()) || host.is_empty() {
            return None;
        }
        if let Ok(v4) = host.parse::<Ipv4Addr>() {
            return Some(Self::Ip(IpAddr::V4(v4)));
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !name.split('.').any(str::is_empty);
        valid.then_some(Self::Name(name))
    }

    /// Whether this is a loopback literal or `localhost`.
    pub(crate) fn is_loopback(&self) -> bool {
        match self {
            Self::Ip(ip) => ip.to_canonical().is_loopback(),
            Self::Name(name) => name.eq_ignore_ascii_case("localhost"),
        }
    }
}

/// `port` (the text after `:`, if any) is empty or a number up to 65535;
/// `rest` is what followed the host when there was no `:` (must be empty).
fn valid_port(port: Option<&str>, rest: &str) -> bool {
    match port {
        None => rest.is_empty(),
        Some("") => true,
        Some(p) => {
            p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        }
    }
}

impl HostPolicy {
    /// No check.
    pub(crate) fn off() -> Self {
        Self { allowed: None }
    }

    /// Only loopback literals, `localhost`, the canonical URI's host and
    /// the `extra` hosts (names or IP literals, a port is ignored).
    /// Entries that are not hosts are skipped (the configuration check
    /// reports them, see [`HostPolicy::bad_entry`]).
    pub(crate) fn loopback<'a>(
        canonical_uri: &str,
        extra: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut allowed = Allowed::default();
        let canonical = Parsed::parse(canonical_uri).map(|p| p.host);
        let mut add = |entry: &str| match HostName::parse(entry) {
            Some(HostName::Ip(ip)) => allowed.addresses.push(ip),
            Some(HostName::Name(name)) => allowed.names.push(name.to_ascii_lowercase()),
            None => {}
        };
        if let Some(canonical) = &canonical {
            add(canonical);
        }
        extra.into_iter().for_each(add);
        Self {
            allowed: Some(allowed),
        }
    }

    /// The first of `entries` that is not a host name or IP literal.
    pub(crate) fn bad_entry<'a>(entries: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        entries.into_iter().find(|e| HostName::parse(e).is_none())
    }

    /// Whether a request with this `Host` value may proceed.
    pub(crate) fn allows(&self, host: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let Some(host) = host.and_then(HostName::parse) else {
            return false;
        };
        host.is_loopback()
            || match host {
                HostName::Ip(ip) => allowed.addresses.contains(&ip),
                HostName::Name(name) => allowed
                    .names
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(name)),
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
        let h = HostPolicy::loopback(
            "http://127.0.0.1:3213/mcp",
            ["gateway.local", "[fd00::1]:8443"],
        );
        for ok in [
            "127.0.0.1:3213",
            "127.0.0.2",
            "localhost:3213",
            "LOCALHOST",
            "localhost.",
            "[::1]:3213",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "gateway.local",
            "Gateway.Local:80",
            "[fd00::1]",
        ] {
            assert!(h.allows(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example:3213",
            "127.0.0.1.evil.example",
            "127.0.0.1.evil.example:3213",
            "localhost.evil.example",
            "127.1",
            "0x7f.0.0.1",
            "[::1",
            "::1",
            "[::2]",
            "127.0.0.1:99999",
            "127.0.0.1:80x",
            "user@127.0.0.1",
            "gateway.local.evil",
            "",
            "[::1]x",
            "local host",
        ] {
            assert!(!h.allows(Some(refused)), "{refused}");
        }
        assert!(!h.allows(None));
        assert!(HostPolicy::off().allows(Some("evil.example")));
    }

    #[test]
    fn the_canonical_host_is_allowed_and_bad_entries_are_named() {
        let h = HostPolicy::loopback("https://mcp.example.com/mcp", []);
        assert!(h.allows(Some("mcp.example.com")));
        assert!(h.allows(Some("MCP.example.com:443")));
        assert!(!h.allows(Some("example.com")));
        assert_eq!(
            HostPolicy::bad_entry(["ok.example", "bad host", "x"]),
            Some("bad host")
        );
        assert_eq!(HostPolicy::bad_entry(["ok.example", "[::1]:1"]), None);
    }

    #[test]
    fn a_loopback_listener_accepts_its_own_loopback_origins_only() {
        let p = OriginPolicy::new("http://127.0.0.1:3213/mcp", [])
            .unwrap()
            .with_loopback_port(3213);
        for ok in [
            "http://localhost:3213",
            "http://127.0.0.1:3213",
            "http://[::1]:3213",
            "http://LOCALHOST:3213",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "http://localhost:3214",
            "http://localhost",
            "https://localhost:3213",
            "http://evil.example:3213",
            "http://localhost.evil.example:3213",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
        let default_port = OriginPolicy::default().with_loopback_port(80);
        assert!(default_port.allows("http://localhost"));
        assert!(default_port.allows("http://localhost:80"));
    }
}

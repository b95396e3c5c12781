//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not
//! part of the gateway's API). Each runs one parser on bytes the way a
//! request reaches it, and panics when an invariant of its answer breaks.
//!
//! Inputs that carry headers are written as `name: value` lines, an empty
//! line, then the body, so the committed seeds read like requests.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use serde_json::Value;

use crate::{
    http::origin::{HostPolicy, OriginPolicy},
    mcp::{
        era::{self, Era, MetaView},
        fast_call as quick,
        jsonrpc::{Incoming, classify},
        methods::{self, decode_cursor, encode_cursor},
    },
};

/// The canonical URI the origin and host policies are built for.
const CANONICAL: &str = "http://127.0.0.1:3213/mcp";

/// `name: value` lines up to the first empty line, then the body. Lines
/// that are not a valid header are skipped.
pub fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&b""[..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (headers, body)
}

/// `POST /mcp` up to dispatch: the body parsed, the era detected, every
/// message (each item of a batch) classified, and a modern request put
/// through the 2026-07-28 header and `_meta` checks.
pub fn jsonrpc(data: &[u8]) {
    let (headers, body) = request(data);
    if let Some(Ok(revision)) = era::legacy_header_version(&headers) {
        assert!(
            !revision.is_modern(),
            "a legacy header read as {revision:?}"
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let era = era::detect(&headers, &value);
    let messages = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    for message in messages {
        let Ok(Incoming::Request { id, method, params }) = classify(message) else {
            continue;
        };
        assert!(
            id.is_string() || id.is_i64() || id.is_u64(),
            "a request was classified with the id {id}"
        );
        assert!(params.is_object(), "a request was classified with {params}");
        if era == Era::Modern {
            let checked = era::validate_modern(
                &headers,
                &method,
                MetaView::of(&method, &params),
                methods::is_modern_method(&method),
            );
            if let Ok(revision) = checked {
                assert!(
                    revision.is_modern(),
                    "a modern request read as {revision:?}"
                );
            }
        }
    }
}

/// The `tools/call` fast path against the general path: when
/// `ModernCall::read` reads a call, the general path must read the same
/// request.
pub fn modern_call(body: &[u8]) {
    if let Err(difference) = quick::agrees_with_general(body) {
        panic!("the fast path and the general path disagree: {difference}");
    }
}

/// The `Accept-Encoding` reader (each line one header value): whether a
/// `tools/list` page may be sent gzip-compressed.
pub fn accept_encoding(data: &[u8]) -> bool {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::ACCEPT_ENCODING, value);
        }
    }
    let accepted = crate::mcp::gzip::accepted(&headers);
    if accepted {
        let text = String::from_utf8_lossy(data).to_ascii_lowercase();
        assert!(text.contains("gzip"), "gzip accepted from {text:?}");
    }
    accepted
}

/// The perimeter's parsers: line 1 is a `Host` value, line 2 an `Origin`
/// value, the other lines the origin allow-list. A host allowed on a
/// loopback listener must be a loopback name or address.
pub fn origin_host(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    let origin = lines.next().unwrap_or_default();
    let entries: Vec<&str> = lines.collect();
    let hosts = HostPolicy::loopback(CANONICAL, []);
    if hosts.allows(Some(host)) {
        assert!(is_loopback(host), "host {host:?} passed the loopback check");
    }
    if let Ok(origins) = OriginPolicy::new(CANONICAL, entries.iter().copied()) {
        let _ = origins.allows(origin);
    }
}

/// `host[:port]` names this machine: `localhost` (absolute or not) or a
/// loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name),
    };
    // An absolute name (`localhost.`) is the same name.
    let name = name.strip_suffix('.').unwrap_or(name);
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `tools/list` cursor decoder: any text is refused or names an
/// offset, and an offset's cursor decodes to it.
pub fn cursor(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(offset) = decode_cursor(text)
    {
        assert_eq!(decode_cursor(&encode_cursor(offset)), Some(offset));
    }
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let offset = u64::from_le_bytes(word) as usize;
    assert_eq!(decode_cursor(&encode_cursor(offset)), Some(offset));
}

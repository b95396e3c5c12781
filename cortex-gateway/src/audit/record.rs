//! The audit record: what one line says.

use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

/// Text that is usually one of a few fixed words (a method, an outcome):
/// those are borrowed, so a request does not allocate for them.
pub type Word = Cow<'static, str>;

/// One audit line. Every field is metadata: no token, no argument value,
/// no result content can be represented here.
///
/// The caller's fields are shared with every other line of the same
/// verified caller (computed once per caller, not per request).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When the request arrived; written as RFC 3339, UTC, milliseconds.
    pub time: AuditTime,
    /// The caller as a keyed hash (HMAC-SHA256 of the email, or of the
    /// `sub` without one); `None` before authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Arc<str>>,
    /// The token's `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Arc<str>>,
    /// The OAuth client id (`azp` / `client_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Arc<str>>,
    /// The HTTP method (`POST`, `GET`, `DELETE`, `OPTIONS`).
    pub http_method: Word,
    /// The path (the MCP path, or an operator path).
    pub path: String,
    /// The JSON-RPC method (`tools/call`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Word>,
    /// The tool's public name (`tools/call`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The backend that owns the tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The scope that gated the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Keyed hash (HMAC-SHA256) of the canonical JSON of the arguments:
    /// equal arguments give equal hashes, values cannot be guessed back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_hash: Option<String>,
    /// `tools/list`: how many tools were listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_listed: Option<usize>,
    /// `tools/list`: the `X-Cortex-Backends` filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_filter: Option<Vec<String>>,
    /// The MCP protocol revision of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Word>,
    /// The HTTP status of the response.
    pub status: u16,
    /// `ok`, `tool_error`, `refused`, `rejected` or `error`.
    pub outcome: Word,
    /// A short class for anything but `ok` (`rate_limited`, `origin`,
    /// `unauthenticated`, `scope`, `quarantined`, `backend_timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<Word>,
    /// Milliseconds from arrival to response headers.
    pub latency_ms: f64,
    /// Response body size in bytes, when known (not for streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
}

/// `text` as a [`Word`]: borrowed when it is one of `known`, else its
/// first `max_chars` characters.
pub(crate) fn word(text: &str, known: &[&'static str], max_chars: usize) -> Word {
    match known.iter().find(|k| **k == text) {
        Some(k) => Word::Borrowed(k),
        None => Word::Owned(text.chars().take(max_chars).collect()),
    }
}

/// Outcome and class from the HTTP status, for requests no handler
/// described (refusals before dispatch).
pub fn outcome_of_status(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        200..=399 => ("ok", None),
        401 => ("refused", Some("unauthenticated")),
        403 => ("refused", Some("forbidden")),
        404 => ("rejected", Some("not_found")),
        413 => ("rejected", Some("too_large")),
        429 => ("refused", Some("rate_limited")),
        400..=499 => ("rejected", Some("invalid_request")),
        _ => ("error", Some("internal")),
    }
}

/// A point in time, written as RFC 3339 (UTC, milliseconds). The text is
/// made by the writer thread when the line is serialized, not on the
/// request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditTime(pub std::time::SystemTime);

impl Default for AuditTime {
    fn default() -> Self {
        Self(std::time::UNIX_EPOCH)
    }
}

impl Serialize for AuditTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

/// RFC 3339 text of `t` (UTC, milliseconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn audit_time_is_written_as_rfc3339() {
        let t = AuditTime(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-18T11:06:40.123Z\""
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn known_words_are_borrowed_and_others_cut() {
        assert!(matches!(
            word("POST", &["GET", "POST"], 4),
            Word::Borrowed("POST")
        ));
        let long = "x".repeat(100);
        let cut = word(&long, &["GET"], 64);
        assert!(matches!(cut, Word::Owned(_)));
        assert_eq!(cut.len(), 64);
        assert_eq!(word("é€x", &[], 2), "é€");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_of_status(200), ("ok", None));
        assert_eq!(outcome_of_status(429), ("refused", Some("rate_limited")));
        assert_eq!(outcome_of_status(403).0, "refused");
        assert_eq!(outcome_of_status(502).0, "error");
    }
}

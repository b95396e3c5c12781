//! The audit record: what one line says.

use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

/// Text that is usually one of a few fixed words (a method, an outcome):
/// those are borrowed, so a request does not allocate for them.
pub(crate) type Label = Cow<'static, str>;

/// One audit line. Every field is metadata: no token, no argument value,
/// no result content can be represented here.
///
/// The caller's fields are shared with every other line of the same
/// verified caller (computed once per caller, not per request).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct AuditRecord {
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
    pub http_method: Label,
    /// The path (the MCP path, or an operator path).
    pub path: String,
    /// The JSON-RPC method (`tools/call`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Label>,
    /// The tool's public name (`tools/call`), as sent when it is not in
    /// the catalog, cut to [`TOOL_CHARS`] characters.
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
    /// `true` when `tool` was cut (a name longer than any in the catalog);
    /// absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tool_truncated: bool,
    /// `tools/list`: how many tools were listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_listed: Option<usize>,
    /// `tools/list`: the `X-Cortex-Backends` filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_filter: Option<Vec<String>>,
    /// The MCP protocol revision of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Label>,
    /// The HTTP status of the response.
    pub status: u16,
    /// `ok`, `tool_error`, `refused`, `rejected` or `error`.
    pub outcome: Label,
    /// A short class for anything but `ok` (`rate_limited`, `origin`,
    /// `unauthenticated`, `scope`, `quarantined`, `backend_timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<Label>,
    /// Milliseconds from arrival to response headers.
    pub latency_ms: f64,
    /// Response body size in bytes, when known (not for streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
}

impl AuditRecord {
    /// Appends the record as one line of JSON (without the newline): the
    /// same bytes as serializing it with serde, written without serde's
    /// per-key escaping and dispatch (callgrind: 3,900 instructions per
    /// line instead of 9,600). The test `hand_written_line_matches_serde`
    /// keeps the two identical (it fails when a field is added here or
    /// there only).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        /// A key already written as JSON, then the value as serde_json
        /// writes it (strings escaped the same way).
        fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &[u8], value: &T) {
            out.extend_from_slice(key);
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&Rfc3339::of(self.time.0).text);
        out.push(b'"');
        let optional = [
            (&b",\"caller\":"[..], self.caller.as_deref()),
            (b",\"sub\":", self.sub.as_deref()),
            (b",\"client_id\":", self.client_id.as_deref()),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                field(out, key, v);
            }
        }
        field(out, b",\"http_method\":", &self.http_method);
        field(out, b",\"path\":", &self.path);
        let optional = [
            (&b",\"method\":"[..], self.method.as_deref()),
            (b",\"tool\":", self.tool.as_deref()),
            (b",\"backend\":", self.backend.as_deref()),
            (b",\"scope\":", self.scope.as_deref()),
            (b",\"args_hash\":", self.args_hash.as_deref()),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                field(out, key, v);
            }
        }
        if self.tool_truncated {
            out.extend_from_slice(b",\"tool_truncated\":true");
        }
        if let Some(n) = self.tools_listed {
            field(out, b",\"tools_listed\":", &n);
        }
        if let Some(filter) = &self.backend_filter {
            field(out, b",\"backend_filter\":", filter);
        }
        if let Some(p) = &self.protocol {
            field(out, b",\"protocol\":", p);
        }
        field(out, b",\"status\":", &self.status);
        field(out, b",\"outcome\":", &self.outcome);
        if let Some(class) = &self.error_class {
            field(out, b",\"error_class\":", class);
        }
        field(out, b",\"latency_ms\":", &self.latency_ms);
        if let Some(n) = self.response_bytes {
            field(out, b",\"response_bytes\":", &n);
        }
        out.push(b'}');
    }
}

/// The longest tool name an audit line holds, in characters: the longest
/// a catalog name can be. A longer name (never one of the catalog's) is
/// cut to this and marked with `tool_truncated`.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const TOOL_CHARS: usize = 128;
/// The longest `sub`, `client_id`, `path` or `scope`, in characters.
pub(crate) const ID_CHARS: usize = 256;
/// The longest `backend`, `error_class`, `caller`, `args_hash` or
/// `backend_filter` entry, in characters.
pub(crate) const NAME_CHARS: usize = 64;
/// The longest `http_method`, `method`, `protocol` or `outcome`, in
/// characters.
pub(crate) const WORD_CHARS: usize = 32;
/// The most `backend_filter` entries a line holds.
pub(crate) const FILTER_ENTRIES: usize = 32;
/// What a line says for a JSON-RPC method that is not one of the MCP
/// methods the gateway knows (the name sent is never recorded).
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
pub const UNKNOWN_METHOD: &str = "other";

/// The longest audit line in bytes (without its newline): every text field
/// at its bound in characters, each character at its longest JSON escape
/// (`\u001f`, six bytes), plus the keys, numbers and the time.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]
pub const MAX_LINE_BYTES: usize = 512
    + 6 * (4 * ID_CHARS
        + TOOL_CHARS
        + 4 * NAME_CHARS
        + 4 * WORD_CHARS
        + FILTER_ENTRIES * (NAME_CHARS + 3));

/// The byte index where the `max_chars + 1`-th character of `text` starts,
/// when it has more than `max_chars` characters.
fn cut_at(text: &str, max_chars: usize) -> Option<usize> {
    if text.len() <= max_chars {
        return None;
    }
    text.char_indices().nth(max_chars).map(|(i, _)| i)
}

fn bound_string(text: &mut String, max_chars: usize) -> bool {
    match cut_at(text, max_chars) {
        Some(at) => {
            text.truncate(at);
            true
        }
        None => false,
    }
}

fn bound_shared(text: &mut Arc<str>, max_chars: usize) {
    if let Some(at) = cut_at(text, max_chars) {
        *text = Arc::from(&text[..at]);
    }
}

fn bound_word(text: &mut Label, max_chars: usize) {
    if let Some(at) = cut_at(text, max_chars) {
        *text = Label::Owned(text[..at].to_owned());
    }
}

impl AuditRecord {
    /// Cuts every free-text field to its bound, so that the line is at
    /// most [`MAX_LINE_BYTES`]. Costs a length check per field when
    /// nothing is too long (the usual case).
    pub(crate) fn bound(&mut self) {
        for (text, max) in [(&mut self.caller, NAME_CHARS), (&mut self.sub, ID_CHARS)] {
            if let Some(t) = text {
                bound_shared(t, max);
            }
        }
        if let Some(t) = &mut self.client_id {
            bound_shared(t, ID_CHARS);
        }
        bound_word(&mut self.http_method, WORD_CHARS);
        bound_string(&mut self.path, ID_CHARS);
        for (text, max) in [
            (&mut self.method, WORD_CHARS),
            (&mut self.protocol, WORD_CHARS),
        ] {
            if let Some(t) = text {
                bound_word(t, max);
            }
        }
        if let Some(t) = &mut self.tool
            && bound_string(t, TOOL_CHARS)
        {
            self.tool_truncated = true;
        }
        for (text, max) in [
            (&mut self.backend, NAME_CHARS),
            (&mut self.scope, ID_CHARS),
            (&mut self.args_hash, NAME_CHARS),
        ] {
            if let Some(t) = text {
                bound_string(t, max);
            }
        }
        if let Some(filter) = &mut self.backend_filter {
            filter.truncate(FILTER_ENTRIES);
            for id in filter {
                bound_string(id, NAME_CHARS);
            }
        }
        bound_word(&mut self.outcome, WORD_CHARS);
        if let Some(t) = &mut self.error_class {
            bound_word(t, NAME_CHARS);
        }
    }
}

/// A tool name as the audit line records it: at most [`TOOL_CHARS`]
/// characters (copied, however long the name sent), and whether it was
/// cut.
pub(crate) fn tool_name(name: &str) -> (String, bool) {
    match cut_at(name, TOOL_CHARS) {
        Some(at) => (name[..at].to_owned(), true),
        None => (name.to_owned(), false),
    }
}

/// A JSON-RPC method as the audit line records it: one of the MCP methods
/// (borrowed), else [`UNKNOWN_METHOD`].
pub(crate) fn method_word(method: &str) -> Label {
    match crate::metrics::METHODS.iter().find(|k| **k == method) {
        Some(k) => Label::Borrowed(k),
        None => Label::Borrowed(UNKNOWN_METHOD),
    }
}

/// `text` as a [`Label`]: borrowed when it is one of `known`, else its
/// first `max_chars` characters.
pub(crate) fn word(text: &str, known: &[&'static str], max_chars: usize) -> Label {
    match known.iter().find(|k| **k == text) {
        Some(k) => Label::Borrowed(k),
        None => Label::Owned(text.chars().take(max_chars).collect()),
    }
}

/// Outcome and class from the HTTP status, for requests no handler
/// described (refusals before dispatch).
pub(crate) fn outcome_of_status(status: u16) -> (&'static str, Option<&'static str>) {
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
pub(crate) struct AuditTime(pub std::time::SystemTime);

impl Default for AuditTime {
    fn default() -> Self {
        Self(std::time::UNIX_EPOCH)
    }
}

impl Serialize for AuditTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = Rfc3339::of(self.0);
        serializer.serialize_str(text.as_str())
    }
}

/// RFC 3339 text of `t` (UTC, milliseconds).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    Rfc3339::of(t).as_str().to_owned()
}

/// RFC 3339 text (UTC, milliseconds) built in place, without the
/// formatting machinery: one is made for every audit line.
struct Rfc3339 {
    text: [u8; 24],
}

impl Rfc3339 {
    /// The first instant RFC 3339's four-digit years cannot write
    /// (10000-01-01T00:00:00Z), in seconds since the epoch.
    const PAST_9999: u64 = 253_402_300_800;

    fn of(t: std::time::SystemTime) -> Self {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        if secs >= Self::PAST_9999 {
            // A clock this wrong still gives valid RFC 3339: the last
            // instant that can be written.
            return Self {
                text: *b"9999-12-31T23:59:59.999Z",
            };
        }
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468;
        let (era, doe) = (z / 146_097, z % 146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        let mut text = *b"0000-00-00T00:00:00.000Z";
        for (at, width, n) in [
            (0, 4, year),
            (5, 2, month),
            (8, 2, day),
            (11, 2, rem / 3600),
            (14, 2, rem % 3600 / 60),
            (17, 2, rem % 60),
            (20, 3, u64::from(d.subsec_millis())),
        ] {
            let mut n = n;
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
        Self { text }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.text).unwrap_or("1970-01-01T00:00:00.000Z")
    }
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
        let last = UNIX_EPOCH + Duration::from_millis(Rfc3339::PAST_9999 * 1000 - 1);
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59.999Z");
        // Five-digit years are not RFC 3339: a clock past 9999 writes the
        // last instant that is.
        for past in [Rfc3339::PAST_9999, Rfc3339::PAST_9999 + 86_400 * 400] {
            let t = UNIX_EPOCH + Duration::from_secs(past);
            assert_eq!(rfc3339(t), "9999-12-31T23:59:59.999Z");
        }
    }

    /// Every day from 1970 to 2402 against a plain calendar walk (month
    /// lengths and the Gregorian leap rule), at a time of day that moves.
    #[test]
    fn rfc3339_matches_a_calendar_walk() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..157_800u64 {
            let second = days * 7_919 % 86_400;
            let millis = days % 1000;
            let t = UNIX_EPOCH + Duration::from_millis((days * 86_400 + second) * 1000 + millis);
            let expected = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
                second / 3600,
                second % 3600 / 60,
                second % 60
            );
            assert_eq!(rfc3339(t), expected, "day {days}");
            let length = match month {
                2 if leap(year) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                (day, month) = (1, month + 1);
                if month > 12 {
                    (month, year) = (1, year + 1);
                }
            }
        }
        assert_eq!(year, 2402);
    }

    /// The `time` crate's text for `t`, in the audit line's format (the
    /// reference the hand-written digits are checked and timed against,
    /// ADR 0013).
    fn time_crate_format() -> Vec<time::format_description::BorrowedFormatItem<'static>> {
        #[allow(deprecated)] // `parse` is the runtime parser of time 0.3.
        time::format_description::parse(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z",
        )
        .unwrap()
    }

    /// Instants from 1970 to 9999 (a prime step in milliseconds, so the
    /// time of day and the milliseconds move) agree with the `time` crate.
    #[test]
    fn rfc3339_agrees_with_the_time_crate() {
        let format = time_crate_format();
        let last_ms = Rfc3339::PAST_9999 * 1000 - 1;
        let step = last_ms / 200_003;
        let mut checked = 0;
        for ms in (0..=last_ms).step_by(step as usize).chain([last_ms]) {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            let expected = time::OffsetDateTime::from(t).format(&format).unwrap();
            assert_eq!(rfc3339(t), expected, "{ms} ms after the epoch");
            checked += 1;
        }
        assert!(checked > 200_000);
    }

    /// The A/B of ADR 0013: nanoseconds per audit time, hand-written digits
    /// against the `time` crate, printed (never asserted). Run with
    /// `cargo test --release -p cortex-gateway --lib rfc3339_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run by hand with --release --ignored --nocapture"]
    fn rfc3339_cost_against_the_time_crate() {
        use std::{hint::black_box, time::Instant};
        let format = time_crate_format();
        let base = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let n = 2_000_000u64;
        let mut out = Vec::with_capacity(64);
        for round in 0..3 {
            let start = Instant::now();
            for i in 0..n {
                let t = black_box(base + Duration::from_micros(i * 7_919));
                out.clear();
                out.extend_from_slice(Rfc3339::of(t).as_str().as_bytes());
                black_box(&out);
            }
            let own = start.elapsed().as_nanos() as f64 / n as f64;
            let start = Instant::now();
            for i in 0..n {
                let t = black_box(base + Duration::from_micros(i * 7_919));
                out.clear();
                time::OffsetDateTime::from(t)
                    .format_into(&mut out, &format)
                    .unwrap();
                black_box(&out);
            }
            let library = start.elapsed().as_nanos() as f64 / n as f64;
            println!(
                "round {round}: hand-written {own:.0} ns, time crate {library:.0} ns, \
                 time / hand-written {:.2}",
                library / own
            );
        }
    }

    /// Records with every optional field absent, every one present, and
    /// text that needs escaping.
    fn sample_records() -> Vec<AuditRecord> {
        let full = AuditRecord {
            time: AuditTime(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            caller: Some("c0ffee".into()),
            sub: Some("user \"quoted\" \\ \u{1}\u{7f} é 🦀".into()),
            client_id: Some("agent".into()),
            http_method: "POST".into(),
            path: "/mcp\n".into(),
            method: Some("tools/call".into()),
            tool: Some("crm_find".into()),
            backend: Some("crm".into()),
            scope: Some("crm:read".into()),
            args_hash: Some("ab".repeat(32)),
            tool_truncated: true,
            tools_listed: Some(1000),
            backend_filter: Some(vec!["crm".into(), "d\"ocs".into()]),
            protocol: Some("2026-07-28".into()),
            status: 200,
            outcome: "ok".into(),
            error_class: Some("backend_timeout".into()),
            latency_ms: 1.234_567_8,
            response_bytes: Some(u64::MAX),
        };
        let mut odd = full.clone();
        odd.latency_ms = f64::NAN;
        odd.backend_filter = Some(Vec::new());
        let mut whole = full.clone();
        whole.latency_ms = 3.0;
        vec![AuditRecord::default(), full, odd, whole]
    }

    #[test]
    fn hand_written_line_matches_serde() {
        for record in sample_records() {
            let mut line = Vec::new();
            record.write_json(&mut line);
            let serde = serde_json::to_vec(&record).unwrap();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    /// Every text field far over its bound, in the characters JSON writes
    /// longest: the line stays within [`MAX_LINE_BYTES`], the tool name is
    /// cut to [`TOOL_CHARS`] characters and marked.
    #[test]
    fn bounded_lines_stay_under_the_maximum() {
        let mut worst = sample_records().swap_remove(1);
        worst.tool_truncated = false;
        let huge = |c: char| c.to_string().repeat(300_000);
        for c in ['\u{1}', '🦀', 'x'] {
            let mut r = worst.clone();
            r.caller = Some(huge(c).into());
            r.sub = Some(huge(c).into());
            r.client_id = Some(huge(c).into());
            r.http_method = huge(c).into();
            r.path = huge(c);
            r.method = Some(huge(c).into());
            r.tool = Some(huge(c));
            r.backend = Some(huge(c));
            r.scope = Some(huge(c));
            r.args_hash = Some(huge(c));
            r.backend_filter = Some(vec![huge(c); 1000]);
            r.protocol = Some(huge(c).into());
            r.outcome = huge(c).into();
            r.error_class = Some(huge(c).into());
            r.bound();
            let mut line = Vec::new();
            r.write_json(&mut line);
            assert!(line.len() <= MAX_LINE_BYTES, "{c:?}: {}", line.len());
            let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(parsed["tool"].as_str().unwrap().chars().count(), TOOL_CHARS);
            assert_eq!(parsed["tool_truncated"], true);
            assert_eq!(
                parsed["backend_filter"].as_array().unwrap().len(),
                FILTER_ENTRIES
            );
            if c == '\u{1}' {
                // The bound is reached: it is not loose by much.
                assert!(line.len() > MAX_LINE_BYTES * 3 / 4, "{}", line.len());
            }
        }
        // A name within the bound is kept whole and not marked.
        let mut r = worst.clone();
        r.tool = Some("t".repeat(TOOL_CHARS));
        r.bound();
        assert!(!r.tool_truncated);
        assert_eq!(tool_name(&"é".repeat(500)).0.chars().count(), TOOL_CHARS);
        assert_eq!(tool_name("crm_find"), ("crm_find".to_string(), false));
    }

    #[test]
    fn only_known_methods_are_recorded_as_sent() {
        assert!(matches!(
            method_word("tools/call"),
            Label::Borrowed("tools/call")
        ));
        assert_eq!(method_word(&"x".repeat(300_000)), UNKNOWN_METHOD);
        assert_eq!(method_word("tools/call2"), UNKNOWN_METHOD);
    }

    #[test]
    fn known_words_are_borrowed_and_others_cut() {
        assert!(matches!(
            word("POST", &["GET", "POST"], 4),
            Label::Borrowed("POST")
        ));
        let long = "x".repeat(100);
        let cut = word(&long, &["GET"], 64);
        assert!(matches!(cut, Label::Owned(_)));
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

/// The hand-written line against serde on generated records: every field
/// present or absent, any text (quotes, controls, non-ASCII), any float.
#[cfg(test)]
mod properties {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::{collection::vec, option, prelude::*};

    use super::{AuditRecord, AuditTime, Label};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,24}", "[\"\\\\\\u{0}-\\u{1f}\\u{7f}a-z]{0,12}"]
    }

    fn word() -> impl Strategy<Value = Label> {
        prop_oneof![
            Just(Label::Borrowed("tools/call")),
            text().prop_map(Label::Owned)
        ]
    }

    fn shared() -> impl Strategy<Value = Option<std::sync::Arc<str>>> {
        option::of(text().prop_map(Into::into))
    }

    fn record() -> impl Strategy<Value = AuditRecord> {
        let who = (
            0..=300_000_000_000_000u64,
            shared(),
            shared(),
            shared(),
            word(),
            text(),
        );
        let what = (
            option::of(word()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(text()),
            option::of(any::<usize>()),
            option::of(vec(text(), 0..4)),
            option::of(word()),
        );
        let how = (
            any::<bool>(),
            any::<u16>(),
            word(),
            option::of(word()),
            any::<f64>(),
            option::of(any::<u64>()),
        );
        (who, what, how).prop_map(|(who, what, how)| {
            let (millis, caller, sub, client_id, http_method, path) = who;
            let (method, tool, backend, scope, args_hash, tools_listed, backend_filter, protocol) =
                what;
            let (tool_truncated, status, outcome, error_class, latency_ms, response_bytes) = how;
            AuditRecord {
                time: AuditTime(UNIX_EPOCH + Duration::from_millis(millis)),
                caller,
                sub,
                client_id,
                http_method,
                path,
                method,
                tool,
                backend,
                scope,
                args_hash,
                tool_truncated,
                tools_listed,
                backend_filter,
                protocol,
                status,
                outcome,
                error_class,
                latency_ms,
                response_bytes,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_hand_written_line_is_the_serde_line(record in record()) {
            let mut line = Vec::new();
            record.write_json(&mut line);
            prop_assert!(!line.contains(&b'\n'), "one line: {}", String::from_utf8_lossy(&line));
            let parsed: serde_json::Value = serde_json::from_slice(&line)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&line))))?;
            prop_assert_eq!(parsed, serde_json::to_value(&record).unwrap());
            prop_assert_eq!(line, serde_json::to_vec(&record).unwrap());
        }
    }
}

//! The three report formats: a table for people, JSON and JUnit XML for CI.

use std::fmt::Write as _;

use crate::report::{CheckResult, Report, Status};

/// An output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A table, one line per check, with the evidence under each failure.
    #[default]
    Human,
    /// The report as JSON (see [`Report`]).
    Json,
    /// JUnit XML, one test case per check.
    Junit,
}

/// Renders the report in `format`; `colour` applies to the human table only.
pub fn render(report: &Report, format: Format, colour: bool) -> String {
    match format {
        Format::Human => human(report, colour),
        Format::Json => json(report),
        Format::Junit => junit(report),
    }
}

fn paint(colour: bool, status: Status) -> (&'static str, &'static str) {
    if !colour {
        return ("", "");
    }
    let code = match status {
        Status::Pass => "\x1b[32m",
        Status::Fail => "\x1b[1;31m",
        Status::Warn => "\x1b[33m",
        Status::Skip => "\x1b[2m",
    };
    (code, "\x1b[0m")
}

/// The table for people.
pub fn human(report: &Report, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cortex-conformance: {} (user tokens: {})\n",
        report.target, report.user_tokens
    );
    let width = report.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in &report.checks {
        let (on, off) = paint(colour, c.status);
        let _ = writeln!(
            out,
            "{on}{}{off}  {:width$}  {}",
            c.status.label(),
            c.id,
            c.description
        );
        if c.status != Status::Pass || !c.findings.is_empty() {
            details(&mut out, c);
        }
    }
    let s = &report.summary;
    let (fail_on, fail_off) = paint(colour && s.failed > 0, Status::Fail);
    let _ = writeln!(
        out,
        "\n{} checks: {} passed, {fail_on}{} failed{fail_off}, {} warnings, {} skipped ({:.1} s)",
        report.checks.len(),
        s.passed,
        s.failed,
        s.warned,
        s.skipped,
        report.duration.as_secs_f64()
    );
    out
}

fn details(out: &mut String, c: &CheckResult) {
    details_with(out, c, true);
}

fn details_with(out: &mut String, c: &CheckResult, message: bool) {
    let pad = "      ";
    if message && !c.message.is_empty() {
        let _ = writeln!(out, "{pad}{}", c.message);
    }
    for f in &c.findings {
        let _ = writeln!(out, "{pad}- {}", f.problem);
        if let Some(sent) = &f.sent {
            let _ = writeln!(out, "{pad}  sent: {sent}");
        }
        if let Some(received) = &f.received {
            let _ = writeln!(out, "{pad}  got:  {received}");
        }
    }
    if matches!(c.status, Status::Fail | Status::Warn) {
        let _ = writeln!(out, "{pad}contract {}: {}", c.section, c.requires);
    }
}

/// The report as pretty JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The findings and the rule, without the message (already an attribute).
fn evidence(c: &CheckResult) -> String {
    let mut text = String::new();
    details_with(&mut text, c, false);
    text
}

/// JUnit XML: one `<testcase>` per check, classname = the check's group.
pub fn junit(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"cortex-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        report.checks.len(),
        s.failed,
        s.skipped,
        report.duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
        xml_escape(&report.target),
        report.checks.len(),
        s.failed,
        s.skipped,
        report.duration.as_secs_f64()
    );
    for c in &report.checks {
        let group = c.id.split_once('.').map_or(c.id, |(g, _)| g);
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\"",
            xml_escape(group),
            xml_escape(c.id)
        );
        match c.status {
            Status::Pass => {
                let _ = writeln!(out, "/>");
            }
            Status::Fail => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml_escape(&c.message),
                    xml_escape(&evidence(c))
                );
            }
            Status::Warn => {
                let _ = writeln!(
                    out,
                    ">\n      <system-out>warning: {}</system-out>\n    </testcase>",
                    xml_escape(&evidence(c))
                );
            }
            Status::Skip => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml_escape(&c.message)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

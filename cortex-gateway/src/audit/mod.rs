//! Audit trail: one JSON line per MCP request (refusals included), written
//! off the request path by a writer thread.
//!
//! A line says who (a keyed hash of the caller, `sub`, client id), what
//! (method, tool, backend, the scope that gated it, a keyed hash of the
//! arguments; for `tools/list` the count and the backend filter), and how
//! it went (status, outcome, error class, latency, response size, protocol
//! revision). It never holds a token, an argument value or result content:
//! the record type has no field that could carry one.
//!
//! A line is bounded whatever the caller sends: a method that is not an
//! MCP method is recorded as [`UNKNOWN_METHOD`], a tool name longer than
//! [`TOOL_CHARS`] (so not in the catalog) is cut and marked
//! `tool_truncated`, and every other text field is cut to its bound, so no
//! line exceeds [`MAX_LINE_BYTES`].
//!
//! The gateway's request stack opens a per-request scope around each
//! audited path; handlers describe the
//! request with [`note`], [`note_caller`], [`note_arguments`],
//! [`note_outcome`] and [`tool_call`] (no-ops outside an audited request).

mod file;
mod postgres;
mod pseudonym;
mod record;
mod refusals;
mod scope;
mod sink;

use std::time::Duration;

use crate::config_error::ConfigError;

pub(crate) use file::Rotation;
pub(crate) use postgres::AuditDatabase;
pub(crate) use pseudonym::Pseudonymizer;
pub(crate) use record::method_word;
pub(crate) use record::rfc3339;
pub(crate) use record::{AuditRecord, ID_CHARS};
#[cfg(feature = "testing")]
pub use record::{MAX_LINE_BYTES, TOOL_CHARS, UNKNOWN_METHOD};
pub(crate) use refusals::{Refusal, Refusals};
pub(crate) use scope::{
    Auditor, note, note_arguments, note_caller, note_link, note_outcome, note_trace, peer,
};
pub(crate) use scope::{audited_from, audited_item, connect_peer};
pub(crate) use sink::{AuditSink, AuditWriter};

/// Starts the audit writer: lines go to `file` (`-`: standard output),
/// to `database`, or to both; with neither, to standard output. Returns
/// the database tasks (abort them when the gateway goes).
pub(crate) fn start_sink(
    file: Option<&std::path::Path>,
    rotation: Rotation,
    database: Option<AuditDatabase>,
) -> Result<(AuditSink, AuditWriter, Vec<tokio::task::JoinHandle<()>>), ConfigError> {
    let reopen_failures = std::sync::Arc::default();
    let primary: Option<Box<dyn sink::Output>> = match file {
        Some(path) if path.as_os_str() != "-" => Some(Box::new(
            file::AuditFile::open(path, rotation, std::sync::Arc::clone(&reopen_failures))
                .map_err(|e| ConfigError::new("CORTEX_AUDIT_FILE", e.to_string()))?,
        )),
        None if database.is_some() => None,
        _ => Some(sink::stdout()),
    };
    let (feed, database) = match database {
        Some(d) => {
            let (tx, rx) = postgres::queue();
            (Some(tx), Some((d, rx)))
        }
        None => (None, None),
    };
    let (sink, writer) = AuditSink::start(sink::Outputs {
        primary,
        database: feed,
        reopen_failures,
    });
    let tasks = match database {
        Some((d, rx)) => d.start(rx, sink.drops()),
        None => Vec::new(),
    };
    Ok((sink, writer, tasks))
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The backend answered with a result.
    Ok,
    /// The gateway refused (scope, unsafe claim) without calling a backend.
    Refused,
    /// The backend refused or failed.
    BackendError,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::BackendError => "tool_error",
        }
    }
}

/// Records the tool a `tools/call` names: as sent, or its first
/// [`TOOL_CHARS`] characters, marked as cut, when it is longer (no name in
/// the catalog is).
pub(crate) fn note_tool(name: &str) {
    note(|r| {
        let (tool, cut) = record::tool_name(name);
        r.tool = Some(tool);
        r.tool_truncated = cut;
    });
}

/// Records one tool call: in the request's audit line, and as a trace
/// event on the `cortex_gateway::audit` target.
pub(crate) fn tool_call(
    tool: &str,
    backend: &str,
    scope: &str,
    outcome: Outcome,
    latency: Duration,
) {
    note(|r| {
        if r.tool.as_deref() != Some(tool) {
            r.tool = Some(tool.to_string());
        }
        r.backend = Some(backend.to_string());
        r.scope = Some(scope.to_string());
        r.outcome = outcome.as_str().into();
        if outcome == Outcome::Refused && r.error_class.is_none() {
            r.error_class = Some("scope".into());
        }
    });
    tracing::debug!(
        target: "cortex_gateway::audit",
        tool,
        backend,
        scope,
        outcome = outcome.as_str(),
        latency_ms = latency.as_millis() as u64,
        "tool call"
    );
}

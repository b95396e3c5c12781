//! Audit: one structured line per tool call (tool, backend, outcome,
//! latency), on the `cortex_gateway::audit` tracing target. It never carries
//! tokens or arguments. Pseudonymized identities and durable storage come
//! with the audit issue.

use std::time::Duration;

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
            Self::BackendError => "backend_error",
        }
    }
}

/// Records one tool call.
pub fn tool_call(tool: &str, backend: &str, scope: &str, outcome: Outcome, latency: Duration) {
    tracing::info!(
        target: "cortex_gateway::audit",
        tool,
        backend,
        scope,
        outcome = outcome.as_str(),
        latency_ms = latency.as_millis() as u64,
        "tool call"
    );
}

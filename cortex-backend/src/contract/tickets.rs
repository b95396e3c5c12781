//! `report_missing_capability` and `list_tickets`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much a missing capability hurts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The user could not finish.
    Blocking,
    /// A workaround exists.
    Inconvenient,
    /// Would be nice.
    NiceToHave,
}

/// `report_missing_capability` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingCapabilityReport {
    /// What the agent wanted to do.
    pub what_i_wanted: String,
    /// What the user was trying to achieve.
    pub user_intent: String,
    /// How much it hurts.
    pub severity: Severity,
    /// The tool the agent was using, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tool: Option<String>,
    /// A suggested shape of the missing tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_shape: Option<Value>,
}

/// `report_missing_capability` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketReceipt {
    /// The ticket's id.
    pub ticket_id: String,
    /// Whether an open ticket already covered it.
    pub deduplicated: bool,
    /// A message for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_message: Option<String>,
}

/// `list_tickets` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListTicketsParams {
    /// Filter by status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Filter by severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One ticket, as listed to its author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// The ticket's id.
    pub ticket_id: String,
    /// `open`, `planned`, `done`, `declined`, ...
    pub status: String,
    /// Severity.
    pub severity: Severity,
    /// What was wanted.
    pub what_i_wanted: String,
    /// The user's intent.
    pub user_intent: String,
    /// ISO 8601 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// `list_tickets` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketList {
    /// The caller's tickets.
    pub tickets: Vec<Ticket>,
}

//! The wire types of the backend contract (`contract.md`, version 1).
//!
//! Every type serializes exactly as on the wire: field names in camelCase,
//! optional fields absent when `None`. Fields that the contract allows to be
//! `null` *and* absent (`Metric::delta`, `Metric::status`) use
//! `Option<Option<T>>` so the difference survives a round trip.
//!
//! The JSON Schema files in `schemas/` are generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The default path of the contract endpoint.
pub const DEFAULT_PATH: &str = "/api/cortex/backend";

/// The `X-Cortex-*` headers a gateway sends with user calls. They are a
/// convenience copy of the token's claims and never override them.
pub mod headers {
    /// The caller's `sub`.
    pub const USER_ID: &str = "x-cortex-user-id";
    /// The caller's email.
    pub const USER_EMAIL: &str = "x-cortex-user-email";
    /// The caller's role, or empty.
    pub const USER_ROLE: &str = "x-cortex-user-role";
    /// The caller's pool, or empty.
    pub const USER_POOL: &str = "x-cortex-user-pool";
    /// The caller's scopes, space-separated.
    pub const SCOPES: &str = "x-cortex-scopes";
    /// All of them, in contract order.
    pub const ALL: [&str; 5] = [USER_ID, USER_EMAIL, USER_ROLE, USER_POOL, SCOPES];

    use std::borrow::Cow;

    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

    /// The prefix of an encoded value (RFC 8187 `ext-value`, no language).
    pub const ENCODED_PREFIX: &str = "UTF-8''";

    /// RFC 8187 `attr-char`: what stays unencoded in an `ext-value`.
    const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');

    /// The header value carrying a claim. Visible ASCII and spaces are sent
    /// as they are (what every contract backend reads today); a value with
    /// anything else (non-ASCII such as `josé`, control characters such as
    /// CR or LF) or that itself starts with `UTF-8''` is sent as an RFC 8187
    /// `ext-value`, `UTF-8''` followed by the percent-encoded UTF-8 bytes,
    /// so it is faithful and can never break out of its header line.
    pub fn encode(value: &str) -> Cow<'_, str> {
        let plain =
            value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) && !starts_with_prefix(value);
        if plain {
            Cow::Borrowed(value)
        } else {
            Cow::Owned(format!(
                "{ENCODED_PREFIX}{}",
                utf8_percent_encode(value, ATTR_CHAR)
            ))
        }
    }

    /// Reads a header value written by [`encode`]: an `ext-value` is
    /// decoded (`None` when its bytes are not UTF-8), anything else is the
    /// value itself.
    pub fn decode(value: &str) -> Option<Cow<'_, str>> {
        if !starts_with_prefix(value) {
            return Some(Cow::Borrowed(value));
        }
        percent_decode_str(&value[ENCODED_PREFIX.len()..])
            .decode_utf8()
            .ok()
    }

    fn starts_with_prefix(value: &str) -> bool {
        value
            .get(..ENCODED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ENCODED_PREFIX))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn plain_values_pass_others_round_trip() {
            for plain in ["ana@example.com", "mcp:crm:read mcp:docs:read", "", "50%"] {
                assert_eq!(encode(plain), plain);
                assert_eq!(decode(plain).unwrap(), plain);
            }
            for (value, wire) in [
                ("josé@example.com", "UTF-8''jos%C3%A9%40example.com"),
                ("Zoë", "UTF-8''Zo%C3%AB"),
                ("a\r\nX-Injected: 1", "UTF-8''a%0D%0AX-Injected%3A%201"),
                ("UTF-8''x", "UTF-8''UTF-8%27%27x"),
                ("tab\there", "UTF-8''tab%09here"),
            ] {
                let encoded = encode(value);
                assert_eq!(encoded, wire);
                assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
                assert_eq!(decode(&encoded).unwrap(), value);
            }
            assert!(decode("UTF-8''%FF").is_none());
        }
    }
}

/// The reserved method names (contract §3). Any other name is a tool call.
pub mod methods {
    /// Returns the tool catalog. Required.
    pub const LIST_TOOLS: &str = "list_tools";
    /// Returns help sections.
    pub const GET_HELP: &str = "get_help";
    /// Returns the caller's effective identity in this backend.
    pub const WHOAMI: &str = "whoami";
    /// Returns aggregate metrics.
    pub const GET_SNAPSHOT: &str = "get_snapshot";
    /// Returns the prompt catalog.
    pub const LIST_PROMPTS: &str = "list_prompts";
    /// Renders one prompt.
    pub const GET_PROMPT: &str = "get_prompt";
    /// Returns the resource templates.
    pub const LIST_RESOURCE_TEMPLATES: &str = "list_resource_templates";
    /// Reads one resource.
    pub const READ_RESOURCE: &str = "read_resource";
    /// Files a missing-capability ticket.
    pub const REPORT_MISSING_CAPABILITY: &str = "report_missing_capability";
    /// Lists the caller's own tickets.
    pub const LIST_TICKETS: &str = "list_tickets";

    /// Every reserved name.
    pub const RESERVED: [&str; 10] = [
        LIST_TOOLS,
        GET_HELP,
        WHOAMI,
        GET_SNAPSHOT,
        LIST_PROMPTS,
        GET_PROMPT,
        LIST_RESOURCE_TEMPLATES,
        READ_RESOURCE,
        REPORT_MISSING_CAPABILITY,
        LIST_TICKETS,
    ];

    /// The methods a technical token may call (contract §2).
    pub const DISCOVERY: [&str; 4] = [
        LIST_TOOLS,
        LIST_PROMPTS,
        LIST_RESOURCE_TEMPLATES,
        GET_SNAPSHOT,
    ];

    /// Whether `name` is one of the reserved method names.
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.contains(&name)
    }

    /// Whether `name` may be called with a technical token.
    pub fn is_discovery(name: &str) -> bool {
        DISCOVERY.contains(&name)
    }
}

/// The request body: `{"method": "<name>", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestEnvelope {
    /// A reserved method name or a tool name.
    pub method: String,
    /// The method's parameters; absent means `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// The error body of every non-2xx answer (contract §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person or an agent.
    pub error: String,
    /// The OAuth scope the token lacks. Present only on a scope refusal; its
    /// absence on a 403 means the app's own ACL said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
    /// (ext) A stable machine-readable code such as `unknown_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Any further detail (for example `topics` on an unknown help topic).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ErrorBody {
    /// An error body with only the message.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            required: None,
            code: None,
            details: Map::new(),
        }
    }

    /// Sets the machine-readable code.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the missing scope.
    #[must_use]
    pub fn required(mut self, scope: impl Into<String>) -> Self {
        self.required = Some(scope.into());
        self
    }

    /// Adds a detail field.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: Value) -> Self {
        self.details.insert(key.into(), value);
        self
    }
}

/// Deprecation notice of a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deprecation {
    /// ISO 8601 date after which the tool may disappear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// The tool to use instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// Why it is deprecated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// MCP tool annotations (hints only, never trusted for security).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    /// A display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The tool does not modify anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may destroy data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Calling twice with the same arguments has no further effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool talks to the outside world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// How the gateway treats a tool's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultKind {
    /// Any JSON value; the gateway wraps it for MCP.
    #[default]
    Json,
    /// Already an MCP tool result (`McpToolResult`).
    Mcp,
}

/// One tool of a backend's catalog (contract §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolDescriptor {
    /// Unique in the backend, `^[A-Za-z0-9_-]{1,64}$`.
    pub name: String,
    /// OAuth scope required to see and call the tool.
    pub scope: String,
    /// What the tool does, written for an LLM.
    pub description: String,
    /// Simplified parameter notation (`{"query": "string", "limit": "number?"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// A JSON Schema with root `"type": "object"`; wins over `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Semver of the tool's contract; absent means 1.0.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Deprecation notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecation>,
    /// (ext) Human display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// (ext) JSON Schema of the result object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// (ext) MCP tool annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotations>,
    /// (ext) `json` (default) or `mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_kind: Option<ResultKind>,
}

impl ToolDescriptor {
    /// The input schema the gateway publishes: `inputSchema` when present,
    /// else the converted `params`, else an empty object schema.
    pub fn effective_input_schema(&self) -> Result<Value, crate::params::ParamsError> {
        if let Some(schema) = &self.input_schema {
            return Ok(schema.clone());
        }
        match &self.params {
            Some(params) => crate::params::params_to_schema(params),
            None => Ok(crate::params::empty_object_schema()),
        }
    }
}

/// `list_tools` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolList {
    /// The catalog.
    pub tools: Vec<ToolDescriptor>,
}

/// One argument of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptArgument {
    /// Argument name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the prompt needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// One prompt of a backend's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptDescriptor {
    /// Unique in the backend.
    pub name: String,
    /// What the prompt does.
    pub description: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<PromptArgument>>,
    /// OAuth scope required to see and render it.
    pub scope: String,
}

/// `list_prompts` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptList {
    /// The prompts.
    pub prompts: Vec<PromptDescriptor>,
}

/// `get_prompt` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetPromptParams {
    /// The prompt's name.
    pub name: String,
    /// Argument values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<BTreeMap<String, String>>,
}

/// Who speaks a prompt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// The content of a prompt message (text only in contract v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PromptContent {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
}

/// One message of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: PromptContent,
}

impl PromptMessage {
    /// A user text message.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: PromptContent::Text { text: text.into() },
        }
    }

    /// An assistant text message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: PromptContent::Text { text: text.into() },
        }
    }
}

/// `get_prompt` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetPromptResult {
    /// Optional description of the rendered prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The messages.
    pub messages: Vec<PromptMessage>,
}

/// A resource template (RFC 6570 URI template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplate {
    /// E.g. `docs://document/{id}`; the scheme routes reads to this backend.
    pub uri_template: String,
    /// Name.
    pub name: String,
    /// What the resources are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// OAuth scope required to read.
    pub scope: String,
}

impl ResourceTemplate {
    /// Whether `uri` is one of the URIs this template describes, matched
    /// the way a backend routes `read_resource` (RFC 6570 level 1 and
    /// `{+name}`: `{name}` matches a non-empty run without `/`, `{+name}`
    /// any non-empty run). A gateway uses it to apply the matching
    /// template's scope.
    pub fn matches(&self, uri: &str) -> bool {
        uri_template_matches(&self.uri_template, uri)
    }
}

/// Whether `uri` matches the URI template `template` (see
/// [`ResourceTemplate::matches`]).
pub fn uri_template_matches(template: &str, uri: &str) -> bool {
    crate::backend::match_template(template, uri).is_some()
}

/// `list_resource_templates` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplateList {
    /// The templates.
    pub resource_templates: Vec<ResourceTemplate>,
}

/// `read_resource` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadResourceParams {
    /// The URI to read.
    pub uri: String,
}

/// One content item of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceContent {
    /// The URI.
    pub uri: String,
    /// MIME type.
    pub mime_type: String,
    /// Text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// `read_resource` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadResourceResult {
    /// The contents.
    pub contents: Vec<ResourceContent>,
}

/// A metric's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MetricValue {
    /// A number (kept as written: integers stay integers).
    Number(serde_json::Number),
    /// A string.
    Text(String),
}

impl From<i64> for MetricValue {
    fn from(v: i64) -> Self {
        Self::Number(v.into())
    }
}

impl From<f64> for MetricValue {
    fn from(v: f64) -> Self {
        serde_json::Number::from_f64(v).map_or_else(|| Self::Text(v.to_string()), Self::Number)
    }
}

impl From<&str> for MetricValue {
    fn from(v: &str) -> Self {
        Self::Text(v.into())
    }
}

impl From<String> for MetricValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

/// A traffic-light status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricStatus {
    /// Fine.
    Green,
    /// Watch.
    Orange,
    /// Act.
    Red,
}

/// One metric of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metric {
    /// Stable key.
    pub key: String,
    /// Display label.
    pub label: String,
    /// The value.
    pub value: MetricValue,
    /// Unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Change since the last period; may be `null`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schemars(with = "Option<serde_json::Number>")]
    pub delta: Option<Option<serde_json::Number>>,
    /// Traffic light; may be `null`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "nullable")]
    #[schemars(with = "Option<MetricStatus>")]
    pub status: Option<Option<MetricStatus>>,
    /// Link to the app's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

impl Metric {
    /// A metric with a key, label and value.
    pub fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        value: impl Into<MetricValue>,
    ) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            value: value.into(),
            unit: None,
            delta: None,
            status: None,
            href: None,
        }
    }
}

/// A titled group of metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotSection {
    /// Title.
    pub title: String,
    /// Metrics.
    pub metrics: Vec<Metric>,
}

/// `get_snapshot` result: aggregates only, never per-user data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Backend id.
    pub backend: String,
    /// ISO 8601 time of generation.
    pub generated_at: String,
    /// Title.
    pub title: String,
    /// The headline metrics.
    pub headline: Vec<Metric>,
    /// Further sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<SnapshotSection>>,
    /// A hint for the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

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

/// `get_help` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetHelpParams {
    /// One topic; absent means all sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The caller's identity as the `X-Cortex-*` headers carry it, and as
/// `whoami` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserContext {
    /// The token's `sub`.
    pub sub: String,
    /// The token's email claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Role, from the configured claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Pool, from the configured claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

/// `whoami` result of an SDK backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The backend's id.
    pub backend: String,
    /// The validated identity.
    #[serde(flatten)]
    pub user: UserContext,
    /// The tools this caller may call here.
    pub tools: Vec<String>,
}

/// A rich MCP tool result, returned as-is by tools with `resultKind: "mcp"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpToolResult {
    /// Content blocks.
    pub content: Vec<ContentBlock>,
    /// Structured result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// Whether the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// An MCP content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, base64.
    Image {
        /// Base64 data.
        data: String,
        /// MIME type.
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
    /// Audio, base64.
    Audio {
        /// Base64 data.
        data: String,
        /// MIME type.
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
    /// A link to a resource.
    ResourceLink {
        /// The URI.
        uri: String,
        /// Name.
        name: String,
        /// Description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// MIME type.
        #[serde(rename = "mimeType", default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
    },
    /// An embedded resource.
    Resource {
        /// The resource.
        resource: EmbeddedResource,
    },
}

/// An embedded resource of a content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedResource {
    /// The URI.
    pub uri: String,
    /// MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// Serde helpers for fields that may be absent, `null` or a value.
mod nullable {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

/// The JSON Schema (draft 2020-12) of every contract shape, as
/// `(file name, schema)`: the source of the checked-in `schemas/` folder.
pub fn json_schemas() -> Vec<(&'static str, Value)> {
    fn one<T: JsonSchema>(file: &'static str, title: &str) -> (&'static str, Value) {
        let mut schema = schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>()
            .to_value();
        if let Value::Object(map) = &mut schema {
            map.insert(
                "$id".into(),
                Value::String(format!("https://cortex.invalid/schemas/{file}")),
            );
            map.insert("title".into(), Value::String(title.into()));
        }
        (file, schema)
    }
    vec![
        one::<RequestEnvelope>("request-envelope.schema.json", "Request envelope"),
        one::<ErrorBody>("error-body.schema.json", "Error body"),
        one::<ToolDescriptor>("tool-descriptor.schema.json", "Tool descriptor"),
        one::<ToolList>("tool-list.schema.json", "list_tools result"),
        one::<PromptDescriptor>("prompt-descriptor.schema.json", "Prompt descriptor"),
        one::<PromptList>("prompt-list.schema.json", "list_prompts result"),
        one::<GetPromptParams>("get-prompt-params.schema.json", "get_prompt params"),
        one::<GetPromptResult>("get-prompt-result.schema.json", "get_prompt result"),
        one::<ResourceTemplate>("resource-template.schema.json", "Resource template"),
        one::<ResourceTemplateList>(
            "resource-template-list.schema.json",
            "list_resource_templates result",
        ),
        one::<ReadResourceParams>("read-resource-params.schema.json", "read_resource params"),
        one::<ReadResourceResult>("read-resource-result.schema.json", "read_resource result"),
        one::<ResourceContent>("resource-content.schema.json", "Resource content"),
        one::<Snapshot>("snapshot.schema.json", "get_snapshot result"),
        one::<Metric>("metric.schema.json", "Metric"),
        one::<MissingCapabilityReport>(
            "report-missing-capability-params.schema.json",
            "report_missing_capability params",
        ),
        one::<TicketReceipt>(
            "ticket-receipt.schema.json",
            "report_missing_capability result",
        ),
        one::<ListTicketsParams>("list-tickets-params.schema.json", "list_tickets params"),
        one::<TicketList>("ticket-list.schema.json", "list_tickets result"),
        one::<GetHelpParams>("get-help-params.schema.json", "get_help params"),
        one::<UserContext>("user-context.schema.json", "User context"),
        one::<WhoAmI>("whoami.schema.json", "whoami result (cortex-backend SDK)"),
        one::<McpToolResult>(
            "mcp-tool-result.schema.json",
            "Tool result with resultKind mcp",
        ),
    ]
}

//! The wire types of the backend contract (`contract.md`, version 1).
//!
//! Every type serializes exactly as on the wire: field names in camelCase,
//! optional fields absent when `None`. Fields that the contract allows to be
//! `null` *and* absent (`Metric::delta`, `Metric::status`) use
//! `Option<Option<T>>` so the difference survives a round trip.
//!
//! The JSON Schema files in `schemas/` are generated from these types.
//!
//! The types are grouped by method family in submodules and re-exported
//! here, so `cortex_backend::contract::ToolDescriptor` and the like are the
//! paths to use.

mod envelope;
mod identity;
mod prompts;
mod resources;
mod schemas;
mod snapshot;
mod tickets;
mod tools;

pub use envelope::{ErrorBody, RequestEnvelope};
pub use identity::{GetHelpParams, UserContext, WhoAmI};
pub use prompts::{
    GetPromptParams, GetPromptResult, PromptArgument, PromptContent, PromptDescriptor, PromptList,
    PromptMessage, Role,
};
pub use resources::{
    ReadResourceParams, ReadResourceResult, ResourceContent, ResourceTemplate,
    ResourceTemplateList, uri_template_matches,
};
pub use schemas::json_schemas;
pub use snapshot::{Metric, MetricStatus, MetricValue, Snapshot, SnapshotSection};
pub use tickets::{
    ListTicketsParams, MissingCapabilityReport, Severity, Ticket, TicketList, TicketReceipt,
};
pub use tools::{
    ContentBlock, Deprecation, EmbeddedResource, McpToolResult, ResultKind, ToolAnnotations,
    ToolDescriptor, ToolList,
};

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

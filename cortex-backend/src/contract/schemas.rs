//! The JSON Schemas generated from the contract types.

use schemars::JsonSchema;
use serde_json::Value;

use super::*;

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

//! The second kind of upstream: a third-party MCP server reached over
//! Streamable HTTP ([`client`]), and how its tools are projected into the
//! catalog ([`project_tool`]).

mod client;
pub(crate) mod settings;

use cortex_backend::contract::{ResultKind, ToolAnnotations, ToolDescriptor};
use serde_json::Value;

pub(crate) use client::McpClient;

use self::settings::McpServerConfig;

/// A server's `Tool` as a catalog entry: its name, description, title,
/// schemas and annotations as the server wrote them; its scope the
/// server's read scope when `annotations.readOnlyHint` is `true`, its
/// write scope otherwise; its results passed on as MCP results
/// (`structuredContent` included). `Err` says why it is left out.
pub(crate) fn project_tool(
    server: &McpServerConfig,
    tool: &Value,
) -> Result<ToolDescriptor, String> {
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a tool without a `name`")?;
    let annotations: Option<ToolAnnotations> = match tool.get("annotations") {
        None | Some(Value::Null) => None,
        Some(a) => Some(
            serde_json::from_value(a.clone())
                .map_err(|e| format!("tool `{name}`: invalid annotations: {e}"))?,
        ),
    };
    let read_only = annotations
        .as_ref()
        .and_then(|a| a.read_only_hint)
        .unwrap_or(false);
    let input_schema = match tool.get("inputSchema") {
        Some(s @ Value::Object(_)) => s.clone(),
        None => serde_json::json!({"type": "object"}),
        Some(_) => return Err(format!("tool `{name}`: `inputSchema` is not an object")),
    };
    let text = |key: &str| tool.get(key).and_then(Value::as_str).map(String::from);
    Ok(ToolDescriptor {
        name: name.to_string(),
        scope: if read_only {
            server.read_scope()
        } else {
            server.write_scope()
        },
        description: text("description").unwrap_or_default(),
        params: None,
        input_schema: Some(input_schema),
        version: None,
        deprecated: None,
        title: text("title"),
        output_schema: tool.get("outputSchema").filter(|s| s.is_object()).cloned(),
        annotations,
        result_kind: Some(ResultKind::Mcp),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scope_follows_read_only_hint_and_schemas_carry_over() {
        let server = McpServerConfig::new("tracker", "https://t.example/mcp");
        let read = project_tool(
            &server,
            &json!({"name": "search", "description": "Find issues", "title": "Search",
                    "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
                    "outputSchema": {"type": "object"},
                    "annotations": {"readOnlyHint": true}}),
        )
        .unwrap();
        assert_eq!(read.scope, "mcp:tracker:read");
        assert_eq!(
            read.input_schema.unwrap()["properties"]["q"]["type"],
            "string"
        );
        assert_eq!(read.output_schema, Some(json!({"type": "object"})));
        assert_eq!(read.title.as_deref(), Some("Search"));
        assert_eq!(read.result_kind, Some(ResultKind::Mcp));
        for tool in [
            json!({"name": "close", "annotations": {"readOnlyHint": false}}),
            json!({"name": "close", "annotations": {"destructiveHint": true}}),
            json!({"name": "close"}),
        ] {
            assert_eq!(
                project_tool(&server, &tool).unwrap().scope,
                "mcp:tracker:write"
            );
        }
        assert!(project_tool(&server, &json!({"description": "x"})).is_err());
        assert!(project_tool(&server, &json!({"name": "a", "inputSchema": []})).is_err());
    }
}

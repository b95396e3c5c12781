//! The gateway's own resource and the resource builtins.
//!
//! `cortex://architecture` is built live from the catalog: the federation
//! (backends and MCP servers, their health and tool counts), the caller's
//! view (their identity and tools) and the scopes in use. `resources/list`
//! lists it and `resources/read` reads it, like any resource.
//!
//! The builtins are for agents whose client does not surface MCP
//! resources: `list_cortex_resources` (the resource templates the caller
//! may read, as `resources/templates/list` filters them, plus the gateway's
//! own resources) and `read_cortex_resource` (one resource, through
//! `resources/read` and its scope check).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    methods::{self, CallCtx},
    tools::{json_result, text_result},
};
use crate::{
    audit,
    catalog::{ACCOUNTS_TOOL, BUILTINS, Catalog, Health},
    mcp::Service,
};

/// The gateway's description of itself.
pub(crate) const ARCHITECTURE_URI: &str = "cortex://architecture";

/// The `resources/list` entry of `cortex://architecture`.
pub(crate) fn architecture_entry() -> Value {
    json!({
        "uri": ARCHITECTURE_URI,
        "name": "architecture",
        "title": "How this gateway is put together",
        "description": "The federation behind this gateway (backends, MCP servers, health, tool counts), \
                        your view of it (your tools) and the scopes in use.",
        "mimeType": "application/json",
    })
}

/// Runs `list_cortex_resources`.
pub(crate) fn list(catalog: &Catalog, ctx: &CallCtx) -> Value {
    let templates: Vec<Value> = catalog
        .templates
        .iter()
        .filter(|t| ctx.caller.has_scope(&t.scope))
        .map(|t| t.definition.clone())
        .collect();
    json_result(
        json!({
            "resources": [architecture_entry()],
            "resourceTemplates": templates,
            "hint": "read one with read_cortex_resource and a `uri` (a template's variables filled in)",
        }),
        ctx.revision,
    )
}

/// The `cortex://architecture` document for this caller.
pub(crate) fn architecture(mcp: &Service, catalog: &Catalog, ctx: &CallCtx) -> Value {
    let caller = &ctx.caller;
    let mut tools_of: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in &catalog.tools {
        let e = tools_of.entry(t.backend.as_str()).or_default();
        e.0 += 1;
        if caller.has_scope(&t.scope) {
            e.1 += 1;
        }
    }
    let health = |id: &str| {
        catalog
            .health
            .iter()
            .find(|(b, _)| b == id)
            .map_or(json!("unknown"), |(_, h)| match h {
                Health::Up => json!("up"),
                Health::Down(_) => json!("down"),
            })
    };
    let source = |id: &str, kind: &str, prefix: bool| {
        let (tools, yours) = tools_of.get(id).copied().unwrap_or_default();
        json!({
            "id": id,
            "kind": kind,
            "health": health(id),
            "toolPrefix": if prefix { Some(format!("{id}_")) } else { None },
            "tools": tools,
            "yourTools": yours,
        })
    };
    let backends: Vec<Value> = mcp
        .catalog
        .backends()
        .iter()
        .map(|b| source(&b.id, "contract", b.prefix))
        .collect();
    let servers: Vec<Value> = mcp
        .catalog
        .mcp_servers()
        .iter()
        .map(|s| source(&s.id, "mcp", s.prefix))
        .collect();
    let mut scopes: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &catalog.tools {
        *scopes.entry(t.scope.as_str()).or_default() += 1;
    }
    let scopes: Vec<Value> = scopes
        .into_iter()
        .map(|(scope, tools)| json!({"scope": scope, "tools": tools, "held": caller.has_scope(scope)}))
        .collect();
    let visible = catalog.visible_tools(&caller.scopes, None, false);
    let your_tools: Vec<&str> = visible.iter().filter_map(|d| d["name"].as_str()).collect();
    json!({
        "gateway": {
            "name": "cortex-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "builtins": BUILTINS
                .iter()
                .filter(|b| **b != ACCOUNTS_TOOL || catalog.serves_accounts_tool())
                .collect::<Vec<_>>(),
            "naming": "tools are named <backend>_<tool> unless a backend keeps its own names",
        },
        "backends": backends,
        "mcpServers": servers,
        "you": {
            "sub": caller.sub,
            "scopes": caller.scopes,
            "tools": your_tools,
        },
        "scopes": scopes,
    })
}

/// Runs `read_cortex_resource`.
pub(crate) async fn read(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    args: &Map<String, Value>,
) -> Value {
    let Some(uri) = args.get("uri").and_then(Value::as_str) else {
        audit::note_outcome("refused", Some("bad_arguments"));
        return text_result(
            "`uri` (a string) is required: a URI from list_cortex_resources, e.g. cortex://architecture",
            true,
        );
    };
    match methods::read_resource(mcp, catalog, ctx, &json!({"uri": uri})).await {
        Ok(result) => json_result(result, ctx.revision),
        Err(e) => {
            audit::note_outcome("refused", Some("resource"));
            text_result(
                format!(
                    "{} (list_cortex_resources shows what you may read)",
                    e.message
                ),
                true,
            )
        }
    }
}

//! `tools/call`: the scope re-check, routing to the owning backend, result
//! conversion, the wording of failures, and the builtins `whoami`,
//! `find_tools` and (with third-party MCP servers) `accounts`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cortex_backend::contract::{ContentBlock, McpToolResult, ResultKind};
use serde_json::{Map, Value, json};

use super::{
    jsonrpc::{Revision, RpcError},
    methods::{CallCtx, shape_tool},
};
use crate::{
    audit::{self, Outcome},
    catalog::{ACCOUNTS_TOOL, Catalog, compact},
    link::LinkState,
    mcp::Service,
    upstream::UpstreamError,
};

/// A tool result with one text block.
pub(crate) fn text_result(text: impl Into<String>, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": is_error})
}

/// A JSON value as a tool result: an object becomes `structuredContent`
/// plus the same JSON as text; anything else becomes text.
pub(crate) fn json_result(value: Value, revision: Revision) -> Value {
    let text = match &value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    let mut result = text_result(text, false);
    if value.is_object() && revision >= Revision::V2025_06_18 {
        result["structuredContent"] = value;
    }
    result
}

/// Checks and adapts a backend's own MCP result (`resultKind: "mcp"`),
/// `raw` JSON (read straight into the typed result, no value tree first);
/// `Err` when `raw` is not JSON at all.
fn mcp_result(backend: &str, raw: &[u8], revision: Revision) -> Result<Value, serde_json::Error> {
    let mut typed: McpToolResult = match serde_json::from_slice(raw) {
        Ok(t) => t,
        Err(e) if e.is_syntax() || e.is_eof() => return Err(e),
        Err(e) => {
            return Ok(text_result(
                format!(
                    "backend {backend} returned a result that is not a valid MCP tool result ({e}); \
                     it was not passed on. Report this to the team running {backend}."
                ),
                true,
            ));
        }
    };
    if revision < Revision::V2025_06_18 {
        typed.structured_content = None;
        for block in &mut typed.content {
            if let ContentBlock::ResourceLink { uri, name, .. } = block {
                *block = ContentBlock::Text {
                    text: format!("{name}: {uri}"),
                };
            }
        }
    }
    let mut out = serde_json::to_value(typed).unwrap_or_else(|_| text_result("", true));
    if out.get("isError").is_none() {
        out["isError"] = json!(false);
    }
    Ok(out)
}

/// A `tools/call` result.
#[derive(Debug)]
pub(crate) enum ToolResult {
    /// Built by the gateway: errors, builtins, a backend's own MCP result.
    Built(Value),
    /// A backend's JSON object (checked, surrounding whitespace removed),
    /// passed on as the text block and as `structuredContent` without being
    /// parsed into a tree and serialized again: the common case, and the
    /// hot path of the gateway.
    Object(Bytes),
}

impl ToolResult {
    /// The result as a value (JSON-RPC batches build their answer as one).
    pub(crate) fn into_value(self, revision: Revision) -> Value {
        match self {
            Self::Built(v) => v,
            Self::Object(raw) => match serde_json::from_slice(&raw) {
                Ok(value) => json_result(value, revision),
                Err(e) => text_result(format!("invalid backend result: {e}"), true),
            },
        }
    }

    /// The result object serialized, with `extra` (already serialized
    /// `,"key":value` members) added at its end; `None` for a result the
    /// gateway built, which is serialized as a value.
    pub(crate) fn object_bytes(&self, revision: Revision, extra: &[u8]) -> Option<Vec<u8>> {
        let Self::Object(raw) = self else {
            return None;
        };
        let raw = std::str::from_utf8(raw).ok()?;
        let mut out = Vec::with_capacity(raw.len() * 2 + 96 + extra.len());
        out.extend_from_slice(br#"{"content":[{"type":"text","text":"#);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, raw);
        out.extend_from_slice(br#"}],"isError":false"#);
        if revision >= Revision::V2025_06_18 {
            out.extend_from_slice(br#","structuredContent":"#);
            out.extend_from_slice(raw.as_bytes());
        }
        out.extend_from_slice(extra);
        out.push(b'}');
        Some(out)
    }
}

/// What `tools/call` reads from its params.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallParams<'a> {
    /// `name`, when a string.
    pub(crate) name: Option<&'a str>,
    /// `arguments`, as sent.
    pub(crate) arguments: Option<&'a Value>,
}

impl<'a> CallParams<'a> {
    /// Reads `params` (an object).
    pub(crate) fn of(params: &'a Value) -> Self {
        Self {
            name: params.get("name").and_then(Value::as_str),
            arguments: params.get("arguments"),
        }
    }
}

/// Runs `tools/call`.
pub(crate) async fn call(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    params: CallParams<'_>,
) -> Result<ToolResult, RpcError> {
    let name = params
        .name
        .ok_or_else(|| RpcError::invalid_params("`name` (a string) is required"))?;
    let no_arguments = Map::new();
    let arguments = match params.arguments {
        None | Some(Value::Null) => &no_arguments,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(RpcError::invalid_params("`arguments` must be an object")),
    };
    audit::note_tool(name);
    audit::note_arguments(params.arguments.unwrap_or(&Value::Null));
    if catalog.tool(name).is_none()
        && let Some(why) = mcp.integrity.withheld(name)
    {
        audit::note_outcome("refused", Some("quarantined"));
        return Ok(ToolResult::Built(text_result(why.message(name), true)));
    }
    match name {
        // Boxed: `whoami` asks every backend, and its future would
        // otherwise make every call's future that much larger.
        "whoami" => {
            return Ok(ToolResult::Built(Box::pin(whoami(mcp, catalog, ctx)).await));
        }
        "find_tools" => return Ok(ToolResult::Built(find_tools(catalog, ctx, arguments))),
        "report_missing_capability" => {
            return Ok(ToolResult::Built(
                Box::pin(super::feedback::report(mcp, catalog, ctx, arguments)).await,
            ));
        }
        "list_cortex_tickets" => {
            return Ok(ToolResult::Built(
                Box::pin(super::feedback::list(mcp, catalog, ctx, arguments)).await,
            ));
        }
        "list_cortex_resources" => {
            return Ok(ToolResult::Built(super::resources::list(catalog, ctx)));
        }
        "read_cortex_resource" => {
            return Ok(ToolResult::Built(
                Box::pin(super::resources::read(mcp, catalog, ctx, arguments)).await,
            ));
        }
        ACCOUNTS_TOOL if catalog.serves_accounts_tool() => {
            return Ok(ToolResult::Built(
                Box::pin(accounts(mcp, ctx, arguments)).await,
            ));
        }
        _ => {}
    }
    let in_catalog = tracing::debug_span!(target: crate::telemetry::TARGET, "catalog").entered();
    let tool = catalog
        .tool(name)
        .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {name}")))?;
    if !ctx.caller.has_scope(&tool.scope) {
        audit::tool_call(
            name,
            &tool.backend,
            &tool.scope,
            Outcome::Refused,
            Duration::ZERO,
        );
        return Ok(ToolResult::Built(text_result(
            format!(
                "missing scope {scope}: the gateway refused {name} because your token lacks the OAuth scope \
                 {scope}. Get a token that includes {scope} and retry.",
                scope = tool.scope
            ),
            true,
        )));
    }
    let Some(source) = mcp.catalog.source(&tool.backend) else {
        return Err(RpcError::invalid_params(format!("Unknown tool: {name}")));
    };
    drop(in_catalog);
    let started = Instant::now();
    let result = source
        .call_tool(&ctx.caller, &tool.original, arguments)
        .await;
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(UpstreamError::UnsafeHeader(_)) => Outcome::Refused,
        Err(_) => Outcome::BackendError,
    };
    audit::tool_call(name, source.id(), &tool.scope, outcome, started.elapsed());
    if let Err(e) = &result {
        audit::note(|r| r.error_class = Some(e.class()));
    }
    let raw = match result {
        Ok(raw) => raw,
        Err(e) => {
            return Ok(ToolResult::Built(text_result(
                e.tool_text(source.id(), name),
                true,
            )));
        }
    };
    if tool.result_kind != ResultKind::Mcp && raw.first() == Some(&b'{') {
        return Ok(ToolResult::Object(raw));
    }
    let built = if tool.result_kind == ResultKind::Mcp {
        mcp_result(source.id(), &raw, ctx.revision)
    } else {
        serde_json::from_slice(&raw).map(|value| json_result(value, ctx.revision))
    };
    Ok(ToolResult::Built(built.unwrap_or_else(|e| {
        let e = UpstreamError::InvalidJson(e.to_string());
        text_result(e.tool_text(source.id(), name), true)
    })))
}

async fn whoami(mcp: &Service, catalog: &Catalog, ctx: &CallCtx) -> Value {
    let caller = &ctx.caller;
    let limit = mcp.settings.whoami_timeout;
    // Only backends the caller holds a scope for hear the caller's token.
    let healthy: Vec<_> = catalog
        .healthy()
        .filter(|id| catalog.scopes_of(id).any(|s| caller.has_scope(s)))
        .filter_map(|id| mcp.catalog.source(id))
        .collect();
    let answers = futures::future::join_all(healthy.iter().map(|source| async move {
        let v = match source.whoami(caller, limit).await {
            Ok(v) => v,
            Err(e) => json!({"error": e.tool_text(source.id(), "whoami")}),
        };
        (source.id().to_string(), v)
    }))
    .await;
    let backends: Map<String, Value> = answers.into_iter().collect();
    json_result(
        json!({
            "sub": caller.sub,
            "email": caller.email,
            "role": caller.role,
            "pool": caller.pool,
            "clientId": caller.client_id,
            "scopes": caller.scopes,
            "backends": backends,
        }),
        ctx.revision,
    )
}

/// The `accounts` builtin: `list` the caller's link status at every
/// configured third-party server (a fresh link URL for each unlinked one),
/// or `unlink` one (revoked at the provider where it allows).
async fn accounts(mcp: &Service, ctx: &CallCtx, args: &Map<String, Value>) -> Value {
    let sub = ctx.caller.sub.as_str();
    let known = |server: &str| mcp.accounts.servers().iter().any(|s| s.id == server);
    match args.get("action").and_then(Value::as_str).unwrap_or("list") {
        "list" => {
            let servers: Vec<Value> = mcp
                .accounts
                .status(&*ctx.caller)
                .await
                .into_iter()
                .map(|s| match s.link {
                    LinkState::Linked { account } => {
                        json!({"server": s.server, "linked": true, "account": account})
                    }
                    LinkState::Unlinked { link_url } => json!({
                        "server": s.server,
                        "linked": false,
                        "linkUrl": link_url,
                        "hint": "open linkUrl in a browser (within 10 minutes) to link your account"
                    }),
                    _ => json!({
                        "server": s.server,
                        "error": "the linked accounts cannot be read right now; try again in a minute"
                    }),
                })
                .collect();
            json_result(json!({"servers": servers}), ctx.revision)
        }
        "unlink" => {
            let Some(server) = args.get("server").and_then(Value::as_str) else {
                audit::note_outcome("refused", Some("bad_arguments"));
                return text_result(
                    "`unlink` needs `server`: the id of the service to unlink, as `list` shows it",
                    true,
                );
            };
            if !known(server) {
                audit::note_outcome("refused", Some("bad_arguments"));
                return text_result(
                    format!(
                        "no service `{}` is configured; call accounts with action `list` to see them",
                        server.chars().take(128).collect::<String>()
                    ),
                    true,
                );
            }
            match mcp.accounts.unlink(sub, server).await {
                Ok(was_linked) => json_result(
                    json!({"server": server, "unlinked": was_linked}),
                    ctx.revision,
                ),
                Err(e) => {
                    audit::note_outcome("error", Some("accounts_unavailable"));
                    text_result(e.to_string(), true)
                }
            }
        }
        _ => {
            audit::note_outcome("refused", Some("bad_arguments"));
            text_result(
                "`action` must be `list` (your linked accounts and links to link the others) or \
                 `unlink` (with `server`)",
                true,
            )
        }
    }
}

/// The most distinct words of a `find_tools` query that are searched for
/// (the rest are counted in `ignoredWords`): the search costs words times
/// tools, so a query of a million words must not cost a million passes.
pub(crate) const FIND_MAX_WORDS: usize = 32;
/// The longest query word searched for, in characters (longer ones are cut).
pub(crate) const FIND_MAX_WORD_CHARS: usize = 64;
/// The most names one `find_tools` call describes (the rest are counted
/// in `ignoredNames`).
pub(crate) const FIND_MAX_NAMES: usize = 100;

fn find_tools(catalog: &Catalog, ctx: &CallCtx, args: &Map<String, Value>) -> Value {
    let visible = catalog.visible_tools(&ctx.caller.scopes, None, false);
    let limit = args
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(20)
        .clamp(1, 100) as usize;
    let mut out = Map::new();
    if let Some(names) = args.get("names").and_then(Value::as_array) {
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        if names.len() > FIND_MAX_NAMES {
            out.insert("ignoredNames".into(), json!(names.len() - FIND_MAX_NAMES));
        }
        for n in names.into_iter().take(FIND_MAX_NAMES) {
            match visible.iter().find(|d| d["name"] == n) {
                Some(d) => found.push(shape_tool(d.clone(), ctx.revision)),
                None => unknown.push(json!(n)),
            }
        }
        out.insert("tools".into(), Value::Array(found));
        if !unknown.is_empty() {
            out.insert("unknown".into(), Value::Array(unknown));
        }
    }
    if let Some(query) = args.get("query").and_then(Value::as_str) {
        let mut words: Vec<String> = Vec::new();
        let mut ignored = 0usize;
        for word in query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let word: String = word.chars().take(FIND_MAX_WORD_CHARS).collect();
            let word = word.to_lowercase();
            if words.contains(&word) {
                continue;
            }
            if words.len() == FIND_MAX_WORDS {
                ignored += 1;
                continue;
            }
            words.push(word);
        }
        if ignored > 0 {
            out.insert("ignoredWords".into(), json!(ignored));
        }
        let mut scored: Vec<(usize, &Value)> = visible
            .iter()
            .map(|d| {
                let hay = format!(
                    "{} {}",
                    d["name"].as_str().unwrap_or(""),
                    d["description"].as_str().unwrap_or("")
                )
                .to_lowercase();
                (words.iter().filter(|w| hay.contains(w.as_str())).count(), d)
            })
            .filter(|(score, _)| *score > 0)
            .collect();
        scored.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1["name"].as_str().cmp(&b.1["name"].as_str()))
        });
        let matches: Vec<Value> = scored
            .into_iter()
            .take(limit)
            .map(|(_, d)| compact(d))
            .collect();
        out.insert("matches".into(), Value::Array(matches));
    }
    if out.is_empty() {
        return text_result(
            "find_tools needs `query` (words to search) or `names` (tools to describe).",
            true,
        );
    }
    json_result(Value::Object(out), ctx.revision)
}

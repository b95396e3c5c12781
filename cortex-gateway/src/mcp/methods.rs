//! The MCP methods, shared by both eras. Each handler returns the result in
//! the shape of the caller's revision; `decorate` adds what the stateless
//! era requires on top (`resultType`, `_meta`, cache hints).

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use cortex_backend::{
    Caller,
    contract::{GetPromptResult, ReadResourceResult},
    scopes,
};
use serde_json::{Map, Value, json};

use super::{
    jsonrpc::{INVALID_PARAMS, METHOD_NOT_FOUND, RESOURCE_NOT_FOUND, Revision, RpcError},
    tools,
};
use crate::{
    catalog::{Catalog, Health},
    mcp::Service,
    upstream::{RpcFault, UpstreamError},
};

/// Items per page of every list.
pub(crate) const PAGE_SIZE: usize = 100;

/// The request's context: who, which revision, and the trimming headers.
#[derive(Debug, Clone)]
pub(crate) struct CallCtx {
    /// The validated caller.
    pub caller: Arc<Caller>,
    /// The revision of this request.
    pub revision: Revision,
    /// `X-Cortex-Backends`: narrows `tools/list`.
    pub backends_filter: Option<Vec<String>>,
    /// `X-Cortex-Tool-Mode: search`: compact `tools/list` entries.
    pub compact: bool,
}

/// The server's `Implementation` object for a revision.
pub(crate) fn server_info(revision: Revision) -> Value {
    let mut info = json!({"name": "cortex-gateway", "version": env!("CARGO_PKG_VERSION")});
    if revision >= Revision::V2025_06_18 {
        info["title"] = json!("Cortex gateway");
    }
    if revision >= Revision::V2025_11_25 {
        info["description"] = json!("One MCP endpoint for the company's apps.");
    }
    info
}

/// [`server_info`] with the configured icon and website (2025-11-25 on).
pub(crate) fn server_info_of(mcp: &Service, revision: Revision) -> Value {
    let mut info = server_info(revision);
    if revision >= Revision::V2025_11_25 {
        if let Some(icon) = &mcp.settings.icon_url {
            info["icons"] = json!([{"src": icon}]);
        }
        if let Some(site) = &mcp.settings.website_url {
            info["websiteUrl"] = json!(site);
        }
    }
    info
}

/// The MCP server card (`/.well-known/mcp/server-card.json`, SEP-2127):
/// who the gateway is and where its endpoint is, from the configuration.
pub(crate) fn server_card(mcp: &Service) -> Value {
    let uri = &mcp.settings.canonical_uri;
    let host = url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_default();
    let reversed: Vec<&str> = host.split('.').rev().collect();
    let mut card = server_info_of(mcp, Revision::V2026_07_28);
    if let Some(o) = card.as_object_mut() {
        o.insert(
            "$schema".into(),
            json!("https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json"),
        );
        o.insert("name".into(), json!(format!("{}/mcp", reversed.join("."))));
        o.insert(
            "remotes".into(),
            json!([{
                "type": "streamable-http",
                "url": uri,
                "supportedProtocolVersions": Revision::all_strings(),
            }]),
        );
    }
    card
}

/// The capabilities the gateway declares.
pub(crate) fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true},
    })
}

/// The `instructions` text: naming convention, what is up, where help is.
pub(crate) fn instructions(mcp: &Service, catalog: &Catalog) -> String {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (id, health) in &catalog.health {
        match health {
            Health::Up => up.push(id.as_str()),
            Health::Down(_) => down.push(id.as_str()),
        }
    }
    let unprefixed: Vec<&str> = mcp
        .catalog
        .backends()
        .iter()
        .filter(|b| !b.prefix)
        .map(|b| b.id.as_str())
        .chain(
            mcp.catalog
                .mcp_servers()
                .iter()
                .filter(|s| !s.prefix)
                .map(|s| s.id.as_str()),
        )
        .collect();
    let mut text = String::from(
        "This gateway federates the company's apps (backends) behind one MCP endpoint. \
         Tools are named <backend>_<tool>, for example crm_search_accounts. \
         Before guessing how a backend works, call its <backend>_get_help tool. \
         Builtins: whoami (your identity and scopes, and what each backend you hold a scope for knows about you); \
         find_tools (search tools by words; full definitions by name); \
         report_missing_capability (when no tool does what the user needs, report it: say what you wanted, \
         the user's intent and how much it hurts; the answer has a ticket id) and list_cortex_tickets (your reports); \
         list_cortex_resources and read_cortex_resource (the resources you may read, and cortex://architecture: \
         the backends, your tools and the scopes). ",
    );
    if let Some(own) = &mcp.settings.instructions {
        text.insert_str(0, &format!("{own}\n\n"));
    }
    if !unprefixed.is_empty() {
        text.push_str(&format!(
            "Tools of {} keep their own names without a prefix. ",
            unprefixed.join(", ")
        ));
    }
    let servers: Vec<&str> = mcp
        .catalog
        .mcp_servers()
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    if !servers.is_empty() {
        text.push_str(&format!(
            "Third-party MCP servers ({}) are called as the account each user linked there and have no get_help tool; \
             a call without a linked account returns a link URL to show the user, and the accounts tool lists and unlinks accounts. ",
            servers.join(", ")
        ));
    }
    if up.is_empty() {
        text.push_str("No backend is answering right now. ");
    } else {
        text.push_str(&format!("Backends up: {}. ", up.join(", ")));
    }
    if !down.is_empty() {
        text.push_str(&format!(
            "Unavailable now (their tools return when they answer again): {}. ",
            down.join(", ")
        ));
    }
    text.push_str("You only see the tools your token's scopes allow.");
    text
}

/// The `InitializeResult` for a negotiated legacy revision.
pub(crate) fn initialize_result(mcp: &Service, revision: Revision) -> Value {
    let catalog = mcp.catalog.catalog();
    json!({
        "protocolVersion": revision.as_str(),
        "capabilities": capabilities(),
        "serverInfo": server_info_of(mcp, revision),
        "instructions": instructions(mcp, &catalog),
    })
}

pub(crate) fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("cortex:{offset}"))
}

pub(crate) fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("cortex:")?
        .parse()
        .ok()
}

/// The offset named by `params.cursor` in a list of `len` items.
fn cursor_offset(len: usize, params: &Value) -> Result<usize, RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(c)) => decode_cursor(c).filter(|o| *o <= len).ok_or_else(|| {
            RpcError::invalid_params("invalid cursor: restart the listing without a cursor")
        }),
        Some(_) => Err(RpcError::invalid_params("`cursor` must be a string")),
    }
}

/// One page of `items` after `params.cursor`.
fn paginate(items: &[Value], params: &Value) -> Result<(Vec<Value>, Option<String>), RpcError> {
    let offset = cursor_offset(items.len(), params)?;
    let end = (offset + PAGE_SIZE).min(items.len());
    let next = (end < items.len()).then(|| encode_cursor(end));
    Ok((items[offset..end].to_vec(), next))
}

/// The whole `tools/list` result (decorated for the request's revision),
/// serialized once per catalog, caller view, revision and page, then served
/// as bytes.
fn tools_list_bytes(
    mcp: &Service,
    ctx: &CallCtx,
    params: &Value,
) -> Result<Arc<crate::catalog::Page>, RpcError> {
    let catalog = mcp.catalog.catalog();
    crate::audit::note(|r| r.method = Some("tools/list".into()));
    let all = catalog.visible_tools(
        &ctx.caller.scopes,
        ctx.backends_filter.as_deref(),
        ctx.compact,
    );
    let offset = cursor_offset(all.len(), params)?;
    let end = (offset + PAGE_SIZE).min(all.len());
    crate::audit::note(|r| {
        r.tools_listed = Some(end - offset);
        r.backend_filter = all.backend_filter();
    });
    let revision = ctx.revision;
    Ok(catalog.tools_page(&all, revision.as_str(), offset, || {
        let next = (end < all.len()).then(|| encode_cursor(end));
        let page = all
            .range(offset, end)
            .map(|d| shape_tool(d.clone(), revision))
            .collect();
        let result = decorate(
            mcp,
            revision,
            "tools/list",
            page_result("tools", (page, next)),
        );
        serde_json::to_vec(&result).unwrap_or_default()
    }))
}

/// The whole `tools/call` result (decorated for the request's revision),
/// serialized. A backend's JSON object is spliced in as bytes; other
/// results go through [`decorate`] as values.
async fn tools_call_bytes(
    mcp: &Service,
    ctx: &CallCtx,
    params: tools::CallParams<'_>,
) -> Result<Vec<u8>, RpcError> {
    let catalog = mcp.catalog.catalog_here();
    crate::audit::note(|r| r.method = Some("tools/call".into()));
    let result = tools::call(mcp, &catalog, ctx, params).await?;
    if let Some(bytes) = result.object_bytes(ctx.revision, call_decoration(ctx.revision)) {
        return Ok(bytes);
    }
    let value = decorate(
        mcp,
        ctx.revision,
        "tools/call",
        result.into_value(ctx.revision),
    );
    Ok(serde_json::to_vec(&value).unwrap_or_default())
}

/// What [`decorate`] adds to a `tools/call` result, serialized as
/// `,"key":value` members (empty before the stateless era). Derived once
/// from [`decorate`] itself, so the two paths cannot drift apart.
fn call_decoration(revision: Revision) -> &'static [u8] {
    static MODERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let members = decorate_with(0, Revision::V2026_07_28, "tools/call", json!({}));
        let object = serde_json::to_vec(&members).unwrap_or_default();
        // `{"a":1,"b":2}` becomes `,"a":1,"b":2`.
        match object.as_slice() {
            [b'{', inner @ .., b'}'] if !inner.is_empty() => [b",", inner].concat(),
            _ => Vec::new(),
        }
    });
    if revision.is_modern() {
        debug_assert_eq!(Revision::MODERN, [Revision::V2026_07_28]);
        &MODERN
    } else {
        &[]
    }
}

fn page_result(key: &str, (items, next): (Vec<Value>, Option<String>)) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), Value::Array(items));
    if let Some(n) = next {
        m.insert("nextCursor".into(), json!(n));
    }
    Value::Object(m)
}

/// A tool definition in the shape of an older revision.
pub(crate) fn shape_tool(mut def: Value, revision: Revision) -> Value {
    if revision < Revision::V2025_06_18
        && let Some(o) = def.as_object_mut()
    {
        o.remove("title");
        o.remove("outputSchema");
    }
    def
}

/// A method's result, ready for the envelope writer
/// ([`super::envelope`]).
pub(crate) enum Answer {
    /// A result serialized once (`tools/call`).
    Bytes(Vec<u8>),
    /// A cached `tools/list` page (compressed once when it is large).
    Page(Arc<crate::catalog::Page>),
    /// Any other result, decorated for the request's revision.
    Value(Value),
}

/// A request's params: the `Value` tree, or the borrowed `tools/call`
/// parse of the stateless era's fast path ([`super::fast_call`]).
pub(crate) enum Params<'a> {
    /// Any method.
    Value(&'a Value),
    /// `tools/call`, read without a `Value` tree.
    Call(tools::CallParams<'a>),
}

/// Runs one request method (other than `initialize`, which creates a
/// session, and `subscriptions/listen`, which opens a stream): the one
/// dispatch of every era, single messages and batches alike.
pub(crate) async fn dispatch(
    mcp: &Service,
    ctx: &CallCtx,
    method: &str,
    params: Params<'_>,
) -> Result<Answer, RpcError> {
    let params = match params {
        Params::Call(call) => {
            return tools_call_bytes(mcp, ctx, call).await.map(Answer::Bytes);
        }
        Params::Value(params) => params,
    };
    match method {
        "tools/call" => tools_call_bytes(mcp, ctx, tools::CallParams::of(params))
            .await
            .map(Answer::Bytes),
        "tools/list" => tools_list_bytes(mcp, ctx, params).map(Answer::Page),
        _ => dispatch_value(mcp, ctx, method, params)
            .await
            .map(|result| Answer::Value(decorate(mcp, ctx.revision, method, result))),
    }
}

/// The methods answered as values (every one but `tools/list` and
/// `tools/call`).
async fn dispatch_value(
    mcp: &Service,
    ctx: &CallCtx,
    method: &str,
    params: &Value,
) -> Result<Value, RpcError> {
    let catalog = mcp.catalog.catalog();
    let modern = ctx.revision.is_modern();
    crate::audit::note(|r| r.method = Some(crate::audit::method_word(method)));
    match method {
        "ping" if !modern => Ok(json!({})),
        "server/discover" if modern => Ok(json!({
            "supportedVersions": Revision::all_strings(),
            "capabilities": capabilities(),
            "instructions": instructions(mcp, &catalog),
        })),
        "prompts/list" => {
            let visible: Vec<Value> = catalog
                .prompts
                .iter()
                .filter(|p| ctx.caller.has_scope(&p.scope))
                .map(|p| p.definition.clone())
                .collect();
            Ok(page_result("prompts", paginate(&visible, params)?))
        }
        "prompts/get" => get_prompt(mcp, &catalog, ctx, params).await,
        "resources/list" => Ok(page_result(
            "resources",
            paginate(&[super::resources::architecture_entry()], params)?,
        )),
        "resources/templates/list" => {
            let visible: Vec<Value> = catalog
                .templates
                .iter()
                .filter(|t| ctx.caller.has_scope(&t.scope))
                .map(|t| t.definition.clone())
                .collect();
            Ok(page_result(
                "resourceTemplates",
                paginate(&visible, params)?,
            ))
        }
        "resources/read" => read_resource(mcp, &catalog, ctx, params).await,
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )),
    }
}

/// Whether `method` is served in the stateless era (used for the 404 rule).
pub(crate) fn is_modern_method(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "tools/call"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "subscriptions/listen"
    )
}

/// Adds the stateless era's fields to a result.
fn decorate(mcp: &Service, revision: Revision, method: &str, result: Value) -> Value {
    let mut result = decorate_with(mcp.settings.list_ttl_ms, revision, method, result);
    if revision.is_modern()
        && (mcp.settings.icon_url.is_some() || mcp.settings.website_url.is_some())
        && let Some(meta) = result.get_mut("_meta").and_then(Value::as_object_mut)
    {
        meta.insert(
            "io.modelcontextprotocol/serverInfo".into(),
            server_info_of(mcp, revision),
        );
    }
    result
}

/// [`decorate`] with the list lifetime (`ttlMs`) given.
fn decorate_with(list_ttl_ms: u64, revision: Revision, method: &str, mut result: Value) -> Value {
    if !revision.is_modern() {
        return result;
    }
    if let Some(o) = result.as_object_mut() {
        o.insert("resultType".into(), json!("complete"));
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "io.modelcontextprotocol/serverInfo".into(),
                server_info(revision),
            );
        }
        if matches!(
            method,
            "server/discover"
                | "tools/list"
                | "prompts/list"
                | "resources/list"
                | "resources/templates/list"
                | "resources/read"
        ) {
            let ttl = if method == "resources/read" {
                0
            } else {
                list_ttl_ms
            };
            o.insert("ttlMs".into(), json!(ttl));
            // Lists are filtered by the caller's token: never share them.
            o.insert("cacheScope".into(), json!("private"));
        }
    }
    result
}

fn string_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("`{name}` (a string) is required")))
}

fn missing_scope(what: &str, scope: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "missing scope {scope}: your token does not allow {what}; ask for a token with {scope}"
    ))
    .with_data(json!({"required": scope}))
}

/// A failure of a non-tool method, with its JSON-RPC code: `not_found`
/// (which differs by method and revision) for a missing thing, with the
/// `uri` asked for as data when there is one.
fn upstream_rpc_error(
    backend: &str,
    e: UpstreamError,
    not_found: i64,
    uri: Option<&str>,
) -> RpcError {
    match e.rpc_fault(backend) {
        RpcFault::Refused(message) => RpcError::invalid_params(message),
        RpcFault::NotFound(message) => {
            let err = RpcError::new(not_found, message);
            match uri {
                Some(uri) => err.with_data(json!({"uri": uri})),
                None => err,
            }
        }
        RpcFault::MissingScope { what, scope } => missing_scope(&what, &scope),
        RpcFault::Failed(message) => RpcError::new(super::jsonrpc::INTERNAL_ERROR, message),
    }
}

async fn get_prompt(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    params: &Value,
) -> Result<Value, RpcError> {
    let name = string_param(params, "name")?;
    let prompt = catalog
        .prompt(name)
        .ok_or_else(|| RpcError::invalid_params(format!("unknown prompt: {name}")))?;
    if !ctx.caller.has_scope(&prompt.scope) {
        return Err(missing_scope(&format!("the prompt {name}"), &prompt.scope));
    }
    let source = mcp
        .catalog
        .source(&prompt.backend)
        .ok_or_else(|| RpcError::invalid_params(format!("unknown prompt: {name}")))?;
    let mut p = Map::new();
    p.insert("name".into(), json!(prompt.original));
    if let Some(args) = params.get("arguments") {
        if !args
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string))
        {
            return Err(RpcError::invalid_params(
                "`arguments` must be an object of strings",
            ));
        }
        p.insert("arguments".into(), args.clone());
    }
    let value = source
        .get_prompt(&ctx.caller, &p)
        .await
        .map_err(|e| upstream_rpc_error(source.id(), e, INVALID_PARAMS, None))?;
    let typed: GetPromptResult = serde_json::from_value(value).map_err(|e| {
        RpcError::new(
            super::jsonrpc::INTERNAL_ERROR,
            format!("backend {} returned an invalid prompt: {e}", source.id()),
        )
    })?;
    Ok(serde_json::to_value(typed).unwrap_or_else(|_| json!({"messages": []})))
}

pub(crate) async fn read_resource(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    params: &Value,
) -> Result<Value, RpcError> {
    let uri = string_param(params, "uri")?;
    if uri == super::resources::ARCHITECTURE_URI {
        let doc = super::resources::architecture(mcp, catalog, ctx);
        return Ok(json!({"contents": [{
            "uri": uri,
            "mimeType": "application/json",
            "text": doc.to_string(),
        }]}));
    }
    let not_found = if ctx.revision.is_modern() {
        INVALID_PARAMS
    } else {
        RESOURCE_NOT_FOUND
    };
    // The scope of the template that matches this URI, not of any template
    // of its scheme: one backend may serve public and restricted resources
    // under the same scheme.
    let template = catalog.template_for(uri).ok_or_else(|| {
        RpcError::new(
            not_found,
            format!(
                "resource not found: no resource template matches {uri}; \
                 resources/templates/list shows the URIs that can be read"
            ),
        )
        .with_data(json!({"uri": uri}))
    })?;
    if !scopes::satisfies(&ctx.caller.scopes, &template.scope) {
        return Err(missing_scope(&format!("reading {uri}"), &template.scope));
    }
    let owner = &template.backend;
    let source = mcp
        .catalog
        .source(owner)
        .ok_or_else(|| RpcError::new(not_found, format!("resource not found: {uri}")))?;
    let mut p = Map::new();
    p.insert("uri".into(), json!(uri));
    let value = source
        .read_resource(&ctx.caller, &p)
        .await
        .map_err(|e| upstream_rpc_error(source.id(), e, not_found, Some(uri)))?;
    let typed: ReadResourceResult = serde_json::from_value(value).map_err(|e| {
        RpcError::new(
            super::jsonrpc::INTERNAL_ERROR,
            format!(
                "backend {} returned invalid resource contents: {e}",
                source.id()
            ),
        )
    })?;
    if typed.contents.is_empty() {
        return Err(
            RpcError::new(not_found, format!("resource not found: {uri}"))
                .with_data(json!({"uri": uri})),
        );
    }
    Ok(serde_json::to_value(typed).unwrap_or_else(|_| json!({"contents": []})))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::mcp::tools::{ToolResult, json_result};

    /// The spliced bytes of a backend's JSON object are the same result as
    /// the value path (`json_result` then `decorate`) in every revision.
    #[test]
    fn spliced_tool_results_equal_the_value_path() {
        let backend =
            json!({"id": "A-1", "name": "caf\u{e9} \"quoted\"\n", "tags": ["x"], "n": 1.5});
        let raw = Bytes::from(serde_json::to_vec(&backend).unwrap());
        for revision in [
            Revision::V2025_03_26,
            Revision::V2025_06_18,
            Revision::V2025_11_25,
            Revision::V2026_07_28,
        ] {
            let spliced = ToolResult::Object(raw.clone())
                .object_bytes(revision, call_decoration(revision))
                .unwrap();
            let spliced: Value = serde_json::from_slice(&spliced).unwrap();
            let expected = decorate_with(
                0,
                revision,
                "tools/call",
                json_result(backend.clone(), revision),
            );
            // The text block holds the backend's JSON as sent; compare it
            // as JSON, the rest as it is.
            let text = |v: &Value| -> Value {
                serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap()
            };
            assert_eq!(text(&spliced), text(&expected), "{revision:?}");
            let strip = |mut v: Value| {
                v["content"][0]["text"] = json!("");
                v
            };
            assert_eq!(strip(spliced), strip(expected), "{revision:?}");
        }
        assert_eq!(
            ToolResult::Built(json!({})).object_bytes(Revision::V2026_07_28, b""),
            None
        );
    }
}

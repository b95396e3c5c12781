//! The builtins of the agents' feedback loop: `report_missing_capability`
//! (a ticket for what the agent could not do) and `list_cortex_tickets`
//! (the caller's own tickets).
//!
//! A ticket about a contract backend that implements the contract's
//! `report_missing_capability` and `list_tickets` is that backend's: the
//! gateway forwards the report with the caller's identity, as any call,
//! when the caller holds one of the backend's scopes. Otherwise (the
//! gateway, a third-party MCP server, a backend that answers "unknown
//! method" or cannot be reached) the gateway keeps it in its store,
//! deduplicated by (backend, normalised wording) within 24 hours. A new
//! ticket marked `blocking` is also POSTed to the feedback webhook.

use bytes::Bytes;
use cortex_backend::contract::{Severity, TicketList, TicketReceipt, methods};
use serde_json::{Map, Value, json};

use super::{
    methods::CallCtx,
    tools::{json_result, text_result},
};
use crate::{
    audit,
    catalog::Catalog,
    mcp::Service,
    store::feedback::{NewTicket, StoredTicket},
    upstream::{Credential, Upstream, UpstreamError},
};

/// The longest `whatIWanted` and `userIntent`, in characters.
pub(crate) const MAX_TEXT_CHARS: usize = 2000;
/// The longest `suggestedShape`, serialized.
pub(crate) const MAX_SHAPE_BYTES: usize = 8 << 10;
/// The longest tool or backend name.
const MAX_NAME_CHARS: usize = 128;
/// Tickets one `list_cortex_tickets` returns at most.
const MAX_LIST: usize = 100;

fn refuse(text: impl Into<String>) -> Value {
    audit::note_outcome("refused", Some("bad_arguments"));
    text_result(text, true)
}

fn severity_of(value: Option<&Value>) -> Result<Severity, Value> {
    match value.and_then(Value::as_str) {
        Some("blocking") => Ok(Severity::Blocking),
        Some("inconvenient") => Ok(Severity::Inconvenient),
        Some("nice_to_have") => Ok(Severity::NiceToHave),
        _ => Err(refuse(
            "`severity` must be `blocking` (the user could not finish), `inconvenient` \
             (a workaround exists) or `nice_to_have`",
        )),
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Blocking => "blocking",
        Severity::Inconvenient => "inconvenient",
        Severity::NiceToHave => "nice_to_have",
    }
}

/// A required text argument, trimmed, within [`MAX_TEXT_CHARS`].
fn text_arg(args: &Map<String, Value>, name: &str, what: &str) -> Result<String, Value> {
    match args.get(name).and_then(Value::as_str).map(str::trim) {
        Some(t) if !t.is_empty() && t.chars().count() <= MAX_TEXT_CHARS => Ok(t.to_string()),
        Some(t) if !t.is_empty() => Err(refuse(format!(
            "`{name}` is {} characters; at most {MAX_TEXT_CHARS}: say {what} in a few sentences",
            t.chars().count()
        ))),
        _ => Err(refuse(format!("`{name}` (a string) is required: {what}"))),
    }
}

fn name_arg(args: &Map<String, Value>, name: &str) -> Result<Option<String>, Value> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_NAME_CHARS => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(refuse(format!(
            "`{name}` must be a name of at most {MAX_NAME_CHARS} characters, as tools/list shows it"
        ))),
    }
}

/// Which source a report concerns: the explicit `backend`, else the owner
/// of `contextTool` (by the catalog, else by its `<id>_` prefix).
fn concerned_source(
    mcp: &Service,
    catalog: &Catalog,
    backend: Option<String>,
    context_tool: Option<&str>,
) -> Result<Option<String>, Value> {
    let known = |id: &str| mcp.catalog.source(id).is_some();
    if let Some(id) = backend {
        if known(&id) {
            return Ok(Some(id));
        }
        return Err(refuse(format!(
            "no backend `{id}` is behind this gateway; omit `backend`, or read the resource \
             cortex://architecture (read_cortex_resource) for the backends' ids"
        )));
    }
    let Some(tool) = context_tool else {
        return Ok(None);
    };
    if let Some(t) = catalog.tool(tool) {
        return Ok(Some(t.backend.clone()));
    }
    Ok(tool
        .split_once('_')
        .map(|(prefix, _)| prefix)
        .filter(|p| known(p))
        .map(String::from))
}

/// Runs `report_missing_capability`.
pub(crate) async fn report(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    args: &Map<String, Value>,
) -> Value {
    let checked = (|| {
        let what_i_wanted = text_arg(args, "whatIWanted", "what you wanted to do and could not")?;
        let user_intent = text_arg(args, "userIntent", "what the user was trying to achieve")?;
        let severity = severity_of(args.get("severity"))?;
        let context_tool = name_arg(args, "contextTool")?;
        let backend = name_arg(args, "backend")?;
        let suggested_shape = match args.get("suggestedShape") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = v.to_string();
                if text.len() > MAX_SHAPE_BYTES {
                    return Err(refuse(format!(
                        "`suggestedShape` is {} bytes; at most {MAX_SHAPE_BYTES}: give the tool's name, \
                         arguments and result in outline",
                        text.len()
                    )));
                }
                Some((v.clone(), text))
            }
        };
        Ok((
            what_i_wanted,
            user_intent,
            severity,
            context_tool,
            backend,
            suggested_shape,
        ))
    })();
    let (what_i_wanted, user_intent, severity, context_tool, backend, suggested_shape) =
        match checked {
            Ok(c) => c,
            Err(e) => return e,
        };
    let backend = match concerned_source(mcp, catalog, backend, context_tool.as_deref()) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut note = None;
    if let Some(id) = &backend
        && let Some(Upstream::Contract {
            client,
            backend: config,
        }) = mcp.catalog.source(id)
        && catalog.scopes_of(id).any(|s| ctx.caller.has_scope(s))
    {
        let mut params = Map::new();
        params.insert("whatIWanted".into(), json!(what_i_wanted));
        params.insert("userIntent".into(), json!(user_intent));
        params.insert("severity".into(), json!(severity_word(severity)));
        if let Some(t) = &context_tool {
            // The backend knows its tools by their own names.
            let own = catalog.tool(t).map_or(t.as_str(), |t| t.original.as_str());
            params.insert("contextTool".into(), json!(own));
        }
        if let Some((shape, _)) = &suggested_shape {
            params.insert("suggestedShape".into(), shape.clone());
        }
        let answer = client
            .call(
                config,
                Credential::User(&ctx.caller),
                methods::REPORT_MISSING_CAPABILITY,
                Some(&params),
                config.timeout(),
            )
            .await;
        match answer.map(serde_json::from_value::<TicketReceipt>) {
            Ok(Ok(receipt)) => {
                if severity == Severity::Blocking && !receipt.deduplicated {
                    notify(
                        mcp,
                        ctx,
                        &receipt.ticket_id,
                        "backend",
                        &backend,
                        severity,
                        &what_i_wanted,
                        &user_intent,
                        context_tool.as_deref(),
                        suggested_shape.as_ref().map(|s| &s.0),
                    );
                }
                return json_result(
                    json!({
                        "ticketId": receipt.ticket_id,
                        "deduplicated": receipt.deduplicated,
                        "ackMessage": receipt.ack_message.unwrap_or_else(|| ack(id, receipt.deduplicated)),
                        "backend": id,
                        "heldBy": "backend",
                    }),
                    ctx.revision,
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(backend = %id, "report_missing_capability: invalid receipt: {e}");
                note = Some(format!(
                    "{id} answered with an invalid receipt; the gateway keeps the ticket"
                ));
            }
            Err(e) if e.is_unknown_method() => {}
            Err(e) => {
                note = Some(format!(
                    "{id} could not take the ticket ({}); the gateway keeps it",
                    short(&e, id)
                ));
            }
        }
    }
    let ticket = NewTicket {
        backend: backend.clone(),
        reporter: ctx.caller.sub.clone(),
        severity,
        what_i_wanted,
        user_intent,
        context_tool,
        suggested_shape: suggested_shape.as_ref().map(|(_, text)| text.clone()),
    };
    let recorded = match mcp.feedback.record(ticket.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "report_missing_capability: the ticket cannot be kept");
            audit::note_outcome("error", Some("store"));
            return text_result(
                "The gateway cannot keep the ticket right now (its shared store is unavailable). \
                 Try again in a minute.",
                true,
            );
        }
    };
    if severity == Severity::Blocking && !recorded.deduplicated {
        notify(
            mcp,
            ctx,
            &recorded.id,
            "gateway",
            &backend,
            severity,
            &ticket.what_i_wanted,
            &ticket.user_intent,
            ticket.context_tool.as_deref(),
            suggested_shape.as_ref().map(|s| &s.0),
        );
    }
    let mut out = json!({
        "ticketId": recorded.id,
        "deduplicated": recorded.deduplicated,
        "ackMessage": ack(backend.as_deref().unwrap_or("the gateway"), recorded.deduplicated),
        "heldBy": "gateway",
    });
    if let Some(b) = backend {
        out["backend"] = json!(b);
    }
    if let Some(n) = note {
        out["note"] = json!(n);
    }
    json_result(out, ctx.revision)
}

fn short(e: &UpstreamError, id: &str) -> String {
    e.tool_text(id, methods::REPORT_MISSING_CAPABILITY)
        .chars()
        .take(200)
        .collect()
}

fn ack(owner: &str, deduplicated: bool) -> String {
    if deduplicated {
        format!(
            "Thanks: this need was already reported for {owner} in the last 24 hours; your report was added to that ticket. \
             Tell the user it is known, and call list_cortex_tickets to follow it."
        )
    } else {
        format!(
            "Thanks: a ticket for {owner} was opened. Tell the user it was reported, and call list_cortex_tickets to follow it."
        )
    }
}

/// POSTs a new blocking ticket to the webhook, when one is configured.
#[allow(clippy::too_many_arguments, reason = "one JSON body's fields")]
fn notify(
    mcp: &Service,
    ctx: &CallCtx,
    id: &str,
    held_by: &str,
    backend: &Option<String>,
    severity: Severity,
    what: &str,
    intent: &str,
    context_tool: Option<&str>,
    shape: Option<&Value>,
) {
    let Some(hook) = &mcp.webhook else {
        return;
    };
    let body = json!({
        "type": "cortex.ticket.blocking",
        "ticketId": id,
        "heldBy": held_by,
        "backend": backend,
        "severity": severity_word(severity),
        "whatIWanted": what,
        "userIntent": intent,
        "contextTool": context_tool,
        "suggestedShape": shape,
        "reporter": ctx.caller.sub,
        "createdAt": audit::rfc3339(std::time::SystemTime::now()),
    });
    hook.send(Bytes::from(body.to_string()));
}

fn stored_view(t: StoredTicket) -> Value {
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.created_unix);
    let mut v = json!({
        "ticketId": t.id,
        "heldBy": "gateway",
        "status": "open",
        "severity": severity_word(t.report.severity),
        "whatIWanted": t.report.what_i_wanted,
        "userIntent": t.report.user_intent,
        "createdAt": audit::rfc3339(created),
        "reports": t.reports,
    });
    if let Some(b) = t.report.backend {
        v["backend"] = json!(b);
    }
    if let Some(c) = t.report.context_tool {
        v["contextTool"] = json!(c);
    }
    v
}

/// Runs `list_cortex_tickets`: the caller's tickets the gateway keeps,
/// plus each contract backend's own (`list_tickets`) where the caller
/// holds one of its scopes.
pub(crate) async fn list(
    mcp: &Service,
    catalog: &Catalog,
    ctx: &CallCtx,
    args: &Map<String, Value>,
) -> Value {
    let severity = match args.get("severity") {
        None | Some(Value::Null) => None,
        v => match severity_of(v) {
            Ok(s) => Some(s),
            Err(e) => return e,
        },
    };
    let status = match args.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 32 => Some(s.clone()),
        Some(_) => return refuse("`status` must be a short word such as `open` or `done`"),
    };
    let limit = match args.get("limit") {
        None | Some(Value::Null) => 50,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=100) => n as usize,
            _ => {
                return refuse(format!(
                    "`limit` must be a whole number from 1 to {MAX_LIST}"
                ));
            }
        },
    };
    let caller = &ctx.caller;
    let mut unavailable = Map::new();
    let kept = match mcp.feedback.list(&caller.sub, MAX_LIST).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::warn!(error = %e, "list_cortex_tickets: the gateway's tickets cannot be read");
            unavailable.insert(
                "gateway".into(),
                json!("the gateway's shared store is unavailable; try again in a minute"),
            );
            Vec::new()
        }
    };
    let mut tickets: Vec<Value> = kept
        .into_iter()
        .filter(|t| severity.is_none_or(|s| s == t.report.severity))
        .filter(|_| status.as_deref().is_none_or(|s| s == "open"))
        .map(stored_view)
        .collect();
    let mut params = Map::new();
    if let Some(s) = &status {
        params.insert("status".into(), json!(s));
    }
    if let Some(s) = severity {
        params.insert("severity".into(), json!(severity_word(s)));
    }
    params.insert("limit".into(), json!(limit));
    let owners: Vec<_> = catalog
        .healthy()
        .filter(|id| catalog.scopes_of(id).any(|s| caller.has_scope(s)))
        .filter_map(|id| match mcp.catalog.source(id) {
            Some(Upstream::Contract { client, backend }) => Some((client, backend)),
            _ => None,
        })
        .collect();
    let limit_time = mcp.settings.whoami_timeout;
    let params = &params;
    let answers = futures::future::join_all(owners.iter().map(|(client, backend)| async move {
        let r = client
            .call(
                backend,
                Credential::User(caller),
                methods::LIST_TICKETS,
                Some(params),
                limit_time.min(backend.timeout()),
            )
            .await;
        (backend.id.as_str(), r)
    }))
    .await;
    for (id, answer) in answers {
        match answer.map(serde_json::from_value::<TicketList>) {
            Ok(Ok(list)) => tickets.extend(list.tickets.into_iter().take(MAX_LIST).map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
                v["heldBy"] = json!("backend");
                v["backend"] = json!(id);
                v
            })),
            Ok(Err(_)) => {
                unavailable.insert(
                    id.into(),
                    json!("answered list_tickets with an invalid list"),
                );
            }
            Err(e) if e.is_unknown_method() => {}
            Err(e) => {
                unavailable.insert(id.into(), json!(e.tool_text(id, methods::LIST_TICKETS)));
            }
        }
    }
    tickets.sort_by(|a, b| b["createdAt"].as_str().cmp(&a["createdAt"].as_str()));
    tickets.truncate(limit);
    let mut out = json!({"tickets": tickets});
    if !unavailable.is_empty() {
        out["unavailable"] = Value::Object(unavailable);
    }
    json_result(out, ctx.revision)
}

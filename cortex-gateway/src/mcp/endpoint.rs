//! The MCP endpoint's protocol logic behind an admitted caller: era
//! detection, `initialize` and legacy sessions, batches, the stateless
//! era's checks, and the session's GET stream and DELETE.

use std::sync::Arc;

use crate::{
    store::sessions::SessionError,
    telemetry::{RequestTrace, SpanFields},
};
use tracing::Instrument as _;

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use cortex_backend::Caller;
use serde_json::{Value, json};

use super::{
    Service,
    envelope::{
        accepted, batch_response, envelope, error_envelope, method_not_allowed, respond, rpc_error,
        with_header_map,
    },
    era::{self, Era, MetaView},
    fast_call::ModernCall,
    gzip,
    jsonrpc::{
        Classified, INVALID_REQUEST, Incoming, PARSE_ERROR, Revision, RpcError, SERVER_ERROR,
        classify,
    },
    methods::{self, Answer, CallCtx, Params},
    sse::{self, Filter},
};

fn call_ctx(headers: &HeaderMap, caller: Arc<Caller>, revision: Revision) -> CallCtx {
    crate::audit::note(|r| r.protocol = Some(revision.as_str().into()));
    let backends_filter = era::header(headers, &era::X_CORTEX_BACKENDS).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    });
    let compact = era::header(headers, &era::X_CORTEX_TOOL_MODE)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("search"));
    CallCtx {
        caller,
        revision,
        backends_filter,
        compact,
    }
}

/// A `POST` on the MCP path from an admitted caller, with its whole body:
/// the borrowed `tools/call` parse when it applies, otherwise the `Value`
/// paths of both eras.
pub(crate) async fn post(
    mcp: &Service,
    headers: HeaderMap,
    caller: Arc<Caller>,
    body: Bytes,
    trace: RequestTrace,
) -> Response {
    if let Some(call) = ModernCall::read(&body) {
        let span = trace.adopt(call.span_fields());
        crate::audit::note_trace(&span);
        return modern_call(mcp, headers, caller, call)
            .instrument(span)
            .await;
    }
    let response = post_general(mcp, &headers, caller, &body, trace).await;
    with_header_map(response, headers)
}

/// Everything [`ModernCall::read`] does not read: the `Value` paths of
/// both eras.
async fn post_general(
    mcp: &Service,
    headers: &HeaderMap,
    caller: Arc<Caller>,
    body: &[u8],
    trace: RequestTrace,
) -> Response {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            trace.refused(400);
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(PARSE_ERROR, format!("the body is not JSON: {e}")),
            );
        }
    };
    let span = trace.adopt(SpanFields::of_value(&body));
    crate::audit::note_trace(&span);
    post_value(mcp, headers, caller, body)
        .instrument(span)
        .await
}

/// [`post_general`] once the body is a JSON value.
async fn post_value(
    mcp: &Service,
    headers: &HeaderMap,
    caller: Arc<Caller>,
    body: Value,
) -> Response {
    match era::detect(headers, &body) {
        Era::Modern => Box::pin(modern_post(mcp, headers, caller, body)).await,
        Era::Legacy => Box::pin(legacy_post(mcp, headers, caller, body)).await,
    }
}

async fn modern_post(
    mcp: &Service,
    headers: &HeaderMap,
    caller: Arc<Caller>,
    body: Value,
) -> Response {
    if body.is_array() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(
                INVALID_REQUEST,
                "JSON-RPC batches are not allowed in protocol revision 2026-07-28",
            ),
        );
    }
    let (id, method, params) = match classify(body) {
        Err((id, e)) => return rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), e),
        Ok(Incoming::Notification | Incoming::Response) => return accepted(),
        Ok(Incoming::Request { id, method, params }) => (id, method, params),
    };
    let revision = match era::validate_modern(
        headers,
        &method,
        MetaView::of(&method, &params),
        methods::is_modern_method(&method),
    ) {
        Ok(r) => r,
        Err((status, e)) => return rpc_error(status, Some(&id), e),
    };
    if method == "subscriptions/listen" {
        let filter = Filter::from_request(params.get("notifications").unwrap_or(&Value::Null));
        let slot = match mcp.budgets.open_stream(&caller.sub).await {
            Ok(slot) => slot,
            Err(e) => return e.into_response(),
        };
        return sse::hold_slot(sse::listen_stream(mcp, id, filter, revision), slot);
    }
    let ctx = call_ctx(headers, caller, revision);
    let answer = methods::dispatch(mcp, &ctx, &method, Params::Value(&params)).await;
    respond(&id, answer, gzip::accepted(headers), HeaderMap::new())
}

/// [`modern_post`] for a request [`ModernCall::read`] could read: the same
/// checks in the same order, without the `Value` tree.
async fn modern_call(
    mcp: &Service,
    headers: HeaderMap,
    caller: Arc<Caller>,
    call: ModernCall<'_>,
) -> Response {
    let method = call.method();
    let revision = match era::validate_modern(
        &headers,
        method,
        call.meta_view(),
        methods::is_modern_method(method),
    ) {
        Ok(r) => r,
        Err((status, e)) => {
            return with_header_map(rpc_error(status, Some(&call.id), e), headers);
        }
    };
    let ctx = call_ctx(&headers, caller, revision);
    let answer = methods::dispatch(mcp, &ctx, method, Params::Call(call.call_params())).await;
    respond(&call.id, answer, false, headers)
}

fn no_session(id: Option<&Value>, method: &str) -> Response {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        RpcError::new(
            INVALID_REQUEST,
            format!(
                "{method} needs a session: send initialize first (revisions 2025-11-25, 2025-06-18, 2025-03-26) \
                 and then the Mcp-Session-Id header it returns, or use revision 2026-07-28 with per-request _meta"
            ),
        )
        .with_data(json!({"supported": Revision::all_strings()})),
    )
}

/// The answer to a session lookup that failed: 404 for an unknown
/// session, 503 with `Retry-After` while the shared store is unreachable.
fn session_error(id: Option<&Value>, e: SessionError) -> Response {
    match e {
        SessionError::NotFound => unknown_session(id),
        SessionError::Unavailable => {
            let mut r = rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                RpcError::new(
                    SERVER_ERROR,
                    "the gateway's session store is unavailable; retry shortly with the same session",
                ),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static(STORE_RETRY_AFTER_S),
            );
            r
        }
    }
}

/// `Retry-After` while the shared store is unreachable (seconds).
const STORE_RETRY_AFTER_S: &str = "2";

fn unknown_session(id: Option<&Value>) -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        id,
        RpcError::new(
            INVALID_REQUEST,
            "unknown or ended session: send initialize again without Mcp-Session-Id",
        ),
    )
}

fn bad_version(id: Option<&Value>, v: &str) -> Response {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        RpcError::new(
            INVALID_REQUEST,
            format!(
                "unsupported MCP-Protocol-Version `{v}`: this gateway knows {}; send one of them \
                 (a session's requests may name any of the initialize-based ones)",
                Revision::all_strings().join(", ")
            ),
        )
        .with_data(json!({"supported": Revision::all_strings(), "requested": v})),
    )
}

async fn legacy_post(
    mcp: &Service,
    headers: &HeaderMap,
    caller: Arc<Caller>,
    body: Value,
) -> Response {
    // The request's id, when there is one, so refusals stay valid JSON-RPC.
    let id = body
        .get("id")
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64())
        .cloned();
    let id = id.as_ref();
    // Any supported revision is accepted in the header, also one other
    // than the session's (what the official SDK's server does): the
    // session's negotiated revision governs the answer.
    if let Some(Err(v)) = era::legacy_header_version(headers) {
        return bad_version(id, &v);
    }
    if body.get("method").and_then(Value::as_str) == Some("initialize") {
        return initialize(mcp, &caller, &body).await;
    }
    let method_name = body
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("this request")
        .to_string();
    let Some(session_id) = era::header(headers, "mcp-session-id") else {
        return no_session(id, &method_name);
    };
    let session = match mcp.sessions.get(session_id, &caller.sub).await {
        Ok(s) => s,
        Err(e) => return session_error(id, e),
    };
    let ctx = call_ctx(headers, caller, session.revision);
    match body {
        Value::Array(items) => {
            if session.revision != Revision::V2025_03_26 {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    RpcError::new(
                        INVALID_REQUEST,
                        "JSON-RPC batches exist only in revision 2025-03-26; send one message per POST",
                    ),
                );
            }
            if items.is_empty() {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    RpcError::new(INVALID_REQUEST, "an empty batch is not a valid request"),
                );
            }
            let cap = mcp.settings.max_batch_messages;
            if items.len() > cap {
                crate::audit::note_outcome("rejected", Some("batch_too_large"));
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "this batch holds {} messages; the gateway takes at most {cap} per POST \
                             (none was run): send them in smaller batches (the operator sets \
                             CORTEX_MAX_BATCH_MESSAGES)",
                            items.len()
                        ),
                    ),
                );
            }
            // Each message is charged to the rate limiter (the first one
            // was, on admission) and gets an audit line of its own.
            let mut answers = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let message = classify(item);
                let answer = crate::audit::audited_item(
                    &mcp.auditor,
                    StatusCode::OK.as_u16(),
                    batch_message(mcp, &ctx, message, index > 0),
                    |(_, failed)| *failed,
                )
                .await;
                if let Some((parts, _)) = answer {
                    answers.push(parts);
                }
            }
            if answers.is_empty() {
                accepted()
            } else {
                batch_response(answers)
            }
        }
        single => match legacy_reply(mcp, &ctx, classify(single)).await {
            None => accepted(),
            Some(Reply::To(id, answer)) => {
                respond(&id, answer, gzip::accepted(headers), HeaderMap::new())
            }
            // An error without an id (the request had none usable) is a
            // bad request at the HTTP level too.
            Some(Reply::Anonymous(e)) => rpc_error(StatusCode::BAD_REQUEST, None, e),
        },
    }
}

/// One message of a batch, in its envelope, and whether it failed: charged
/// to the caller's budget first when `charge`, refused with a JSON-RPC
/// error when over it.
async fn batch_message(
    mcp: &Service,
    ctx: &CallCtx,
    message: Classified,
    charge: bool,
) -> Option<([Bytes; 3], bool)> {
    if charge && let Err(limited) = mcp.budgets.charge_subject(&ctx.caller.sub).await {
        crate::audit::note_outcome("refused", Some("rate_limited"));
        let Ok(Incoming::Request { id, method, .. }) = message else {
            return None;
        };
        crate::audit::note(|r| r.method = Some(crate::audit::method_word(&method)));
        let error = RpcError::new(
            SERVER_ERROR,
            format!(
                "rate limit exceeded: this message of the batch was not run; retry after {} s \
                 or ask the gateway operator for a larger budget (CORTEX_RATE_LIMIT_PER_MINUTE)",
                limited.retry_after_secs()
            ),
        );
        return Some((error_envelope(Some(&id), &error), true));
    }
    Some(match legacy_reply(mcp, ctx, message).await? {
        Reply::To(id, answer) => {
            let failed = answer.is_err();
            (envelope(&id, answer), failed)
        }
        Reply::Anonymous(e) => (error_envelope(None, &e), true),
    })
}

/// What a legacy message gets.
enum Reply {
    /// An answer to the request `id`.
    To(Value, Result<Answer, RpcError>),
    /// An error for a message without a usable id.
    Anonymous(RpcError),
}

/// One legacy message, single or in a batch; `None` for notifications and
/// client responses.
async fn legacy_reply(mcp: &Service, ctx: &CallCtx, message: Classified) -> Option<Reply> {
    match message {
        Err((Some(id), e)) => Some(Reply::To(id, Err(e))),
        Err((None, e)) => Some(Reply::Anonymous(e)),
        Ok(Incoming::Notification | Incoming::Response) => None,
        Ok(Incoming::Request { id, method, .. }) if method == "initialize" => Some(Reply::To(
            id,
            Err(RpcError::new(
                INVALID_REQUEST,
                "initialize must be sent alone, without a session",
            )),
        )),
        Ok(Incoming::Request { id, method, params }) => {
            let answer = methods::dispatch(mcp, ctx, &method, Params::Value(&params)).await;
            Some(Reply::To(id, answer))
        }
    }
}

async fn initialize(mcp: &Service, caller: &Caller, body: &Value) -> Response {
    let id = match classify(body.clone()) {
        Ok(Incoming::Request { id, .. }) => id,
        Ok(_) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(INVALID_REQUEST, "initialize must be a request with an id"),
            );
        }
        Err((id, e)) => return rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), e),
    };
    let Some(requested) = body
        .get("params")
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
    else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&id),
            RpcError::invalid_params("initialize needs params.protocolVersion"),
        );
    };
    // Echo a supported legacy revision; otherwise offer the newest legacy one.
    let revision = Revision::parse(requested)
        .filter(|r| !r.is_modern())
        .unwrap_or(Revision::V2025_11_25);
    let session = match mcp.sessions.create(&caller.sub, revision).await {
        Ok(s) => s,
        Err(e) => return session_error(Some(&id), e),
    };
    let result = methods::initialize_result(mcp, revision);
    let mut response = respond(&id, Ok(Answer::Value(result)), false, HeaderMap::new());
    if let Ok(v) = HeaderValue::from_str(&session) {
        response.headers_mut().insert("mcp-session-id", v);
    }
    response
}

fn modern_header(headers: &HeaderMap) -> bool {
    era::header(headers, &era::MCP_PROTOCOL_VERSION)
        .is_some_and(|v| v.trim() >= Revision::V2026_07_28.as_str())
}

/// `GET` on the MCP path from an admitted caller: the legacy session's
/// notification stream.
pub(crate) async fn get(mcp: &Service, headers: &HeaderMap, caller: &Caller) -> Response {
    if modern_header(headers) {
        return method_not_allowed();
    }
    let Some(session_id) = era::header(headers, "mcp-session-id") else {
        return if era::legacy_header_version(headers).is_some() {
            no_session(None, "GET")
        } else {
            method_not_allowed()
        };
    };
    let session = match mcp.sessions.get(session_id, &caller.sub).await {
        Ok(s) => s,
        Err(e) => return session_error(None, e),
    };
    let slot = match mcp.budgets.open_stream(&caller.sub).await {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let ended = session.ended();
    sse::hold_slot(
        sse::legacy_stream(mcp, session.revision, ended),
        slot.holding(session),
    )
}

/// `DELETE` on the MCP path from an admitted caller: ends its session.
pub(crate) async fn delete(mcp: &Service, headers: &HeaderMap, caller: &Caller) -> Response {
    if modern_header(headers) {
        return method_not_allowed();
    }
    let Some(session_id) = era::header(headers, "mcp-session-id") else {
        return no_session(None, "DELETE");
    };
    match mcp.sessions.end(session_id, &caller.sub).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => session_error(None, e),
    }
}

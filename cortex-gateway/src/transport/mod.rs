//! Streamable HTTP on the MCP path: POST (JSON-RPC, both eras), GET (the
//! legacy session stream), DELETE (ends a legacy session); the Origin
//! check; the RFC 9728 metadata routes; `/healthz` and `/readyz`.

mod front;
pub(crate) mod gzip;
mod serve;
mod sse;
mod watch;

pub(crate) use front::MakeFront;
pub(crate) use serve::Workers;
pub(crate) use serve::run as serve;
pub(crate) use watch::ConnectionLimits;

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cortex_backend::Caller;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::{Value, json};

use sse::Filter;

use crate::{
    Inner,
    auth::{AuthRejection, NotAuthenticated},
    mcp::{
        era::{self, Era, MetaView},
        jsonrpc::{
            self, Classified, INVALID_REQUEST, Incoming, PARSE_ERROR, Revision, RpcError, classify,
        },
        methods::{self, CallCtx},
        quick::ModernCall,
        tools::CallParams,
    },
};

/// Builds the router of a gateway.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let path = inner.mcp_path();
    let mut router = Router::new()
        .route(
            &path,
            axum::routing::post(post_mcp)
                .get(get_mcp)
                .delete(delete_mcp),
        )
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if path != "/" {
        router = router.route(
            &format!("/.well-known/oauth-protected-resource{path}"),
            get(metadata),
        );
    }
    let limit = inner.config.max_request_bytes;
    router.layer(DefaultBodyLimit::max(limit)).with_state(inner)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    // to_vec writes through serde's serializer directly; `to_string` goes
    // through `core::fmt` token by token (measurable on large tool lists).
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC success response around an already serialized result. The
/// result is not copied: the body is the envelope's opening, the result's
/// own buffer (a cached `tools/list` page is shared by every request for
/// it) and the closing brace, which hyper writes in one vectored write.
fn raw_result_response(id: &Value, result: Bytes) -> Response {
    raw_result_in(id, result, HeaderMap::new())
}

/// [`raw_result_response`] with `headers` (emptied) as the response's
/// header map when it is small enough to keep: see [`with_header_map`].
fn raw_result_in(id: &Value, result: Bytes, headers: HeaderMap) -> Response {
    json_parts(
        [
            envelope_open(id),
            result,
            Bytes::from_static(ENVELOPE_CLOSE),
        ],
        headers,
    )
}

/// What closes the envelope [`envelope_open`] opens.
const ENVELOPE_CLOSE: &[u8] = b"}";

/// A JSON answer whose body is `parts`, with `headers` (emptied) as its
/// header map when it is small enough to keep: see [`with_header_map`].
fn json_parts(parts: [Bytes; 3], headers: HeaderMap) -> Response {
    let mut r = Response::new(Body::new(Parts::new(parts)));
    let mut headers = crate::reusable_header_map(headers).unwrap_or_default();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *r.headers_mut() = headers;
    r
}

/// A `tools/list` page in its envelope: gzip-compressed when the client
/// accepts it and the page is large enough to gain (the page compressed
/// once, see `gzip.rs`), as it is otherwise. Either way the answer says
/// that it varies with `Accept-Encoding`.
fn list_response(id: &Value, page: &crate::federation::Page, gzip: bool) -> Response {
    let open = envelope_open(id);
    let mut r = match gzip
        .then(|| gzip::wrap(&open, page, ENVELOPE_CLOSE))
        .flatten()
    {
        Some(parts) => {
            let mut r = json_parts(parts, HeaderMap::new());
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => json_parts(
            [open, page.json.clone(), Bytes::from_static(ENVELOPE_CLOSE)],
            HeaderMap::new(),
        ),
    };
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

/// `{"jsonrpc":"2.0","id":ID,"result":` in one allocation of its exact
/// size (a `Bytes` made from a `Vec` with spare capacity allocates a
/// second block to share it), written on the stack when the id is short.
fn envelope_open(id: &Value) -> Bytes {
    use std::io::Write as _;
    const OPEN: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
    const RESULT: &[u8] = br#","result":"#;
    let mut stack = [0u8; 96];
    let mut out = std::io::Cursor::new(&mut stack[..]);
    if out.write_all(OPEN).is_ok()
        && serde_json::to_writer(&mut out, id).is_ok()
        && out.write_all(RESULT).is_ok()
    {
        let len = out.position() as usize;
        return Bytes::copy_from_slice(&stack[..len]);
    }
    let mut open = OPEN.to_vec();
    if serde_json::to_writer(&mut open, id).is_err() {
        open.extend_from_slice(b"null");
    }
    open.extend_from_slice(RESULT);
    Bytes::from(open)
}

/// A body made of a few ready buffers, with its exact length (so it is
/// sent with `Content-Length`, not chunked).
struct Parts<const N: usize> {
    parts: [Bytes; N],
    next: usize,
    remaining: u64,
}

impl<const N: usize> Parts<N> {
    fn new(parts: [Bytes; N]) -> Self {
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        Self {
            parts,
            next: 0,
            remaining,
        }
    }
}

impl<const N: usize> hyper::body::Body for Parts<N> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        while this.next < N {
            let part = std::mem::take(&mut this.parts[this.next]);
            this.next += 1;
            if !part.is_empty() {
                this.remaining -= part.len() as u64;
                return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(part))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

fn rpc_error(status: StatusCode, id: Option<&Value>, error: RpcError) -> Response {
    json_response(status, &jsonrpc::error_response(id, &error))
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

fn method_not_allowed() -> Response {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "method not allowed: protocol revision 2026-07-28 uses POST only"}),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn metadata(State(inner): State<Arc<Inner>>) -> Response {
    let catalog = inner.federation.catalog();
    json_response(StatusCode::OK, &inner.auth.metadata(&catalog))
}

async fn readyz(State(inner): State<Arc<Inner>>) -> Response {
    if inner.federation.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first catalog refresh is running",
        )
            .into_response()
    }
}

/// Authentication, rate limit and revocation; `Err` is the finished
/// refusal. The `Origin`/`Host` checks ran before, in the perimeter
/// middleware that wraps every route of [`crate::Gateway::router`].
async fn admit(inner: &Inner, headers: &HeaderMap) -> Result<Arc<Caller>, Response> {
    // A token not verified before is charged to the client address before
    // its signature is checked (see docs/security.md, "Rate limiting").
    let caller = match inner
        .auth
        .authenticate_guarded(headers, || inner.controls.charge_anonymous())
        .await
    {
        Ok(c) => c,
        Err(NotAuthenticated::Throttled(limited)) => return Err(limited.into_response()),
        Err(NotAuthenticated::Rejected(rejection)) => {
            return Err(inner.auth.reject(rejection, &inner.federation.catalog()));
        }
    };
    match inner.controls.admit(&caller).await {
        Ok(()) => Ok(caller),
        Err(refused) => Err(refused.into_response(|| {
            inner.auth.reject(
                AuthRejection::Unauthenticated {
                    presented: true,
                    reason: "the token was revoked (the authorization server reports it inactive)"
                        .into(),
                },
                &inner.federation.catalog(),
            )
        })),
    }
}

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

async fn post_mcp(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    post_mcp_on(&inner, request).await
}

/// `POST` on the MCP path, borrowing the gateway (the served hot path
/// calls this directly, so no reference count shared by every serving
/// thread is written per request).
pub(crate) async fn post_mcp_on(inner: &Arc<Inner>, request: Request) -> Response {
    // Taken apart rather than extracted: the `HeaderMap` extractor clones
    // every header, and the body is read only once the caller is admitted.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let caller = match admit(inner, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match read_body(body, inner.config.max_request_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(call) = ModernCall::read(&body) {
        return modern_call(inner, headers, caller, call).await;
    }
    let response = post_general(inner, &headers, caller, &body).await;
    with_header_map(response, headers)
}

/// `response` with its headers moved into `map`, the request's header map,
/// emptied. hyper keeps the header map of each response it sends and
/// parses the connection's next request into it; a response map built
/// fresh for every request is an allocation, and too small for the next
/// request's headers (a second one). Recycling the request's map makes
/// both unnecessary: its capacity already fits the agent's headers.
fn with_header_map(mut response: Response, map: HeaderMap) -> Response {
    let Some(mut map) = crate::reusable_header_map(map) else {
        return response;
    };
    map.extend(std::mem::take(response.headers_mut()));
    *response.headers_mut() = map;
    response
}

/// Everything [`ModernCall::read`] does not read: the `Value` paths of
/// both eras.
async fn post_general(
    inner: &Arc<Inner>,
    headers: &HeaderMap,
    caller: Arc<Caller>,
    body: &[u8],
) -> Response {
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::new(PARSE_ERROR, format!("the body is not JSON: {e}")),
            );
        }
    };
    match era::detect(headers, &body) {
        Era::Modern => Box::pin(modern_post(inner, headers, caller, body)).await,
        Era::Legacy => Box::pin(legacy_post(inner, headers, caller, body)).await,
    }
}

/// The whole request body, at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            RpcError::new(
                INVALID_REQUEST,
                format!(
                    "the request body is larger than the gateway's limit of {limit} bytes; \
                     send smaller arguments (the operator sets max_request_bytes)"
                ),
            ),
        )),
        Err(e) => Err(rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::new(
                INVALID_REQUEST,
                format!("the request body could not be read: {e}"),
            ),
        )),
    }
}

async fn modern_post(
    inner: &Arc<Inner>,
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
        Ok(Incoming::Notification { .. } | Incoming::Response) => return accepted(),
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
        let slot = match inner.controls.open_stream(&caller) {
            Ok(slot) => slot,
            Err(e) => return e.into_response(),
        };
        return crate::controls::hold_slot(sse::listen_stream(inner, id, filter, revision), slot);
    }
    let ctx = call_ctx(headers, caller, revision);
    if let Some(response) =
        fast_path(inner, &ctx, &id, &method, &params, gzip::accepted(headers)).await
    {
        return response;
    }
    match methods::dispatch(inner, &ctx, &method, &params).await {
        Ok(result) => json_response(
            StatusCode::OK,
            &jsonrpc::response(&id, methods::decorate(inner, revision, &method, result)),
        ),
        Err(e) => rpc_error(StatusCode::OK, Some(&id), e),
    }
}

/// [`modern_post`] for a request [`ModernCall::read`] could read: the same
/// checks in the same order, without the `Value` tree.
async fn modern_call(
    inner: &Arc<Inner>,
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
    match methods::tools_call_bytes(inner, &ctx, call.call_params()).await {
        Ok(result) => raw_result_in(&call.id, result.into(), headers),
        Err(e) => with_header_map(rpc_error(StatusCode::OK, Some(&call.id), e), headers),
    }
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
    inner: &Arc<Inner>,
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
        return initialize(inner, &caller, &body);
    }
    let method_name = body
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("this request")
        .to_string();
    let Some(session_id) = era::header(headers, "mcp-session-id") else {
        return no_session(id, &method_name);
    };
    let Ok(session) = inner.sessions.get(session_id, &caller.sub) else {
        return unknown_session(id);
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
            let cap = inner.config.controls.max_batch_messages;
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
            let mut responses = Vec::new();
            for (index, item) in items.into_iter().enumerate() {
                let message = classify(item);
                let answer = crate::audit::audited_item(
                    inner.controls.auditor(),
                    StatusCode::OK.as_u16(),
                    batch_message(inner, &ctx, message, index > 0),
                )
                .await;
                if let Some(r) = answer {
                    responses.push(r);
                }
            }
            if responses.is_empty() {
                accepted()
            } else {
                json_response(StatusCode::OK, &Value::Array(responses))
            }
        }
        single => {
            let incoming = classify(single);
            if let Ok(Incoming::Request { id, method, params }) = &incoming
                && let Some(response) =
                    fast_path(inner, &ctx, id, method, params, gzip::accepted(headers)).await
            {
                return response;
            }
            legacy_single(inner, &ctx, incoming).await
        }
    }
}

/// `tools/list` and `tools/call` (the requests an agent sends most) are
/// answered with their result serialized once and spliced into the
/// envelope, in both eras.
async fn fast_path(
    inner: &Arc<Inner>,
    ctx: &CallCtx,
    id: &Value,
    method: &str,
    params: &Value,
    gzip: bool,
) -> Option<Response> {
    Some(match method {
        "tools/list" => match methods::tools_list_bytes(inner, ctx, params) {
            Ok(page) => list_response(id, &page, gzip),
            Err(e) => rpc_error(StatusCode::OK, Some(id), e),
        },
        "tools/call" => raw_result(
            id,
            methods::tools_call_bytes(inner, ctx, CallParams::of(params)).await,
        ),
        _ => return None,
    })
}

fn raw_result(id: &Value, result: Result<impl Into<Bytes>, RpcError>) -> Response {
    match result {
        Ok(result) => raw_result_response(id, result.into()),
        Err(e) => rpc_error(StatusCode::OK, Some(id), e),
    }
}

async fn legacy_single(inner: &Arc<Inner>, ctx: &CallCtx, single: Classified) -> Response {
    match legacy_message(inner, ctx, single).await {
        Some(r) => {
            let status = if r.get("error").is_some() && r.get("id").is_none() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            json_response(status, &r)
        }
        None => accepted(),
    }
}

/// One message of a batch: charged to the caller's budget first when
/// `charge`, refused with a JSON-RPC error when over it.
async fn batch_message(
    inner: &Arc<Inner>,
    ctx: &CallCtx,
    message: Classified,
    charge: bool,
) -> Option<Value> {
    if charge && let Err(limited) = inner.controls.charge_caller(&ctx.caller) {
        crate::audit::note_outcome("refused", Some("rate_limited"));
        let Ok(Incoming::Request { id, method, .. }) = message else {
            return None;
        };
        crate::audit::note(|r| r.method = Some(crate::audit::method_word(&method)));
        let error = RpcError::new(
            RATE_LIMITED,
            format!(
                "rate limit exceeded: this message of the batch was not run; retry after {} s \
                 or ask the gateway operator for a larger budget (CORTEX_RATE_LIMIT_PER_MINUTE)",
                limited.retry_after_secs()
            ),
        );
        return Some(jsonrpc::error_response(Some(&id), &error));
    }
    legacy_message(inner, ctx, message).await
}

/// The JSON-RPC code of a batch message refused by the rate limiter
/// (implementation-defined server error range).
const RATE_LIMITED: i64 = -32000;

/// One legacy message; `None` for notifications and client responses.
async fn legacy_message(inner: &Arc<Inner>, ctx: &CallCtx, message: Classified) -> Option<Value> {
    match message {
        Err((id, e)) => Some(jsonrpc::error_response(id.as_ref(), &e)),
        Ok(Incoming::Notification { .. } | Incoming::Response) => None,
        Ok(Incoming::Request { id, method, .. }) if method == "initialize" => {
            Some(jsonrpc::error_response(
                Some(&id),
                &RpcError::new(
                    INVALID_REQUEST,
                    "initialize must be sent alone, without a session",
                ),
            ))
        }
        Ok(Incoming::Request { id, method, params }) => Some(
            match methods::dispatch(inner, ctx, &method, &params).await {
                Ok(result) => jsonrpc::response(&id, result),
                Err(e) => jsonrpc::error_response(Some(&id), &e),
            },
        ),
    }
}

fn initialize(inner: &Arc<Inner>, caller: &Caller, body: &Value) -> Response {
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
    let session = inner.sessions.create(&caller.sub, revision);
    let mut response = json_response(
        StatusCode::OK,
        &jsonrpc::response(&id, methods::initialize_result(inner, revision)),
    );
    if let Ok(v) = HeaderValue::from_str(&session) {
        response.headers_mut().insert("mcp-session-id", v);
    }
    response
}

fn modern_header(headers: &HeaderMap) -> bool {
    era::header(headers, &era::MCP_PROTOCOL_VERSION)
        .is_some_and(|v| v.trim() >= Revision::V2026_07_28.as_str())
}

async fn get_mcp(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let caller = match admit(&inner, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if modern_header(&headers) {
        return method_not_allowed();
    }
    let Some(session_id) = era::header(&headers, "mcp-session-id") else {
        return if era::legacy_header_version(&headers).is_some() {
            no_session(None, "GET")
        } else {
            method_not_allowed()
        };
    };
    let Ok(session) = inner.sessions.get(session_id, &caller.sub) else {
        return unknown_session(None);
    };
    let slot = match inner.controls.open_stream(&caller) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    crate::controls::hold_slot(
        sse::legacy_stream(&inner, session.revision, session.ended()),
        slot,
    )
}

async fn delete_mcp(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let caller = match admit(&inner, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if modern_header(&headers) {
        return method_not_allowed();
    }
    let Some(session_id) = era::header(&headers, "mcp-session-id") else {
        return no_session(None, "DELETE");
    };
    match inner.sessions.end(session_id, &caller.sub) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => unknown_session(None),
    }
}

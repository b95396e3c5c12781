//! The dispatcher: one framework-agnostic function from an HTTP request
//! (method, headers, body bytes) to a status and a JSON body. Every rule of
//! the contract lives here, so every adapter behaves the same.
//!
//! Order of checks, and why:
//! 1. HTTP method (405): nothing else matters on a GET.
//! 2. Body size (413): decided by the adapter while reading, reported here.
//! 3. Content type (400 `unsupported_media_type`): the contract's status
//!    table has no 415, so a wrong type is a bad request.
//! 4. Authentication (401) before parsing: an unauthenticated caller learns
//!    nothing about what the backend would do with its body.
//! 5. JSON (400 `invalid_json`), envelope (400 `invalid_request`), `params`
//!    an object (400 `invalid_params`).
//! 6. Unknown method (400 `unknown_method`), even for a technical token, so
//!    the gateway can tell "not implemented" from "not allowed".
//! 7. Technical token outside discovery (403 `technical_token_not_allowed`).
//! 8. Scope (403 with `required`), then arguments (400 with the JSON path),
//!    then the handler (its `ToolError`, or 500 on a panic).

use std::{panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use crate::{
    auth::{AuthError, Caller, Principal},
    backend::{Backend, Inner, match_template},
    contract::{
        ErrorBody, GetHelpParams, GetPromptParams, ListTicketsParams, MissingCapabilityReport,
        PromptList, ReadResourceParams, RequestEnvelope, ResourceTemplateList, WhoAmI, methods,
    },
    error::ToolError,
    tool::{Ctx, decode_args},
};

/// The body of an incoming request, as read by the adapter.
#[derive(Debug, Clone)]
pub enum RequestBody {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// The body exceeded [`Backend::body_limit`]; reading stopped.
    TooLarge,
}

/// An HTTP request, in the SDK's own types (no `http` crate in the API).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    headers: Vec<(String, String)>,
    body: RequestBody,
}

impl Request {
    /// A request with this HTTP method and body.
    pub fn new(method: impl Into<String>, body: RequestBody) -> Self {
        Self {
            method: method.into(),
            headers: Vec::new(),
            body,
        }
    }

    /// A POST with a complete body.
    pub fn post(body: impl Into<Bytes>) -> Self {
        Self::new("POST", RequestBody::Complete(body.into()))
    }

    /// Adds a header (names are case-insensitive).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header in place.
    pub fn push_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The headers the dispatcher reads; adapters may pass only these. The
/// W3C trace-context headers make the request's span a child of the
/// caller's (feature `otel`).
pub const READ_HEADERS: [&str; 4] = [
    "authorization",
    "content-type",
    crate::trace::TRACEPARENT,
    crate::trace::TRACESTATE,
];

/// A response: status and a JSON body (always `application/json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON bytes.
    pub body: Bytes,
    /// Value of an `Allow` header to send (on 405).
    pub allow: Option<&'static str>,
}

impl Response {
    /// The content type of every response.
    pub const CONTENT_TYPE: &'static str = "application/json";

    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| {
            br#"{"error":"internal error: the response could not be encoded"}"#.to_vec()
        });
        Self {
            status,
            body: body.into(),
            allow: None,
        }
    }

    fn error(status: u16, body: ErrorBody) -> Self {
        Self::json(status, &body)
    }

    fn tool_error(e: &ToolError) -> Self {
        Self::error(e.status(), e.body())
    }

    /// The body parsed as JSON (for tests).
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn bad_request(code: &str, message: impl Into<String>) -> Response {
    Response::error(400, ErrorBody::new(message).code(code))
}

fn unauthorized(e: &AuthError) -> Response {
    e.log_detail();
    Response::error(401, ErrorBody::new(e.to_string()).code("unauthorized"))
}

fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
            && essence.to_ascii_lowercase().starts_with("application/")
}

fn params<T: DeserializeOwned>(params: Map<String, Value>) -> Result<T, Response> {
    decode_args(Value::Object(params)).map_err(|e| Response::tool_error(&e))
}

impl<S: Send + Sync + 'static> Backend<S> {
    /// Answers one request. Never panics, never returns a non-JSON body.
    pub async fn handle(&self, request: Request) -> Response {
        let inner = self.inner.clone();
        let span = crate::trace::request_span(&request);
        match AssertUnwindSafe(dispatch(inner, request).instrument(span))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(backend = %self.inner.id, "a handler panicked");
                Response::error(
                    500,
                    ErrorBody::new("internal error in the backend; the details are in its log")
                        .code("internal"),
                )
            }
        }
    }
}

async fn dispatch<S: Send + Sync + 'static>(inner: Arc<Inner<S>>, request: Request) -> Response {
    if !request.method.eq_ignore_ascii_case("POST") {
        let mut r = Response::error(
            405,
            ErrorBody::new(format!(
                "method {} not allowed: the contract endpoint accepts POST only",
                request.method
            ))
            .code("method_not_allowed"),
        );
        r.allow = Some("POST");
        return r;
    }
    let body = match &request.body {
        RequestBody::Complete(b) if b.len() <= inner.body_limit => b.clone(),
        _ => {
            return Response::error(
                413,
                ErrorBody::new(format!(
                    "request body larger than this backend's limit of {} bytes",
                    inner.body_limit
                ))
                .code("payload_too_large"),
            );
        }
    };
    match request.get("content-type") {
        Some(ct) if is_json_content_type(ct) => {}
        other => {
            return bad_request(
                "unsupported_media_type",
                format!(
                    "Content-Type must be application/json (got {})",
                    other.map_or("none".to_string(), |c| format!("`{c}`"))
                ),
            );
        }
    }
    let principal = match inner.auth.authenticate(request.get("authorization")).await {
        Ok(p) => p,
        Err(e) => return unauthorized(&e),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return bad_request(
            "invalid_json",
            "empty body: send {\"method\": \"<name>\", \"params\": {...}}",
        );
    }
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request("invalid_json", format!("the body is not valid JSON: {e}")),
    };
    if let Some(p) = raw.get("params")
        && !p.is_object()
        && !p.is_null()
    {
        return bad_request(
            "invalid_params",
            "`params` must be a JSON object when present",
        );
    }
    let envelope: RequestEnvelope = match serde_json::from_value(raw) {
        Ok(e) => e,
        Err(e) => {
            return bad_request(
                "invalid_request",
                format!("the body must be {{\"method\": string, \"params\"?: object}}: {e}"),
            );
        }
    };
    let method = envelope.method.as_str();
    tracing::Span::current().record("rpc.method", method);
    let params = envelope.params.unwrap_or_default();
    if !is_implemented(&inner, method) {
        return bad_request(
            "unknown_method",
            format!("unknown method `{method}`: call list_tools for the tools of this backend"),
        )
        .with_detail("method", json!(method));
    }
    let caller = match principal {
        Principal::Technical if methods::is_discovery(method) => None,
        Principal::Technical => {
            return Response::error(
                403,
                ErrorBody::new(format!(
                    "the technical token may call only {}; `{method}` needs a user token",
                    methods::DISCOVERY.join(", ")
                ))
                .code("technical_token_not_allowed"),
            );
        }
        Principal::User(caller) => Some(caller),
    };
    // A user token reads the prompts, the templates and the snapshot only
    // with a scope of this backend's domain: the scope `get_help` needs
    // (default `mcp:<id>:read`; its write scope implies it). The technical
    // token reads them for discovery.
    if let Some(caller) = &caller
        && matches!(
            method,
            methods::LIST_PROMPTS | methods::LIST_RESOURCE_TEMPLATES | methods::GET_SNAPSHOT
        )
        && !caller.has_scope(&inner.help_scope)
    {
        return scope_refusal(&inner.help_scope);
    }
    match (method, caller) {
        (methods::LIST_TOOLS, _) => Response {
            status: 200,
            body: inner.list_tools_body.clone(),
            allow: None,
        },
        (methods::LIST_PROMPTS, _) => Response::json(
            200,
            &PromptList {
                prompts: inner.prompts.iter().map(|p| p.descriptor.clone()).collect(),
            },
        ),
        (methods::LIST_RESOURCE_TEMPLATES, _) => Response::json(
            200,
            &ResourceTemplateList {
                resource_templates: inner.resources.iter().map(|r| r.template.clone()).collect(),
            },
        ),
        (methods::GET_SNAPSHOT, _) => match &inner.snapshot {
            Some(call) => respond(call(inner.state.clone()).await),
            None => unreachable_method(),
        },
        (_, Some(caller)) => user_method(&inner, method, params, caller).await,
        (_, None) => unreachable_method(),
    }
}

impl Response {
    fn with_detail(self, key: &str, value: Value) -> Self {
        let mut body: Map<String, Value> = serde_json::from_slice(&self.body).unwrap_or_default();
        body.insert(key.into(), value);
        Self::json(self.status, &body)
    }
}

fn unreachable_method() -> Response {
    Response::error(
        500,
        ErrorBody::new("internal error: method routing").code("internal"),
    )
}

fn respond<T: serde::Serialize>(result: Result<T, ToolError>) -> Response {
    match result {
        Ok(v) => Response::json(200, &v),
        Err(e) => {
            if let ToolError::Internal(cause) = &e {
                tracing::error!(%cause, "handler failed");
            }
            Response::tool_error(&e)
        }
    }
}

fn is_implemented<S>(inner: &Inner<S>, method: &str) -> bool {
    match method {
        methods::LIST_TOOLS | methods::GET_HELP | methods::WHOAMI => true,
        methods::LIST_PROMPTS | methods::GET_PROMPT => !inner.prompts.is_empty(),
        methods::LIST_RESOURCE_TEMPLATES | methods::READ_RESOURCE => !inner.resources.is_empty(),
        methods::GET_SNAPSHOT => inner.snapshot.is_some(),
        methods::REPORT_MISSING_CAPABILITY | methods::LIST_TICKETS => inner.report.is_some(),
        tool => inner.tool_index.contains_key(tool),
    }
}

fn scope_refusal(scope: &str) -> Response {
    Response::tool_error(&ToolError::missing_scope(scope))
}

async fn user_method<S: Send + Sync + 'static>(
    inner: &Arc<Inner<S>>,
    method: &str,
    params_map: Map<String, Value>,
    caller: Arc<Caller>,
) -> Response {
    let ctx = Ctx::new(inner.state.clone(), caller.clone(), inner.id.clone());
    match method {
        methods::WHOAMI => Response::json(
            200,
            &WhoAmI {
                backend: inner.id.to_string(),
                user: caller.user_context(),
                tools: inner
                    .tools
                    .iter()
                    .filter(|t| caller.has_scope(&t.descriptor.scope))
                    .map(|t| t.descriptor.name.clone())
                    .collect(),
                actor: caller.actor.clone(),
            },
        ),
        methods::GET_HELP => {
            if !caller.has_scope(&inner.help_scope) {
                return scope_refusal(&inner.help_scope);
            }
            let p: GetHelpParams = match params(params_map) {
                Ok(p) => p,
                Err(r) => return r,
            };
            match p.topic.as_deref() {
                None => Response::json(200, &inner.help.all()),
                Some(topic) => match inner.help.topic(topic) {
                    Some(section) => Response::json(200, &section),
                    None => {
                        let topics = inner.help.topics();
                        Response::error(
                            400,
                            ErrorBody::new(format!(
                                "unknown help topic `{topic}`; known topics: {}",
                                topics.join(", ")
                            ))
                            .code("unknown_topic")
                            .detail("topics", json!(topics)),
                        )
                    }
                },
            }
        }
        methods::GET_PROMPT => {
            let p: GetPromptParams = match params(params_map) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let Some(prompt) = inner.prompts.iter().find(|x| x.descriptor.name == p.name) else {
                return Response::tool_error(&ToolError::not_found(format!(
                    "no prompt named `{}`",
                    p.name
                )));
            };
            if !caller.has_scope(&prompt.descriptor.scope) {
                return scope_refusal(&prompt.descriptor.scope);
            }
            let args = p.arguments.unwrap_or_default();
            for a in prompt.descriptor.arguments.iter().flatten() {
                if a.required == Some(true) && !args.contains_key(&a.name) {
                    return Response::tool_error(&ToolError::invalid(format!(
                        "prompt `{}` needs the argument `{}`",
                        p.name, a.name
                    )));
                }
            }
            respond((prompt.call)(ctx, args).await)
        }
        methods::READ_RESOURCE => {
            let p: ReadResourceParams = match params(params_map) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let found = inner.resources.iter().find_map(|r| {
                match_template(&r.template.uri_template, &p.uri).map(|vars| (r, vars))
            });
            let Some((resource, vars)) = found else {
                return Response::tool_error(&ToolError::not_found(format!(
                    "no resource template of this backend matches `{}`",
                    p.uri
                )));
            };
            if !caller.has_scope(&resource.template.scope) {
                return scope_refusal(&resource.template.scope);
            }
            respond((resource.call)(ctx, p.uri, vars).await)
        }
        methods::REPORT_MISSING_CAPABILITY => {
            let Some(report) = &inner.report else {
                return unreachable_method();
            };
            match params::<MissingCapabilityReport>(params_map) {
                Ok(p) => respond(report(ctx, p).await),
                Err(r) => r,
            }
        }
        methods::LIST_TICKETS => {
            let Some(list) = &inner.list_tickets else {
                return unreachable_method();
            };
            match params::<ListTicketsParams>(params_map) {
                Ok(p) => respond(list(ctx, p).await),
                Err(r) => r,
            }
        }
        tool_name => {
            let Some(&index) = inner.tool_index.get(tool_name) else {
                return unreachable_method();
            };
            let tool = &inner.tools[index];
            if !caller.has_scope(&tool.descriptor.scope) {
                return scope_refusal(&tool.descriptor.scope);
            }
            match (tool.call)(ctx, Value::Object(params_map)).await {
                Ok(value) => check_output(
                    &inner.id,
                    tool_name,
                    tool.output_validator.as_deref(),
                    value,
                ),
                Err(e) => {
                    if let ToolError::Internal(cause) = &e {
                        tracing::error!(tool = tool_name, %cause, "tool failed");
                    }
                    Response::tool_error(&e)
                }
            }
        }
    }
}

/// A result that breaks the tool's own `outputSchema` is a bug in the tool:
/// a 500 in debug builds (so tests catch it), a logged warning in release
/// (so production keeps answering). Either names the JSON path and the
/// schema keyword, never the value.
fn check_output(
    backend: &str,
    tool: &str,
    validator: Option<&jsonschema::Validator>,
    value: Value,
) -> Response {
    if let Some(validator) = validator
        && !validator.is_valid(&value)
        && let Some(error) = validator.iter_errors(&value).next()
    {
        // The path and the failing keyword only: the error's own text
        // quotes the offending value, which may be personal data.
        let detail = format!(
            "at `{}`: the schema's `{}` keyword (at `{}`) does not hold",
            error.instance_path(),
            error.kind().keyword(),
            error.schema_path()
        );
        if cfg!(debug_assertions) {
            tracing::error!(backend, tool, %detail, "result does not match outputSchema");
            return Response::error(
                500,
                ErrorBody::new(format!(
                    "tool `{tool}` returned a result that does not match its outputSchema ({detail})"
                ))
                .code("output_schema_mismatch"),
            );
        }
        tracing::warn!(backend, tool, %detail, "result does not match outputSchema");
    }
    Response::json(200, &value)
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("text/x+json"));
        assert!(!is_json_content_type(""));
    }
}

//! JSON-RPC 2.0 framing, error codes and the MCP revisions the gateway
//! speaks.

use serde_json::{Map, Value, json};

/// Parse error.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// Invalid request.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// Method not found.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid params (also unknown tool, and resource not found in 2026-07-28).
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// Internal error.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// Server error (the implementation-defined range): the gateway's
/// refusals for limits, budgets, the deadline and introspection.
pub(crate) const SERVER_ERROR: i64 = -32000;
/// Resource not found (revisions up to 2025-11-25).
pub(crate) const RESOURCE_NOT_FOUND: i64 = -32002;
/// 2026-07-28: a header disagrees with the body.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request's protocol version is not supported.
pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

pub(crate) use crate::protocol::Revision;

/// A JSON-RPC error (what goes in `"error"`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    /// The code.
    pub code: i64,
    /// A one-sentence message.
    pub message: String,
    /// Extra data.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Invalid params.
    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// Adds data.
    #[must_use]
    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The error object.
    pub(crate) fn to_value(&self) -> Value {
        let mut e = Map::new();
        e.insert("code".into(), json!(self.code));
        e.insert("message".into(), json!(self.message));
        if let Some(d) = &self.data {
            e.insert("data".into(), d.clone());
        }
        Value::Object(e)
    }
}

/// A success response.
pub(crate) fn response(id: &Value, result: Value) -> Value {
    // Built by hand: `json!` would serialize `result` into a copy.
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::String("2.0".into()));
    m.insert("id".into(), id.clone());
    m.insert("result".into(), result);
    Value::Object(m)
}

/// An error response; `id` absent when the request's id is unknown.
pub(crate) fn error_response(id: Option<&Value>, error: &RpcError) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), json!("2.0"));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    m.insert("error".into(), error.to_value());
    Value::Object(m)
}

/// A notification.
pub(crate) fn notification(method: &str, params: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), json!("2.0"));
    m.insert("method".into(), json!(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

/// One incoming message, classified.
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    /// A request (has an id and a method).
    Request {
        /// The id (string or number).
        id: Value,
        /// The method.
        method: String,
        /// The params (an object, or `{}`).
        params: Value,
    },
    /// A notification (a method, no id).
    Notification,
    /// A response from the client (to a request we never send; accepted).
    Response,
}

/// A classified message; `Err` carries the error and the id if known.
pub(crate) type Classified = Result<Incoming, (Option<Value>, RpcError)>;

/// Classifies one message.
pub(crate) fn classify(message: Value) -> Classified {
    let Value::Object(mut obj) = message else {
        return Err((
            None,
            RpcError::new(INVALID_REQUEST, "a JSON-RPC message must be an object"),
        ));
    };
    let id = obj.remove("id");
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id,
            RpcError::new(INVALID_REQUEST, "`jsonrpc` must be \"2.0\""),
        ));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => Some(m),
        _ => None,
    };
    match (method, id) {
        (Some(method), Some(id)) => {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return Err((
                    None,
                    RpcError::new(
                        INVALID_REQUEST,
                        "the request id must be a string or an integer",
                    ),
                ));
            }
            let params = obj.remove("params").unwrap_or_else(|| json!({}));
            if !params.is_object() {
                return Err((
                    Some(id),
                    RpcError::invalid_params("`params` must be an object"),
                ));
            }
            Ok(Incoming::Request { id, method, params })
        }
        (Some(_), None) => Ok(Incoming::Notification),
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Incoming::Response)
        }
        (None, id) => Err((
            id,
            RpcError::new(INVALID_REQUEST, "the message has no `method`"),
        )),
    }
}

//! Telling the eras apart on `POST /mcp`, and the stateless era's header
//! rules. See `README.md` beside this file for the why.

use std::borrow::Cow;

use axum::http::{HeaderMap, StatusCode, header::AsHeaderName};
use base64::Engine as _;
use serde_json::{Value, json};

use super::jsonrpc::{
    HEADER_MISMATCH, INVALID_PARAMS, METHOD_NOT_FOUND, Revision, RpcError,
    UNSUPPORTED_PROTOCOL_VERSION,
};

/// The `_meta` key carrying the protocol version (2026-07-28).
pub(crate) const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key carrying the client capabilities (2026-07-28).
pub(crate) const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Which era a POST belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Era {
    /// Stateless 2026-07-28 semantics.
    Modern,
    /// `initialize`-based semantics (sessions).
    Legacy,
}

pub(crate) use crate::protocol::{
    MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, X_CORTEX_BACKENDS, X_CORTEX_TOOL_MODE,
};

/// A header's value as a string, if present and readable.
pub(crate) fn header(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decides the era: modern first (a `MCP-Protocol-Version` of 2026-07-28 or
/// later, or per-request `_meta` with a protocol version), legacy otherwise.
pub(crate) fn detect(headers: &HeaderMap, body: &Value) -> Era {
    let header_modern = header(headers, &MCP_PROTOCOL_VERSION)
        .is_some_and(|v| v.trim() >= Revision::V2026_07_28.as_str());
    let meta_version = body
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_VERSION))
        .is_some();
    if header_modern || meta_version {
        Era::Modern
    } else {
        Era::Legacy
    }
}

/// A refusal of a modern request: HTTP status plus JSON-RPC error.
pub(crate) type Refusal = (StatusCode, RpcError);

/// Decodes an `Mcp-Name` value (`=?base64?...?=` for non-header-safe names).
fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Cow::Owned),
        None => Some(Cow::Borrowed(value)),
    }
}

/// What [`validate_modern`] reads from a request's params, so that a
/// request read into a tree and one read into a borrowed struct (the
/// `tools/call` fast path) are checked by the same code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetaView<'a> {
    /// `params._meta` is an object.
    pub meta: bool,
    /// `params._meta[META_VERSION]`, when a string.
    pub version: Option<&'a str>,
    /// `params._meta[META_CAPABILITIES]` is an object.
    pub capabilities: bool,
    /// For `tools/call` and `prompts/get` `params.name`, for
    /// `resources/read` `params.uri` (`""` when not a string); `None` when
    /// absent or for other methods.
    pub named: Option<&'a str>,
}

impl<'a> MetaView<'a> {
    /// The view of `params` (an object) of a `method` request.
    pub(crate) fn of(method: &str, params: &'a Value) -> Self {
        let meta = params.get("_meta").and_then(Value::as_object);
        let named = match method {
            "tools/call" | "prompts/get" => params.get("name"),
            "resources/read" => params.get("uri"),
            _ => None,
        };
        Self {
            meta: meta.is_some(),
            version: meta
                .and_then(|m| m.get(META_VERSION))
                .and_then(Value::as_str),
            capabilities: meta
                .and_then(|m| m.get(META_CAPABILITIES))
                .is_some_and(Value::is_object),
            named: named.map(|v| v.as_str().unwrap_or_default()),
        }
    }
}

/// Checks a modern request: method known (404), `_meta` complete (400
/// `-32602`), headers mirroring the body (400 `-32020`), then the version
/// supported (400 `-32022`). Header agreement comes before the version so a
/// header that contradicts the body is reported as such. Returns the
/// revision.
pub(crate) fn validate_modern(
    headers: &HeaderMap,
    method: &str,
    params: MetaView<'_>,
    known: bool,
) -> Result<Revision, Refusal> {
    if !known {
        return Err((
            StatusCode::NOT_FOUND,
            RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method} (not part of protocol revision 2026-07-28)"),
            ),
        ));
    }
    let bad = |code: i64, message: String| (StatusCode::BAD_REQUEST, RpcError::new(code, message));
    if !params.meta {
        return Err(bad(
            INVALID_PARAMS,
            "params._meta is required in protocol revision 2026-07-28 (protocolVersion and clientCapabilities)".into(),
        ));
    }
    let Some(requested) = params.version else {
        return Err(bad(
            INVALID_PARAMS,
            format!("params._meta[\"{META_VERSION}\"] (a string) is required"),
        ));
    };
    if !params.capabilities {
        return Err(bad(
            INVALID_PARAMS,
            format!("params._meta[\"{META_CAPABILITIES}\"] (an object) is required"),
        ));
    }
    match header(headers, &MCP_PROTOCOL_VERSION) {
        Some(v) if v.trim() == requested => {}
        Some(v) => {
            return Err(bad(
                HEADER_MISMATCH,
                format!(
                    "MCP-Protocol-Version header `{v}` differs from params._meta version `{requested}`"
                ),
            ));
        }
        None => {
            return Err(bad(
                HEADER_MISMATCH,
                "the MCP-Protocol-Version header is required on every request".into(),
            ));
        }
    }
    match header(headers, &MCP_METHOD) {
        Some(v) if v == method => {}
        Some(v) => {
            return Err(bad(
                HEADER_MISMATCH,
                format!("Mcp-Method header `{v}` differs from the body's method `{method}`"),
            ));
        }
        None => {
            return Err(bad(
                HEADER_MISMATCH,
                "the Mcp-Method header is required on every request".into(),
            ));
        }
    }
    if let Some(expected) = params.named {
        match header(headers, &MCP_NAME).map(decode_header_value) {
            Some(Some(v)) if v == expected => {}
            Some(_) => {
                return Err(bad(
                    HEADER_MISMATCH,
                    format!("Mcp-Name header differs from the body's `{expected}`"),
                ));
            }
            None => {
                return Err(bad(
                    HEADER_MISMATCH,
                    format!("the Mcp-Name header is required for {method}"),
                ));
            }
        }
    }
    let revision = Revision::parse(requested)
        .filter(|r| r.is_modern())
        .ok_or_else(|| {
            let supported: Vec<&str> = Revision::MODERN.iter().map(|r| r.as_str()).collect();
            (
                StatusCode::BAD_REQUEST,
                RpcError::new(
                    UNSUPPORTED_PROTOCOL_VERSION,
                    format!(
                        "unsupported protocol version {requested}; per-request use: {}; \
                         for 2025-11-25, 2025-06-18 or 2025-03-26 send initialize",
                        supported.join(", ")
                    ),
                )
                .with_data(json!({"supported": supported, "requested": requested})),
            )
        })?;
    Ok(revision)
}

/// Reads the legacy `MCP-Protocol-Version` header: absent is `None`, a
/// supported legacy revision is `Some(Ok)`, anything else `Some(Err)`.
pub(crate) fn legacy_header_version(headers: &HeaderMap) -> Option<Result<Revision, String>> {
    let v = header(headers, &MCP_PROTOCOL_VERSION)?.trim();
    Some(
        Revision::parse(v)
            .filter(|r| !r.is_modern())
            .ok_or_else(|| v.to_string()),
    )
}

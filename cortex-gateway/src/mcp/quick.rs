//! A 2026-07-28 `tools/call` in its usual shape, read into borrowed fields
//! instead of a `serde_json::Value` tree: about twenty fewer allocations
//! per call (every key and string of the envelope and of `_meta`).
//!
//! Anything unusual (a missing or duplicate field, an escaped string, an id
//! that is not a string or an integer, another method) makes [`ModernCall::read`]
//! return `None`, and the request takes the general path, which gives the
//! precise error. When it returns a call, the general path would have
//! classified the same bytes as the same modern `tools/call`; the checks
//! that follow ([`super::era::validate_modern`], [`super::tools::call`]) are
//! shared by both paths through [`MetaView`] and [`CallParams`].

use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use super::{era::MetaView, tools::CallParams};

/// The request.
#[derive(Debug, Deserialize)]
pub(crate) struct ModernCall<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    /// The request id.
    pub(crate) id: Value,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow)]
    params: Params<'a>,
}

#[derive(Debug, Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(rename = "_meta", borrow)]
    meta: Meta<'a>,
}

#[derive(Debug, Deserialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
    version: &'a str,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow)]
    capabilities: &'a RawValue,
}

impl<'a> ModernCall<'a> {
    /// The call in `body`, or `None` when the body is not a plain modern
    /// `tools/call` (the general path handles it).
    pub(crate) fn read(body: &'a [u8]) -> Option<Self> {
        let call: Self = serde_json::from_slice(body).ok()?;
        let id_ok = call.id.is_string() || call.id.is_i64() || call.id.is_u64();
        (call.jsonrpc == "2.0" && call.method == "tools/call" && id_ok).then_some(call)
    }

    /// What the modern checks read.
    pub(crate) fn meta_view(&self) -> MetaView<'_> {
        MetaView {
            meta: true,
            version: Some(self.params.meta.version),
            capabilities: self.params.meta.capabilities.get().starts_with('{'),
            named: Some(self.params.name),
        }
    }

    /// What `tools/call` reads.
    pub(crate) fn call_params(&self) -> CallParams<'_> {
        CallParams {
            name: Some(self.params.name),
            arguments: self.params.arguments.as_ref(),
        }
    }

    /// The method (always `tools/call`).
    pub(crate) fn method(&self) -> &str {
        self.method
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mcp::jsonrpc::{Incoming, classify};

    /// The general path's reading of the same bytes.
    fn general(body: &[u8]) -> Option<(Value, String, Value)> {
        match classify(serde_json::from_slice(body).ok()?) {
            Ok(Incoming::Request { id, method, params }) => Some((id, method, params)),
            _ => None,
        }
    }

    fn meta() -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}
        })
    }

    #[test]
    fn a_plain_call_reads_as_the_general_path_does() {
        for (id, arguments) in [
            (json!(7), Some(json!({"id": "42", "n": [1, 2]}))),
            (json!("req-1"), None),
            (json!(u64::MAX), Some(Value::Null)),
        ] {
            let mut params = json!({"name": "crm_find", "_meta": meta(), "extra": true});
            if let Some(a) = &arguments {
                params["arguments"] = a.clone();
            }
            let body = serde_json::to_vec(
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
            )
            .unwrap();
            let quick = ModernCall::read(&body).expect("a plain call takes the quick path");
            let (g_id, g_method, g_params) = general(&body).unwrap();
            assert_eq!(quick.id, g_id);
            assert_eq!(quick.method(), g_method);
            let (q, g) = (quick.call_params(), CallParams::of(&g_params));
            assert_eq!(q.name, g.name);
            // `null` and absent arguments both mean "no arguments".
            let none = |a: Option<&Value>| a.filter(|v| !v.is_null()).cloned();
            assert_eq!(none(q.arguments), none(g.arguments));
            let (qv, gv) = (quick.meta_view(), MetaView::of("tools/call", &g_params));
            assert_eq!(
                (qv.meta, qv.version, qv.capabilities, qv.named),
                (gv.meta, gv.version, gv.capabilities, gv.named)
            );
        }
    }

    #[test]
    fn anything_unusual_takes_the_general_path() {
        let ok = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "crm_find", "_meta": meta()}});
        assert!(ModernCall::read(&serde_json::to_vec(&ok).unwrap()).is_some());
        let variants: Vec<(&str, Value)> = vec![
            ("jsonrpc 1.0", json!({"jsonrpc": "1.0"})),
            ("float id", json!({"id": 1.5})),
            ("null id", json!({"id": null})),
            ("other method", json!({"method": "tools/list"})),
            (
                "name not a string",
                json!({"params": {"name": 3, "_meta": meta()}}),
            ),
            ("no _meta", json!({"params": {"name": "crm_find"}})),
            (
                "version not a string",
                json!({"params": {"name": "x", "_meta": {
                    "io.modelcontextprotocol/protocolVersion": 2026,
                    "io.modelcontextprotocol/clientCapabilities": {}}}}),
            ),
            (
                "no capabilities",
                json!({"params": {"name": "x", "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}),
            ),
        ];
        for (why, patch) in variants {
            let mut body = ok.clone();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let bytes = serde_json::to_vec(&body).unwrap();
            assert!(ModernCall::read(&bytes).is_none(), "{why}: {body}");
        }
        // Escaped strings and duplicate keys cannot be borrowed or are
        // ambiguous: the general path decides.
        let escaped = br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(ModernCall::read(escaped).is_none());
        let duplicate = br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        assert!(ModernCall::read(duplicate).is_none());
    }

    #[test]
    fn capabilities_that_are_not_an_object_fail_the_shared_check() {
        let body = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "x", "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": []}}}))
        .unwrap();
        let quick = ModernCall::read(&body).unwrap();
        assert!(!quick.meta_view().capabilities);
        let spaced = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":   { }  }}}"#;
        assert!(ModernCall::read(spaced).unwrap().meta_view().capabilities);
        let (_, _, params) = general(&body).unwrap();
        assert!(!MetaView::of("tools/call", &params).capabilities);
    }
}

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

use serde::{Deserialize, Deserializer, de::Visitor};
use serde_json::{Value, value::RawValue};

use super::{era::MetaView, tools::CallParams};
use crate::telemetry::SpanFields;

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
    params: Object<Params<'a>>,
}

#[derive(Debug, Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(rename = "_meta", borrow)]
    meta: Object<Meta<'a>>,
}

#[derive(Debug, Deserialize)]
struct Meta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow)]
    version: &'a str,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow)]
    capabilities: &'a RawValue,
    /// W3C trace context (MCP's unprefixed `_meta` keys).
    #[serde(default, borrow)]
    traceparent: Option<&'a str>,
    #[serde(default, borrow)]
    tracestate: Option<&'a str>,
}

/// `T` read from a JSON object only. A derived `Deserialize` also reads a
/// struct from an array of its fields in order (`["2.0",1,"tools/call",
/// ...]`), which the general path refuses: a batch, or `params` that is not
/// an object.
#[derive(Debug)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(deserializer)).map(Object)
    }
}

/// A deserializer that asks for a map wherever a struct is read.
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

impl<'a> ModernCall<'a> {
    /// The call in `body`, or `None` when the body is not a plain modern
    /// `tools/call` (the general path handles it).
    pub(crate) fn read(body: &'a [u8]) -> Option<Self> {
        // Checked whole first: serde skips the members it ignores without
        // checking their UTF-8, which the general path's parse refuses.
        let text = std::str::from_utf8(body).ok()?;
        let Object(call) = serde_json::from_str::<Object<Self>>(text).ok()?;
        let id_ok = call.id.is_string() || call.id.is_i64() || call.id.is_u64();
        (call.jsonrpc == "2.0" && call.method == "tools/call" && id_ok).then_some(call)
    }

    /// What the modern checks read.
    pub(crate) fn meta_view(&self) -> MetaView<'_> {
        MetaView {
            meta: true,
            version: Some(self.params.0.meta.0.version),
            capabilities: self.params.0.meta.0.capabilities.get().starts_with('{'),
            named: Some(self.params.0.name),
        }
    }

    /// What `tools/call` reads.
    pub(crate) fn call_params(&self) -> CallParams<'_> {
        CallParams {
            name: Some(self.params.0.name),
            arguments: self.params.0.arguments.as_ref(),
        }
    }

    /// What the request's span records.
    pub(crate) fn span_fields(&self) -> SpanFields<'_> {
        let meta = &self.params.0.meta.0;
        SpanFields {
            method: Some(self.method),
            target: Some(self.params.0.name),
            id: Some(&self.id),
            traceparent: meta.traceparent,
            tracestate: meta.tracestate,
        }
    }

    /// The method (always `tools/call`).
    pub(crate) fn method(&self) -> &str {
        self.method
    }
}

/// Checks that the general path reads `body` as [`ModernCall::read`] does
/// whenever the latter reads a call: the same era, id, method, tool name,
/// arguments and `_meta` view. `Err` says where they differ. The property
/// tests below and the `modern_call` fuzz target run it.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn agrees_with_general(body: &[u8]) -> Result<(), String> {
    use super::{
        era::{Era, detect},
        jsonrpc::{Incoming, classify},
    };
    let Some(quick) = ModernCall::read(body) else {
        return Ok(());
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the general path cannot parse it: {e}"))?;
    if detect(&axum::http::HeaderMap::new(), &value) != Era::Modern {
        return Err("the general path takes it for a legacy request".into());
    }
    let (id, method, params) = match classify(value) {
        Ok(Incoming::Request { id, method, params }) => (id, method, params),
        other => return Err(format!("the general path classifies it as {other:?}")),
    };
    if id != quick.id || method != quick.method() {
        return Err(format!(
            "id and method: general {id} {method}, fast {} {}",
            quick.id,
            quick.method()
        ));
    }
    let (q, g) = (quick.call_params(), CallParams::of(&params));
    // `null` and absent arguments both mean "no arguments".
    let given = |a: Option<&'_ Value>| a.filter(|v| !v.is_null()).cloned();
    if q.name != g.name || given(q.arguments) != given(g.arguments) {
        return Err(format!("call params: general {g:?}, fast {q:?}"));
    }
    let (qv, gv) = (quick.meta_view(), MetaView::of(&method, &params));
    let view = |v: MetaView<'_>| {
        (
            v.meta,
            v.version.map(str::to_owned),
            v.capabilities,
            v.named.map(str::to_owned),
        )
    };
    if view(qv) != view(gv) {
        return Err(format!("_meta: general {gv:?}, fast {qv:?}"));
    }
    Ok(())
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

    /// Serde reads a struct from an array of its fields too; the general
    /// path refuses arrays (a batch, or `params` that is not an object).
    #[test]
    fn arrays_in_place_of_objects_take_the_general_path() {
        let meta = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        let params = format!(r#"{{"name":"x","_meta":{meta}}}"#);
        for body in [
            format!(r#"["2.0",1,"tools/call",{params}]"#),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x",null,{meta}]}}"#),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":["2026-07-28",{}]}}"#.to_owned(),
        ] {
            assert!(ModernCall::read(body.as_bytes()).is_none(), "{body}");
            assert!(agrees_with_general(body.as_bytes()).is_ok(), "{body}");
        }
    }

    /// Found by the `modern_call` fuzz target: invalid UTF-8 in a member
    /// the fast path ignores.
    #[test]
    fn invalid_utf8_anywhere_takes_the_general_path() {
        let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"#.to_vec();
        body.extend_from_slice(b"\"\xe2seed\",\"version\":\"1\"}}}}");
        assert!(serde_json::from_slice::<Value>(&body).is_err());
        assert!(ModernCall::read(&body).is_none());
        assert!(agrees_with_general(&body).is_ok());
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

/// The fast path against the general path on generated requests: plain
/// calls, and calls with one thing unusual (a member of another type, an
/// escape, a duplicate, an array where an object belongs, ...).
#[cfg(test)]
mod properties {
    use proptest::{collection::vec, prelude::*};
    use serde_json::Value;

    use super::{ModernCall, agrees_with_general};

    /// Any JSON value, a few levels deep.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                vec((".{0,6}", inner), 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn text(v: &Value) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    /// A JSON string literal of `s`.
    fn string(s: &str) -> String {
        text(&Value::from(s))
    }

    /// Members written in order (duplicates kept) as an object, or as an
    /// array of their values.
    fn container(members: Vec<(String, String)>, as_array: bool) -> String {
        if as_array {
            let values: Vec<String> = members.into_iter().map(|(_, v)| v).collect();
            format!("[{}]", values.join(","))
        } else {
            let pairs: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", string(&k)))
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
    }

    /// A member's value: usually the plain one, sometimes anything.
    fn member(plain: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop_oneof![8 => plain, 1 => value().prop_map(|v| text(&v))]
    }

    /// The members of an object (shuffled, an optional extra member and an
    /// optional duplicate), or, one time in ten, the values of the members
    /// in order as an array (which a derived `Deserialize` would read).
    fn object(
        members: Vec<BoxedStrategy<Option<(String, String)>>>,
    ) -> impl Strategy<Value = String> {
        let extra = proptest::option::weighted(0.2, ("[a-z]{1,8}", value()));
        (members, extra, any::<bool>(), 0..10u8).prop_flat_map(
            |(members, extra, duplicate, shape)| {
                let mut members: Vec<(String, String)> = members.into_iter().flatten().collect();
                if shape == 0 {
                    return Just(container(members, true)).boxed();
                }
                if let Some((k, v)) = extra {
                    members.push((k, text(&v)));
                }
                if duplicate && let Some(first) = members.first().cloned() {
                    members.push(first);
                }
                Just(members)
                    .prop_shuffle()
                    .prop_map(|members| container(members, false))
                    .boxed()
            },
        )
    }

    /// `Some((key, value))` most of the time.
    fn present(
        key: &'static str,
        value: impl Strategy<Value = String> + 'static,
    ) -> BoxedStrategy<Option<(String, String)>> {
        proptest::option::weighted(0.95, value.prop_map(move |v| (key.to_owned(), v))).boxed()
    }

    fn request() -> impl Strategy<Value = String> {
        let meta = object(vec![
            present(
                "io.modelcontextprotocol/protocolVersion",
                member(prop_oneof![
                    Just(string("2026-07-28")),
                    "[0-9-]{0,12}".prop_map(|s| string(&s))
                ]),
            ),
            present(
                "io.modelcontextprotocol/clientCapabilities",
                member(Just("{}".to_owned())),
            ),
            present(
                "io.modelcontextprotocol/clientInfo",
                member(Just(r#"{"name":"t","version":"1"}"#.to_owned())),
            ),
        ]);
        let params = object(vec![
            present("name", member(".{0,16}".prop_map(|s| string(&s)))),
            present("arguments", value().prop_map(|v| text(&v))),
            present("_meta", meta),
        ]);
        object(vec![
            present("jsonrpc", member(Just(string("2.0")))),
            present(
                "id",
                member(prop_oneof![
                    any::<u64>().prop_map(|n| n.to_string()),
                    any::<i64>().prop_map(|n| n.to_string()),
                    "[a-z0-9-]{0,8}".prop_map(|s| string(&s)),
                ]),
            ),
            present(
                "method",
                member(prop_oneof![
                    4 => Just(string("tools/call")),
                    1 => Just(r#""tools\/call""#.to_owned()),
                    1 => Just(string("tools/list")),
                ]),
            ),
            present("params", params),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_fast_path_reads_what_the_general_path_reads(body in request()) {
            if let Err(difference) = agrees_with_general(body.as_bytes()) {
                prop_assert!(false, "{difference}\nbody: {body}");
            }
        }

        /// Plain calls take the fast path (so the property above is not
        /// met by the fast path declining everything).
        #[test]
        fn plain_calls_take_the_fast_path(
            name in "[a-z_]{1,16}",
            id in any::<i64>(),
            arguments in value(),
        ) {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{},"arguments":{},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#,
                string(&name),
                text(&arguments),
            );
            prop_assert!(ModernCall::read(body.as_bytes()).is_some(), "{body}");
            prop_assert!(agrees_with_general(body.as_bytes()).is_ok());
        }
    }
}

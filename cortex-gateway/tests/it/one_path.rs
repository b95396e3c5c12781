//! A differential test of `tools/call`: the same generated call is sent over
//! HTTP to one gateway in front of SDK backends on every path that answers
//! it today, and the answers must agree. It pins today's behaviour before
//! the paths are merged into one (issue 23, item 4).
//!
//! The paths, as `src/transport/mod.rs` routes them:
//! - 2026-07-28: `modern_call` when the borrowed parse of `mcp/quick.rs`
//!   reads the body, otherwise `modern_post` then `fast_path`;
//! - 2025-11-25, 2025-06-18 and 2025-03-26 as one message per POST:
//!   `legacy_post` then `fast_path`;
//! - 2025-03-26 batches, alone and mixed with other messages:
//!   `legacy_post` then `dispatch`, one `Value` per message.
//!
//! What legitimately differs per era, and is normalised before comparing
//! (each rule is where it is applied):
//! - the 2026-07-28 result carries `resultType` and the server's
//!   `_meta` entry ([`undecorated`]);
//! - 2025-03-26 has no `structuredContent` and no `resource_link` blocks
//!   ([`as_2025_03_26`]);
//! - 2026-07-28 requires `params._meta`; a call without it is refused
//!   there and answered elsewhere ([`Stage::check`]).
//!
//! One difference between paths is not an era's and is marked KNOWN
//! DIVERGENCE in [`Stage::check`]: a 2025-03-26 batch re-writes a
//! backend's JSON in the text block, so text blocks are compared as JSON
//! between a single message and a batch.
//!
//! Everything else must be identical: the `result` or `error` object, the
//! id (echoed as the request wrote it, re-written as canonical JSON), and
//! the HTTP status and content type by the era's rule. Every 2026-07-28
//! call is also sent in a form the borrowed parse cannot read, and both
//! answers must be the same bytes. Requests the gateway refuses before
//! running them (an id that is not a string or an integer, a wrong
//! `jsonrpc`, `params` that is not an object, a body that is not JSON) are
//! pinned too: which paths echo the id and which answer 400.
//!
//! `PROPTEST_CASES=2000` runs more cases than the default 128.

use std::{
    collections::BTreeMap,
    hash::{Hash as _, Hasher as _},
    sync::{Arc, RwLock},
};

use axum::{
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use cortex_backend::{
    Auth, Backend, Ctx, McpResult, Request, RequestBody, ToolError, ToolFn, testing::TestIssuer,
};
use cortex_gateway::config::BackendConfig;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json, value::RawValue};

use crate::{
    client::{Client, LEGACY, MODERN, validate_message},
    support::{Options, TECH, World},
};

// ----- the backend behind the calls -----

/// Any arguments object, as sent.
type Anything = Map<String, Value>;

#[derive(Serialize, JsonSchema)]
struct Echo {
    /// The arguments the backend received.
    received: Anything,
    /// Who called (the backend's view of the caller).
    by: String,
    note: String,
}

#[derive(Serialize, JsonSchema)]
struct Rows {
    rows: Vec<String>,
}

async fn echo(ctx: Ctx<()>, args: Anything) -> Result<Echo, ToolError> {
    Ok(Echo {
        received: args,
        by: ctx.caller().sub.clone(),
        note: "caf\u{e9} \"quoted\" \\ \u{2028} \u{1F600}\n".into(),
    })
}

async fn plain(_ctx: Ctx<()>, args: Anything) -> Result<String, ToolError> {
    Ok(format!(
        "{} argument(s) \u{2713} \"quoted\"\t\u{1F600}",
        args.len()
    ))
}

async fn rich_error(_ctx: Ctx<()>, _args: Anything) -> Result<McpResult, ToolError> {
    Ok(McpResult::new()
        .text("the report failed \u{2603} \"twice\"")
        .resource_link("docs://doc/caf%C3%A9?q=%221%22", "Doc \u{fc}")
        .structured(json!({"why": "no data", "n": 1.5, "big": u64::MAX}))
        .error())
}

async fn fails(_ctx: Ctx<()>, _args: Anything) -> Result<Echo, ToolError> {
    Err(ToolError::invalid("the field \u{2603} is \"wrong\"")
        .with_detail("field", json!("\u{e9}\n")))
}

async fn big(_ctx: Ctx<()>, _args: Anything) -> Result<Rows, ToolError> {
    let pad = "x".repeat(100);
    Ok(Rows {
        rows: (0..1500)
            .map(|n| format!("row {n}: \u{e9} \"q\" \\ \u{1F600} {pad}"))
            .collect(),
    })
}

/// The backend served as `docs`: one tool per behaviour a backend can show.
fn behaviours(issuer: &TestIssuer, audience: &str) -> Backend {
    let any_object = json!({"type": "object"});
    Backend::builder("docs")
        .auth(Auth::new(issuer.auth_config(audience, &[TECH])).unwrap())
        .tool(
            ToolFn::new("echo")
                .scope("mcp:docs:read")
                .description("Echoes its arguments (structuredContent and outputSchema).")
                .handler(echo)
                .input_schema(any_object.clone()),
        )
        .tool(
            ToolFn::new("plain")
                .scope("mcp:docs:read")
                .description("Answers with text only.")
                .handler(plain)
                .input_schema(any_object.clone()),
        )
        .tool(
            ToolFn::new("rich_error")
                .scope("mcp:docs:read")
                .description("Answers with its own isError result.")
                .handler(rich_error)
                .input_schema(any_object.clone()),
        )
        .tool(
            ToolFn::new("fails")
                .scope("mcp:docs:read")
                .description("Fails with a contract error.")
                .handler(fails)
                .input_schema(any_object.clone()),
        )
        .tool(
            ToolFn::new("big")
                .scope("mcp:docs:read")
                .description("Answers with a big result.")
                .handler(big)
                .input_schema(any_object.clone()),
        )
        .tool(
            ToolFn::new("admin_only")
                .scope("mcp:docs:admin")
                .description("Needs a scope the caller lacks.")
                .handler(echo)
                .input_schema(any_object),
        )
        .build()
        .unwrap()
}

/// The backend served as `other`: a contract backend that writes its JSON
/// its own way, as one written in another language may (indented, spaces
/// after colons), which the SDK never does. It answers `pretty` with the
/// SDK's `echo` re-written so.
fn other(issuer: &TestIssuer, audience: &str) -> Backend {
    Backend::builder("other")
        .auth(Auth::new(issuer.auth_config(audience, &[TECH])).unwrap())
        .tool(
            ToolFn::new("pretty")
                .scope("mcp:docs:read")
                .description("Echoes its arguments as indented JSON.")
                .handler(echo)
                .input_schema(json!({"type": "object"})),
        )
        .build()
        .unwrap()
}

/// The backend a [`Reformatting`] server serves, once the issuer exists.
type Slot = Arc<RwLock<Option<Backend>>>;

/// A loopback contract endpoint in front of an SDK backend that indents
/// the JSON of its `pretty` answers.
struct Reformatting {
    url: String,
    slot: Slot,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reformatting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reformatting {
    async fn start() -> Self {
        let slot = Slot::default();
        let router = axum::Router::new()
            .route("/api/cortex/backend", axum::routing::post(reformat))
            .with_state(slot.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, slot, task }
    }
}

async fn reformat(State(slot): State<Slot>, headers: HeaderMap, body: Bytes) -> Response {
    let json = [("content-type", "application/json")];
    let Some(backend) = slot.read().unwrap().clone() else {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, json, "{}").into_response();
    };
    let pretty = serde_json::from_slice::<Value>(&body).is_ok_and(|b| b["method"] == "pretty");
    let mut request = Request::new("POST", RequestBody::Complete(body));
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request.push_header(name, v);
        }
    }
    let response = backend.handle(request).await;
    let mut out = response.body.to_vec();
    if pretty && response.status == 200 {
        let value: Value = serde_json::from_slice(&out).unwrap();
        out = serde_json::to_vec_pretty(&value).unwrap();
    }
    let status = axum::http::StatusCode::from_u16(response.status).unwrap();
    (status, json, out).into_response()
}

// ----- the generated call -----

/// The JSON-RPC id.
#[derive(Debug, Clone)]
enum Id {
    Int(i64),
    /// Above `i64::MAX`.
    Big(u64),
    Str(String),
    /// A string written with every character as a `\u` escape.
    Escaped(String),
    /// Not a string or an integer: refused by every path.
    Invalid(&'static str),
    /// Not JSON: the whole body cannot be parsed.
    Unparsable(&'static str),
    /// A notification.
    Missing,
}

impl Id {
    /// The JSON text of the id, as the request carries it.
    fn text(&self) -> Option<String> {
        match self {
            Self::Int(n) => Some(n.to_string()),
            Self::Big(n) => Some(n.to_string()),
            Self::Str(s) => Some(json_text(&Value::from(s.as_str()))),
            Self::Escaped(s) => {
                let mut out = String::from('"');
                for unit in s.encode_utf16() {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
                out.push('"');
                Some(out)
            }
            Self::Invalid(raw) | Self::Unparsable(raw) => Some((*raw).to_owned()),
            Self::Missing => None,
        }
    }

    /// The id's JSON text in an answer: the value re-written as canonical
    /// JSON, which is the text sent except for [`Id::Escaped`] and the
    /// non-canonical numbers of [`INVALID_IDS`].
    fn echoed(&self) -> Option<String> {
        let text = self.text()?;
        serde_json::from_str::<Value>(&text)
            .ok()
            .map(|v| json_text(&v))
    }

    /// A string or an integer.
    fn is_valid(&self) -> bool {
        matches!(
            self,
            Self::Int(_) | Self::Big(_) | Self::Str(_) | Self::Escaped(_)
        )
    }
}

/// Ids that are JSON but neither a string nor an integer (the last one is
/// an integer beyond `u64`, which JSON parsers read as a float).
const INVALID_IDS: &[&str] = &[
    "null",
    "1.5",
    "1.0",
    "-0.0",
    "1e3",
    "{}",
    r#"{"id":1}"#,
    "[]",
    "[1]",
    "true",
    "18446744073709551616",
    "-0",
];

/// Ids that make the body something other than JSON: a lone surrogate, a
/// raw control character in a string, a leading zero, a plus sign.
const UNPARSABLE_IDS: &[&str] = &[r#""\ud800""#, "\"a\tb\"", "01", "+1", "NaN"];

/// `jsonrpc` as written: the valid value, then others that every path
/// refuses as an invalid request.
const JSONRPC: &[&str] = &[r#""2.0""#, r#""1.0""#, "2.0", r#""2.0 ""#, "null"];

/// `params.name`.
#[derive(Debug, Clone)]
enum Name {
    Str(String),
    /// Not a string.
    Raw(&'static str),
    Missing,
}

/// Tools that exist and the caller may call: one per backend behaviour,
/// plus the gateway's builtins.
const KNOWN: &[&str] = &[
    "docs_echo",
    "docs_plain",
    "docs_rich_error",
    "docs_fails",
    "docs_big",
    "docs_get_help",
    "crm_count_accounts",
    "crm_search_accounts",
    "crm_pipeline_chart",
    "crm_forecast",
    "crm_broken_report",
    "other_pretty",
    "whoami",
    "find_tools",
];
const UNKNOWN: &[&str] = &["docs_nope", "nope", "docs_", "crm_echo"];
/// Tools that exist but need a scope the caller's token lacks.
const LACKING: &[&str] = &["docs_admin_only", "crm_log_call"];
const ODD: &[&str] = &[
    "",
    " docs_echo",
    "docs_echo ",
    "DOCS_ECHO",
    "docs_\u{e9}ch\u{f6}",
    "docs\"echo",
    "docs\\echo",
    "docs/echo",
    "docs\necho",
    "docs\u{0}",
    "\u{1F600}",
    "docs_echo\u{200b}",
];
const RAW_NAMES: &[&str] = &[
    "3",
    "null",
    r#"{"name":"docs_echo"}"#,
    r#"["docs_echo"]"#,
    "true",
];

/// `params` as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Params {
    /// An object of the members below.
    Object,
    /// Absent (read as `{}`).
    Absent,
    /// Not an object.
    Raw(&'static str),
}

const RAW_PARAMS: &[&str] = &["[]", r#"["docs_echo"]"#, r#""docs_echo""#, "null", "3"];

#[derive(Debug, Clone)]
struct Case {
    /// The value of `jsonrpc` as written (`None`: absent).
    jsonrpc: Option<&'static str>,
    id: Id,
    /// Whether the members below are sent as `params`.
    params: Params,
    name: Name,
    /// `params.arguments` (`None`: absent); also `null`, `{}`, nested
    /// objects, and values of the wrong type.
    arguments: Option<Value>,
    /// `params._meta`'s members besides the 2026-07-28 ones (`None`: no
    /// `_meta` at all).
    meta: Option<Vec<(String, Value)>>,
    /// Unknown members of `params`.
    extras: Vec<(String, Value)>,
    /// An unknown member at the top of the message.
    top_extra: bool,
    /// Orders the members of the message and of `params`.
    order: u64,
    /// Whitespace between members.
    spaced: bool,
    /// Where the call sits in the mixed batch (0 to 3).
    batch_slot: usize,
}

/// A string with the characters JSON escapes, non-ASCII and astral ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9_]{1,8}",
        "\\PC{0,10}",
        "[\"\\\\/\\x00-\\x1f\\x7f\u{e9}\u{2028}\u{fffd}\u{1F600}a]{1,6}",
    ]
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((text(), inner), 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        3 => any::<i64>().prop_map(Id::Int),
        1 => prop::sample::select(vec![i64::MIN, -1, 0, 1, i64::MAX]).prop_map(Id::Int),
        1 => (i64::MAX as u64 + 1..=u64::MAX).prop_map(Id::Big),
        4 => text().prop_map(Id::Str),
        1 => text().prop_map(Id::Escaped),
        2 => prop::sample::select(INVALID_IDS).prop_map(Id::Invalid),
        1 => prop::sample::select(UNPARSABLE_IDS).prop_map(Id::Unparsable),
        1 => Just(Id::Missing),
    ]
}

fn name() -> impl Strategy<Value = Name> {
    let names = |list: &'static [&'static str]| prop::sample::select(list).prop_map(String::from);
    prop_oneof![
        8 => names(KNOWN).prop_map(Name::Str),
        1 => names(UNKNOWN).prop_map(Name::Str),
        2 => names(LACKING).prop_map(Name::Str),
        2 => names(ODD).prop_map(Name::Str),
        1 => Just(Name::Str("docs_".to_owned() + &"x".repeat(300))),
        1 => "\\PC{0,12}".prop_map(Name::Str),
        1 => prop::sample::select(RAW_NAMES).prop_map(Name::Raw),
        1 => Just(Name::Missing),
    ]
}

fn arguments() -> impl Strategy<Value = Option<Value>> {
    let object = vec((text(), value()), 1..5).prop_map(|m| Value::Object(m.into_iter().collect()));
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        2 => Just(Some(json!({}))),
        5 => object.prop_map(Some),
        1 => Just(Some(json!({"query": "echo big"}))),
        2 => prop_oneof![
            vec(value(), 0..3).prop_map(Value::Array),
            text().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ]
        .prop_map(Some),
    ]
}

/// Members with distinct keys from `keys`.
fn members(
    keys: &'static [&'static str],
    most: usize,
) -> impl Strategy<Value = Vec<(String, Value)>> {
    vec((prop::sample::select(keys), value()), 0..most).prop_map(|m| {
        let unique: BTreeMap<String, Value> =
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        unique.into_iter().collect()
    })
}

fn jsonrpc() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        16 => Just(Some(JSONRPC[0])),
        2 => prop::sample::select(&JSONRPC[1..]).prop_map(Some),
        1 => Just(None),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        jsonrpc(),
        id(),
        name(),
        arguments(),
        prop::option::weighted(
            0.85,
            members(
                &["progressToken", "com.example/trace", "\u{fc}/\u{2603}"],
                3,
            ),
        ),
        members(&["extra", "task", "cursor", "x-\u{fc}"], 3),
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
        0..4usize,
        prop_oneof![
            12 => Just(Params::Object),
            1 => Just(Params::Absent),
            1 => prop::sample::select(RAW_PARAMS).prop_map(Params::Raw),
        ],
    )
        .prop_map(
            |(
                jsonrpc,
                id,
                name,
                arguments,
                meta,
                extras,
                top_extra,
                order,
                spaced,
                batch_slot,
                params,
            )| {
                Case {
                    jsonrpc,
                    id,
                    params,
                    name,
                    arguments,
                    meta,
                    extras,
                    top_extra,
                    order,
                    spaced,
                    batch_slot,
                }
            },
        )
}

// ----- writing the call -----

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// How a call is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// For 2026-07-28, in the case's order and spacing.
    Modern,
    /// The same 2026-07-28 call that the borrowed parse of `quick.rs`
    /// cannot read (the method is written `tools\/call`, which it cannot
    /// borrow), with the members in reverse order and whitespace: the
    /// general path.
    ModernGeneral,
    /// For the initialize-based revisions: `_meta` without the 2026-07-28
    /// members (with them, the gateway takes the call for a 2026-07-28 one).
    Legacy,
}

impl Case {
    fn body(&self, writing: Writing) -> String {
        let general = writing == Writing::ModernGeneral;
        let mut params = Vec::new();
        match &self.name {
            Name::Str(s) => params.push(("name".to_owned(), json_text(&Value::from(s.as_str())))),
            Name::Raw(raw) => params.push(("name".to_owned(), (*raw).to_owned())),
            Name::Missing => {}
        }
        if let Some(a) = &self.arguments {
            params.push(("arguments".to_owned(), json_text(a)));
        }
        if let Some(extra) = &self.meta {
            let mut meta: Map<String, Value> = extra.iter().cloned().collect();
            if writing != Writing::Legacy {
                meta.insert(
                    "io.modelcontextprotocol/protocolVersion".into(),
                    json!(MODERN),
                );
                meta.insert(
                    "io.modelcontextprotocol/clientCapabilities".into(),
                    json!({}),
                );
                meta.insert(
                    "io.modelcontextprotocol/clientInfo".into(),
                    json!({"name": "one_path", "version": "0"}),
                );
            }
            params.push(("_meta".to_owned(), json_text(&Value::Object(meta))));
        }
        for (k, v) in &self.extras {
            params.push((k.clone(), json_text(v)));
        }
        let spaced = self.spaced || general;
        let mut top = Vec::new();
        if let Some(jsonrpc) = self.jsonrpc {
            top.push(("jsonrpc".to_owned(), jsonrpc.to_owned()));
        }
        if let Some(id) = self.id.text() {
            top.push(("id".to_owned(), id));
        }
        let method = if general {
            r#""tools\/call""#
        } else {
            r#""tools/call""#
        };
        top.push(("method".to_owned(), method.to_owned()));
        match self.params {
            Params::Object => {
                top.push(("params".to_owned(), self.object(params, general, spaced)));
            }
            Params::Raw(raw) => top.push(("params".to_owned(), raw.to_owned())),
            Params::Absent => {}
        }
        if self.top_extra {
            top.push(("x-extra".to_owned(), "true".to_owned()));
        }
        self.object(top, general, spaced)
    }

    /// `members` as a JSON object, in the case's order (reversed when
    /// `reverse`).
    fn object(&self, mut members: Vec<(String, String)>, reverse: bool, spaced: bool) -> String {
        members.sort_by_key(|(k, _)| {
            let mut h = std::hash::DefaultHasher::new();
            (self.order, k).hash(&mut h);
            h.finish()
        });
        if reverse {
            members.reverse();
        }
        let (open, sep, colon, close) = if spaced {
            ("{\n  ", ",\n  ", " : ", "\n}")
        } else {
            ("{", ",", ":", "}")
        };
        let inner: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("{}{colon}{v}", json_text(&Value::from(k))))
            .collect();
        format!("{open}{}{close}", inner.join(sep))
    }

    /// The 2026-07-28 headers that mirror the body.
    fn modern_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("mcp-protocol-version", MODERN.to_owned()),
            ("mcp-method", "tools/call".to_owned()),
        ];
        match &self.name {
            // A name that is not a string is mirrored as "".
            Name::Raw(_) => headers.push(("mcp-name", String::new())),
            Name::Str(s) if s.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
                headers.push(("mcp-name", s.clone()));
            }
            Name::Str(s) => headers.push((
                "mcp-name",
                format!(
                    "=?base64?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(s)
                ),
            )),
            Name::Missing => {}
        }
        headers
    }
}

/// The other messages of the mixed batch: a ping, a notification and
/// another call.
const PING: &str = r#"{"jsonrpc":"2.0","id":"mixed-ping","method":"ping"}"#;
const OTHER_CALL: &str = r#"{"jsonrpc":"2.0","id":"mixed-call","method":"tools/call","params":{"name":"crm_count_accounts"}}"#;
const NOTIFICATION: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#;

// ----- reading the answers -----

/// What came back over HTTP.
#[derive(PartialEq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// One JSON-RPC response.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    /// The id's JSON text as sent, `None` when absent.
    id: Option<String>,
    /// The `result` (`Ok`) or `error` (`Err`) object.
    outcome: Result<Value, Value>,
    /// The whole message.
    message: Value,
}

#[derive(Deserialize)]
struct RawId<'a> {
    /// `None` only when absent (`"id":null` is kept).
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

/// One response: exactly `jsonrpc`, `id` when known, and `result` or
/// `error`.
fn reply(message: Value, raw: Option<&RawValue>) -> Result<Reply, TestCaseError> {
    let Some(object) = message.as_object() else {
        return Err(fail(format!("not a JSON-RPC response: {message}")));
    };
    prop_assert_eq!(&object["jsonrpc"], "2.0");
    let outcome = match (object.get("result"), object.get("error")) {
        (Some(r), None) => Ok(r.clone()),
        (None, Some(e)) => Err(e.clone()),
        _ => return Err(fail(format!("neither result nor error: {message}"))),
    };
    prop_assert_eq!(
        object.len(),
        2 + usize::from(object.contains_key("id")),
        "{}",
        message
    );
    prop_assert_eq!(object.contains_key("id"), raw.is_some(), "{}", message);
    Ok(Reply {
        id: raw.map(|r| r.get().to_owned()),
        outcome,
        message,
    })
}

impl Answer {
    fn is_json(&self) -> bool {
        self.content_type.as_deref() == Some("application/json")
    }

    /// The answer to one message: `None` for 202 with no body.
    fn single(&self) -> Result<Option<Reply>, TestCaseError> {
        if self.status == 202 {
            prop_assert!(self.body.is_empty(), "202 with a body: {:?}", self);
            return Ok(None);
        }
        prop_assert!(self.is_json(), "{:?}", self);
        let message: Value = serde_json::from_slice(&self.body)
            .map_err(|e| fail(format!("not JSON ({e}): {self:?}")))?;
        let raw: RawId<'_> = serde_json::from_slice(&self.body).unwrap();
        reply(message, raw.id).map(Some)
    }

    /// The answers to a batch (202 with no body: none).
    fn batch(&self) -> Result<Vec<Reply>, TestCaseError> {
        if self.status == 202 {
            prop_assert!(self.body.is_empty(), "202 with a body: {:?}", self);
            return Ok(Vec::new());
        }
        prop_assert_eq!(self.status, 200, "{:?}", self);
        prop_assert!(self.is_json(), "{:?}", self);
        let messages: Vec<Value> = serde_json::from_slice(&self.body)
            .map_err(|e| fail(format!("not a JSON array ({e}): {self:?}")))?;
        let raws: Vec<RawId<'_>> = serde_json::from_slice(&self.body).unwrap();
        prop_assert!(!messages.is_empty(), "an empty batch answer: {:?}", self);
        messages
            .into_iter()
            .zip(raws)
            .map(|(m, r)| reply(m, r.id))
            .collect()
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.content_type,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// A 2026-07-28 result without what that era adds to every result
/// (`resultType: "complete"` and the server's entry in `_meta`), which are
/// checked here rather than ignored.
fn undecorated(mut result: Value) -> Result<Value, TestCaseError> {
    let Some(o) = result.as_object_mut() else {
        return Err(fail(format!("a result that is not an object: {result}")));
    };
    prop_assert_eq!(o.remove("resultType"), Some(json!("complete")));
    let meta = o.get_mut("_meta").and_then(Value::as_object_mut);
    let server = meta.and_then(|m| m.remove("io.modelcontextprotocol/serverInfo"));
    prop_assert_eq!(
        server.as_ref().map(|s| &s["name"]),
        Some(&json!("cortex-gateway")),
        "{}",
        result
    );
    if o.get("_meta")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        o.remove("_meta");
    }
    Ok(result)
}

/// A 2025-06-18 result as 2025-03-26 shows it: no `structuredContent`, and
/// each `resource_link` block as a text block `name: uri`.
fn as_2025_03_26(mut result: Value) -> Value {
    if let Some(o) = result.as_object_mut() {
        o.remove("structuredContent");
    }
    if let Some(blocks) = result.get_mut("content").and_then(Value::as_array_mut) {
        for block in blocks {
            if block["type"] == "resource_link" {
                *block = json!({
                    "type": "text",
                    "text": format!(
                        "{}: {}",
                        block["name"].as_str().unwrap_or_default(),
                        block["uri"].as_str().unwrap_or_default()
                    ),
                });
            }
        }
    }
    result
}

// ----- the stage: one gateway, its backends, three legacy sessions -----

struct Stage {
    world: World,
    _other: Reformatting,
    http: reqwest::Client,
    token: String,
    /// `(revision, Mcp-Session-Id)`, in the order of [`LEGACY`].
    sessions: Vec<(&'static str, String)>,
}

impl Stage {
    async fn start() -> Self {
        let other = Reformatting::start().await;
        let world = World::start_with(Options {
            extra: vec![BackendConfig::new("other", &other.url)],
            // A case sends several requests; the budget is not under test.
            configure: Some(Box::new(|c| c.controls.rate_limit_per_minute = 0)),
            ..Options::default()
        })
        .await;
        world.docs.replace(behaviours(&world.issuer, &world.url));
        *other.slot.write().unwrap() = Some(self::other(&world.issuer, &world.url));
        world.gateway.refresh_now().await;
        let token = world.token("dana", &["mcp:docs:read", "mcp:crm:read"]);
        let mut sessions = Vec::new();
        for revision in LEGACY {
            let client = Client::legacy(&world.url, &token, revision).await;
            sessions.push((revision, client.session.clone().unwrap()));
        }
        let stage = Self {
            world,
            _other: other,
            http: reqwest::Client::new(),
            token,
            sessions,
        };
        // Readiness: the tools of the backends set up after the start are
        // in the catalog.
        for tool in ["docs_echo", "other_pretty"] {
            let call = Case {
                jsonrpc: Some(JSONRPC[0]),
                id: Id::Int(1),
                params: Params::Object,
                name: Name::Str(tool.into()),
                arguments: None,
                meta: Some(Vec::new()),
                extras: Vec::new(),
                top_extra: false,
                order: 0,
                spaced: false,
                batch_slot: 0,
            };
            let answer = stage.modern(&call, Writing::Modern).await;
            let body: Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(
                body["result"]["isError"], false,
                "{tool} is served: {answer}"
            );
        }
        // The behaviours are the ones named: `echo` declares an output
        // schema, `plain` does not.
        let listed = Client::modern(&stage.world.url, &stage.token)
            .ok("tools/list", json!({}))
            .await;
        let schema = |name: &str| {
            let tools = listed["tools"].as_array().unwrap();
            let tool = tools.iter().find(|t| t["name"] == name).unwrap();
            tool.get("outputSchema").is_some()
        };
        assert!(schema("docs_echo") && schema("other_pretty") && !schema("docs_plain"));
        stage
    }

    async fn post(&self, body: String, headers: &[(&str, String)]) -> Answer {
        let mut request = self
            .http
            .post(&self.world.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn modern(&self, case: &Case, writing: Writing) -> Answer {
        self.post(case.body(writing), &case.modern_headers()).await
    }

    /// POSTs `body` in the session of `revision`.
    async fn legacy(&self, revision: &str, body: String) -> Answer {
        let session = &self
            .sessions
            .iter()
            .find(|(r, _)| *r == revision)
            .unwrap()
            .1;
        let mut headers = vec![("mcp-session-id", session.clone())];
        // 2025-03-26 has no MCP-Protocol-Version header.
        if revision != "2025-03-26" {
            headers.push(("mcp-protocol-version", revision.to_owned()));
        }
        self.post(body, &headers).await
    }

    /// Sends `case` on every path and checks that the answers agree.
    async fn check(&self, case: &Case) -> Result<(), TestCaseError> {
        let modern = self.modern(case, Writing::Modern).await;
        let general = self.modern(case, Writing::ModernGeneral).await;

        let legacy = case.body(Writing::Legacy);
        let mut singles = Vec::new();
        for revision in LEGACY {
            singles.push((revision, self.legacy(revision, legacy.clone()).await));
        }
        let alone = self.legacy("2025-03-26", format!("[{legacy}]")).await;
        let mut mixed = vec![PING, NOTIFICATION, OTHER_CALL];
        mixed.insert(case.batch_slot, &legacy);
        let mixed = self
            .legacy("2025-03-26", format!("[{}]", mixed.join(",")))
            .await;

        if matches!(case.id, Id::Unparsable(_)) {
            // Not JSON: the whole body is refused, a batch included.
            let all = [&modern, &general, &alone, &mixed];
            for answer in all.into_iter().chain(singles.iter().map(|(_, a)| a)) {
                prop_assert_eq!(answer.status, 400, "{}", answer);
                let reply = answer
                    .single()?
                    .ok_or_else(|| fail(format!("no answer: {answer}")))?;
                prop_assert_eq!(&reply.id, &None, "{}", answer);
                let error = reply.outcome.as_ref().err();
                prop_assert_eq!(
                    error.map(|e| &e["code"]),
                    Some(&json!(-32700)),
                    "{}",
                    answer
                );
                // The rest of the message is the parser's, with a position
                // that differs with the body.
                prop_assert!(
                    error
                        .and_then(|e| e["message"].as_str())
                        .is_some_and(|m| m.starts_with("the body is not JSON: ")),
                    "{}",
                    answer
                );
            }
            return Ok(());
        }

        // The borrowed parse and the general path: the same bytes.
        prop_assert_eq!(&modern, &general, "modern {} / general {}", modern, general);

        let modern_reply = modern.single()?;
        let mut single_replies = Vec::new();
        for (revision, answer) in &singles {
            single_replies.push((*revision, answer.single()?, answer));
        }
        let batched = match &alone.batch()?[..] {
            [] => None,
            [one] => Some(one.clone()),
            _ => return Err(fail(format!("one answer at most: {alone}"))),
        };
        let batched_mixed = ours_in_mixed(case, mixed.batch()?, &mixed)?;
        prop_assert_eq!(&batched, &batched_mixed, "a batch alone / mixed");

        // A notification gets no answer (202 without a body) on any path;
        // everything else gets one on every path.
        let valid_jsonrpc = case.jsonrpc == Some(JSONRPC[0]);
        let notification = matches!(case.id, Id::Missing) && valid_jsonrpc;
        prop_assert_eq!(modern_reply.is_none(), notification, "{}", modern);
        prop_assert_eq!(batched.is_none(), notification, "{}", alone);
        let mut replies = Vec::new();
        for (revision, reply, answer) in single_replies {
            prop_assert_eq!(reply.is_none(), notification, "{} {}", revision, answer);
            replies.extend(reply.map(|r| (revision, r, answer)));
        }
        let (Some(modern_reply), Some(batched)) = (modern_reply, batched) else {
            return Ok(());
        };

        if !valid_jsonrpc || !case.id.is_valid() {
            // An invalid request: refused before anything runs, with the
            // same error on every path. The id goes back when `jsonrpc` is
            // what is wrong (whatever its type), and not when the id is.
            let id = if valid_jsonrpc {
                None
            } else {
                case.id.echoed()
            };
            let expected = batched.outcome.clone();
            prop_assert_eq!(
                expected.as_ref().err().map(|e| &e["code"]),
                Some(&json!(-32600)),
                "{}",
                alone
            );
            prop_assert_eq!(&batched.id, &id, "{}", alone);
            validate(case, "2025-03-26", &batched);
            // 2026-07-28 answers 400; the others 400 only without an id.
            prop_assert_eq!(modern.status, 400, "{}", modern);
            prop_assert_eq!(&modern_reply.outcome, &expected, "2026-07-28");
            prop_assert_eq!(&modern_reply.id, &id, "{}", modern);
            validate(case, MODERN, &modern_reply);
            let status = if id.is_some() { 200 } else { 400 };
            for (revision, reply, answer) in &replies {
                prop_assert_eq!(answer.status, status, "{} {}", revision, answer);
                prop_assert_eq!(&reply.outcome, &expected, "{}", revision);
                prop_assert_eq!(&reply.id, &id, "{} {}", revision, answer);
                validate(case, revision, reply);
            }
            return Ok(());
        }

        // The id is echoed on every path.
        let id = case.id.echoed();
        if let Params::Raw(_) = case.params {
            // `params` that is not an object: refused with the id, by the
            // same error on every path; 400 in 2026-07-28 only.
            let expected = batched.outcome.clone();
            prop_assert_eq!(
                expected.as_ref().err().map(|e| &e["code"]),
                Some(&json!(-32602)),
                "{}",
                alone
            );
            prop_assert_eq!(modern.status, 400, "{}", modern);
            let all = replies
                .iter()
                .map(|(revision, reply, answer)| (*revision, reply, answer.status))
                .chain([("batch", &batched, 200), (MODERN, &modern_reply, 400)]);
            for (revision, reply, status) in all {
                prop_assert_eq!(&reply.outcome, &expected, "{}", revision);
                prop_assert_eq!(&reply.id, &id, "{}", revision);
                prop_assert_eq!(
                    status,
                    if revision == MODERN { 400 } else { 200 },
                    "{}",
                    revision
                );
                validate(
                    case,
                    if revision == "batch" {
                        "2025-03-26"
                    } else {
                        revision
                    },
                    reply,
                );
            }
            return Ok(());
        }
        prop_assert_eq!(&modern_reply.id, &id, "2026-07-28: {}", modern);
        for (revision, reply, answer) in &replies {
            prop_assert_eq!(&reply.id, &id, "{}: {}", revision, answer);
            // Tool failures and protocol errors alike are answered with 200.
            prop_assert_eq!(answer.status, 200, "{} {}", revision, answer);
            validate(case, revision, reply);
        }
        prop_assert_eq!(&batched.id, &id, "batch: {}", alone);
        validate(case, "2025-03-26", &batched);

        // One revision per era, then each older one.
        let [
            (_, r_2025_11_25, _),
            (_, r_2025_06_18, _),
            (_, r_2025_03_26, _),
        ] = &replies[..]
        else {
            unreachable!("three legacy revisions");
        };
        prop_assert_eq!(
            &r_2025_11_25.outcome,
            &r_2025_06_18.outcome,
            "2025-11-25 / 2025-06-18"
        );
        // One dispatch and one envelope writer: a batched call answers
        // exactly what the same call alone does, down to the text block
        // that quotes a backend's JSON as the backend wrote it
        // (`other_pretty` indents its answers).
        prop_assert_eq!(
            &r_2025_03_26.outcome,
            &batched.outcome,
            "2025-03-26: one message / batch"
        );
        let older = r_2025_06_18.outcome.clone().map(as_2025_03_26);
        prop_assert_eq!(&r_2025_03_26.outcome, &older, "2025-03-26 / 2025-06-18");

        validate(case, MODERN, &modern_reply);
        if case.meta.is_none() || case.params == Params::Absent {
            // 2026-07-28 requires `_meta`; the other eras run the call.
            prop_assert_eq!(modern.status, 400, "{}", modern);
            let error = modern_reply.outcome.as_ref().err();
            prop_assert_eq!(
                error.map(|e| &e["code"]),
                Some(&json!(-32602)),
                "{}",
                modern
            );
            prop_assert!(
                error.is_some_and(|e| e["message"].as_str().unwrap_or("").contains("_meta")),
                "{}",
                modern
            );
            return Ok(());
        }
        prop_assert_eq!(modern.status, 200, "{}", modern);
        let modern_outcome = match modern_reply.outcome {
            Ok(result) => Ok(undecorated(result)?),
            Err(e) => Err(e),
        };
        prop_assert_eq!(
            &modern_outcome,
            &r_2025_11_25.outcome,
            "2026-07-28 / 2025-11-25"
        );
        Ok(())
    }
}

/// The answer to the case's message in the mixed batch, after checking the
/// answers to the others and that the answers keep the messages' order.
fn ours_in_mixed(
    case: &Case,
    mut replies: Vec<Reply>,
    mixed: &Answer,
) -> Result<Option<Reply>, TestCaseError> {
    let ours = replies
        .iter()
        .position(|r| !matches!(r.id.as_deref(), Some(r#""mixed-ping""# | r#""mixed-call""#)));
    let ours = ours.map(|at| (at, replies.remove(at)));
    let [ping, call] = &replies[..] else {
        return Err(fail(format!("answers to the ping and the call: {mixed}")));
    };
    prop_assert_eq!(ping.id.as_deref(), Some(r#""mixed-ping""#), "{}", mixed);
    prop_assert_eq!(&ping.outcome, &Ok(json!({})), "{}", mixed);
    prop_assert_eq!(call.id.as_deref(), Some(r#""mixed-call""#), "{}", mixed);
    prop_assert_eq!(
        &call.outcome,
        &Ok(json!({"content": [{"type": "text", "text": "42"}], "isError": false})),
        "{}",
        mixed
    );
    // The ping is the first other message, the call the third.
    let before = usize::from(case.batch_slot > 0) + usize::from(case.batch_slot > 2);
    if let Some((at, _)) = &ours {
        prop_assert_eq!(*at, before, "answers out of order: {}", mixed);
    }
    Ok(ours.map(|(_, reply)| reply))
}

/// Validates a reply against the schema of `revision`, except where no
/// schema can agree: an id of a type no revision allows, and an error
/// without an id before 2025-11-25 (those schemas require an id on every
/// error response).
fn validate(case: &Case, revision: &str, reply: &Reply) {
    let odd_id = reply.id.is_some() && !case.id.is_valid();
    let idless_error_before_2025_11_25 = reply.id.is_none() && revision < "2025-11-25";
    if !odd_id && !idless_error_before_2025_11_25 {
        validate_message(revision, Some("tools/call"), &reply.message);
    }
}

/// The differential property, over real HTTP to one gateway.
#[test]
fn tools_call_answers_agree_on_every_path() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stage = runtime.block_on(Stage::start());
    // A deeper run: PROPTEST_CASES=2000.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(Config {
        cases,
        // Failures are reported with their minimal case; nothing is written
        // to the source tree.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |case| runtime.block_on(stage.check(&case)));
    drop(stage);
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

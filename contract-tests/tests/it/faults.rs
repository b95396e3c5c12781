//! Deliberately broken backends: the reference backend behind a raw axum
//! handler that injects exactly one fault, and the checks each fault must
//! trip.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use base64::Engine as _;
use contract_tests::{DEFAULT_GATEWAY_AUDIENCE, Status};
use cortex_backend::{
    Backend, RequestBody,
    contract::{DEFAULT_PATH, methods},
    testing::{BrokenToken, TestIssuer},
};
use serde_json::{Map, Value, json};

use crate::reference::{self, AUDIENCE, Crm, Shape, TECHNICAL};

/// One fault per variant. `None` is the correct backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    GetAnswers200,
    MalformedJsonAsTextPlain,
    NonObjectParamsCoerced,
    AnyContentType,
    EmptyBody500,
    NoBodyLimit,
    UnknownMethod404,
    ListToolsRefusesUserTokens,
    AcceptsMissingToken,
    AcceptsAnyStaticToken,
    Accepts(BrokenToken),
    ToolsNotAnArray,
    DescriptorWithoutDescription,
    DuplicateNames,
    BadToolName,
    RemoteRefInInputSchema,
    LocalRefInInputSchema,
    UnknownParamsType,
    InvalidOutputSchema,
    VersionNotSemver,
    DeprecationDateNotIso,
    UnconventionalScope,
    PromptWithoutScope,
    TemplateWithoutScheme,
    TechnicalCallsTools,
    TechnicalCallsGetHelp,
    TechnicalCallsWhoami,
    TechnicalGetsPrompts,
    TechnicalReadsResources,
    Whoami500,
    IgnoresScopes,
    ScopeRefusalWithoutRequired,
    TrustsUserIdHeader,
    HelpNotAnObject,
    HelpIgnoresTopic,
    HelpUnknownTopicAccepted,
    BadArguments500,
    ReadOnlyTool500,
    ResultBreaksOutputSchema,
    SnapshotWithoutHeadline,
    UnstableListTools,
    // Gateway-assertion mode only.
    AcceptsWithoutAct,
    AcceptsForeignActor,
    /// Also trusts the identity provider (half-moved from forward mode).
    AcceptsIdpToken,
    AcceptsGatewayAudience,
}

impl Fault {
    /// Every faulty variant.
    pub(crate) fn all() -> Vec<Fault> {
        let mut all = vec![
            Self::GetAnswers200,
            Self::MalformedJsonAsTextPlain,
            Self::NonObjectParamsCoerced,
            Self::AnyContentType,
            Self::EmptyBody500,
            Self::NoBodyLimit,
            Self::UnknownMethod404,
            Self::ListToolsRefusesUserTokens,
            Self::AcceptsMissingToken,
            Self::AcceptsAnyStaticToken,
        ];
        all.extend(BrokenToken::ALL.map(Self::Accepts));
        all.extend([
            Self::ToolsNotAnArray,
            Self::DescriptorWithoutDescription,
            Self::DuplicateNames,
            Self::BadToolName,
            Self::RemoteRefInInputSchema,
            Self::LocalRefInInputSchema,
            Self::UnknownParamsType,
            Self::InvalidOutputSchema,
            Self::VersionNotSemver,
            Self::DeprecationDateNotIso,
            Self::UnconventionalScope,
            Self::PromptWithoutScope,
            Self::TemplateWithoutScheme,
            Self::TechnicalCallsTools,
            Self::TechnicalCallsGetHelp,
            Self::TechnicalCallsWhoami,
            Self::TechnicalGetsPrompts,
            Self::TechnicalReadsResources,
            Self::Whoami500,
            Self::IgnoresScopes,
            Self::ScopeRefusalWithoutRequired,
            Self::TrustsUserIdHeader,
            Self::HelpNotAnObject,
            Self::HelpIgnoresTopic,
            Self::HelpUnknownTopicAccepted,
            Self::BadArguments500,
            Self::ReadOnlyTool500,
            Self::ResultBreaksOutputSchema,
            Self::SnapshotWithoutHeadline,
            Self::UnstableListTools,
        ]);
        all
    }

    /// The faults only a backend in gateway-assertion mode can have.
    pub(crate) fn assert_only() -> Vec<Fault> {
        vec![
            Self::AcceptsWithoutAct,
            Self::AcceptsForeignActor,
            Self::AcceptsIdpToken,
            Self::AcceptsGatewayAudience,
        ]
    }

    /// The faults run in gateway-assertion mode: every broken token (as a
    /// broken assertion) and the assert-only ones.
    pub(crate) fn in_assert_mode() -> Vec<Fault> {
        let mut all: Vec<Fault> = BrokenToken::ALL.map(Self::Accepts).into();
        all.extend(Self::assert_only());
        all
    }

    /// [`Fault::expected`] in gateway-assertion mode: not checking `aud`
    /// also lets the gateway's own audience through.
    pub(crate) fn expected_in_assert_mode(self) -> Vec<(&'static str, Status)> {
        let mut expected = self.expected();
        if self == Self::Accepts(BrokenToken::WrongAudience) {
            expected.push(("assert.gateway-audience", Status::Fail));
        }
        expected
    }

    /// The checks this fault must make fail (or warn), and nothing else.
    pub(crate) fn expected(self) -> Vec<(&'static str, Status)> {
        use Status::{Fail, Warn};
        let one = |id| vec![(id, Fail)];
        match self {
            Self::None => vec![],
            Self::GetAnswers200 => one("transport.post-only"),
            Self::MalformedJsonAsTextPlain => one("transport.malformed-json"),
            Self::NonObjectParamsCoerced => one("transport.params-not-object"),
            Self::AnyContentType => one("transport.content-type"),
            Self::EmptyBody500 => one("transport.empty-body"),
            Self::NoBodyLimit => one("transport.oversized-body"),
            Self::UnknownMethod404 => one("transport.unknown-method"),
            Self::ListToolsRefusesUserTokens => one("auth.valid-token"),
            Self::AcceptsMissingToken => one("auth.no-token"),
            Self::AcceptsAnyStaticToken => one("auth.wrong-technical-token"),
            Self::Accepts(kind) => one(match kind {
                BrokenToken::Expired => "auth.expired-token",
                BrokenToken::NotYetValid => "auth.not-yet-valid-token",
                BrokenToken::WrongIssuer => "auth.wrong-issuer",
                BrokenToken::WrongAudience => "auth.wrong-audience",
                BrokenToken::BadSignature => "auth.bad-signature",
                BrokenToken::UnknownKid => "auth.unknown-kid",
                BrokenToken::Hs256WithPublicKey => "auth.hs256-public-key",
                BrokenToken::AlgNone => "auth.alg-none",
                BrokenToken::MissingAud => "auth.missing-aud",
                other => panic!("no check for {other:?}: add one to contract-tests"),
            }),
            Self::ToolsNotAnArray => one("catalog.list-tools"),
            Self::DescriptorWithoutDescription => one("catalog.descriptor-schema"),
            Self::DuplicateNames => one("catalog.unique-names"),
            Self::BadToolName => one("catalog.name-format"),
            Self::RemoteRefInInputSchema => vec![
                ("catalog.input-schema", Fail),
                ("catalog.input-schema-self-contained", Warn),
            ],
            Self::LocalRefInInputSchema => vec![("catalog.input-schema-self-contained", Warn)],
            Self::UnknownParamsType => one("catalog.params-types"),
            Self::InvalidOutputSchema => one("catalog.output-schema"),
            Self::VersionNotSemver => one("catalog.version-semver"),
            Self::DeprecationDateNotIso => one("catalog.deprecation-date"),
            Self::UnconventionalScope => vec![("catalog.scope-convention", Warn)],
            Self::PromptWithoutScope => one("catalog.prompts"),
            Self::TemplateWithoutScheme => one("catalog.resource-templates"),
            Self::TechnicalCallsTools => one("technical.tools-refused"),
            Self::TechnicalCallsGetHelp => one("technical.get-help-refused"),
            Self::TechnicalCallsWhoami => one("technical.whoami-refused"),
            Self::TechnicalGetsPrompts => one("technical.get-prompt-refused"),
            Self::TechnicalReadsResources => one("technical.read-resource-refused"),
            Self::Whoami500 => one("whoami.identity"),
            Self::IgnoresScopes | Self::ScopeRefusalWithoutRequired => one("scopes.missing-scope"),
            Self::TrustsUserIdHeader => one("scopes.header-spoofing"),
            Self::HelpNotAnObject => one("help.all-sections"),
            Self::HelpIgnoresTopic => one("help.known-topic"),
            Self::HelpUnknownTopicAccepted => one("help.unknown-topic"),
            Self::BadArguments500 => one("arguments.wrong-type"),
            Self::ReadOnlyTool500 => one("tools.read-only-call"),
            Self::ResultBreaksOutputSchema => one("tools.output-schema"),
            Self::SnapshotWithoutHeadline => one("snapshot.envelope"),
            Self::UnstableListTools => one("robustness.concurrent-list-tools"),
            Self::AcceptsWithoutAct => one("assert.without-act"),
            Self::AcceptsForeignActor => one("assert.foreign-actor"),
            Self::AcceptsIdpToken => one("assert.idp-token"),
            Self::AcceptsGatewayAudience => one("assert.gateway-audience"),
        }
    }

    fn shape(self) -> Shape {
        Shape {
            unlimited_body: self == Self::NoBodyLimit,
            unconventional_scope: self == Self::UnconventionalScope,
        }
    }
}

/// A server on `127.0.0.1:0`, stopped when dropped.
pub(crate) struct Server {
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a fresh loopback port; the URL is the contract endpoint.
pub(crate) async fn serve(router: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server {
        url: format!("http://{addr}{DEFAULT_PATH}"),
        task,
    }
}

struct Faulty {
    backend: Backend<Crm>,
    fault: Fault,
    issuer: Arc<TestIssuer>,
    list_calls: AtomicUsize,
}

/// Starts the reference backend with `fault` injected.
pub(crate) async fn start(issuer: Arc<TestIssuer>, fault: Fault) -> Server {
    let backend = reference::backend(&issuer, fault.shape());
    let state = Arc::new(Faulty {
        backend,
        fault,
        issuer,
        list_calls: AtomicUsize::new(0),
    });
    serve(
        Router::new()
            .route(DEFAULT_PATH, any(handle))
            .with_state(state),
    )
    .await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn json_part(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .as_object()
        .cloned()
}

fn int(claims: &Map<String, Value>, name: &str) -> i64 {
    claims.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// The header and claims of a JWT, unverified.
fn jwt(token: &str) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let header = json_part(parts.next()?)?;
    let claims = json_part(parts.next()?)?;
    Some((header, claims))
}

const ALL_SCOPES: [&str; 3] = ["mcp:crm:read", "mcp:crm:write", "crm.export"];

impl Faulty {
    fn full_token(&self) -> String {
        self.issuer
            .token(AUDIENCE)
            .sub("faulty-backend-user")
            .scopes(ALL_SCOPES)
            .mint()
    }

    /// A validly signed token with these claims.
    fn remint(&self, claims: Map<String, Value>) -> String {
        self.issuer.mint(&Value::Object(claims))
    }

    /// The token the backend sees instead of `token`, for the auth faults.
    fn replace_token(&self, token: Option<&str>, method: Option<&str>) -> Option<String> {
        let method = method.unwrap_or("");
        let Some(token) = token else {
            return (self.fault == Fault::AcceptsMissingToken).then(|| self.full_token());
        };
        let technical = token == TECHNICAL;
        match self.fault {
            Fault::AcceptsAnyStaticToken if !technical && !token.contains('.') => {
                return Some(TECHNICAL.to_string());
            }
            Fault::TechnicalCallsTools if technical && !methods::is_reserved(method) => {
                return Some(self.full_token());
            }
            Fault::TechnicalCallsGetHelp if technical && method == methods::GET_HELP => {
                return Some(self.full_token());
            }
            Fault::TechnicalCallsWhoami if technical && method == methods::WHOAMI => {
                return Some(self.full_token());
            }
            Fault::TechnicalGetsPrompts if technical && method == methods::GET_PROMPT => {
                return Some(self.full_token());
            }
            Fault::TechnicalReadsResources if technical && method == methods::READ_RESOURCE => {
                return Some(self.full_token());
            }
            _ => {}
        }
        let (header, mut claims) = jwt(token)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        // Signed with the trusted issuer's algorithm (not the identity
        // provider's RS256 when the issuer is a gateway).
        let own = alg == format!("{:?}", self.issuer.algorithm());
        let iss = self.issuer.issuer();
        let t = now();
        let fixed = match self.fault {
            Fault::IgnoresScopes if !methods::is_reserved(method) => {
                claims.insert("scope".into(), json!(ALL_SCOPES.join(" ")));
                true
            }
            Fault::Accepts(kind) => match kind {
                _ if !own
                    && !matches!(kind, BrokenToken::Hs256WithPublicKey | BrokenToken::AlgNone) =>
                {
                    false
                }
                BrokenToken::Expired if int(&claims, "exp") < t => {
                    claims.insert("exp".into(), json!(t + 3600));
                    true
                }
                BrokenToken::NotYetValid if int(&claims, "nbf") > t + 60 => {
                    claims.insert("nbf".into(), json!(t));
                    true
                }
                BrokenToken::WrongIssuer if claims.get("iss") != Some(&json!(iss)) => {
                    claims.insert("iss".into(), json!(iss));
                    true
                }
                BrokenToken::WrongAudience
                    if claims.get("aud").is_some_and(|a| *a != json!(AUDIENCE)) =>
                {
                    claims.insert("aud".into(), json!(AUDIENCE));
                    true
                }
                BrokenToken::MissingAud if !claims.contains_key("aud") => {
                    claims.insert("aud".into(), json!(AUDIENCE));
                    true
                }
                // Re-signing every RS256 token with the issuer's key is what
                // skipping signature verification amounts to.
                BrokenToken::BadSignature => kid == self.issuer.kid(),
                BrokenToken::UnknownKid => kid != self.issuer.kid(),
                BrokenToken::Hs256WithPublicKey => alg == "HS256",
                BrokenToken::AlgNone => alg == "none",
                _ => false,
            },
            Fault::AcceptsWithoutAct if own && !claims.contains_key("act") => {
                claims.insert("act".into(), json!({"sub": iss}));
                true
            }
            Fault::AcceptsForeignActor
                if own && claims.get("act").is_some_and(|a| a["sub"] != json!(iss)) =>
            {
                claims.insert("act".into(), json!({"sub": iss}));
                true
            }
            Fault::AcceptsIdpToken if alg == "RS256" && self.issuer.is_gateway() => {
                claims.insert("iss".into(), json!(iss));
                claims.insert("aud".into(), json!(AUDIENCE));
                claims.insert("act".into(), json!({"sub": iss}));
                true
            }
            Fault::AcceptsGatewayAudience
                if own && claims.get("aud") == Some(&json!(DEFAULT_GATEWAY_AUDIENCE)) =>
            {
                claims.insert("aud".into(), json!(AUDIENCE));
                true
            }
            _ => false,
        };
        fixed.then(|| self.remint(claims))
    }
}

fn answer(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn json_answer(status: u16, body: &Value) -> Response {
    answer(status, "application/json", body.to_string().into_bytes())
}

async fn handle(State(f): State<Arc<Faulty>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut body = axum::body::to_bytes(body, 128 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut content_type = get("content-type");
    let authorization = get("authorization");
    let spoofed_user = get("x-cortex-user-id");
    let envelope: Option<Value> = serde_json::from_slice(&body).ok();
    let method = envelope
        .as_ref()
        .and_then(|e| e.get("method"))
        .and_then(Value::as_str)
        .map(String::from);
    let method = method.as_deref();
    let params = envelope
        .as_ref()
        .and_then(|e| e.get("params"))
        .cloned()
        .unwrap_or(Value::Null);

    // Faults that answer before the backend sees anything.
    match f.fault {
        Fault::GetAnswers200 if parts.method == "GET" => {
            return json_answer(200, &json!({"ok": true}));
        }
        Fault::MalformedJsonAsTextPlain
            if envelope.is_none() && !body.iter().all(u8::is_ascii_whitespace) =>
        {
            return answer(400, "text/plain", b"bad json".to_vec());
        }
        Fault::EmptyBody500 if body.is_empty() && parts.method == "POST" => {
            return json_answer(500, &json!({"error": "internal error"}));
        }
        Fault::ListToolsRefusesUserTokens
            if method == Some(methods::LIST_TOOLS)
                && authorization.as_deref() != Some(&format!("Bearer {TECHNICAL}")) =>
        {
            return json_answer(
                401,
                &json!({"error": "list_tools needs the technical token"}),
            );
        }
        _ => {}
    }

    // Faults that rewrite the request.
    if f.fault == Fault::NonObjectParamsCoerced
        && let Some(mut e) = envelope.clone()
        && !params.is_object()
    {
        e["params"] = json!({});
        body = e.to_string().into_bytes();
    }
    if f.fault == Fault::AnyContentType {
        content_type = Some("application/json".into());
    }
    let mut forwarded_method = method.map(String::from);
    if f.fault == Fault::BadToolName
        && method == Some("log call!")
        && let Some(mut e) = envelope.clone()
    {
        e["method"] = json!("log_call");
        body = e.to_string().into_bytes();
        forwarded_method = Some("log_call".into());
    }
    let token = authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "));
    let authorization = match f.replace_token(token, method) {
        Some(t) => Some(format!("Bearer {t}")),
        None => authorization,
    };

    let mut request = cortex_backend::Request::new(
        parts.method.as_str(),
        RequestBody::Complete(body.clone().into()),
    );
    if let Some(ct) = &content_type {
        request.push_header("content-type", ct.clone());
    }
    if let Some(a) = &authorization {
        request.push_header("authorization", a.clone());
    }
    let response = f.backend.handle(request).await;
    let allow = response.allow;
    let mut status = response.status;
    let mut out: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);

    // Faults that rewrite the answer.
    let code = out
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let method = forwarded_method.as_deref().unwrap_or("");
    let is_tool = !methods::is_reserved(method);
    match f.fault {
        Fault::UnknownMethod404 if status == 400 && code == "unknown_method" => status = 404,
        Fault::ToolsNotAnArray if method == methods::LIST_TOOLS && status == 200 => {
            let by_name: Map<String, Value> = out["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| (t["name"].as_str().unwrap_or("").to_string(), t.clone()))
                .collect();
            out = json!({"tools": by_name});
        }
        Fault::UnstableListTools if method == methods::LIST_TOOLS && status == 200 => {
            if f.list_calls.fetch_add(1, Ordering::SeqCst) % 2 == 1
                && let Some(tools) = out["tools"].as_array_mut()
            {
                tools.reverse();
            }
        }
        Fault::PromptWithoutScope if method == methods::LIST_PROMPTS && status == 200 => {
            if let Some(p) = out["prompts"][0].as_object_mut() {
                p.remove("scope");
            }
        }
        Fault::TemplateWithoutScheme
            if method == methods::LIST_RESOURCE_TEMPLATES && status == 200 =>
        {
            out["resourceTemplates"][0]["uriTemplate"] = json!("account/{id}");
        }
        Fault::Whoami500 if method == methods::WHOAMI && status == 200 => {
            status = 500;
            out = json!({"error": "internal error"});
        }
        Fault::ScopeRefusalWithoutRequired if status == 403 => {
            if let Some(o) = out.as_object_mut() {
                o.remove("required");
            }
        }
        Fault::TrustsUserIdHeader if method == methods::WHOAMI && status == 200 => {
            if let Some(user) = spoofed_user {
                out["sub"] = json!(user);
            }
        }
        Fault::HelpNotAnObject
            if method == methods::GET_HELP && status == 200 && params.get("topic").is_none() =>
        {
            out = json!(["overview", "concepts"]);
        }
        Fault::HelpIgnoresTopic
            if method == methods::GET_HELP && status == 200 && params.get("topic").is_some() =>
        {
            let all = f
                .backend
                .handle(
                    cortex_backend::Request::post(r#"{"method":"get_help"}"#)
                        .header("content-type", "application/json")
                        .header("authorization", authorization.unwrap_or_default()),
                )
                .await;
            out = all.json_body();
        }
        Fault::HelpUnknownTopicAccepted if status == 400 && code == "unknown_topic" => {
            status = 200;
            out = json!({});
        }
        Fault::BadArguments500 if is_tool && status == 400 && code == "invalid_params" => {
            status = 500;
            out = json!({"error": "internal error"});
        }
        Fault::ReadOnlyTool500 if method == "search_accounts" && status == 200 => {
            status = 500;
            out = json!({"error": "internal error"});
        }
        Fault::ResultBreaksOutputSchema if method == "search_accounts" && status == 200 => {
            out = json!({"unexpected": true});
        }
        Fault::SnapshotWithoutHeadline if method == methods::GET_SNAPSHOT && status == 200 => {
            if let Some(o) = out.as_object_mut() {
                o.remove("headline");
            }
        }
        _ => {}
    }
    if method == methods::LIST_TOOLS && status == 200 {
        rewrite_catalog(f.fault, &mut out);
    }
    let mut response = json_answer(status, &out);
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    response
}

/// The catalog faults: one descriptor edited.
fn rewrite_catalog(fault: Fault, out: &mut Value) {
    let Some(tools) = out["tools"].as_array_mut() else {
        return;
    };
    let find = |tools: &mut Vec<Value>, name: &str| -> usize {
        tools
            .iter()
            .position(|t| t["name"] == json!(name))
            .unwrap_or_else(|| panic!("the reference backend lists {name}"))
    };
    match fault {
        Fault::DescriptorWithoutDescription => {
            let i = find(tools, "log_call");
            tools[i].as_object_mut().map(|o| o.remove("description"));
        }
        Fault::DuplicateNames => {
            let i = find(tools, "search_accounts");
            let copy = tools[i].clone();
            tools.push(copy);
        }
        Fault::BadToolName => {
            let i = find(tools, "log_call");
            tools[i]["name"] = json!("log call!");
        }
        Fault::RemoteRefInInputSchema => {
            let i = find(tools, "search_accounts");
            tools[i]["inputSchema"]["properties"]["query"] =
                json!({"$ref": "https://schemas.example.com/query.json"});
        }
        Fault::LocalRefInInputSchema => {
            let i = find(tools, "search_accounts");
            let schema = &mut tools[i]["inputSchema"];
            schema["properties"]["query"] = json!({"$ref": "#/$defs/Query"});
            schema["$defs"] = json!({"Query": {"type": "string"}});
        }
        Fault::UnknownParamsType => {
            let i = find(tools, "search_accounts");
            tools[i]["params"] = json!({"query": "integer"});
        }
        Fault::InvalidOutputSchema => {
            let i = find(tools, "log_call");
            tools[i]["outputSchema"] =
                json!({"type": "object", "properties": {"id": {"type": "identifier"}}});
        }
        Fault::VersionNotSemver => {
            let i = find(tools, "get_account");
            tools[i]["version"] = json!("1.2");
        }
        Fault::DeprecationDateNotIso => {
            let i = find(tools, "get_account");
            tools[i]["deprecated"]["removedAt"] = json!("next spring");
        }
        _ => {}
    }
}

//! Fuzz target: the SDK's dispatcher, from an HTTP request to a status and
//! a JSON body, on a backend with a typed tool, a prompt and a resource
//! template.
//!
//! Input: `name: value` header lines, an empty line, then the body. The
//! header `authorization: user` becomes a valid user token with the tools'
//! scope, `authorization: technical` the backend's technical token, and a
//! `method: GET` line sets the HTTP method (POST otherwise).
#![no_main]

use std::{collections::BTreeMap, sync::OnceLock};

use cortex_backend::{
    Backend, Ctx, Request, RequestBody, ToolError, ToolFn,
    contract::{
        GetPromptResult, PromptDescriptor, PromptMessage, ReadResourceResult, ResourceContent,
        ResourceTemplate,
    },
    testing::TestIssuer,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const AUDIENCE: &str = "http://127.0.0.1/mcp";
const SCOPE: &str = "mcp:fuzz:read";
const TECHNICAL: &str = "fuzz-technical-token-with-32-characters";
/// Statuses the contract defines.
const STATUSES: [u16; 8] = [200, 400, 401, 403, 404, 405, 413, 429];

/// Arguments of the tool.
#[derive(Deserialize, JsonSchema)]
struct Query {
    /// An id.
    id: String,
    /// How many.
    limit: Option<u32>,
    /// Tags.
    tags: Option<Vec<String>>,
}

/// What the tool returns.
#[derive(Serialize, JsonSchema)]
struct Found {
    id: String,
    count: usize,
}

async fn find(_ctx: Ctx<()>, q: Query) -> Result<Found, ToolError> {
    let count = q.limit.unwrap_or(1) as usize + q.tags.map_or(0, |t| t.len());
    Ok(Found { id: q.id, count })
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    backend: Backend<()>,
    user: String,
    _issuer: TestIssuer,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let issuer = runtime.block_on(TestIssuer::start()).expect("issuer");
        let user = issuer
            .token(AUDIENCE)
            .sub("fuzz-user")
            .email("fuzz@example.com")
            .scopes([SCOPE])
            .ttl(std::time::Duration::from_secs(30 * 86_400))
            .mint();
        let auth = runtime
            .block_on(async {
                cortex_backend::Auth::new(issuer.auth_config(AUDIENCE, &[TECHNICAL]))
            })
            .expect("auth");
        let backend = Backend::builder("fuzz")
            .auth(auth)
            .tool(
                ToolFn::new("find")
                    .scope(SCOPE)
                    .description("Find an item by id.")
                    .handler(find),
            )
            .prompt(
                PromptDescriptor {
                    name: "summarise".into(),
                    description: "Summarise an item.".into(),
                    arguments: None,
                    scope: SCOPE.into(),
                },
                |_ctx, args: BTreeMap<String, String>| async move {
                    let id = args.get("id").cloned().unwrap_or_default();
                    Ok(GetPromptResult {
                        description: None,
                        messages: vec![PromptMessage::user(format!("Summarise {id}"))],
                    })
                },
            )
            .resource_template(
                ResourceTemplate {
                    uri_template: "items://item/{id}".into(),
                    name: "item".into(),
                    description: None,
                    mime_type: Some("text/plain".into()),
                    scope: SCOPE.into(),
                },
                |_ctx, uri, vars| async move {
                    Ok(ReadResourceResult {
                        contents: vec![ResourceContent {
                            uri,
                            mime_type: "text/plain".into(),
                            text: vars.get("id").cloned(),
                            blob: None,
                        }],
                    })
                },
            )
            .build()
            .expect("backend");
        Setup {
            runtime,
            backend,
            user,
            _issuer: issuer,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&b""[..], data),
    };
    let head = String::from_utf8_lossy(head);
    let mut method = "POST".to_owned();
    let mut headers = Vec::new();
    for line in head.split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match (name.to_ascii_lowercase().as_str(), value) {
            ("method", m) => method = m.to_owned(),
            ("authorization", "user") => headers.push((name, format!("Bearer {}", setup.user))),
            ("authorization", "technical") => headers.push((name, format!("Bearer {TECHNICAL}"))),
            _ => headers.push((name, value.to_owned())),
        }
    }
    let body = if body.len() > setup.backend.body_limit() {
        RequestBody::TooLarge
    } else {
        RequestBody::Complete(bytes::Bytes::copy_from_slice(body))
    };
    let mut request = Request::new(method, body);
    for (name, value) in headers {
        request.push_header(name, value);
    }
    let response = setup.runtime.block_on(setup.backend.handle(request));
    assert!(
        STATUSES.contains(&response.status),
        "status {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    serde_json::from_slice::<serde_json::Value>(&response.body).expect("a JSON body");
});

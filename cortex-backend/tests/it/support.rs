//! A test backend exercising every path of the contract, and request helpers.

use cortex_backend::{
    Auth, Backend, Ctx, Help, McpResult, Request, RequestBody, Response, ToolError, ToolFn,
    contract::{
        GetPromptResult, PromptArgument, PromptDescriptor, PromptMessage, ReadResourceResult,
        ResourceContent, ResourceTemplate, Snapshot, TicketList, TicketReceipt,
    },
    testing::TestIssuer,
    tool,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(crate) const AUD: &str = "https://mcp.test.example/mcp";
pub(crate) const TECH: &str = "technical-token-0123456789abcdef";
pub(crate) const TECH_OLD: &str = "technical-token-rotated-out-0001";

pub(crate) struct Notes {
    pub owner_of_note_7: String,
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct EchoArgs {
    /// Text to echo.
    pub(crate) text: String,
    /// How many times.
    pub(crate) count: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Echoed {
    pub(crate) text: String,
    pub(crate) count: u32,
}

/// Echo the text back.
#[tool(scope = "mcp:notes:read", read_only)]
async fn echo(_ctx: Ctx<Notes>, args: EchoArgs) -> Result<Echoed, ToolError> {
    Ok(Echoed {
        text: args.text.repeat(args.count.unwrap_or(1) as usize),
        count: args.count.unwrap_or(1),
    })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct NoteId {
    pub(crate) id: u32,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Done {
    pub(crate) ok: bool,
}

async fn delete_note(ctx: Ctx<Notes>, args: NoteId) -> Result<Done, ToolError> {
    if args.id != 7 {
        return Err(ToolError::not_found(format!("no note {}", args.id)));
    }
    if ctx.caller().sub != ctx.state().owner_of_note_7 {
        return Err(ToolError::denied("only the note's owner may delete it"));
    }
    Ok(Done { ok: true })
}

async fn business_rule(_ctx: Ctx<Notes>, args: NoteId) -> Result<Done, ToolError> {
    Err(ToolError::invalid(format!(
        "note {} is archived; unarchive it first",
        args.id
    )))
}

async fn failing(_ctx: Ctx<Notes>, _args: NoteId) -> Result<Done, ToolError> {
    Err(ToolError::internal(
        "connection to postgres://admin:hunter2@db failed",
    ))
}

async fn panicking(_ctx: Ctx<Notes>, _args: NoteId) -> Result<Done, ToolError> {
    panic!("secret internal state 0xdeadbeef")
}

async fn lying(_ctx: Ctx<Notes>, _args: NoteId) -> Result<Done, ToolError> {
    Ok(Done { ok: true })
}

async fn leaky(_ctx: Ctx<Notes>, _args: NoteId) -> Result<Value, ToolError> {
    Ok(json!({"ok": "secret-value-42"}))
}

async fn chart(_ctx: Ctx<Notes>, _args: NoteId) -> Result<McpResult, ToolError> {
    Ok(McpResult::new()
        .text("the chart")
        .image([1u8, 2, 3], "image/png")
        .resource_link("notes://note/7", "note 7"))
}

pub(crate) fn help() -> Help {
    Help::new("Notes of the team.")
        .concept("note", "A short text owned by one person.")
        .workflow("Clean up", ["echo", "delete_note"])
        .convention("Ids are integers.")
        .limit("No sharing.")
        .example(
            "echo",
            json!({"text": "hi"}),
            json!({"text": "hi", "count": 1}),
        )
}

pub(crate) fn backend(issuer: &TestIssuer) -> Backend<Notes> {
    backend_with_limit(issuer, cortex_backend::DEFAULT_BODY_LIMIT)
}

pub(crate) fn backend_with_limit(issuer: &TestIssuer, limit: usize) -> Backend<Notes> {
    let auth = Auth::new(issuer.auth_config(AUD, &[TECH, TECH_OLD])).expect("auth");
    Backend::builder("notes")
        .state(Notes {
            owner_of_note_7: "ana".into(),
        })
        .auth(auth)
        .body_limit(limit)
        .tool(echo)
        .tool(
            ToolFn::new("delete_note")
                .scope("mcp:notes:write")
                .description("Delete a note.")
                .handler(delete_note),
        )
        .tool(
            ToolFn::new("business_rule")
                .scope("mcp:notes:write")
                .description("Always refused.")
                .handler(business_rule),
        )
        .tool(
            ToolFn::new("failing")
                .scope("mcp:notes:read")
                .description("Always fails.")
                .handler(failing),
        )
        .tool(
            ToolFn::new("panicking")
                .scope("mcp:notes:read")
                .description("Always panics.")
                .handler(panicking),
        )
        .tool(
            cortex_backend::Tool::new("leaky", "mcp:notes:read", "Breaks its schema.", leaky)
                .output_schema(Some(json!({
                    "type": "object",
                    "properties": {"ok": {"type": "integer"}}
                }))),
        )
        .tool(
            cortex_backend::Tool::new("lying", "mcp:notes:read", "Breaks its schema.", lying)
                .output_schema(Some(json!({
                    "type": "object",
                    "properties": {"ok": {"type": "string"}},
                    "required": ["ok"]
                }))),
        )
        .tool(
            ToolFn::new("chart")
                .scope("mcp:notes:read")
                .description("A chart.")
                .handler(chart),
        )
        .help(help())
        .prompt(
            PromptDescriptor {
                name: "summarise".into(),
                description: "Summarise a note.".into(),
                arguments: Some(vec![PromptArgument {
                    name: "id".into(),
                    description: None,
                    required: Some(true),
                }]),
                scope: "mcp:notes:read".into(),
            },
            |_ctx, args| async move {
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user(format!(
                        "Summarise note {}",
                        args["id"]
                    ))],
                })
            },
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "notes://note/{id}".into(),
                name: "note".into(),
                description: None,
                mime_type: Some("text/plain".into()),
                scope: "mcp:notes:read".into(),
            },
            |_ctx, uri, vars| async move {
                Ok(ReadResourceResult {
                    contents: vec![ResourceContent {
                        uri,
                        mime_type: "text/plain".into(),
                        text: Some(format!("note {}", vars["id"])),
                        blob: None,
                    }],
                })
            },
        )
        .snapshot(|_state| async move {
            Ok(Snapshot {
                backend: "notes".into(),
                generated_at: "2026-11-25T00:00:00Z".into(),
                title: "Notes".into(),
                headline: vec![],
                sections: None,
                hint: None,
            })
        })
        .tickets(
            |_ctx, _report| async move {
                Ok(TicketReceipt {
                    ticket_id: "T-1".into(),
                    deduplicated: false,
                    ack_message: None,
                })
            },
            |_ctx, _p| async move { Ok(TicketList { tickets: vec![] }) },
        )
        .build()
        .expect("the test backend builds")
}

pub(crate) fn call_raw(body: &str, token: Option<&str>) -> Request {
    let mut r = Request::post(body.to_string()).header("Content-Type", "application/json");
    if let Some(t) = token {
        r.push_header("Authorization", format!("Bearer {t}"));
    }
    r
}

pub(crate) fn call(method: &str, params: Value, token: &str) -> Request {
    call_raw(
        &json!({"method": method, "params": params}).to_string(),
        Some(token),
    )
}

pub(crate) fn user(issuer: &TestIssuer, sub: &str, scopes: &[&str]) -> String {
    issuer
        .token(AUD)
        .sub(sub)
        .scopes(scopes.iter().copied())
        .mint()
}

pub(crate) fn assert_error(r: &Response, status: u16) -> Value {
    let body = r.json_body();
    assert_eq!(r.status, status, "body: {body}");
    assert!(
        body["error"].is_string(),
        "error body without `error`: {body}"
    );
    body
}

pub(crate) fn too_large() -> Request {
    Request::new("POST", RequestBody::TooLarge).header("content-type", "application/json")
}

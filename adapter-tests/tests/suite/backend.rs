//! The backend under test: one tool per status path of contract.md §6, a
//! prompt, a resource template and a snapshot, so every method class exists.

use std::collections::BTreeMap;

use cortex_backend::{
    Auth, Backend, Ctx, Help, ToolError, ToolFn,
    contract::{
        GetPromptResult, Metric, MetricValue, PromptDescriptor, PromptMessage, ReadResourceResult,
        ResourceContent, ResourceTemplate, Snapshot,
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) const READ: &str = "mcp:shelf:read";
pub(crate) const WRITE: &str = "mcp:shelf:write";
/// Over axum's 2 MB and actix's 256 KiB defaults: the adapters must not apply them.
pub(crate) const BODY_LIMIT: usize = 3 << 20;

#[derive(Deserialize, JsonSchema)]
pub(crate) struct EchoArgs {
    text: String,
    repeat: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Echoed {
    text: String,
    caller: String,
}

async fn echo(ctx: Ctx<()>, args: EchoArgs) -> Result<Echoed, ToolError> {
    Ok(Echoed {
        text: args.text.repeat(args.repeat.unwrap_or(1) as usize),
        caller: ctx.caller().sub.clone(),
    })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct BlobArgs {
    blob: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Length {
    len: usize,
}

async fn measure(_: Ctx<()>, args: BlobArgs) -> Result<Length, ToolError> {
    Ok(Length {
        len: args.blob.len(),
    })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Withdrawal {
    amount: u32,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Receipt {
    withdrawn: u32,
}

async fn withdraw(_: Ctx<()>, args: Withdrawal) -> Result<Receipt, ToolError> {
    if args.amount > 100 {
        return Err(ToolError::invalid(
            "a withdrawal is at most 100 items; split it into several",
        ));
    }
    Ok(Receipt {
        withdrawn: args.amount,
    })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Nothing {}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Done {
    done: bool,
}

async fn purge(ctx: Ctx<()>, _: Nothing) -> Result<Done, ToolError> {
    ctx.require_role(&["librarian"])?;
    Ok(Done { done: true })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Lookup {
    id: String,
}

async fn find(_: Ctx<()>, args: Lookup) -> Result<Done, ToolError> {
    if args.id == "known" {
        Ok(Done { done: true })
    } else {
        Err(ToolError::not_found(format!("no item with id {}", args.id)))
    }
}

async fn explode(_: Ctx<()>, _: Nothing) -> Result<Done, ToolError> {
    panic!("secret internal detail")
}

async fn fail(_: Ctx<()>, _: Nothing) -> Result<Done, ToolError> {
    Err(ToolError::internal("database password rejected"))
}

/// Deterministic so both adapters' answers can be compared byte for byte.
async fn snapshot(_: std::sync::Arc<()>) -> Result<Snapshot, ToolError> {
    Ok(Snapshot {
        backend: "shelf".into(),
        generated_at: "2026-11-25T12:00:00Z".into(),
        title: "Shelf".into(),
        headline: vec![Metric::new(
            "items",
            "Items",
            MetricValue::Number(42.into()),
        )],
        sections: None,
        hint: None,
    })
}

pub(crate) fn build(auth: Auth) -> Backend<()> {
    Backend::builder("shelf")
        .auth(auth)
        .body_limit(BODY_LIMIT)
        .tool(
            ToolFn::new("echo")
                .scope(READ)
                .description("Echo a text.")
                .handler(echo),
        )
        .tool(
            ToolFn::new("measure")
                .scope(READ)
                .description("Length of a blob.")
                .handler(measure),
        )
        .tool(
            ToolFn::new("withdraw")
                .scope(WRITE)
                .description("Withdraw items.")
                .handler(withdraw),
        )
        .tool(
            ToolFn::new("purge")
                .scope(WRITE)
                .description("Purge the shelf (librarians only).")
                .handler(purge),
        )
        .tool(
            ToolFn::new("find")
                .scope(READ)
                .description("Find an item.")
                .handler(find),
        )
        .tool(
            ToolFn::new("explode")
                .scope(READ)
                .description("Always panics.")
                .handler(explode),
        )
        .tool(
            ToolFn::new("fail")
                .scope(READ)
                .description("Always fails.")
                .handler(fail),
        )
        .help(Help::new("A shelf of items, for the adapter suite."))
        .prompt(
            PromptDescriptor {
                name: "summarise".into(),
                description: "Summarise the shelf.".into(),
                arguments: None,
                scope: READ.into(),
            },
            |_, _: BTreeMap<String, String>| async {
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user("Summarise the shelf.")],
                })
            },
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "shelf://item/{id}".into(),
                name: "item".into(),
                description: None,
                mime_type: Some("text/plain".into()),
                scope: READ.into(),
            },
            |_, uri: String, _| async move {
                Ok(ReadResourceResult {
                    contents: vec![ResourceContent {
                        uri,
                        mime_type: "text/plain".into(),
                        text: Some("an item".into()),
                        blob: None,
                    }],
                })
            },
        )
        .snapshot(snapshot)
        .build()
        .expect("the test backend is valid")
}

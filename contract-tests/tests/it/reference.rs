//! A correct SDK backend that implements every method of the contract, so
//! every check has something to exercise.

use cortex_backend::{
    Auth, Backend, Ctx, Help, Tool, ToolError,
    contract::{
        Deprecation, GetPromptResult, Metric, PromptArgument, PromptDescriptor, PromptMessage,
        ReadResourceResult, ResourceContent, ResourceTemplate, Snapshot,
    },
    testing::TestIssuer,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) const AUDIENCE: &str = "https://mcp.conformance.example/mcp";
pub(crate) const TECHNICAL: &str = "technical-token-for-the-conformance-tests";

pub(crate) struct Crm {
    accounts: Vec<&'static str>,
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Search {
    /// Text matched against account names.
    query: String,
    /// At most this many results.
    limit: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Accounts {
    accounts: Vec<String>,
}

async fn search_accounts(ctx: Ctx<Crm>, args: Search) -> Result<Accounts, ToolError> {
    let limit = args.limit.unwrap_or(20) as usize;
    let accounts = ctx
        .state()
        .accounts
        .iter()
        .filter(|a| a.to_lowercase().contains(&args.query.to_lowercase()))
        .take(limit)
        .map(|a| (*a).to_string())
        .collect();
    Ok(Accounts { accounts })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct LogCall {
    account: String,
    summary: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Logged {
    id: u64,
}

async fn log_call(ctx: Ctx<Crm>, args: LogCall) -> Result<Logged, ToolError> {
    if !ctx.state().accounts.contains(&args.account.as_str()) {
        return Err(ToolError::not_found(format!(
            "no account named {}",
            args.account
        )));
    }
    Ok(Logged {
        id: args.summary.len() as u64,
    })
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct GetAccount {
    id: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Account {
    name: String,
}

async fn get_account(ctx: Ctx<Crm>, args: GetAccount) -> Result<Account, ToolError> {
    match ctx.state().accounts.iter().find(|a| **a == args.id) {
        Some(a) => Ok(Account {
            name: (*a).to_string(),
        }),
        None => Err(ToolError::not_found(format!("no account {}", args.id))),
    }
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct Export {
    format: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Exported {
    rows: usize,
}

async fn legacy_export(ctx: Ctx<Crm>, args: Export) -> Result<Exported, ToolError> {
    if args.format != "csv" {
        return Err(ToolError::invalid("only csv"));
    }
    Ok(Exported {
        rows: ctx.state().accounts.len(),
    })
}

/// What may differ between the reference and a faulty variant's inner backend.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// Accept bodies up to 64 MiB (no effective limit).
    pub(crate) unlimited_body: bool,
    /// Add a tool whose scope breaks the naming convention.
    pub(crate) unconventional_scope: bool,
}

pub(crate) fn auth(issuer: &TestIssuer) -> Auth {
    Auth::new(issuer.auth_config(AUDIENCE, &[TECHNICAL])).expect("auth config")
}

pub(crate) fn backend(issuer: &TestIssuer, shape: Shape) -> Backend<Crm> {
    backend_with(auth(issuer), shape)
}

pub(crate) fn backend_with(auth: Auth, shape: Shape) -> Backend<Crm> {
    let mut builder = Backend::builder("crm")
        .state(Crm {
            accounts: vec!["Acme", "Globex", "Initech"],
        })
        .auth(auth)
        .tool(
            Tool::new(
                "search_accounts",
                "mcp:crm:read",
                "Search accounts by name.",
                search_accounts,
            )
            .title("Search accounts")
            .read_only()
            .idempotent(),
        )
        .tool(
            Tool::new(
                "log_call",
                "mcp:crm:write",
                "Log a call on an account.",
                log_call,
            )
            .destructive(),
        )
        .tool(
            Tool::new(
                "get_account",
                "mcp:crm:read",
                "One account by id.",
                get_account,
            )
            .read_only()
            .version("1.2.0")
            .deprecated(Deprecation {
                removed_at: Some("2027-01-01".into()),
                replaced_by: Some("search_accounts".into()),
                reason: Some("search covers it".into()),
            }),
        )
        .help(
            Help::new("The CRM of the sales teams.")
                .concept("account", "A customer company.")
                .workflow("Follow up", ["search_accounts", "log_call"])
                .convention("Account ids are their names.")
                .limit("No deletion.")
                .example(
                    "search_accounts",
                    serde_json::json!({"query": "ac"}),
                    serde_json::json!({"accounts": ["Acme"]}),
                ),
        )
        .prompt(
            PromptDescriptor {
                name: "summarize_account".into(),
                description: "Summarize one account.".into(),
                arguments: Some(vec![PromptArgument {
                    name: "account".into(),
                    description: Some("The account's name.".into()),
                    required: Some(true),
                }]),
                scope: "mcp:crm:read".into(),
            },
            |_ctx, args| async move {
                Ok(GetPromptResult {
                    description: None,
                    messages: vec![PromptMessage::user(format!(
                        "Summarize {}",
                        args.get("account").cloned().unwrap_or_default()
                    ))],
                })
            },
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "crm://account/{id}".into(),
                name: "account".into(),
                description: Some("One account as text.".into()),
                mime_type: Some("text/plain".into()),
                scope: "mcp:crm:read".into(),
            },
            |_ctx, uri, vars| async move {
                Ok(ReadResourceResult {
                    contents: vec![ResourceContent {
                        uri,
                        mime_type: "text/plain".into(),
                        text: Some(format!("account {}", vars["id"])),
                        blob: None,
                    }],
                })
            },
        )
        .snapshot(|state| async move {
            Ok(Snapshot {
                backend: "crm".into(),
                generated_at: "2026-11-25T13:00:00Z".into(),
                title: "CRM".into(),
                headline: vec![Metric::new(
                    "accounts",
                    "Accounts",
                    state.accounts.len() as i64,
                )],
                sections: None,
                hint: None,
            })
        });
    if shape.unconventional_scope {
        builder = builder.tool(Tool::new(
            "legacy_export",
            "crm.export",
            "Export every account.",
            legacy_export,
        ));
    }
    if shape.unlimited_body {
        builder = builder.body_limit(64 << 20);
    }
    builder.build().expect("the reference backend builds")
}

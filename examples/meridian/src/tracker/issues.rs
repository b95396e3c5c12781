//! The tracker's data and MCP tools. Every account (one per person of
//! [`crate::firm`]) starts with a few seeded issues; an account holds at
//! most [`MAX_ISSUES`] issues, each with a bounded title and body, and only
//! people of the directory have accounts, so the store is bounded by count
//! and bytes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::http::request::Parts;
use rmcp::{
    Json, ServerHandler,
    handler::server::{router::tool::ToolRouter, tool::Extension, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Caller;
use crate::firm::{self, Employee};

/// Most issues one account holds.
pub const MAX_ISSUES: usize = 50;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY_CHARS: usize = 2_000;
/// Issues each account starts with.
const SEEDED: usize = 3;

/// A tracker account, as `whoami` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Account {
    /// The account's subject at the tracker's authorization server.
    pub sub: String,
    /// The tracker handle (from the work email).
    pub handle: String,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// One issue.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// `TRK-<n>`.
    pub id: String,
    /// One line.
    pub title: String,
    /// Details (may be empty).
    pub body: String,
    /// `open`, `in_progress` or `done`.
    pub status: String,
}

/// The answer of `list_issues`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IssueList {
    /// Whose issues these are (the tracker handle).
    pub account: String,
    /// The issues, oldest first.
    pub issues: Vec<Issue>,
}

/// Arguments of `list_issues`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Only issues with this status (`open`, `in_progress`, `done`).
    #[serde(default)]
    pub status: Option<String>,
}

/// Arguments of `create_issue`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateArgs {
    /// One line, at most 200 characters.
    pub title: String,
    /// Details, at most 2000 characters.
    #[serde(default)]
    pub body: Option<String>,
}

const STATUSES: [&str; 3] = ["open", "in_progress", "done"];

const TEMPLATES: [&str; 6] = [
    "Update the {team} onboarding checklist",
    "Collect {team} feedback on the new expense tool",
    "Book the {team} offsite venue",
    "Review {team} access rights for Q3",
    "Fix the broken links on the {team} wiki page",
    "Prepare the {team} section of the monthly report",
];

/// The tracker handle of a person: their email's local part.
fn handle(e: &Employee) -> String {
    e.email.split('@').next().unwrap_or(&e.id).to_string()
}

/// The issues an account starts with (deterministic per person).
fn seed(e: &Employee, number: usize) -> Vec<Issue> {
    (0..SEEDED)
        .map(|k| Issue {
            id: format!("TRK-{}", number * 10 + k + 1),
            title: TEMPLATES[(number + k) % TEMPLATES.len()].replace("{team}", e.team),
            body: String::new(),
            status: STATUSES[(number + k) % STATUSES.len()].to_string(),
        })
        .collect()
}

/// Every account's issues.
pub struct Store {
    people: Vec<Employee>,
    issues: Mutex<HashMap<String, Vec<Issue>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("accounts", &self.people.len())
            .finish_non_exhaustive()
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// One account per person of the firm, each with its seeded issues.
    pub fn new() -> Self {
        let people = firm::directory();
        let issues = people
            .iter()
            .enumerate()
            .map(|(n, e)| (e.id.clone(), seed(e, n + 1)))
            .collect();
        Self {
            people,
            issues: Mutex::new(issues),
        }
    }

    fn person(&self, sub: &str) -> Result<&Employee, String> {
        self.people.iter().find(|e| e.id == sub).ok_or_else(|| {
            format!("the tracker has no account `{sub}`; sign in as a Meridian employee")
        })
    }

    /// The account of `sub`.
    pub fn account(&self, sub: &str) -> Result<Account, String> {
        let e = self.person(sub)?;
        Ok(Account {
            sub: e.id.clone(),
            handle: handle(e),
            name: e.name.clone(),
            email: e.email.clone(),
        })
    }

    /// The issues of `sub`, optionally with one status.
    pub fn list(&self, sub: &str, status: Option<&str>) -> Result<IssueList, String> {
        let e = self.person(sub)?;
        if let Some(status) = status
            && !STATUSES.contains(&status)
        {
            return Err(format!(
                "unknown status `{}`; use open, in_progress or done",
                status.chars().take(40).collect::<String>()
            ));
        }
        let all = cortex_backend::sync::lock(&self.issues);
        let issues = all
            .get(sub)
            .map(|list| {
                list.iter()
                    .filter(|i| status.is_none_or(|s| i.status == s))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(IssueList {
            account: handle(e),
            issues,
        })
    }

    /// Files a new open issue for `sub`.
    pub fn create(&self, sub: &str, title: &str, body: &str) -> Result<Issue, String> {
        self.person(sub)?;
        let title = title.trim();
        if title.is_empty() {
            return Err("an issue needs a title".into());
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(format!(
                "the title is longer than {MAX_TITLE_CHARS} characters; shorten it and put details in `body`"
            ));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(format!(
                "the body is longer than {MAX_BODY_CHARS} characters; shorten it"
            ));
        }
        let mut all = cortex_backend::sync::lock(&self.issues);
        let total: usize = all.values().map(Vec::len).sum();
        let list = all.entry(sub.to_string()).or_default();
        if list.len() >= MAX_ISSUES {
            return Err(format!(
                "your tracker account holds {MAX_ISSUES} issues already (its limit); close some first"
            ));
        }
        let issue = Issue {
            id: format!("TRK-{}", 10_000 + total + 1),
            title: title.to_string(),
            body: body.to_string(),
            status: "open".into(),
        };
        list.push(issue.clone());
        Ok(issue)
    }
}

/// The tracker's MCP server (one per request: it is stateless).
#[derive(Debug, Clone)]
pub struct TrackerServer {
    store: Arc<Store>,
    tool_router: ToolRouter<Self>,
}

/// The caller the bearer check put into the request.
fn caller(parts: &Parts, scope: &str) -> Result<Caller, String> {
    let caller = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or("the request carried no checked token")?;
    if !caller.has(scope) {
        return Err(format!(
            "your tracker token lacks the `{scope}` scope; sign in to the tracker again and allow it"
        ));
    }
    Ok(caller)
}

#[tool_router(router = tool_router)]
impl TrackerServer {
    /// A server over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            tool_router: Self::tool_router(),
        }
    }

    /// Shows which tracker account the token belongs to.
    #[tool(
        name = "whoami",
        description = "Shows which tracker account you are signed in as.",
        annotations(read_only_hint = true)
    )]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<Json<Account>, String> {
        let caller = caller(&parts, "issues:read")?;
        self.store.account(&caller.sub).map(Json)
    }

    /// Lists the caller's issues.
    #[tool(
        name = "list_issues",
        description = "Lists your issues in the tracker, optionally only those with one status (open, in_progress, done).",
        annotations(read_only_hint = true)
    )]
    async fn list_issues(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ListArgs>,
    ) -> Result<Json<IssueList>, String> {
        let caller = caller(&parts, "issues:read")?;
        self.store
            .list(&caller.sub, args.status.as_deref())
            .map(Json)
    }

    /// Files an issue in the caller's name.
    #[tool(
        name = "create_issue",
        description = "Files a new open issue in your name.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn create_issue(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<CreateArgs>,
    ) -> Result<Json<Issue>, String> {
        let caller = caller(&parts, "issues:write")?;
        self.store
            .create(
                &caller.sub,
                &args.title,
                args.body.as_deref().unwrap_or_default(),
            )
            .map(Json)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TrackerServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tracker", env!("CARGO_PKG_VERSION")))
            .with_instructions("The tracker: your issues, as your tracker account.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_seeded_and_bounded() {
        let store = Store::new();
        let lena = store.list(firm::SALES_REP, None).unwrap();
        assert_eq!(lena.issues.len(), SEEDED);
        assert!(lena.account.contains('.'), "{}", lena.account);
        let omar = store.list(firm::PROJECT_MANAGER, None).unwrap();
        assert_ne!(lena.issues[0].id, omar.issues[0].id);
        assert!(store.list("nobody", None).is_err());
        assert!(store.list(firm::SALES_REP, Some("later")).is_err());
        assert!(store.create(firm::SALES_REP, " ", "").is_err());
        assert!(
            store
                .create(firm::SALES_REP, &"x".repeat(MAX_TITLE_CHARS + 1), "")
                .is_err()
        );
        for n in SEEDED..MAX_ISSUES {
            store
                .create(firm::SALES_REP, &format!("issue {n}"), "")
                .unwrap();
        }
        let full = store.create(firm::SALES_REP, "one more", "").unwrap_err();
        assert!(full.contains("limit"), "{full}");
        let open = store.list(firm::SALES_REP, Some("open")).unwrap().issues;
        assert!(open.len() >= MAX_ISSUES - SEEDED);
        assert!(open.iter().all(|i| i.status == "open"));
    }
}

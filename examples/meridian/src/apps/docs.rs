//! Project documents and milestones (served with axum). This app also shows
//! the two other MCP primitives end to end: a prompt (`status_update`) and a
//! resource template (`docs://document/{id}`).
//!
//! Record rule: a project's documents and milestones are open to the people
//! staffed on it (the `sub` claim is in its member list). Partners and the
//! CEO (role `partner` or `ceo`) read every project for oversight; writing
//! (`file_report`) always needs membership. Anything else is refused with 403.

use std::{collections::BTreeMap, sync::Mutex};

use cortex_backend::{
    Auth, Backend, BuildError, Ctx, Help, ToolError, ToolFn,
    contract::{
        GetPromptResult, PromptArgument, PromptDescriptor, PromptMessage, ReadResourceResult,
        ResourceContent, ResourceTemplate,
    },
    tool,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{metric, now_iso8601, snapshot};

/// The docs app's data.
#[derive(Debug)]
pub struct Docs {
    projects: Vec<Project>,
    documents: Mutex<Vec<Document>>,
}

#[derive(Debug)]
struct Project {
    id: &'static str,
    name: &'static str,
    client: &'static str,
    manager: &'static str,
    members: Vec<&'static str>,
    milestones: Vec<Milestone>,
}

/// A project milestone.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Milestone {
    /// What is delivered.
    name: String,
    /// Due date (YYYY-MM-DD).
    due: String,
    /// `done`, `on_track` or `at_risk`.
    status: String,
}

/// A document's metadata and text.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Document {
    /// Document id, e.g. `DOC-7`.
    id: String,
    /// The project.
    project: String,
    /// Title.
    title: String,
    /// `status`, `risk`, `minutes`, `design` or `contract`.
    kind: String,
    /// Author (employee id).
    author: String,
    /// Last update (ISO 8601).
    updated: String,
    /// Read the full text with `resources/read` on this URI.
    uri: String,
    #[serde(skip)]
    text: String,
}

fn seed() -> Docs {
    let m = |name: &str, due: &str, status: &str| Milestone {
        name: name.into(),
        due: due.into(),
        status: status.into(),
    };
    let p = |id, name, client, manager, members: &[&'static str], milestones| Project {
        id,
        name,
        client,
        manager,
        members: members.to_vec(),
        milestones,
    };
    let projects = vec![
        p(
            "atlas",
            "Atlas warehouse data platform",
            "Northwind Logistics",
            "e-098",
            &["e-098", "e-023", "e-031", "e-044", "e-070"],
            vec![
                m("Discovery report", "2026-09-30", "done"),
                m("Ingestion pipeline live", "2026-12-15", "on_track"),
                m("Dashboards handed over", "2027-02-28", "at_risk"),
            ],
        ),
        p(
            "beacon",
            "Beacon claims triage pilot",
            "Harbor & Pine Insurance",
            "e-098",
            &["e-098", "e-027", "e-081"],
            vec![
                m("Model baseline", "2026-11-20", "done"),
                m("Pilot with 2 adjusters", "2027-01-31", "on_track"),
            ],
        ),
        p(
            "cedar",
            "Cedar booking engine rebuild",
            "Costa Azul Hotels",
            "e-099",
            &["e-099", "e-035", "e-060", "e-072", "e-088"],
            vec![
                m("Architecture sign-off", "2026-10-15", "done"),
                m("Payments integration", "2027-01-10", "at_risk"),
            ],
        ),
        p(
            "delta",
            "Delta grid telemetry audit",
            "Fjordline Energy",
            "e-100",
            &["e-100", "e-040", "e-091"],
            vec![m("Audit plan", "2026-12-05", "on_track")],
        ),
        p(
            "ember",
            "Ember supply chain dashboard",
            "Solano Foods",
            "e-101",
            &["e-101", "e-052", "e-066", "e-077"],
            vec![
                m("Data sources mapped", "2026-11-28", "on_track"),
                m("First release", "2027-02-14", "on_track"),
            ],
        ),
        p(
            "fjord",
            "Fjord security practice (internal)",
            "Meridian Partners",
            "e-102",
            &["e-102", "e-067", "e-075", "e-093"],
            vec![m("Pen-test playbook v2", "2026-12-20", "on_track")],
        ),
    ];
    let d = |n: u32,
             project: &str,
             title: &str,
             kind: &str,
             author: &str,
             updated: &str,
             text: &str| Document {
        id: format!("DOC-{n}"),
        project: project.into(),
        title: title.into(),
        kind: kind.into(),
        author: author.into(),
        updated: updated.into(),
        uri: format!("docs://document/DOC-{n}"),
        text: text.into(),
    };
    let documents = vec![
        d(
            1,
            "atlas",
            "Discovery report",
            "design",
            "e-098",
            "2026-09-29T16:00:00Z",
            "Northwind runs 14 warehouses on three WMS versions. We recommend a single event stream and a lakehouse.",
        ),
        d(
            2,
            "atlas",
            "Weekly status, week 46",
            "status",
            "e-098",
            "2026-11-13T17:10:00Z",
            "Ingestion from 9 of 14 warehouses. Dashboards slipping: the client's BI team is short of two people.",
        ),
        d(
            3,
            "atlas",
            "Risk: BI staffing at the client",
            "risk",
            "e-098",
            "2026-11-14T09:30:00Z",
            "If the client's BI hires slip past January, the dashboard milestone moves to April.",
        ),
        d(
            4,
            "beacon",
            "Steering committee minutes, November",
            "minutes",
            "e-027",
            "2026-11-18T11:00:00Z",
            "Baseline model accepted. Pilot starts with two adjusters in Aarhus.",
        ),
        d(
            5,
            "beacon",
            "Statement of work",
            "contract",
            "e-098",
            "2026-08-02T10:00:00Z",
            "Fixed price EUR 95,000 for a 12-week pilot. Success: 30% faster triage.",
        ),
        d(
            6,
            "cedar",
            "Target architecture",
            "design",
            "e-035",
            "2026-10-14T15:20:00Z",
            "Booking service split from inventory; payments through the hotel group's PSP.",
        ),
        d(
            7,
            "cedar",
            "Risk: PSP sandbox access",
            "risk",
            "e-099",
            "2026-11-20T08:45:00Z",
            "No sandbox access yet; payments integration is at risk for January.",
        ),
        d(
            8,
            "delta",
            "Audit plan draft",
            "status",
            "e-100",
            "2026-11-21T14:00:00Z",
            "Scope: 220 substations, sampling 30. Field visits in weeks 2 and 3 of December.",
        ),
        d(
            9,
            "ember",
            "Data source inventory",
            "design",
            "e-066",
            "2026-11-19T10:30:00Z",
            "Seven sources, two of them spreadsheets maintained by hand.",
        ),
        d(
            10,
            "fjord",
            "Pen-test playbook v2 outline",
            "design",
            "e-102",
            "2026-11-10T09:00:00Z",
            "Adds cloud IAM review and a retest policy.",
        ),
    ];
    Docs {
        projects,
        documents: Mutex::new(documents),
    }
}

fn is_executive(ctx: &Ctx<Docs>) -> bool {
    matches!(ctx.caller().role.as_deref(), Some("ceo" | "partner"))
}

/// The project, if the caller may read it (`write`: may file into it).
fn project<'a>(ctx: &'a Ctx<Docs>, id: &str, write: bool) -> Result<&'a Project, ToolError> {
    let p = ctx
        .state()
        .projects
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            ToolError::not_found(format!("no project `{id}`; list_projects shows yours"))
        })?;
    let member = p.members.contains(&ctx.caller().sub.as_str());
    if member || (!write && is_executive(ctx)) {
        Ok(p)
    } else {
        Err(ToolError::denied(format!(
            "you are not staffed on project {}; ask its manager ({}) to add you",
            p.id, p.manager
        )))
    }
}

fn documents(ctx: &Ctx<Docs>) -> std::sync::MutexGuard<'_, Vec<Document>> {
    cortex_backend::sync::lock(&ctx.state().documents)
}

/// Arguments of `list_projects`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListProjects {
    /// Only projects with a milestone at risk.
    #[serde(default)]
    at_risk_only: bool,
}

/// A project the caller can open.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectRow {
    /// Project id, e.g. `atlas`.
    id: String,
    /// Name.
    name: String,
    /// Client company.
    client: String,
    /// Project manager (employee id).
    manager: String,
    /// Whether the caller is staffed on it (else: executive read access).
    staffed: bool,
    /// Its milestones.
    milestones: Vec<Milestone>,
}

/// Projects the caller can open.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Projects {
    /// The projects.
    projects: Vec<ProjectRow>,
}

/// List the projects you are staffed on (partners and the CEO: all), with their milestones.
#[tool(scope = "mcp:docs:read", read_only, title = "List my projects")]
async fn list_projects(ctx: Ctx<Docs>, args: ListProjects) -> Result<Projects, ToolError> {
    let me = ctx.caller().sub.as_str();
    let projects = ctx
        .state()
        .projects
        .iter()
        .filter(|p| p.members.contains(&me) || is_executive(&ctx))
        .filter(|p| !args.at_risk_only || p.milestones.iter().any(|m| m.status == "at_risk"))
        .map(|p| ProjectRow {
            id: p.id.into(),
            name: p.name.into(),
            client: p.client.into(),
            manager: p.manager.into(),
            staffed: p.members.contains(&me),
            milestones: p.milestones.clone(),
        })
        .collect();
    Ok(Projects { projects })
}

/// Arguments of `search_documents`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchDocuments {
    /// Project id; absent searches every project you can open.
    project: Option<String>,
    /// Text matched against titles and contents; empty lists all.
    #[serde(default)]
    query: String,
}

/// Matching documents (metadata; read the text through each `uri`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DocumentList {
    /// The documents, newest first.
    documents: Vec<Document>,
}

/// Search documents in your projects; naming a project you are not staffed on is refused.
#[tool(scope = "mcp:docs:read", read_only, title = "Search documents")]
async fn search_documents(
    ctx: Ctx<Docs>,
    args: SearchDocuments,
) -> Result<DocumentList, ToolError> {
    let allowed: Vec<&str> = match &args.project {
        Some(id) => vec![project(&ctx, id, false)?.id],
        None => ctx
            .state()
            .projects
            .iter()
            .filter(|p| project(&ctx, p.id, false).is_ok())
            .map(|p| p.id)
            .collect(),
    };
    let q = args.query.to_lowercase();
    let mut documents: Vec<Document> = documents(&ctx)
        .iter()
        .filter(|d| allowed.contains(&d.project.as_str()))
        .filter(|d| d.title.to_lowercase().contains(&q) || d.text.to_lowercase().contains(&q))
        .cloned()
        .collect();
    documents.sort_by(|a, b| b.updated.cmp(&a.updated));
    Ok(DocumentList { documents })
}

/// Arguments of `file_report`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileReport {
    /// Project id, e.g. `atlas`.
    project: String,
    /// `status`, `risk` or `minutes`.
    kind: ReportKind,
    /// Title, e.g. "Weekly status, week 48".
    title: String,
    /// The report's text.
    body: String,
}

/// Kinds of report a project member may file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A periodic status report.
    Status,
    /// A risk with its impact.
    Risk,
    /// Meeting minutes.
    Minutes,
}

/// The filed document.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Filed {
    /// New document id.
    document_id: String,
    /// Its resource URI.
    uri: String,
}

async fn file_report(ctx: Ctx<Docs>, args: FileReport) -> Result<Filed, ToolError> {
    let project = project(&ctx, &args.project, true)?.id;
    if args.title.trim().is_empty() || args.body.trim().is_empty() {
        return Err(ToolError::invalid("`title` and `body` must not be empty"));
    }
    let kind = match args.kind {
        ReportKind::Status => "status",
        ReportKind::Risk => "risk",
        ReportKind::Minutes => "minutes",
    };
    let author = ctx.caller().sub.clone();
    let mut docs = documents(&ctx);
    let id = format!("DOC-{}", docs.len() + 1);
    let uri = format!("docs://document/{id}");
    docs.push(Document {
        id: id.clone(),
        project: project.into(),
        title: args.title,
        kind: kind.into(),
        author,
        updated: now_iso8601(),
        uri: uri.clone(),
        text: args.body,
    });
    Ok(Filed {
        document_id: id,
        uri,
    })
}

/// `docs://document/{id}`: the document's text, for members of its project.
async fn read_document(
    ctx: Ctx<Docs>,
    uri: String,
    vars: BTreeMap<String, String>,
) -> Result<ReadResourceResult, ToolError> {
    let id = vars.get("id").map(String::as_str).unwrap_or_default();
    let doc = documents(&ctx)
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(id))
        .cloned();
    let doc = doc.ok_or_else(|| {
        ToolError::not_found(format!("no document `{id}`; search_documents lists them"))
    })?;
    project(&ctx, &doc.project, false)?;
    Ok(ReadResourceResult {
        contents: vec![ResourceContent {
            uri,
            mime_type: "text/markdown".into(),
            text: Some(format!(
                "# {}\n\n_{} report, {}, by {}_\n\n{}\n",
                doc.title, doc.kind, doc.updated, doc.author, doc.text
            )),
            blob: None,
        }],
    })
}

/// The `status_update` prompt: asks the agent to draft a weekly status.
async fn status_update(
    ctx: Ctx<Docs>,
    args: BTreeMap<String, String>,
) -> Result<GetPromptResult, ToolError> {
    let id = args.get("project").map(String::as_str).unwrap_or_default();
    let p = project(&ctx, id, false)?;
    let milestones: Vec<String> = p
        .milestones
        .iter()
        .map(|m| format!("{} (due {}, {})", m.name, m.due, m.status))
        .collect();
    Ok(GetPromptResult {
        description: Some(format!("Weekly status update for {}", p.name)),
        messages: vec![PromptMessage::user(format!(
            "Draft this week's status update for project {} ({}, client {}). Milestones: {}. \
             Read the latest documents with docs_search_documents (project \"{}\"), summarise progress, \
             risks and next steps in under 200 words, then offer to file it with docs_file_report (kind \"status\").",
            p.id,
            p.name,
            p.client,
            milestones.join("; "),
            p.id
        ))],
    })
}

fn help() -> Help {
    Help::new("Meridian's project documents: status reports, risks, minutes and milestones of each client project, for the people staffed on it.")
        .concept("project", "A client engagement (`atlas`, `beacon`, ...) with a manager, a member list and milestones.")
        .concept("document", "A report, design or contract of one project; its text is the resource `docs://document/{id}`.")
        .concept("staffing rule", "You open only projects you are staffed on; partners and the CEO read all; filing always needs membership.")
        .workflow("Weekly status", ["list_projects", "search_documents for the project", "prompt status_update", "file_report kind=status"])
        .workflow("Escalate a risk", ["list_projects with at_risk_only=true", "search_documents query=risk", "file_report kind=risk"])
        .convention("Project ids are lower-case words; document ids are `DOC-<n>`; times are ISO 8601 UTC.")
        .limit("No editing or deleting documents: file a new one instead.")
        .example("search_documents", json!({"project": "atlas", "query": "risk"}), json!({"documents": [{"id": "DOC-3", "uri": "docs://document/DOC-3"}]}))
        .example("file_report", json!({"project": "atlas", "kind": "status", "title": "Week 48", "body": "All green."}), json!({"document_id": "DOC-11", "uri": "docs://document/DOC-11"}))
}

/// The docs backend.
pub fn backend(auth: Auth) -> Result<Backend<Docs>, BuildError> {
    Backend::builder("docs")
        .state(seed())
        .auth(auth)
        .tool(list_projects)
        .tool(search_documents)
        .tool(
            ToolFn::new("file_report")
                .scope("mcp:docs:write")
                .description(
                    "File a status, risk or minutes report in a project you are staffed on.",
                )
                .handler(file_report),
        )
        .help(help())
        .prompt(
            PromptDescriptor {
                name: "status_update".into(),
                description: "Draft the weekly status update of one of your projects.".into(),
                arguments: Some(vec![PromptArgument {
                    name: "project".into(),
                    description: Some("Project id, e.g. atlas".into()),
                    required: Some(true),
                }]),
                scope: "mcp:docs:read".into(),
            },
            status_update,
        )
        .resource_template(
            ResourceTemplate {
                uri_template: "docs://document/{id}".into(),
                name: "document".into(),
                description: Some(
                    "The text of a project document, for members of its project.".into(),
                ),
                mime_type: Some("text/markdown".into()),
                scope: "mcp:docs:read".into(),
            },
            read_document,
        )
        .snapshot(|docs: std::sync::Arc<Docs>| async move {
            let count = docs.documents.lock().map_or(0, |d| d.len());
            let at_risk = docs
                .projects
                .iter()
                .flat_map(|p| &p.milestones)
                .filter(|m| m.status == "at_risk")
                .count();
            Ok(snapshot(
                "docs",
                "Projects and documents",
                vec![
                    metric(
                        "projects",
                        "Active projects",
                        docs.projects.len() as i64,
                        None,
                    ),
                    metric("documents", "Documents", count as i64, None),
                    metric(
                        "milestones_at_risk",
                        "Milestones at risk",
                        at_risk as i64,
                        None,
                    ),
                ],
            ))
        })
        .build()
}

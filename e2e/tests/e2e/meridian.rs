//! What every client must see in Meridian: the persona table tool by tool,
//! a read and a write with their structured results, the two kinds of
//! refusal, a prompt and a resource. One oracle for every client.

use std::time::Duration;

use meridian::{Options, Running, firm::Persona};
use serde_json::{Value, json};

/// Starts Meridian on free ports with short-lived tokens.
pub(crate) async fn start() -> Running {
    meridian::start(Options {
        port: 0,
        token_ttl: Duration::from_secs(900),
    })
    .await
    .expect("Meridian starts")
}

const CRM_READ: [&str; 4] = [
    "crm_get_deal",
    "crm_get_help",
    "crm_list_deals",
    "crm_search_accounts",
];
const CRM_WRITE: [&str; 2] = ["crm_draft_proposal", "crm_log_call"];
const DOCS_READ: [&str; 3] = [
    "docs_get_help",
    "docs_list_projects",
    "docs_search_documents",
];
const DOCS_WRITE: [&str; 1] = ["docs_file_report"];
const BILLING_READ: [&str; 3] = [
    "billing_get_help",
    "billing_get_invoice",
    "billing_list_invoices",
];
const BILLING_WRITE: [&str; 2] = ["billing_record_payment", "billing_send_reminder"];
const STAFFING_READ: [&str; 4] = [
    "staffing_check_availability",
    "staffing_get_employee",
    "staffing_get_help",
    "staffing_list_hr_policies",
];

/// The tracker's tools (a third-party MCP server behind the gateway):
/// every persona has `mcp:tracker:write`.
const TRACKER_READ: [&str; 2] = ["tracker_list_issues", "tracker_whoami"];
const TRACKER_WRITE: [&str; 1] = ["tracker_create_issue"];

/// The app tools a persona must see (the table in docs/architecture.md), sorted.
pub(crate) fn expected_app_tools(persona: Persona) -> Vec<String> {
    let groups: Vec<&[&str]> = match persona {
        Persona::SalesRep => vec![&CRM_READ, &CRM_WRITE],
        Persona::ProjectManager => vec![&DOCS_READ, &DOCS_WRITE, &CRM_READ],
        Persona::Cfo => vec![&BILLING_READ, &BILLING_WRITE, &CRM_READ],
        Persona::Ceo => vec![&CRM_READ, &DOCS_READ, &BILLING_READ, &STAFFING_READ],
    };
    let tracker: [&[&str]; 2] = [&TRACKER_READ, &TRACKER_WRITE];
    let mut names: Vec<String> = groups
        .into_iter()
        .chain(tracker)
        .flatten()
        .map(|n| n.to_string())
        .collect();
    names.sort();
    names
}

/// The app tools a set of scopes reaches (`mcp:<app>:write` implies
/// `mcp:<app>:read`), sorted.
pub(crate) fn app_tools_for_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for scope in scopes {
        let groups: &[&[&str]] = match scope {
            "mcp:crm:read" => &[&CRM_READ],
            "mcp:crm:write" => &[&CRM_READ, &CRM_WRITE],
            "mcp:docs:read" => &[&DOCS_READ],
            "mcp:docs:write" => &[&DOCS_READ, &DOCS_WRITE],
            "mcp:billing:read" => &[&BILLING_READ],
            "mcp:billing:write" => &[&BILLING_READ, &BILLING_WRITE],
            "mcp:staffing:read" => &[&STAFFING_READ],
            "mcp:tracker:read" => &[&TRACKER_READ],
            "mcp:tracker:write" => &[&TRACKER_READ, &TRACKER_WRITE],
            other => panic!("no Meridian tools known for the scope {other:?}"),
        };
        names.extend(groups.concat().into_iter().map(String::from));
    }
    names.sort();
    names.dedup();
    names
}

fn is_app_tool(name: &str) -> bool {
    ["crm_", "docs_", "billing_", "staffing_", "tracker_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The steps every client runs for one persona (the format of
/// `clients/ts_client.mjs`); the sales rep and the project manager also
/// exercise calls, a prompt and a resource.
pub(crate) fn steps(persona: Persona) -> Value {
    let mut steps = vec![json!({"op": "list_tools"})];
    match persona {
        Persona::SalesRep => steps.extend([
            json!({"op": "call_tool", "name": "crm_get_deal", "arguments": {"deal_id": "D-1001"}}),
            json!({"op": "call_tool", "name": "crm_log_call",
                   "arguments": {"deal_id": "D-1001", "summary": "e2e: walked through the renewal"}}),
            json!({"op": "call_tool", "name": "crm_get_deal", "arguments": {"deal_id": "D-2001"}}),
            json!({"op": "call_tool", "name": "billing_list_invoices", "arguments": {}}),
        ]),
        Persona::ProjectManager => steps.extend([
            json!({"op": "get_prompt", "name": "docs_status_update", "arguments": {"project": "atlas"}}),
            json!({"op": "read_resource", "uri": "docs://document/DOC-3"}),
        ]),
        Persona::Cfo | Persona::Ceo => {}
    }
    Value::Array(steps)
}

fn step<'a>(output: &'a Value, index: usize, op: &str) -> &'a Value {
    let step = &output["steps"][index];
    assert_eq!(step["op"], op, "step {index} of {output}");
    step
}

fn ok<'a>(output: &'a Value, index: usize, op: &str) -> &'a Value {
    let step = step(output, index, op);
    assert_eq!(step["ok"], true, "step {index} ({op}) failed: {step}");
    &step["result"]
}

fn first_text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Checks a `tools/list` result: exactly the persona's app tools, plus at
/// most three gateway builtins.
pub(crate) fn check_tool_names(who: &str, persona: Persona, tools: &Value) {
    check_app_tools(who, &expected_app_tools(persona), tools);
}

/// The gateway's own tools, beside the apps' (`accounts` only with
/// third-party MCP servers).
const GATEWAY_BUILTINS: [&str; 7] = [
    "find_tools",
    "whoami",
    "report_missing_capability",
    "list_cortex_tickets",
    "list_cortex_resources",
    "read_cortex_resource",
    "accounts",
];

/// Checks a `tools/list` result: exactly `expected` app tools (sorted),
/// plus nothing but the gateway's builtins.
pub(crate) fn check_app_tools(who: &str, expected: &[String], tools: &Value) {
    let mut names: Vec<String> = tools["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no tools array in {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect();
    names.sort();
    let app: Vec<String> = names.iter().filter(|n| is_app_tool(n)).cloned().collect();
    assert_eq!(app, expected, "{who}: app tools");
    let others: Vec<&String> = names
        .iter()
        .filter(|n| !is_app_tool(n) && !GATEWAY_BUILTINS.contains(&n.as_str()))
        .collect();
    assert!(
        others.is_empty(),
        "{who}: tools outside the persona table: {others:?}"
    );
}

/// Checks one client's output for one persona against the oracle.
pub(crate) fn check(client: &str, persona: Persona, output: &Value) {
    let who = format!("{client} as {}", persona.key());
    check_tool_names(&who, persona, ok(output, 0, "list_tools"));

    match persona {
        Persona::SalesRep => {
            let read = ok(output, 1, "call_tool");
            assert_eq!(read["isError"], false, "{who}: crm_get_deal D-1001: {read}");
            assert_eq!(read["structuredContent"]["id"], "D-1001", "{who}: {read}");
            assert_eq!(
                read["structuredContent"]["team"], "sales-north",
                "{who}: {read}"
            );

            let write = ok(output, 2, "call_tool");
            assert_eq!(write["isError"], false, "{who}: crm_log_call: {write}");
            assert_eq!(
                write["structuredContent"]["deal_id"], "D-1001",
                "{who}: {write}"
            );
            assert!(
                write["structuredContent"]["calls_logged"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 1,
                "{who}: {write}"
            );

            // The app's own rule: another team's deal, refused by the CRM.
            let acl = ok(output, 3, "call_tool");
            assert_eq!(acl["isError"], true, "{who}: crm_get_deal D-2001: {acl}");
            assert!(
                first_text(acl).starts_with("denied by crm: deal D-2001 belongs to sales-south"),
                "{who}: {acl}"
            );

            // The gateway's scope rule: a billing tool the token cannot reach.
            let scope = step(output, 4, "call_tool");
            let refused = scope["ok"] == false
                || (scope["result"]["isError"] == true
                    && first_text(&scope["result"]).contains("scope"));
            assert!(
                refused,
                "{who}: billing_list_invoices was not refused: {scope}"
            );
        }
        Persona::ProjectManager => {
            let prompt = ok(output, 1, "get_prompt");
            let text = prompt["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(
                text.contains("project atlas") && text.contains("docs_file_report"),
                "{who}: docs_status_update: {prompt}"
            );
            let resource = ok(output, 2, "read_resource");
            assert_eq!(
                resource["contents"][0]["uri"], "docs://document/DOC-3",
                "{who}: {resource}"
            );
            assert!(
                resource["contents"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("BI staffing"),
                "{who}: {resource}"
            );
        }
        Persona::Cfo | Persona::Ceo => {}
    }
}

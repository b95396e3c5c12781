//! The persona table of docs/architecture.md, checked tool by tool through the
//! gateway's `tools/list`, and the difference between a gateway scope
//! refusal and an app's own refusal.

use meridian::firm::Persona;
use serde_json::json;

use crate::support::{call, call_tool, mcp, names, start, text, tool_names};

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
/// The tracker's tools (a third-party MCP server): everyone has
/// `mcp:tracker:write`.
const TRACKER: [&str; 3] = [
    "tracker_create_issue",
    "tracker_list_issues",
    "tracker_whoami",
];
const STAFFING_READ: [&str; 4] = [
    "staffing_check_availability",
    "staffing_get_employee",
    "staffing_get_help",
    "staffing_list_hr_policies",
];

/// The app tools (prefixed) a persona must see, sorted.
fn expected(persona: Persona) -> Vec<String> {
    let groups: Vec<&[&str]> = match persona {
        Persona::SalesRep => vec![&CRM_READ, &CRM_WRITE, &TRACKER],
        Persona::ProjectManager => vec![&DOCS_READ, &DOCS_WRITE, &CRM_READ, &TRACKER],
        Persona::Cfo => vec![&BILLING_READ, &BILLING_WRITE, &CRM_READ, &TRACKER],
        Persona::Ceo => vec![
            &CRM_READ,
            &DOCS_READ,
            &BILLING_READ,
            &STAFFING_READ,
            &TRACKER,
        ],
    };
    let mut names: Vec<String> = groups.concat().into_iter().map(String::from).collect();
    names.sort();
    names
}

/// The gateway's own tools (`accounts` only with third-party MCP servers).
const GATEWAY_BUILTINS: [&str; 7] = [
    "find_tools",
    "whoami",
    "report_missing_capability",
    "list_cortex_tickets",
    "list_cortex_resources",
    "read_cortex_resource",
    "accounts",
];

fn is_app_tool(name: &str) -> bool {
    ["crm_", "docs_", "billing_", "staffing_", "tracker_"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[tokio::test]
async fn each_persona_sees_exactly_the_tools_of_the_table() {
    let running = start().await;
    let mut builtins_of_first: Option<Vec<String>> = None;
    for persona in Persona::ALL {
        let all = tool_names(&running, running.tokens.get(persona)).await;
        let (app_tools, builtins): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|n| is_app_tool(n));
        assert_eq!(app_tools, expected(persona), "{}", persona.key());
        // The rest belongs to the gateway itself: its builtins, the same for everyone.
        let extra: Vec<&String> = builtins
            .iter()
            .filter(|n| !GATEWAY_BUILTINS.contains(&n.as_str()))
            .collect();
        assert!(extra.is_empty(), "{}: extra tools {extra:?}", persona.key());
        let first = builtins_of_first.get_or_insert_with(|| builtins.clone());
        assert_eq!(*first, builtins, "{}: other builtins", persona.key());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn another_teams_deal_is_refused_by_the_crm_not_the_gateway() {
    let running = start().await;
    let rep = &running.tokens.sales_rep;
    let own = call_tool(&running, rep, "crm_get_deal", json!({"deal_id": "D-1001"})).await;
    assert_eq!(own["isError"], false, "{own}");
    assert_eq!(own["structuredContent"]["team"], "sales-north", "{own}");

    let other = call_tool(&running, rep, "crm_get_deal", json!({"deal_id": "D-2001"})).await;
    assert_eq!(other["isError"], true, "{other}");
    let message = text(&other);
    assert!(
        message.starts_with("denied by crm: deal D-2001 belongs to sales-south"),
        "{message}"
    );
    assert!(!message.contains("missing scope"), "{message}");

    let other = call_tool(
        &running,
        rep,
        "crm_log_call",
        json!({"deal_id": "D-2002", "summary": "hello"}),
    )
    .await;
    assert!(text(&other).starts_with("denied by crm:"), "{other}");
    running.shutdown().await;
}

#[tokio::test]
async fn the_ceo_reads_everywhere_and_writes_nowhere() {
    let running = start().await;
    let ceo = &running.tokens.ceo;
    let reads = [
        ("crm_list_deals", json!({})),
        ("crm_get_deal", json!({"deal_id": "D-2001"})),
        ("crm_search_accounts", json!({"query": "bank"})),
        ("docs_list_projects", json!({})),
        ("docs_search_documents", json!({"project": "cedar"})),
        ("billing_list_invoices", json!({"status": "overdue"})),
        (
            "billing_get_invoice",
            json!({"invoice_id": "INV-2026-0312"}),
        ),
        ("staffing_check_availability", json!({"skill": "cloud"})),
        ("staffing_get_employee", json!({"employee_id": "e-042"})),
        ("staffing_list_hr_policies", json!({})),
        ("crm_get_help", json!({})),
        ("docs_get_help", json!({"topic": "workflows"})),
        ("billing_get_help", json!({})),
        ("staffing_get_help", json!({})),
    ];
    for (tool, args) in reads {
        let result = call_tool(&running, ceo, tool, args).await;
        assert_eq!(result["isError"], false, "{tool}: {result}");
    }
    let writes = [
        ("crm_log_call", json!({"deal_id": "D-1001", "summary": "x"})),
        ("crm_draft_proposal", json!({"deal_id": "D-1002"})),
        (
            "docs_file_report",
            json!({"project": "atlas", "kind": "status", "title": "x", "body": "y"}),
        ),
        (
            "billing_record_payment",
            json!({"invoice_id": "INV-2026-0312", "amount_eur": 1}),
        ),
        (
            "billing_send_reminder",
            json!({"invoice_id": "INV-2026-0312"}),
        ),
        (
            "staffing_book_review",
            json!({"employee_id": "e-002", "date": "2026-12-14"}),
        ),
    ];
    let listed = tool_names(&running, ceo).await;
    for (tool, args) in writes {
        assert!(
            !listed.contains(&tool.to_string()),
            "{tool} is listed for the CEO"
        );
        let response = call(&running.url, ceo, tool, args).await;
        let refused_by_gateway = response.get("error").is_some()
            || (response["result"]["isError"] == true
                && text(&response["result"]).contains("scope"));
        assert!(refused_by_gateway, "{tool}: {response}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn docs_prompt_and_resource_template_work_end_to_end() {
    let running = start().await;
    let (url, pm) = (
        running.url.as_str(),
        running.tokens.project_manager.as_str(),
    );
    let prompts = mcp(url, pm, "prompts/list", json!({}), None).await;
    assert_eq!(
        names(&prompts, "prompts"),
        ["docs_status_update"],
        "{prompts}"
    );
    let name = "docs_status_update";
    let args = json!({"name": name, "arguments": {"project": "atlas"}});
    let prompt = mcp(url, pm, "prompts/get", args, Some(name)).await;
    let text = prompt["result"]["messages"][0]["content"]["text"].as_str();
    assert!(text.unwrap_or_default().contains("Atlas"), "{prompt}");
    // Another project's prompt is refused by the docs app.
    let args = json!({"name": name, "arguments": {"project": "cedar"}});
    let refused = mcp(url, pm, "prompts/get", args, Some(name)).await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("denied by docs"),
        "{refused}"
    );

    let templates = mcp(url, pm, "resources/templates/list", json!({}), None).await;
    let template = &templates["result"]["resourceTemplates"][0]["uriTemplate"];
    assert_eq!(template, "docs://document/{id}", "{templates}");
    let uri = "docs://document/DOC-3";
    let read = mcp(url, pm, "resources/read", json!({"uri": uri}), Some(uri)).await;
    let text = read["result"]["contents"][0]["text"].as_str();
    assert!(text.unwrap_or_default().contains("BI staffing"), "{read}");
    running.shutdown().await;
}

//! Each app's own record rules, called directly on its contract endpoint
//! with real persona tokens (the gateway is not involved here); billing,
//! in assert mode, with the assertions the gateway would send it.

use meridian::{apps::App, firm::Persona};
use serde_json::{Value, json};

use crate::support::{backend, start};

fn ids(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("`{list}` in {body}"))
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_string())
        .collect()
}

/// An ACL refusal: 403 without `required`.
fn assert_acl(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert!(
        body.get("required").is_none(),
        "an ACL refusal, not a scope: {body}"
    );
    assert_eq!(body["code"], "acl_denied", "{body}");
}

#[tokio::test]
async fn crm_sales_rep_sees_and_edits_only_their_team() {
    let running = start().await;
    let crm = running.app_url(App::Crm);
    let rep = &running.tokens.sales_rep;

    let (status, body) = backend(crm, rep, "list_deals", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let deals = ids(&body, "deals");
    assert_eq!(deals, ["D-1001", "D-1002", "D-1003", "D-1004", "D-1005"]);

    let (status, body) = backend(crm, rep, "search_accounts", json!({"query": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        ids(&body, "accounts").iter().all(|a| a.starts_with("A-1")),
        "{body}"
    );

    let (status, body) = backend(crm, rep, "get_deal", json!({"deal_id": "D-2001"})).await;
    assert_acl(status, &body);
    assert!(
        body["error"].as_str().unwrap().contains("sales-south"),
        "{body}"
    );

    let (status, body) = backend(
        crm,
        rep,
        "log_call",
        json!({"deal_id": "D-2002", "summary": "hi"}),
    )
    .await;
    assert_acl(status, &body);

    let (status, body) = backend(
        crm,
        rep,
        "log_call",
        json!({"deal_id": "D-1001", "summary": "Agreed scope", "next_step": "SoW"}),
    )
    .await;
    assert_eq!(
        (status, body["calls_logged"].clone()),
        (200, json!(1)),
        "{body}"
    );
    let (_, deal) = backend(crm, rep, "get_deal", json!({"deal_id": "D-1001"})).await;
    assert_eq!(deal["calls"][0]["by"], "e-007", "{deal}");

    let (status, body) = backend(
        crm,
        rep,
        "draft_proposal",
        json!({"deal_id": "D-1003", "discount_percent": 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stage"], "proposal");
    assert_eq!(body["total_eur"], 144_000);

    // The CEO reads the whole pipeline but holds no write scope.
    let ceo = &running.tokens.ceo;
    let (status, body) = backend(crm, ceo, "list_deals", json!({})).await;
    assert_eq!((status, ids(&body, "deals").len()), (200, 10), "{body}");
    let (status, body) = backend(
        crm,
        ceo,
        "log_call",
        json!({"deal_id": "D-1001", "summary": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["required"].clone()),
        (403, json!("mcp:crm:write")),
        "{body}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn docs_open_only_staffed_projects_with_prompt_and_resource() {
    let running = start().await;
    let docs = running.app_url(App::Docs);
    let pm = &running.tokens.project_manager;

    let (status, body) = backend(docs, pm, "list_projects", json!({})).await;
    assert_eq!(
        (status, ids(&body, "projects")),
        (200, vec!["atlas".to_string(), "beacon".to_string()]),
        "{body}"
    );

    let (status, body) = backend(docs, pm, "search_documents", json!({"project": "cedar"})).await;
    assert_acl(status, &body);
    let (status, body) = backend(
        docs,
        pm,
        "read_resource",
        json!({"uri": "docs://document/DOC-6"}),
    )
    .await;
    assert_acl(status, &body);
    let (status, body) = backend(
        docs,
        pm,
        "get_prompt",
        json!({"name": "status_update", "arguments": {"project": "cedar"}}),
    )
    .await;
    assert_acl(status, &body);

    let (status, body) = backend(
        docs,
        pm,
        "read_resource",
        json!({"uri": "docs://document/DOC-2"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Weekly status"),
        "{body}"
    );
    let (status, body) = backend(
        docs,
        pm,
        "get_prompt",
        json!({"name": "status_update", "arguments": {"project": "atlas"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("docs_file_report")
    );

    let (status, filed) = backend(
        docs,
        pm,
        "file_report",
        json!({"project": "atlas", "kind": "status", "title": "Week 48", "body": "All green."}),
    )
    .await;
    assert_eq!(status, 200, "{filed}");
    let (status, body) = backend(docs, pm, "read_resource", json!({"uri": filed["uri"]})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("All green.")
    );
    let (status, body) = backend(
        docs,
        pm,
        "file_report",
        json!({"project": "cedar", "kind": "risk", "title": "x", "body": "y"}),
    )
    .await;
    assert_acl(status, &body);

    // The CEO reads every project (oversight) but cannot file.
    let ceo = &running.tokens.ceo;
    let (status, body) = backend(docs, ceo, "search_documents", json!({"project": "cedar"})).await;
    assert_eq!((status, ids(&body, "documents").len()), (200, 2), "{body}");
    let (status, body) = backend(
        docs,
        ceo,
        "file_report",
        json!({"project": "atlas", "kind": "status", "title": "x", "body": "y"}),
    )
    .await;
    assert_eq!(
        (status, body["required"].clone()),
        (403, json!("mcp:docs:write")),
        "{body}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn billing_finance_writes_others_see_their_projects_or_nothing() {
    let running = start().await;
    let billing = running.app_url(App::Billing);
    let cfo = &running.assertion(App::Billing, Persona::Cfo);

    let (status, body) = backend(billing, cfo, "list_invoices", json!({})).await;
    assert_eq!((status, ids(&body, "invoices").len()), (200, 14), "{body}");
    let (status, body) = backend(
        billing,
        cfo,
        "record_payment",
        json!({"invoice_id": "INV-2026-0317", "amount_eur": 44_000}),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("paid")),
        "{body}"
    );
    let (status, body) = backend(
        billing,
        cfo,
        "send_reminder",
        json!({"invoice_id": "INV-2026-0309"}),
    )
    .await;
    assert_eq!(
        (status, body["reminders_sent"].clone()),
        (200, json!(1)),
        "{body}"
    );

    // Without a billing scope: nothing.
    let (status, body) = backend(
        billing,
        &running.assertion(App::Billing, Persona::ProjectManager),
        "list_invoices",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["required"].clone()),
        (403, json!("mcp:billing:read")),
        "{body}"
    );
    // A project manager whose token allows billing reads sees their projects only.
    let pm_reader = running
        .gateway_minter()
        .token(running.app_audience(App::Billing))
        .sub(Persona::ProjectManager.employee_id())
        .role("project_manager")
        .scopes(["mcp:billing:read"])
        .mint();
    let (status, body) = backend(billing, &pm_reader, "list_invoices", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["project_manager"] == "e-098"),
        "{body}"
    );
    assert_eq!(ids(&body, "invoices").len(), 6, "{body}");
    let (status, body) = backend(
        billing,
        &pm_reader,
        "get_invoice",
        json!({"invoice_id": "INV-2026-0312"}),
    )
    .await;
    assert_acl(status, &body);
    // Write scope without a finance role: the app says no.
    let writer = running
        .gateway_minter()
        .token(running.app_audience(App::Billing))
        .sub("e-098")
        .role("project_manager")
        .scopes(["mcp:billing:write"])
        .mint();
    let (status, body) = backend(
        billing,
        &writer,
        "record_payment",
        json!({"invoice_id": "INV-2026-0288", "amount_eur": 1}),
    )
    .await;
    assert_acl(status, &body);

    let ceo = &running.assertion(App::Billing, Persona::Ceo);
    let (status, body) = backend(
        billing,
        ceo,
        "get_invoice",
        json!({"invoice_id": "INV-2026-0312"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = backend(
        billing,
        ceo,
        "send_reminder",
        json!({"invoice_id": "INV-2026-0312"}),
    )
    .await;
    assert_eq!(
        (status, body["required"].clone()),
        (403, json!("mcp:billing:write")),
        "{body}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn staffing_personal_data_only_for_self_and_hr() {
    let running = start().await;
    let staffing = running.app_url(App::Staffing);
    let ceo = &running.tokens.ceo;

    let (status, body) = backend(
        staffing,
        ceo,
        "get_employee",
        json!({"employee_id": "e-042"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["personal"].is_null(), "{body}");
    let (status, body) = backend(
        staffing,
        ceo,
        "get_employee",
        json!({"employee_id": "e-042", "include_personal": true}),
    )
    .await;
    assert_acl(status, &body);
    let (status, body) = backend(
        staffing,
        ceo,
        "get_employee",
        json!({"employee_id": "e-001", "include_personal": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["personal"]["salary_band"], "B6", "{body}");

    let (status, body) = backend(
        staffing,
        ceo,
        "check_availability",
        json!({"skill": "rust", "week": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["people"].as_array().unwrap().is_empty(), "{body}");
    assert!(body["people"][0].get("salary_band").is_none());
    let (status, body) =
        backend(staffing, ceo, "list_hr_policies", json!({"topic": "leave"})).await;
    assert_eq!(
        (status, body["policies"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{body}"
    );

    let hr = running
        .issuer()
        .token(&running.url)
        .sub("e-115")
        .role("hr")
        .scopes(["mcp:staffing:write"])
        .mint();
    let (status, body) = backend(
        staffing,
        &hr,
        "get_employee",
        json!({"employee_id": "e-042", "include_personal": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["personal"]["phone"].is_string(), "{body}");
    let (status, body) = backend(
        staffing,
        &hr,
        "book_review",
        json!({"employee_id": "e-042", "date": "2026-12-14"}),
    )
    .await;
    assert_eq!(
        (status, body["reviewer"].clone()),
        (200, json!("e-004")),
        "{body}"
    );

    let consultant = running
        .issuer()
        .token(&running.url)
        .sub("e-050")
        .role("consultant")
        .scopes(["mcp:staffing:write"])
        .mint();
    let (status, body) = backend(
        staffing,
        &consultant,
        "book_review",
        json!({"employee_id": "e-042", "date": "2026-12-14"}),
    )
    .await;
    assert_acl(status, &body);
    running.shutdown().await;
}

#[tokio::test]
async fn every_app_has_help_and_a_snapshot() {
    let running = start().await;
    for app in App::ALL {
        let url = running.app_url(app);
        let ceo = if app == App::ASSERTED {
            running.assertion(app, Persona::Ceo)
        } else {
            running.tokens.ceo.clone()
        };
        let (status, help) = backend(url, &ceo, "get_help", json!({})).await;
        assert_eq!(status, 200, "{app:?}: {help}");
        for topic in ["overview", "concepts", "workflows", "examples"] {
            assert!(
                help.get(topic).is_some(),
                "{app:?} help lacks {topic}: {help}"
            );
        }
        let (status, snapshot) = backend(url, &ceo, "get_snapshot", json!({})).await;
        assert_eq!(status, 200, "{app:?}: {snapshot}");
        assert_eq!(snapshot["backend"], app.id());
        assert_eq!(
            snapshot["headline"].as_array().map(Vec::len),
            Some(3),
            "{snapshot}"
        );
    }
    running.shutdown().await;
}

//! The agents' feedback loop and the gateway's self-description: the
//! `report_missing_capability` / `list_cortex_tickets` builtins, the signed
//! webhook for blocking tickets, the resource builtins with
//! `cortex://architecture`, `instructions`, `serverInfo` and the server
//! card.

use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use cortex_gateway::config::GatewayConfig;
use serde_json::{Value, json};

use crate::{
    client::Client,
    support::{Options, World},
};

const SECRET: &str = "webhook-secret-0123456789";

async fn world(more: impl FnOnce(&mut GatewayConfig) + Send + 'static) -> World {
    World::start_with(Options {
        configure: Some(Box::new(move |c: &mut GatewayConfig| {
            c.controls.rate_limit_per_minute = 0;
            more(c);
        })),
        ..Options::default()
    })
    .await
}

fn report(what: &str, severity: &str) -> Value {
    json!({
        "whatIWanted": what,
        "userIntent": "close the quarter",
        "severity": severity,
        "contextTool": "crm_search_accounts",
    })
}

#[tokio::test]
async fn the_same_need_is_one_ticket_and_each_caller_lists_their_own() {
    let w = world(|_| {}).await;
    let mut ana = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let mut bob = Client::modern(&w.url, &w.token("bob", &["mcp:crm:read"]));
    let mut eve = Client::modern(&w.url, &w.token("eve", &["mcp:crm:read"]));
    let first = ana
        .call(
            "report_missing_capability",
            report("List invoices by DATE", "inconvenient"),
        )
        .await;
    assert_eq!(first["isError"], false, "{first}");
    let first = &first["structuredContent"];
    assert_eq!(first["deduplicated"], false);
    // The SDK's test CRM keeps no tickets: the gateway does.
    assert_eq!(first["heldBy"], "gateway");
    assert_eq!(first["backend"], "crm");
    assert!(
        first["ackMessage"]
            .as_str()
            .unwrap()
            .contains("list_cortex_tickets")
    );
    let again = bob
        .call(
            "report_missing_capability",
            report("list invoices, by date!", "inconvenient"),
        )
        .await;
    assert_eq!(again["structuredContent"]["deduplicated"], true, "{again}");
    assert_eq!(again["structuredContent"]["ticketId"], first["ticketId"]);
    // About another backend, the same words are another need.
    let mut other = report("list invoices by date", "nice_to_have");
    other["contextTool"] = json!("docs_search");
    let mut docs_reader = Client::modern(&w.url, &w.token("ana", &["mcp:docs:read"]));
    let r = docs_reader.call("report_missing_capability", other).await;
    assert_eq!(r["structuredContent"]["deduplicated"], false, "{r}");
    assert_eq!(r["structuredContent"]["backend"], "docs");

    let listed = ana.call("list_cortex_tickets", json!({})).await;
    let tickets = listed["structuredContent"]["tickets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tickets.len(), 2, "{listed}");
    let bobs = bob.call("list_cortex_tickets", json!({})).await;
    assert_eq!(
        bobs["structuredContent"]["tickets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{bobs}"
    );
    assert_eq!(
        bobs["structuredContent"]["tickets"][0]["ticketId"],
        first["ticketId"]
    );
    let eves = eve.call("list_cortex_tickets", json!({})).await;
    assert_eq!(eves["structuredContent"]["tickets"], json!([]), "{eves}");
    let filtered = ana
        .call("list_cortex_tickets", json!({"severity": "nice_to_have"}))
        .await;
    assert_eq!(
        filtered["structuredContent"]["tickets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_reports_get_a_tool_error_that_says_what_to_do() {
    let w = world(|_| {}).await;
    let mut c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let cases = [
        (json!({"whatIWanted": "x", "userIntent": "y"}), "severity"),
        (
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "urgent"}),
            "blocking",
        ),
        (
            json!({"userIntent": "y", "severity": "blocking"}),
            "whatIWanted",
        ),
        (
            json!({"whatIWanted": "x".repeat(5000), "userIntent": "y", "severity": "blocking"}),
            "at most 2000",
        ),
        (
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "blocking", "backend": "nope"}),
            "cortex://architecture",
        ),
        (
            json!({"whatIWanted": "x", "userIntent": "y", "severity": "blocking",
                   "suggestedShape": {"blob": "z".repeat(20_000)}}),
            "suggestedShape",
        ),
    ];
    for (args, hint) in cases {
        let r = c.call("report_missing_capability", args).await;
        assert_eq!(r["isError"], true, "{r}");
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(hint), "{hint}: {text}");
    }
    let r = c.call("list_cortex_tickets", json!({"limit": 0})).await;
    assert_eq!(r["isError"], true, "{r}");
    let r = c.call("read_cortex_resource", json!({})).await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("cortex://architecture")
    );
}

/// What the webhook receiver saw: bodies and signature headers.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A loopback receiver that fails the first delivery (500) and accepts
/// the rest; `notify` fires on each delivery.
async fn receiver() -> (String, Seen, Arc<tokio::sync::Notify>) {
    let seen: Seen = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let app = {
        let seen = seen.clone();
        let notify = notify.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let seen = seen.clone();
                    let notify = notify.clone();
                    async move {
                        let sig = headers
                            .get("cortex-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push((sig, body.to_vec()));
                            s.len()
                        };
                        notify.notify_one();
                        if n == 1 {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            axum::http::StatusCode::NO_CONTENT
                        }
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, seen, notify)
}

#[tokio::test]
async fn a_blocking_ticket_is_posted_signed_and_retried_once() {
    let (url, seen, notify) = receiver().await;
    let w = world(move |c| {
        c.agent.feedback_webhook_url = Some(url);
        c.agent.feedback_webhook_secret = Some(SECRET.into());
    })
    .await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let mut c = Client::modern(&w.url, &token);
    // Not blocking: no delivery.
    let r = c
        .call(
            "report_missing_capability",
            report("export to excel", "nice_to_have"),
        )
        .await;
    assert_eq!(r["isError"], false, "{r}");
    let r = c
        .call(
            "report_missing_capability",
            report("merge two accounts", "blocking"),
        )
        .await;
    let id = r["structuredContent"]["ticketId"]
        .as_str()
        .unwrap()
        .to_string();
    // The first delivery fails; the retry arrives.
    while seen.lock().unwrap().len() < 2 {
        notify.notified().await;
    }
    // A repeat of the same need is not sent again.
    let r = c
        .call(
            "report_missing_capability",
            report("Merge two accounts.", "blocking"),
        )
        .await;
    assert_eq!(r["structuredContent"]["deduplicated"], true);
    let seen = seen.lock().unwrap().clone();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    for (sig, body) in &seen {
        let (t, v1) = sig
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .unwrap_or_else(|| panic!("signature header: {sig}"));
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        let expected: String = hmac::sign(&key, &signed)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            !text.contains(&token),
            "the caller's token left in a webhook"
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["ticketId"], id.as_str());
        assert_eq!(v["severity"], "blocking");
        assert_eq!(v["backend"], "crm");
    }
    assert_eq!(seen.len(), 2, "one failed delivery, one retry");
}

#[tokio::test]
async fn resources_builtins_show_the_callers_view_of_the_federation() {
    let w = world(|_| {}).await;
    let mut c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let listed = c.call("list_cortex_resources", json!({})).await;
    let s = &listed["structuredContent"];
    assert_eq!(
        s["resources"][0]["uri"], "cortex://architecture",
        "{listed}"
    );
    let r = c
        .call(
            "read_cortex_resource",
            json!({"uri": "cortex://architecture"}),
        )
        .await;
    assert_eq!(r["isError"], false, "{r}");
    let text = r["structuredContent"]["contents"][0]["text"]
        .as_str()
        .unwrap();
    let arch: Value = serde_json::from_str(text).unwrap();
    let ids: Vec<&str> = arch["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["crm", "docs"], "{arch}");
    assert_eq!(arch["backends"][0]["health"], "up");
    assert!(arch["backends"][1]["yourTools"] == 0, "{arch}");
    let tools: Vec<&str> = arch["you"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tools.contains(&"crm_search_accounts"), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("docs_")), "{tools:?}");
    assert_eq!(arch["you"]["sub"], "ana");
    assert!(
        arch["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["scope"] == "mcp:crm:read" && s["held"] == true),
        "{arch}"
    );
    // A URI no template matches: a tool error pointing at the list.
    let r = c
        .call("read_cortex_resource", json!({"uri": "nope://x"}))
        .await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("list_cortex_resources")
    );
}

#[tokio::test]
async fn instructions_server_info_and_the_server_card_follow_the_configuration() {
    let w = world(|c| {
        c.agent.instructions = Some("Acme's gateway: ask #platform for help.".into());
        c.agent.icon_url = Some("https://acme.example/icon.png".into());
        c.agent.website_url = Some("https://acme.example/cortex".into());
    })
    .await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let legacy = Client::legacy(&w.url, &token, "2025-11-25").await;
    let init = legacy
        .post_raw(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "it", "version": "0"}}}),
            &[],
        )
        .await
        .body;
    let result = &init["result"];
    let text = result["instructions"].as_str().unwrap();
    assert!(text.starts_with("Acme's gateway"), "{text}");
    assert!(text.contains("report_missing_capability"), "{text}");
    assert_eq!(
        result["serverInfo"]["icons"][0]["src"],
        "https://acme.example/icon.png"
    );
    assert_eq!(
        result["serverInfo"]["websiteUrl"],
        "https://acme.example/cortex"
    );
    // Older revisions have no such fields.
    let old = Client::legacy(&w.url, &token, "2025-06-18").await;
    let init = old
        .post_raw(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "it", "version": "0"}}}),
            &[],
        )
        .await
        .body;
    assert!(
        init["result"]["serverInfo"].get("icons").is_none(),
        "{init}"
    );
    let mut modern = Client::modern(&w.url, &token);
    let discover = modern.ok("server/discover", json!({})).await;
    assert!(
        discover["instructions"]
            .as_str()
            .unwrap()
            .starts_with("Acme's gateway"),
        "{discover}"
    );
    let card: Value = reqwest::get(format!("{}/.well-known/mcp/server-card.json", w.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["remotes"][0]["url"], w.url.as_str(), "{card}");
    assert_eq!(card["remotes"][0]["type"], "streamable-http");
    assert_eq!(card["websiteUrl"], "https://acme.example/cortex");
    assert_eq!(card["icons"][0]["src"], "https://acme.example/icon.png");
    assert_eq!(card["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(card["name"], "1.0.0.127/mcp");
}

#[test]
fn a_webhook_to_a_remote_plaintext_url_stops_the_start() {
    let mut env: std::collections::HashMap<String, String> = [
        ("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp"),
        ("OAUTH_ISSUER", "https://sso.example.com"),
        ("CORTEX_TECHNICAL_TOKEN", "0123456789abcdef0123"),
        ("CORTEX_BACKENDS", "crm"),
        ("CORTEX_BACKEND_CRM_URL", "https://crm.example.com"),
        ("CORTEX_FEEDBACK_WEBHOOK_URL", "http://hooks.example.com/x"),
        ("CORTEX_FEEDBACK_WEBHOOK_SECRET", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let e = GatewayConfig::from_env_map(&env).unwrap_err();
    assert!(e.to_string().contains("CORTEX_FEEDBACK_WEBHOOK_URL"), "{e}");
    env.insert(
        "CORTEX_FEEDBACK_WEBHOOK_URL".into(),
        "https://hooks.example.com/x".into(),
    );
    env.remove("CORTEX_FEEDBACK_WEBHOOK_SECRET");
    let e = GatewayConfig::from_env_map(&env).unwrap_err();
    assert!(
        e.to_string().contains("CORTEX_FEEDBACK_WEBHOOK_SECRET"),
        "{e}"
    );
    env.insert("CORTEX_FEEDBACK_WEBHOOK_SECRET".into(), SECRET.into());
    let c = GatewayConfig::from_env_map(&env).unwrap();
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(!c.masked_toml().contains(SECRET));
}

/// A docs backend that keeps its own tickets: the report reaches it with
/// the caller's identity, and its tickets are listed to their author.
#[tokio::test]
async fn a_backend_that_keeps_tickets_gets_the_report_and_lists_them() {
    use cortex_backend::{
        Auth, Backend, ToolFn,
        contract::{Ticket, TicketList, TicketReceipt},
    };
    let w = world(|_| {}).await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let backend = {
        let seen = seen.clone();
        let listed = seen.clone();
        Backend::builder("docs")
            .auth(Auth::new(w.issuer.auth_config(&w.url, &[crate::support::TECH])).unwrap())
            .tool(
                ToolFn::new("search")
                    .scope("mcp:docs:read")
                    .description("Search documents by words.")
                    .handler(
                        |_ctx: cortex_backend::Ctx<()>, _a: crate::support::Query| async {
                            Ok(json!({"hits": []}))
                        },
                    ),
            )
            .tickets(
                move |ctx, report| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap()
                            .push((ctx.caller().sub.clone(), report.what_i_wanted.clone()));
                        Ok(TicketReceipt {
                            ticket_id: "DOCS-1".into(),
                            deduplicated: false,
                            ack_message: Some("docs team will look".into()),
                        })
                    }
                },
                move |ctx, _params| {
                    let listed = listed.clone();
                    async move {
                        let sub = ctx.caller().sub.clone();
                        let tickets = listed
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(s, _)| *s == sub)
                            .map(|(_, what)| Ticket {
                                ticket_id: "DOCS-1".into(),
                                status: "planned".into(),
                                severity: cortex_backend::contract::Severity::Blocking,
                                what_i_wanted: what.clone(),
                                user_intent: "u".into(),
                                created_at: None,
                            })
                            .collect();
                        Ok(TicketList { tickets })
                    }
                },
            )
            .build()
            .unwrap()
    };
    w.docs.replace(backend);
    w.gateway.refresh_now().await;
    let mut ana = Client::modern(&w.url, &w.token("ana", &["mcp:docs:read"]));
    let mut args = report("search by author", "blocking");
    args["contextTool"] = json!("docs_search");
    let r = ana.call("report_missing_capability", args).await;
    let s = &r["structuredContent"];
    assert_eq!(s["heldBy"], "backend", "{r}");
    assert_eq!(s["ticketId"], "DOCS-1");
    assert_eq!(s["ackMessage"], "docs team will look");
    assert_eq!(
        seen.lock().unwrap().clone(),
        [("ana".to_string(), "search by author".to_string())]
    );
    let listed = ana.call("list_cortex_tickets", json!({})).await;
    let tickets = listed["structuredContent"]["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 1, "{listed}");
    assert_eq!(tickets[0]["backend"], "docs");
    assert_eq!(tickets[0]["status"], "planned");
    // A caller without a docs scope never reaches the backend: the
    // gateway keeps that ticket.
    let mut eve = Client::modern(&w.url, &w.token("eve", &["mcp:crm:read"]));
    let mut args = report("search by author", "inconvenient");
    args["backend"] = json!("docs");
    let r = eve.call("report_missing_capability", args).await;
    assert_eq!(r["structuredContent"]["heldBy"], "gateway", "{r}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

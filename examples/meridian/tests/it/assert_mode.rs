//! The billing app runs in `assert` mode: it refuses a caller's own token,
//! even one the gateway accepts, and serves the assertions the gateway
//! signs for it.

use meridian::{apps::App, firm};
use serde_json::json;

use crate::{
    oauth::Flow,
    support::{self, call_tool, start},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asserted_app_refuses_a_forwarded_token_and_serves_the_gateways_assertions() {
    let running = start().await;
    // A real token: signed in at Meridian's authorization server as the
    // CFO, for the gateway's audience.
    let flow = Flow::new(running.auth_server().issuer());
    let client = flow.public_client("Assert-mode test").await;
    let (code, verifier) = flow.code(&client, &running.url, firm::CFO).await;
    let (status, tokens) = flow.exchange(&client, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let cfo = tokens["access_token"].as_str().expect("an access token");

    // Sent straight to billing, as a backend in forward mode would have
    // received it (and could replay it): refused.
    let billing = running.app_url(App::ASSERTED);
    let (status, body) = support::backend(billing, cfo, "list_invoices", json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("CORTEX_GATEWAY_AUDIENCE")),
        "{body}"
    );
    // The CRM, in forward mode, accepts that same token.
    let (status, body) =
        support::backend(running.app_url(App::Crm), cfo, "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");

    // Through the gateway the call works: billing receives an assertion.
    let invoices = call_tool(&running, cfo, "billing_list_invoices", json!({})).await;
    assert_ne!(invoices["isError"], json!(true), "{invoices}");
    assert!(!invoices["structuredContent"].is_null(), "{invoices}");

    // What each app saw: billing names the gateway as the actor (`act`),
    // the CRM saw the caller's own token, without one.
    let who = call_tool(&running, cfo, "whoami", json!({})).await;
    let backends = &who["structuredContent"]["backends"];
    let gateway = running.url.trim_end_matches("/mcp");
    assert_eq!(backends["billing"]["actor"], json!(gateway), "{who}");
    assert_eq!(backends["billing"]["sub"], json!(firm::CFO), "{who}");
    assert!(backends["crm"]["actor"].is_null(), "{who}");
    assert_eq!(backends["crm"]["sub"], json!(firm::CFO), "{who}");
    // What billing receives is worth nothing elsewhere: the CRM refuses
    // billing's assertion, and billing one minted for the CRM.
    let for_billing = running.assertion(App::ASSERTED, firm::Persona::Cfo);
    let (status, _) = support::backend(billing, &for_billing, "list_invoices", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) =
        support::backend(running.app_url(App::Crm), &for_billing, "whoami", json!({})).await;
    assert_eq!(status, 401, "{body}");
    let for_crm = running
        .gateway_minter()
        .token(running.app_audience(App::Crm))
        .sub(firm::CFO)
        .scopes(["mcp:billing:write"])
        .mint();
    let (status, body) = support::backend(billing, &for_crm, "list_invoices", json!({})).await;
    assert_eq!(status, 401, "{body}");
    running.shutdown().await;
}

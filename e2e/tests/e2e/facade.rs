//! The gateway's OAuth facade in front of a real authorization server,
//! oidc-provider (`oauth/idp.mjs`), configured in turn like Entra ID (no
//! registration, `resource` refused, `scp` and `api://` scopes, `oid`) and
//! like a generic OpenID Connect provider. The official TypeScript SDK's
//! own OAuth client (`clients/ts_oauth_generic.mjs`) finds the gateway's
//! metadata, registers there (Dynamic Client Registration, or a Client ID
//! Metadata Document served over https by a test authority), signs a user
//! in headlessly at the provider through the gateway, and calls a tool of
//! the fixture backend, which trusts only the tokens the gateway signs.

use std::time::Duration;

use e2e::{
    facade::{FacadeStack, Shape},
    fixture,
};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    meridian_oauth::{CA, document_host},
    support::{e2e_dir, node, run},
};

/// Any port matches the document's loopback redirect URI.
const CALLBACK: &str = "http://127.0.0.1:9/callback";

async fn stack(shape: Shape, dir: &tempfile::TempDir) -> FacadeStack {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    let ca = CertificateDer::from_pem_slice(CA).expect("the test CA");
    FacadeStack::start(&node(), shape, dir.path(), vec![ca.to_vec()])
        .await
        .expect("the facade stack starts")
}

/// Runs the SDK's client through `stack` with `plan` extras; its output.
async fn sign_in_and_call(stack: &FacadeStack, login: &str, extra: Value) -> Value {
    let mut plan = json!({"login": login, "redirect_uri": CALLBACK,
        "call": {"name": "test_simple_text", "arguments": {}}});
    if let (Some(plan), Some(extra)) = (plan.as_object_mut(), extra.as_object()) {
        plan.extend(extra.clone());
    }
    let mut command = Command::new(node());
    command
        .arg(e2e_dir().join("clients/ts_oauth_generic.mjs"))
        .arg(plan.to_string())
        .env("MCP_URL", stack.url())
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(120)).await;
    finished.assert_success("ts_oauth_generic.mjs");
    finished.json("ts_oauth_generic.mjs")
}

/// Checks what every facade sign-in shows: the SDK spoke to the gateway
/// only (metadata, registration when `registered`, token), got the scope
/// the fixture needs, and the tool answered.
fn check(who: &str, stack: &FacadeStack, output: &Value, registered: bool) {
    let origin = stack.url().trim_end_matches("/mcp");
    let trace: Vec<(String, String, u64)> = output["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|t| {
            (
                t["method"].as_str().unwrap_or_default().to_owned(),
                t["url"].as_str().unwrap_or_default().to_owned(),
                t["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        trace.iter().all(|(_, u, _)| u.starts_with(origin)),
        "{who}: the SDK spoke to someone besides the gateway: {trace:#?}"
    );
    let hit = |m: &str, path: &str, s: u64| {
        trace
            .iter()
            .any(|(tm, tu, ts)| tm == m && tu == &format!("{origin}{path}") && *ts == s)
    };
    assert!(
        hit("GET", "/.well-known/oauth-authorization-server", 200),
        "{who}: {trace:#?}"
    );
    assert_eq!(
        hit("POST", "/register", 201),
        registered,
        "{who}: {trace:#?}"
    );
    assert!(hit("POST", "/token", 200), "{who}: {trace:#?}");
    assert!(hit("POST", "/mcp", 200), "{who}: {trace:#?}");
    assert_eq!(output["grantedScope"], fixture::SCOPE, "{who}: {output}");
    assert!(
        output["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "test_simple_text")),
        "{who}: {output}"
    );
    assert_eq!(
        output["call"]["content"][0]["text"], "This is a simple text response for testing.",
        "{who}: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_signs_in_through_an_entra_shaped_provider() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let stack = stack(Shape::Entra, &dir).await;
    // Dynamic Client Registration at the gateway (Entra has none).
    let output = sign_in_and_call(&stack, "ana", json!({})).await;
    check("TypeScript SDK, DCR, Entra-shaped", &stack, &output, true);
    // A Client ID Metadata Document.
    let (host, fetches) = document_host().await;
    let document = format!("{host}/clients/typescript.json");
    let output = sign_in_and_call(&stack, "ana", json!({"cimd_url": document})).await;
    check("TypeScript SDK, CIMD, Entra-shaped", &stack, &output, false);
    assert_eq!(output["clientId"], document);
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_signs_in_through_a_generic_oidc_provider() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let stack = stack(Shape::Oidc, &dir).await;
    let output = sign_in_and_call(&stack, "bo", json!({})).await;
    check("TypeScript SDK, DCR, generic OIDC", &stack, &output, true);
    let (host, _) = document_host().await;
    let document = format!("{host}/clients/typescript.json");
    let output = sign_in_and_call(&stack, "bo", json!({"cimd_url": document})).await;
    check("TypeScript SDK, CIMD, generic OIDC", &stack, &output, false);
}

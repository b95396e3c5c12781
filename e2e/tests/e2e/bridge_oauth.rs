//! The stdio bridge signs in by itself: the official TypeScript SDK's
//! stdio client (`clients/ts_client.mjs`) starts `cortex-gateway stdio`
//! with no token against Meridian; the bridge registers at Meridian's
//! authorization server, prints the sign-in link on standard error, and a
//! headless Chromium follows it through the sign-in and consent pages to
//! the bridge's loopback listener. The client then lists the persona's
//! tools and calls one, and the tokens sit in the bridge's cache, private.

use std::time::Duration;

use meridian::firm::Persona;
use serde_json::{Value, json};
use tokio::{io::AsyncBufReadExt as _, process::Command};

use crate::{
    meridian::check_tool_names,
    meridian_oauth::{Browser, start},
    support::{cargo_bin, e2e_dir, node},
};

/// Guards against a hang only; the whole run takes a few seconds.
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_stdio_client_through_the_bridge_signs_in_with_no_token() {
    let running = start().await;
    let config = tempfile::tempdir().expect("a config dir");
    let browser = Browser::start().await;
    let plan = json!({"sdk": "v1", "sessions": [{"sign_in": true, "steps": [
        {"op": "list_tools"},
        {"op": "call_tool", "name": "crm_get_deal", "arguments": {"deal_id": "D-1001"}},
    ]}]});
    let mut command = Command::new(node());
    command
        .arg(e2e_dir().join("clients/ts_client.mjs"))
        .arg(plan.to_string())
        .env("MCP_URL", &running.url)
        .env(
            "MCP_STDIO_BRIDGE",
            cargo_bin("cortex-gateway", "cortex-gateway").await,
        )
        .env("XDG_CONFIG_HOME", config.path())
        // No browser of the machine's: the test's Chromium follows the link.
        .env("BROWSER", "true")
        .env_remove("CORTEX_TOKEN")
        .env_remove("CORTEX_BRIDGE_TOKEN")
        .current_dir(e2e_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut client = command.spawn().expect("node starts");

    // The bridge's standard error reaches the client's: the link is there.
    let mut stderr = tokio::io::BufReader::new(client.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let link = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("http") {
                return line;
            }
        }
        panic!("no sign-in link on standard error:\n{seen}");
    })
    .await
    .expect("a sign-in link in time");
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });

    browser.go(&link).await;
    assert!(
        browser.title().await.starts_with("Sign in"),
        "{}",
        browser.title().await
    );
    assert_eq!(browser.text("#client-name").await, "Cortex stdio bridge");
    browser
        .click(&format!("#person-{}", Persona::SalesRep.employee_id()))
        .await;
    assert!(
        browser.title().await.starts_with("Allow access"),
        "{}",
        browser.title().await
    );
    browser.click("#allow").await;
    assert_eq!(browser.text("h1").await, "Signed in");
    browser.quit().await;

    let output = tokio::time::timeout(LIMIT, client.wait_with_output())
        .await
        .expect("the client finishes")
        .expect("the client's output");
    let stderr = rest.await.unwrap_or_default();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON");
    let steps = &result["sessions"][0]["steps"];
    let who = "TypeScript SDK over the signed-in bridge";
    assert_eq!(steps[0]["ok"], true, "{who}: {result}");
    check_tool_names(who, Persona::SalesRep, &steps[0]["result"]);
    assert_eq!(steps[1]["ok"], true, "{who}: {result}");
    let deal = &steps[1]["result"];
    assert_eq!(deal["isError"], false, "{who}: {deal}");
    assert_eq!(
        deal["structuredContent"]["team"], "sales-north",
        "{who}: {deal}"
    );

    // The tokens are cached with mode 0600 and never shown.
    let files: Vec<_> = std::fs::read_dir(config.path().join("cortex"))
        .expect("the cache directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.to_string_lossy().contains("bridge-token-"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let metadata = std::fs::metadata(&files[0]).expect("the cache file");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let cached: Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read")).expect("JSON");
    let access = cached["access_token"].as_str().expect("an access token");
    assert!(
        !stdout.contains(access) && !stderr.contains(access) && !seen.contains(access),
        "the access token was written out"
    );
    running.shutdown().await;
}

//! The `meridian` binary itself: `--tokens-file` once ready, a working
//! `tools/list` with the written token, a clean stop on SIGTERM; and the
//! `app` subcommand serving one app from environment settings.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cortex_backend::testing::TestIssuer;
use serde_json::{Value, json};

use crate::support::{backend, mcp, names};

fn meridian() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
}

/// A child process killed if the test fails before stopping it.
struct KillOnDrop(Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    child.wait().expect("the process ends")
}

#[tokio::test]
async fn tokens_file_then_tools_list_then_clean_stop() {
    let path = std::env::temp_dir().join(format!("meridian-tokens-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = meridian()
        .args([
            "--port",
            "0",
            "--token-ttl",
            "5m",
            "--print-tokens",
            "--tokens-file",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("meridian starts");
    // The file appears only once the gateway's catalog is loaded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let file: Value = loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(value) = serde_json::from_str(&text)
        {
            break value;
        }
        assert!(Instant::now() < deadline, "no tokens file after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = file["url"].as_str().expect("url");
    let listed = mcp(
        url,
        file["tokens"]["cfo"].as_str().expect("cfo"),
        "tools/list",
        json!({}),
        None,
    )
    .await;
    let names = names(&listed, "tools");
    assert!(
        names.iter().any(|n| n == "billing_record_payment")
            && !names.iter().any(|n| n == "docs_file_report"),
        "{names:?}"
    );

    // `meridian revoke` reaches this run (by its port) and cuts the pasted token.
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp");
    let revoked = meridian()
        .args(["revoke", "cfo", "--port", port])
        .output()
        .expect("meridian revoke runs");
    let said = String::from_utf8_lossy(&revoked.stdout);
    assert!(
        revoked.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(said.contains("Claire Dubois (e-003)"), "{said}");
    let cfo = file["tokens"]["cfo"].as_str().expect("cfo");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = mcp_status(url, cfo).await;
        if listed == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the revoked token still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unknown = meridian()
        .args(["revoke", "nobody", "--port", port])
        .output()
        .expect("meridian revoke runs");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no person `nobody`"));

    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");
    assert!(
        !meridian::admin_file(port.parse().unwrap()).exists(),
        "the admin file is removed"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    assert!(out.contains("export SALES_REP='ey"), "{out}");
    assert!(
        out.contains("your client will open a browser to sign in"),
        "{out}"
    );
    assert!(out.contains("development only"), "{out}");
    assert!(out.contains("curl -s http://127.0.0.1:"), "{out}");
    assert!(out.contains("-H 'Mcp-Method: tools/list'"), "{out}");
    assert!(out.contains("Stopping"), "{out}");
    let _ = std::fs::remove_file(&path);
}

/// The HTTP status of a stateless `tools/list` through the gateway.
async fn mcp_status(url: &str, token: &str) -> u16 {
    let mut request = reqwest::Client::new().post(url).bearer_auth(token);
    for (k, v) in meridian::mcp::headers("tools/list", None) {
        request = request.header(k, v);
    }
    request
        .body(meridian::mcp::request(1, "tools/list", json!({})).to_string())
        .send()
        .await
        .expect("the gateway answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn without_print_tokens_the_banner_says_how_to_connect() {
    let mut child = meridian()
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("meridian starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = String::new();
    while !out.contains("Press Ctrl-C") {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).expect("a line") > 0, "{out}");
        out.push_str(&line);
    }
    assert!(terminate(&mut child).success());
    assert!(out.contains("MCP URL: http://127.0.0.1:"), "{out}");
    assert!(
        out.contains(
            "Add this URL to your MCP client; your client will open a browser to sign in."
        ),
        "{out}"
    );
    assert!(out.contains("/admin"), "{out}");
    // The tracker's URLs: its MCP server, its resource metadata, its own
    // authorization server.
    assert!(
        out.contains("/.well-known/oauth-protected-resource/mcp"),
        "{out}"
    );
    assert!(
        out.contains("Its own auth server:  http://127.0.0.1:"),
        "{out}"
    );
    assert!(
        !out.contains("export SALES_REP"),
        "tokens only with --print-tokens: {out}"
    );
    assert!(!out.contains("Bearer ey"), "{out}");
}

#[tokio::test]
async fn app_subcommand_serves_one_app_from_the_environment() {
    let issuer = TestIssuer::start().await.expect("issuer");
    let audience = "https://mcp.meridian.example/mcp";
    let mut child = meridian()
        .args(["app", "staffing", "--listen", "127.0.0.1:0"])
        .envs(issuer.env(audience))
        .env("CORTEX_TECHNICAL_TOKENS", "meridian-cli-technical-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("meridian app starts");
    // Kept open until the end: a closed pipe would break the app's next print.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first line");
    let url = first
        .trim()
        .rsplit(' ')
        .next()
        .expect("the URL")
        .to_string();
    assert!(url.ends_with("/api/cortex/backend"), "{first}");
    let token = issuer
        .token(audience)
        .sub("e-001")
        .role("ceo")
        .scopes(["mcp:staffing:read"])
        .mint();
    let (status, body) =
        backend(&url, &token, "list_hr_policies", json!({"topic": "remote"})).await;
    assert_eq!(
        (status, body["policies"][0]["title"].clone()),
        (200, json!("Remote work")),
        "{body}"
    );
    assert!(terminate(&mut child).success());
    drop(stdout);
}

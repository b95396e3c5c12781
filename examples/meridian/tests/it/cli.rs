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
        .args(["--port", "0", "--token-ttl", "5m", "--tokens-file"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
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

    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    assert!(out.contains("export SALES_REP='ey"), "{out}");
    assert!(out.contains("curl -s http://127.0.0.1:"), "{out}");
    assert!(out.contains("-H 'Mcp-Method: tools/list'"), "{out}");
    assert!(out.contains("Stopping"), "{out}");
    let _ = std::fs::remove_file(&path);
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

//! The MCP Inspector CLI against Meridian, in both `--protocol-era` modes:
//! listing and calling tools with an `Authorization` header.

use std::time::Duration;

use meridian::firm::Persona;
use tokio::{process::Command, task::JoinSet};

use crate::{
    meridian::{check_tool_names, start},
    support::{Finished, e2e_dir, node, node_script, run},
};

fn inspector_home() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cortex-e2e-inspector-{}", std::process::id()))
}

/// Runs `inspector --cli` with the sales rep's token; `extra` selects the
/// method. HOME points at a scratch folder: the Inspector keeps state there.
async fn inspector(url: String, token: String, era: &'static str, extra: Vec<String>) -> Finished {
    let home = inspector_home();
    std::fs::create_dir_all(&home).expect("inspector home");
    let mut command = Command::new(node());
    command
        .arg(node_script("inspector"))
        .args(["--cli", &url, "--transport", "http", "--header"])
        .arg(format!("Authorization: Bearer {token}"))
        .args(["--protocol-era", era, "--format", "json"])
        .args(extra)
        .env("HOME", &home)
        .current_dir(e2e_dir());
    run(command, Duration::from_secs(60)).await
}

fn call(tool: &str, args: &str) -> Vec<String> {
    [
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        "--tool-args-json",
        args,
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_lists_and_calls_in_both_eras() {
    let running = start().await;
    let token = running.tokens.get(Persona::SalesRep).to_owned();
    // One task per era, each running its invocations one after the other
    // (the gateway caps open notification streams per caller).
    let mut runs = JoinSet::new();
    for era in ["legacy", "modern"] {
        let (url, token) = (running.url.clone(), token.clone());
        runs.spawn(async move {
            let plans: [(&str, Vec<String>); 4] = [
                ("list", vec!["--method".into(), "tools/list".into()]),
                ("read", call("crm_get_deal", r#"{"deal_id":"D-1001"}"#)),
                ("acl", call("crm_get_deal", r#"{"deal_id":"D-2001"}"#)),
                ("scope", call("billing_list_invoices", "{}")),
            ];
            let mut done = Vec::new();
            for (what, extra) in plans {
                done.push((
                    era,
                    what,
                    inspector(url.clone(), token.clone(), era, extra).await,
                ));
            }
            done
        });
    }
    let mut finished_runs = Vec::new();
    while let Some(joined) = runs.join_next().await {
        finished_runs.extend(joined.expect("inspector task"));
    }
    for (era, what, finished) in finished_runs {
        let label = format!("inspector --protocol-era {era} ({what})");
        println!(
            "{label}: exit {:?} in {:.1?}",
            finished.status, finished.elapsed
        );
        match what {
            "list" => {
                finished.assert_success(&label);
                let out = finished.json(&label);
                check_tool_names(&label, Persona::SalesRep, &out["result"]);
            }
            "read" => {
                finished.assert_success(&label);
                let out = finished.json(&label);
                assert_eq!(
                    out["result"]["structuredContent"]["team"], "sales-north",
                    "{label}: {out}"
                );
                // Only the 2026-07-28 era stamps serverInfo into each result's _meta.
                let stamped =
                    out["result"]["_meta"]["io.modelcontextprotocol/serverInfo"].is_object();
                assert_eq!(stamped, era == "modern", "{label}: era not honoured: {out}");
            }
            "acl" => {
                assert_ne!(
                    finished.status,
                    Some(0),
                    "{label}: an ACL refusal must not exit 0"
                );
                let out = finished.json(&label);
                assert_eq!(out["result"]["isError"], true, "{label}: {out}");
                let text = out["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    text.starts_with("denied by crm: deal D-2001"),
                    "{label}: {out}"
                );
            }
            _ => {
                assert_ne!(
                    finished.status,
                    Some(0),
                    "{label}: the billing tool must be refused"
                );
                assert!(
                    finished.stderr.contains("tool_not_found"),
                    "{label}: expected the unlisted billing tool to be unknown: {}\n{}",
                    finished.stdout,
                    finished.stderr
                );
            }
        }
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(inspector_home());
}

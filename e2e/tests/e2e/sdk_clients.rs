//! The official TypeScript and Python SDK clients against Meridian, every
//! persona, in both MCP eras (`clients/ts_client.mjs`, `clients/py_client.py`).

use std::time::Duration;

use meridian::{Running, firm::Persona};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    meridian::{check, start, steps},
    support::{cargo_bin, e2e_dir, node, python, run},
};

/// Which client runs the plan.
#[derive(Debug, Clone, Copy)]
enum Client {
    /// `@modelcontextprotocol/sdk` (v1): initialize handshake only.
    TsV1,
    /// `@modelcontextprotocol/client` (v2) with `versionNegotiation`.
    TsV2,
    /// `mcp` (Python) with `mode`.
    Python,
}

/// How the client reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// Streamable HTTP, straight to the gateway.
    Http,
    /// stdio, through `cortex-gateway stdio --url …` (TypeScript only).
    StdioBridge,
}

/// Runs one plan (a session per persona) in one client process.
async fn run_client(client: Client, era: &str, running: &Running, transport: Transport) -> Value {
    let mut command = match client {
        Client::TsV1 | Client::TsV2 => {
            let mut c = Command::new(node());
            c.arg(e2e_dir().join("clients/ts_client.mjs"));
            c
        }
        Client::Python => {
            let mut c = Command::new(python());
            c.arg(e2e_dir().join("clients/py_client.py"));
            c
        }
    };
    let sdk = if matches!(client, Client::TsV1) {
        "v1"
    } else {
        "v2"
    };
    let sessions: Vec<Value> = Persona::ALL
        .iter()
        .map(|p| json!({"token": p.key(), "steps": steps(*p)}))
        .collect();
    let tokens: serde_json::Map<String, Value> = Persona::ALL
        .iter()
        .map(|p| (p.key().to_owned(), Value::from(running.tokens.get(*p))))
        .collect();
    let plan = json!({"sdk": sdk, "era": era, "sessions": sessions});
    if transport == Transport::StdioBridge {
        command.env(
            "MCP_STDIO_BRIDGE",
            cargo_bin("cortex-gateway", "cortex-gateway").await,
        );
    }
    command
        .arg(plan.to_string())
        .env("MCP_URL", &running.url)
        .env("MCP_TOKENS", Value::Object(tokens).to_string())
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(120)).await;
    println!(
        "{client:?} {era} over {transport:?}: {} personas in {:.1?}",
        Persona::ALL.len(),
        finished.elapsed
    );
    let what = format!("{client:?} ({era})");
    finished.assert_success(&what);
    finished.json(&what)
}

/// Runs every persona's plan with `client` at `era`; checks the negotiated
/// version and the oracle.
async fn every_persona(client: Client, era: &'static str, negotiated: &'static str) {
    every_persona_over(client, era, negotiated, Transport::Http).await;
}

async fn every_persona_over(
    client: Client,
    era: &'static str,
    negotiated: &'static str,
    transport: Transport,
) {
    let running: Running = start().await;
    let output = run_client(client, era, &running, transport).await;
    let label = format!("{client:?} {era} over {transport:?}");
    let sessions = output["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), Persona::ALL.len(), "{label}: {output}");
    for (persona, session) in Persona::ALL.into_iter().zip(&sessions) {
        assert_eq!(session["token"], persona.key(), "{label}: {session}");
        assert_eq!(
            session["protocolVersion"],
            negotiated,
            "{label} as {}: {session}",
            persona.key()
        );
        check(&label, persona, session);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_v1_2025_11_25() {
    every_persona(Client::TsV1, "legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_v2_2025_11_25() {
    every_persona(Client::TsV2, "legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_v2_2026_07_28() {
    every_persona(Client::TsV2, "2026-07-28", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_2025_11_25() {
    every_persona(Client::Python, "legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_2026_07_28() {
    every_persona(Client::Python, "2026-07-28", "2026-07-28").await;
}

/// A stdio-only client reaches the gateway through `cortex-gateway stdio`:
/// every persona sees what it sees over HTTP (the same oracle), with the
/// bridge carrying the token and the legacy session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_v1_over_the_stdio_bridge() {
    every_persona_over(Client::TsV1, "legacy", "2025-11-25", Transport::StdioBridge).await;
}

/// The same in 2026-07-28: the bridge mirrors `_meta`'s revision, the
/// method and the tool name into the headers that era requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_v2_2026_07_28_over_the_stdio_bridge() {
    every_persona_over(
        Client::TsV2,
        "2026-07-28",
        "2026-07-28",
        Transport::StdioBridge,
    )
    .await;
}

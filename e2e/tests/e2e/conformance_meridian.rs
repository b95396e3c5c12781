//! The official conformance suite's generic scenarios against Meridian as
//! its README starts it: the `meridian` binary with no environment of ours
//! and one flag its README gives for scripts, `--print-tokens` (it prints a
//! token per persona and changes nothing else), so the gateway runs on its
//! defaults at `http://127.0.0.1:3213/mcp`. Nothing is configured for the
//! suite.
//!
//! The suite sends no `Authorization` header, so `src/proxy.rs` sits in
//! front with a token Meridian printed (the CEO's), adding it and changing
//! nothing else. The proxy listens on the IPv6 loopback at the same port,
//! `[::1]:3213`, and the suite targets `http://[::1]:3213/mcp`: every
//! `Host` and `Origin` the suite sends names a loopback alias of
//! Meridian's own port, as a local client's would.

use std::{path::PathBuf, process::Stdio, time::Duration};

use e2e::proxy::BearerProxy;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::support::{Finished, cargo_bin, e2e_dir, node, node_script, run};

/// Meridian's default port (its README).
const PORT: u16 = 3213;

/// The suite's generic server scenarios, each run on its own with
/// `--scenario` (at the suite's default revision for the scenario,
/// 2025-11-25), and those still in the 2026-07-28 revision once more with
/// `--spec-version 2026-07-28`.
const SCENARIOS: [(&str, Option<&str>); 9] = [
    ("server-initialize", None),
    ("ping", None),
    ("tools-list", None),
    ("server-sse-multiple-streams", None),
    ("dns-rebinding-protection", None),
    ("server-session-lifecycle", None),
    ("tools-list", Some("2026-07-28")),
    ("server-sse-multiple-streams", Some("2026-07-28")),
    ("dns-rebinding-protection", Some("2026-07-28")),
];

/// Builds the `meridian` binary the way `cargo run -p meridian` does and
/// returns its path.
async fn meridian_binary() -> PathBuf {
    cargo_bin("meridian", "meridian").await
}

/// Holds an exclusive lock on a file named after the port, so e2e runs
/// of several checkouts on one machine take turns on port 3213.
fn lock_port() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("cortex-e2e-port-{PORT}.lock"));
    let file = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}

/// Meridian, started as its README says, and the CEO token it printed.
struct Meridian {
    child: Child,
    token: String,
}

async fn start_meridian() -> Meridian {
    let binary = meridian_binary().await;
    let mut child = Command::new(&binary)
        .arg("--print-tokens")
        // The README's command sets nothing; a variable of the caller's
        // must not change what runs.
        .env_remove("MERIDIAN_PORT")
        .env_remove("MERIDIAN_PRINT_TOKENS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut token = None;
    let mut banner = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("export CEO='") {
                token = rest.strip_suffix('\'').map(String::from);
            } else if !line.starts_with("export ") {
                banner.push(line.clone());
            }
            if line.starts_with("Press Ctrl-C to stop") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        let _ = child.start_kill();
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut stderr).await;
        }
        panic!(
            "meridian did not come up (is port {PORT} taken?):\n{}\n{stderr}",
            banner.join("\n")
        );
    }
    assert!(
        banner
            .iter()
            .any(|l| l.trim() == format!("MCP URL: http://127.0.0.1:{PORT}/mcp")),
        "meridian's banner does not show its default URL:\n{}",
        banner.join("\n")
    );
    // Audit lines keep coming on stdout: drain it so Meridian never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Meridian {
        child,
        token: token.expect("meridian --print-tokens printed `export CEO='...'`"),
    }
}

async fn scenario(url: &str, name: &str, spec_version: Option<&str>) -> Finished {
    let mut command = Command::new(node());
    command
        .arg(node_script("conformance"))
        .args(["server", "--url", url, "--scenario", name]);
    if let Some(version) = spec_version {
        command.args(["--spec-version", version]);
    }
    command.current_dir(e2e_dir());
    run(command, Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_scenarios_against_meridian_as_shipped() {
    let _port = tokio::task::spawn_blocking(lock_port)
        .await
        .expect("lock task");
    let mut meridian = start_meridian().await;
    let listener = tokio::net::TcpListener::bind(("::1", PORT))
        .await
        .unwrap_or_else(|e| {
            panic!("the proxy needs the IPv6 loopback [::1]:{PORT} (Meridian holds 127.0.0.1:{PORT}): {e}")
        });
    let proxy = BearerProxy::start(listener, ([127, 0, 0, 1], PORT).into(), &meridian.token)
        .expect("proxy starts");
    let url = format!("http://[::1]:{PORT}/mcp");

    let mut failed = Vec::new();
    for (name, spec_version) in SCENARIOS {
        let finished = scenario(&url, name, spec_version).await;
        let label = format!(
            "{name} ({})",
            spec_version.unwrap_or("the scenario's default revision")
        );
        let report = format!(
            "\nconformance --scenario {label} against meridian: exit {:?} in {:.1?}\n",
            finished.status, finished.elapsed
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
        if finished.status != Some(0) {
            failed.push(format!(
                "{label}:\n{}\n{}",
                finished.stdout.trim_end(),
                finished.stderr.trim_end()
            ));
        }
    }
    proxy.stop();
    let _ = meridian.child.kill().await;
    assert!(
        failed.is_empty(),
        "scenarios failing against `meridian` on its defaults:\n\n{}",
        failed.join("\n\n")
    );
}

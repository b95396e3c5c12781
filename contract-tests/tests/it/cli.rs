//! The `cortex-conformance` binary: exit codes, formats, and the issuer
//! state file shared by `issuer` and `check --issuer`.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};

use contract_tests::issuer_file::IssuerFile;
use cortex_backend::{Auth, auth::config_from_env};

use crate::{
    faults::{self, Fault},
    issuer,
    reference::{self, AUDIENCE, Shape, TECHNICAL},
};

const BIN: &str = env!("CARGO_BIN_EXE_cortex-conformance");

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "cortex-conformance-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// Runs the binary to completion off the async runtime.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(args)
            .env_remove("CORTEX_TECHNICAL_TOKEN")
            .env_remove("CORTEX_CONFORMANCE_USER_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .expect("run cortex-conformance")
    })
    .await
    .expect("join")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

#[tokio::test]
async fn list_prints_every_check() {
    let out = run(args(&["list"])).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for c in contract_tests::CHECKS {
        assert!(text.contains(c.id), "{} missing from:\n{text}", c.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_follow_the_outcome() {
    let issuer = issuer().await;
    let state = temp_path("state.json");
    IssuerFile {
        issuer: issuer.state(),
        audience: AUDIENCE.into(),
        technical_token: TECHNICAL.into(),
        gateway_audience: None,
    }
    .write(&state)
    .unwrap();
    let state_arg = state.display().to_string();

    let good = faults::start(issuer.clone(), Fault::None).await;
    let out = run(args(&[
        "check",
        &good.url,
        "--issuer",
        &state_arg,
        "--format",
        "junit",
        "--call-read-only",
    ]))
    .await;
    let junit = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{junit}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        junit.contains(r#"tests="48" failures="0" skipped="0""#),
        "{junit}"
    );

    let bad = faults::start(
        issuer.clone(),
        Fault::Accepts(cortex_backend::testing::BrokenToken::AlgNone),
    )
    .await;
    let out = run(args(&[
        "check", &bad.url, "--issuer", &state_arg, "--format", "json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["auth.alg-none"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(TECHNICAL),
        "the token leaked"
    );

    let out = run(args(&["check", &bad.url, "--technical-token", TECHNICAL])).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "without user tokens the alg-none check is skipped"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SKIP  auth.alg-none"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/api/cortex/backend", l.local_addr().unwrap())
    };
    let out = run(args(&["check", &closed, "--technical-token", TECHNICAL])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is the backend running"));

    let out = run(args(&["check", &good.url])).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no technical token is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--technical-token"));

    let out = run(args(&[
        "check",
        &good.url,
        "--issuer",
        "/nonexistent/state.json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cortex-conformance issuer"));

    let out = run(args(&["check"])).await;
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    let _ = std::fs::remove_file(&state);
}

/// Starts `cortex-conformance issuer` with `extra` arguments and reads the
/// settings it prints (`export NAME=VALUE`), once it listens.
async fn start_issuer(
    state: &str,
    extra: &[&str],
) -> (std::process::Child, BTreeMap<String, String>) {
    let mut child = Command::new(BIN)
        .args(["issuer", "--listen", "127.0.0.1:0", "--state-file", state])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start cortex-conformance issuer");
    let stdout = child.stdout.take().unwrap();
    // Readiness: the settings are printed once the issuer listens.
    let env = tokio::task::spawn_blocking(move || {
        let mut env = BTreeMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the issuer's output");
            if let Some((k, v)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|kv| kv.split_once('='))
            {
                env.insert(k.to_string(), v.to_string());
            }
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
        env
    })
    .await
    .unwrap();
    (child, env)
}

/// A backend started with exactly the settings the issuer printed.
async fn backend_from(env: &BTreeMap<String, String>) -> faults::Server {
    let config =
        config_from_env(|k| env.get(k).cloned()).expect("the printed settings are complete");
    let backend = reference::backend_with(Auth::new(config).unwrap(), Shape::default());
    faults::serve(axum::Router::new().merge(cortex_backend_axum::router(backend))).await
}

/// The whole out-of-process flow: `issuer` prints the settings, a backend
/// starts with them, `check --issuer` mints from the state file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_command_and_check_share_the_state_file() {
    let state = temp_path("issuer.json");
    let state_arg = state.display().to_string();
    let (mut child, env) = start_issuer(&state_arg, &[]).await;
    assert!(
        env["OAUTH_ISSUER"].starts_with("http://127.0.0.1:"),
        "{env:?}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds a private key");
    }

    let server = backend_from(&env).await;
    let out = run(args(&["check", &server.url, "--issuer", &state_arg])).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&state);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 failed"), "{text}");
    assert!(text.contains("PASS  auth.expired-token"), "{text}");
}

/// The same flow in gateway-assertion mode: `issuer --identity assert`
/// plays the gateway, the backend trusts it as `CORTEX_GATEWAY_ISSUER`, and
/// `check --identity assert` runs the `assert.*` checks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assert_identity_from_the_command_line() {
    let state = temp_path("gateway.json");
    let state_arg = state.display().to_string();
    let (mut child, env) = start_issuer(&state_arg, &["--identity", "assert"]).await;
    assert!(
        env["CORTEX_GATEWAY_ISSUER"].starts_with("http://127.0.0.1:"),
        "{env:?}"
    );
    assert!(!env.contains_key("OAUTH_ISSUER"), "{env:?}");
    assert_eq!(
        env["CORTEX_GATEWAY_AUDIENCE"],
        contract_tests::DEFAULT_GATEWAY_AUDIENCE
    );
    let server = backend_from(&env).await;
    let checked = run(args(&[
        "check",
        &server.url,
        "--issuer",
        &state_arg,
        "--identity",
        "assert",
    ]))
    .await;
    let forward = run(args(&["check", &server.url, "--issuer", &state_arg])).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&state);
    let text = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for id in [
        "auth.valid-token",
        "auth.bad-signature",
        "auth.hs256-public-key",
        "assert.without-act",
        "assert.idp-token",
        "assert.gateway-audience",
    ] {
        assert!(text.contains(&format!("PASS  {id}")), "{id}: {text}");
    }
    assert_eq!(forward.status.code(), Some(2));
    let err = String::from_utf8_lossy(&forward.stderr);
    assert!(err.contains("--identity assert"), "{err}");
}

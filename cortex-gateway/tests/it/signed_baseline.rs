//! The signed tool-integrity baseline: `cortex-gateway baseline keygen |
//! sign | verify | approve`, a gateway that signs its own saves, and one
//! that holds only the public key (verifies, never signs, takes up the
//! operator's new file at its next refresh). An unsigned, foreign-key or
//! altered file withholds every federated tool.

use std::{path::Path, process::Command};

use cortex_gateway::{
    IntegrityMode as Mode,
    config::{ControlsConfig, GatewayConfig},
};
use serde_json::{Value, json};

use crate::controls::{
    ADMIN, Running, assert_tool_refused, docs, listener, start, temp_dir, tool_names,
};

/// Runs `cortex-gateway baseline <args>`: exit status, stdout, stderr.
pub(crate) fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"))
        .env_clear()
        .env("RUST_LOG", "off")
        .arg("baseline")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new key pair in `dir`: the private key file and the public key PEM.
pub(crate) fn keygen(dir: &Path, name: &str) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let (code, out, err) = cli(&["keygen", "--out", private.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let public = out
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{out}");
    (private.to_str().unwrap().to_owned(), public)
}

fn federated(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| {
            ![
                "find_tools",
                "whoami",
                "report_missing_capability",
                "list_cortex_tickets",
                "list_cortex_resources",
                "read_cortex_resource",
            ]
            .contains(&n.as_str())
        })
        .collect()
}

#[tokio::test]
async fn keygen_writes_a_private_key_once_with_mode_0600() {
    let dir = temp_dir("keygen");
    let (private, public) = keygen(&dir, "operator");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let before = std::fs::read(&private).unwrap();
    let (code, _, err) = cli(&["keygen", "--out", &private]);
    assert_eq!(code, 1);
    assert!(err.contains("never overwritten"), "{err}");
    assert_eq!(std::fs::read(&private).unwrap(), before);
    assert!(!public.contains("PRIVATE"));
}

#[tokio::test]
async fn a_gateway_with_the_private_key_signs_its_saves_and_refuses_an_altered_file() {
    let dir = temp_dir("self-signed");
    let (private, public) = keygen(&dir, "gateway");
    let baseline = dir.join("tools.json");
    let controls = ControlsConfig {
        tool_integrity: Mode::Block,
        tool_baseline: Some(baseline.clone()),
        baseline_private_key_file: Some(private.clone().into()),
        ..ControlsConfig::default()
    };
    let (setup, mut first) = start(controls.clone()).await;
    let token = setup.token("alice");
    assert!(
        tool_names(&first.url, &token)
            .await
            .contains(&"docs_search".into())
    );
    first.stop().await;

    let (code, out, err) = cli(&[
        "verify",
        baseline.to_str().unwrap(),
        "--public-key",
        &public,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("trust level  self-signed"), "{out}");

    // Someone with write access approves a changed description by hand.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&baseline).unwrap()).unwrap();
    doc["approved"]["docs"]["search"]["description"] = json!("0000");
    std::fs::write(&baseline, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let (code, _, err) = cli(&[
        "verify",
        baseline.to_str().unwrap(),
        "--public-key",
        &public,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match"), "{err}");

    let second = Running::start(setup.config(controls.clone()), listener().await).await;
    let names = tool_names(&second.url, &token).await;
    assert!(federated(&names).is_empty(), "{names:?}");
    assert_tool_refused(&second.url, &token, "docs_search", "baseline").await;
    drop(second);

    // Stripping the signature does not help either.
    let mut unsigned = doc.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    unsigned.as_object_mut().unwrap().remove("trust");
    std::fs::write(&baseline, serde_json::to_vec_pretty(&unsigned).unwrap()).unwrap();
    let third = Running::start(setup.config(controls), listener().await).await;
    assert!(federated(&tool_names(&third.url, &token).await).is_empty());
}

#[tokio::test]
async fn with_only_the_public_key_approvals_are_signed_off_host() {
    let dir = temp_dir("verify-only");
    let (private, public) = keygen(&dir, "operator");
    let baseline = dir.join("tools.json");
    let proposed = dir.join("tools.json.proposed");
    let controls = ControlsConfig {
        tool_integrity: Mode::Block,
        tool_baseline: Some(baseline.clone()),
        baseline_public_key: Some(public.clone()),
        admin_secret: Some(ADMIN.into()),
        ..ControlsConfig::default()
    };
    // No signed baseline yet: nothing federated is served, and the
    // gateway proposes what it sees.
    let (setup, gw) = start(controls.clone()).await;
    let token = setup.token("alice");
    assert!(federated(&tool_names(&gw.url, &token).await).is_empty());
    assert!(!baseline.exists());
    assert!(proposed.exists(), "the gateway writes its proposal");

    // The operator signs the proposal elsewhere and puts it in place;
    // the gateway takes it up at its next refresh, without a restart.
    let (code, _, err) = cli(&[
        "sign",
        proposed.to_str().unwrap(),
        "--key",
        &private,
        "--out",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    gw.gateway.refresh_now().await;
    let names = tool_names(&gw.url, &token).await;
    assert!(names.contains(&"docs_search".into()), "{names:?}");
    let signed = std::fs::read(&baseline).unwrap();

    // A rug pull is quarantined; the gateway cannot approve it itself.
    setup.docs.replace(docs(
        &setup.issuer,
        &setup.url,
        "Search documents, then mail them out.",
    ));
    gw.gateway.refresh_now().await;
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );
    let r = reqwest::Client::new()
        .post(format!("{}/admin/tool-integrity", gw.base))
        .bearer_auth(ADMIN)
        .json(&json!({"tool": "docs_search"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(text.contains("cortex-gateway baseline approve"), "{text}");
    assert_eq!(std::fs::read(&baseline).unwrap(), signed, "never written");

    // Off-host: approve in the proposal, sign, put in place.
    let (code, out, err) = cli(&["approve", proposed.to_str().unwrap(), "docs_search"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("quarantined  0"), "{out}");
    let (code, _, err) = cli(&[
        "sign",
        proposed.to_str().unwrap(),
        "--key",
        &private,
        "--out",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    gw.gateway.refresh_now().await;
    assert!(
        tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );

    // A file signed by another key is refused at the next refresh.
    let (other, _) = keygen(&dir, "intruder");
    let (code, _, err) = cli(&["sign", baseline.to_str().unwrap(), "--key", &other]);
    assert_eq!(code, 0, "{err}");
    gw.gateway.refresh_now().await;
    assert!(federated(&tool_names(&gw.url, &token).await).is_empty());
}

#[test]
fn verify_reads_the_public_gateways_signed_format() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let file = fixtures.join("public-gateway-baseline.json");
    let key = fixtures.join("public-gateway-baseline.pub.pem");
    let (code, out, err) = cli(&[
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("public cortex-gateway"), "{out}");
    assert!(out.contains("approved     1"), "{out}");
    let (_, other) = keygen(&temp_dir("public-format"), "other");
    let (code, _, err) = cli(&["verify", file.to_str().unwrap(), "--public-key", &other]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_mismatched_key_pair_or_no_baseline_file_stops_the_start() {
    let dir = temp_dir("pair");
    let (private_a, public_a) = keygen(&dir, "a");
    let (_, public_b) = keygen(&dir, "b");
    let gateway = GatewayConfig::new(
        "https://mcp.example.com/mcp",
        "https://sso.example.com",
        "a-technical-token-of-32-characters",
    );
    let mut controls = ControlsConfig {
        tool_baseline: Some(dir.join("tools.json")),
        baseline_public_key: Some(public_b),
        baseline_private_key_file: Some(private_a.clone().into()),
        ..ControlsConfig::default()
    };
    let e = controls.validate(&gateway).unwrap_err();
    assert_eq!(e.variable, "CORTEX_BASELINE_PRIVATE_KEY_FILE", "{e}");
    controls.baseline_private_key_file = None;
    controls.tool_baseline = None;
    let e = controls.validate(&gateway).unwrap_err();
    assert_eq!(e.variable, "CORTEX_BASELINE_PUBLIC_KEY", "{e}");
    controls.baseline_public_key = Some("not a key".into());
    controls.tool_baseline = Some(dir.join("tools.json"));
    let e = controls.validate(&gateway).unwrap_err();
    assert_eq!(e.variable, "CORTEX_BASELINE_PUBLIC_KEY", "{e}");

    // Replicas on a shared store sign what they save; an off-host-signed
    // file is for one process.
    controls.tool_baseline = None;
    controls.store = "redis://127.0.0.1:6379".parse().unwrap();
    controls.baseline_public_key = Some(public_a.clone());
    let e = controls.validate(&gateway).unwrap_err();
    assert_eq!(e.variable, "CORTEX_BASELINE_PUBLIC_KEY", "{e}");
    assert!(
        e.problem.contains("CORTEX_BASELINE_PRIVATE_KEY_FILE"),
        "{e}"
    );
    controls.baseline_private_key_file = Some(private_a.clone().into());
    controls.validate(&gateway).unwrap();
}

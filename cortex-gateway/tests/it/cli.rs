//! The binary: `check-config` masks secrets; a bad configuration exits 2
//! naming the variable.

use std::process::Command;

pub(crate) fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    c.env_clear().env("RUST_LOG", "off");
    c
}

const SECRET: &str = "s3cret-technical-token-0123456789";

pub(crate) fn good_env(c: &mut Command) -> &mut Command {
    c.env("CORTEX_BACKENDS", "crm,docs")
        .env("CORTEX_BACKEND_CRM_URL", "https://crm.example.com")
        .env("CORTEX_BACKEND_DOCS_URL", "http://127.0.0.1:4002")
        .env("CORTEX_BACKEND_DOCS_PREFIX", "false")
        .env("CORTEX_BACKEND_DOCS_TIMEOUT_MS", "2500")
        .env("CORTEX_CANONICAL_URI", "https://mcp.example.com/mcp")
        .env("OAUTH_ISSUER", "https://sso.example.com")
        .env("CORTEX_TECHNICAL_TOKEN", SECRET)
}

#[test]
fn check_config_prints_the_resolved_configuration_masked() {
    let out = good_env(&mut gateway())
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("masked"));
    assert!(text.contains("timeout_ms = 2500"), "{text}");
    assert!(text.contains("prefix = false"), "{text}");
    // The printed TOML is a valid configuration file.
    let dir = std::env::temp_dir().join(format!("cortex-gateway-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, text.replace("[masked, 33 characters]", SECRET)).unwrap();
    let out = gateway()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let out = good_env(&mut gateway())
        .env("CORTEX_BACKEND_CRM_URL", "http://crm.example.com")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CORTEX_BACKEND_CRM_URL"), "{err}");
    assert!(
        err.contains("CORTEX_BACKEND_CRM_ALLOW_INSECURE_HTTP"),
        "{err}"
    );
    let out = gateway().arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CORTEX_CANONICAL_URI"));
}

pub(crate) struct Running(pub(crate) std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary's command serving the SDK's `crm` backend on a free port,
/// with tokens from a test issuer (not spawned).
pub(crate) struct CrmGateway {
    pub(crate) port: u16,
    pub(crate) url: String,
    pub(crate) issuer: cortex_backend::testing::TestIssuer,
    pub(crate) backend: crate::support::BackendServer,
}

impl CrmGateway {
    pub(crate) async fn new() -> Self {
        use crate::support::{BackendServer, crm};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
        let backend = BackendServer::start(crm(&issuer, &url)).await;
        Self {
            port,
            url,
            issuer,
            backend,
        }
    }

    /// `serve` with this configuration.
    pub(crate) fn command(&self) -> Command {
        let mut c = gateway();
        c.env("CORTEX_BACKENDS", "crm")
            .env("CORTEX_BACKEND_CRM_URL", &self.backend.url)
            .env("CORTEX_CANONICAL_URI", &self.url)
            .env("OAUTH_ISSUER", self.issuer.issuer())
            .env("OAUTH_JWKS_URL", self.issuer.jwks_url())
            .env("CORTEX_TECHNICAL_TOKEN", crate::support::TECH)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port));
        c
    }
}

/// Polls `/readyz` of the gateway binary on `port` until it answers 200
/// (at most 20 s).
pub(crate) async fn wait_ready(port: u16) {
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&ready).await
            && r.status() == 200
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_binary_serves_both_eras() {
    use crate::client::Client;
    let crm = CrmGateway::new().await;
    let (port, url, issuer) = (crm.port, crm.url.clone(), &crm.issuer);
    let _child = Running(crm.command().spawn().unwrap());
    wait_ready(port).await;
    let token = issuer
        .token(&url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .mint();
    let mut modern = Client::modern(&url, &token);
    assert!(
        modern
            .tool_names()
            .await
            .contains(&"crm_search_accounts".to_string())
    );
    let mut legacy = Client::legacy(&url, &token, "2025-11-25").await;
    let r = legacy
        .call("crm_search_accounts", serde_json::json!({"query": "a"}))
        .await;
    assert_eq!(r["structuredContent"]["caller"], "ana");
}

#[test]
fn a_bad_log_format_exits_2_naming_the_variable() {
    let out = good_env(&mut gateway())
        .env("CORTEX_LOG_FORMAT", "xml")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CORTEX_LOG_FORMAT"), "{err}");
    assert!(err.contains("`json`"), "{err}");
}

/// The gateway's log lines up to the one saying it listens, with
/// `CORTEX_LOG_FORMAT` set to `format` (unset for `None`).
async fn start_up_logs(format: Option<&str>) -> Vec<String> {
    use std::io::BufRead as _;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
    let mut command = gateway();
    command
        .env("RUST_LOG", "info")
        .env("CORTEX_BACKENDS", "crm")
        .env("CORTEX_BACKEND_CRM_URL", &backend)
        .env("CORTEX_CANONICAL_URI", "http://127.0.0.1:1/mcp")
        .env("OAUTH_ISSUER", issuer.issuer())
        .env("OAUTH_JWKS_URL", issuer.jwks_url())
        .env("CORTEX_TECHNICAL_TOKEN", SECRET)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .stderr(std::process::Stdio::piped());
    if let Some(format) = format {
        command.env("CORTEX_LOG_FORMAT", format);
    }
    let mut child = Running(command.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let last = line.contains("listening on");
            if lines.send(line).is_err() || last {
                break;
            }
        }
    });
    let mut read = Vec::new();
    while let Ok(line) = seen.recv_timeout(std::time::Duration::from_secs(30)) {
        let last = line.contains("listening on");
        read.push(line);
        if last {
            break;
        }
    }
    assert!(
        read.last().is_some_and(|l| l.contains("listening on")),
        "the gateway never said it listens: {read:?}"
    );
    read
}

#[tokio::test]
async fn logs_are_text_by_default_and_one_json_object_per_line_on_request() {
    for line in start_up_logs(Some("json")).await {
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"]["message"].is_string(), "{line}");
    }
    let text = start_up_logs(None).await;
    let listening = text.last().unwrap();
    assert!(listening.contains("INFO"), "{listening}");
    assert!(
        serde_json::from_str::<serde_json::Value>(listening).is_err(),
        "{listening}"
    );
}

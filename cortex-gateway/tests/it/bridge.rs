//! `cortex-gateway stdio`: the bridge's own errors reach the client as
//! JSON-RPC errors of the request they concern, saying what to do; a
//! 2026-07-28 request is cancelled by closing its stream. With no token
//! configured, the bridge binary signs in by MCP OAuth through the
//! gateway's facade and a scripted identity provider, and keeps, reuses,
//! refreshes and forgets its tokens. (The official clients through the
//! bridge: e2e `sdk_clients::*_over_the_stdio_bridge`.)

use cortex_gateway::bridge::{self, BridgeOptions, TokenSource};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::support::{World, idp};

/// A 2026-07-28 request `method` with `id`.
fn modern(id: u64, method: &str, params: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn fixed(token: &str) -> TokenSource {
    TokenSource::Fixed(std::sync::Arc::new(zeroize::Zeroizing::new(
        token.to_owned(),
    )))
}

/// Runs the bridge on `input` until it ends; every line it wrote.
async fn bridged(url: &str, token: TokenSource, input: String) -> Vec<Value> {
    let options = BridgeOptions::new(url, token).unwrap();
    let (output, mut read) = tokio::io::duplex(1 << 20);
    let input = tokio::io::BufReader::new(std::io::Cursor::new(input.into_bytes()));
    bridge::run(options, input, output).await.unwrap();
    let mut text = String::new();
    read.read_to_string(&mut text).await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_refused_token_is_an_error_of_that_request_naming_what_to_set() {
    let world = World::start().await;
    let lines = bridged(
        &world.url,
        fixed("not-a-token"),
        modern(1, "tools/list", json!({})) + "\n",
    )
    .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 1, "{lines:?}");
    let message = lines[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 401"), "{message}");
    assert!(message.contains("CORTEX_BRIDGE_TOKEN"), "{message}");
    assert!(!message.contains("not-a-token"), "{message}");
}

#[tokio::test]
async fn a_bad_line_gets_a_parse_error_and_the_next_line_is_served() {
    let world = World::start().await;
    let token = world.token("ann", &["mcp:crm:read", "mcp:docs:read"]);
    let input = format!(
        "this is not json\n\n[1,2]\n{}\n",
        modern(2, "tools/list", json!({}))
    );
    let lines = bridged(&world.url, fixed(&token), input).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for refused in &lines[..2] {
        assert_eq!(refused["error"]["code"], -32700, "{lines:?}");
        assert_eq!(refused["id"], Value::Null, "{lines:?}");
    }
    assert_eq!(lines[2]["id"], 2, "{lines:?}");
    let tools = lines[2]["result"]["tools"].as_array().unwrap();
    assert!(
        tools.iter().any(|t| t["name"] == "docs_search"),
        "{tools:?}"
    );
}

#[tokio::test]
async fn an_unreachable_gateway_is_an_error_of_each_request() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/mcp?secret=1");
    let input = modern(3, "tools/list", json!({})) + "\n" + &modern(4, "tools/list", json!({}));
    let mut lines = bridged(&url, TokenSource::None, input).await;
    lines.sort_by_key(|l| l["id"].as_u64());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, id) in lines.iter().zip([3, 4]) {
        assert_eq!(line["id"], id, "{lines:?}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains("cannot reach the gateway"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}

#[tokio::test]
async fn a_cancelled_2026_request_gets_no_answer() {
    let world = World::start().await;
    let token = world.token("ann", &["mcp:docs:read"]);
    let cancel = json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": 5, "reason": "the user gave up"},
    });
    let input = format!(
        "{}\n{cancel}\n{}\n",
        modern(
            5,
            "tools/call",
            json!({"name": "docs_slow_export", "arguments": {}})
        ),
        modern(6, "tools/list", json!({})),
    );
    let lines = bridged(&world.url, fixed(&token), input).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], 6, "{lines:?}");
}

#[test]
fn a_plaintext_url_to_a_remote_host_is_refused() {
    let refused = BridgeOptions::new("http://mcp.example.com/mcp", TokenSource::None).unwrap_err();
    assert!(refused.to_string().contains("https://"), "{refused}");
    assert!(BridgeOptions::new("https://mcp.example.com/mcp", TokenSource::None).is_ok());
    let debug = format!("{:?}", fixed("very-secret-token"));
    assert!(!debug.contains("very-secret"), "{debug}");
}

/// The bridge binary, running with its standard streams piped.
struct Running {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: tokio::sync::mpsc::UnboundedReceiver<String>,
    err: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read from standard output and standard error so far.
    seen: String,
}

/// Sends each line of `from` to a channel, from a thread.
fn lines_of(
    from: impl std::io::Read + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `cortex-gateway stdio --url <url> <args>` with its configuration in
/// `config`, no token configured and a browser that does nothing.
fn bridge_binary(url: &str, config: &std::path::Path, args: &[&str]) -> Running {
    use std::process::Stdio;
    let mut child = crate::cli::gateway()
        .env("XDG_CONFIG_HOME", config)
        .env("BROWSER", "true")
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["stdio", "--url", url])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines_of(child.stdout.take().unwrap());
    let err = lines_of(child.stderr.take().unwrap());
    Running {
        stdin: child.stdin.take(),
        child,
        out,
        err,
        seen: String::new(),
    }
}

impl Drop for Running {
    /// A failed test must not leave the bridge waiting for a sign-in.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn send(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line on standard error that is a URL: the sign-in link;
    /// panics if the bridge answers instead.
    async fn sign_in_link(&mut self) -> String {
        loop {
            tokio::select! {
                Some(line) = self.out.recv() => panic!("answered without a sign-in: {line}"),
                line = self.err.recv() => {
                    let line = line.expect("the bridge ended before a sign-in link");
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.starts_with("http") {
                        return line;
                    }
                }
            }
        }
    }

    /// The next message on standard output; panics if the bridge asks for
    /// a sign-in instead.
    async fn answer_without_sign_in(&mut self) -> Value {
        loop {
            tokio::select! {
                line = self.out.recv() => {
                    let line = line.expect("the bridge ended without answering");
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    return serde_json::from_str(&line).unwrap();
                }
                Some(line) = self.err.recv() => {
                    assert!(!line.starts_with("http"), "the bridge signed in again: {line}");
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
            }
        }
    }

    /// Closes standard input and waits: the exit status and everything the
    /// bridge wrote.
    async fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        while let Some(line) = self.out.recv().await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        while let Some(line) = self.err.recv().await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.seen))
    }
}

/// Follows the sign-in link as a browser would, through the gateway's
/// facade and the identity provider, to the bridge's loopback listener.
async fn follow(link: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut at = link.to_owned();
    for _ in 0..6 {
        let r = http.get(&at).send().await.unwrap();
        if r.status().is_redirection() {
            at = r.headers()["location"].to_str().unwrap().to_owned();
            continue;
        }
        assert!(at.starts_with("http://127.0.0.1:"), "{at}");
        assert_eq!(r.status(), 200, "{at}");
        return r.text().await.unwrap();
    }
    panic!("too many redirects from {link}");
}

/// The one cached token file under `config`, and its JSON.
fn cached(config: &std::path::Path) -> (std::path::PathBuf, Value) {
    let files: Vec<_> = std::fs::read_dir(config.join("cortex"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bridge-token-")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    (files[0].clone(), serde_json::from_str(&text).unwrap())
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs the bridge on one `tools/list` that must be answered from the
/// cache (no sign-in); the tools' names.
async fn list_from_cache(url: &str, config: &std::path::Path) -> Vec<String> {
    let mut bridge = bridge_binary(url, config, &[]);
    bridge.send(&modern(1, "tools/list", json!({})));
    let answer = bridge.answer_without_sign_in().await;
    let (status, _) = bridge.finish().await;
    assert!(status.success());
    tool_names(&answer)
}

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn with_no_token_the_bridge_signs_in_and_keeps_its_tokens_private() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let (idp, task) = idp::start_idp(true).await;
    idp.script.lock().unwrap().scp = "mcp:crm:read mcp:docs:read".into();
    let world = idp::world(
        &idp,
        task,
        cortex_gateway::config::FacadeProfile::Oidc,
        &dir,
        |_| {},
    )
    .await;

    // No token anywhere: the first request gets a 401, the bridge prints a
    // link on standard error, and the browser's return signs it in.
    let mut bridge = bridge_binary(&world.url, &config, &[]);
    bridge.send(&modern(1, "tools/list", json!({})));
    let link = bridge.sign_in_link().await;
    let asked = url::Url::parse(&link).unwrap();
    let query: std::collections::HashMap<_, _> = asked.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256", "{link}");
    assert_eq!(query["resource"], world.url, "{link}");
    assert!(
        query["redirect_uri"].starts_with("http://127.0.0.1:"),
        "{link}"
    );
    // The loopback listener turns away a callback with another state.
    let forged = reqwest::get(format!(
        "{}?code=forged&state=another",
        query["redirect_uri"]
    ))
    .await
    .unwrap();
    assert_eq!(forged.status(), 400);
    assert!(forged.text().await.unwrap().contains("Not this sign-in"));
    let page = follow(&link).await;
    assert!(page.contains("Signed in"), "{page}");
    let answer = bridge.answer_without_sign_in().await;
    assert!(
        tool_names(&answer)
            .iter()
            .any(|t| t == "crm_search_accounts"),
        "{answer}"
    );
    let (status, written) = bridge.finish().await;
    assert!(status.success(), "{written}");

    // The tokens are cached privately, and were never written out.
    let (file, token) = cached(&config);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&config.join("cortex")), 0o700);
    let access = token["access_token"].as_str().unwrap().to_owned();
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    assert!(!written.contains(&access), "{written}");
    assert!(!written.contains(&refresh), "{written}");
    assert_eq!(token["issuer"], world.base());
    assert_eq!(idp.script.lock().unwrap().authorize_seen.len(), 1);

    // A second run reuses the cache without a browser.
    let tools = list_from_cache(&world.url, &config).await;
    assert!(
        tools.iter().any(|t| t == "crm_search_accounts"),
        "{tools:?}"
    );

    // An expired access token is refreshed before use.
    let mut expired = token.clone();
    expired["expires_at"] = json!(1);
    std::fs::write(&file, expired.to_string()).unwrap();
    list_from_cache(&world.url, &config).await;
    let (_, renewed) = cached(&config);
    assert!(renewed["expires_at"].as_u64().unwrap() > 1, "{renewed}");
    assert_ne!(renewed["access_token"], token["access_token"]);

    // An access token the gateway refuses is refreshed once, on the 401.
    let mut refused = renewed.clone();
    refused["access_token"] = json!("an-access-token-the-gateway-never-issued");
    std::fs::write(&file, refused.to_string()).unwrap();
    list_from_cache(&world.url, &config).await;
    let (_, again) = cached(&config);
    assert_ne!(again["access_token"], refused["access_token"]);
    assert_eq!(idp.script.lock().unwrap().authorize_seen.len(), 1);

    // A refused refresh forgets the tokens and signs in again.
    idp.script.lock().unwrap().refuse_refresh = true;
    std::fs::write(&file, expired.to_string()).unwrap();
    let mut bridge = bridge_binary(&world.url, &config, &[]);
    bridge.send(&modern(2, "tools/list", json!({})));
    let link = bridge.sign_in_link().await;
    follow(&link).await;
    let answer = bridge.answer_without_sign_in().await;
    assert_eq!(answer["id"], 2, "{answer}");
    bridge.finish().await;
    assert_eq!(idp.script.lock().unwrap().authorize_seen.len(), 2);

    // A cache file other users may read is refused, saying how to fix it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, written) = bridge_binary(&world.url, &config, &[]).finish().await;
    assert_eq!(status.code(), Some(2), "{written}");
    assert!(written.contains("chmod 600"), "{written}");

    // `--logout` deletes it.
    let (status, written) = bridge_binary(&world.url, &config, &["--logout"])
        .finish()
        .await;
    assert!(status.success(), "{written}");
    assert!(written.contains("signed out"), "{written}");
    assert!(!file.exists());
}

/// Signs in once with `args`; the `client_id` the sign-in link carried.
async fn signed_in_as(url: &str, config: &std::path::Path, args: &[&str]) -> String {
    let mut bridge = bridge_binary(url, config, args);
    bridge.send(&modern(1, "tools/list", json!({})));
    let link = bridge.sign_in_link().await;
    follow(&link).await;
    let answer = bridge.answer_without_sign_in().await;
    assert!(answer.get("result").is_some(), "{answer}");
    let (status, written) = bridge.finish().await;
    assert!(status.success(), "{written}");
    url::Url::parse(&link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test]
async fn the_bridge_signs_in_as_a_given_client_or_a_metadata_document() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = idp::start_idp(true).await;
    idp.script.lock().unwrap().scp = "mcp:crm:read".into();
    let world = idp::world(
        &idp,
        task,
        cortex_gateway::config::FacadeProfile::Oidc,
        &dir,
        |_| {},
    )
    .await;
    let registrations = |config: &std::path::Path| {
        std::fs::read_dir(config.join("cortex"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("bridge-client-")
            })
            .count()
    };

    // A client metadata document, which the facade accepts: no registration.
    let document = format!("{}/bridge/client.json", idp.url);
    let config = dir.path().join("by-document");
    let used = signed_in_as(&world.url, &config, &["--client-metadata-url", &document]).await;
    assert_eq!(used, document);
    assert_eq!(registrations(&config), 0);

    // A client registered beforehand wins over both.
    let registered: Value = reqwest::Client::new()
        .post(format!("{}/register", world.base()))
        .json(&json!({"redirect_uris": ["http://127.0.0.1/callback"], "client_name": "pre"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let config = dir.path().join("by-id");
    let used = signed_in_as(
        &world.url,
        &config,
        &["--client-id", client_id, "--client-metadata-url", &document],
    )
    .await;
    assert_eq!(used, client_id);
    assert_eq!(registrations(&config), 0);

    // Neither: the bridge registers, once per authorization server.
    let config = dir.path().join("registered");
    let first = signed_in_as(&world.url, &config, &[]).await;
    assert_eq!(registrations(&config), 1);
    std::fs::remove_file(cached(&config).0).unwrap();
    let second = signed_in_as(&world.url, &config, &[]).await;
    assert_eq!(first, second, "the registration was not reused");
    // `--logout` forgets the registration with the sign-in.
    let (status, _) = bridge_binary(&world.url, &config, &["--logout"])
        .finish()
        .await;
    assert!(status.success());
    assert_eq!(registrations(&config), 0);
}

#[tokio::test]
async fn a_refused_sign_in_answers_every_request_that_waited_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (idp, task) = idp::start_idp(true).await;
    idp.script.lock().unwrap().authorize_error = Some("access_denied".into());
    let world = idp::world(
        &idp,
        task,
        cortex_gateway::config::FacadeProfile::Oidc,
        &dir,
        |_| {},
    )
    .await;
    let mut bridge = bridge_binary(&world.url, &dir.path().join("config"), &[]);
    bridge.send(&modern(1, "tools/list", json!({})));
    bridge.send(&modern(2, "tools/list", json!({})));
    let link = bridge.sign_in_link().await;
    let page = follow(&link).await;
    assert!(page.contains("Sign-in refused"), "{page}");
    // One browser trip for both: the second request gets the same error
    // instead of a second link.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = bridge.answer_without_sign_in().await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("access_denied"), "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    let (status, _) = bridge.finish().await;
    assert!(status.success());
    assert_eq!(idp.script.lock().unwrap().authorize_seen.len(), 1);
}

//! Issue 24 end to end: the gateway federates two third-party MCP servers
//! (`oauth/tracker.mjs`, the TypeScript SDK's `McpServer`, one keeping
//! sessions and one stateless), each with its own oidc-provider, and users
//! link their own accounts through the gateway's `/link` pages, driven
//! headlessly through the providers' login and consent forms. The agent
//! side is the official Rust SDK client (`rmcp`).

use std::{collections::HashMap, path::Path};

use e2e::{
    linking::{
        CATALOG_SUB, FIRST_KEY, GATEWAY_CLIENT_ID, GATEWAY_REDIRECT_URI, GATEWAY_SCOPES, LinkStack,
        VaultAt,
    },
    tracker::{Consented, headless_consent},
};
use serde_json::{Value, json};

use crate::{
    meridian_oauth::{Browser, screenshot_dir},
    pg_server::PgServer,
    rust_sdk::{self, Client, call_tool, text_json},
    support::{cargo_bin, code_pkce, http, node, run},
};

/// A gateway token for `login` (the gateway's own issuer, code + PKCE).
async fn gateway_token(stack: &LinkStack, login: &str) -> String {
    let response = code_pkce(&json!({
        "issuer": stack.issuer(),
        "client_id": GATEWAY_CLIENT_ID,
        "redirect_uri": GATEWAY_REDIRECT_URI,
        "resource": stack.url(),
        "scope": GATEWAY_SCOPES,
        "login": login,
    }))
    .await;
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token for {login}: {response}"))
        .to_owned()
}

/// `login` connected to the gateway (2025-11-25).
async fn agent(stack: &LinkStack, login: &str) -> Client {
    rust_sdk::connect(stack.url(), &gateway_token(stack, login).await, false).await
}

/// `login` connected to the gateway in the 2026-07-28 era
/// (`server/discover`, stateless).
async fn modern_agent(stack: &LinkStack, login: &str) -> Client {
    rust_sdk::connect(stack.url(), &gateway_token(stack, login).await, true).await
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// The link URL the `accounts` builtin gives `client` for `server`.
async fn link_url_from_accounts(client: &Client, server: &str) -> String {
    let listed = call_tool(client, "accounts", json!({"action": "list"})).await;
    let listed = if listed["structuredContent"].is_object() {
        listed["structuredContent"].clone()
    } else {
        text_json(&listed)
    };
    let entry = listed["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["server"] == server))
        .unwrap_or_else(|| panic!("no {server} in {listed}"));
    assert_eq!(entry["linked"], false, "{entry}");
    entry["linkUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("no linkUrl: {entry}"))
        .to_owned()
}

/// The link URL in a tool error's text.
fn link_url_in(result: &Value, stack: &LinkStack, server: &str) -> String {
    assert_eq!(result["isError"], true, "{result}");
    let prefix = format!("{}/link/{server}/start?ticket=", stack.origin());
    let text = text(result);
    let at = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link URL {prefix}... in {text:?}"));
    text[at..]
        .split(|c: char| c.is_whitespace() || c == ')' || c == '"')
        .next()
        .unwrap_or_default()
        .trim_end_matches(['.', ','])
        .to_owned()
}

/// Signs in at `server`'s provider as `login` from `link_url` and follows
/// the redirect to the gateway's callback; the callback's status and page.
async fn complete_link(
    stack: &LinkStack,
    link_url: &str,
    server: &str,
    login: &str,
) -> (u16, String) {
    let consented = headless_consent(&node(), link_url, login, &stack.callback_prefix(server))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    follow(&consented).await
}

/// Requests the callback the way the browser would, with its cookies.
async fn follow(consented: &Consented) -> (u16, String) {
    let (status, _, page) = http(
        "GET",
        &consented.callback,
        &[("cookie", &consented.cookie)],
        None,
    )
    .await;
    (status, page)
}

/// Links `client`'s account at `server` as `login`, from the `accounts`
/// builtin's link URL.
async fn link(stack: &LinkStack, client: &Client, server: &str, login: &str) {
    let url = link_url_from_accounts(client, server).await;
    let (status, page) = complete_link(stack, &url, server, login).await;
    assert_eq!(status, 200, "linking {login} at {server}: {page}");
    assert!(page.contains("Account linked"), "{page}");
}

/// Waits until `client` lists every tool in `names` (the catalog account
/// links first; its servers' tools then appear without a refresh period).
async fn wait_for_tools(client: &Client, names: &[&str]) {
    let mut listed = Vec::new();
    for _ in 0..100 {
        let tools = client.list_all_tools().await.expect("tools/list");
        listed = tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>();
        if names.iter().all(|n| listed.iter().any(|l| l == n)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{names:?} never listed; the last list: {listed:?}");
}

/// The stack, with the catalog account linked at both servers and their
/// tools listed.
async fn linked_stack(vault: VaultAt) -> LinkStack {
    let stack = LinkStack::start(&node(), vault)
        .await
        .unwrap_or_else(|e| panic!("the link stack did not start: {e:#}"));
    let catalog = agent(&stack, CATALOG_SUB).await;
    for server in ["tracker", "board"] {
        link(&stack, &catalog, server, "catalog-t").await;
    }
    wait_for_tools(
        &catalog,
        &["tracker_whoami", "board_whoami", "board_issue_counts"],
    )
    .await;
    stack
}

/// [`linked_stack`] with its SQLite vault in a temporary folder (kept as
/// long as the folder handle lives).
async fn sqlite_stack() -> (tempfile::TempDir, LinkStack) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let stack = linked_stack(VaultAt::Sqlite(dir.path().join("vault.db"))).await;
    (dir, stack)
}

/// Every token the servers' providers issued to `logins`.
async fn issued_tokens(stack: &LinkStack, logins: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for server in ["tracker", "board"] {
        for login in logins {
            all.extend(
                stack
                    .server(server)
                    .issued_tokens(login)
                    .await
                    .expect("tokens"),
            );
        }
    }
    all
}

/// Two users, two servers (stateful and stateless), each sees their own
/// account downstream; the vault's storage holds none of the tokens.
async fn two_users_link_and_each_calls_as_themselves(stack: &LinkStack) {
    let alice = agent(stack, "alice").await;
    // Bob's agent speaks the other era to the gateway; downstream the
    // gateway speaks what each server does.
    let bob = modern_agent(stack, "bob").await;
    for server in ["tracker", "board"] {
        let whoami = format!("{server}_whoami");
        // Unlinked: a tool error giving the link URL, which works.
        let refused = call_tool(&alice, &whoami, json!({})).await;
        let url = link_url_in(&refused, stack, server);
        let (status, page) = complete_link(stack, &url, server, "alice-t").await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Account linked"), "{page}");
        if server == "tracker" {
            // Signed in with `openid`: the ID token names the account.
            assert!(
                page.contains("<b>alice-t</b>"),
                "the page names the linked account: {page}"
            );
        }
        link(stack, &bob, server, "bob-t").await;

        let a = call_tool(&alice, &whoami, json!({})).await;
        assert_eq!(a["isError"], false, "{a}");
        assert_eq!(text_json(&a)["sub"], "alice-t", "{a}");
        let b = call_tool(&bob, &whoami, json!({})).await;
        assert_eq!(text_json(&b)["sub"], "bob-t", "{b}");
        // Writes and structured results pass through as the user.
        let created = call_tool(
            &alice,
            &format!("{server}_create_issue"),
            json!({"title": "Broken build"}),
        )
        .await;
        assert_eq!(text_json(&created)["state"], "open", "{created}");
        let counts = call_tool(&alice, &format!("{server}_issue_counts"), json!({})).await;
        assert_eq!(
            counts["structuredContent"],
            json!({"owner": "alice-t", "open": 1, "closed": 0}),
            "{counts}"
        );
        let counts = call_tool(&bob, &format!("{server}_issue_counts"), json!({})).await;
        assert_eq!(counts["structuredContent"]["owner"], "bob-t", "{counts}");
        assert_eq!(counts["structuredContent"]["open"], 0, "{counts}");
    }
}

/// The vault's SQLite files (the database and its journals).
fn sqlite_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = path.parent().expect("a folder");
    let name = path
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir(dir)
        .expect("the vault folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .map(|e| {
            let shown = e.path().display().to_string();
            (shown, std::fs::read(e.path()).expect("readable"))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The vault variables with `keys`, for the CLI and the library.
fn vault_env(stack: &LinkStack, keys: &str) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = stack
        .env()
        .iter()
        .filter(|(k, _)| k.starts_with("CORTEX_VAULT_") || *k == "CORTEX_DATABASE_URL")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("CORTEX_VAULT_KEYS".into(), keys.into());
    env
}

/// Whether the vault, opened with `keys` alone, reads `sub`'s grant at
/// `server`.
async fn readable(stack: &LinkStack, keys: &str, sub: &str, server: &str) -> Result<bool, String> {
    use cortex_gateway::vault::{Vault, VaultConfig};
    let env = vault_env(stack, keys);
    let config = VaultConfig::from_lookup(|k| env.get(k).cloned())
        .map_err(|e| e.to_string())?
        .expect("vault settings");
    let vault = Vault::open(&config).await.map_err(|e| e.to_string())?;
    vault
        .get(sub, server)
        .await
        .map(|g| g.is_some())
        .map_err(|e| e.to_string())
}

/// `cortex-gateway vault rotate` to a new first key keeps every grant
/// readable under that key alone.
async fn rotation_keeps_grants_readable(stack: &LinkStack) {
    const SECOND_KEY: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let only_new = SECOND_KEY;
    let both = format!("{SECOND_KEY},{}:{}", FIRST_KEY.0, FIRST_KEY.1);
    for sub in ["alice", "bob"] {
        let before = readable(stack, only_new, sub, "tracker").await;
        assert!(
            before.is_err(),
            "{sub}'s grant opened under a key never used: {before:?}"
        );
    }
    let binary = cargo_bin("cortex-gateway", "cortex-gateway").await;
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["vault", "rotate"])
        .env_clear()
        .envs(vault_env(stack, &both));
    let finished = run(command, std::time::Duration::from_secs(120)).await;
    finished.assert_success("cortex-gateway vault rotate");
    for sub in ["alice", "bob", CATALOG_SUB] {
        for server in ["tracker", "board"] {
            assert_eq!(
                readable(stack, only_new, sub, server).await,
                Ok(true),
                "{sub} at {server} after rotation ({})",
                finished.stdout
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_link_their_own_accounts_sqlite_vault() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("vault.db");
    let stack = linked_stack(VaultAt::Sqlite(path.clone())).await;
    two_users_link_and_each_calls_as_themselves(&stack).await;

    // No token the providers issued is in the vault's files, in any form
    // that matters: the raw string.
    let tokens = issued_tokens(&stack, &["alice-t", "bob-t", "catalog-t"]).await;
    assert!(
        tokens.len() >= 6,
        "access and refresh tokens were issued: {tokens:?}"
    );
    let files = sqlite_files(&path);
    assert!(
        !files.is_empty() && files.iter().any(|(_, b)| b.len() > 4096),
        "the vault has data"
    );
    for (file, bytes) in &files {
        for token in &tokens {
            assert!(!contains(bytes, token), "{file} holds a plaintext token");
        }
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("the vault file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the vault file is private: {mode:o}");
    }
    rotation_keeps_grants_readable(&stack).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_link_their_own_accounts_postgres_vault() {
    let pg = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("the PostgreSQL cluster");
    let stack = linked_stack(VaultAt::Postgres(pg.url("postgres"))).await;
    two_users_link_and_each_calls_as_themselves(&stack).await;

    // Every row of every table of ours, as text (binary columns in hex):
    // no token the providers issued, raw or hex-encoded.
    let tokens = issued_tokens(&stack, &["alice-t", "bob-t", "catalog-t"]).await;
    assert!(tokens.len() >= 6, "tokens were issued: {tokens:?}");
    let client = pg.client("postgres").await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("the tables");
    assert!(!tables.is_empty(), "the vault made its tables");
    let mut rows = 0;
    for table in &tables {
        let name: String = table.get(0);
        let query = format!("SELECT t::text FROM \"{}\" t", name.replace('"', "\"\""));
        for row in client.query(&query, &[]).await.expect("the rows") {
            let text: String = row.get(0);
            rows += 1;
            for token in &tokens {
                let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(
                    !text.contains(token.as_str()) && !text.contains(&hex),
                    "a row of {name} holds a plaintext token"
                );
            }
        }
    }
    assert!(rows >= 6, "the grants are rows: {rows}");
    rotation_keeps_grants_readable(&stack).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_callbacks_that_do_not_match_a_live_ticket_are_refused() {
    let (_dir, stack) = sqlite_stack().await;
    let carol = agent(&stack, "carol").await;
    let url = link_url_from_accounts(&carol, "tracker").await;
    let consented = headless_consent(&node(), &url, "carol-t", &stack.callback_prefix("tracker"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // A tampered state: one character changed.
    let tampered = {
        let mut parsed = url::Url::parse(&consented.callback).expect("callback URL");
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    let mut chars: Vec<char> = v.chars().collect();
                    let i = chars.len() / 2;
                    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
                    chars.into_iter().collect()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        parsed.to_string()
    };
    let (status, _, page) = http("GET", &tampered, &[("cookie", &consented.cookie)], None).await;
    assert_eq!(status, 400, "tampered state: {page}");
    // Without the browser-binding cookie (another browser).
    let (status, _, page) = http("GET", &consented.callback, &[], None).await;
    assert_eq!(status, 400, "no binding cookie: {page}");
    // The real one, once; then replayed.
    for (attempt, expected) in [("first", 200), ("replayed", 400)] {
        let (status, page) = follow(&consented).await;
        assert_eq!(status, expected, "{attempt} callback: {page}");
    }
    let whoami = call_tool(&carol, "tracker_whoami", json!({})).await;
    assert_eq!(text_json(&whoami)["sub"], "carol-t", "{whoami}");
    // A ticket is single-use: the redeemed link URL does not start again.
    let (status, _, page) = http("GET", &url, &[], None).await;
    assert_eq!(status, 400, "a redeemed ticket: {page}");
    stack.shutdown().await;
}

/// A link URL someone forwards: the person who opens it sees whose Cortex
/// account it links to and nothing happens before "Continue"; a Continue
/// posted from another site is refused, and the ticket stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_link_names_the_cortex_user_it_links_to() {
    let (_dir, stack) = sqlite_stack().await;
    let carol = agent(&stack, "carol").await;
    let url = link_url_from_accounts(&carol, "tracker").await;
    let (status, _, page) = http("GET", &url, &[], None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("to the Cortex user <b>carol"), "{page}");
    assert!(page.contains("close this page"), "{page}");
    let ticket = url.split_once("ticket=").expect("a ticket").1;
    let (status, _, page) = http(
        "POST",
        url.split('?').next().unwrap_or_default(),
        &[
            ("origin", "https://elsewhere.example"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(format!("ticket={ticket}")),
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let (status, page) = complete_link(&stack, &url, "tracker", "carol-t").await;
    assert_eq!(status, 200, "{page}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_at_the_provider_asks_to_link_again() {
    let (_dir, stack) = sqlite_stack().await;
    let dave = agent(&stack, "dave").await;
    link(&stack, &dave, "tracker", "dave-t").await;
    let whoami = call_tool(&dave, "tracker_whoami", json!({})).await;
    assert_eq!(text_json(&whoami)["sub"], "dave-t", "{whoami}");
    assert_eq!(
        stack
            .server("tracker")
            .revoke_account("dave-t")
            .await
            .expect("revoke"),
        1
    );
    let refused = call_tool(&dave, "tracker_whoami", json!({})).await;
    let url = link_url_in(&refused, &stack, "tracker");
    assert!(
        text(&refused).contains("again"),
        "asks to link again: {refused}"
    );
    // Linking again through that URL works.
    let (status, page) = complete_link(&stack, &url, "tracker", "dave-t").await;
    assert_eq!(status, 200, "{page}");
    let whoami = call_tool(&dave, "tracker_whoami", json!({})).await;
    assert_eq!(text_json(&whoami)["sub"], "dave-t", "{whoami}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_links_an_account() {
    let (_dir, stack) = sqlite_stack().await;
    let erin = agent(&stack, "erin").await;
    let url = link_url_from_accounts(&erin, "tracker").await;
    let browser = Browser::start().await;
    let shots = screenshot_dir();
    // The gateway's start page names the Cortex user the link is for and
    // waits for "Continue", which sends the browser to the tracker's sign-in.
    browser.go(&url).await;
    let confirm = browser.text("p").await;
    assert!(
        confirm.contains("to the Cortex user") && confirm.contains("erin"),
        "{confirm}"
    );
    browser.save_screenshot(&shots, "link-confirm.png").await;
    browser.click("button[type=submit]").await;
    browser.find("input[name=login]").await;
    browser.type_into("input[name=login]", "erin-t").await;
    browser
        .type_into("input[name=password]", "any-password")
        .await;
    browser.save_screenshot(&shots, "link-sign-in.png").await;
    browser.click("button[type=submit]").await;
    // The consent form (the lookup waits for it to load).
    browser.find("input[name=prompt][value=consent]").await;
    browser.save_screenshot(&shots, "link-consent.png").await;
    browser.click("button[type=submit]").await;
    // Back at the gateway's callback page.
    let mut title = String::new();
    for _ in 0..200 {
        title = browser.title().await;
        if title == "Account linked" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(title, "Account linked");
    let page = browser.text("p").await;
    assert!(
        page.contains("tracker") && page.contains("erin-t"),
        "{page}"
    );
    browser.save_screenshot(&shots, "link-linked.png").await;
    browser.quit().await;
    println!("screenshots in {}", shots.display());
    let whoami = call_tool(&erin, "tracker_whoami", json!({})).await;
    assert_eq!(text_json(&whoami)["sub"], "erin-t", "{whoami}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinking_revokes_the_grant_at_the_provider() {
    let (_dir, stack) = sqlite_stack().await;
    let frank = agent(&stack, "frank").await;
    link(&stack, &frank, "board", "frank-t").await;
    let whoami = call_tool(&frank, "board_whoami", json!({})).await;
    assert_eq!(text_json(&whoami)["sub"], "frank-t", "{whoami}");
    let board = stack.server("board");
    let tokens = board.issued_tokens("frank-t").await.expect("tokens");
    assert!(!tokens.is_empty(), "the board issued frank's tokens");
    // Each issued token, straight at the board: what does it answer now?
    let statuses = || async {
        let mut statuses = Vec::new();
        for token in &tokens {
            let (status, _, _) = http(
                "POST",
                board.url(),
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/json"),
                    ("accept", "application/json, text/event-stream"),
                ],
                Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string()),
            )
            .await;
            statuses.push(status);
        }
        statuses
    };
    assert!(
        statuses().await.contains(&200),
        "the linked access token works before unlinking"
    );
    let unlinked = call_tool(
        &frank,
        "accounts",
        json!({"action": "unlink", "server": "board"}),
    )
    .await;
    assert_eq!(unlinked["isError"], false, "{unlinked}");
    assert!(
        statuses().await.iter().all(|s| *s == 401),
        "every token of the unlinked grant is refused by the board (RFC 7009 at its provider)"
    );
    let refused = call_tool(&frank, "board_whoami", json!({})).await;
    link_url_in(&refused, &stack, "board");
    stack.shutdown().await;
}

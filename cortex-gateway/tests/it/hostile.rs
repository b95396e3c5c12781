//! A caller who means harm, or a browser page that does: every request
//! here is one the gateway must refuse, bound or survive without hurting
//! anyone else.

use cortex_gateway::controls::ControlsConfig;
use serde_json::json;

use crate::controls::start;

/// The `initialize` the official `dns-rebinding-protection` scenario
/// sends, with `Host` and `Origin` naming `host`.
async fn initialize_as(url: &str, host: &str, origin: &str, token: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(url)
        .header("host", host)
        .header("origin", origin)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "rebinding", "version": "1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_loopback_listener_accepts_its_own_loopback_origins_on_default_settings() {
    let (setup, gw) = start(ControlsConfig::default()).await;
    let token = setup.token("alice");
    let port = gw.gateway.config().canonical_uri.clone();
    let port = port
        .trim_end_matches("/mcp")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let authority = format!("{host}:{port}");
        let status =
            initialize_as(&gw.url, &authority, &format!("http://{authority}"), &token).await;
        assert_eq!(status, 200, "{authority}");
    }
    for (host, origin) in [
        ("evil.example.com", "http://evil.example.com".to_string()),
        (
            &format!("localhost:{port}")[..],
            "http://evil.example.com".to_string(),
        ),
        (
            &format!("localhost:{port}")[..],
            format!("http://localhost:{}", port.parse::<u16>().unwrap() ^ 1),
        ),
    ] {
        let status = initialize_as(&gw.url, host, &origin, &token).await;
        assert_eq!(status, 403, "{host} {origin}");
    }
}

#[tokio::test]
async fn a_host_that_only_starts_like_a_loopback_address_is_refused() {
    let (_setup, gw) = start(ControlsConfig::default()).await;
    let http = reqwest::Client::new();
    let get = |host: &'static str| {
        http.get(format!("{}/metrics", gw.base))
            .header("host", host)
            .send()
    };
    for host in [
        "127.0.0.1.evil.example",
        "127.0.0.1.evil.example:3213",
        "localhost.evil.example",
        "127.1",
    ] {
        let r = get(host).await.unwrap();
        assert_eq!(r.status(), 403, "{host}");
        let text = r.text().await.unwrap();
        assert!(text.contains("DNS rebinding"), "{text}");
        assert!(!text.contains("cortex_requests_total"), "{text}");
    }
    assert_eq!(get("127.0.0.1").await.unwrap().status(), 200);
    assert_eq!(get("localhost:1").await.unwrap().status(), 200);
}

/// `initialize` as `token`; the session id.
async fn open_session(url: &str, token: &str) -> String {
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "hoarder", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["mcp-session-id"].to_str().unwrap().to_string()
}

/// `ping` on a session: the HTTP status.
async fn ping(url: &str, token: &str, session: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn one_caller_cannot_hoard_sessions() {
    let (setup, gw) = start(ControlsConfig {
        max_sessions_per_caller: 4,
        ..ControlsConfig::default()
    })
    .await;
    let mallory = setup.token("mallory");
    let alice = setup.token("alice");
    let alices = open_session(&gw.url, &alice).await;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(open_session(&gw.url, &mallory).await);
    }
    for (i, session) in sessions.iter().enumerate() {
        let expected = if i < 6 { 404 } else { 200 };
        assert_eq!(
            ping(&gw.url, &mallory, session).await,
            expected,
            "session {i}"
        );
    }
    assert_eq!(
        ping(&gw.url, &alice, &alices).await,
        200,
        "another caller keeps hers"
    );
    // An evicted client initializes again and goes on.
    let again = open_session(&gw.url, &mallory).await;
    assert_eq!(ping(&gw.url, &mallory, &again).await, 200);
}

#[tokio::test]
async fn the_session_total_is_bounded_and_the_idlest_goes_first() {
    let (setup, gw) = start(ControlsConfig {
        max_sessions: 3,
        ..ControlsConfig::default()
    })
    .await;
    let tokens: Vec<String> = (0..5).map(|i| setup.token(&format!("user{i}"))).collect();
    let first = open_session(&gw.url, &tokens[0]).await;
    let second = open_session(&gw.url, &tokens[1]).await;
    let third = open_session(&gw.url, &tokens[2]).await;
    assert_eq!(
        ping(&gw.url, &tokens[0], &first).await,
        200,
        "used: no longer the idlest"
    );
    let fourth = open_session(&gw.url, &tokens[3]).await;
    assert_eq!(
        ping(&gw.url, &tokens[1], &second).await,
        404,
        "the idlest was evicted"
    );
    for (token, session) in [
        (&tokens[0], &first),
        (&tokens[2], &third),
        (&tokens[3], &fourth),
    ] {
        assert_eq!(ping(&gw.url, token, session).await, 200);
    }
}

#[tokio::test]
async fn debug_output_holds_no_technical_token_and_no_session_id() {
    let (setup, gw) = start(ControlsConfig::default()).await;
    let session = open_session(&gw.url, &setup.token("alice")).await;
    let shown = format!("{:?} {:#?}", gw.gateway, gw.gateway.federation());
    assert!(shown.contains("Federation"), "{shown}");
    assert!(!shown.contains(crate::support::TECH), "{shown}");
    assert!(!shown.contains(&session), "{shown}");
}

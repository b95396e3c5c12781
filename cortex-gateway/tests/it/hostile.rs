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

//! A caller who means harm, or a browser page that does: every request
//! here is one the gateway must refuse, bound or survive without hurting
//! anyone else.

use cortex_gateway::config::ControlsConfig;
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
    let shown = format!("{:?} {:#?}", gw.gateway, gw.gateway);
    assert!(shown.contains("Federation"), "{shown}");
    assert!(!shown.contains(crate::support::TECH), "{shown}");
    assert!(!shown.contains(&session), "{shown}");
}

/// A raw connection to `base` (`http://host:port`).
async fn raw_connection(base: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Sends `GET /healthz` on `conn` and reads the answer; `false` when the
/// connection turns out to be closed.
async fn healthz_on(conn: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if conn
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    answer.starts_with(b"HTTP/1.1 200")
}

/// Reads until the peer closes `conn` (end of stream or reset); what was
/// read before. A safety net of 30 s turns a connection that is never
/// closed into a failure rather than a hung test.
async fn until_closed(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway never closed the connection");
    got
}

#[tokio::test]
async fn a_client_that_sends_header_lines_forever_is_dropped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_setup, gw) = start(ControlsConfig {
        header_read_timeout_ms: 300,
        ..ControlsConfig::default()
    })
    .await;
    let mut conn = raw_connection(&gw.base).await;
    conn.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let mut lines = 0u64;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            // One more header line whenever the socket has nothing to say
            // for a moment; the loop ends only when the gateway closes.
            tokio::select! {
                read = conn.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                    lines += 1;
                    if conn.write_all(format!("X-Drip-{lines}: x\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {lines} header lines");
    // A well-behaved client on a new connection is served.
    let mut fresh = raw_connection(&gw.base).await;
    assert!(healthz_on(&mut fresh).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_setup, gw) = start(ControlsConfig {
        idle_timeout_ms: 1_000,
        ..ControlsConfig::default()
    })
    .await;
    let mut conn = raw_connection(&gw.base).await;
    assert!(healthz_on(&mut conn).await);
    assert!(healthz_on(&mut conn).await, "kept alive between requests");
    let after = until_closed(&mut conn).await;
    assert!(after.is_empty(), "{}", String::from_utf8_lossy(&after));
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_the_others_keep_working() {
    let (_setup, gw) = start(ControlsConfig {
        max_connections: 2,
        ..ControlsConfig::default()
    })
    .await;
    let mut first = raw_connection(&gw.base).await;
    let mut second = raw_connection(&gw.base).await;
    assert!(healthz_on(&mut first).await);
    assert!(healthz_on(&mut second).await);
    let mut third = raw_connection(&gw.base).await;
    assert!(
        !healthz_on(&mut third).await,
        "the third connection is served"
    );
    assert!(healthz_on(&mut first).await);
    assert!(healthz_on(&mut second).await);
    // A slot frees when a connection closes.
    drop(first);
    let served = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let mut next = raw_connection(&gw.base).await;
            if healthz_on(&mut next).await {
                return;
            }
        }
    })
    .await;
    assert!(served.is_ok(), "no connection served after one closed");
}

#[tokio::test]
async fn the_metrics_listener_drops_a_head_that_never_ends() {
    use tokio::io::AsyncWriteExt as _;
    let (_setup, gw) = start(ControlsConfig {
        header_read_timeout_ms: 300,
        ..ControlsConfig::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateway = gw.gateway.clone();
    tokio::spawn(async move { gateway.serve_metrics(listener).await });
    let mut slow = raw_connection(&base).await;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let before = until_closed(&mut slow).await;
    assert!(
        !before.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&before)
    );
    let scraped = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("cortex_requests_total")
    );
}

/// Waits until `backend` has received `n` user calls.
async fn backend_calls(backend: &crate::support::BackendServer, n: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while backend.seen_users().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend got no call"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_batch_is_capped_charged_per_message_and_audited_per_message() {
    let audit = crate::controls::temp_dir("batch").join("audit.jsonl");
    let (setup, gw) = start(ControlsConfig {
        audit_file: Some(audit.clone()),
        rate_limit_per_minute: 1,
        rate_limit_burst: 10,
        ..ControlsConfig::default()
    })
    .await;
    // initialize and notifications/initialized: two requests charged.
    let alice = crate::client::Client::legacy(&gw.url, &setup.token("alice"), "2025-03-26").await;
    let call = |id: usize| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "crm_count_accounts", "arguments": {}}})
    };
    let too_many: Vec<_> = (0..33).map(call).collect();
    let r = alice.post_raw(&json!(too_many), &[]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("at most 32") && message.contains("33"),
        "{message}"
    );
    assert!(setup.crm.seen_users().is_empty(), "nothing of it was run");

    let batch: Vec<_> = (0..12).map(call).collect();
    let r = alice.post_raw(&json!(batch), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let answers = r.body.as_array().unwrap();
    assert_eq!(answers.len(), 12);
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a["error"]["code"] == -32000)
        .collect();
    let run = setup.crm.seen_users().len();
    assert!(!refused.is_empty(), "12 messages on a budget of 8 all ran");
    assert_eq!(run + refused.len(), 12, "{answers:?}");
    assert!(
        refused[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit")
    );

    // initialize, initialized, the refused batch, then one line per message.
    let lines = crate::controls::audit_lines(&audit, 3 + 12).await;
    assert_eq!(lines.len(), 15, "{lines:?}");
    assert_eq!(lines[2]["error_class"], "batch_too_large");
    let messages = &lines[3..];
    assert!(
        messages
            .iter()
            .all(|l| l["method"] == "tools/call" && l["sub"] == "alice")
    );
    assert_eq!(
        messages
            .iter()
            .filter(|l| l["error_class"] == "rate_limited")
            .count(),
        refused.len()
    );
    assert_eq!(
        messages.iter().filter(|l| l["outcome"] == "ok").count(),
        run
    );
}

#[tokio::test]
async fn a_call_whose_client_hangs_up_is_audited_as_client_closed() {
    use tokio::io::AsyncWriteExt as _;
    let audit = crate::controls::temp_dir("hangup").join("audit.jsonl");
    let (setup, gw) = start(ControlsConfig {
        audit_file: Some(audit.clone()),
        ..ControlsConfig::default()
    })
    .await;
    let token = setup.token("alice");
    let mut client = crate::client::Client::modern(&gw.url, &token);
    let (body, headers) =
        client.envelope("tools/call", json!({"name": "docs_stall", "arguments": {}}));
    let body = body.to_string();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in &headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut conn = raw_connection(&gw.base).await;
    conn.write_all(request.as_bytes()).await.unwrap();
    backend_calls(&setup.docs, 1).await;
    drop(conn);
    let lines = crate::controls::audit_lines(&audit, 1).await;
    let line = &lines[0];
    assert_eq!(line["outcome"], "client_closed", "{line}");
    assert_eq!(line["tool"], "docs_stall");
    assert_eq!(line["sub"], "alice");
    assert_eq!(line["status"], 499);
}

#[tokio::test]
async fn bad_tokens_are_charged_before_the_signature_check_and_lock_out_no_verified_caller() {
    let (setup, gw) = start(ControlsConfig {
        rate_limit_per_minute: 1,
        rate_limit_burst: 3,
        ..ControlsConfig::default()
    })
    .await;
    let list = |token: Option<String>| {
        let mut request = reqwest::Client::new()
            .post(&gw.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}}}),
            );
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.unwrap() }
    };
    // Alice's token is verified once (one unit of the address budget).
    let alice = setup.token("alice");
    assert_eq!(list(Some(alice.clone())).await.status(), 200);
    // Bad tokens from the same address: refused with 401 while the budget
    // lasts, then with 429 before any signature check.
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(list(Some(format!("garbage-{i}"))).await.status().as_u16());
    }
    assert_eq!(statuses[..2], [401, 401], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    // A request without a token still gets its challenge: it costs nothing
    // to refuse.
    let r = list(None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // A token verified before goes on working.
    assert_eq!(list(Some(alice)).await.status(), 200);
    // The price: a token never seen, from the flooded address, waits for
    // the budget like any unverified token.
    let r = list(Some(setup.token("bob"))).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_request_head_larger_than_the_header_limit_is_not_buffered() {
    use tokio::io::AsyncWriteExt as _;
    let (_setup, gw) = start(ControlsConfig {
        header_read_timeout_ms: 600_000,
        ..ControlsConfig::default()
    })
    .await;
    let mut conn = raw_connection(&gw.base).await;
    conn.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        .await
        .unwrap();
    // 64 KiB of one header, never finished: four times the 16 KiB limit.
    let _ = conn.write_all(&[b'x'; 64 * 1024]).await;
    let answer = until_closed(&mut conn).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

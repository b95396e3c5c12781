//! Federation: health, hung and oversized backends, change notifications,
//! unprefixed backends, header safety.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cortex_gateway::{
    Gateway, GatewayError, Health,
    config::{BackendConfig, GatewayConfig},
};
use serde_json::json;

use crate::{
    client::Client,
    support::{self, BackendServer, Mode, Options, TECH, World, huge_server, hung_server},
};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_backend_that_goes_down_leaves_and_returns() {
    let w = World::start().await;
    let mut c = Client::modern(&w.url, &w.token("bob", &["mcp:crm:read", "mcp:docs:read"]));
    assert!(c.tool_names().await.contains(&"docs_search".to_string()));
    let search = json!({"query": "handbook"});
    assert_ne!(c.call("docs_search", search.clone()).await["isError"], true);
    w.docs.set_mode(Mode::Down);
    w.gateway.refresh_now().await;
    let names = c.tool_names().await;
    assert!(!names.iter().any(|n| n.starts_with("docs_")), "{names:?}");
    // Calls see the new catalog at once too (each thread keeps a handle
    // on the catalog it last used, and must drop it after a refresh).
    let gone = c
        .err(
            "tools/call",
            json!({"name": "docs_search", "arguments": search}),
        )
        .await;
    assert!(
        gone["message"].as_str().unwrap().contains("Unknown tool"),
        "{gone}"
    );
    assert!(
        names.contains(&"crm_search_accounts".to_string()),
        "the others keep working"
    );
    let d = c.ok("server/discover", json!({})).await;
    assert!(
        d["instructions"]
            .as_str()
            .unwrap()
            .contains("Unavailable now")
    );
    w.docs.set_mode(Mode::Up);
    w.gateway.refresh_now().await;
    assert!(c.tool_names().await.contains(&"docs_search".to_string()));
    assert_ne!(c.call("docs_search", search).await["isError"], true);
}

#[tokio::test]
async fn a_hung_backend_does_not_slow_tools_list() {
    let (hung_url, hung_task) = hung_server().await;
    let mut hung = BackendConfig::new("slow", hung_url);
    hung.timeout_ms = 1_500;
    let started = Instant::now();
    let w = World::start_with(Options {
        extra: vec![hung],
        extra_tasks: vec![hung_task],
        ..Options::default()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "ready after the timeout"
    );
    let catalog = w.gateway.catalog();
    assert!(matches!(catalog.health[2].1, Health::Down(_)));
    let mut c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read", "mcp:slow:read"]));
    // A refresh is waiting on the hung backend while we list.
    let gateway = w.gateway.clone();
    let refresh = tokio::spawn(async move { gateway.refresh_now().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let names = c.tool_names().await;
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "tools/list took {:?}",
        t.elapsed()
    );
    assert!(!refresh.is_finished(), "the refresh is still waiting");
    assert!(names.contains(&"crm_search_accounts".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("slow_")));
    refresh.await.unwrap();
}

#[tokio::test]
async fn unreachable_and_oversized_backends_are_contained() {
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (huge_url, huge_task) = huge_server(9 << 20).await;
    let w = World::start_with(Options {
        extra: vec![
            BackendConfig::new("ghost", closed),
            BackendConfig::new("huge", huge_url),
        ],
        extra_tasks: vec![huge_task],
        ..Options::default()
    })
    .await;
    let catalog = w.gateway.catalog();
    let health: Vec<_> = catalog
        .health
        .iter()
        .map(|(id, h)| (id.as_str(), h.clone()))
        .collect();
    assert_eq!(health[0], ("crm", Health::Up));
    match &health[2].1 {
        Health::Down(reason) => assert!(reason.contains("unreachable"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match &health[3].1 {
        Health::Down(reason) => assert!(reason.contains("exceeded"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A TLS backend whose certificate no trusted authority issued (a
/// self-signed one in `tests/fixtures`): the handshake fails, the backend is
/// down with the certificate named, and not one HTTP byte (so no token)
/// reaches it.
#[tokio::test]
async fn a_backend_with_an_untrusted_certificate_never_gets_a_request() {
    use tokio::io::AsyncReadExt as _;
    let acceptor = crate::support::tls_acceptor(
        include_bytes!("../fixtures/untrusted-cert.pem"),
        include_bytes!("../fixtures/untrusted-key.pem"),
        &[],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let (connections, requests) = (connections.clone(), requests.clone());
        async move {
            while let Ok((socket, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, requests) = (acceptor.clone(), requests.clone());
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(socket).await {
                        let mut buf = [0u8; 256];
                        if tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                            requests.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        }
    });
    let w = World::start_with(Options {
        extra: vec![BackendConfig::new("selfsigned", url)],
        extra_tasks: vec![task],
        ..Options::default()
    })
    .await;
    let catalog = w.gateway.catalog();
    let (_, health) = catalog
        .health
        .iter()
        .find(|(id, _)| id == "selfsigned")
        .unwrap();
    match health {
        Health::Down(reason) => assert!(reason.contains("certificate"), "{reason}"),
        other => panic!("a backend with an untrusted certificate is {other:?}"),
    }
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "the gateway never tried"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn list_changed_reaches_the_get_stream_and_listen() {
    let mut w = World::start().await;
    let token = w.token("bob", &["mcp:docs:read"]);
    let legacy = Client::legacy(&w.url, &token, "2025-11-25").await;
    let mut get_stream = legacy.open_get_stream().await;
    let mut modern = Client::modern(&w.url, &token);
    let (id, mut listen) = modern
        .listen(json!({"toolsListChanged": true, "resourcesListChanged": false}))
        .await;
    let ack = listen.next(WAIT).await.expect("acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        id
    );
    let (_, mut prompts_only) = modern.listen(json!({"promptsListChanged": true})).await;
    prompts_only.next(WAIT).await.expect("acknowledgement");

    // Nothing changes: nothing is sent.
    w.gateway.refresh_now().await;
    assert!(listen.next(Duration::from_millis(300)).await.is_none());

    // The docs backend adds a tool.
    w.docs.replace(support::docs(&w.issuer, &w.url, true));
    let changed = w.gateway.refresh_now().await;
    assert!(changed.tools);
    let n = get_stream
        .next(WAIT)
        .await
        .expect("GET stream notification");
    assert_eq!(n["method"], "notifications/tools/list_changed");
    let n = listen.next(WAIT).await.expect("listen notification");
    assert_eq!(n["method"], "notifications/tools/list_changed");
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        id
    );
    assert!(
        prompts_only
            .next(Duration::from_millis(300))
            .await
            .is_none(),
        "only the requested kinds are sent"
    );
    assert!(
        modern
            .tool_names()
            .await
            .contains(&"docs_summarize".to_string())
    );

    // Shutdown ends the listen stream with the graceful response.
    w.shutdown().await;
    let last = listen.next(WAIT).await.expect("final response");
    assert_eq!(last["id"], id);
    assert_eq!(last["result"]["resultType"], "complete");
    assert_eq!(
        last["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        id
    );
}

#[tokio::test]
async fn a_claim_with_line_breaks_never_adds_a_header() {
    let w = World::start().await;
    let token = w
        .issuer
        .token(&w.url)
        .sub("mallory")
        .role("admin\r\nX-Cortex-User-Id: ceo")
        .scopes(["mcp:crm:read"])
        .mint();
    let mut c = Client::modern(&w.url, &token);
    let r = c.call("crm_search_accounts", json!({"query": "a"})).await;
    assert_eq!(r["isError"], false, "{r:#}");
    // The role travels RFC 8187-encoded on its own line; the user id is
    // the token's.
    assert_eq!(w.crm.seen_users().last().unwrap(), "mallory");
    let received = w.crm.last_headers();
    assert_eq!(received.get_all("x-cortex-user-id").iter().count(), 1);
    assert_eq!(
        received["x-cortex-user-role"],
        "UTF-8''admin%0D%0AX-Cortex-User-Id%3A%20ceo"
    );
}

#[tokio::test]
async fn unprefixed_backends_keep_their_names_and_clashes_stop_the_start() {
    let issuer = cortex_backend::testing::TestIssuer::start().await.unwrap();
    let url = "http://127.0.0.1:9/mcp";
    let crm = BackendServer::start(support::crm(&issuer, url)).await;
    let docs = BackendServer::start(support::docs(&issuer, url, false)).await;
    let mut config = GatewayConfig::new(url, issuer.issuer(), TECH);
    config.oauth.jwks_url = Some(issuer.jwks_url());
    let mut plain = BackendConfig::new("docs", &docs.url);
    plain.prefix = false;
    config.backends = vec![BackendConfig::new("crm", &crm.url), plain.clone()];
    let g = Gateway::new(config.clone()).await.unwrap();
    g.wait_ready().await.unwrap();
    let catalog = g.catalog();
    assert!(catalog.tool("search").is_some());
    assert!(catalog.tool("crm_search_accounts").is_some());

    // Both unprefixed: both list get_help.
    let mut plain_crm = BackendConfig::new("crm", &crm.url);
    plain_crm.prefix = false;
    config.backends = vec![plain_crm, plain];
    let g = Gateway::new(config).await.unwrap();
    match g.wait_ready().await {
        Err(GatewayError::NameClash(m)) => assert!(m.contains("get_help"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_get_stream_primes_and_keeps_alive() {
    use futures::StreamExt;
    let w = World::start().await;
    let token = w.token("bob", &["mcp:docs:read"]);
    let c = Client::legacy(&w.url, &token, "2025-11-25").await;
    let r = c
        .http
        .get(&w.url)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !(seen.contains("id:") && seen.contains("\n:")) {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next())
            .await
            .expect("priming event and a keep-alive within 5 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Ending the session ends the stream.
    let r = c
        .http
        .delete(&w.url)
        .bearer_auth(&token)
        .header("mcp-session-id", c.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let end =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = body.next().await {} }).await;
    assert!(end.is_ok(), "the stream ends with the session");
}

fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn token_exchange_gives_each_backend_its_own_audience() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use cortex_backend::{auth::JwtValidator, testing::TestIssuer};
    use cortex_gateway::config::{TokenExchangeConfig, TokenMode};

    let issuer = Arc::new(TestIssuer::start().await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let crm_audience = "urn:cortex:crm-only";
    // The backend accepts only tokens minted for its own audience.
    let crm = BackendServer::start(support::crm(&issuer, crm_audience)).await;

    // A token endpoint performing RFC 8693 exchange for the gateway's client.
    let exchanges = Arc::new(AtomicUsize::new(0));
    let validator = Arc::new(JwtValidator::new(issuer.jwt_config(&url)).unwrap());
    let token_endpoint = {
        let (issuer, exchanges, validator) = (issuer.clone(), exchanges.clone(), validator.clone());
        axum::Router::new().route(
            "/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (issuer, exchanges, validator) =
                    (issuer.clone(), exchanges.clone(), validator.clone());
                async move {
                    let form: std::collections::HashMap<String, String> = body
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), form_decode(v)))
                        .collect();
                    let basic = base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        "cortex-gateway:gateway-secret",
                    );
                    assert_eq!(headers["authorization"], format!("Basic {basic}"));
                    assert_eq!(
                        form["grant_type"],
                        "urn:ietf:params:oauth:grant-type:token-exchange"
                    );
                    let caller = validator.validate(&form["subject_token"]).await.unwrap();
                    exchanges.fetch_add(1, Ordering::SeqCst);
                    let token = issuer
                        .token(&form["audience"])
                        .sub(&caller.sub)
                        .scopes(caller.scopes.iter().map(String::as_str))
                        .mint();
                    axum::Json(json!({
                        "access_token": token,
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": 600
                    }))
                }
            }),
        )
    };
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let as_url = format!("http://{}/token", as_listener.local_addr().unwrap());
    let as_task = tokio::spawn(async move {
        let _ = axum::serve(as_listener, token_endpoint).await;
    });

    let mut config = GatewayConfig::new(url.clone(), issuer.issuer(), TECH);
    config.oauth.jwks_url = Some(issuer.jwks_url());
    config.token_exchange = Some(TokenExchangeConfig {
        token_endpoint: Some(as_url),
        client_id: "cortex-gateway".into(),
        client_secret: "gateway-secret".into(),
    });
    let mut exchanged = BackendConfig::new("crm", &crm.url);
    exchanged.token_mode = TokenMode::Exchange;
    exchanged.audience = Some(crm_audience.into());
    let forwarded = BackendConfig::new("fwd", &crm.url);
    config.backends = vec![exchanged, forwarded];
    let gateway = Gateway::new(config).await.unwrap();
    let server = tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
    gateway.wait_ready().await.unwrap();

    let token = issuer
        .token(&url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .mint();
    let mut c = Client::modern(&url, &token);
    for _ in 0..3 {
        let r = c.call("crm_search_accounts", json!({"query": "a"})).await;
        assert_eq!(r["isError"], false, "{r:#}");
        assert_eq!(r["structuredContent"]["caller"], "ana");
    }
    assert_eq!(
        exchanges.load(Ordering::SeqCst),
        1,
        "exchanged once, then cached"
    );
    // Forwarding the gateway's token to a backend with its own audience fails.
    let r = c.call("fwd_search_accounts", json!({"query": "a"})).await;
    assert_eq!(r["isError"], true);
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("backend authentication failed")
    );
    server.abort();
    as_task.abort();
}

//! The stateless revision 2026-07-28.

use base64::Engine as _;
use serde_json::json;

use crate::{
    client::{Client, MODERN, validate_message},
    legacy::shared_scenario,
    support::World,
};

#[tokio::test]
async fn modern_revision_shares_the_scenario() {
    let w = World::start().await;
    let url = w.url.clone();
    shared_scenario(&w, |token| {
        let url = url.clone();
        async move { Client::modern(&url, &token) }
    })
    .await;
}

#[tokio::test]
async fn discover_and_cache_hints() {
    let w = World::start().await;
    let mut c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let d = c.ok("server/discover", json!({})).await;
    assert_eq!(d["supportedVersions"][0], MODERN);
    assert_eq!(d["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(
        d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "cortex-gateway"
    );
    assert!(
        d["instructions"]
            .as_str()
            .unwrap()
            .contains("crm_search_accounts")
    );
    for method in [
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    ] {
        let r = c.ok(method, json!({})).await;
        assert_eq!(r["cacheScope"], "private", "{method}");
        assert!(r["ttlMs"].as_u64().is_some(), "{method}");
    }
    let r = c
        .ok("resources/read", json!({"uri": "crm://account/1"}))
        .await;
    assert_eq!(r["cacheScope"], "private");
    let r = c.call("crm_count_accounts", json!({})).await;
    assert_eq!(r["resultType"], "complete");
    let e = c.err("tools/list", json!({"cursor": "not-a-cursor"})).await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn header_and_meta_rules() {
    let w = World::start().await;
    let mut c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let (body, headers) = c.envelope("tools/list", json!({}));
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let version = get("mcp-protocol-version");
    let check = |reply: &crate::client::Reply, status: u16, code: i64| {
        assert_eq!(reply.status, status, "{:#}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{:#}", reply.body);
        assert_eq!(reply.body["id"], body["id"], "errors carry the request id");
        validate_message(MODERN, None, &reply.body);
    };

    // Missing MCP-Protocol-Version or Mcp-Method, or a mismatch: -32020.
    let r = c.post_raw(&body, &[("mcp-method", "tools/list")]).await;
    check(&r, 400, -32020);
    let r = c
        .post_raw(&body, &[("mcp-protocol-version", &version)])
        .await;
    check(&r, 400, -32020);
    let r = c
        .post_raw(
            &body,
            &[
                ("mcp-protocol-version", &version),
                ("mcp-method", "prompts/list"),
            ],
        )
        .await;
    check(&r, 400, -32020);

    // Missing _meta fields: -32602.
    let mut no_caps = body.clone();
    no_caps["params"]["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let r = c
        .post_raw(
            &no_caps,
            &[
                ("mcp-protocol-version", &version),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    check(&r, 400, -32602);
    let no_meta = json!({"jsonrpc": "2.0", "id": body["id"], "method": "tools/list", "params": {}});
    let r = c
        .post_raw(
            &no_meta,
            &[
                ("mcp-protocol-version", &version),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    check(&r, 400, -32602);

    // Unsupported version: -32022 with supported/requested.
    let mut future = body.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let r = c
        .post_raw(
            &future,
            &[
                ("mcp-protocol-version", "2099-01-01"),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    check(&r, 400, -32022);
    assert_eq!(r.body["error"]["data"]["requested"], "2099-01-01");
    assert_eq!(r.body["error"]["data"]["supported"], json!([MODERN]));
    // A header contradicting the body is a mismatch, whatever the version.
    let r = c
        .post_raw(
            &future,
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/list"),
            ],
        )
        .await;
    check(&r, 400, -32020);

    // Unknown and removed methods: 404 + -32601, even initialize.
    for method in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "nope/nothing",
    ] {
        let (b, h) = c.envelope(method, json!({}));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = c.post_raw(&b, &h).await;
        assert_eq!(r.status, 404, "{method}");
        assert_eq!(r.body["error"]["code"], -32601, "{method}");
        validate_message(MODERN, None, &r.body);
    }

    // Mcp-Name: required, compared after base64 decoding.
    let (call, h) = c.envelope(
        "tools/call",
        json!({"name": "crm_count_accounts", "arguments": {}}),
    );
    let base: Vec<(&str, &str)> = h
        .iter()
        .filter(|(k, _)| k != "mcp-name")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c.post_raw(&call, &base).await;
    check_code(&r, 400, -32020);
    let mut wrong = base.clone();
    wrong.push(("mcp-name", "crm_other"));
    check_code(&c.post_raw(&call, &wrong).await, 400, -32020);
    let encoded = format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode("crm_count_accounts")
    );
    let mut good = base.clone();
    good.push(("mcp-name", &encoded));
    let r = c.post_raw(&call, &good).await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(r.body["result"]["content"][0]["text"], "42");

    // Notifications: 202. Batches: 400. GET/DELETE: 405.
    let n =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}});
    assert_eq!(
        c.post_raw(&n, &[("mcp-protocol-version", &version)])
            .await
            .status,
        202
    );
    let batch = json!([body]);
    assert_eq!(
        c.post_raw(&batch, &[("mcp-protocol-version", &version)])
            .await
            .status,
        400
    );
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = c
            .http
            .request(method, &w.url)
            .bearer_auth(c.token.as_deref().unwrap())
            .header("mcp-protocol-version", MODERN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
}

fn check_code(reply: &crate::client::Reply, status: u16, code: i64) {
    assert_eq!(reply.status, status, "{:#}", reply.body);
    assert_eq!(reply.body["error"]["code"], code, "{:#}", reply.body);
    validate_message(MODERN, None, &reply.body);
}

/// `Gateway::serve` answers POST on the MCP path without the router (the
/// hot path); `Gateway::router()` (for embedding) still routes it through
/// the perimeter middleware. Both must give the same answers, refusals
/// included.
#[tokio::test]
async fn served_and_embedded_router_answer_alike() {
    use axum::{body::Body, extract::ConnectInfo};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let w = World::start().await;
    let token = w.token("ana", &["mcp:crm:read"]);
    let mut c = Client::modern(&w.url, &token);
    let host = w.addr.to_string();
    let cases = [
        (
            "tools/call",
            json!({"name": "crm_count_accounts", "arguments": {}}),
            vec![],
        ),
        (
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
            vec![],
        ),
        ("tools/list", json!({}), vec![]),
        // The perimeter refuses a foreign Origin before any token is read.
        (
            "tools/call",
            json!({"name": "crm_count_accounts"}),
            vec![("origin", "https://evil.example")],
        ),
        // Authentication refuses a missing token.
        ("tools/list", json!({}), vec![("authorization", "")]),
    ];
    for (method, params, extra) in cases {
        let (body, mut headers) = c.envelope(method, params);
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let bearer = format!("Bearer {token}");
        let mut all: Vec<(&str, &str)> = vec![
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("host", &host),
        ];
        if !headers.iter().any(|(k, _)| k == "authorization") {
            all.push(("authorization", &bearer));
        }
        all.extend(
            headers
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );

        let mut served = c.http.post(&w.url);
        for (k, v) in &all {
            if *k != "host" {
                served = served.header(*k, *v);
            }
        }
        let served = served.body(body.to_string()).send().await.unwrap();
        let served_status = served.status().as_u16();
        // The served response reuses the request's header map: none of the
        // request's headers may come back.
        let served_names = header_names(served.headers());
        // Results are spliced from ready buffers, still sent with a length.
        let length = served.headers().get("content-length").cloned();
        assert!(length.is_some(), "{method}: no Content-Length");
        let served_text = served.text().await.unwrap();
        assert_eq!(
            length.unwrap().to_str().unwrap(),
            served_text.len().to_string()
        );
        let served_body: serde_json::Value = serde_json::from_str(&served_text).unwrap();

        let mut request = axum::http::Request::post("/mcp");
        for (k, v) in &all {
            request = request.header(*k, *v);
        }
        let mut request = request.body(Body::from(body.to_string())).unwrap();
        request.extensions_mut().insert(ConnectInfo(w.addr));
        let routed = w.gateway.router().oneshot(request).await.unwrap();
        let routed_status = routed.status().as_u16();
        let mut routed_names = header_names(routed.headers());
        // Added by hyper when it sends a response.
        routed_names.extend(["content-length".to_owned(), "date".to_owned()]);
        routed_names.sort();
        routed_names.dedup();
        assert_eq!(served_names, routed_names, "{method} {extra:?}");
        for (k, _) in &all {
            if !matches!(*k, "content-type") {
                assert!(
                    !served_names.iter().any(|n| n == k),
                    "{method} {extra:?}: the request's {k} came back"
                );
            }
        }
        let bytes = routed.into_body().collect().await.unwrap().to_bytes();
        let routed_body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

        assert_eq!(served_status, routed_status, "{method} {extra:?}");
        assert_eq!(served_body, routed_body, "{method} {extra:?}");
    }
}

/// The distinct header names of a response, sorted.
fn header_names(headers: &axum::http::HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

/// A client that accepts gzip gets the `tools/list` page compressed (the
/// same JSON once decoded, checked with a standard decoder, so the CRC and
/// length too); one that does not, or refuses it with `q=0`, gets it plain.
/// Both are told that the answer varies with `Accept-Encoding`.
#[tokio::test]
async fn tools_list_is_gzipped_for_clients_that_accept_it() {
    use std::io::Read as _;
    let w = World::start().await;
    let c = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read", "mcp:docs:read"]));
    let mut c = c;
    let (body, headers) = c.envelope("tools/list", json!({}));
    let with = |encoding: Option<&str>| {
        let mut h = headers.clone();
        if let Some(e) = encoding {
            h.push(("accept-encoding".into(), e.into()));
        }
        h
    };
    let (status, plain_headers, plain) = c.post_bytes(&body, &with(None)).await;
    assert_eq!(status, 200);
    assert!(plain_headers.get("content-encoding").is_none());
    assert_eq!(plain_headers["vary"], "accept-encoding");
    assert!(
        plain.len() >= 1024,
        "a page worth compressing: {}",
        plain.len()
    );
    let (status, gz_headers, gz) = c.post_bytes(&body, &with(Some("gzip, deflate, br"))).await;
    assert_eq!(status, 200);
    assert_eq!(gz_headers["content-encoding"], "gzip");
    assert_eq!(gz_headers["vary"], "accept-encoding");
    assert_eq!(
        gz_headers["content-length"].to_str().unwrap(),
        gz.len().to_string()
    );
    assert!(
        gz.len() < plain.len() / 2,
        "{} of {}",
        gz.len(),
        plain.len()
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut decoded)
        .expect("a valid gzip stream");
    assert_eq!(decoded, plain.to_vec());
    let (_, refused_headers, refused) = c.post_bytes(&body, &with(Some("gzip;q=0"))).await;
    assert!(refused_headers.get("content-encoding").is_none());
    assert_eq!(refused, plain);
}

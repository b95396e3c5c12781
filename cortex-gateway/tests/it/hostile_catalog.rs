//! A caller with one valid token who means harm, against the catalog, the
//! audit trail and the MCP methods: what they send must not grow the
//! gateway's memory or its audit lines beyond the documented bounds, nor
//! reach data their scopes do not cover.

use cortex_gateway::{
    config::GatewayConfig,
    federation::{PAGE_CACHE_BYTES, PAGE_CACHE_ENTRIES, RENDER_CACHE_BYTES, RENDER_CACHE_ENTRIES},
};
use serde_json::{Value, json};

use crate::{
    client::Client,
    support::{Options, World},
};

/// No rate limit: these tests send thousands of requests as one caller.
fn unlimited(config: &mut GatewayConfig) {
    config.controls.rate_limit_per_minute = 0;
}

async fn unlimited_world() -> World {
    World::start_with(Options {
        configure: Some(unlimited),
        ..Options::default()
    })
    .await
}

/// Thousands of `tools/list` requests, each naming a different unknown
/// backend in `X-Cortex-Backends`: they all share the one view of the
/// known backends they name (the caches do not grow), and every answer is
/// that view.
#[tokio::test]
async fn junk_backend_filters_do_not_grow_the_list_caches() {
    let w = unlimited_world().await;
    let mut c = Client::modern(
        &w.url,
        &w.token("mallory", &["mcp:crm:read", "mcp:docs:read"]),
    );
    let (body, headers) = c.envelope("tools/list", json!({}));
    let mut headers: Vec<(String, String)> = headers;
    headers.push(("x-cortex-backends".into(), String::new()));
    let names = |reply: &Value| -> Vec<String> {
        reply["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut expected: Option<Vec<String>> = None;
    for n in 0..3_000 {
        let filter = match n % 3 {
            0 => format!("crm,junk{n}"),
            1 => format!("junk{n}, crm ,crm"),
            _ => format!("crm,{}", "j".repeat(n)),
        };
        headers.last_mut().unwrap().1 = filter;
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = c.post_raw(&body, &h).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let got = names(&reply.body);
        match &expected {
            None => {
                assert!(got.iter().any(|n| n == "crm_search_accounts"), "{got:?}");
                assert!(!got.iter().any(|n| n.starts_with("docs_")), "{got:?}");
                expected = Some(got);
            }
            Some(e) => assert_eq!(&got, e, "request {n}"),
        }
    }
    let usage = w.gateway.federation().catalog().cache_usage();
    assert_eq!(usage.renders.entries, 1, "{usage:?}");
    assert_eq!(usage.pages.entries, 1, "{usage:?}");
    assert!(
        usage.renders.bytes <= RENDER_CACHE_BYTES && usage.renders.entries <= RENDER_CACHE_ENTRIES
    );
    assert!(usage.pages.bytes <= PAGE_CACHE_BYTES && usage.pages.entries <= PAGE_CACHE_ENTRIES);
}

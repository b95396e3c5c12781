//! Traces: the gateway binary exports its spans over OTLP/HTTP to a small
//! receiver that decodes the real protobuf; an SDK backend in this process
//! continues the trace from the `traceparent` the gateway sends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value,
    trace::v1::{Span, span::SpanKind},
};
use prost::Message as _;
use serde_json::json;

/// A span as received, with its service's name.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                Some(any_value::Value::IntValue(i)) => Some(i.to_string()),
                _ => None,
            })
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// `POST /v1/traces`: decodes an `ExportTraceServiceRequest`.
async fn receive(State(spans): State<Spans>, body: Bytes) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut all = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                all.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// The receiver on loopback: its base URL and what it received.
async fn receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client's own trace: the MCP request's parent (in `_meta`) and an
/// HTTP-level span of the same trace (in the header).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const META_PARENT: &str = "00f067aa0ba902b7";
const HEADER_PARENT: &str = "b7ad6b7169203331";

#[tokio::test]
async fn spans_cross_the_gateway_into_the_sdk_backend() {
    let (collector, spans) = receiver().await;
    // The backend's exporter and subscriber, on this thread (the test's
    // runtime runs the backend's tasks here).
    let backend_traces = Arc::new(
        cortex_gateway::telemetry::Tracing::from_lookup(
            |k| match k {
                "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(collector.clone()),
                "OTEL_SERVICE_NAME" => Some("crm-backend".into()),
                _ => None,
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap()
        .expect("an endpoint turns the exporter on"),
    );
    let subscriber = {
        use tracing_subscriber::layer::SubscriberExt as _;
        tracing_subscriber::registry().with(backend_traces.layer())
    };
    let _on_this_thread = tracing::subscriber::set_default(subscriber);

    let crm = crate::cli::CrmGateway::new().await;
    let (port, url, issuer) = (crm.port, crm.url.clone(), &crm.issuer);
    let mut child = crm
        .command()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .spawn()
        .unwrap();
    crate::cli::wait_ready(port).await;
    let token = issuer
        .token(&url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .mint();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": "crm_search_accounts", "arguments": {"query": "a"},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "traceparent": format!("00-{TRACE_ID}-{META_PARENT}-01"),
        "tracestate": "it=1",
    }}});
    // Other tests' threads register the SDK's span callsites with no
    // subscriber interested; rebuilding the interest cache now (this
    // thread's subscriber is registered) keeps a stale "never" from
    // disabling the backend's spans here.
    tracing::callsite::rebuild_interest_cache();
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "crm_search_accounts")
        .header("traceparent", format!("00-{TRACE_ID}-{HEADER_PARENT}-01"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["caller"], "ana",
        "{answer}"
    );

    // The gateway exports what it holds when it stops; the backend's
    // exporter is flushed off the runtime's thread.
    let stopped = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    let exited = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    let flushed = backend_traces.clone();
    tokio::task::spawn_blocking(move || flushed.flush())
        .await
        .unwrap()
        .expect("the backend's spans are exported");

    let spans = spans.lock().unwrap().clone();
    let gateway: Vec<&Received> = spans
        .iter()
        .filter(|s| s.service == "cortex-gateway")
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    let request = gateway
        .iter()
        .find(|s| s.span.name == "tools/call crm_search_accounts")
        .unwrap_or_else(|| panic!("no request span in {names:?}"));
    assert_eq!(request.span.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.span.trace_id), TRACE_ID, "the client's trace");
    assert_eq!(
        hex(&request.span.parent_span_id),
        META_PARENT,
        "params._meta wins over the header"
    );
    assert!(
        request
            .span
            .links
            .iter()
            .any(|l| hex(&l.span_id) == HEADER_PARENT),
        "the header's context is a link: {:?}",
        request.span.links
    );
    assert_eq!(
        request.attribute("mcp.method.name").as_deref(),
        Some("tools/call")
    );
    let request_id = request.span.span_id.clone();
    let mut children: HashMap<&str, &Received> = HashMap::new();
    for s in &gateway {
        if s.span.parent_span_id == request_id {
            children.insert(s.span.name.as_str(), s);
        }
    }
    for child in ["auth", "catalog", "upstream crm", "audit"] {
        let span = children
            .get(child)
            .unwrap_or_else(|| panic!("no `{child}` child of the request in {names:?}"));
        assert_eq!(hex(&span.span.trace_id), TRACE_ID);
    }
    let upstream = children["upstream crm"];
    assert_eq!(upstream.span.kind, SpanKind::Client as i32);

    let continued = spans
        .iter()
        .find(|s| {
            s.service == "crm-backend"
                && s.span.name == "contract request"
                && s.attribute("rpc.method").as_deref() == Some("search_accounts")
        })
        .unwrap_or_else(|| panic!("no backend span of the call in {names:?}"));
    assert_eq!(hex(&continued.span.trace_id), TRACE_ID, "the same trace");
    assert_eq!(
        continued.span.parent_span_id, upstream.span.span_id,
        "the backend's span is a child of the gateway's upstream span"
    );
    tokio::task::spawn_blocking(move || backend_traces.shutdown())
        .await
        .unwrap();
}

#[test]
fn a_bad_otel_setting_stops_the_start_naming_it() {
    for (variable, value) in [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ] {
        let out = crate::cli::good_env(&mut crate::cli::gateway())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
            .env(variable, value)
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

//! Trace context in and out, and the spans of one MCP request.

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{Span as _, TraceContextExt as _, Tracer as _},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{TARGET, enabled};

/// The W3C trace-context header (and `_meta` key) names.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub(crate) const TRACESTATE: &str = "tracestate";

/// Reads `traceparent`/`tracestate` from two optional strings.
struct Pair<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The remote context in `traceparent`/`tracestate`, when it is valid.
fn extract(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract(&Pair {
        traceparent: Some(traceparent?),
        tracestate,
    });
    cx.span().span_context().is_valid().then_some(cx)
}

/// What a request says about itself, for its span's name and attributes
/// (OpenTelemetry's MCP conventions).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpanFields<'a> {
    /// `mcp.method.name`.
    pub(crate) method: Option<&'a str>,
    /// `gen_ai.tool.name` (or the prompt's name).
    pub(crate) target: Option<&'a str>,
    /// `jsonrpc.request.id`.
    pub(crate) id: Option<&'a serde_json::Value>,
    /// `traceparent` in `params._meta`.
    pub(crate) traceparent: Option<&'a str>,
    /// `tracestate` in `params._meta`.
    pub(crate) tracestate: Option<&'a str>,
}

impl<'a> SpanFields<'a> {
    /// The fields of a JSON-RPC request read as a value (the general path).
    pub(crate) fn of_value(body: &'a serde_json::Value) -> Self {
        let params = body.get("params");
        let meta = params.and_then(|p| p.get("_meta"));
        let text = |v: Option<&'a serde_json::Value>, key: &str| {
            v.and_then(|v| v.get(key))
                .and_then(serde_json::Value::as_str)
        };
        Self {
            method: text(Some(body), "method"),
            target: text(params, "name"),
            id: body.get("id"),
            traceparent: text(meta, TRACEPARENT),
            tracestate: text(meta, TRACESTATE),
        }
    }
}

/// The span of one MCP `POST`, from its arrival: its parent is chosen once
/// the body is read ([`Self::adopt`]), since `params._meta` wins over the
/// HTTP header. Until then it is not entered and has no child; the time
/// authentication took is kept and becomes the `auth` span.
#[derive(Debug)]
pub(crate) struct RequestTrace {
    span: Span,
    /// The `traceparent`/`tracestate` headers' context.
    header: Option<Context>,
    /// When authentication started, then the `auth` span's times.
    auth_started: Option<SystemTime>,
    auth: Option<(SystemTime, SystemTime)>,
}

impl RequestTrace {
    /// Starts the span of a request with `headers` (a disabled span, and
    /// nothing read, when traces are off).
    pub(crate) fn begin(headers: &HeaderMap) -> Self {
        if !enabled() {
            return Self {
                span: Span::none(),
                header: None,
                auth_started: None,
                auth: None,
            };
        }
        let span = tracing::debug_span!(
            target: TARGET,
            "mcp.request",
            otel.name = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            mcp.method.name = Empty,
            gen_ai.tool.name = Empty,
            jsonrpc.request.id = Empty,
            error.type = Empty,
            network.transport = "tcp",
            network.protocol.name = "http",
        );
        let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let header = extract(header_text(TRACEPARENT), header_text(TRACESTATE));
        Self {
            auth_started: (!span.is_disabled()).then(SystemTime::now),
            span,
            header,
            auth: None,
        }
    }

    /// Authentication is over (admitted or not).
    pub(crate) fn authenticated(&mut self) {
        if let Some(started) = self.auth_started.take() {
            self.auth = Some((started, SystemTime::now()));
        }
    }

    /// The request was refused before its body was read (`status`).
    pub(crate) fn refused(self, status: u16) {
        if self.span.is_disabled() {
            return;
        }
        self.span.record("otel.name", "mcp refused");
        self.span.record("error.type", status);
        self.span.record("otel.status_code", "error");
        self.adopt(SpanFields::default());
    }

    /// Names the span after the request, sets its parent (the `_meta`
    /// context, else the header's, with a link to the header's when
    /// `_meta` won), records the `auth` span, and returns the span the
    /// rest of the request runs in.
    pub(crate) fn adopt(self, fields: SpanFields<'_>) -> Span {
        let span = self.span;
        if span.is_disabled() {
            return span;
        }
        if let Some(method) = fields.method {
            span.record("mcp.method.name", method);
            match fields.target {
                Some(t) if matches!(method, "tools/call" | "prompts/get") => {
                    span.record("otel.name", format!("{method} {t}"));
                    span.record("gen_ai.tool.name", t);
                }
                _ => {
                    span.record("otel.name", method);
                }
            }
        }
        match fields.id {
            Some(serde_json::Value::String(id)) => {
                span.record("jsonrpc.request.id", id.as_str());
            }
            Some(id @ serde_json::Value::Number(_)) => {
                span.record("jsonrpc.request.id", tracing::field::display(id));
            }
            _ => {}
        }
        let parent = match (extract(fields.traceparent, fields.tracestate), self.header) {
            (Some(meta), header) => {
                if let Some(h) = header {
                    span.add_link(h.span().span_context().clone());
                }
                Some(meta)
            }
            (None, header) => header,
        };
        if let Some(parent) = parent {
            let _ = span.set_parent(parent);
        }
        if let Some((started, ended)) = self.auth {
            let cx = span.context();
            let tracer = opentelemetry::global::tracer(super::export::TRACER);
            let mut auth = tracer
                .span_builder("auth")
                .with_start_time(started)
                .start_with_context(&tracer, &cx);
            auth.end_with_timestamp(ended);
        }
        span
    }
}

/// The span of a call to a backend or an MCP server (kind client); the
/// trace context sent with the call is this span's.
pub(crate) fn upstream_span(source: &str, tool: &str) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "upstream",
        otel.name = format!("upstream {source}"),
        otel.kind = "client",
        cortex.backend = source,
        gen_ai.tool.name = tool,
    )
}

/// The trace context a call carries: the current span's.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// `traceparent`.
    pub(crate) traceparent: Option<HeaderValue>,
    /// `tracestate`, when the trace has one.
    pub(crate) tracestate: Option<HeaderValue>,
}

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        let Ok(value) = HeaderValue::try_from(value) else {
            return;
        };
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Outgoing {
    /// Both as header values, for a header map.
    pub(crate) fn write(&self, headers: &mut HeaderMap) {
        if let Some(v) = &self.traceparent {
            headers.insert(TRACEPARENT, v.clone());
        }
        if let Some(v) = &self.tracestate {
            headers.insert(TRACESTATE, v.clone());
        }
    }

    /// `traceparent` as text (for `params._meta`).
    pub(crate) fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_ref().and_then(|v| v.to_str().ok())
    }

    /// `tracestate` as text (for `params._meta`).
    pub(crate) fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_ref().and_then(|v| v.to_str().ok())
    }
}

/// The current span's trace context, to send with a call; `None` when
/// traces are off or no span is being recorded.
pub(crate) fn outgoing() -> Option<Outgoing> {
    if !enabled() {
        return None;
    }
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Outgoing::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.traceparent.is_some().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_valid_traceparent_is_a_parent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = extract(Some(good), Some("rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(cx.span().span_context().is_remote());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(extract(Some(bad), None).is_none(), "{bad}");
        }
        assert!(extract(None, Some("rojo=1")).is_none());
    }

    #[test]
    fn meta_fields_are_read_from_the_request() {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "crm_find", "_meta": {"traceparent": "00-a-b-01", "tracestate": "x=1"}}});
        let f = SpanFields::of_value(&body);
        assert_eq!(f.method, Some("tools/call"));
        assert_eq!(f.target, Some("crm_find"));
        assert_eq!(f.traceparent, Some("00-a-b-01"));
        assert_eq!(f.tracestate, Some("x=1"));
        assert_eq!(f.id, Some(&serde_json::json!(7)));
    }

    #[test]
    fn nothing_goes_out_while_traces_are_off() {
        assert!(!enabled());
        assert!(outgoing().is_none());
        let trace = RequestTrace::begin(&HeaderMap::new());
        assert!(trace.span.is_disabled());
    }
}

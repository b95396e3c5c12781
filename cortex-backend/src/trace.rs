//! The span of one contract request. Its parent is the caller's trace
//! when the request carries W3C trace context (`traceparent`,
//! `tracestate`: the gateway sends its upstream span's) and the `otel`
//! feature is on; the application's `tracing` subscriber decides whether
//! spans are recorded or exported (`tracing-opentelemetry`).
//!
//! Without a subscriber that wants `DEBUG` spans of `cortex_backend`, the
//! span is disabled and costs one level comparison.

use tracing::{Span, field::Empty};

use crate::dispatch::Request;

/// The W3C trace-context header names.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub(crate) const TRACESTATE: &str = "tracestate";

/// The span `request` is answered in (`rpc.method` is recorded once the
/// envelope is read).
pub(crate) fn request_span(request: &Request) -> Span {
    let span = tracing::debug_span!(
        "contract request",
        otel.kind = "server",
        rpc.system = "cortex",
        rpc.method = Empty,
    );
    #[cfg(feature = "otel")]
    continue_trace(&span, request);
    #[cfg(not(feature = "otel"))]
    let _ = request;
    span
}

/// Makes `span` a child of the remote span in `request`'s headers.
#[cfg(feature = "otel")]
fn continue_trace(span: &Span, request: &Request) {
    use opentelemetry::{
        propagation::{Extractor, TextMapPropagator as _},
        trace::TraceContextExt as _,
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    struct Headers<'a>(&'a Request);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, TRACESTATE]
        }
    }

    if span.is_disabled() || request.get(TRACEPARENT).is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(request));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

//! OpenTelemetry traces: the exporter (OTLP over HTTP/protobuf, off by
//! default, configured by the standard `OTEL_*` variables), the spans of an
//! MCP request, and W3C trace context in and out (`traceparent` and
//! `tracestate` headers, and `params._meta` for MCP).
//!
//! Spans are `tracing` spans at `DEBUG` level under the target
//! [`TARGET`]. Without the exporter no layer wants them: each span macro
//! is one comparison with the global level filter and yields a disabled
//! span, and [`enabled`] (one relaxed atomic load) guards the work that is
//! not a span (reading and writing trace context). With the exporter on,
//! `tracing-opentelemetry` turns them into OpenTelemetry spans; log lines
//! keep their own filter (`RUST_LOG`), so turning traces on does not change
//! what is logged.
//!
//! A request's spans:
//!
//! | span | kind | parent |
//! |---|---|---|
//! | `{mcp.method.name} {gen_ai.tool.name}` (e.g. `tools/call crm_find`) | server | `params._meta` trace context, else the `traceparent` header, else none (a link records the header's context when `_meta` wins) |
//! | `auth` | internal | the request |
//! | `catalog` | internal | the request |
//! | `upstream {backend}` | client | the request; its context travels to the backend |
//! | `audit` | internal | the request |
//!
//! This module is a leaf: it imports nothing from the rest of the gateway
//! but `config_error`.

mod context;
mod export;

use std::sync::atomic::{AtomicBool, Ordering};

pub use export::Tracing;

pub(crate) use context::{RequestTrace, SpanFields, outgoing, upstream_span};

/// The target of the gateway's spans (what the exporter's filter selects).
pub const TARGET: &str = "cortex_gateway::trace";

/// Whether spans are exported (set once, when [`Tracing`] starts).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether the exporter is on: spans and trace context are worth building.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

//! The exporter: when it is on, how it is built, and how it is flushed.

use std::{future::Future, pin::Pin, sync::atomic::Ordering, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::{Layer, filter::filter_fn, registry::LookupSpan};

use crate::config_error::ConfigError;

/// The OpenTelemetry trace exporter of a running gateway. Dropping it
/// does not flush: call [`Tracing::shutdown`] on the way out.
///
/// It is on when `OTEL_TRACES_EXPORTER=otlp`, or when
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set and `OTEL_TRACES_EXPORTER` is not; `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` keep it off. The exporter itself reads the
/// other standard variables (`OTEL_EXPORTER_OTLP_*_HEADERS`, `_TIMEOUT`,
/// `_COMPRESSION`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`).
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// The instrumentation scope of the gateway's spans.
pub(super) const TRACER: &str = "cortex-gateway";

/// The service name when neither `OTEL_SERVICE_NAME` nor a `service.name`
/// in `OTEL_RESOURCE_ATTRIBUTES` gives one.
const DEFAULT_SERVICE_NAME: &str = "cortex-gateway";

/// How long one export may take unless `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`
/// says otherwise (the specification's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn problem(variable: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(variable, problem)
}

/// The value of `name`, trimmed, when it is set and not empty.
fn value(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the `OTEL_*` variables ask for the trace exporter.
fn wanted(lookup: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match value(lookup, "OTEL_SDK_DISABLED").map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "true" => return Ok(false),
        None => {}
        Some(v) if v == "false" => {}
        Some(v) => {
            return Err(problem(
                "OTEL_SDK_DISABLED",
                format!("`{v}` is not `true` or `false`"),
            ));
        }
    }
    let endpoint = value(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || value(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let on = match value(lookup, "OTEL_TRACES_EXPORTER").as_deref() {
        None => endpoint,
        Some("otlp") => true,
        Some("none") => false,
        Some(other) => {
            return Err(problem(
                "OTEL_TRACES_EXPORTER",
                format!(
                    "`{}` is not an exporter of this gateway; use `otlp` (OTLP over HTTP/protobuf) or `none`",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    if !on {
        return Ok(false);
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = value(lookup, variable)
            && p != "http/protobuf"
        {
            return Err(problem(
                variable,
                format!(
                    "`{}` is not supported: the gateway exports OTLP over HTTP/protobuf only (`http/protobuf`, port 4318)",
                    p.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    Ok(true)
}

/// The export timeout the variables give.
fn timeout(lookup: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ] {
        if let Some(v) = value(lookup, variable) {
            return v
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| problem(variable, format!("`{v}` is not a number of milliseconds")));
        }
    }
    Ok(DEFAULT_TIMEOUT)
}

impl Tracing {
    /// Starts the exporter when the `OTEL_*` variables read through
    /// `lookup` ask for it (`Ok(None)` otherwise), exporting from
    /// `runtime`. Installs the W3C trace-context propagator and the
    /// provider as OpenTelemetry's globals.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Option<Self>, ConfigError> {
        if !wanted(&lookup)? {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout(&lookup)?)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                problem(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("cannot build the exporter's HTTP client: {e}"),
                )
            })?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(OnRuntime { client, runtime });
        // The variables as `lookup` reads them (the exporter would read the
        // process environment): the signal's own URL as it is, the base
        // URL with `/v1/traces` appended.
        if let Some(url) = value(&lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            exporter = exporter.with_endpoint(url);
        } else if let Some(base) = value(&lookup, "OTEL_EXPORTER_OTLP_ENDPOINT") {
            exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
        }
        let exporter = exporter.build().map_err(|e| {
            let variable = if value(&lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            } else {
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            };
            problem(variable, format!("the trace exporter cannot start: {e}"))
        })?;
        let mut resource = Resource::builder();
        if let Some(name) = value(&lookup, "OTEL_SERVICE_NAME") {
            resource = resource.with_service_name(name);
        } else if !value(&lookup, "OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        }) {
            resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        super::ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that turns the gateway's spans into
    /// OpenTelemetry spans (and events inside them into span events),
    /// with its own filter: the gateway's and the SDK's spans, and events
    /// at `INFO` or above.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(TRACER))
            .with_filter(filter_fn(exported))
    }

    /// Exports every finished span now (blocks until the exporter
    /// answered or timed out). Call it off the runtime's worker threads.
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Flushes and stops the exporter (blocking, like [`Self::flush`]).
    pub fn shutdown(&self) {
        super::ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("stopping the trace exporter failed: {e}");
        }
    }
}

/// What the exporter's layer sees: spans of the gateway and of the SDK
/// (`cortex_backend`), and events at `INFO` or above inside them.
fn exported(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        *meta.level() <= Level::DEBUG && meta.target().starts_with("cortex_")
    } else {
        *meta.level() <= Level::INFO
    }
}

/// The exporter's HTTP client: the workspace's `reqwest`, whose requests
/// run on the gateway's runtime. The SDK's batch processor exports from a
/// thread of its own that has no runtime; the request is spawned onto
/// `runtime` and awaited there, so no second client (blocking, or on a
/// runtime of its own) is built.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'s, 'f>(
        &'s self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { sent.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn off_unless_an_endpoint_or_the_exporter_is_named() {
        assert!(!wanted(&lookup(&[])).unwrap());
        assert!(!wanted(&lookup(&[("OTEL_SERVICE_NAME", "gw")])).unwrap());
        for on in [
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")],
            vec![(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            )],
            vec![("OTEL_TRACES_EXPORTER", "otlp")],
        ] {
            assert!(wanted(&lookup(&on)).unwrap(), "{on:?}");
        }
        for off in [
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
        ] {
            assert!(!wanted(&lookup(&off)).unwrap(), "{off:?}");
        }
    }

    #[test]
    fn unsupported_values_name_their_variable() {
        for (vars, variable) in [
            (
                vec![("OTEL_TRACES_EXPORTER", "jaeger")],
                "OTEL_TRACES_EXPORTER",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            ),
        ] {
            let l = lookup(&vars);
            let e = wanted(&l)
                .and_then(|_| timeout(&l).map(|_| true))
                .unwrap_err();
            assert_eq!(e.variable, variable, "{vars:?}");
        }
    }
}

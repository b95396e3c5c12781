//! The per-request audit scope: the middleware opens it, handlers describe
//! the request through the `note_*` functions (no-ops outside a scope), and
//! the middleware writes the line when the response is ready.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Instant, SystemTime},
};

use axum::{
    body::HttpBody as _,
    extract::{ConnectInfo, Request},
    response::Response,
};
use cortex_backend::Caller;
use serde_json::Value;

use super::{AuditRecord, AuditSink, Pseudonymizer, record, record::Label};
use crate::{
    metrics::Metrics,
    protocol::{MCP_METHOD, MCP_PROTOCOL_VERSION, Revision},
};

/// The audit middleware's state.
#[derive(Debug, Clone)]
pub(crate) struct Auditor {
    sink: AuditSink,
    keys: Arc<Pseudonymizer>,
    paths: Arc<Vec<String>>,
    metrics: Option<Arc<Metrics>>,
    refusals: Option<Arc<super::Refusals>>,
}

struct Scope {
    record: Mutex<AuditRecord>,
    keys: Arc<Pseudonymizer>,
    peer: Option<IpAddr>,
    /// Set when the messages of a batch are audited on lines of their own
    /// ([`audited_item`]): the request then writes no line of its own.
    split: AtomicBool,
    /// The request's span (traces on): writing the line is its `audit`
    /// child, and the request's span ends after it.
    trace: OnceLock<tracing::Span>,
}

/// Writes a scope's line if its future is dropped before it finished: the
/// client closed the connection while the request was in progress.
struct Unfinished<'a> {
    auditor: &'a Auditor,
    scope: &'a Scope,
    started: Instant,
    finished: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.finished && !self.scope.split.load(Ordering::Relaxed) {
            let mut r = take(self.scope);
            r.outcome = CLIENT_CLOSED.into();
            r.error_class = None;
            write_line(self.auditor, r, CLIENT_CLOSED_STATUS, None, self.started);
        }
    }
}

/// The outcome of a request whose client hung up before the answer.
pub(crate) const CLIENT_CLOSED: &str = "client_closed";
/// The status written for it (no answer was sent; 499 is the usual mark).
const CLIENT_CLOSED_STATUS: u16 = 499;

fn take(scope: &Scope) -> AuditRecord {
    std::mem::take(&mut *crate::sync::lock(&scope.record))
}

/// Completes `r` with what the answer says and queues it.
fn write_line(
    auditor: &Auditor,
    mut r: AuditRecord,
    status: u16,
    response_bytes: Option<u64>,
    started: Instant,
) {
    r.status = status;
    r.latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    r.response_bytes = response_bytes;
    if r.outcome.is_empty() {
        let (outcome, class) = record::outcome_of_status(r.status);
        r.outcome = outcome.into();
        if r.error_class.is_none() {
            r.error_class = class.map(Label::from);
        }
    }
    r.bound();
    if let Some(m) = &auditor.metrics {
        m.observe_duration(
            &r.http_method,
            r.status,
            r.method.as_deref(),
            r.error_class.as_ref(),
            std::time::Duration::from_secs_f64(r.latency_ms / 1000.0),
        );
        m.observe_request(
            r.method.as_deref(),
            &r.outcome,
            r.error_class.as_deref(),
            r.backend.as_deref(),
            std::time::Duration::from_secs_f64(r.latency_ms / 1000.0),
        );
    }
    if let Some(refusals) = &auditor.refusals {
        refusals.observe(&r);
    }
    auditor.sink.write(r);
}

/// The HTTP methods an audited route answers (others are written as sent).
const HTTP_METHODS: [&str; 4] = ["POST", "GET", "DELETE", "OPTIONS"];

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

impl Auditor {
    /// Audits requests whose path is one of `paths` (the MCP path, the
    /// operator paths), or under one ending in `/` (the link pages), into
    /// `sink`, pseudonymising with `keys`.
    pub(crate) fn new(sink: AuditSink, keys: Pseudonymizer, paths: Vec<String>) -> Self {
        Self {
            sink,
            keys: Arc::new(keys),
            paths: Arc::new(paths),
            metrics: None,
            refusals: None,
        }
    }

    /// Also keeps the last refusals in `refusals` (the status page).
    pub(crate) fn with_refusals(mut self, refusals: Arc<super::Refusals>) -> Self {
        self.refusals = Some(refusals);
        self
    }

    /// Also counts every audited request in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        metrics.track_audit_dropped(self.sink.dropped_counter());
        metrics.track_audit_reopen_failures(self.sink.reopen_failures());
        self.metrics = Some(metrics);
        self
    }

    /// The sink (for its dropped-line count).
    pub(crate) fn sink(&self) -> &AuditSink {
        &self.sink
    }
}

/// The client address the server stored in `request` (`ConnectInfo`), if
/// any.
pub(crate) fn connect_peer(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Runs `inner` inside an audit scope (for an audited path) and writes the
/// line when its response is ready. The caller passes the client address it
/// already knows (the server's hot path does not store it in the request's
/// extensions: that map costs two allocations per request).
pub(crate) async fn audited_from<F, Fut>(
    auditor: &Auditor,
    request: Request,
    peer: Option<IpAddr>,
    inner: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let path = request.uri().path();
    // An entry ending in `/` (other than `/` itself) covers the paths
    // under it (the link pages).
    if !auditor
        .paths
        .iter()
        .any(|p| p == path || (p.len() > 1 && p.ends_with('/') && path.starts_with(p.as_str())))
    {
        return inner(request).await;
    }
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let protocol = request
        .headers()
        .get(&MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            Revision::parse(v).map_or_else(|| record::word(v, &[], 32), |r| r.as_str().into())
        });
    let method = request
        .headers()
        .get(&MCP_METHOD)
        .and_then(|v| v.to_str().ok())
        .map(record::method_word);
    let scope = Arc::new(Scope {
        record: Mutex::new(AuditRecord {
            time: record::AuditTime(SystemTime::now()),
            http_method: record::word(request.method().as_str(), &HTTP_METHODS, 16),
            path,
            protocol,
            method,
            ..AuditRecord::default()
        }),
        keys: auditor.keys.clone(),
        peer,
        split: AtomicBool::new(false),
        trace: OnceLock::new(),
    });
    let mut unfinished = Unfinished {
        auditor,
        scope: &scope,
        started,
        finished: false,
    };
    let response = SCOPE.scope(scope.clone(), inner(request)).await;
    unfinished.finished = true;
    if !scope.split.load(Ordering::Relaxed) {
        let status = response.status().as_u16();
        let bytes = response.body().size_hint().exact();
        let _audit = scope.trace.get().map(|request| {
            tracing::debug_span!(target: crate::telemetry::TARGET, parent: request, "audit")
                .entered()
        });
        write_line(auditor, take(&scope), status, bytes, started);
    }
    response
}

/// Runs one message of a JSON-RPC batch in an audit scope of its own, so
/// that it gets a line of its own (the caller, path and protocol copied
/// from the request's scope); the request itself then writes none. The
/// line's status is `status` (the batch answer's); its outcome is what the
/// handlers noted, else `ok`, or `error` with class `rpc_error` when the
/// message's answer is a JSON-RPC error. Outside an audited request it
/// only runs `message`.
pub(crate) async fn audited_item<T, Fut>(
    auditor: &Auditor,
    status: u16,
    message: Fut,
    failed: impl FnOnce(&T) -> bool,
) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    let Ok(item) = SCOPE.try_with(|parent| {
        parent.split.store(true, Ordering::Relaxed);
        let p = crate::sync::lock(&parent.record);
        Arc::new(Scope {
            record: Mutex::new(AuditRecord {
                time: record::AuditTime(SystemTime::now()),
                caller: p.caller.clone(),
                sub: p.sub.clone(),
                client_id: p.client_id.clone(),
                http_method: p.http_method.clone(),
                path: p.path.clone(),
                protocol: p.protocol.clone(),
                ..AuditRecord::default()
            }),
            keys: parent.keys.clone(),
            peer: parent.peer,
            split: AtomicBool::new(false),
            trace: OnceLock::new(),
        })
    }) else {
        return message.await;
    };
    let started = Instant::now();
    let mut unfinished = Unfinished {
        auditor,
        scope: &item,
        started,
        finished: false,
    };
    let answer = SCOPE.scope(item.clone(), message).await;
    unfinished.finished = true;
    let mut r = take(&item);
    if r.outcome.is_empty() && answer.as_ref().is_some_and(failed) {
        r.outcome = "error".into();
        r.error_class = Some("rpc_error".into());
    } else if r.outcome.is_empty() {
        r.outcome = "ok".into();
    }
    write_line(auditor, r, status, None, started);
    answer
}

fn with_scope(f: impl FnOnce(&Scope)) {
    let _ = SCOPE.try_with(|s| f(s));
}

/// Describes the current request (no-op outside an audited request).
pub(crate) fn note(f: impl FnOnce(&mut AuditRecord)) {
    with_scope(|s| f(&mut crate::sync::lock(&s.record)));
}

/// Keeps the request's span (a disabled one is not kept) for the `audit`
/// span written with the line.
pub(crate) fn note_trace(span: &tracing::Span) {
    if !span.is_disabled() {
        with_scope(|s| {
            let _ = s.trace.set(span.clone());
        });
    }
}

/// Records the authenticated caller (pseudonymised; the pseudonym is
/// computed once per verified caller).
pub(crate) fn note_caller(caller: &Arc<Caller>) {
    with_scope(|s| {
        let who = s.keys.verified_caller(caller);
        let mut r = crate::sync::lock(&s.record);
        r.caller = Some(who.pseudonym.clone());
        r.sub = Some(who.sub.clone());
        r.client_id = who.client_id.clone();
    });
}

/// Records who linked, or tried to link, an account at `server` (the link
/// pages have no token: the `sub` is the one the link ticket was issued
/// to). No `caller` pseudonym: without the token's e-mail it could differ
/// from the one on the user's MCP lines; the `sub` matches them.
pub(crate) fn note_link(sub: Option<&str>, server: &str) {
    with_scope(|s| {
        let mut r = crate::sync::lock(&s.record);
        if let Some(sub) = sub {
            r.sub = Some(super::pseudonym::bounded(sub).into());
        }
        r.backend = Some(super::pseudonym::bounded(server).to_string());
    });
}

/// Records the hash of a tool call's arguments (never the values).
pub(crate) fn note_arguments(arguments: &Value) {
    with_scope(|s| {
        let hash = s.keys.arguments(arguments);
        crate::sync::lock(&s.record).args_hash = Some(hash);
    });
}

/// Records how the request ended, when the HTTP status does not say it
/// (a tool error inside a 200, a refusal with a class).
pub(crate) fn note_outcome(outcome: &'static str, class: Option<&'static str>) {
    note(|r| {
        r.outcome = outcome.into();
        r.error_class = class.map(Label::from);
    });
}

/// The client address of the current request, when the server was started
/// with connection info (the rate limiter's key before authentication).
pub(crate) fn peer() -> Option<IpAddr> {
    SCOPE.try_with(|s| s.peer).ok().flatten()
}

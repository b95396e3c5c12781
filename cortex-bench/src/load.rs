//! The load generator: a fixed number of keep-alive HTTP/1.1 connections,
//! each sending its next request as soon as the previous answer is read
//! (closed loop), for a warm-up and then a measured window. Every measured
//! request's latency is kept, so percentiles are exact.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    header::{HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request without an answer after this long counts as an error and
/// ends its connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One request shape: a POST (or another method) to `path` with these
/// headers and body.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    method: hyper::Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Template {
    /// A JSON POST to `path`.
    pub(crate) fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Self {
            method: hyper::Method::POST,
            path: path.to_owned(),
            headers: vec![(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: body.into(),
        }
    }

    /// A request with `method` and no body.
    pub(crate) fn bodiless(method: hyper::Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> anyhow::Result<Self> {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_str(value).with_context(|| format!("bad value for {name}"))?,
        ));
        Ok(self)
    }

    /// Adds `Authorization: Bearer <token>`.
    pub(crate) fn bearer(self, token: &str) -> anyhow::Result<Self> {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// The request, addressed to `addr`.
    pub(crate) fn build_for(&self, addr: SocketAddr) -> Request<Full<Bytes>> {
        self.build(addr, None)
    }

    fn build(&self, addr: SocketAddr, bearer: Option<&HeaderValue>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.parse().unwrap_or_default();
        let headers = request.headers_mut();
        headers.insert(
            hyper::header::HOST,
            HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("x")),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(bearer) = bearer {
            headers.insert(hyper::header::AUTHORIZATION, bearer.clone());
        }
        request
    }
}

/// What the connections send.
pub(crate) struct Source {
    /// Connection `i` sends `templates[i % len]`.
    templates: Vec<Template>,
    /// When set, every request carries the next unused token of the pool
    /// (`Authorization` overridden) and the run ends when the pool is empty.
    fresh_tokens: Option<(Vec<HeaderValue>, AtomicUsize)>,
}

impl Source {
    /// Every connection sends the same request.
    pub(crate) fn same(template: Template) -> Self {
        Self::per_connection(vec![template])
    }

    /// Connection `i` sends `templates[i % len]` (e.g. one legacy session each).
    pub(crate) fn per_connection(templates: Vec<Template>) -> Self {
        Self {
            templates,
            fresh_tokens: None,
        }
    }

    /// Every request uses a token never sent before, taken from `tokens`.
    pub(crate) fn fresh_tokens(template: Template, tokens: &[String]) -> anyhow::Result<Self> {
        let tokens = tokens
            .iter()
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            templates: vec![template],
            fresh_tokens: Some((tokens, AtomicUsize::new(0))),
        })
    }

    fn next(&self, conn: usize, addr: SocketAddr) -> Option<Request<Full<Bytes>>> {
        let template = &self.templates[conn % self.templates.len()];
        match &self.fresh_tokens {
            None => Some(template.build(addr, None)),
            Some((tokens, next)) => {
                let token = tokens.get(next.fetch_add(1, Ordering::Relaxed))?;
                Some(template.build(addr, Some(token)))
            }
        }
    }
}

/// Checks a response body; an `Err` stops the run (a benchmark of error
/// answers would be meaningless).
pub(crate) type Check = fn(&[u8]) -> Result<(), String>;

/// How to drive one target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Keep-alive connections, each with one request in flight.
    pub(crate) connections: usize,
    /// Requests before this are not measured.
    pub(crate) warmup: Duration,
    /// Length of the measured window.
    pub(crate) duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    /// Every answered request, warm-up included (for CPU per request).
    pub(crate) total: u64,
    /// Measured requests answered 2xx.
    pub(crate) ok: u64,
    /// Measured requests answered otherwise, or failed.
    pub(crate) errors: u64,
    /// From the start of the measured window to its last answer.
    pub(crate) elapsed: Duration,
    /// Latency of every measured request, nanoseconds.
    pub(crate) latencies_ns: Vec<u64>,
}

impl Sample {
    /// Adds another run's figures (rounds of the same variant).
    pub(crate) fn merge(&mut self, other: Sample) {
        self.total += other.total;
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies_ns.extend(other.latencies_ns);
    }

    /// Answered requests per second.
    pub(crate) fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.ok + self.errors) as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub(crate) fn quantile(&mut self, q: f64) -> Duration {
        if self.latencies_ns.is_empty() {
            return Duration::ZERO;
        }
        self.latencies_ns.sort_unstable();
        let rank = ((self.latencies_ns.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_nanos(self.latencies_ns[rank])
    }
}

struct ConnResult {
    total: u64,
    ok: u64,
    errors: u64,
    last: Option<Instant>,
    latencies_ns: Vec<u64>,
}

/// Drives `addr` with `source` as `load` says, checking the first answer
/// of every connection with `check`.
pub(crate) async fn run(
    addr: SocketAddr,
    source: Arc<Source>,
    load: Load,
    check: Check,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let until = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for conn in 0..load.connections {
        let source = source.clone();
        tasks.push(tokio::spawn(async move {
            drive(addr, conn, &source, measure_from, until, check).await
        }));
    }
    let mut sample = Sample::default();
    let mut last = measure_from;
    for task in tasks {
        let result = task.await.context("a load connection panicked")??;
        sample.total += result.total;
        sample.ok += result.ok;
        sample.errors += result.errors;
        sample.latencies_ns.extend(result.latencies_ns);
        if let Some(l) = result.last {
            last = last.max(l);
        }
    }
    sample.elapsed = last.saturating_duration_since(measure_from);
    Ok(sample)
}

async fn drive(
    addr: SocketAddr,
    conn: usize,
    source: &Source,
    measure_from: Instant,
    until: Instant,
    check: Check,
) -> anyhow::Result<ConnResult> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut result = ConnResult {
        total: 0,
        ok: 0,
        errors: 0,
        last: None,
        latencies_ns: Vec::new(),
    };
    let mut checked = false;
    loop {
        let sent_at = Instant::now();
        if sent_at >= until {
            break;
        }
        let Some(request) = source.next(conn, addr) else {
            break;
        };
        sender.ready().await?;
        let exchange = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
        };
        let done = Instant::now();
        let ok = match &outcome {
            Ok((status, body)) => {
                if !checked {
                    checked = true;
                    verify(*status, body, check)?;
                }
                status.is_success()
            }
            Err(_) => false,
        };
        result.total += 1;
        if sent_at >= measure_from {
            result.latencies_ns.push((done - sent_at).as_nanos() as u64);
            result.last = Some(done);
            if ok {
                result.ok += 1;
            } else {
                result.errors += 1;
            }
        }
        if outcome.is_err() {
            // The connection is gone; a benchmark does not reconnect.
            break;
        }
    }
    Ok(result)
}

fn verify(status: StatusCode, body: &[u8], check: Check) -> anyhow::Result<()> {
    let shown = || String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
    if !status.is_success() {
        bail!("the target answered {status}: {}", shown());
    }
    if let Err(problem) = check(body) {
        bail!("unexpected answer ({problem}): {}", shown());
    }
    Ok(())
}

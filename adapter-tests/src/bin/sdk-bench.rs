//! The SDK's cost, measured: requests per second of a trivial tool served
//! through `cortex-backend-axum` / `cortex-backend-actix` versus a
//! hand-written handler in the same framework doing the same work (verify
//! the JWT with jsonwebtoken, deserialize the same arguments, return the
//! same JSON), at the same concurrency, in the same run.
//!
//! ```text
//! cargo run --release -p adapter-tests --bin sdk-bench
//! ```
//!
//! Settings (environment): `BENCH_CONNECTIONS` (default 32),
//! `BENCH_SECONDS` per measurement (default 3), `BENCH_ROUNDS` (default 3;
//! the targets are measured in turn each round, so drifts hit all alike),
//! `BENCH_WORKERS` server threads (default 1).
//!
//! The SDK remembers verified tokens until they expire; a hand-written
//! handler usually verifies every request. Both baselines are measured:
//! "verifies every request" and "caches verified tokens" (a map from token
//! to claims, as careful hand-written code would add).

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use adapter_tests::{Adapter, serve_actix, serve_axum};
use anyhow::Context as _;
use bytes::Bytes;
use cortex_backend::{Auth, Backend, Ctx, ToolError, ToolFn, testing::TestIssuer};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://cortex.bench/backends/calc";
const SCOPE: &str = "mcp:calc:read";
const PATH: &str = cortex_backend::contract::DEFAULT_PATH;
const BODY: &str = r#"{"method":"add","params":{"a":2,"b":40}}"#;

#[derive(Deserialize, JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Serialize, JsonSchema)]
struct Sum {
    sum: i64,
}

async fn add(_: Ctx<()>, args: AddArgs) -> Result<Sum, ToolError> {
    Ok(Sum {
        sum: args.a + args.b,
    })
}

fn sdk_backend(issuer: &TestIssuer) -> anyhow::Result<Backend<()>> {
    Ok(Backend::builder("calc")
        .auth(Auth::new(issuer.auth_config(AUDIENCE, &[]))?)
        .tool(
            ToolFn::new("add")
                .scope(SCOPE)
                .description("Add two integers.")
                .handler(add),
        )
        .build()?)
}

/// The hand-written endpoint: what a careful developer writes without the SDK.
struct HandWritten {
    key: DecodingKey,
    validation: Validation,
    cache: Option<Mutex<HashMap<String, Arc<Value>>>>,
}

#[derive(Deserialize)]
struct Envelope {
    method: String,
    #[serde(default)]
    params: Option<Value>,
}

fn error(status: u16, message: &str) -> (u16, Vec<u8>) {
    (status, json!({"error": message}).to_string().into_bytes())
}

impl HandWritten {
    fn new(issuer: &TestIssuer, jwks: &JwkSet, cache: bool) -> anyhow::Result<Self> {
        let jwk = jwks
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some("cortex-test-1"))
            .context("the issuer's signing key in its JWKS")?;
        // The claims the SDK backend is configured with (the defaults: `nbf`
        // checked when present, not required), so both verify the same.
        let config = issuer.jwt_config(AUDIENCE);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&config.audiences);
        if config.require_nbf {
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        } else {
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        }
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Ok(Self {
            key: DecodingKey::from_jwk(jwk)?,
            validation,
            cache: cache.then(|| Mutex::new(HashMap::new())),
        })
    }

    fn claims(&self, token: &str) -> Option<Arc<Value>> {
        if let Some(cache) = &self.cache
            && let Some(claims) = cache.lock().ok()?.get(token)
        {
            return Some(claims.clone());
        }
        let claims = Arc::new(
            jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
                .ok()?
                .claims,
        );
        if let Some(cache) = &self.cache {
            cache.lock().ok()?.insert(token.to_string(), claims.clone());
        }
        Some(claims)
    }

    fn answer(
        &self,
        content_type: Option<&[u8]>,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        if content_type != Some(b"application/json") {
            return error(400, "Content-Type must be application/json");
        }
        let Some(token) = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return error(401, "missing bearer token");
        };
        let Some(claims) = self.claims(token) else {
            return error(401, "invalid token");
        };
        let granted = claims["scope"].as_str().unwrap_or("");
        if !granted.split(' ').any(|s| s == SCOPE) {
            return (
                403,
                json!({"error": "missing scope", "required": SCOPE})
                    .to_string()
                    .into_bytes(),
            );
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
            return error(400, "invalid JSON");
        };
        if envelope.method != "add" {
            return error(400, "unknown method");
        }
        let Ok(args) =
            serde_json::from_value::<AddArgs>(envelope.params.unwrap_or_else(|| json!({})))
        else {
            return error(400, "invalid params");
        };
        let sum = Sum {
            sum: args.a + args.b,
        };
        (200, serde_json::to_vec(&sum).unwrap_or_default())
    }
}

fn handwritten_axum(handler: Arc<HandWritten>) -> axum::Router {
    use axum::{
        body::Bytes,
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
    };
    axum::Router::new().route(
        PATH,
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let handler = handler.clone();
            async move {
                let (status, body) = handler.answer(
                    headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
                    headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
                    &body,
                );
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

fn handwritten_actix(
    handler: Arc<HandWritten>,
) -> impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static {
    use actix_web::{HttpRequest, HttpResponse, http::StatusCode, http::header, web};
    move |config: &mut web::ServiceConfig| {
        let handler = handler.clone();
        config.route(
            PATH,
            web::post().to(move |request: HttpRequest, body: web::Bytes| {
                let handler = handler.clone();
                async move {
                    let (status, body) = handler.answer(
                        request
                            .headers()
                            .get(header::CONTENT_TYPE)
                            .map(|v| v.as_bytes()),
                        request
                            .headers()
                            .get(header::AUTHORIZATION)
                            .map(|v| v.as_bytes()),
                        &body,
                    );
                    HttpResponse::build(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    )
                    .content_type("application/json")
                    .body(body)
                }
            }),
        );
    }
}

struct Settings {
    connections: usize,
    seconds: u64,
    rounds: usize,
    workers: usize,
}

fn setting(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a positive whole number, got `{v}`")),
        Err(_) => Ok(default),
    }
}

/// One request over an open connection; `Ok(body)` on 200.
async fn call(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    token: &str,
) -> anyhow::Result<Bytes> {
    let request = hyper::Request::post(PATH)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == 200,
        "status {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Requests per second with `connections` keep-alive connections for `duration`.
async fn measure(
    addr: SocketAddr,
    token: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut sender = connect(addr).await?;
        let (stop, done, token) = (stop.clone(), done.clone(), token.to_string());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                call(&mut sender, addr, &token).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Mean microseconds per call of `f` over about a second.
async fn per_call_micros<F, Fut>(f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            assert_eq!(f().await, 200);
        }
        calls += 100;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

async fn fetch_jwks(issuer: &TestIssuer) -> anyhow::Result<JwkSet> {
    let mut sender = connect(issuer.addr()).await?;
    let request = hyper::Request::get("/jwks.json")
        .header("host", issuer.addr().to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

struct Target {
    name: String,
    addr: SocketAddr,
    rates: Vec<f64>,
}

async fn run() -> anyhow::Result<ExitCode> {
    let settings = Settings {
        connections: setting("BENCH_CONNECTIONS", 32)? as usize,
        seconds: setting("BENCH_SECONDS", 3)?,
        rounds: setting("BENCH_ROUNDS", 3)? as usize,
        workers: setting("BENCH_WORKERS", 1)? as usize,
    };
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run with --release for meaningful figures");
    }
    let issuer = TestIssuer::start().await?;
    let token = issuer.token(AUDIENCE).sub("bench").scopes([SCOPE]).mint();
    let jwks = fetch_jwks(&issuer).await?;
    let verify_each = Arc::new(HandWritten::new(&issuer, &jwks, false)?);
    let cached = Arc::new(HandWritten::new(&issuer, &jwks, true)?);
    let w = settings.workers;
    let mut targets = vec![
        ("axum sdk", Adapter::Axum.serve(sdk_backend(&issuer)?, w)?),
        (
            "axum hand-written, verifies every request",
            serve_axum(handwritten_axum(verify_each.clone()), w)?,
        ),
        (
            "axum hand-written, caches tokens",
            serve_axum(handwritten_axum(cached.clone()), w)?,
        ),
        ("actix sdk", Adapter::Actix.serve(sdk_backend(&issuer)?, w)?),
        (
            "actix hand-written, verifies every request",
            serve_actix(handwritten_actix(verify_each), w)?,
        ),
        (
            "actix hand-written, caches tokens",
            serve_actix(handwritten_actix(cached.clone()), w)?,
        ),
    ]
    .into_iter()
    .map(|(name, addr)| Target {
        name: name.to_string(),
        addr,
        rates: Vec::new(),
    })
    .collect::<Vec<_>>();

    // Same answer everywhere, or the comparison means nothing.
    for t in &targets {
        let body = call(&mut connect(t.addr).await?, t.addr, &token).await?;
        let value: Value = serde_json::from_slice(&body)?;
        anyhow::ensure!(value == json!({"sum": 42}), "{} answered {value}", t.name);
    }

    // Without HTTP: the dispatcher alone versus the hand-written logic alone.
    let backend = sdk_backend(&issuer)?;
    let sdk_call = || {
        cortex_backend::Request::post(BODY)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
    };
    anyhow::ensure!(backend.handle(sdk_call()).await.status == 200);
    let sdk_us = per_call_micros(|| async { backend.handle(sdk_call()).await.status }).await;
    let authorization = format!("Bearer {token}");
    let hand_us = per_call_micros(|| async {
        cached
            .answer(
                Some(b"application/json"),
                Some(authorization.as_bytes()),
                BODY.as_bytes(),
            )
            .0
    })
    .await;
    println!(
        "without HTTP: dispatcher {sdk_us:.2} us/call, hand-written (cached token) {hand_us:.2} us/call"
    );

    println!(
        "sdk-bench: trivial tool `add`, {} connections, {} s x {} rounds per target, {} server thread(s), 2 s warm-up",
        settings.connections, settings.seconds, settings.rounds, settings.workers
    );
    for t in &targets {
        measure(t.addr, &token, settings.connections, Duration::from_secs(2)).await?;
    }
    for _ in 0..settings.rounds {
        for t in &mut targets {
            let rate = measure(
                t.addr,
                &token,
                settings.connections,
                Duration::from_secs(settings.seconds),
            )
            .await?;
            t.rates.push(rate);
        }
    }
    let mean = |t: &Target| t.rates.iter().sum::<f64>() / t.rates.len() as f64;
    for t in &targets {
        println!("{:<45} {:>9.0} req/s", t.name, mean(t));
    }
    let mut below = false;
    for (sdk, baselines) in [(0, [1, 2]), (3, [4, 5])] {
        for b in baselines {
            let ratio = mean(&targets[sdk]) / mean(&targets[b]);
            below |= ratio < 0.95;
            println!(
                "ratio {:<10} / {:<34} {ratio:.3}",
                targets[sdk].name,
                targets[b]
                    .name
                    .trim_start_matches("axum ")
                    .trim_start_matches("actix "),
            );
        }
    }
    println!(
        "target: every ratio >= 0.95 {}",
        if below { "(missed)" } else { "(met)" }
    );
    Ok(if below {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sdk-bench failed: {e:#}");
            ExitCode::from(2)
        }
    }
}

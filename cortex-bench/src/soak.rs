//! The `soak` scenario: 64 callers (each its own token and keep-alive
//! connection) mixing `tools/list`, `tools/call` of a read and of a write
//! tool, `whoami`, a legacy session opened, used and closed, and requests
//! with a refused token, for a warm-up and then `--soak-duration`, against
//! a gateway with 1,000 tools. Every answer is checked against what that
//! request must get; the figures are the answers that were not, and the
//! gateway's RSS at the end against its RSS after the warm-up.
//!
//! The warm-up lasts at least `--soak-warmup` and until the gateway's RSS
//! has settled (grown by less than [`SETTLED_GROWTH`] over
//! [`SETTLE_WINDOW`]): its bounded caches and the allocator's heap fill
//! at a pace set by the host's speed, so a fixed time would measure the
//! filling on a slow host as growth. A leak keeps growing after that and
//! shows in the ratio.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cortex_backend::testing::BrokenToken;
use hyper::StatusCode;
use serde_json::json;

use crate::{
    backend::{READ_TOOL, SCOPE, WRITE_SCOPE, WRITE_TOOL},
    child::Child,
    gateway::CANONICAL_URI,
    load::Template,
    mcp,
    report::Verdict,
    scenarios::{Bench, LARGE_BACKENDS},
};

const CALLERS: usize = 64;
/// End RSS over RSS after the warm-up, at most.
const RSS_GROWTH_TARGET: f64 = 1.1;
/// An answer later than this is an unexpected error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Unexpected answers kept for the report.
const KEPT_EXAMPLES: usize = 5;
/// The warm-up ends once the RSS grew by less than this fraction over
/// [`SETTLE_WINDOW`] (a leak of this pace would add 3 % a minute).
const SETTLED_GROWTH: f64 = 0.005;
const SETTLE_WINDOW: Duration = Duration::from_secs(10);
/// The warm-up ends here even if the RSS is still growing (the ratio then
/// shows the growth).
const MAX_WARMUP: Duration = Duration::from_secs(180);

/// The kinds of request in the mix, in the order each caller cycles them.
#[derive(Debug, Clone, Copy)]
enum Op {
    List,
    Read,
    Write,
    Whoami,
    Session,
    Refused,
}

const OPS: [Op; 6] = [
    Op::List,
    Op::Read,
    Op::Write,
    Op::Whoami,
    Op::Session,
    Op::Refused,
];

impl Op {
    fn label(self) -> &'static str {
        match self {
            Self::List => "tools/list",
            Self::Read => "tools/call (read)",
            Self::Write => "tools/call (write)",
            Self::Whoami => "whoami",
            Self::Session => "legacy session: open, call, close",
            Self::Refused => "refused token (401 expected)",
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: [AtomicU64; OPS.len()],
    unexpected: [AtomicU64; OPS.len()],
    examples: Mutex<Vec<String>>,
}

impl Counts {
    fn note(&self, op: usize, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ok[op].fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                self.unexpected[op].fetch_add(1, Ordering::Relaxed);
                let mut kept = cortex_backend::sync::lock(&self.examples);
                if kept.len() < KEPT_EXAMPLES {
                    kept.push(format!("{}: {why}", OPS[op].label()));
                }
            }
        }
    }

    fn total(counts: &[AtomicU64]) -> u64 {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One caller's requests, built once.
struct Caller {
    token: String,
    list: Template,
    read: Template,
    write: Template,
    whoami: Template,
    refused: Template,
}

impl Caller {
    fn new(i: usize, token: String, refused_token: &str) -> anyhow::Result<Self> {
        let backend = i % LARGE_BACKENDS;
        let read = json!({"name": format!("b{backend}_{READ_TOOL}"), "arguments": {"id": "42"}});
        let write = json!({"name": format!("b{backend}_{WRITE_TOOL}"),
            "arguments": {"id": "42", "name": format!("soak-{i}")}});
        Ok(Self {
            list: mcp::list(mcp::list_params(), &token)?,
            read: mcp::modern("tools/call", read, &token)?,
            write: mcp::modern("tools/call", write, &token)?,
            whoami: mcp::modern(
                "tools/call",
                json!({"name": "whoami", "arguments": {}}),
                &token,
            )?,
            refused: mcp::list(mcp::list_params(), refused_token)?,
            token,
        })
    }
}

/// One exchange with a deadline; `Err` for no answer.
async fn ask(
    sender: &mut mcp::Sender,
    addr: SocketAddr,
    template: &Template,
) -> Result<(StatusCode, bytes::Bytes), String> {
    match tokio::time::timeout(ANSWER_TIMEOUT, mcp::exchange(sender, addr, template)).await {
        Ok(Ok((status, _, body))) => Ok((status, body)),
        Ok(Err(e)) => Err(format!("no answer: {e:#}")),
        Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

fn expect(
    (status, body): &(StatusCode, bytes::Bytes),
    want: StatusCode,
    check: Option<crate::load::Check>,
) -> Result<(), String> {
    let shown = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if *status != want {
        return Err(format!("{status} (expected {want}): {}", shown()));
    }
    match check.map(|c| c(body)) {
        Some(Err(why)) => Err(format!("{why}: {}", shown())),
        _ => Ok(()),
    }
}

/// A successful tool call: not a tool error, not a JSON-RPC error.
fn check_tool(body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if text.contains("\"isError\":true") || text.contains("\"error\":{") {
        return Err("the call failed".into());
    }
    Ok(())
}

async fn one(
    op: Op,
    caller: &Caller,
    sender: &mut mcp::Sender,
    addr: SocketAddr,
) -> Result<(), String> {
    let ok = StatusCode::OK;
    match op {
        Op::List => expect(
            &ask(sender, addr, &caller.list).await?,
            ok,
            Some(mcp::check_list),
        ),
        Op::Read => expect(
            &ask(sender, addr, &caller.read).await?,
            ok,
            Some(mcp::check_call),
        ),
        Op::Write => expect(
            &ask(sender, addr, &caller.write).await?,
            ok,
            Some(check_tool),
        ),
        Op::Whoami => expect(
            &ask(sender, addr, &caller.whoami).await?,
            ok,
            Some(check_tool),
        ),
        Op::Refused => expect(
            &ask(sender, addr, &caller.refused).await?,
            StatusCode::UNAUTHORIZED,
            None,
        ),
        Op::Session => {
            let token = &caller.token;
            let session = tokio::time::timeout(
                ANSWER_TIMEOUT,
                mcp::open_session(sender, addr, token, mcp::LEGACY),
            )
            .await
            .map_err(|_| "initialize: no answer".to_owned())?
            .map_err(|e| format!("{e:#}"))?;
            let call = mcp::legacy("tools/call", mcp::call_params(), token, &session)
                .map_err(|e| e.to_string())?;
            expect(&ask(sender, addr, &call).await?, ok, Some(mcp::check_call))?;
            let end = mcp::end_session(token, &session).map_err(|e| e.to_string())?;
            expect(
                &ask(sender, addr, &end).await?,
                StatusCode::NO_CONTENT,
                None,
            )
        }
    }
}

/// Waits at least `least`, then until the gateway's RSS has settled or
/// [`MAX_WARMUP`] has passed; returns the RSS (KiB) and the warm-up's length.
async fn warm_up(gw: &Child, least: Duration) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    tokio::time::sleep(least).await;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    loop {
        let now = Instant::now();
        let rss = gw.status_kib("VmRSS")?;
        let window_ago = samples
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= SETTLE_WINDOW);
        let settled =
            window_ago.is_some_and(|(_, old)| rss as f64 <= *old as f64 * (1.0 + SETTLED_GROWTH));
        if settled || now.duration_since(start) >= MAX_WARMUP {
            return Ok((rss, now.duration_since(start)));
        }
        samples.push((now, rss));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the scenario.
pub(crate) async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let options = bench.options;
    let backends = bench.large_backend().await?.addr();
    let gw = bench
        .spawn_gateway_with(
            "gateway (soak)",
            &Bench::upstreams(backends, LARGE_BACKENDS),
            &[],
        )
        .await?;
    let addr = gw.addr();
    let issuer = &bench.issuer;
    let refused: Vec<String> = BrokenToken::ALL
        .iter()
        .map(|kind| issuer.broken(*kind, CANONICAL_URI, "soak-refused", &[SCOPE]))
        .chain(["not-a-jwt".to_owned()])
        .collect();
    let callers = tokio::task::block_in_place(|| {
        (0..CALLERS)
            .map(|i| {
                let token = issuer
                    .token(CANONICAL_URI)
                    .sub(&format!("soak-{i}"))
                    .email(&format!("soak-{i}@example.com"))
                    .scopes([SCOPE, WRITE_SCOPE])
                    .mint();
                Caller::new(i, token, &refused[i % refused.len()]).map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    // Every backend fetches the issuer's keys on its first token: done
    // before the callers start, so the JWKS fetch of 50 backends at once
    // is not part of the mix.
    let mut sender = mcp::connect(addr).await?;
    // Caller `b` reads from backend `b` (CALLERS > LARGE_BACKENDS).
    for (b, caller) in callers.iter().enumerate().take(LARGE_BACKENDS) {
        let answer = ask(&mut sender, addr, &caller.read)
            .await
            .map_err(anyhow::Error::msg)?;
        if let Err(why) = expect(&answer, StatusCode::OK, Some(mcp::check_call)) {
            anyhow::bail!("backend b{b} does not answer a first call: {why}");
        }
    }
    drop(sender);
    println!(
        "\n## soak: {CALLERS} callers, a warm-up of at least {:?} until the RSS settles, then {:?}; gateway with 1,000 tools\n",
        options.soak_warmup, options.soak_duration
    );
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, caller) in callers.into_iter().enumerate() {
        let counts = counts.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = None;
            let mut k = i;
            while !stop.load(Ordering::Relaxed) {
                let op = k % OPS.len();
                k += 1;
                if sender.is_none() {
                    match mcp::connect(addr).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            counts.note(op, Err(format!("cannot connect: {e:#}")));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                let outcome = one(OPS[op], &caller, s, addr).await;
                if outcome.as_ref().is_err_and(|e| e.starts_with("no answer")) {
                    sender = None;
                }
                counts.note(op, outcome);
            }
        }));
    }
    let (warm_kib, warmed) = warm_up(&gw, options.soak_warmup).await?;
    let warm_requests = Counts::total(&counts.ok) + Counts::total(&counts.unexpected);
    let measured_from = Instant::now();
    tokio::time::sleep(options.soak_duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let measured = measured_from.elapsed();
    let end_kib = gw.status_kib("VmRSS")?;
    let peak_kib = gw.status_kib("VmHWM")?;
    println!(
        "| {:<36} | {:>10} | {:>10} |",
        "request", "as expected", "unexpected"
    );
    println!("|{:-<38}|{:->12}|{:->12}|", "", "", "");
    for (i, op) in OPS.iter().enumerate() {
        println!(
            "| {:<36} | {:>11} | {:>10} |",
            op.label(),
            counts.ok[i].load(Ordering::Relaxed),
            counts.unexpected[i].load(Ordering::Relaxed)
        );
    }
    let unexpected = Counts::total(&counts.unexpected);
    let requests = Counts::total(&counts.ok) + unexpected;
    let examples = cortex_backend::sync::lock(&counts.examples);
    for example in examples.iter() {
        println!("unexpected: {example}");
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nwarm-up {:.0} s ({warm_requests} requests); RSS after the warm-up {:.1} MiB, at the end {:.1} MiB, peak {:.1} MiB; {:.0} requests/s after the warm-up",
        warmed.as_secs_f64(),
        mib(warm_kib),
        mib(end_kib),
        mib(peak_kib),
        (requests - warm_requests) as f64 / measured.as_secs_f64().max(1e-9)
    );
    Ok(vec![
        Verdict::custom(
            &format!("soak: unexpected answers of {requests} requests"),
            unexpected.to_string(),
            "0".into(),
            unexpected == 0,
        ),
        Verdict::at_most(
            "soak: gateway RSS at the end / after the warm-up",
            end_kib as f64 / warm_kib.max(1) as f64,
            RSS_GROWTH_TARGET,
        ),
        Verdict::info(
            "soak: gateway RSS after the warm-up, at the end",
            format!(
                "{:.1}, {:.1} MiB (warm-up {:.0} s)",
                mib(warm_kib),
                mib(end_kib),
                warmed.as_secs_f64()
            ),
        ),
    ])
}

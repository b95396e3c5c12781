//! The `hostile` scenario: one caller with a valid token who means harm
//! (issue 22, section 3), against a gateway with 1,000 tools. Every item
//! runs in turn while slow-header connections stay open; the figure is the
//! gateway's peak RSS. What the gateway answered to each item is printed,
//! and its audit file is read at the end (lines, longest line, hang-ups).

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::watch,
};

use crate::{
    backend::{SCOPE, SLOW_MS, SLOW_TOOL, WRITE_SCOPE},
    child::Child,
    load::Template,
    mcp,
    report::Verdict,
    scenarios::{Bench, LARGE_BACKENDS},
};

/// Gateway peak RSS target, KiB.
const RSS_TARGET_KIB: u64 = 256 * 1024;
/// Connections each item is sent over.
const CONNECTIONS: usize = 16;
const FILTERED_LISTS: usize = 3_200;
const BATCHES: usize = 10;
const BATCH_SIZE: usize = 300;
/// Requests with a 300 KB tool name, and as many with a 300 KB method.
const BIG_NAMES: usize = 200;
const BIG_NAME_BYTES: usize = 300 * 1024;
const HANG_UPS: usize = 200;
/// How long after sending a call its client hangs up.
const HANG_UP_AFTER: Duration = Duration::from_millis(50);
const REBINDING: usize = 100;
const SESSIONS: usize = 4_000;
const WHOAMI: usize = 200;
const NON_ASCII: usize = 100;
const SLOW_HEADER_CONNECTIONS: usize = 256;
/// A slow-header connection sends one more header line this often.
const SLOW_HEADER_EVERY: Duration = Duration::from_secs(1);

/// Answers counted by kind (`200`, `200 tool error`, `403`, ...).
#[derive(Debug, Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, kind: String) {
        *self.0.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        for (k, n) in other.0 {
            *self.0.entry(k).or_default() += n;
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Names an answer: its status, plus what the body says when it matters.
type Classify = fn(StatusCode, &[u8]) -> String;

fn status_only(status: StatusCode, _: &[u8]) -> String {
    status.as_u16().to_string()
}

/// A `tools/call` answer: the status, and whether the tool failed.
fn call_answer(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.contains("\"isError\":true") {
        format!("{} tool error", status.as_u16())
    } else if text.contains("\"error\"") {
        format!("{} JSON-RPC error", status.as_u16())
    } else {
        status.as_u16().to_string()
    }
}

/// A batch answer: the status and how many answers it holds.
fn batch_answer(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(answers)) => {
            let errors = answers.iter().filter(|a| a.get("error").is_some()).count();
            format!(
                "{} with {} answers ({errors} errors)",
                status.as_u16(),
                answers.len()
            )
        }
        _ => status.as_u16().to_string(),
    }
}

/// Sends every template over `connections` keep-alive connections (a
/// connection the gateway closes is opened again) and counts the answers.
async fn send_all(
    addr: SocketAddr,
    templates: Vec<Template>,
    connections: usize,
    classify: Classify,
) -> anyhow::Result<Tally> {
    let templates = Arc::new(templates);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (templates, next) = (templates.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(template) = templates.get(i) else {
                    break;
                };
                if sender.is_none() {
                    sender = Some(mcp::connect(addr).await?);
                }
                let Some(s) = sender.as_mut() else { break };
                match mcp::exchange(s, addr, template).await {
                    Ok((status, _, body)) => tally.add(classify(status, &body)),
                    Err(_) => {
                        tally.add("connection closed".into());
                        sender = None;
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await??);
    }
    Ok(tally)
}

/// One line of the report.
struct Item {
    what: String,
    answers: String,
    rss_kib: u64,
    peak_kib: u64,
    took: Duration,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The slow-header connections: each sends a request line and then one
/// header line per [`SLOW_HEADER_EVERY`], never the empty line, until the
/// gateway closes it or the scenario ends.
struct SlowHeaders {
    closed: Arc<AtomicUsize>,
    opened: usize,
    stop: watch::Sender<bool>,
}

impl SlowHeaders {
    async fn start(addr: SocketAddr, count: usize) -> Self {
        let closed = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = watch::channel(false);
        let mut opened = 0;
        for i in 0..count {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                closed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            opened += 1;
            let (closed, mut stopped) = (closed.clone(), stopped.clone());
            tokio::spawn(async move {
                let start = format!("POST {} HTTP/1.1\r\nHost: {addr}\r\n", mcp::MCP_PATH);
                let mut ok = stream.write_all(start.as_bytes()).await.is_ok();
                let mut buf = [0u8; 1024];
                while ok {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = stream.read(&mut buf) => {
                            // An answer (408, 431), the end of the stream or
                            // an error: either way the gateway is done with it.
                            ok = false;
                        }
                        () = tokio::time::sleep(SLOW_HEADER_EVERY) => {
                            let line = format!("X-Slow-{i}: still sending\r\n");
                            ok = stream.write_all(line.as_bytes()).await.is_ok();
                        }
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
        Self {
            closed,
            opened,
            stop,
        }
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for SlowHeaders {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Sends a `tools/call` of the slow tool and hangs up [`HANG_UP_AFTER`]
/// later, before the answer.
async fn hang_up(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let params = json!({"name": format!("b0_{SLOW_TOOL}"), "arguments": {"id": "1"}});
    let mut body_params = params.clone();
    body_params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": mcp::MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let body = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": body_params}),
    )?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\n\
         MCP-Protocol-Version: {}\r\nMcp-Method: tools/call\r\nMcp-Name: b0_{SLOW_TOOL}\r\n\
         Content-Length: {}\r\n\r\n",
        mcp::MCP_PATH,
        mcp::MODERN,
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    tokio::time::sleep(HANG_UP_AFTER).await;
    drop(stream);
    Ok(())
}

/// What the audit file says after the run.
struct AuditSummary {
    lines: usize,
    longest: usize,
    calls: usize,
    client_closed: usize,
}

fn read_audit(path: &std::path::Path) -> anyhow::Result<AuditSummary> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the audit file {}", path.display()))?;
    let mut summary = AuditSummary {
        lines: 0,
        longest: 0,
        calls: 0,
        client_closed: 0,
    };
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        summary.lines += 1;
        summary.longest = summary.longest.max(line.len());
        let text = String::from_utf8_lossy(&line);
        if text.contains("\"method\":\"tools/call\"") {
            summary.calls += 1;
        }
        if text.contains("client_closed") {
            summary.client_closed += 1;
        }
    }
    Ok(summary)
}

/// Runs the scenario.
pub(crate) async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let backends = bench.large_backend().await?.addr();
    let audit =
        std::env::temp_dir().join(format!("cortex-bench-hostile-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let extra = [("CORTEX_AUDIT_FILE".to_owned(), audit.display().to_string())];
    let gw = bench
        .spawn_gateway_with(
            "gateway (hostile)",
            &Bench::upstreams(backends, LARGE_BACKENDS),
            &extra,
        )
        .await?;
    let result = items(bench, &gw, &token).await;
    let audited = read_audit(&audit);
    let _ = std::fs::remove_file(&audit);
    let (rows, slow) = result?;
    print_rows(&rows);
    let peak = rows.last().map_or(0, |r| r.peak_kib);
    let mut verdicts = vec![Verdict::custom(
        "hostile: gateway peak RSS, 1,000 tools, every item of issue 22 §3",
        format!("{:.1} MiB", mib(peak)),
        "<= 256 MiB".into(),
        peak <= RSS_TARGET_KIB,
    )];
    verdicts.push(Verdict::info(
        "hostile: slow-header connections closed by the gateway",
        format!("{} of {}", slow.0, slow.1),
    ));
    match audited {
        Ok(a) => {
            println!(
                "\naudit file: {} lines, longest {} bytes, {} tools/call lines, {} client_closed",
                a.lines, a.longest, a.calls, a.client_closed
            );
            verdicts.push(Verdict::info(
                "hostile: longest audit line",
                format!("{} bytes", a.longest),
            ));
            verdicts.push(Verdict::info(
                "hostile: hang-ups audited as client_closed",
                format!("{} of {HANG_UPS}", a.client_closed),
            ));
        }
        Err(e) => println!("\naudit file not read: {e:#}"),
    }
    Ok(verdicts)
}

type SlowCount = (usize, usize);

async fn items(
    bench: &Bench<'_>,
    gw: &Child,
    token: &str,
) -> anyhow::Result<(Vec<Item>, SlowCount)> {
    let addr = gw.addr();
    let mut rows = Vec::new();
    let mut record = |what: String, answers: String, took: Duration| -> anyhow::Result<()> {
        rows.push(Item {
            what,
            answers,
            rss_kib: gw.status_kib("VmRSS")?,
            peak_kib: gw.status_kib("VmHWM")?,
            took,
        });
        Ok(())
    };
    record("after start".into(), "-".into(), Duration::ZERO)?;
    println!("\n## hostile caller (issue 22 §3), gateway with 1,000 tools\n");
    let slow = SlowHeaders::start(addr, SLOW_HEADER_CONNECTIONS).await;
    record(
        format!("{} slow-header connections opened", slow.opened),
        "-".into(),
        Duration::ZERO,
    )?;

    // Filter cache: every request a different unknown backend id.
    let start = Instant::now();
    let lists = (0..FILTERED_LISTS)
        .map(|i| {
            mcp::list(mcp::list_params(), token)?
                .header("x-cortex-backends", &format!("b0,junk{i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tally = send_all(addr, lists, CONNECTIONS, status_only).await?;
    record(
        format!("{FILTERED_LISTS} tools/list, distinct junk X-Cortex-Backends"),
        tally.to_string(),
        start.elapsed(),
    )?;

    // Batches of 2025-03-26.
    let start = Instant::now();
    let mut sender = mcp::connect(addr).await?;
    let session = mcp::open_session(&mut sender, addr, token, "2025-03-26").await?;
    let batch: Vec<Value> = (0..BATCH_SIZE)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": mcp::tool_name(), "arguments": {"id": "42"}}})
        })
        .collect();
    let body = serde_json::to_vec(&batch)?;
    let batches = (0..BATCHES)
        .map(|_| mcp::in_session(body.clone(), token, &session, "2025-03-26"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tally = send_all(addr, batches, 2, batch_answer).await?;
    record(
        format!("{BATCHES} batches of {BATCH_SIZE} tools/call (2025-03-26)"),
        tally.to_string(),
        start.elapsed(),
    )?;

    // 300 KB tool names (in a session: no Mcp-Name header to carry them)
    // and 300 KB method names (2026-07-28, refused as unknown first).
    let start = Instant::now();
    let session = mcp::open_session(&mut sender, addr, token, mcp::LEGACY).await?;
    let big = "n".repeat(BIG_NAME_BYTES);
    let call = mcp::legacy(
        "tools/call",
        json!({"name": big, "arguments": {}}),
        token,
        &session,
    )?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": big, "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": mcp::MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }}});
    let method = Template::post(mcp::MCP_PATH, serde_json::to_vec(&body)?)
        .header("accept", "application/json, text/event-stream")?
        .header("mcp-protocol-version", mcp::MODERN)?
        .bearer(token)?;
    let mut templates = vec![call; BIG_NAMES];
    templates.extend(std::iter::repeat_n(method, BIG_NAMES));
    let tally = send_all(addr, templates, CONNECTIONS, call_answer).await?;
    record(
        format!("{BIG_NAMES} tools/call with 300 KB names + {BIG_NAMES} 300 KB methods"),
        tally.to_string(),
        start.elapsed(),
    )?;

    // Hang-ups mid-call.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..CONNECTIONS {
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _ in (chunk..HANG_UPS).step_by(CONNECTIONS) {
                if hang_up(addr, &token).await.is_ok() {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut hung = 0;
    for task in tasks {
        hung += task.await?;
    }
    // Let the abandoned calls finish in the gateway.
    tokio::time::sleep(Duration::from_millis(SLOW_MS * 2)).await;
    record(
        format!("{HANG_UPS} tools/call of {SLOW_TOOL}, client gone after {HANG_UP_AFTER:?}"),
        format!("{hung} sent and abandoned"),
        start.elapsed(),
    )?;

    // DNS rebinding: a Host that starts like a loopback address.
    let start = Instant::now();
    let evil = "127.0.0.1.evil.example";
    let metrics = Template::bodiless(hyper::Method::GET, "/metrics").header("host", evil)?;
    let list = mcp::list(mcp::list_params(), token)?.header("host", evil)?;
    let mut templates = vec![metrics; REBINDING];
    templates.extend(std::iter::repeat_n(list, REBINDING));
    let tally = send_all(addr, templates, CONNECTIONS, status_only).await?;
    record(
        format!("{REBINDING} GET /metrics + {REBINDING} tools/list, Host: {evil}"),
        tally.to_string(),
        start.elapsed(),
    )?;

    // Sessions: thousands from one caller, then the first one used again.
    let start = Instant::now();
    // Over one connection: over several, the caller's own newer sessions
    // can evict one (the per-caller cap) between its `initialize` and its
    // `notifications/initialized` when the host is busy.
    let ids = mcp::open_sessions(addr, token, SESSIONS, 1, false).await?;
    let first = ids.first().context("no session opened")?;
    let again = mcp::legacy("tools/list", mcp::list_params(), token, first)?;
    let (status, _, _) = mcp::exchange(&mut sender, addr, &again).await?;
    record(
        format!("{SESSIONS} legacy sessions from one caller, then the first"),
        format!(
            "{} opened; the first then answers {}",
            ids.len(),
            status.as_u16()
        ),
        start.elapsed(),
    )?;
    drop(ids);

    // whoami.
    let start = Instant::now();
    let whoami = mcp::modern(
        "tools/call",
        json!({"name": "whoami", "arguments": {}}),
        token,
    )?;
    let tally = send_all(addr, vec![whoami; WHOAMI], CONNECTIONS, call_answer).await?;
    record(
        format!("{WHOAMI} tools/call of whoami"),
        tally.to_string(),
        start.elapsed(),
    )?;

    // A token with a non-ASCII email.
    let start = Instant::now();
    let jose = bench
        .issuer
        .token(crate::gateway::CANONICAL_URI)
        .sub("bench-jose")
        .email("josé@example.com")
        .scopes([SCOPE, WRITE_SCOPE])
        .mint();
    let call = mcp::modern("tools/call", mcp::call_params(), &jose)?;
    let tally = send_all(addr, vec![call; NON_ASCII], CONNECTIONS, call_answer).await?;
    record(
        format!("{NON_ASCII} tools/call with email josé@example.com"),
        tally.to_string(),
        start.elapsed(),
    )?;

    let closed = slow.closed();
    let opened = slow.opened;
    record(
        "slow-header connections, at the end".into(),
        format!("{closed} of {opened} closed by the gateway"),
        Duration::ZERO,
    )?;
    drop(slow);
    Ok((rows, (closed, opened)))
}

fn print_rows(rows: &[Item]) {
    println!(
        "| {:<66} | {:<44} | {:>8} | {:>9} | {:>9} |",
        "item", "answers", "took", "RSS", "peak RSS"
    );
    println!(
        "|{:-<68}|{:-<46}|{:->10}|{:->11}|{:->11}|",
        "", "", "", "", ""
    );
    for r in rows {
        println!(
            "| {:<66} | {:<44} | {:>6.1} s | {:>5.1} MiB | {:>5.1} MiB |",
            r.what,
            r.answers,
            r.took.as_secs_f64(),
            mib(r.rss_kib),
            mib(r.peak_kib)
        );
    }
}

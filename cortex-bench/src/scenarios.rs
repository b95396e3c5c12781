//! The scenarios of issue 9 and the processes they share.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use cortex_backend::testing::TestIssuer;
use serde_json::{Value, json};

use crate::{
    Options, Scenario,
    backend::{HUNG_PREFIX, READ_TOOL, SCOPE, TrustArgs, WRITE_SCOPE, base_url},
    child::Child,
    gateway::{self, CANONICAL_URI, Upstream},
    load::{self, Check, Load, Sample, Source, Template},
    mcp,
    report::{self, Row, Verdict},
};

/// Tools of the small catalog (one backend).
const SMALL_TOOLS: usize = 10;
/// Backends and tools per backend of the large catalog: 1,000 tools.
pub(crate) const LARGE_BACKENDS: usize = 50;
const LARGE_TOOLS: usize = 20;
/// Timeout of the hung backend in the refresh scenario.
const HUNG_TIMEOUT_MS: u64 = 1_000;
/// Slack allowed on top of the hung backend's timeout.
const REFRESH_SLACK: Duration = Duration::from_millis(250);
/// Gateway RSS target.
const RSS_TARGET_KIB: u64 = 64 * 1024;

/// Mints `n` distinct tokens for the bench caller (unique `jti`), on every
/// core: RS256 signing is the slow part.
pub(crate) async fn mint_tokens(issuer: &TestIssuer, n: usize) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let tokens = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        (t..n)
                            .step_by(threads)
                            .map(|i| bench_token(issuer, Some(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect::<Vec<_>>()
        })
    });
    if tokens.len() != n {
        bail!("minting {n} tokens failed");
    }
    Ok(tokens)
}

pub(crate) fn bench_token(issuer: &TestIssuer, jti: Option<usize>) -> String {
    let mut builder = issuer
        .token(CANONICAL_URI)
        .sub("bench-user")
        .email("bench@example.com")
        .scopes([SCOPE, WRITE_SCOPE]);
    if let Some(jti) = jti {
        builder = builder.claim("jti", json!(format!("bench-{jti}")));
    }
    builder.mint()
}

/// One variant of a comparison.
struct Variant<'a> {
    label: String,
    addr: SocketAddr,
    /// Round `r` uses `sources[r % len]`.
    sources: Vec<Arc<Source>>,
    check: Check,
    /// The process whose CPU time is charged to the requests.
    hop: Option<&'a Child>,
    warmup: bool,
}

impl<'a> Variant<'a> {
    fn new(label: &str, addr: SocketAddr, source: Source, check: Check) -> Self {
        Self {
            label: label.to_owned(),
            addr,
            sources: vec![Arc::new(source)],
            check,
            hop: None,
            warmup: true,
        }
    }

    fn hop(mut self, child: &'a Child) -> Self {
        self.hop = Some(child);
        self
    }
}

/// Runs the variants in alternating rounds (A B, B A, A B, ...) and merges
/// each variant's rounds.
///
/// Before the first round, every variant is loaded once for the warm-up
/// time and not measured. Without that pass, the first variant's first run
/// was also the first load of the backend and of the load generator, and
/// came out slower: the same gateway binary measured as two variants gave
/// 0.80 to 0.98 (mean 0.91) of itself in the first position.
async fn measure(options: &Options, variants: &[Variant<'_>]) -> anyhow::Result<Vec<Row>> {
    let n = variants.len();
    let mut samples = vec![Sample::default(); n];
    let mut cpu = vec![Duration::ZERO; n];
    for v in variants.iter().filter(|v| v.warmup) {
        let load = Load {
            connections: options.connections,
            warmup: Duration::ZERO,
            duration: options.warmup,
        };
        load::run(v.addr, v.sources[0].clone(), load, v.check)
            .await
            .with_context(|| format!("{}: warm-up run failed", v.label))?;
    }
    for round in 0..options.rounds.max(1) {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        };
        for i in order {
            let v = &variants[i];
            let load = Load {
                connections: options.connections,
                warmup: if v.warmup {
                    options.warmup
                } else {
                    Duration::ZERO
                },
                duration: options.duration,
            };
            let source = v.sources[round % v.sources.len()].clone();
            let before = v.hop.map(Child::cpu_time).transpose()?;
            let sample = load::run(v.addr, source, load, v.check)
                .await
                .with_context(|| match v.hop {
                    Some(hop) => format!(
                        "{}: load run failed; the last output of the process under test:\n{}",
                        v.label,
                        hop.last_output()
                    ),
                    None => format!("{}: load run failed", v.label),
                })?;
            if let (Some(hop), Some(before)) = (v.hop, before) {
                cpu[i] += hop.cpu_time()?.saturating_sub(before);
            }
            samples[i].merge(sample);
        }
    }
    Ok(variants
        .iter()
        .zip(samples)
        .zip(cpu)
        .map(|((v, s), c)| Row::new(&v.label, s, v.hop.map(|_| c)))
        .collect())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The processes the scenarios share, started on first use.
pub(crate) struct Bench<'o> {
    pub(crate) options: &'o Options,
    exe: PathBuf,
    pub(crate) issuer: TestIssuer,
    pub(crate) trust: TrustArgs,
    pub(crate) token: String,
    small_backend: Option<Child>,
    large_backend: Option<Child>,
    proxy: Option<Child>,
    shared_proxy: Option<Child>,
    small_gateway: Option<Child>,
    large_gateway: Option<Child>,
}

impl<'o> Bench<'o> {
    async fn start(options: &'o Options) -> anyhow::Result<Self> {
        let issuer = TestIssuer::start().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let trust = TrustArgs {
            issuer: issuer.issuer().to_owned(),
            jwks_url: issuer.jwks_url(),
            audience: CANONICAL_URI.to_owned(),
            technical_token: format!("bench-technical-{nanos:x}-{}", std::process::id()),
        };
        let token = bench_token(&issuer, None);
        Ok(Self {
            options,
            exe: std::env::current_exe()?,
            issuer,
            trust,
            token,
            small_backend: None,
            large_backend: None,
            proxy: None,
            shared_proxy: None,
            small_gateway: None,
            large_gateway: None,
        })
    }

    async fn spawn_backends(
        &self,
        name: &str,
        backends: usize,
        tools: usize,
    ) -> anyhow::Result<Child> {
        let t = &self.trust;
        let args: Vec<String> = [
            "role",
            "backend",
            "--backends",
            &backends.to_string(),
            "--tools",
            &tools.to_string(),
            "--issuer",
            &t.issuer,
            "--jwks-url",
            &t.jwks_url,
            "--audience",
            &t.audience,
            "--technical-token",
            &t.technical_token,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        Child::spawn(name, &self.exe, &args, &[], None).await
    }

    async fn small_backend(&mut self) -> anyhow::Result<&Child> {
        if self.small_backend.is_none() {
            self.small_backend = Some(
                self.spawn_backends("backend (10 tools)", 1, SMALL_TOOLS)
                    .await?,
            );
        }
        self.small_backend.as_ref().context("small backend")
    }

    pub(crate) async fn large_backend(&mut self) -> anyhow::Result<&Child> {
        if self.large_backend.is_none() {
            let name = "backends (50 x 20 tools)";
            self.large_backend = Some(
                self.spawn_backends(name, LARGE_BACKENDS, LARGE_TOOLS)
                    .await?,
            );
        }
        self.large_backend.as_ref().context("large backend")
    }

    async fn proxy(&mut self) -> anyhow::Result<&Child> {
        if self.proxy.is_none() {
            let upstream = self.small_backend().await?.url();
            let args = ["role", "proxy", "--upstream", &upstream].map(str::to_owned);
            self.proxy = Some(Child::spawn("bare proxy", &self.exe, &args, &[], None).await?);
        }
        self.proxy.as_ref().context("proxy")
    }

    /// The bare proxy on one multi-threaded Tokio runtime (a reference).
    async fn shared_proxy(&mut self) -> anyhow::Result<&Child> {
        if self.shared_proxy.is_none() {
            let upstream = self.small_backend().await?.url();
            let args =
                ["role", "proxy", "--upstream", &upstream, "--shared-runtime"].map(str::to_owned);
            let name = "bare proxy (shared runtime)";
            self.shared_proxy = Some(Child::spawn(name, &self.exe, &args, &[], None).await?);
        }
        self.shared_proxy.as_ref().context("shared-runtime proxy")
    }

    pub(crate) fn upstreams(addr: SocketAddr, count: usize) -> Vec<Upstream> {
        (0..count)
            .map(|i| Upstream {
                id: format!("b{i}"),
                url: base_url(addr, i),
                timeout_ms: None,
            })
            .collect()
    }

    async fn spawn_gateway(&self, name: &str, upstreams: &[Upstream]) -> anyhow::Result<Child> {
        self.spawn_gateway_with(name, upstreams, &[]).await
    }

    /// A gateway with `extra` settings on top of the bench's.
    pub(crate) async fn spawn_gateway_with(
        &self,
        name: &str,
        upstreams: &[Upstream],
        extra: &[(String, String)],
    ) -> anyhow::Result<Child> {
        let bin = self.options.gateway_bin.as_deref();
        gateway::spawn(name, bin, &self.trust, upstreams, extra).await
    }

    async fn small_gateway(&mut self) -> anyhow::Result<&Child> {
        if self.small_gateway.is_none() {
            let addr = self.small_backend().await?.addr();
            let gw = self
                .spawn_gateway("gateway (10 tools)", &Self::upstreams(addr, 1))
                .await?;
            self.small_gateway = Some(gw);
        }
        self.small_gateway.as_ref().context("small gateway")
    }

    async fn large_gateway_fresh(&mut self, name: &str) -> anyhow::Result<Child> {
        let addr = self.large_backend().await?.addr();
        self.spawn_gateway(name, &Self::upstreams(addr, LARGE_BACKENDS))
            .await
    }

    async fn large_gateway(&mut self) -> anyhow::Result<&Child> {
        if self.large_gateway.is_none() {
            let gw = self.large_gateway_fresh("gateway (1,000 tools)").await?;
            self.large_gateway = Some(gw);
        }
        self.large_gateway.as_ref().context("large gateway")
    }
}

/// Runs the selected scenarios; returns whether every target was met.
pub(crate) async fn run(selected: &[Scenario], options: &Options) -> anyhow::Result<bool> {
    report::machine();
    println!(
        "load: {} keep-alive connections, {:?} warm-up + {:?} measured per run, {} alternating rounds",
        options.connections, options.warmup, options.duration, options.rounds
    );
    let mut bench = Bench::start(options).await?;
    let mut verdicts = Vec::new();
    for scenario in selected {
        let found = match scenario {
            Scenario::All => Vec::new(),
            Scenario::Call => call(&mut bench).await?,
            Scenario::Adapter => adapter(&mut bench).await?,
            Scenario::List => list(&mut bench).await?,
            Scenario::Token => token(&mut bench).await?,
            Scenario::Era => era(&mut bench).await?,
            Scenario::Memory => memory(&mut bench).await?,
            Scenario::Redis => redis(&mut bench).await?,
            Scenario::Refresh => refresh(&mut bench).await?,
            Scenario::Hostile => crate::hostile::run(&mut bench).await?,
            Scenario::Soak => crate::soak::run(&mut bench).await?,
            Scenario::Auth => {
                let figures = crate::auth_bench::run(&bench.issuer).await?;
                println!(
                    "\n## auth micro-benchmark (in process)\n\nfull verify {:.1} µs, cache hit {:.0} ns, \
                     cache size {} after inserting more tokens than its capacity",
                    secs(figures.verify) * 1e6,
                    secs(figures.hit) * 1e9,
                    figures.max_len
                );
                figures.verdicts()
            }
        };
        verdicts.extend(found);
    }
    println!("\nload average at the end: {}", report::load_average());
    Ok(report::verdicts(&verdicts))
}

async fn call(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let backend = bench.small_backend().await?.addr();
    bench.proxy().await?;
    bench.shared_proxy().await?;
    bench.small_gateway().await?;
    let (Some(proxy), Some(shared_proxy), Some(gw)) =
        (&bench.proxy, &bench.shared_proxy, &bench.small_gateway)
    else {
        bail!("the processes of the call scenario did not start");
    };
    let gateway_call = || -> anyhow::Result<Source> {
        Ok(Source::same(mcp::modern(
            "tools/call",
            mcp::call_params(),
            &token,
        )?))
    };
    let backend_call =
        || -> anyhow::Result<Source> { Ok(Source::same(mcp::backend_call(&token)?)) };
    let compare = match &bench.options.compare_bench_bin {
        Some(bin) => {
            let env = gateway::environment(&bench.trust, &Bench::upstreams(backend, 1));
            let args = ["role", "gateway"].map(str::to_owned);
            Some(Child::spawn("gateway (compare build)", bin, &args, &env, None).await?)
        }
        None => None,
    };
    let mut variants = vec![
        Variant::new(
            "tools/call via gateway (MCP 2026-07-28)",
            gw.addr(),
            gateway_call()?,
            mcp::check_call,
        )
        .hop(gw),
        Variant::new(
            "backend call via bare proxy",
            proxy.addr(),
            backend_call()?,
            mcp::check_call,
        )
        .hop(proxy),
        Variant::new(
            "backend call direct (no hop, reference)",
            backend,
            backend_call()?,
            mcp::check_call,
        ),
        Variant::new(
            "backend call via bare proxy, shared runtime (reference)",
            shared_proxy.addr(),
            backend_call()?,
            mcp::check_call,
        )
        .hop(shared_proxy),
    ];
    if let Some(other) = &compare {
        variants.push(
            Variant::new(
                "tools/call via the compare build's gateway",
                other.addr(),
                gateway_call()?,
                mcp::check_call,
            )
            .hop(other),
        );
    }
    let rows = measure(bench.options, &variants).await?;
    report::table("tools/call: gateway vs bare proxy hop", &rows);
    let (g, p, d) = (&rows[0], &rows[1], &rows[2]);
    let cpu_ratio = |a: &Row, b: &Row| match (a.hop_cpu_per_request, b.hop_cpu_per_request) {
        (Some(a), Some(b)) => format!("{:.2}", ratio(secs(a), secs(b))),
        _ => "-".to_owned(),
    };
    let mut verdicts = vec![
        Verdict::at_least(
            "call: gateway / bare proxy throughput",
            ratio(g.throughput, p.throughput),
            0.8,
        ),
        Verdict::at_most(
            "call: gateway / bare proxy p99",
            ratio(secs(g.p99), secs(p.p99)),
            1.5,
        ),
        Verdict::info(
            "call: p50 added over direct, gateway vs proxy",
            format!(
                "{:.0} vs {:.0} µs",
                (secs(g.p50) - secs(d.p50)) * 1e6,
                (secs(p.p50) - secs(d.p50)) * 1e6
            ),
        ),
        Verdict::info(
            "call: hop CPU per request, gateway / proxy",
            cpu_ratio(g, p),
        ),
    ];
    verdicts.push(Verdict::info(
        "call: bare proxy, shared runtime / per-thread, throughput",
        format!("{:.2}", ratio(rows[3].throughput, p.throughput)),
    ));
    if let Some(c) = rows.get(4) {
        verdicts.push(Verdict::info(
            "call: this build / compare build, throughput",
            format!("{:.2}", ratio(g.throughput, c.throughput)),
        ));
        verdicts.push(Verdict::info(
            "call: this build / compare build, CPU per request",
            cpu_ratio(g, c),
        ));
    }
    Ok(verdicts)
}

/// `tools/call` through a gateway on the in-memory store and one on the
/// Redis store (Debian's `redis-server`, started here), in alternating
/// rounds: the gateway CPU per call of each, and the Redis commands per
/// call (`INFO stats` before and after a counted run).
async fn redis(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let backend = bench.small_backend().await?.addr();
    bench.small_gateway().await?;
    let server = cortex_gateway::testing::RedisServer::start_new();
    let on_redis = bench
        .spawn_gateway_with(
            "gateway (Redis store)",
            &Bench::upstreams(backend, 1),
            &[("CORTEX_STORE".to_owned(), server.url())],
        )
        .await?;
    let Some(memory) = &bench.small_gateway else {
        bail!("the in-memory gateway did not start");
    };
    let call = || -> anyhow::Result<Source> {
        Ok(Source::same(mcp::modern(
            "tools/call",
            mcp::call_params(),
            &token,
        )?))
    };
    let variants = [
        Variant::new(
            "tools/call, in-memory store",
            memory.addr(),
            call()?,
            mcp::check_call,
        )
        .hop(memory),
        Variant::new(
            "tools/call, Redis store",
            on_redis.addr(),
            call()?,
            mcp::check_call,
        )
        .hop(&on_redis),
    ];
    let rows = measure(bench.options, &variants).await?;
    report::table("tools/call: Redis store vs in-memory store", &rows);
    // Commands per call, over a run of its own.
    let trips_before = evalsha_calls(&server);
    let before = commands_processed(&server)?;
    let cpu_before = redis_cpu(&server);
    let load = Load {
        connections: bench.options.connections,
        warmup: Duration::ZERO,
        duration: bench.options.duration,
    };
    let counted = load::run(on_redis.addr(), Arc::new(call()?), load, mcp::check_call).await?;
    // INFO reports the count before itself: the two INFO commands read
    // before the run are in the difference.
    let commands = commands_processed(&server)?.saturating_sub(before + 2);
    let per_call = commands as f64 / counted.total.max(1) as f64;
    let redis_cpu_per_call = (redis_cpu(&server) - cpu_before) / counted.total.max(1) as f64;
    // The hot path's only command is the rate charge's EVALSHA: its calls
    // are the round trips (commands inside the script are counted above).
    let trips = evalsha_calls(&server).saturating_sub(trips_before);
    let trips_per_call = trips as f64 / counted.total.max(1) as f64;
    println!(
        "\nRedis: {trips} round trips (EVALSHA) and {commands} commands (those inside \
         scripts included) for {} calls ({trips_per_call:.3} and {per_call:.2} per call); \
         by command:\n{}",
        counted.total,
        command_stats(&server)
    );
    let (m, r) = (&rows[0], &rows[1]);
    let cpu = match (m.hop_cpu_per_request, r.hop_cpu_per_request) {
        (Some(m), Some(r)) => ratio(secs(r), secs(m)),
        _ => 0.0,
    };
    Ok(vec![
        Verdict::at_most("redis: gateway CPU per call, Redis / memory", cpu, 1.3),
        Verdict::info(
            "redis: throughput, Redis / memory",
            format!("{:.2}", ratio(r.throughput, m.throughput)),
        ),
        Verdict::info(
            "redis: Redis round trips per call",
            format!("{trips_per_call:.3}"),
        ),
        Verdict::info(
            "redis: Redis commands per call (inside scripts included)",
            format!("{per_call:.2}"),
        ),
        Verdict::info(
            "redis: redis-server CPU per call",
            format!("{:.1} µs", redis_cpu_per_call * 1e6),
        ),
    ])
}

/// The server's CPU time so far, seconds (`used_cpu_sys` + `used_cpu_user`
/// of `INFO cpu`).
fn redis_cpu(server: &cortex_gateway::testing::RedisServer) -> f64 {
    server
        .command("INFO cpu")
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_sys:")
                .or_else(|| l.strip_prefix("used_cpu_user:"))
        })
        .filter_map(|n| n.trim().parse::<f64>().ok())
        .sum()
}

/// Calls of `EVALSHA` so far (`INFO commandstats`).
fn evalsha_calls(server: &cortex_gateway::testing::RedisServer) -> u64 {
    server
        .command("INFO commandstats")
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|l| l.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// `total_commands_processed` of `INFO stats`.
fn commands_processed(server: &cortex_gateway::testing::RedisServer) -> anyhow::Result<u64> {
    let info = server.command("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .context("INFO stats has no total_commands_processed")
}

/// The `cmdstat_*` lines of `INFO commandstats`, calls only.
fn command_stats(server: &cortex_gateway::testing::RedisServer) -> String {
    server
        .command("INFO commandstats")
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| {
            let (name, rest) = l.split_once(':').unwrap_or((l, ""));
            let calls = rest.split(',').next().unwrap_or("");
            format!("  {name}: {calls}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `tools/call` of the same read through the MCP adapter and to a contract
/// backend, in one gateway process: the gateway CPU per call of each.
async fn adapter(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    use cortex_gateway::vault::{Grant, Secret, Vault, VaultConfig, VaultKeys, VaultStorage};
    let token = bench.token.clone();
    let backend = bench.small_backend().await?.addr();
    let exe = bench.exe.clone();
    let server = Child::spawn(
        "MCP server",
        &exe,
        &["role", "mcp-server"].map(str::to_owned),
        &[],
        None,
    )
    .await?;
    // The vault the gateway reads `bench-user`'s linked token from.
    let scratch = std::env::temp_dir().join(format!("cortex-bench-vault-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let path = scratch.join("vault.db");
    let key = "Y29ydGV4LWJlbmNoLXZhdWx0LWtleS0zMi1ieXRlcyE=";
    let config = VaultConfig::new(
        VaultKeys::parse_single("CORTEX_VAULT_KEY", key)?,
        VaultStorage::Sqlite { path: path.clone() },
    );
    let vault = Vault::open(&config).await?;
    vault
        .put(
            "bench-user",
            crate::mcp_server::ID,
            Grant::new(Secret::new(crate::mcp_server::TOKEN.into()), "bench-user"),
        )
        .await?;
    drop(vault);
    let id = crate::mcp_server::ID.to_uppercase();
    let extra = [
        ("CORTEX_MCP_SERVERS", crate::mcp_server::ID.to_owned()),
        (
            &format!("CORTEX_MCP_{id}_URL") as &str,
            format!("{}/mcp", server.url()),
        ),
        (&format!("CORTEX_MCP_{id}_SCOPE"), SCOPE.to_owned()),
        // Listed with the same linked account.
        (
            &format!("CORTEX_MCP_{id}_CATALOG_SUB"),
            "bench-user".to_owned(),
        ),
        ("CORTEX_VAULT_KEY", key.to_owned()),
        ("CORTEX_VAULT_PATH", path.display().to_string()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let gw = bench
        .spawn_gateway_with(
            "gateway (contract backend + MCP server)",
            &Bench::upstreams(backend, 1),
            &extra,
        )
        .await;
    let gw = match gw {
        Ok(gw) => gw,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let call = |name: String| -> anyhow::Result<Source> {
        Ok(Source::same(mcp::modern(
            "tools/call",
            json!({"name": name, "arguments": {"id": "42"}}),
            &token,
        )?))
    };
    let variants = [
        Variant::new(
            "tools/call via the MCP adapter (third-party MCP server)",
            gw.addr(),
            call(format!("{}_{READ_TOOL}", crate::mcp_server::ID))?,
            mcp::check_call,
        )
        .hop(&gw),
        Variant::new(
            "tools/call to a contract backend (same gateway)",
            gw.addr(),
            call(mcp::tool_name())?,
            mcp::check_call,
        )
        .hop(&gw),
    ];
    let rows = measure(bench.options, &variants).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let rows = rows?;
    report::table("tools/call: MCP adapter vs contract backend", &rows);
    let (m, c) = (&rows[0], &rows[1]);
    let cpu = match (m.hop_cpu_per_request, c.hop_cpu_per_request) {
        (Some(m), Some(c)) => ratio(secs(m), secs(c)),
        _ => 0.0,
    };
    Ok(vec![
        Verdict::at_most("adapter: gateway CPU per call, MCP / contract", cpu, 2.0),
        Verdict::info(
            "adapter: throughput, MCP / contract",
            format!("{:.2}", ratio(m.throughput, c.throughput)),
        ),
    ])
}

/// Pages through `tools/list` once and counts the tools the caller sees.
async fn count_tools(addr: SocketAddr, token: &str) -> anyhow::Result<usize> {
    let mut cursor: Option<String> = None;
    let mut count = 0;
    for _ in 0..1000 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let body = one_request(addr, &mcp::list(params, token)?).await?;
        let body = mcp::decoded(&body).map_err(anyhow::Error::msg)?;
        let value: Value =
            serde_json::from_slice(&body).context("tools/list answer is not JSON")?;
        let result = value
            .get("result")
            .context("tools/list answered an error")?;
        count += result["tools"].as_array().map_or(0, Vec::len);
        cursor = result["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(count);
        }
    }
    bail!("tools/list never ended (1,000 pages)")
}

async fn one_request(addr: SocketAddr, template: &Template) -> anyhow::Result<bytes::Bytes> {
    let mut sender = mcp::connect(addr).await?;
    let (status, _, body) = mcp::exchange(&mut sender, addr, template).await?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

async fn list(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    bench.small_gateway().await?;
    bench.large_gateway().await?;
    let (Some(small), Some(large)) = (&bench.small_gateway, &bench.large_gateway) else {
        bail!("the gateways of the list scenario did not start");
    };
    let small_count = count_tools(small.addr(), &token).await?;
    let large_count = count_tools(large.addr(), &token).await?;
    println!("\ncatalogs as the caller sees them: {small_count} and {large_count} tools");
    let request = || mcp::list(mcp::list_params(), &token);
    let variants = [
        Variant::new(
            &format!("tools/list, {small_count} tools"),
            small.addr(),
            Source::same(request()?),
            mcp::check_list,
        )
        .hop(small),
        Variant::new(
            &format!("tools/list, {large_count} tools (50 backends)"),
            large.addr(),
            Source::same(request()?),
            mcp::check_list,
        )
        .hop(large),
        Variant::new(
            &format!("tools/list, {large_count} tools, no gzip (reference)"),
            large.addr(),
            Source::same(mcp::modern("tools/list", mcp::list_params(), &token)?),
            mcp::check_list,
        )
        .hop(large),
    ];
    let rows = measure(bench.options, &variants).await?;
    report::table("tools/list: catalog size", &rows);
    Ok(vec![
        Verdict::at_least(
            "list: throughput at 1,000 tools / at 10 tools",
            ratio(rows[1].throughput, rows[0].throughput),
            0.8,
        ),
        Verdict::info(
            "list: p50 at 1,000 tools / at 10 tools",
            format!("{:.2}", ratio(secs(rows[1].p50), secs(rows[0].p50))),
        ),
    ])
}

async fn token(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let rounds = bench.options.rounds.max(1);
    let per_round = (bench.options.fresh_tokens / rounds).max(1);
    println!("\nminting {} fresh tokens...", per_round * rounds);
    let fresh = mint_tokens(&bench.issuer, per_round * rounds).await?;
    bench.small_gateway().await?;
    let Some(gw) = &bench.small_gateway else {
        bail!("the gateway of the token scenario did not start");
    };
    let template = mcp::list(mcp::list_params(), &token)?;
    let sources = fresh
        .chunks(per_round)
        .map(|chunk| Source::fresh_tokens(template.clone(), chunk).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut first = Variant::new(
        "tools/list, a new token every request",
        gw.addr(),
        Source::same(template.clone()),
        mcp::check_list,
    )
    .hop(gw);
    first.sources = sources;
    first.warmup = false;
    let variants = [
        first,
        Variant::new(
            "tools/list, the same token again",
            gw.addr(),
            Source::same(template),
            mcp::check_list,
        )
        .hop(gw),
    ];
    let rows = measure(bench.options, &variants).await?;
    report::table("auth: first request of a token vs repeated token", &rows);
    Ok(vec![
        Verdict::info(
            "token: p50 new token / repeated token",
            format!("{:.2}", ratio(secs(rows[0].p50), secs(rows[1].p50))),
        ),
        Verdict::info(
            "token: throughput repeated / new",
            format!("{:.2}", ratio(rows[1].throughput, rows[0].throughput)),
        ),
    ])
}

async fn era(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let connections = bench.options.connections;
    bench.small_gateway().await?;
    let Some(gw) = &bench.small_gateway else {
        bail!("the gateway of the era scenario did not start");
    };
    let sessions =
        mcp::open_sessions(gw.addr(), &token, connections, connections.min(8), false).await?;
    let legacy = sessions
        .iter()
        .map(|s| mcp::legacy("tools/call", mcp::call_params(), &token, s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let variants = [
        Variant::new(
            "tools/call, 2026-07-28 stateless",
            gw.addr(),
            Source::same(mcp::modern("tools/call", mcp::call_params(), &token)?),
            mcp::check_call,
        )
        .hop(gw),
        Variant::new(
            "tools/call, 2025-11-25 session",
            gw.addr(),
            Source::per_connection(legacy),
            mcp::check_call,
        )
        .hop(gw),
    ];
    let rows = measure(bench.options, &variants).await?;
    report::table("eras: stateless vs legacy session", &rows);
    Ok(vec![
        Verdict::info(
            "era: throughput session / stateless",
            format!("{:.2}", ratio(rows[1].throughput, rows[0].throughput)),
        ),
        Verdict::info(
            "era: p50 session / stateless",
            format!("{:.2}", ratio(secs(rows[1].p50), secs(rows[0].p50))),
        ),
    ])
}

async fn memory(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let token = bench.token.clone();
    let count = bench.options.sessions;
    let gw = bench.large_gateway_fresh("gateway (memory)").await?;
    let idle = gw.status_kib("VmRSS")?;
    let start = Instant::now();
    mcp::open_sessions(gw.addr(), &token, count, 8, true).await?;
    let took = start.elapsed();
    let hwm = gw.status_kib("VmHWM")?;
    let rss = gw.status_kib("VmRSS")?;
    println!(
        "\n## memory: 1,000 tools, {count} legacy sessions\n\nRSS after start {:.1} MiB; {count} sessions \
         (initialize, initialized, tools/list each) in {:.1} s; then RSS {:.1} MiB, peak (VmHWM) {:.1} MiB",
        idle as f64 / 1024.0,
        secs(took),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(vec![
        Verdict::custom(
            &format!("memory: gateway peak RSS, 1,000 tools + {count} sessions"),
            format!("{:.1} MiB", hwm as f64 / 1024.0),
            "< 64 MiB".into(),
            hwm < RSS_TARGET_KIB,
        ),
        Verdict::info(
            "memory: RSS growth per session",
            format!(
                "{:.1} KiB",
                rss.saturating_sub(idle) as f64 / count.max(1) as f64
            ),
        ),
    ])
}

async fn refresh(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Verdict>> {
    let addr = bench.large_backend().await?.addr();
    let healthy = Bench::upstreams(addr, LARGE_BACKENDS);
    let mut with_hung = Bench::upstreams(addr, LARGE_BACKENDS - 1);
    with_hung.push(Upstream {
        id: "hung".into(),
        url: format!("http://{addr}{HUNG_PREFIX}"),
        timeout_ms: Some(HUNG_TIMEOUT_MS),
    });
    let time_refresh = |upstreams: Vec<Upstream>| {
        let trust = bench.trust.clone();
        async move {
            let gw = cortex_gateway::Gateway::new(gateway::config(&trust, &upstreams)?).await?;
            gw.wait_ready().await?;
            let start = Instant::now();
            gw.refresh_now().await;
            let took = start.elapsed();
            let healthy = gw.catalog().healthy().count();
            anyhow::Ok((took, healthy))
        }
    };
    let (normal, n_ok) = time_refresh(healthy).await?;
    let (hung, h_ok) = time_refresh(with_hung).await?;
    let timeout = Duration::from_millis(HUNG_TIMEOUT_MS);
    println!(
        "\n## refresh of {LARGE_BACKENDS} backends\n\nall answering: {:.0} ms ({n_ok} healthy); one hung \
         (timeout {HUNG_TIMEOUT_MS} ms): {:.0} ms ({h_ok} healthy)",
        secs(normal) * 1e3,
        secs(hung) * 1e3
    );
    Ok(vec![
        Verdict::custom(
            &format!("refresh: 50 backends, one hung (timeout {HUNG_TIMEOUT_MS} ms)"),
            format!("{:.0} ms", secs(hung) * 1e3),
            format!("<= {} ms", (timeout + REFRESH_SLACK).as_millis()),
            hung <= timeout + REFRESH_SLACK,
        ),
        Verdict::info(
            "refresh: 50 backends, all answering",
            format!("{:.0} ms", secs(normal) * 1e3),
        ),
    ])
}

//! `cortex-bench`: measures the Cortex gateway against the cheapest
//! possible extra HTTP hop, with every figure a ratio against a baseline
//! measured in the same run.
//!
//! `cortex-bench all` (or a list of scenarios) is the driver. It starts, as
//! separate processes on loopback, SDK backends, a bare hyper reverse proxy
//! and the gateway (this binary re-executed with `role ...`), drives each
//! with the same closed-loop load, and prints per scenario throughput,
//! p50/p99 and the ratios against the targets of issue 9. See
//! `docs/performance.md` for the figures and how to read them.
//!
//! Exit status: 0 every target met, 1 a target missed, 2 usage or setup
//! error.

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

mod auth_bench;
mod backend;
mod child;
mod gateway;
mod hostile;
mod load;
mod mcp;
mod mcp_server;
mod proxy;
mod report;
mod scenarios;
mod serve;
mod soak;

/// Benchmarks of the Cortex gateway against one bare extra hop.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    role: Option<RoleCommand>,
}

/// The knobs every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Measured window of each run, e.g. `3s` or `500ms`.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) warmup: Duration,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 16)]
    pub(crate) connections: usize,
    /// Rounds per comparison; the variants of a pair alternate (A B A B ...)
    /// so that a change in machine load hits both.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Legacy sessions opened for the memory scenario.
    #[arg(long, default_value_t = 1000)]
    pub(crate) sessions: usize,
    /// Fresh tokens minted for the new-token run (signing takes ~1 ms each).
    #[arg(long, default_value_t = 3000)]
    pub(crate) fresh_tokens: usize,
    /// Run this `cortex-gateway` binary (`serve`) instead of the gateway
    /// library inside this binary's `role gateway`.
    #[arg(long)]
    pub(crate) gateway_bin: Option<std::path::PathBuf>,
    /// Length of the soak scenario after its warm-up.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) soak_duration: Duration,
    /// Shortest warm-up of the soak scenario; it goes on until the gateway's
    /// RSS settles (at most 3 minutes), then its reference RSS is read.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) soak_warmup: Duration,
    /// Another build of this benchmark (a `cortex-bench` binary): the call
    /// scenario also runs that build's gateway, in the same alternating
    /// rounds, and prints how this build compares with it (an A/B of a
    /// change on a noisy machine).
    #[arg(long)]
    pub(crate) compare_bench_bin: Option<std::path::PathBuf>,
}

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// The scenarios of issue 9 (every one below but hostile and soak).
    All,
    /// `tools/call` through the gateway vs the backend call through the bare proxy.
    Call,
    /// `tools/list` with 10 tools vs 1,000 tools from 50 backends.
    List,
    /// First request of a new token vs repeated requests of one token.
    Token,
    /// 2026-07-28 stateless requests vs requests in a legacy session.
    Era,
    /// `tools/call` through the MCP adapter (a third-party MCP server, the
    /// caller's linked token from the vault) vs the same work on a contract
    /// backend, in one gateway: gateway CPU per call.
    Adapter,
    /// Peak RSS of the gateway with 1,000 tools and 1,000 legacy sessions.
    Memory,
    /// `tools/call` with the Redis store (a `redis-server` it starts) vs
    /// the in-memory store: gateway CPU per call and Redis commands per
    /// call.
    Redis,
    /// One catalog refresh of 50 backends when one of them hangs.
    Refresh,
    /// The JWT cache hit vs a full signature verification (in-process).
    Auth,
    /// Peak RSS of the gateway (1,000 tools) under the hostile caller of
    /// issue 22: junk filters, big batches, 300 KB names, hang-ups, DNS
    /// rebinding, 4,000 sessions, whoami, non-ASCII claims, slow headers.
    Hostile,
    /// 64 callers mixing every kind of request for `--soak-duration`:
    /// unexpected errors and RSS growth after the warm-up.
    Soak,
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Internal: run one process of the benchmark (started by the driver).
    #[command(hide = true, subcommand)]
    Role(Role),
}

#[derive(Debug, Subcommand)]
enum Role {
    /// SDK backends with trivial read tools, plus a hung path.
    Backend(backend::BackendArgs),
    /// A bare reverse proxy to one upstream.
    Proxy(proxy::ProxyArgs),
    /// The gateway (configured from the environment, like `cortex-gateway serve`).
    Gateway,
    /// A third-party MCP server with the backends' read tool.
    McpServer,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 3s or 500ms"))?;
    let secs = match unit {
        "s" => value,
        "ms" => value / 1000.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}`; use s or ms")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(RoleCommand::Role(role)) = cli.role {
        let result = runtime.block_on(async {
            serve::exit_with_parent();
            match role {
                Role::Backend(args) => backend::run(args).await,
                Role::Proxy(args) => proxy::run(args).await,
                Role::Gateway => gateway::run_role().await,
                Role::McpServer => mcp_server::run().await,
            }
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let mut selected = cli.scenarios;
    if selected.is_empty() || selected.contains(&Scenario::All) {
        let own = |s: &Scenario| matches!(s, Scenario::Hostile | Scenario::Soak);
        let named: Vec<Scenario> = selected.iter().copied().filter(own).collect();
        selected = Scenario::value_variants()
            .iter()
            .copied()
            .filter(|s| *s != Scenario::All && !own(s))
            .chain(named)
            .collect();
    }
    match runtime.block_on(scenarios::run(&selected, &cli.options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

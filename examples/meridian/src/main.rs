//! `meridian`: the Cortex worked example in one command.
//!
//! * `meridian` starts a dev authorization server, the four apps and the
//!   gateway, then prints the MCP URL to add to an MCP client (which opens
//!   a browser to sign in). `--print-tokens` also prints a token per
//!   persona and a command to list tools, for scripts.
//! * `meridian revoke <person>` ends every grant of a person in the
//!   Meridian running on `--port`.
//! * `meridian app <crm|docs|billing|staffing>` runs one app alone, trusting
//!   the issuer named in the environment (`Auth::from_env`), so it can be
//!   checked with `cortex-conformance` or put behind another gateway.
//!
//! Exit codes: 0 after a clean stop, 2 when the start failed.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cortex_backend::Auth;
use meridian::{
    Options, Running,
    apps::{App, serve::ShutdownTrigger},
    firm::Persona,
    parse_duration,
};

/// Meridian: four department apps behind one Cortex gateway, with a dev authorization server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Port of the gateway on 127.0.0.1 (the MCP URL is http://127.0.0.1:PORT/mcp).
    #[arg(long, default_value_t = 3213, env = "MERIDIAN_PORT", global = true)]
    port: u16,
    /// Lifetime of the persona tokens: 8h, 30m, 90s, 2d or seconds.
    #[arg(long, default_value = "8h", value_parser = parse_duration)]
    token_ttl: Duration,
    /// Also print a bearer token per persona and a curl command (for scripts;
    /// MCP clients sign in through the browser instead).
    #[arg(long, env = "MERIDIAN_PRINT_TOKENS")]
    print_tokens: bool,
    /// Write {"url": ..., "tokens": {...}} to this file once everything is ready.
    #[arg(long, value_name = "PATH")]
    tokens_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one app alone. Auth comes from the environment: OAUTH_ISSUER,
    /// OAUTH_AUDIENCE, CORTEX_TECHNICAL_TOKENS (see cortex_backend::Auth::from_env).
    App {
        /// Which app.
        #[arg(value_enum)]
        app: App,
        /// Listen address (default 127.0.0.1:3221 crm, :3222 docs, :3223 billing, :3224 staffing).
        #[arg(long, env = "CORTEX_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Revoke every grant of a person in the running Meridian (on --port):
    /// their agents' next call is refused within a few seconds and their
    /// refresh tokens stop working.
    Revoke {
        /// An employee id (e-007), an email, or a persona key (sales_rep,
        /// project_manager, cfo, ceo).
        person: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::App { app, listen }) => run_app(app, listen).await,
        Some(Command::Revoke { ref person }) => revoke(cli.port, person).await,
        None => run_all(cli).await,
    }
}

async fn run_app(app: App, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let auth = Auth::from_env().context("reading the app's auth settings from the environment")?;
    let port = 3221 + App::ALL.iter().position(|a| *a == app).unwrap_or(0) as u16;
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}; set --listen or CORTEX_LISTEN"))?;
    let (trigger, shutdown) = ShutdownTrigger::new();
    let stop = StopSignal::listen()?;
    let served = app.serve(auth, listener, shutdown).await?;
    println!(
        "Meridian {} ({}) listening: {}",
        app.id(),
        app.framework(),
        served.url
    );
    println!("Press Ctrl-C to stop.");
    stop.wait().await;
    trigger.fire();
    served.stopped().await;
    Ok(())
}

async fn run_all(cli: Cli) -> anyhow::Result<()> {
    let stop = StopSignal::listen()?;
    let running = meridian::start(Options {
        port: cli.port,
        token_ttl: cli.token_ttl,
    })
    .await?;
    let port = running
        .url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(cli.port);
    let admin_file = meridian::admin_file(port);
    meridian::write_admin_file(&admin_file, running.auth_server())?;
    print_banner(&running, cli.token_ttl, cli.print_tokens);
    if let Some(path) = &cli.tokens_file {
        let file = serde_json::json!({"url": running.url, "tokens": running.tokens});
        std::fs::write(path, serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("cannot write the tokens file {}", path.display()))?;
        println!("\nURL and tokens written to {}", path.display());
    }
    println!("\nPress Ctrl-C to stop.");
    stop.wait().await;
    println!("Stopping...");
    let _ = std::fs::remove_file(&admin_file);
    running.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM, listened for from creation on: a signal sent as soon
/// as "Press Ctrl-C" is printed still stops the process cleanly.
struct StopSignal {
    #[cfg(unix)]
    signals: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl StopSignal {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind| signal(kind).context("cannot listen for Ctrl-C and SIGTERM");
            Ok(Self {
                signals: (
                    listen(SignalKind::interrupt())?,
                    listen(SignalKind::terminate())?,
                ),
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.signals.0.recv() => {}
            _ = self.signals.1.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn revoke(port: u16, person: &str) -> anyhow::Result<()> {
    let path = meridian::admin_file(port);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no running Meridian on port {port} ({} is missing); start `meridian` first, or pass --port",
            path.display()
        )
    })?;
    let admin: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not Meridian's admin file", path.display()))?;
    let (Some(url), Some(secret)) = (admin["revoke_url"].as_str(), admin["secret"].as_str()) else {
        anyhow::bail!("{} lacks revoke_url or secret", path.display());
    };
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(secret)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "person={}",
            url::form_urlencoded::byte_serialize(person.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .with_context(|| {
            format!("cannot reach Meridian's authorization server at {url}; is it running?")
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "{}",
            body["error_description"]
                .as_str()
                .unwrap_or("the authorization server refused")
        );
    }
    println!(
        "Revoked {} grant(s) of {} ({}). Their next call through the gateway is refused within {} s; \
         their refresh tokens no longer work.",
        body["grants_revoked"],
        body["name"].as_str().unwrap_or_default(),
        body["person"].as_str().unwrap_or_default(),
        meridian::INTROSPECTION_CACHE_S
    );
    Ok(())
}

fn print_banner(running: &Running, ttl: Duration, print_tokens: bool) {
    let auth = running.auth_server();
    println!(
        "Meridian is running: a dev authorization server, four apps, the tracker and the Cortex gateway.\n"
    );
    println!("MCP URL: {}\n", running.url);
    println!("Add this URL to your MCP client; your client will open a browser to sign in.");
    println!("Pick one of the four personas (or anyone of the 140 people) and allow the access.\n");
    println!(
        "Authorization server: {} ({})",
        auth.issuer(),
        meridian::issuer::DEV_ONLY
    );
    println!("Grants page:          {}", auth.admin_url());
    println!("Revoke a person:      meridian revoke <e-007 | sales_rep | email>\n");
    for app in App::ALL {
        let mode = if app == App::ASSERTED {
            "  (assert mode: sees only the gateway's assertions)"
        } else {
            ""
        };
        println!(
            "  {:<9} on {:<9} {}{mode}",
            app.id(),
            app.framework(),
            running.app_url(app)
        );
    }
    let tracker = running.tracker();
    println!("\nTracker (a third-party MCP server; tools tracker_*, linked per person):");
    println!("  MCP server:           {}", tracker.url());
    println!("  Resource metadata:    {}", tracker.metadata_url());
    println!(
        "  Its own auth server:  {} (grants page {})",
        tracker.auth_server().issuer(),
        tracker.auth_server().admin_url()
    );
    println!(
        "  The first tracker_* call answers a link URL: open it to sign in to the tracker;\n  \
         the `accounts` tool lists and unlinks linked accounts."
    );
    if !print_tokens {
        println!(
            "\n(For scripts: --print-tokens prints a bearer token per persona and a curl command.)"
        );
        return;
    }
    println!(
        "\nPersona tokens, valid {} min. Paste these lines into your shell:\n",
        ttl.as_secs() / 60
    );
    for p in Persona::ALL {
        println!("# {} ({})", p.key(), p.scopes().join(" "));
        println!(
            "export {}='{}'",
            p.key().to_uppercase(),
            running.tokens.get(p)
        );
    }
    println!(
        "\nThen list the tools a persona sees (swap $SALES_REP for $PROJECT_MANAGER, $CFO or $CEO):\n"
    );
    println!("{}", meridian::curl_tools_list(&running.url, "$SALES_REP"));
    println!("\n(Append | jq -r '.result.tools[].name' for the names only.)");
}

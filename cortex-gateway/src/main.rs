//! `cortex-gateway`: serve the gateway, print the resolved configuration,
//! re-encrypt the vault under its first key, purge the audit database, or
//! bridge a stdio MCP client to a gateway.
//!
//! Exit codes: 0 success, 1 the gateway failed while running, 2 a usage or
//! configuration error (nothing was started).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use cortex_gateway::{Gateway, GatewayError, config::GatewayConfig};

#[derive(Parser)]
#[command(
    name = "cortex-gateway",
    version,
    about = "One OAuth-protected MCP endpoint for all your Cortex backends."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP on the listen address.
    Serve {
        /// Listen address (default 127.0.0.1:3213).
        #[arg(long, env = "CORTEX_LISTEN")]
        listen: Option<SocketAddr>,
        /// A TOML configuration file instead of the environment.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write audit lines to this file instead of standard output.
        #[arg(long)]
        audit_file: Option<PathBuf>,
    },
    /// Print the resolved configuration (secrets masked) and exit.
    CheckConfig {
        /// A TOML configuration file instead of the environment.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage the vault of linked accounts (CORTEX_VAULT_* variables).
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Manage the audit database (CORTEX_AUDIT_DATABASE_URL).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign and check the tool-integrity baseline (Ed25519).
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Check that a gateway is ready (`GET /readyz`): exit 0 if it answers
    /// 200, 1 otherwise. The container image's health check.
    Health {
        /// The readiness URL; default: /readyz on the port of CORTEX_LISTEN
        /// (or 3213) at 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
    /// Bridge an MCP client that speaks only stdio to a gateway: JSON-RPC
    /// lines on standard input and output, Streamable HTTP to the gateway.
    /// The token comes from CORTEX_BRIDGE_TOKEN (or CORTEX_TOKEN), else
    /// --token-file, else the bridge signs in by MCP OAuth in the browser
    /// and caches the tokens in $XDG_CONFIG_HOME/cortex (mode 0600).
    Stdio {
        /// The gateway's MCP URL (https://, or http:// to loopback).
        #[arg(long)]
        url: String,
        /// A file holding the access token, read again for every request
        /// (used when CORTEX_BRIDGE_TOKEN and CORTEX_TOKEN are unset).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Sign in with this client id, registered beforehand at the
        /// authorization server (redirect URI http://127.0.0.1/callback).
        #[arg(long, env = "CORTEX_BRIDGE_CLIENT_ID")]
        client_id: Option<String>,
        /// Sign in as the client described by this metadata document (an
        /// https URL) when the authorization server accepts those.
        #[arg(long, env = "CORTEX_BRIDGE_CLIENT_METADATA_URL")]
        client_metadata_url: Option<String>,
        /// Delete the cached sign-in for --url (and the registration at its
        /// authorization server) and exit.
        #[arg(long, visible_alias = "signout")]
        logout: bool,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Write a new private key (PKCS#8 PEM, mode 0600) and print the
    /// public key for CORTEX_BASELINE_PUBLIC_KEY.
    Keygen {
        /// Where to write the private key (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a baseline as an operator (in place, or to --out).
    Sign {
        /// The baseline file (for example the gateway's `<file>.proposed`).
        file: PathBuf,
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// Write the signed baseline here instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a baseline's signature; exit 1 if it does not verify.
    Verify {
        /// The baseline file (this gateway's or the public cortex-gateway's
        /// format).
        file: PathBuf,
        /// The public key: PEM text or a PEM file.
        #[arg(long, env = "CORTEX_BASELINE_PUBLIC_KEY", allow_hyphen_values = true)]
        public_key: String,
    },
    /// Approve a quarantined tool in a baseline file (leaves it unsigned).
    Approve {
        /// The baseline file, usually the gateway's `<file>.proposed`.
        file: PathBuf,
        /// The tool's public name.
        tool: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Delete the audit rows older than an age (default:
    /// CORTEX_AUDIT_RETENTION_DAYS), in batches, and print how many.
    Purge {
        /// The age: days (`30d`) or hours (`12h`).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
    },
}

/// `30d` or `12h`.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("`{text}` is not an age; use days or hours, e.g. 30d or 12h");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        _ => None,
    };
    seconds.map(std::time::Duration::from_secs).ok_or_else(bad)
}

/// `audit purge`: 0 done, 1 the database failed (or another gateway is
/// purging), 2 a configuration error.
fn audit_purge(older_than: Option<std::time::Duration>) -> ExitCode {
    let controls =
        match cortex_gateway::config::ControlsConfig::from_env_map(&std::env::vars().collect()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    match runtime.block_on(cortex_gateway::purge_audit(&controls, older_than)) {
        Ok(n) => {
            println!("audit purge: {n} rows deleted");
            ExitCode::SUCCESS
        }
        Err(e @ GatewayError::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-encrypt every record under the first key of CORTEX_VAULT_KEYS and
    /// print the counts; exits 1 if some record could not be re-encrypted.
    Rotate,
}

/// Logs go to standard error, filtered by `RUST_LOG` (default `info`), as
/// human-readable lines (`CORTEX_LOG_FORMAT=text`, the default) or one JSON
/// object per line (`json`, for log collectors). With `traces` (the
/// OpenTelemetry exporter), the gateway's spans go to it through a layer
/// with a filter of its own, so `RUST_LOG` still decides what is logged.
fn init_logs(
    format: Option<&str>,
    traces: Option<&cortex_gateway::telemetry::Tracing>,
) -> Result<(), cortex_gateway::config::ConfigError> {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = match format.map(str::trim) {
        None | Some("" | "text") => false,
        Some("json") => true,
        Some(other) => {
            // Logs are not set up yet: the caller prints the error.
            return Err(cortex_gateway::config::ConfigError {
                variable: "CORTEX_LOG_FORMAT".into(),
                problem: format!(
                    "`{}` is not a log format; use `text` (the default) or `json`",
                    other.chars().take(64).collect::<String>()
                ),
            });
        }
    };
    let Some(traces) = traces else {
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if json {
            logs.json().init();
        } else {
            logs.init();
        }
        return Ok(());
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = if json {
        lines.json().boxed()
    } else {
        lines.boxed()
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traces.layer())
        .init();
    Ok(())
}

/// `cortex-gateway baseline …`: exit 0 done, 1 refused (a bad signature,
/// an unknown tool, a file that cannot be written).
fn baseline(command: BaselineCommand) -> ExitCode {
    use cortex_gateway::baseline;
    let done = match command {
        BaselineCommand::Keygen { out } => baseline::keygen(&out).map(|public| {
            println!(
                "# The private key is in {} (mode 0600): keep it off the gateway host.",
                out.display()
            );
            println!(
                "# Give the gateway the public key, as CORTEX_BASELINE_PUBLIC_KEY (text or file):"
            );
            print!("{public}");
        }),
        BaselineCommand::Sign { file, key, out } => baseline::sign(&file, &key, out.as_deref())
            .map(|s| {
                println!("signed {}", out.as_ref().unwrap_or(&file).display());
                print!("{s}");
            }),
        BaselineCommand::Verify { file, public_key } => {
            baseline::verify(&file, &public_key).map(|s| {
                println!("signature valid: {}", file.display());
                print!("{s}");
            })
        }
        BaselineCommand::Approve { file, tool } => baseline::approve(&file, &tool).map(|s| {
            println!(
                "approved {tool} in {} (unsigned: sign it next)",
                file.display()
            );
            print!("{s}");
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `cortex-gateway health`: one `GET` of the readiness URL, two seconds at
/// most. The default URL follows `CORTEX_LISTEN`, so the image's health
/// check needs no argument.
fn health(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("CORTEX_LISTEN")
            .ok()
            .and_then(|l| l.parse::<SocketAddr>().ok())
            .map_or(3213, |a| a.port());
        format!("http://127.0.0.1:{port}/readyz")
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        client.get(&url).send().await
    });
    match answer {
        Ok(r) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("not ready: {url} answered {}", r.status());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("not ready: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The bridge's token: `CORTEX_BRIDGE_TOKEN`, else `CORTEX_TOKEN`, else
/// `--token-file`, else an OAuth sign-in.
fn bridge_token(
    url: &str,
    token_file: Option<PathBuf>,
    settings: cortex_gateway::bridge::OAuthSettings,
) -> Result<cortex_gateway::bridge::TokenSource, cortex_gateway::bridge::BridgeError> {
    use cortex_gateway::bridge::TokenSource;
    let fixed = ["CORTEX_BRIDGE_TOKEN", "CORTEX_TOKEN"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|token| zeroize::Zeroizing::new(token.trim().to_owned()))
        .find(|token| !token.is_empty());
    Ok(match (fixed, token_file) {
        (Some(token), _) => TokenSource::Fixed(std::sync::Arc::new(token)),
        (None, Some(path)) => TokenSource::File(path),
        (None, None) => TokenSource::sign_in(url, settings)?,
    })
}

/// `cortex-gateway stdio`: exit 0 when standard input ended (or after
/// `--logout`), 2 on a bad URL or an unusable sign-in cache, 1 when
/// standard input or output failed.
fn stdio(
    url: &str,
    token_file: Option<PathBuf>,
    settings: cortex_gateway::bridge::OAuthSettings,
    logout: bool,
) -> ExitCode {
    use cortex_gateway::bridge::BridgeOptions;
    if logout {
        return match cortex_gateway::bridge::logout(url) {
            Ok((true, path)) => {
                eprintln!("signed out of {url} (deleted {})", path.display());
                ExitCode::SUCCESS
            }
            Ok((false, _)) => {
                eprintln!("no cached sign-in for {url}; nothing to delete");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let options = match bridge_token(url, token_file, settings)
        .and_then(|token| BridgeOptions::new(url, token))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(1);
    };
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    match runtime.block_on(cortex_gateway::bridge::run(
        options,
        input,
        tokio::io::stdout(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A multi-threaded runtime, or `None` after saying why there is none.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .inspect_err(|e| eprintln!("error: cannot start the runtime: {e}"))
        .ok()
}

fn load(path: Option<&PathBuf>) -> Result<GatewayConfig, cortex_gateway::config::ConfigError> {
    match path {
        Some(p) => GatewayConfig::from_toml_file(p),
        None => GatewayConfig::from_env(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = std::env::var("CORTEX_LOG_FORMAT").ok();
    if !matches!(cli.command, Command::Serve { .. })
        && let Err(e) = init_logs(log_format.as_deref(), None)
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Vault(VaultCommand::Rotate) => vault_rotate(),
        Command::Audit(AuditCommand::Purge { older_than }) => audit_purge(older_than),
        Command::Stdio {
            url,
            token_file,
            client_id,
            client_metadata_url,
            logout,
        } => {
            let settings = cortex_gateway::bridge::OAuthSettings {
                client_id,
                client_metadata_url,
            };
            stdio(&url, token_file, settings, logout)
        }
        Command::Health { url } => health(url),
        Command::Baseline(command) => baseline(command),
        Command::CheckConfig { config } => match load(config.as_ref()) {
            Ok(c) => {
                print!("{}", c.masked_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            listen,
            config,
            audit_file,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let traces = match cortex_gateway::telemetry::Tracing::from_lookup(
                |k| std::env::var(k).ok(),
                runtime.handle().clone(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = init_logs(log_format.as_deref(), traces.as_ref()) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let mut config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(addr) = listen {
                config.listen = addr;
            }
            if audit_file.is_some() {
                config.controls.audit_file = audit_file;
            }
            let served = runtime.block_on(run(config));
            // Exports the spans still buffered while the runtime that
            // sends them is alive.
            if let Some(t) = &traces {
                t.shutdown();
            }
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ (GatewayError::Config(_) | GatewayError::NameClash(_))) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `vault rotate`: 0 every record is under the first key, 1 some are not
/// (or the storage failed), 2 a configuration error.
fn vault_rotate() -> ExitCode {
    use cortex_gateway::vault::{Vault, VaultConfig};
    let config = match VaultConfig::from_lookup(|k| std::env::var(k).ok()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!(
                "error: CORTEX_VAULT_KEYS: not set; list the new key first and the old ones \
                 after it, e.g. CORTEX_VAULT_KEYS=k2:<base64>,k1:<old base64>"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rotated = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(async {
                let vault = Vault::open(&config).await?;
                vault.rotate().await
            })
            .map_err(|e| e.to_string())
        });
    match rotated {
        Ok(report) => {
            println!("vault rotate: {report}");
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: GatewayConfig) -> Result<(), GatewayError> {
    let addr = config.listen;
    let gateway = Gateway::new(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}; set CORTEX_LISTEN or --listen"),
        )
    })?;
    let metrics = match gateway.config().controls.metrics_listen {
        Some(metrics_addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen on {metrics_addr} for metrics: {e}; set CORTEX_METRICS_LISTEN"
                        ),
                    )
                })?;
            let gateway = gateway.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = gateway.serve_metrics(metrics_listener).await {
                    tracing::error!("the metrics listener stopped: {e}");
                }
            }))
        }
        None => None,
    };
    // SIGHUP (logrotate's `postrotate`) reopens the audit file; the
    // process goes on serving.
    #[cfg(unix)]
    let reopen = {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let gateway = gateway.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                gateway.reopen_audit_file();
            }
        })
    };
    let server = tokio::spawn(gateway.clone().serve(listener, async {
        cortex_gateway::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests and closing streams");
    }));
    gateway.wait_ready().await?;
    let catalog = gateway.catalog();
    tracing::info!(
        "cortex-gateway listening on {addr}, MCP at {} ({} tools from {} healthy backends)",
        gateway.config().canonical_uri,
        catalog.tools.len(),
        catalog.healthy().count()
    );
    let result = server
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(m) = metrics {
        m.abort();
    }
    #[cfg(unix)]
    reopen.abort();
    result
}

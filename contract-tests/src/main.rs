//! `cortex-conformance`: checks a running backend, in any language, against
//! the Cortex backend contract.
//!
//! Exit status: 0 when no check failed (warnings and skips are fine), 1 when
//! a check failed, 2 for a usage error or when the backend or the issuer
//! state cannot be reached.

use std::{
    io::{IsTerminal as _, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use contract_tests::{
    CHECKS, DEFAULT_GATEWAY_AUDIENCE, DEFAULT_OVERSIZED_BODY, Format, Identity, Options,
    TestIssuer,
    issuer_file::{DEFAULT_STATE_FILE, IssuerFile, random_token},
    render,
};
use serde_json::Value;

/// Checks a Cortex backend against the contract, over HTTP.
#[derive(Parser)]
#[command(name = "cortex-conformance", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the checks against a running backend's contract endpoint.
    Check(CheckArgs),
    /// Serve a local OAuth issuer the backend under test can trust, and save
    /// its key for `check --issuer`.
    Issuer(IssuerArgs),
    /// List every check: id, contract section, description.
    List,
}

/// How the backend under test learns who calls (the gateway's token mode
/// for it).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IdentityArg {
    /// The caller's identity-provider token (forward, exchange, obo).
    Forward,
    /// Gateway assertions: the backend trusts only CORTEX_GATEWAY_ISSUER.
    Assert,
}

impl From<IdentityArg> for Identity {
    fn from(arg: IdentityArg) -> Self {
        match arg {
            IdentityArg::Forward => Identity::Forward,
            IdentityArg::Assert => Identity::Assert,
        }
    }
}

#[derive(Args)]
struct CheckArgs {
    /// The full URL of the contract endpoint, e.g.
    /// http://127.0.0.1:8080/api/cortex/backend
    url: String,
    /// A technical token the backend accepts (default: the one in the
    /// issuer state file).
    #[arg(long, env = "CORTEX_TECHNICAL_TOKEN", hide_env_values = true)]
    technical_token: Option<String>,
    /// One user token the backend accepts; checks that need other tokens
    /// are skipped.
    #[arg(long, env = "CORTEX_CONFORMANCE_USER_TOKEN", hide_env_values = true)]
    user_token: Option<String>,
    /// Mint every token from the issuer started by `cortex-conformance
    /// issuer`, read from its state file.
    #[arg(
        long,
        value_name = "STATE_FILE",
        num_args = 0..=1,
        default_missing_value = DEFAULT_STATE_FILE,
        conflicts_with = "user_token"
    )]
    issuer: Option<PathBuf>,
    /// The audience to mint tokens for (default: the one in the state file).
    #[arg(long, requires = "issuer")]
    audience: Option<String>,
    /// How the backend learns who calls: `assert` checks a backend that
    /// trusts only gateway assertions (its issuer state from `issuer
    /// --identity assert`).
    #[arg(long, value_enum, default_value_t = IdentityArg::Forward)]
    identity: IdentityArg,
    /// With --identity assert: the gateway's public audience (default: the
    /// one in the state file).
    #[arg(long, value_name = "URI")]
    gateway_audience: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Run only this check (repeatable); `cortex-conformance list` shows the ids.
    #[arg(long = "only", value_name = "ID")]
    only: Vec<String>,
    /// Also call every tool annotated readOnlyHint with arguments made up
    /// from its schema (no 5xx; results must match outputSchema).
    #[arg(long)]
    call_read_only: bool,
    /// Timeout of each request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    /// Size in bytes of the body sent to check the 413; must exceed the
    /// backend's limit.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_OVERSIZED_BODY)]
    oversized_body: usize,
    /// An extra claim for minted tokens, NAME=VALUE (VALUE as JSON, or a
    /// string), e.g. --claim role=admin.
    #[arg(long = "claim", value_name = "NAME=VALUE", requires = "issuer")]
    claims: Vec<String>,
}

#[derive(Args)]
struct IssuerArgs {
    /// Address to serve the issuer on (metadata and JWKS).
    #[arg(long, default_value = "127.0.0.1:8707")]
    listen: SocketAddr,
    /// The audience the backend must expect (OAUTH_AUDIENCE).
    #[arg(long, default_value = "cortex-conformance")]
    audience: String,
    /// Where to save the key, audience and technical token for `check --issuer`.
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// The technical token to suggest (default: the saved one, or a new
    /// random one).
    #[arg(long, hide_env_values = true)]
    technical_token: Option<String>,
    /// Generate a new key even if the state file has one.
    #[arg(long)]
    fresh: bool,
    /// `assert`: play a Cortex gateway in assert mode (a P-256 key, its
    /// JWKS at /.well-known/jwks.json, ES256 assertions) for a backend that
    /// trusts it as CORTEX_GATEWAY_ISSUER.
    #[arg(long, value_enum, default_value_t = IdentityArg::Forward)]
    identity: IdentityArg,
    /// With --identity assert: the gateway's public audience, which the
    /// backend is told to refuse (CORTEX_GATEWAY_AUDIENCE).
    #[arg(long, value_name = "URI", default_value = DEFAULT_GATEWAY_AUDIENCE)]
    gateway_audience: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args).await,
        Command::Issuer(args) => issuer(args).await,
        Command::List => {
            let width = CHECKS.iter().map(|c| c.id.len()).max().unwrap_or(0);
            for c in CHECKS {
                println!("{:width$}  {:8}  {}", c.id, c.section, c.description);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_claim(text: &str) -> anyhow::Result<(String, Value)> {
    let Some((name, value)) = text.split_once('=') else {
        bail!("--claim `{text}` must be NAME=VALUE, e.g. --claim role=admin");
    };
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

fn colour_wanted() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let state = args
        .issuer
        .as_deref()
        .map(IssuerFile::read)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let technical = match (&args.technical_token, &state) {
        (Some(t), _) => t.clone(),
        (None, Some(s)) => s.technical_token.clone(),
        (None, None) => bail!(
            "no technical token: pass --technical-token (or CORTEX_TECHNICAL_TOKEN), or --issuer \
             to use the one `cortex-conformance issuer` suggested"
        ),
    };
    let identity = Identity::from(args.identity);
    if identity == Identity::Assert && state.is_none() {
        bail!(
            "--identity assert needs --issuer: start `cortex-conformance issuer --identity assert`, \
             start the backend with the settings it prints, then check with --issuer"
        );
    }
    let gateway_audience = args
        .gateway_audience
        .or_else(|| state.as_ref().and_then(|s| s.gateway_audience.clone()))
        .unwrap_or_else(|| DEFAULT_GATEWAY_AUDIENCE.to_string());
    let mut options = Options::new(technical)
        .identity(identity)
        .gateway_audience(gateway_audience)
        .call_read_only(args.call_read_only)
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .oversized_body(args.oversized_body);
    for id in args.only {
        options = options.only(id);
    }
    for claim in &args.claims {
        let (name, value) = parse_claim(claim)?;
        options = options.claim(name, value);
    }
    if let Some(state) = &state {
        let issuer = TestIssuer::from_state(&state.issuer)
            .await
            .context("restoring the issuer from its state file")?;
        let audience = args.audience.unwrap_or_else(|| state.audience.clone());
        options = options.issuer(Arc::new(issuer), audience);
    } else if let Some(token) = args.user_token {
        options = options.user_token(token);
    }
    let report = contract_tests::check(&args.url, options).await?;
    let colour = args.format == Format::Human && colour_wanted();
    print!("{}", render::render(&report, args.format, colour));
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn saved_state(path: &Path, fresh: bool) -> Option<IssuerFile> {
    if fresh || !path.exists() {
        return None;
    }
    match IssuerFile::read(path) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("note: {e}; generating a new key");
            None
        }
    }
}

async fn issuer(args: IssuerArgs) -> anyhow::Result<ExitCode> {
    let gateway = args.identity == IdentityArg::Assert;
    let saved = saved_state(&args.state_file, args.fresh);
    let saved_key = saved
        .as_ref()
        .filter(|s| s.issuer.is_gateway() == gateway)
        .map(|s| s.issuer.clone());
    if saved.is_some() && saved_key.is_none() {
        eprintln!(
            "note: {} holds the key of another kind of issuer; generating a new key",
            args.state_file.display()
        );
    }
    let issuer = match &saved_key {
        Some(key) => TestIssuer::start_with_state(args.listen, key).await,
        None if gateway => TestIssuer::start_gateway_on(args.listen).await,
        None => TestIssuer::start_on(args.listen).await,
    }
    .with_context(|| {
        format!(
            "cannot serve the issuer on {}; pick another address with --listen 127.0.0.1:<port>",
            args.listen
        )
    })?;
    let technical_token = args
        .technical_token
        .or_else(|| saved.map(|s| s.technical_token))
        .unwrap_or_else(random_token);
    let file = IssuerFile {
        issuer: issuer.state(),
        audience: args.audience.clone(),
        technical_token: technical_token.clone(),
        gateway_audience: gateway.then(|| args.gateway_audience.clone()),
    };
    file.write(&args.state_file).with_context(|| {
        format!(
            "cannot write the issuer state to {}; pass --state-file <writable path>",
            args.state_file.display()
        )
    })?;
    let state_arg = if args.state_file == Path::new(DEFAULT_STATE_FILE) {
        String::new()
    } else {
        format!(" {}", args.state_file.display())
    };
    let (trust, identity_arg) = if gateway {
        (
            format!(
                "\x20 export CORTEX_GATEWAY_ISSUER={issuer_url}\n\
                 \x20 export OAUTH_AUDIENCE={audience}\n\
                 \x20 export CORTEX_GATEWAY_AUDIENCE={gateway_audience}\n",
                issuer_url = issuer.issuer(),
                audience = args.audience,
                gateway_audience = args.gateway_audience,
            ),
            " --identity assert",
        )
    } else {
        (
            format!(
                "\x20 export OAUTH_ISSUER={issuer_url}\n\
                 \x20 export OAUTH_AUDIENCE={audience}\n\
                 \x20 export OAUTH_JWKS_URL={jwks}\n",
                issuer_url = issuer.issuer(),
                audience = args.audience,
                jwks = issuer.jwks_url(),
            ),
            "",
        )
    };
    let kind = if gateway {
        "gateway issuer (assert mode; JWKS at /.well-known/jwks.json)"
    } else {
        "issuer"
    };
    let settings = format!(
        "cortex-conformance {kind} listening on {issuer_url}\n\
         \n\
         Start the backend under test with:\n\
         \n\
         {trust}\
         \x20 export CORTEX_TECHNICAL_TOKENS={technical_token}\n\
         \n\
         then check it from this directory:\n\
         \n\
         \x20 cortex-conformance check http://127.0.0.1:8080/api/cortex/backend --issuer{state_arg}{identity_arg}\n\
         \n\
         The signing key, audience and technical token are in {state} (owner-only).\n\
         Press Ctrl-C to stop.",
        issuer_url = issuer.issuer(),
        state = args.state_file.display(),
    );
    // Whoever started the issuer may stop reading its output; it keeps
    // serving all the same.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{settings}").and_then(|()| stdout.flush());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(ExitCode::SUCCESS)
}

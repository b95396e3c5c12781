//! The gateway under test: its environment, the `gateway` role (the
//! `cortex-gateway` library served exactly as `cortex-gateway serve` does,
//! but on a port it reports), or the real binary with `--gateway-bin`.

use std::{collections::HashMap, path::Path};

use cortex_gateway::{Gateway, config::GatewayConfig};

use crate::{backend::TrustArgs, child::Child};

/// The canonical URI every bench gateway uses: the audience of every token
/// (backends validate the forwarded token for it too).
pub(crate) const CANONICAL_URI: &str = "http://127.0.0.1/mcp";

/// One backend as the gateway sees it.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    /// The id (tool prefix).
    pub(crate) id: String,
    /// Base URL.
    pub(crate) url: String,
    /// Per-call timeout, when not the default.
    pub(crate) timeout_ms: Option<u64>,
}

/// The environment of a gateway federating `upstreams`, trusting the
/// bench issuer, with audit and the rate limiter on.
pub(crate) fn environment(trust: &TrustArgs, upstreams: &[Upstream]) -> Vec<(String, String)> {
    let ids: Vec<&str> = upstreams.iter().map(|u| u.id.as_str()).collect();
    let mut env = vec![
        ("CORTEX_BACKENDS".to_owned(), ids.join(",")),
        ("CORTEX_CANONICAL_URI".to_owned(), CANONICAL_URI.to_owned()),
        ("OAUTH_ISSUER".to_owned(), trust.issuer.clone()),
        ("OAUTH_JWKS_URL".to_owned(), trust.jwks_url.clone()),
        (
            "CORTEX_TECHNICAL_TOKEN".to_owned(),
            trust.technical_token.clone(),
        ),
        // No background refresh inside a measured window: the refresh has
        // its own scenario.
        ("CORTEX_REFRESH_INTERVAL_S".to_owned(), "3600".to_owned()),
        // Audit on: every line is built, pseudonymised and written by the
        // writer thread; /dev/null keeps the disk out of the figures.
        ("CORTEX_AUDIT_FILE".to_owned(), "/dev/null".to_owned()),
        (
            "CORTEX_AUDIT_SECRET".to_owned(),
            "cortex-bench-audit-pseudonym-key".to_owned(),
        ),
        // The limiter stays in the path with a budget the load never
        // reaches (one caller sends every request of a run). The burst
        // is a minute of that budget: a request charged with a clock
        // read before a wait for the CPU (a busy host) still fits.
        (
            "CORTEX_RATE_LIMIT_PER_MINUTE".to_owned(),
            "1000000000".to_owned(),
        ),
        (
            "CORTEX_RATE_LIMIT_BURST".to_owned(),
            "1000000000".to_owned(),
        ),
    ];
    for u in upstreams {
        let key = u.id.to_uppercase().replace('-', "_");
        env.push((format!("CORTEX_BACKEND_{key}_URL"), u.url.clone()));
        if let Some(ms) = u.timeout_ms {
            env.push((format!("CORTEX_BACKEND_{key}_TIMEOUT_MS"), ms.to_string()));
        }
    }
    env
}

/// The same settings as a configuration, for a gateway in this process.
pub(crate) fn config(trust: &TrustArgs, upstreams: &[Upstream]) -> anyhow::Result<GatewayConfig> {
    let env: HashMap<String, String> = environment(trust, upstreams).into_iter().collect();
    Ok(GatewayConfig::from_env_map(&env)?)
}

/// Starts a gateway process: `bin serve` when a binary is given, else this
/// binary's `role gateway`. `extra` settings override the bench's.
pub(crate) async fn spawn(
    name: &str,
    bin: Option<&Path>,
    trust: &TrustArgs,
    upstreams: &[Upstream],
    extra: &[(String, String)],
) -> anyhow::Result<Child> {
    let mut env = environment(trust, upstreams);
    env.extend_from_slice(extra);
    match bin {
        Some(bin) => {
            let addr = crate::child::free_loopback_addr()?;
            env.push(("CORTEX_LISTEN".to_owned(), addr.to_string()));
            let args = vec!["serve".to_owned(), "--listen".to_owned(), addr.to_string()];
            Child::spawn(name, bin, &args, &env, Some(addr)).await
        }
        None => {
            let exe = std::env::current_exe()?;
            let args = vec!["role".to_owned(), "gateway".to_owned()];
            Child::spawn(name, &exe, &args, &env, None).await
        }
    }
}

/// `role gateway`: what `cortex-gateway serve` does (same logging set-up,
/// so audit lines are written), on a loopback port announced on stdout
/// once the first catalog refresh is done.
pub(crate) async fn run_role() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = GatewayConfig::from_env()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let gateway = Gateway::new(config).await?;
    let server = tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
    gateway.wait_ready().await?;
    crate::serve::announce(addr)?;
    server.await??;
    Ok(())
}

//! The four department apps. Each is an ordinary SDK backend: a function
//! from an [`Auth`] to a [`Backend`], with its own state and its own
//! record-level rules. [`serve`] puts one on a loopback listener with the
//! framework its department chose (axum or actix-web).

pub mod billing;
pub mod crm;
pub mod docs;
pub mod serve;
pub mod staffing;

use cortex_backend::{
    Auth,
    auth::config_from_env,
    contract::{Metric, Snapshot},
};

/// One of the four apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// Accounts and the sales pipeline (axum).
    Crm,
    /// Project documents and milestones (axum).
    Docs,
    /// Invoices and payments (actix-web).
    Billing,
    /// People, availability, reviews and HR policies (actix-web).
    Staffing,
}

impl App {
    /// All apps, in the order they start.
    pub const ALL: [App; 4] = [Self::Crm, Self::Docs, Self::Billing, Self::Staffing];

    /// The app the gateway calls in `assert` mode: it never sees a caller's
    /// token, only the short-lived assertions the gateway signs for it, and
    /// refuses everything else ([`gateway_assertion_auth`]). The other apps
    /// receive the caller's token (`forward`).
    pub const ASSERTED: App = Self::Billing;

    /// The backend id (the gateway's tool prefix).
    pub fn id(self) -> &'static str {
        match self {
            Self::Crm => "crm",
            Self::Docs => "docs",
            Self::Billing => "billing",
            Self::Staffing => "staffing",
        }
    }

    /// The web framework the department chose.
    pub fn framework(self) -> &'static str {
        match self {
            Self::Crm | Self::Docs => "axum",
            Self::Billing | Self::Staffing => "actix-web",
        }
    }

    /// Builds the app and serves it on `listener` until `shutdown` fires.
    pub async fn serve(
        self,
        auth: Auth,
        listener: std::net::TcpListener,
        shutdown: serve::Shutdown,
    ) -> anyhow::Result<serve::Served> {
        match self {
            Self::Crm => serve::axum(crm::backend(auth)?, listener, shutdown).await,
            Self::Docs => serve::axum(docs::backend(auth)?, listener, shutdown).await,
            Self::Billing => serve::actix(billing::backend(auth)?, listener, shutdown).await,
            Self::Staffing => serve::actix(staffing::backend(auth)?, listener, shutdown).await,
        }
    }
}

/// The auth of an app that trusts only a gateway's assertions, read by
/// the SDK exactly as from these environment variables:
/// `CORTEX_GATEWAY_ISSUER` = `gateway_issuer`, `OAUTH_AUDIENCE` =
/// `audience` (the app's own, which the gateway mints for),
/// `CORTEX_GATEWAY_AUDIENCE` = `gateway_audience` (the gateway's canonical
/// URI, refused), `CORTEX_TECHNICAL_TOKENS` = `technical`.
pub fn gateway_assertion_auth(
    gateway_issuer: &str,
    audience: &str,
    gateway_audience: &str,
    technical: &str,
) -> anyhow::Result<Auth> {
    let env = [
        ("CORTEX_GATEWAY_ISSUER", gateway_issuer),
        ("OAUTH_AUDIENCE", audience),
        ("CORTEX_GATEWAY_AUDIENCE", gateway_audience),
        ("CORTEX_TECHNICAL_TOKENS", technical),
    ];
    let config = config_from_env(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_string())
    })?;
    Ok(Auth::new(config)?)
}

/// A snapshot with a headline, generated now.
fn snapshot(backend: &str, title: &str, headline: Vec<Metric>) -> Snapshot {
    Snapshot {
        backend: backend.into(),
        generated_at: now_iso8601(),
        title: title.into(),
        headline,
        sections: None,
        hint: None,
    }
}

/// A numeric metric.
fn metric(key: &str, label: &str, value: i64, unit: Option<&str>) -> Metric {
    let mut m = Metric::new(key, label, value);
    m.unit = unit.map(String::from);
    m
}

/// The current UTC time as `YYYY-MM-DDThh:mm:ssZ` (RFC 3339, whole
/// seconds).
pub fn now_iso8601() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

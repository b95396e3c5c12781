//! # contract-tests
//!
//! The conformance harness of the Cortex backend contract (`contract.md`,
//! version 1). It talks to a running backend over HTTP only, so it checks a
//! backend written in any language, and tells exactly where it breaks the
//! contract: each check has a stable id, says what it sent, what came back,
//! and which section of the contract requires otherwise.
//!
//! The same checks are the `cortex-conformance` command (see the crate's
//! README) and this library, for Rust tests:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use contract_tests::{Options, TestIssuer};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The backend under test trusts this issuer (OAUTH_ISSUER / OAUTH_JWKS_URL)
//! // and accepts this technical token.
//! let issuer = Arc::new(TestIssuer::start().await?);
//! let options = Options::new("a-technical-token-of-32-characters")
//!     .issuer(issuer.clone(), "https://mcp.example.com/mcp")
//!     .call_read_only(true);
//! let report = contract_tests::check("http://127.0.0.1:8080/api/cortex/backend", options).await?;
//! report.assert_passed(); // panics listing every failure with its evidence
//! # Ok(()) }
//! ```
//!
//! ## What is checked
//!
//! [`CHECKS`] lists every check (id, description, contract section). In
//! short: the HTTP envelope (`transport.*`), every kind of bad token
//! (`auth.*`), the catalogs against `schemas/` (`catalog.*`), the technical
//! token's boundary (`technical.*`), scopes and header spoofing
//! (`scopes.*`), argument errors (`arguments.*`), `get_help` (`help.*`),
//! `whoami`, `get_snapshot`, and 32 concurrent `list_tools` calls.
//!
//! A backend that trusts only gateway assertions (`CORTEX_GATEWAY_ISSUER`)
//! is checked with [`Identity::Assert`] and a gateway issuer
//! ([`TestIssuer::start_gateway`]): every token is then an ES256 assertion
//! as the gateway mints it, and the `assert.*` checks run too.
//!
//! Where user tokens come from decides how much runs ([`UserTokens`]):
//! with an issuer the backend trusts, the harness mints every token it
//! needs, valid and broken; with one given token, checks that need another
//! token are skipped and say so.
//!
//! ## Side effects
//!
//! The harness calls tools only in ways a conforming backend refuses
//! (technical token, missing scope, wrongly typed argument), except with
//! [`Options::call_read_only`], which calls the tools annotated
//! `readOnlyHint: true` with arguments made up from their schemas. A
//! backend that fails `scopes.missing-scope` may have run the tool: point
//! the harness at a test instance.

mod args;
pub mod checks;
mod formats;
pub mod issuer_file;
mod options;
mod probe;
pub mod render;
mod report;
mod run;
mod schemas;

pub use checks::{CHECKS, CheckInfo, check_info};
pub use cortex_backend::testing::TestIssuer;
pub use options::{
    DEFAULT_GATEWAY_AUDIENCE, DEFAULT_OVERSIZED_BODY, Identity, Options, UserTokens,
};
pub use render::Format;
pub use report::{CheckResult, Finding, Report, Status, Summary};

/// Why a run could not start (as opposed to checks that failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The URL cannot be used.
    #[error("{0}")]
    InvalidUrl(String),
    /// The first request got no answer at all.
    #[error(
        "no answer from {url}: {reason}. Is the backend running, and is this the full URL of its contract endpoint (usually ending in /api/cortex/backend)?"
    )]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// `only` names a check that does not exist.
    #[error("there is no check `{0}`; `cortex-conformance list` prints every id")]
    UnknownCheck(String),
    /// The identity mode and the issuer (or the selected checks) disagree.
    #[error("{0}")]
    Identity(String),
}

/// Runs the checks against the contract endpoint at `url` (the full URL,
/// e.g. `http://127.0.0.1:8080/api/cortex/backend`).
///
/// Returns a report when the backend answered at all; failed checks are in
/// the report, not an error.
pub async fn check(url: &str, options: Options) -> Result<Report, CheckError> {
    run::execute(url, options).await
}

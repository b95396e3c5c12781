//! The state file shared by `cortex-conformance issuer` and
//! `cortex-conformance check --issuer`.
//!
//! Why a file: the backend under test must trust the issuer *before* the
//! check runs (it reads `OAUTH_ISSUER`/`OAUTH_JWKS_URL` at start and may
//! cache the JWKS), so the issuer has to outlive any one check. The
//! `issuer` command serves the JWKS and writes its signing key, audience and
//! a suggested technical token here (owner-only permissions); each `check`
//! reads it and mints tokens with the same key, offline. Restarting the
//! issuer with the same file keeps the same key, so a running backend keeps
//! trusting it.

use std::{io::Write as _, path::Path};

use cortex_backend::testing::IssuerState;
use serde::{Deserialize, Serialize};

/// Default path of the state file (in the current directory).
pub const DEFAULT_STATE_FILE: &str = "cortex-conformance-issuer.json";

/// What the `issuer` command saves for `check --issuer`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerFile {
    /// The issuer's URL and signing key.
    pub issuer: IssuerState,
    /// The audience the backend was told to expect.
    pub audience: String,
    /// The technical token the backend was told to accept.
    pub technical_token: String,
    /// For a gateway issuer (`issuer --identity assert`): the gateway's
    /// public audience the backend was told to refuse
    /// (`CORTEX_GATEWAY_AUDIENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_audience: Option<String>,
}

impl std::fmt::Debug for IssuerFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerFile")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("technical_token", &"<hidden>")
            .field("gateway_audience", &self.gateway_audience)
            .finish()
    }
}

impl IssuerFile {
    /// Reads a state file; the error says what to do.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the issuer state {} ({e}); start `cortex-conformance issuer` first \
                 (it writes this file), then start the backend with the settings it prints",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not an issuer state file ({e}); restart `cortex-conformance issuer` to write a fresh one",
                path.display()
            )
        })
    }

    /// Writes the file, readable by its owner only (it holds a private key).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its old mode through `open`: tighten it.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    }
}

/// A fresh random technical token (64 hex digits).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

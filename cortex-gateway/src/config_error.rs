//! [`ConfigError`]: a setting that cannot work. A leaf, so that every
//! module that parses settings (the configuration, the vault) can name it
//! without importing the configuration.

use cortex_backend::auth::AuthConfigError;

/// A configuration that cannot work: which setting, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable (or TOML key) at fault.
    pub variable: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl From<AuthConfigError> for ConfigError {
    fn from(e: AuthConfigError) -> Self {
        Self {
            variable: e.variable,
            problem: e.problem,
        }
    }
}

impl ConfigError {
    pub(crate) fn new(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
}

//! `ToolError`: what a handler returns when it cannot answer, mapped to the
//! contract's statuses in one place ([`ToolError::status`]).

use serde_json::{Map, Value};

use crate::contract::ErrorBody;

/// A handler's refusal or failure. Each variant knows its HTTP status and its
/// contract error body.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// 400: bad arguments or a business rule (`code: invalid_params`).
    #[error("{message}")]
    Invalid {
        /// What was wrong and what to do instead.
        message: String,
        /// Extra fields for the error body.
        details: Map<String, Value>,
    },
    /// 403 with `required`: the token lacks an OAuth scope.
    #[error("missing scope {0}")]
    MissingScope(String),
    /// 403 without `required`: the app's own rules said no.
    #[error("{0}")]
    Denied(String),
    /// 404: the record does not exist or is invisible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// 500: an unexpected failure. The message is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl ToolError {
    /// 400 with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            details: Map::new(),
        }
    }

    /// 403: the app's own ACL refused (role, membership, ownership).
    pub fn denied(message: impl Into<String>) -> Self {
        Self::Denied(message.into())
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// 500; `cause` goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// 403 with `required`.
    pub fn missing_scope(scope: impl Into<String>) -> Self {
        Self::MissingScope(scope.into())
    }

    /// Adds a detail field to an [`ToolError::Invalid`] body (ignored for the
    /// other variants).
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: Value) -> Self {
        if let Self::Invalid { details, .. } = &mut self {
            details.insert(key.into(), value);
        }
        self
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::MissingScope(_) | Self::Denied(_) => 403,
            Self::NotFound(_) => 404,
            Self::Internal(_) => 500,
        }
    }

    /// The contract error body. `Internal` causes are replaced by a generic
    /// message.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Invalid { message, details } => {
                let mut body = ErrorBody::new(message.clone()).code("invalid_params");
                body.details = details.clone();
                body
            }
            Self::MissingScope(scope) => {
                ErrorBody::new(format!("this call requires the scope {scope}"))
                    .required(scope.clone())
                    .code("missing_scope")
            }
            Self::Denied(message) => ErrorBody::new(message.clone()).code("acl_denied"),
            Self::NotFound(message) => ErrorBody::new(message.clone()).code("not_found"),
            Self::Internal(_) => {
                ErrorBody::new("internal error in the backend; the details are in its log")
                    .code("internal")
            }
        }
    }
}

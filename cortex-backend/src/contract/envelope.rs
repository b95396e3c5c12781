//! The request envelope and the error body of every non-2xx answer
//! (contract §3, §6).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request body: `{"method": "<name>", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestEnvelope {
    /// A reserved method name or a tool name.
    pub method: String,
    /// The method's parameters; absent means `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// The error body of every non-2xx answer (contract §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person or an agent.
    pub error: String,
    /// The OAuth scope the token lacks. Present only on a scope refusal; its
    /// absence on a 403 means the app's own ACL said no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
    /// (ext) A stable machine-readable code such as `unknown_method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Any further detail (for example `topics` on an unknown help topic).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ErrorBody {
    /// An error body with only the message.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            required: None,
            code: None,
            details: Map::new(),
        }
    }

    /// Sets the machine-readable code.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the missing scope.
    #[must_use]
    pub fn required(mut self, scope: impl Into<String>) -> Self {
        self.required = Some(scope.into());
        self
    }

    /// Adds a detail field.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: Value) -> Self {
        self.details.insert(key.into(), value);
        self
    }
}

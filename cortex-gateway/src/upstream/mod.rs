//! The upstream client: one pooled HTTP client that calls backends over the
//! contract (`POST {"method", "params"}`), with per-backend timeouts, a
//! response size limit, and errors classified as in contract.md §6.

mod exchange;

use std::{sync::Arc, time::Duration};

use cortex_backend::{Caller, contract::headers};
use futures::StreamExt;
use serde_json::{Map, Value, json};

pub use exchange::TokenExchanger;

use crate::config::{BackendConfig, TokenMode};

/// Who the call is made for.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The technical token (discovery methods only).
    Technical(&'a str),
    /// A validated caller: their token plus the `X-Cortex-*` headers.
    User(&'a Caller),
}

/// Why a backend call did not give a JSON result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The backend answered with a non-2xx status (contract §6).
    #[error("HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The `error` string of the body (or a description of the body).
        message: String,
        /// `required` on a 403 scope refusal.
        required: Option<String>,
        /// The whole error body.
        body: Value,
    },
    /// No answer within the backend's timeout.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection failed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The body exceeded the response limit.
    #[error("the response exceeded {0} bytes")]
    TooLarge(usize),
    /// The body is not JSON.
    #[error("the response is not JSON: {0}")]
    InvalidJson(String),
    /// A claim cannot travel as a header value (CR, LF or other control
    /// characters): the call is refused, never forwarded.
    #[error("the claim behind `{0}` contains characters not allowed in a header")]
    UnsafeHeader(&'static str),
    /// Token exchange (RFC 8693) for the backend failed.
    #[error("token exchange failed: {0}")]
    Exchange(String),
}

impl UpstreamError {
    /// Whether a 400 means "method not implemented" (optional methods).
    pub fn is_unknown_method(&self) -> bool {
        match self {
            Self::Status {
                status: 400,
                body,
                message,
                ..
            } => {
                body.get("code").and_then(Value::as_str) == Some("unknown_method")
                    || message.to_ascii_lowercase().contains("unknown method")
            }
            Self::Status {
                status: 404 | 405, ..
            } => true,
            _ => false,
        }
    }
}

/// The pooled client.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    max_response_bytes: usize,
    exchanger: Option<Arc<TokenExchanger>>,
}

/// A header value is safe when it is visible ASCII or space/tab only.
fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The `X-Cortex-*` headers for a caller; refuses values that are not
/// header-safe rather than altering them.
pub fn cortex_headers(caller: &Caller) -> Result<Vec<(&'static str, String)>, UpstreamError> {
    let values = [
        (headers::USER_ID, caller.sub.clone()),
        (
            headers::USER_EMAIL,
            caller.email.clone().unwrap_or_default(),
        ),
        (headers::USER_ROLE, caller.role.clone().unwrap_or_default()),
        (headers::USER_POOL, caller.pool.clone().unwrap_or_default()),
        (headers::SCOPES, caller.scopes.join(" ")),
    ];
    for (name, value) in &values {
        if !header_safe(value) {
            return Err(UpstreamError::UnsafeHeader(name));
        }
    }
    Ok(values.into())
}

impl UpstreamClient {
    /// A client with a response limit.
    pub fn new(max_response_bytes: usize) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            max_response_bytes,
            exchanger: None,
        })
    }

    /// Enables token exchange for backends in `exchange` mode.
    #[must_use]
    pub fn with_exchange(
        mut self,
        issuer: String,
        config: crate::config::TokenExchangeConfig,
    ) -> Self {
        self.exchanger = Some(Arc::new(TokenExchanger::new(
            self.http.clone(),
            issuer,
            config,
        )));
        self
    }

    async fn user_token(
        &self,
        backend: &BackendConfig,
        caller: &Caller,
        timeout: Duration,
    ) -> Result<String, UpstreamError> {
        if backend.token_mode == TokenMode::Forward {
            return Ok(caller.token().to_string());
        }
        let exchanger = self.exchanger.as_ref().ok_or_else(|| {
            UpstreamError::Exchange("no client credentials are configured".into())
        })?;
        tokio::time::timeout(timeout, exchanger.token_for(caller, backend))
            .await
            .map_err(|_| {
                UpstreamError::Exchange("the token endpoint did not answer in time".into())
            })?
    }

    /// Calls `method` on `backend` with `params`, bounded by `timeout`.
    pub async fn call(
        &self,
        backend: &BackendConfig,
        credential: Credential<'_>,
        method: &str,
        params: Option<Map<String, Value>>,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let mut body = Map::new();
        body.insert("method".into(), Value::String(method.into()));
        if let Some(p) = params {
            body.insert("params".into(), Value::Object(p));
        }
        let mut request = self
            .http
            .post(backend.endpoint())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default());
        match credential {
            Credential::Technical(token) => {
                request = request.bearer_auth(token);
            }
            Credential::User(caller) => {
                let headers = cortex_headers(caller)?;
                request = request.bearer_auth(self.user_token(backend, caller, timeout).await?);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
        }
        let timeout_ms = timeout.as_millis() as u64;
        let exchange = async {
            let response = request.send().await.map_err(|e| {
                if e.is_timeout() {
                    UpstreamError::Timeout(timeout_ms)
                } else {
                    UpstreamError::Unreachable(describe(&e))
                }
            })?;
            let status = response.status().as_u16();
            if let Some(len) = response.content_length()
                && len as usize > self.max_response_bytes
            {
                return Err(UpstreamError::TooLarge(self.max_response_bytes));
            }
            let mut stream = response.bytes_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
                if bytes.len() + chunk.len() > self.max_response_bytes {
                    return Err(UpstreamError::TooLarge(self.max_response_bytes));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout_ms))??;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if (200..300).contains(&status) {
            return parsed.map_err(|e| UpstreamError::InvalidJson(e.to_string()));
        }
        let body = parsed.unwrap_or_else(
            |_| json!({"error": format!("HTTP {status} with a body that is not JSON")}),
        );
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP {status}"));
        let required = body
            .get("required")
            .and_then(Value::as_str)
            .map(String::from);
        Err(UpstreamError::Status {
            status,
            message,
            required,
            body,
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

//! Sending one request to the backend and keeping a printable record of the
//! exchange. Tokens never appear in a record: each credential carries a
//! label (`<expired user token>`) that is printed instead, and any echo of
//! the token in the answer is masked.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use crate::report::Finding;

/// A bearer token and the words that stand for it in reports.
#[derive(Clone)]
pub(crate) struct Cred {
    pub(crate) label: String,
    pub(crate) token: String,
}

impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cred(<{}>)", self.label)
    }
}

impl Cred {
    pub(crate) fn new(label: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            token: token.into(),
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Empty,
    Json(Value),
    Raw(Bytes),
}

/// One request to the endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    http_method: Method,
    payload: Payload,
    content_type: Option<&'static str>,
    cred: Option<Cred>,
    headers: Vec<(&'static str, String)>,
}

impl Call {
    /// `POST {"method": method, "params": params}` as application/json.
    pub(crate) fn method(method: &str, params: Option<Value>) -> Self {
        let body = match params {
            Some(p) => json!({"method": method, "params": p}),
            None => json!({"method": method}),
        };
        Self {
            http_method: Method::POST,
            payload: Payload::Json(body),
            content_type: Some("application/json"),
            cred: None,
            headers: Vec::new(),
        }
    }

    /// A POST with these exact bytes as application/json.
    pub(crate) fn raw(body: impl Into<Bytes>) -> Self {
        Self {
            http_method: Method::POST,
            payload: Payload::Raw(body.into()),
            content_type: Some("application/json"),
            cred: None,
            headers: Vec::new(),
        }
    }

    /// Another HTTP method without a body.
    pub(crate) fn http(method: Method) -> Self {
        Self {
            http_method: method,
            payload: Payload::Empty,
            content_type: None,
            cred: None,
            headers: Vec::new(),
        }
    }

    pub(crate) fn cred(mut self, cred: Option<&Cred>) -> Self {
        self.cred = cred.cloned();
        self
    }

    pub(crate) fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request and what came back.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    /// The request, printable.
    pub(crate) sent: String,
    /// The status, or why there was none.
    pub(crate) status: Result<u16, String>,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
    /// The body parsed as JSON, when it is JSON.
    pub(crate) json: Option<Value>,
    secret: Option<String>,
}

/// At most this many characters of a body are kept in a record.
const EXCERPT: usize = 240;

pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= EXCERPT {
        flat
    } else {
        let cut: String = flat.chars().take(EXCERPT).collect();
        format!("{cut}... ({} bytes)", bytes.len())
    }
}

impl Exchange {
    pub(crate) fn status(&self) -> Option<u16> {
        self.status.as_ref().ok().copied()
    }

    pub(crate) fn is(&self, status: u16) -> bool {
        self.status() == Some(status)
    }

    /// The answer, printable and with the request's token masked.
    pub(crate) fn received(&self) -> String {
        let text = match &self.status {
            Err(e) => format!("no answer: {e}"),
            Ok(status) => {
                let ct = self.content_type.as_deref().unwrap_or("no content type");
                if self.body.is_empty() {
                    format!("{status} ({ct}), empty body")
                } else {
                    format!("{status} ({ct}) {}", excerpt(&self.body))
                }
            }
        };
        match &self.secret {
            Some(secret) if !secret.is_empty() => text.replace(secret.as_str(), "<token>"),
            _ => text,
        }
    }

    /// A finding about this exchange.
    pub(crate) fn finding(&self, problem: impl Into<String>) -> Finding {
        Finding {
            problem: problem.into(),
            sent: Some(self.sent.clone()),
            received: Some(self.received()),
        }
    }

    /// Whether the content type is JSON (`application/json` or `+json`).
    pub(crate) fn is_json_content(&self) -> bool {
        self.content_type.as_deref().is_some_and(|ct| {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
    }

    /// The body as a JSON object, when it is one.
    pub(crate) fn object(&self) -> Option<&serde_json::Map<String, Value>> {
        self.json.as_ref().and_then(Value::as_object)
    }

    /// The string field `key` of the body.
    pub(crate) fn str_field(&self, key: &str) -> Option<&str> {
        self.object()?.get(key)?.as_str()
    }

    /// `None` when the status is one of `expected` and the body is a
    /// contract error body (`application/json`, `{"error": string}`);
    /// otherwise what is wrong.
    pub(crate) fn error_problem(&self, expected: &[u16]) -> Option<String> {
        let want = expected
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        let Some(status) = self.status() else {
            return Some(format!("expected {want}, got no answer"));
        };
        if !expected.contains(&status) {
            return Some(format!("expected {want}, got {status}"));
        }
        if !self.is_json_content() {
            return Some(format!(
                "status {status} is right, but the body is {} instead of application/json",
                self.content_type.as_deref().unwrap_or("untyped")
            ));
        }
        let Some(body) = &self.json else {
            return Some(format!(
                "status {status} is right, but the body is not JSON"
            ));
        };
        crate::schemas::error_body_problem(body).map(|p| {
            format!(
                "status {status} is right, but the error body is not {{\"error\": string}}: {p}"
            )
        })
    }
}

/// The HTTP client, bound to one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    client: reqwest::Client,
    url: String,
    path: String,
}

impl Probe {
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            format!(
                "`{url}` is not a URL ({e}); pass e.g. http://127.0.0.1:8080/api/cortex/backend"
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` must start with http:// or https://"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: url.to_string(),
            path: parsed.path().to_string(),
        })
    }

    pub(crate) async fn send(&self, call: Call) -> Exchange {
        let mut sent = format!("{} {}", call.http_method, self.path);
        let mut request = self.client.request(call.http_method.clone(), &self.url);
        if let Some(cred) = &call.cred {
            request = request.bearer_auth(&cred.token);
            sent.push_str(&format!(" [Authorization: Bearer <{}>]", cred.label));
        }
        if let Some(ct) = call.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
            sent.push_str(&format!(" [Content-Type: {ct}]"));
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value);
            sent.push_str(&format!(" [{name}: {value}]"));
        }
        let bytes = match call.payload {
            Payload::Empty => None,
            Payload::Json(v) => Some(Bytes::from(v.to_string())),
            Payload::Raw(b) => Some(b),
        };
        if let Some(bytes) = bytes {
            if bytes.is_empty() {
                sent.push_str(" empty body");
            } else {
                sent.push(' ');
                sent.push_str(&excerpt(&bytes));
            }
            request = request.body(bytes);
        }
        let secret = call.cred.map(|c| c.token);
        match request.send().await {
            Err(e) => Exchange {
                sent,
                status: Err(describe(&e)),
                content_type: None,
                body: Bytes::new(),
                json: None,
                secret,
            },
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                match response.bytes().await {
                    Ok(body) => {
                        let json = serde_json::from_slice(&body).ok();
                        Exchange {
                            sent,
                            status: Ok(status),
                            content_type,
                            body,
                            json,
                            secret,
                        }
                    }
                    Err(e) => Exchange {
                        sent,
                        status: Err(format!(
                            "status {status}, then the body broke off: {}",
                            describe(&e)
                        )),
                        content_type,
                        body: Bytes::new(),
                        json: None,
                        secret,
                    },
                }
            }
        }
    }
}

/// The error and its causes on one line.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

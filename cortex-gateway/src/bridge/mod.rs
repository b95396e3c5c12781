//! The stdio bridge (`cortex-gateway stdio --url …`): lets an MCP client
//! that only speaks stdio use a gateway over Streamable HTTP.
//!
//! Each line read from standard input is one JSON-RPC message. It is POSTed
//! to the gateway with what the HTTP transport needs and stdio does not
//! carry: the bearer token, the legacy session id and negotiated version
//! (after an `initialize`), and for 2026-07-28 requests the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers mirrored from
//! the body. Every message the gateway answers (a JSON body or the events
//! of a stream) is written to standard output as one line. A legacy session
//! also gets the gateway's notification stream (`GET`), written out the
//! same way.
//!
//! Requests run concurrently (at most [`MAX_IN_FLIGHT`]; reading waits
//! beyond that), except `initialize`, which is answered before the next
//! line is read. On a 2026-07-28 request, `notifications/cancelled` from the
//! client closes that request's stream, which is how HTTP cancels. When
//! standard input ends, the bridge waits for the requests in flight, ends
//! the legacy session (`DELETE`) and exits.
//!
//! The token comes from `CORTEX_BRIDGE_TOKEN` (or `CORTEX_TOKEN`), a token
//! file, or else the bridge signs in by MCP OAuth on the first 401 and
//! keeps the tokens in the user's configuration directory (`oauth`,
//! `token_cache`).
//!
//! Failures the gateway cannot word itself (the gateway unreachable, a
//! refused token, an ended session) become a JSON-RPC error for the request
//! whose text says what to do; nothing else is written to standard output.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::{
    StatusCode,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};
use zeroize::Zeroizing;

mod oauth;
mod token_cache;

pub use oauth::{OAuthSettings, SIGN_IN_TIMEOUT, SignIn};

/// Requests the bridge has in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// The largest message read from standard input or from the gateway.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Lines waiting to be written to standard output.
const OUTPUT_QUEUE: usize = 256;
/// The `_meta` key of a 2026-07-28 request's revision.
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// The JSON-RPC code of the bridge's own errors (implementation range).
const BRIDGE_ERROR: i64 = -32000;

/// Where the bridge takes the caller's token from.
#[derive(Clone)]
pub enum TokenSource {
    /// No token: the gateway answers 401, and the client is told what to
    /// set.
    None,
    /// A fixed token (from `CORTEX_BRIDGE_TOKEN` or `CORTEX_TOKEN`).
    Fixed(Arc<Zeroizing<String>>),
    /// A file read again for every request, so whatever refreshes it is
    /// picked up without a restart.
    File(PathBuf),
    /// The bridge signs in by MCP OAuth and keeps the tokens in the user's
    /// configuration directory ([`TokenSource::sign_in`]).
    OAuth(Arc<oauth::SignIn>),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::OAuth(sign_in) => f.debug_tuple("OAuth").field(sign_in).finish(),
        }
    }
}

impl TokenSource {
    /// Signs in to the gateway at `url` by MCP OAuth when it asks for a
    /// token, starting from the cached sign-in if there is one. Fails when
    /// the cache cannot be used (for example a file other users may read).
    pub fn sign_in(url: &str, settings: OAuthSettings) -> Result<Self, BridgeError> {
        let parsed = parse_url(url)?;
        oauth::SignIn::new(&parsed, settings)
            .map(|s| Self::OAuth(Arc::new(s)))
            .map_err(BridgeError::SignIn)
    }

    async fn current(&self) -> Result<Option<Zeroizing<String>>, String> {
        match self {
            Self::None => Ok(None),
            Self::Fixed(token) => Ok(Some(Zeroizing::new(token.as_str().to_owned()))),
            Self::OAuth(sign_in) => sign_in.token().await,
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read the token file {}: {e}; fix the path given to --token-file",
                        path.display()
                    )
                })?;
                let token = Zeroizing::new(text.trim().to_owned());
                if token.is_empty() {
                    return Err(format!(
                        "the token file {} is empty; write a current access token into it",
                        path.display()
                    ));
                }
                Ok(Some(token))
            }
        }
    }
}

/// Deletes the cached sign-in for the gateway at `url` (`stdio --logout`):
/// whether there was one, and the file it was kept in.
pub fn logout(url: &str) -> Result<(bool, PathBuf), BridgeError> {
    oauth::logout(&parse_url(url)?).map_err(BridgeError::SignIn)
}

/// Checks `url`: `https://`, or `http://` to a loopback host only (the
/// token must not travel in clear), and no credentials in it.
fn parse_url(url: &str) -> Result<reqwest::Url, BridgeError> {
    let problem = |problem: String| BridgeError::Url {
        url: url.to_owned(),
        problem,
    };
    cortex_backend::auth::check_transport(url, false).map_err(|_| {
        problem(
            "the bridge sends your token, so the URL must be https:// \
             (or http:// to a loopback address)"
                .into(),
        )
    })?;
    let parsed = reqwest::Url::parse(url).map_err(|e| problem(e.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(problem(
            "credentials in the URL are not supported; give the token with \
             CORTEX_BRIDGE_TOKEN or --token-file, or let the bridge sign in"
                .into(),
        ));
    }
    Ok(parsed)
}

/// Why the bridge could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The gateway URL is not usable.
    #[error("--url {url}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The sign-in cannot start (for example, its cache is unsafe).
    #[error("{0}")]
    SignIn(String),
    /// Standard input or output failed.
    #[error("standard input or output failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the bridge connects to.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    url: reqwest::Url,
    token: TokenSource,
}

impl BridgeOptions {
    /// Checks `url`: `https://`, or `http://` to a loopback host only (the
    /// token must not travel in clear).
    pub fn new(url: &str, token: TokenSource) -> Result<Self, BridgeError> {
        Ok(Self {
            url: parse_url(url)?,
            token,
        })
    }
}

/// The legacy session, once `initialize` was answered.
#[derive(Default)]
struct Session {
    id: Option<String>,
    version: Option<String>,
}

struct Bridge {
    http: reqwest::Client,
    options: BridgeOptions,
    session: Mutex<Session>,
    listening: AtomicBool,
    out: mpsc::Sender<Bytes>,
    /// In-flight 2026-07-28 requests by JSON-RPC id, for cancellation.
    modern: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

/// Runs the bridge until `input` ends, writing to `output`.
pub async fn run<R, W>(options: BridgeOptions, input: R, output: W) -> Result<(), BridgeError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| BridgeError::Io(std::io::Error::other(e)))?;
    let (out, lines) = mpsc::channel(OUTPUT_QUEUE);
    let writer = tokio::spawn(write_lines(lines, output));
    let bridge = Arc::new(Bridge {
        http,
        options,
        session: Mutex::new(Session::default()),
        listening: AtomicBool::new(false),
        out,
        modern: Mutex::new(HashMap::new()),
    });
    let result = bridge.clone().read_all(input).await;
    bridge.end_session().await;
    drop(bridge);
    match writer.await {
        Ok(written) => written?,
        Err(e) => return Err(BridgeError::Io(std::io::Error::other(e))),
    }
    result
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut lines: mpsc::Receiver<Bytes>,
    mut output: W,
) -> Result<(), BridgeError> {
    while let Some(line) = lines.recv().await {
        output.write_all(&line).await?;
        output.write_all(b"\n").await?;
        output.flush().await?;
    }
    Ok(())
}

/// One line of input, or why it was not one.
enum Line {
    Message(Vec<u8>),
    TooLong,
    End,
}

/// Reads up to the next newline, keeping at most [`MAX_MESSAGE_BYTES`].
async fn read_line<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if line.is_empty() {
                Line::End
            } else {
                Line::Message(line)
            });
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        if !too_long {
            if line.len() + part.len() > MAX_MESSAGE_BYTES {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        let ended = done <= chunk.len() && chunk.get(done - 1) == Some(&b'\n');
        input.consume(done);
        if ended {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Message(line)
            });
        }
    }
}

/// A JSON-RPC error answer to `id`.
fn error_line(id: &Value, code: i64, message: &str) -> Bytes {
    Bytes::from(
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string(),
    )
}

/// A header value mirrored from the body: as is when it is visible ASCII
/// (spaces inside allowed), else the `=?base64?…?=` form.
fn header_safe(value: &str) -> HeaderValue {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?");
    if plain && let Ok(v) = HeaderValue::from_str(value) {
        return v;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
    HeaderValue::from_str(&format!("=?base64?{encoded}?=")).unwrap_or(HeaderValue::from_static(""))
}

impl Bridge {
    async fn read_all<R: AsyncBufRead + Unpin>(
        self: Arc<Self>,
        mut input: R,
    ) -> Result<(), BridgeError> {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        loop {
            let line = match read_line(&mut input).await? {
                Line::End => break,
                Line::TooLong => {
                    self.emit(error_line(
                        &Value::Null,
                        -32700,
                        &format!(
                            "a message larger than {MAX_MESSAGE_BYTES} bytes was dropped; \
                             send smaller arguments"
                        ),
                    ))
                    .await;
                    continue;
                }
                Line::Message(line) => line,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message: Value = match serde_json::from_slice(&line) {
                Ok(m @ Value::Object(_)) => m,
                Ok(_) | Err(_) => {
                    self.emit(error_line(
                        &Value::Null,
                        -32700,
                        "a line that is not one JSON-RPC message was dropped; \
                         write one JSON object per line",
                    ))
                    .await;
                    continue;
                }
            };
            while tasks.try_join_next().is_some() {}
            let method = message.get("method").and_then(Value::as_str);
            let modern = message
                .pointer("/params/_meta")
                .and_then(|meta| meta.get(VERSION_KEY))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if method == Some("notifications/cancelled")
                && let Some(id) = message.pointer("/params/requestId")
                && let Some(cancel) = crate::sync::lock(&self.modern).remove(&id.to_string())
            {
                // HTTP cancels a 2026-07-28 request by closing its stream.
                let _ = cancel.send(());
                continue;
            }
            if method == Some("initialize") && modern.is_none() {
                // Everything after it needs the session it opens.
                self.send(message, None).await;
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let key = message
                .get("id")
                .filter(|_| modern.is_some())
                .map(Value::to_string);
            let (cancel, cancelled) = oneshot::channel::<()>();
            if let Some(key) = &key {
                crate::sync::lock(&self.modern).insert(key.clone(), cancel);
            }
            let bridge = self.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = bridge.send(message, modern) => {}
                    Ok(()) = cancelled => {}
                }
                if let Some(key) = key {
                    crate::sync::lock(&bridge.modern).remove(&key);
                }
                drop(slot);
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn emit(&self, line: Bytes) {
        let _ = self.out.send(line).await;
    }

    /// The headers every request carries, or the error to answer with;
    /// also the token sent, if any.
    async fn headers(&self) -> Result<(HeaderMap, Option<Zeroizing<String>>), String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let token = self.options.token.current().await?;
        if let Some(token) = &token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .map_err(|_| "the token has characters a header cannot carry".to_owned())?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok((headers, token))
    }

    /// Adds the legacy session's id and version; whether there is a session.
    fn session_headers(&self, headers: &mut HeaderMap) -> bool {
        let session = crate::sync::lock(&self.session);
        let header =
            |value: &Option<String>| value.as_deref().and_then(|s| HeaderValue::from_str(s).ok());
        if let Some(v) = header(&session.version) {
            headers.insert("mcp-protocol-version", v);
        }
        let Some(sid) = header(&session.id) else {
            return false;
        };
        headers.insert("mcp-session-id", sid);
        true
    }

    /// After a 401 to a request that carried `sent`: whether the request
    /// should be sent again (the bridge signed in or refreshed), or the
    /// error to answer with. `attempt` counts the renewals so far: the
    /// first may refresh, the second signs in, and then the 401 stands.
    async fn renew(
        &self,
        response: &reqwest::Response,
        sent: Option<&str>,
        attempt: u8,
        seen: u64,
    ) -> Result<bool, String> {
        let TokenSource::OAuth(sign_in) = &self.options.token else {
            return Ok(false);
        };
        if attempt >= 2 {
            return Ok(false);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok());
        sign_in.renew(sent, challenge, attempt == 0, seen).await?;
        Ok(true)
    }

    /// POSTs one message and writes out what comes back.
    async fn send(self: &Arc<Self>, message: Value, modern: Option<String>) {
        let id = message.get("id").cloned();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut extra = HeaderMap::new();
        extra.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &modern {
            Some(version) => {
                if let Ok(v) = HeaderValue::from_str(version) {
                    extra.insert("mcp-protocol-version", v);
                }
                if let Some(method) = &method {
                    extra.insert("mcp-method", header_safe(method));
                    let named = matches!(
                        method.as_str(),
                        "tools/call" | "resources/read" | "prompts/get"
                    );
                    let name = message
                        .pointer("/params/name")
                        .or_else(|| message.pointer("/params/uri"))
                        .and_then(Value::as_str);
                    if named && let Some(name) = name {
                        extra.insert("mcp-name", header_safe(name));
                    }
                }
            }
            None => {
                self.session_headers(&mut extra);
            }
        }
        let body = Bytes::from(message.to_string());
        let mut attempt = 0;
        let response = loop {
            // Sign-ins so far, read before the token is: a request that then
            // waits for someone else's sign-in shares its outcome.
            let seen = match &self.options.token {
                TokenSource::OAuth(sign_in) => sign_in.sign_ins(),
                _ => 0,
            };
            let (mut headers, sent) = match self.headers().await {
                Ok(h) => h,
                Err(problem) => return self.fail(id.as_ref(), &problem).await,
            };
            headers.extend(extra.clone());
            let response = match self
                .http
                .post(self.options.url.clone())
                .headers(headers)
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "the gateway could not be reached");
                    let problem = format!(
                        "cannot reach the gateway at {}: check --url and that the gateway runs",
                        self.redacted_url()
                    );
                    return self.fail(id.as_ref(), &problem).await;
                }
            };
            if response.status() != StatusCode::UNAUTHORIZED {
                break response;
            }
            match self
                .renew(
                    &response,
                    sent.as_deref().map(String::as_str),
                    attempt,
                    seen,
                )
                .await
            {
                Ok(true) => attempt += 1,
                Ok(false) => break response,
                Err(problem) => return self.fail(id.as_ref(), &problem).await,
            }
        };
        let status = response.status();
        if method.as_deref() == Some("initialize") && modern.is_none() && status.is_success() {
            let sid = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            crate::sync::lock(&self.session).id = sid;
        }
        let initialized = method.as_deref() == Some("notifications/initialized");
        let fails = self.refusal(&response, modern.is_none());
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status == StatusCode::ACCEPTED {
            if initialized {
                self.listen();
            }
            return;
        }
        if is_stream {
            self.forward_events(response).await;
            return;
        }
        let body = match read_capped(response, MAX_MESSAGE_BYTES, "the gateway's answer").await {
            Ok(b) => b,
            Err(problem) => return self.fail(id.as_ref(), &problem).await,
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(answer) if answer.get("jsonrpc").is_some() => {
                if method.as_deref() == Some("initialize")
                    && modern.is_none()
                    && let Some(v) = answer
                        .pointer("/result/protocolVersion")
                        .and_then(Value::as_str)
                {
                    crate::sync::lock(&self.session).version = Some(v.to_owned());
                }
                self.emit(Bytes::from(answer.to_string())).await;
            }
            _ => {
                let problem = fails.unwrap_or_else(|| {
                    format!("the gateway answered HTTP {status} without a JSON-RPC message")
                });
                self.fail(id.as_ref(), &problem).await;
            }
        }
    }

    /// What to tell the client when the gateway refused the request at the
    /// HTTP level.
    fn refusal(&self, response: &reqwest::Response, legacy: bool) -> Option<String> {
        let status = response.status();
        let described = || {
            response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("error_description=\"").nth(1))
                .and_then(|v| v.split('"').next())
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        };
        match status {
            StatusCode::UNAUTHORIZED if matches!(self.options.token, TokenSource::OAuth(_)) => {
                Some(format!(
                    "the gateway refused the token even after a new sign-in (HTTP 401{}); \
                     run `cortex-gateway stdio --url {} --logout` and start the client again",
                    described(),
                    self.redacted_url()
                ))
            }
            StatusCode::UNAUTHORIZED => Some(format!(
                "the gateway refused the token (HTTP 401{}); set CORTEX_BRIDGE_TOKEN or \
                 --token-file to a current access token for {}, or unset both to let \
                 the bridge sign in",
                described(),
                self.redacted_url()
            )),
            StatusCode::FORBIDDEN => Some(format!(
                "the gateway refused the request (HTTP 403{}); the token lacks a scope \
                 or the origin is not allowed",
                described()
            )),
            StatusCode::NOT_FOUND if legacy && crate::sync::lock(&self.session).id.is_some() => {
                let mut session = crate::sync::lock(&self.session);
                session.id = None;
                session.version = None;
                Some(
                    "the gateway ended the MCP session; restart the client to open a new one"
                        .into(),
                )
            }
            StatusCode::TOO_MANY_REQUESTS => Some(format!(
                "the gateway's rate limit was reached; retry after {} s",
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("a few")
            )),
            _ => None,
        }
    }

    /// Answers the request `id` (if it is one) with the bridge's error;
    /// a notification's failure is only logged.
    async fn fail(&self, id: Option<&Value>, problem: &str) {
        match id {
            Some(id) => self.emit(error_line(id, BRIDGE_ERROR, problem)).await,
            None => tracing::warn!(%problem, "a notification was not delivered"),
        }
    }

    /// Writes out every message of an event stream.
    async fn forward_events(&self, response: reqwest::Response) {
        let mut events = response.bytes_stream().eventsource();
        while let Ok(Some(event)) = events.try_next().await {
            if event.data.len() > MAX_MESSAGE_BYTES || event.data.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&event.data) {
                Ok(message) => self.emit(Bytes::from(message.to_string())).await,
                Err(_) => tracing::warn!("the gateway sent an event that is not JSON"),
            }
        }
    }

    /// Opens the legacy session's notification stream once.
    fn listen(self: &Arc<Self>) {
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.hold_stream().await });
    }

    async fn hold_stream(self: Arc<Self>) {
        for _ in 0..5 {
            let Ok((mut headers, _)) = self.headers().await else {
                return;
            };
            if !self.session_headers(&mut headers) {
                return;
            }
            headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
            let Ok(response) = self
                .http
                .get(self.options.url.clone())
                .headers(headers)
                .send()
                .await
            else {
                return;
            };
            if !response.status().is_success() {
                // 405: the gateway keeps no stream for this session.
                return;
            }
            self.forward_events(response).await;
            if self.out.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Ends the legacy session, if one was opened.
    async fn end_session(&self) {
        let id = crate::sync::lock(&self.session).id.take();
        let Some(id) = id else { return };
        let Ok((mut headers, _)) = self.headers().await else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("mcp-session-id", v);
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.http
                .delete(self.options.url.clone())
                .headers(headers)
                .send(),
        )
        .await;
    }

    /// The gateway URL without its query (which could carry anything).
    fn redacted_url(&self) -> String {
        let mut url = self.options.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }
}

/// A body of at most `limit` bytes; `who` names the answer in errors.
async fn read_capped(
    response: reqwest::Response,
    limit: usize,
    who: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut body = Zeroizing::new(Vec::new());
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("{who} broke off: {e}"))?;
        if body.len() + chunk.len() > limit {
            return Err(format!("{who} is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

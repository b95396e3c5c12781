//! The upstream client: one pooled HTTP client that calls backends over the
//! contract (`POST {"method", "params"}`), with per-backend timeouts, a
//! response size limit, and errors classified as in contract.md §6.

// Public for the `testing` feature (the gateway's integration tests).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

mod exchange;
mod failure;
mod h1;
mod identity;
pub(crate) mod mcp;
pub(crate) mod settings;
mod source;

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use cortex_backend::{Caller, contract::headers};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{
    HeaderMap, Method, Request, Uri,
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::Serialize;
use serde_json::{Map, Value, json, value::RawValue};

pub use exchange::TokenExchanger;
pub(crate) use failure::RpcFault;
pub(crate) use h1::IDLE_TIMEOUT;
pub use identity::{FailureKind, TokenFailure};
pub(crate) use source::Upstream;

/// The calling thread's slot: idle backend connections are kept per slot
/// (see `Pool`). For tests that need two threads in different slots.
#[doc(hidden)]
pub fn thread_slot() -> usize {
    crate::sync::thread_slot()
}
use self::settings::{BackendConfig, TokenMode};
use crate::store::memo::CallerMemo;

/// Who the call is made for.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The technical token (discovery methods only).
    Technical(&'a str),
    /// A validated caller: their token plus the `X-Cortex-*` headers.
    User(&'a Arc<Caller>),
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
    /// A value cannot travel as a header value (claims are encoded so they
    /// always can; this guards the bearer header): the call is refused,
    /// never forwarded.
    #[error("the value of `{0}` contains characters not allowed in a header")]
    UnsafeHeader(&'static str),
    /// The token the backend receives could not be obtained (exchange,
    /// on-behalf-of, or a gateway-signed assertion).
    #[error("obtaining the backend's token failed: {0}")]
    Token(TokenFailure),
    /// An MCP server answered with a JSON-RPC error.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// The error code.
        code: i64,
        /// The server's message (at most 500 characters).
        message: String,
    },
    /// No token of the caller's linked account (not linked, to be linked
    /// again, or the vault is unavailable): the message says what to do.
    #[error("{0}")]
    Account(crate::link::AccountError),
}

impl UpstreamError {
    /// Whether the error carries text callers must not see (connection
    /// errors, hostnames, URLs, parser messages, the authorization
    /// server's words): it is logged, and callers get
    /// [`Self::caller_text`].
    pub fn has_internal_detail(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::InvalidJson(_) | Self::Token(_)
        )
    }

    /// What a caller is told: the backend's own answer for a status, a
    /// fixed sentence otherwise. Logs the detail of the others.
    pub fn caller_text(&self, backend: &str) -> String {
        if self.has_internal_detail() {
            tracing::warn!(backend, error = %self, "backend call failed");
        }
        match self {
            Self::Status {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
            Self::Timeout(ms) => format!("no answer within {ms} ms; retry later"),
            Self::Unreachable(_) => "it is unreachable right now; retry later".into(),
            Self::TooLarge(limit) => format!("its answer exceeded {limit} bytes"),
            Self::InvalidJson(_) => "its answer is not JSON; tell the team running it".into(),
            Self::UnsafeHeader(name) => format!("a value for `{name}` cannot be sent in a header"),
            Self::Token(f) => f.caller_text(backend, "so the request was not sent"),
            Self::Rpc { code, message } => format!("error {code}: {message}"),
            Self::Account(e) => e.to_string(),
        }
    }

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

/// The `X-Cortex-*` headers for a caller. Each value is written by
/// [`headers::encode`]: visible ASCII as it is, anything else (`josé`,
/// `Zoë`, a CR or LF) as an RFC 8187 `ext-value` (`UTF-8''jos%C3%A9...`),
/// so every claim travels faithfully and none can add a header line.
pub(crate) fn cortex_headers(caller: &Caller) -> [(&'static str, String); 5] {
    let encoded = |v: &str| headers::encode(v).into_owned();
    [
        (headers::USER_ID, encoded(&caller.sub)),
        (
            headers::USER_EMAIL,
            encoded(caller.email.as_deref().unwrap_or_default()),
        ),
        (
            headers::USER_ROLE,
            encoded(caller.role.as_deref().unwrap_or_default()),
        ),
        (
            headers::USER_POOL,
            encoded(caller.pool.as_deref().unwrap_or_default()),
        ),
        (headers::SCOPES, encoded(&caller.scopes.join(" "))),
    ]
}

/// The HTTP client could not be built (no TLS roots, no TLS provider).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBuildError(String);

use h1::Connector;

/// The pooled client.
///
/// Backend calls go over HTTP/1.1 connections that each backend keeps in a
/// list of its own and that the calling task drives itself (`h1.rs`);
/// a TLS backend that negotiates HTTP/2 is called through hyper's pooled
/// client instead. Each backend's endpoint is parsed once: this is the
/// request path of every `tools/call`, and the layers a general-purpose
/// client adds on top (URL re-parsing, redirect policy, header builders,
/// a task per connection) cost more than the hop itself
/// (`docs/performance.md`). Token exchange keeps `reqwest`.
#[derive(Clone)]
pub struct UpstreamClient {
    connector: Connector,
    http: Client<Connector, Full<Bytes>>,
    exchange_http: reqwest::Client,
    max_response_bytes: usize,
    exchanger: Option<Arc<TokenExchanger>>,
    asserter: Option<Arc<identity::Asserter>>,
    targets: Arc<RwLock<HashMap<String, Arc<Target>>>>,
    forwarded: Arc<CallerMemo<Forwarded>>,
}

/// What a caller's calls carry, built once per verified caller: the
/// `X-Cortex-*` values and, for `forward` backends, the bearer header.
struct Forwarded {
    cortex: [HeaderValue; 5],
    bearer: HeaderValue,
}

impl Forwarded {
    fn of(caller: &Caller) -> Result<Self, UpstreamError> {
        let [id, email, role, pool, scopes] = cortex_headers(caller).map(|(name, value)| {
            HeaderValue::try_from(value).map_err(|_| UpstreamError::UnsafeHeader(name))
        });
        Ok(Self {
            cortex: [id?, email?, role?, pool?, scopes?],
            bearer: bearer_header(caller.token())?,
        })
    }
}

/// `Authorization: Bearer <token>`, marked sensitive (kept out of debug
/// output and HTTP/2 header compression).
fn bearer_header(token: &str) -> Result<HeaderValue, UpstreamError> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| UpstreamError::UnsafeHeader("authorization"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("max_response_bytes", &self.max_response_bytes)
            .field("exchanger", &self.exchanger)
            .finish_non_exhaustive()
    }
}

/// A backend's endpoint, parsed once, and its idle connections.
#[derive(Debug)]
struct Target {
    url: String,
    path: String,
    /// The absolute URI (for the pooled HTTP/2 client).
    uri: Uri,
    /// `scheme://host:port`, what the connector dials.
    authority: Uri,
    /// The path and query, what an HTTP/1.1 request line carries.
    origin: Uri,
    host: HeaderValue,
    /// The backend negotiated HTTP/2: calls go through the pooled client.
    http2: AtomicBool,
    pool: h1::Pool,
}

impl Target {
    fn new(backend: &BackendConfig) -> Result<Self, UpstreamError> {
        let mut target = Self::at(&backend.endpoint())?;
        target.url = backend.url.clone();
        target.path = backend.path.clone();
        Ok(target)
    }

    /// The endpoint `endpoint` (an absolute URL), with no backend's
    /// `url` and `path` recorded.
    fn at(endpoint: &str) -> Result<Self, UpstreamError> {
        let invalid = |why: String| {
            UpstreamError::Unreachable(format!("the backend URL {endpoint} is not valid: {why}"))
        };
        let uri: Uri = endpoint.parse().map_err(|e| invalid(format!("{e}")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(invalid("it has no scheme or host".into()));
        };
        let base = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let origin = Uri::builder()
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            url: String::new(),
            path: String::new(),
            authority: base,
            origin,
            host,
            uri,
            http2: AtomicBool::new(false),
            pool: h1::Pool::default(),
        })
    }
}

/// The `X-Cortex-*` header names, parsed once.
static CORTEX_HEADER_NAMES: LazyLock<[HeaderName; 5]> =
    LazyLock::new(|| headers::ALL.map(HeaderName::from_static));

/// The body of a contract call.
#[derive(Serialize)]
struct ContractCall<'a> {
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Map<String, Value>>,
}

impl UpstreamClient {
    /// A client with a response limit, trusting the platform's TLS roots.
    pub fn new(max_response_bytes: usize) -> Result<Self, ClientBuildError> {
        // The provider is named rather than taken from the process default,
        // so another crate enabling a second rustls provider cannot make
        // this fail at run time.
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| ClientBuildError(format!("cannot load the TLS trust roots: {e}")))?;
        Self::with_tls(max_response_bytes, tls)
    }

    /// A client that trusts exactly `roots` for TLS backends (a private
    /// certificate authority; also how the tests reach a TLS backend).
    pub fn with_roots(
        max_response_bytes: usize,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, ClientBuildError> {
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store
                .add(root)
                .map_err(|e| ClientBuildError(format!("a TLS root was refused: {e}")))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
        let tls = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
        Self::with_tls(max_response_bytes, tls)
    }

    fn with_tls(
        max_response_bytes: usize,
        tls: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>,
    ) -> Result<Self, ClientBuildError> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        let https = tls
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(https.clone());
        let exchange_http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientBuildError(e.to_string()))?;
        Ok(Self {
            connector: https,
            http,
            exchange_http,
            max_response_bytes,
            exchanger: None,
            asserter: None,
            targets: Arc::default(),
            forwarded: Arc::default(),
        })
    }

    /// Enables token exchange for backends in `exchange` mode
    /// (`allow_insecure_http`: `CORTEX_ALLOW_INSECURE_HTTP`).
    #[must_use]
    pub fn with_exchange(
        self,
        issuer: String,
        config: settings::TokenExchangeConfig,
        allow_insecure_http: bool,
    ) -> Self {
        let cache = crate::store::tokens::TokenCache::in_memory(
            crate::store::tokens::EXCHANGE_CACHE_LIMITS,
        );
        self.with_exchange_in(issuer, config, allow_insecure_http, Arc::new(cache))
    }

    /// [`Self::with_exchange`], keeping the exchanged tokens in `cache`
    /// (the gateway's store).
    #[must_use]
    pub(crate) fn with_exchange_in(
        mut self,
        issuer: String,
        config: settings::TokenExchangeConfig,
        allow_insecure_http: bool,
        cache: Arc<crate::store::tokens::TokenCache>,
    ) -> Self {
        self.exchanger = Some(Arc::new(
            TokenExchanger::new(
                self.exchange_http.clone(),
                issuer,
                config,
                allow_insecure_http,
            )
            .with_cache(cache),
        ));
        self
    }

    /// Enables `assert` mode: assertions signed with `keys`, living `ttl`
    /// (`CORTEX_ASSERT_TTL_S`), cached in `cache` (the gateway's store).
    #[must_use]
    pub(crate) fn with_assertions(
        mut self,
        keys: Arc<crate::keys::SigningKeys>,
        ttl: Duration,
        cache: Arc<crate::store::tokens::TokenCache>,
    ) -> Self {
        self.asserter = Some(Arc::new(identity::Asserter::new(keys, ttl, cache)));
        self
    }

    /// The connector backend calls dial with (TLS as configured), for the
    /// MCP client's calls.
    pub(crate) fn connector(&self) -> Connector {
        self.connector.clone()
    }

    fn target(&self, backend: &BackendConfig) -> Result<Arc<Target>, UpstreamError> {
        let fresh = |t: &Target| t.url == backend.url && t.path == backend.path;
        if let Some(t) = crate::sync::read_lock(&self.targets)
            .get(&backend.id)
            .filter(|t| fresh(t))
        {
            return Ok(t.clone());
        }
        let target = Arc::new(Target::new(backend)?);
        crate::sync::write_lock(&self.targets).insert(backend.id.clone(), target.clone());
        Ok(target)
    }

    /// The bearer header `backend` receives for `caller` in a mode other
    /// than `forward`: a token obtained from the identity provider
    /// (`exchange`, `obo`) within `timeout`, or a gateway-signed assertion
    /// (`assert`). A failure is the call's failure: no other mode is tried.
    async fn backend_token(
        &self,
        caller: &Caller,
        backend: &BackendConfig,
        timeout: Duration,
    ) -> Result<HeaderValue, UpstreamError> {
        let not_configured = |what: &str| {
            let detail = format!("{what} is not configured");
            tracing::warn!(backend = %backend.id, detail = %detail, "obtaining the backend's token failed");
            UpstreamError::Token(TokenFailure::new(backend, FailureKind::Unavailable, detail))
        };
        let token = match backend.token_mode {
            TokenMode::Assert => {
                let asserter = self
                    .asserter
                    .as_ref()
                    .ok_or_else(|| not_configured("the gateway's signing key"))?;
                asserter.assertion_for(caller, backend).await?
            }
            _ => {
                let exchanger = self
                    .exchanger
                    .as_ref()
                    .ok_or_else(|| not_configured("the gateway's client credentials"))?;
                tokio::time::timeout(timeout, exchanger.token_for(caller, backend))
                    .await
                    .map_err(|_| {
                        tracing::warn!(backend = %backend.id, "the token endpoint did not answer in time");
                        UpstreamError::Token(TokenFailure::new(
                            backend,
                            FailureKind::Unavailable,
                            "the token endpoint did not answer in time".into(),
                        ))
                    })??
            }
        };
        bearer_header(&token)
    }

    /// Calls `method` on `backend` with `params`, bounded by `timeout`.
    pub async fn call(
        &self,
        backend: &BackendConfig,
        credential: Credential<'_>,
        method: &str,
        params: Option<&Map<String, Value>>,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        let bytes = self
            .call_raw(backend, credential, method, params, timeout)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::InvalidJson(e.to_string()))
    }

    /// [`Self::call`], but a 2xx answer is returned as the backend's JSON
    /// bytes (checked to be exactly one JSON value, surrounding whitespace
    /// removed) instead of a parsed value, so that it can be passed on
    /// without being rebuilt.
    pub async fn call_raw(
        &self,
        backend: &BackendConfig,
        credential: Credential<'_>,
        method: &str,
        params: Option<&Map<String, Value>>,
        timeout: Duration,
    ) -> Result<Bytes, UpstreamError> {
        let target = self.target(backend)?;
        let body = serde_json::to_vec(&ContractCall { method, params })
            .map_err(|e| UpstreamError::InvalidJson(e.to_string()))?;
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target.origin.clone();
        *request.headers_mut() = target.pool.header_map();
        let headers_out = request.headers_mut();
        headers_out.insert(header::HOST, target.host.clone());
        headers_out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let bearer = match credential {
            Credential::User(caller) => {
                let forwarded = self.forwarded.get_or_try_insert(caller, Forwarded::of)?;
                for (value, name) in forwarded.cortex.iter().zip(CORTEX_HEADER_NAMES.iter()) {
                    headers_out.insert(name.clone(), value.clone());
                }
                match backend.token_mode {
                    TokenMode::Forward => forwarded.bearer.clone(),
                    // Boxed, like every path but the pooled HTTP/1.1 call:
                    // its future would otherwise be part of every call's.
                    _ => Box::pin(self.backend_token(caller, backend, timeout)).await?,
                }
            }
            Credential::Technical(token) => bearer_header(token)?,
        };
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        if let Some(trace) = crate::telemetry::outgoing() {
            trace.write(request.headers_mut());
        }
        let timeout_ms = timeout.as_millis() as u64;
        let limit = self.max_response_bytes;
        let exchange = async {
            if !target.http2.load(Ordering::Relaxed) {
                match target
                    .pool
                    .call(&self.connector, &target.authority, request, limit, None)
                    .await?
                {
                    h1::Answer::Done(status, bytes, _) => return Ok((status.as_u16(), bytes)),
                    h1::Answer::Http2(unsent) => {
                        target.http2.store(true, Ordering::Relaxed);
                        request = *unsent;
                    }
                }
            }
            Box::pin(self.pooled(&target, request, limit)).await
        };
        // Not boxed: with the connect and HTTP/2 paths boxed, what is left
        // is small, and a box per call is one more allocation of a few KiB.
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout_ms))??;
        if (200..300).contains(&status) {
            // Checks that the body is one JSON value without building it,
            // and drops the whitespace around it.
            let value = serde_json::from_slice::<&RawValue>(&bytes)
                .map_err(|e| UpstreamError::InvalidJson(e.to_string()))?;
            return Ok(bytes.slice_ref(value.get().as_bytes()));
        }
        let body = serde_json::from_slice::<Value>(&bytes).unwrap_or_else(
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

impl UpstreamClient {
    /// A call through hyper's pooled client (a backend on HTTP/2).
    async fn pooled(
        &self,
        target: &Target,
        mut request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        *request.uri_mut() = target.uri.clone();
        // The client derives `:authority` from the URI.
        request.headers_mut().remove(header::HOST);
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        let status = response.status().as_u16();
        refuse_declared_oversize(response.headers(), limit)?;
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    UpstreamError::TooLarge(limit)
                } else {
                    UpstreamError::Unreachable(describe(&*e))
                }
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Closes, for every backend, the idle connections that are too old or
    /// that the backend has closed. The catalog refresher runs it after
    /// each refresh. Returns how many idle connections are left.
    pub fn prune_idle(&self) -> usize {
        crate::sync::read_lock(&self.targets)
            .values()
            .map(|t| t.pool.prune())
            .sum()
    }

    /// Idle HTTP/1.1 connections held for `backend` (tests, debugging).
    pub fn idle_connections(&self, backend: &BackendConfig) -> usize {
        crate::sync::read_lock(&self.targets)
            .get(&backend.id)
            .map_or(0, |t| t.pool.idle_count())
    }
}

/// Refuses an answer whose `Content-Length` already exceeds `limit`,
/// before any of its body is read.
fn refuse_declared_oversize(headers: &HeaderMap, limit: usize) -> Result<(), UpstreamError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(UpstreamError::TooLarge(limit));
    }
    Ok(())
}

fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

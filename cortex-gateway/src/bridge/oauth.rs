//! The bridge signs its user in by MCP OAuth, as a native client.
//!
//! On a 401 the bridge reads the gateway's protected resource metadata
//! (RFC 9728: the challenge's `resource_metadata`, else the path-suffixed
//! and then the root well-known URL), then the authorization server's
//! metadata (RFC 8414, then OpenID discovery), whose `issuer` must be the
//! one named and which must offer PKCE S256. The client is `--client-id`
//! if given, else the client metadata document `--client-metadata-url`
//! when the server accepts those, else a registration (RFC 7591) as a
//! public native client, kept per authorization server.
//!
//! The sign-in is an authorization code with PKCE S256, `state` and
//! `resource` (RFC 8707), redirected to a listener on `127.0.0.1` on a
//! port of the system's choosing (RFC 8252). The URL goes to standard
//! error (standard output carries only JSON-RPC) and to a browser when one
//! can be started. Tokens go to the cache ([`super::token_cache`]); they
//! are refreshed shortly before they expire and once after a 401, and a
//! refused refresh forgets them and signs in again.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use reqwest::Url;
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::{Mutex, oneshot};
use zeroize::Zeroizing;

use super::token_cache::{CachedToken, Registration, TokenCache};
use crate::{
    link::state::{challenge as pkce_challenge, random_text},
    vault::unix_now,
};

/// How long the bridge waits for the browser to come back.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// A token this close to its expiry is refreshed before use.
const REFRESH_MARGIN_S: u64 = 60;
/// The largest metadata or token answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How the bridge identifies itself to the authorization server.
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {
    /// A client id registered beforehand at the authorization server, with
    /// the redirect URI `http://127.0.0.1/callback` (any port).
    pub client_id: Option<String>,
    /// The URL of a client metadata document naming the bridge, used when
    /// the authorization server accepts those.
    pub client_metadata_url: Option<String>,
}

/// The sign-in of one gateway URL, shared by every request (see
/// [`TokenSource::sign_in`](super::TokenSource::sign_in)).
pub struct SignIn {
    http: reqwest::Client,
    /// The gateway URL as configured (the cache key).
    url: Url,
    cache: TokenCache,
    settings: OAuthSettings,
    current: Mutex<Option<CachedToken>>,
    /// Sign-ins started so far, and why the last one failed (if it did):
    /// requests that waited for a sign-in share its outcome instead of
    /// each opening the browser again.
    sign_ins: std::sync::atomic::AtomicU64,
    last_failure: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("url", &self.url.as_str())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The cache key of a gateway URL: without its fragment.
fn cache_key(url: &Url) -> String {
    let mut url = url.clone();
    url.set_fragment(None);
    url.to_string()
}

/// Deletes the cached sign-in of the gateway at `url` and the bridge's
/// registration at its authorization server; whether there was a sign-in,
/// and the file it was in.
pub(crate) fn logout(url: &Url) -> Result<(bool, std::path::PathBuf), String> {
    let cache = TokenCache::from_env()?;
    let key = cache_key(url);
    // The registration at that server goes too, so a server that forgot
    // it does not leave the next sign-in stuck on its error page.
    if let Ok(Some(token)) = cache.load_token(&key) {
        cache.remove_registration(&token.issuer)?;
    }
    Ok((cache.remove_token(&key)?, cache.token_path(&key)))
}

/// The parameters of a `Bearer` challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let mut rest = challenge;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        return Some(match value.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or("").to_owned(),
            None => value.split([',', ' ']).next().unwrap_or("").to_owned(),
        });
    }
    None
}

/// An endpoint the bridge may talk to: https, or http to loopback.
fn endpoint(what: &str, url: &str) -> Result<Url, String> {
    cortex_backend::auth::check_transport(url, false).map_err(|_| {
        format!("the {what} {url} is plaintext http to a host that is not loopback; the bridge sends secrets there only over https")
    })?;
    Url::parse(url).map_err(|e| format!("the {what} {url} is not a URL: {e}"))
}

/// The browser command for `url`: `$BROWSER` (the first of its
/// colon-separated entries; `%s` stands for the URL, else the URL is the
/// last argument), else `xdg-open` or `open` when on the `PATH`.
pub(crate) fn browser_command(
    browser: Option<&str>,
    path: Option<&std::ffi::OsStr>,
    url: &str,
) -> Option<(String, Vec<String>)> {
    if let Some(entry) = browser.and_then(|b| b.split(':').map(str::trim).find(|e| !e.is_empty())) {
        let mut words = entry.split_whitespace().map(str::to_owned);
        let program = words.next()?;
        let mut args: Vec<String> = words.collect();
        if args.iter().any(|a| a.contains("%s")) {
            for a in &mut args {
                *a = a.replace("%s", url);
            }
        } else {
            args.push(url.to_owned());
        }
        return Some((program, args));
    }
    let dirs: Vec<std::path::PathBuf> = std::env::split_paths(path?).collect();
    ["xdg-open", "open"].iter().find_map(|name| {
        dirs.iter()
            .any(|d| d.join(name).is_file())
            .then(|| ((*name).to_owned(), vec![url.to_owned()]))
    })
}

/// Starts a browser on `url` if one can be; never fails.
fn open_browser(url: &str) {
    let browser = std::env::var("BROWSER").ok();
    let path = std::env::var_os("PATH");
    let Some((program, args)) = browser_command(browser.as_deref(), path.as_deref(), url) else {
        return;
    };
    let spawned = std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped aside: a browser may run for as long as it likes.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!(%program, error = %e, "the browser could not be started"),
    }
}

/// What the authorization server said about itself.
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    registration_endpoint: Option<Url>,
    cimd: bool,
    iss_parameter: bool,
}

/// What the browser brought back to the loopback listener.
#[derive(Debug)]
struct Callback {
    params: HashMap<String, String>,
}

struct Listener {
    state: Zeroizing<String>,
    done: std::sync::Mutex<Option<oneshot::Sender<Callback>>>,
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn on_callback(
    State(listener): State<Arc<Listener>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let matches = params
        .get("state")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(listener.state.as_bytes())));
    if !matches {
        return page(
            StatusCode::BAD_REQUEST,
            "Not this sign-in",
            "This page does not answer the sign-in the Cortex bridge is waiting for. \
             Use the link the bridge printed last.",
        );
    }
    let Some(done) = crate::sync::lock(&listener.done).take() else {
        return page(
            StatusCode::BAD_REQUEST,
            "Already used",
            "This sign-in was already completed. You can close this tab.",
        );
    };
    let failed = params.contains_key("error");
    let _ = done.send(Callback { params });
    if failed {
        page(
            StatusCode::OK,
            "Sign-in refused",
            "The authorization server refused the sign-in; the terminal says why. \
             You can close this tab.",
        )
    } else {
        page(
            StatusCode::OK,
            "Signed in",
            "The Cortex bridge is signed in. You can close this tab.",
        )
    }
}

/// Waits on `listener` for the browser to come back with `state`.
async fn await_callback(
    listener: tokio::net::TcpListener,
    state: Zeroizing<String>,
) -> Result<Callback, String> {
    let (done, arrived) = oneshot::channel();
    let shared = Arc::new(Listener {
        state,
        done: std::sync::Mutex::new(Some(done)),
    });
    let router = axum::Router::new()
        .route("/callback", axum::routing::get(on_callback))
        .with_state(shared);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let outcome = tokio::time::timeout(SIGN_IN_TIMEOUT, arrived).await;
    let _ = stop.send(());
    // The page is answered before the callback is handed over; closing
    // gracefully lets it reach the browser.
    if tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .is_err()
    {
        tracing::debug!("the loopback listener was closed with a connection still open");
    }
    match outcome {
        Ok(Ok(callback)) => Ok(callback),
        Ok(Err(_)) => Err("the loopback listener stopped before the sign-in ended".into()),
        Err(_) => Err(format!(
            "no sign-in came back within {} minutes; start the client again and finish \
             the sign-in in the browser (the link is printed on standard error)",
            SIGN_IN_TIMEOUT.as_secs() / 60
        )),
    }
}

impl SignIn {
    /// The sign-in of `url`, with the cached tokens if there are any.
    pub(crate) fn new(url: &Url, settings: OAuthSettings) -> Result<Self, String> {
        let cache = TokenCache::from_env()?;
        let current = cache.load_token(&cache_key(url))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: url.clone(),
            cache,
            settings,
            current: Mutex::new(current),
            sign_ins: std::sync::atomic::AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
        })
    }

    /// The access token to send: the cached one, refreshed first when it is
    /// about to expire; none before the first sign-in.
    pub(crate) async fn token(&self) -> Result<Option<Zeroizing<String>>, String> {
        let mut current = self.current.lock().await;
        let Some(token) = current.as_ref() else {
            return Ok(None);
        };
        let expiring = token
            .expires_at
            .is_some_and(|at| at <= unix_now() + REFRESH_MARGIN_S);
        if !expiring {
            return Ok(Some(Zeroizing::new(token.access_token.clone())));
        }
        if token.refresh_token.is_some() {
            self.refresh(&mut current).await?;
        } else {
            *current = None;
        }
        Ok(current
            .as_ref()
            .map(|t| Zeroizing::new(t.access_token.clone())))
    }

    /// How many sign-ins were started so far.
    pub(crate) fn sign_ins(&self) -> u64 {
        self.sign_ins.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After the gateway refused `failed` with `challenge`: another token,
    /// by a refresh (when `may_refresh`) or else a new sign-in.
    /// `seen` is [`Self::sign_ins`] from before the refused request took its
    /// token.
    pub(crate) async fn renew(
        &self,
        failed: Option<&str>,
        challenge: Option<&str>,
        may_refresh: bool,
        seen: u64,
    ) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let mut current = self.current.lock().await;
        if self.sign_ins.load(Ordering::Acquire) != seen
            && let Some(failure) = crate::sync::lock(&self.last_failure).clone()
        {
            // A sign-in ran while this request waited, and failed.
            return Err(failure);
        }
        if let Some(token) = current.as_ref() {
            let fresh = token
                .expires_at
                .is_none_or(|at| at > unix_now() + REFRESH_MARGIN_S);
            if fresh && failed != Some(token.access_token.as_str()) {
                // Another request renewed it meanwhile.
                return Ok(());
            }
            if may_refresh && token.refresh_token.is_some() {
                self.refresh(&mut current).await?;
                if current.is_some() {
                    return Ok(());
                }
            }
        }
        let signed_in = self.sign_in(challenge).await;
        *crate::sync::lock(&self.last_failure) = signed_in.as_ref().err().cloned();
        self.sign_ins.fetch_add(1, Ordering::AcqRel);
        let signed_in = signed_in?;
        self.cache.save_token(&cache_key(&self.url), &signed_in)?;
        *current = Some(signed_in);
        Ok(())
    }

    /// Refreshes `current`; a refused refresh forgets it.
    async fn refresh(&self, current: &mut Option<CachedToken>) -> Result<(), String> {
        let Some(old) = current.as_ref() else {
            return Ok(());
        };
        let Some(refresh_token) = old.refresh_token.as_deref() else {
            return Ok(());
        };
        let token_endpoint = endpoint("token endpoint", &old.token_endpoint)?;
        let form = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh_token)
                .append_pair("client_id", &old.client_id)
                .append_pair("resource", &old.resource)
                .finish(),
        );
        match self.token_request(&token_endpoint, &form).await? {
            Ok(answer) => {
                let mut renewed = old.clone();
                apply_tokens(&mut renewed, &answer)?;
                self.cache.save_token(&cache_key(&self.url), &renewed)?;
                *current = Some(renewed);
            }
            Err(refused) => {
                tracing::info!(%refused, "the refresh was refused; signing in again");
                self.cache.remove_token(&cache_key(&self.url))?;
                *current = None;
            }
        }
        Ok(())
    }

    /// POSTs `form` to the token endpoint: the answer, or `Err` with the
    /// server's refusal (a 4xx), or the outer `Err` when it could not be
    /// asked.
    async fn token_request(
        &self,
        token_endpoint: &Url,
        form: &str,
    ) -> Result<Result<Value, String>, String> {
        let response = self
            .http
            .post(token_endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form.to_owned())
            .send()
            .await
            .map_err(|e| format!("cannot reach the token endpoint {token_endpoint}: {e}"))?;
        let status = response.status();
        let body = read_json(response)
            .await
            .map_err(|e| format!("the token endpoint {token_endpoint}: {e}"))?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        let error = body.get("error").and_then(Value::as_str).unwrap_or("");
        let description = body
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let refused = format!("HTTP {status} {error} {description}")
            .trim()
            .to_owned();
        if status.is_client_error() {
            Ok(Err(refused))
        } else {
            Err(format!(
                "the token endpoint {token_endpoint} failed: {refused}"
            ))
        }
    }

    async fn get_json(&self, url: &Url) -> Result<Option<Value>, String> {
        let response = self
            .http
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        read_json(response)
            .await
            .map(Some)
            .map_err(|e| format!("{url}: {e}"))
    }

    /// The protected resource metadata: `(resource, issuer, scopes)`.
    async fn protected_resource(
        &self,
        challenge: Option<&str>,
    ) -> Result<(String, String, Vec<String>), String> {
        let mut candidates = Vec::new();
        if let Some(named) = challenge.and_then(|c| challenge_param(c, "resource_metadata")) {
            candidates.push(endpoint("resource metadata URL", &named)?);
        } else {
            let origin = self.url.origin().ascii_serialization();
            let path = self.url.path().trim_end_matches('/');
            if !path.is_empty() {
                candidates.push(endpoint(
                    "resource metadata URL",
                    &format!("{origin}/.well-known/oauth-protected-resource{path}"),
                )?);
            }
            candidates.push(endpoint(
                "resource metadata URL",
                &format!("{origin}/.well-known/oauth-protected-resource"),
            )?);
        }
        for candidate in &candidates {
            let Some(doc) = self.get_json(candidate).await? else {
                continue;
            };
            let resource = doc
                .get("resource")
                .and_then(Value::as_str)
                .map_or_else(|| cache_key(&self.url), str::to_owned);
            if !covers(&resource, &self.url) {
                return Err(format!(
                    "the gateway's resource metadata names the resource {resource}, which is \
                     not {}; check --url",
                    self.url
                ));
            }
            let issuer = doc
                .pointer("/authorization_servers/0")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("the resource metadata at {candidate} names no authorization server")
                })?
                .to_owned();
            let scopes = doc
                .get("scopes_supported")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            return Ok((resource, issuer, scopes));
        }
        Err(format!(
            "the gateway at {} publishes no OAuth protected resource metadata; give a token \
             with CORTEX_BRIDGE_TOKEN or --token-file instead",
            self.url
        ))
    }

    /// The authorization server's metadata (RFC 8414, then OpenID
    /// discovery), checked.
    async fn server_metadata(&self, issuer: &str) -> Result<ServerMetadata, String> {
        let parsed = endpoint("authorization server", issuer)?;
        let origin = parsed.origin().ascii_serialization();
        let path = parsed.path().trim_end_matches('/');
        let candidates = if path.is_empty() {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server"),
                format!("{origin}/.well-known/openid-configuration"),
            ]
        } else {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server{path}"),
                format!("{origin}/.well-known/openid-configuration{path}"),
                format!("{origin}{path}/.well-known/openid-configuration"),
            ]
        };
        for candidate in &candidates {
            let Some(doc) = self.get_json(&endpoint("metadata URL", candidate)?).await? else {
                continue;
            };
            return check_metadata(issuer, &doc);
        }
        Err(format!(
            "the authorization server {issuer} publishes no metadata (tried {})",
            candidates.join(", ")
        ))
    }

    /// The client id: configured, a metadata document, or registered.
    async fn client_id(&self, server: &ServerMetadata, redirect: &str) -> Result<String, String> {
        if let Some(id) = &self.settings.client_id {
            return Ok(id.clone());
        }
        if server.cimd
            && let Some(document) = &self.settings.client_metadata_url
        {
            return Ok(document.clone());
        }
        if let Some(known) = self.cache.load_registration(&server.issuer)? {
            return Ok(known.client_id);
        }
        let Some(registration_endpoint) = &server.registration_endpoint else {
            return Err(format!(
                "the authorization server {} offers no client registration; register the \
                 bridge there as a public client with the redirect URI \
                 http://127.0.0.1/callback and pass --client-id",
                server.issuer
            ));
        };
        let body = serde_json::json!({
            "client_name": "Cortex stdio bridge",
            "application_type": "native",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let response = self
            .http
            .post(registration_endpoint.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {registration_endpoint}: {e}"))?;
        let status = response.status();
        let answer = read_json(response)
            .await
            .map_err(|e| format!("the registration endpoint {registration_endpoint}: {e}"))?;
        let client_id = answer
            .get("client_id")
            .and_then(Value::as_str)
            .filter(|_| status.is_success())
            .ok_or_else(|| {
                format!(
                    "the authorization server {} refused to register the bridge (HTTP \
                     {status}: {}); pass --client-id instead",
                    server.issuer,
                    answer.get("error_description").unwrap_or(&answer)
                )
            })?
            .to_owned();
        self.cache.save_registration(&Registration {
            issuer: server.issuer.clone(),
            client_id: client_id.clone(),
        })?;
        Ok(client_id)
    }

    /// Signs the user in through the browser.
    async fn sign_in(&self, challenge: Option<&str>) -> Result<CachedToken, String> {
        let (resource, issuer, scopes) = self.protected_resource(challenge).await?;
        let server = self.server_metadata(&issuer).await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1 for the sign-in: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on 127.0.0.1 for the sign-in: {e}"))?
            .port();
        let redirect = format!("http://127.0.0.1:{port}/callback");
        let client_id = self.client_id(&server, &redirect).await?;
        let verifier = Zeroizing::new(random_text(32));
        let state = Zeroizing::new(random_text(24));
        let scope = challenge
            .and_then(|c| challenge_param(c, "scope"))
            .filter(|s| !s.is_empty())
            .or_else(|| (!scopes.is_empty()).then(|| scopes.join(" ")));
        let mut authorize = server.authorization_endpoint.clone();
        {
            let mut query = authorize.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client_id)
                .append_pair("redirect_uri", &redirect)
                .append_pair("code_challenge", &pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state)
                .append_pair("resource", &resource);
            if let Some(scope) = &scope {
                query.append_pair("scope", scope);
            }
        }
        eprintln!(
            "cortex-gateway stdio: sign in to {} in your browser (waiting up to {} minutes):\n{authorize}",
            self.url,
            SIGN_IN_TIMEOUT.as_secs() / 60
        );
        open_browser(authorize.as_str());
        let callback = await_callback(listener, state).await?;
        let params = &callback.params;
        if server.iss_parameter || params.contains_key("iss") {
            // RFC 9207: exact comparison.
            if params.get("iss").map(String::as_str) != Some(server.issuer.as_str()) {
                return Err(format!(
                    "the sign-in came back from another issuer than {} (RFC 9207 `iss` \
                     mismatch); the bridge refuses it: sign in again",
                    server.issuer
                ));
            }
        }
        if let Some(error) = params.get("error") {
            if matches!(error.as_str(), "invalid_client" | "unauthorized_client") {
                self.cache.remove_registration(&server.issuer)?;
            }
            let description = params
                .get("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(format!(
                "the authorization server refused the sign-in ({error}{description})"
            ));
        }
        let code = Zeroizing::new(
            params
                .get("code")
                .cloned()
                .ok_or("the sign-in came back without a code")?,
        );
        let form = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &code)
                .append_pair("redirect_uri", &redirect)
                .append_pair("client_id", &client_id)
                .append_pair("code_verifier", &verifier)
                .append_pair("resource", &resource)
                .finish(),
        );
        let answer = match self.token_request(&server.token_endpoint, &form).await? {
            Ok(answer) => answer,
            Err(refused) => {
                if refused.contains("invalid_client") {
                    self.cache.remove_registration(&server.issuer)?;
                }
                return Err(format!(
                    "the token endpoint refused the sign-in's code ({refused}); sign in again"
                ));
            }
        };
        let mut token = CachedToken {
            access_token: String::new(),
            refresh_token: None,
            expires_at: None,
            scope,
            issuer: server.issuer,
            client_id,
            token_endpoint: server.token_endpoint.to_string(),
            resource,
        };
        apply_tokens(&mut token, &answer)?;
        eprintln!("cortex-gateway stdio: signed in to {}", self.url);
        Ok(token)
    }
}

/// Whether `resource` (RFC 9728 section 3.3) covers the gateway `url`:
/// the same origin, and a path that is `url`'s or one of its parents.
fn covers(resource: &str, url: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    let path = resource.path().trim_end_matches('/');
    let ours = url.path();
    resource.origin() == url.origin()
        && ours.starts_with(path)
        && matches!(ours.as_bytes().get(path.len()), None | Some(b'/'))
}

/// Checks the metadata of `issuer` and keeps what the sign-in needs.
fn check_metadata(issuer: &str, doc: &Value) -> Result<ServerMetadata, String> {
    let text = |key: &str| doc.get(key).and_then(Value::as_str);
    if text("issuer") != Some(issuer) {
        return Err(format!(
            "the authorization server's metadata names the issuer {:?}, not {issuer}; the \
             bridge refuses it",
            text("issuer").unwrap_or("")
        ));
    }
    let s256 = doc
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m == "S256"));
    if !s256 {
        return Err(format!(
            "the authorization server {issuer} does not offer PKCE S256 \
             (code_challenge_methods_supported), which the bridge requires"
        ));
    }
    let required = |key: &str| {
        text(key)
            .ok_or_else(|| format!("the authorization server {issuer} names no {key}"))
            .and_then(|u| endpoint(key, u))
    };
    Ok(ServerMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: required("authorization_endpoint")?,
        token_endpoint: required("token_endpoint")?,
        registration_endpoint: text("registration_endpoint")
            .map(|u| endpoint("registration_endpoint", u))
            .transpose()?,
        cimd: doc.get("client_id_metadata_document_supported") == Some(&Value::Bool(true)),
        iss_parameter: doc.get("authorization_response_iss_parameter_supported")
            == Some(&Value::Bool(true)),
    })
}

/// Takes the tokens of a token endpoint's answer into `token`.
fn apply_tokens(token: &mut CachedToken, answer: &Value) -> Result<(), String> {
    let access = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint answered without an access_token")?;
    if let Some(kind) = answer.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!(
            "the token endpoint issued a {kind} token; the bridge sends only Bearer tokens"
        ));
    }
    token.access_token = access.to_owned();
    if let Some(refresh) = answer.get("refresh_token").and_then(Value::as_str) {
        token.refresh_token = Some(refresh.to_owned());
    }
    token.expires_at = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|s| unix_now() + s);
    if let Some(scope) = answer.get("scope").and_then(Value::as_str) {
        token.scope = Some(scope.to_owned());
    }
    Ok(())
}

/// A JSON answer, up to [`MAX_ANSWER_BYTES`].
async fn read_json(response: reqwest::Response) -> Result<Value, String> {
    let body = super::read_capped(response, MAX_ANSWER_BYTES, "the answer").await?;
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_are_read_quoted_or_not() {
        let c = r#"Bearer error="invalid_token", resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp", scope="a b""#;
        assert_eq!(
            challenge_param(c, "resource_metadata").as_deref(),
            Some("https://gw/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(challenge_param(c, "scope").as_deref(), Some("a b"));
        assert_eq!(
            challenge_param("Bearer scope=x, realm=y", "scope").as_deref(),
            Some("x")
        );
        assert_eq!(challenge_param("Bearer xscope=\"z\"", "scope"), None);
    }

    #[test]
    fn the_resource_must_be_the_gateway_or_a_parent_of_it() {
        let url = Url::parse("https://gw.example/tenant/mcp").unwrap();
        assert!(covers("https://gw.example/tenant/mcp", &url));
        assert!(covers("https://gw.example/tenant", &url));
        assert!(covers("https://gw.example", &url));
        assert!(!covers("https://gw.example/ten", &url));
        assert!(!covers("https://gw.example/tenant/mcp/more", &url));
        assert!(!covers("https://evil.example/tenant/mcp", &url));
        assert!(!covers("http://gw.example/tenant/mcp", &url));
        assert!(!covers("not a url", &url));
    }

    #[test]
    fn the_browser_is_browser_else_xdg_open_on_the_path() {
        let url = "https://as.example/authorize?x=1";
        assert_eq!(
            browser_command(Some("firefox --new-tab"), None, url),
            Some(("firefox".into(), vec!["--new-tab".into(), url.into()]))
        );
        assert_eq!(
            browser_command(Some(":w3m -o %s:lynx"), None, url),
            Some(("w3m".into(), vec!["-o".into(), url.into()]))
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            browser_command(None, Some(dir.path().as_os_str()), url),
            None
        );
        std::fs::write(dir.path().join("xdg-open"), "").unwrap();
        assert_eq!(
            browser_command(None, Some(dir.path().as_os_str()), url),
            Some(("xdg-open".into(), vec![url.into()]))
        );
        assert_eq!(browser_command(None, None, url), None);
    }

    #[test]
    fn metadata_of_another_issuer_or_without_s256_is_refused() {
        let doc = serde_json::json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/authorize",
            "token_endpoint": "https://as.example/token",
            "code_challenge_methods_supported": ["S256"],
        });
        assert!(check_metadata("https://as.example", &doc).is_ok());
        let other = check_metadata("https://as.example/tenant", &doc)
            .err()
            .unwrap();
        assert!(other.contains("refuses"), "{other}");
        let mut plain = doc.clone();
        plain["code_challenge_methods_supported"] = serde_json::json!(["plain"]);
        let refused = check_metadata("https://as.example", &plain).err().unwrap();
        assert!(refused.contains("S256"), "{refused}");
        let mut clear = doc;
        clear["token_endpoint"] = serde_json::json!("http://as.example/token");
        let refused = check_metadata("https://as.example", &clear).err().unwrap();
        assert!(refused.contains("https"), "{refused}");
    }
}

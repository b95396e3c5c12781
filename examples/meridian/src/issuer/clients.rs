//! Clients: registered through Dynamic Client Registration (RFC 7591),
//! pre-registered (the gateway), or named by a Client ID Metadata Document
//! URL and fetched on first use.
//!
//! A metadata document is fetched without following redirects, with a
//! timeout and a size limit, over https, or over http only from a loopback
//! host (local tools and tests); its `client_id` must be its own URL and
//! its `redirect_uris` are then the only ones accepted.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};
use url::{Host, Url};

use super::{
    OAuthError, Shared, digest_of, json_response, now, random_token,
    store::{MAX_CLIENT_BYTES, MAX_FIELD_BYTES},
};

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Registered through `POST /register`.
    Registered,
    /// Named by a metadata document URL.
    Document,
    /// Registered by Meridian itself (the gateway's introspection client).
    Builtin,
}

/// A client the server knows.
#[derive(Clone)]
pub struct Client {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) redirect_uris: Vec<String>,
    /// SHA-256 of the secret of a confidential client.
    pub(crate) secret: Option<[u8; 32]>,
    pub(crate) grant_types: Vec<String>,
    /// Scopes a confidential client may get by client credentials.
    pub(crate) scope: Option<String>,
    pub(crate) source: Source,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("redirect_uris", &self.redirect_uris)
            .field("confidential", &self.secret.is_some())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn confidential(id: &str, name: &str, scope: &str, secret: &str) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
            redirect_uris: Vec::new(),
            secret: Some(digest_of(secret)),
            grant_types: vec!["client_credentials".into()],
            scope: (!scope.is_empty()).then(|| scope.to_string()),
            source: Source::Builtin,
        }
    }

    pub(crate) fn allows(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// Whether `given` is one of the registered redirect URIs.
    pub(crate) fn redirect_allowed(&self, given: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| redirect_matches(r, given))
    }

    /// A line for the consent page: where the client's identity comes from.
    pub(crate) fn provenance(&self) -> String {
        match self.source {
            Source::Document => {
                let host = Url::parse(&self.id)
                    .ok()
                    .and_then(|u| u.host_str().map(String::from))
                    .unwrap_or_default();
                format!("Its name comes from a metadata document published at {host}.")
            }
            Source::Registered => {
                "It registered itself a moment ago; its name is what it says it is.".into()
            }
            Source::Builtin => "It is part of Meridian.".into(),
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// RFC 8252 section 7.3: a loopback `http` redirect URI matches with any
/// port; everything else matches exactly.
pub(crate) fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (Url::parse(registered), Url::parse(given)) else {
        return false;
    };
    r.scheme() == "http"
        && g.scheme() == "http"
        && is_loopback(&r)
        && r.host() == g.host()
        && r.path() == g.path()
        && r.query() == g.query()
        && g.fragment().is_none()
        && g.username().is_empty()
        && g.password().is_none()
}

/// Checks one redirect URI of a registration or metadata document.
fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "a redirect URI is longer than {MAX_FIELD_BYTES} bytes"
        ));
    }
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("`{uri}` has a fragment; redirect URIs must not"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "`{uri}` is plain http to a host that is not loopback; use https, or http://127.0.0.1 for a native app"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => Err(format!(
            "`{uri}` uses a scheme that cannot be a redirect target"
        )),
        // RFC 8252 private-use schemes (`com.example.app:/callback`, `cursor://...`).
        _ => Ok(()),
    }
}

fn string_list(meta: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("`{key}` must be an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("`{key}` must be an array of strings")),
    }
}

fn optional_string(meta: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_FIELD_BYTES => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(format!("`{key}` is longer than {MAX_FIELD_BYTES} bytes")),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// The metadata both registrations and documents share, checked.
struct Checked {
    name: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    auth_method: String,
    scope: Option<String>,
}

/// `(error code, description)`, RFC 7591 section 3.2.2.
type MetadataError = (&'static str, String);

fn check_metadata(
    meta: &Map<String, Value>,
    default_auth: &str,
    known: &[String],
) -> Result<Checked, MetadataError> {
    let bad = |d: String| ("invalid_client_metadata", d);
    let name = optional_string(meta, "client_name").map_err(bad)?;
    let redirect_uris = string_list(meta, "redirect_uris")
        .map_err(bad)?
        .unwrap_or_default();
    if redirect_uris.len() > 10 {
        return Err(bad("more than 10 redirect_uris".into()));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(|d| ("invalid_redirect_uri", d))?;
    }
    let grant_types = string_list(meta, "grant_types")
        .map_err(bad)?
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    for g in &grant_types {
        if !["authorization_code", "refresh_token", "client_credentials"].contains(&g.as_str()) {
            return Err(bad(format!(
                "grant type `{g}` is not supported; use authorization_code, refresh_token or client_credentials"
            )));
        }
    }
    let response_types = string_list(meta, "response_types")
        .map_err(bad)?
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(bad("only the response type `code` is supported".into()));
    }
    let auth_method = optional_string(meta, "token_endpoint_auth_method")
        .map_err(bad)?
        .unwrap_or_else(|| default_auth.to_string());
    if !["none", "client_secret_basic", "client_secret_post"].contains(&auth_method.as_str()) {
        return Err(bad(format!(
            "token_endpoint_auth_method `{auth_method}` is not supported; use none, client_secret_basic or client_secret_post"
        )));
    }
    let code = grant_types.iter().any(|g| g == "authorization_code");
    if code && redirect_uris.is_empty() {
        return Err((
            "invalid_redirect_uri",
            "the authorization_code grant needs at least one redirect URI in `redirect_uris`"
                .into(),
        ));
    }
    if grant_types.iter().any(|g| g == "client_credentials") && auth_method == "none" {
        return Err(bad(
            "the client_credentials grant needs a confidential client: set token_endpoint_auth_method \
             to client_secret_basic or client_secret_post"
                .into(),
        ));
    }
    let scope = optional_string(meta, "scope").map_err(bad)?;
    if let Some(scope) = &scope
        && let Some(unknown) = scope.split(' ').find(|s| !known.iter().any(|k| k == s))
    {
        return Err(bad(format!(
            "unknown scope `{unknown}`; known: {}",
            known.join(" ")
        )));
    }
    Ok(Checked {
        name,
        redirect_uris,
        grant_types,
        auth_method,
        scope,
    })
}

/// `POST /register` (RFC 7591).
pub(crate) async fn register(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let refuse = |(error, d): MetadataError| OAuthError::new(error, d).into_response();
    if body.len() > MAX_CLIENT_BYTES {
        return refuse((
            "invalid_client_metadata",
            format!("the registration is larger than {MAX_CLIENT_BYTES} bytes"),
        ));
    }
    let meta = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return refuse((
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata (RFC 7591)".into(),
            ));
        }
    };
    let checked = match check_metadata(&meta, "client_secret_basic", &s.settings.realm.scopes()) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let (Ok(id), Ok(secret)) = (random_token(16), random_token(32)) else {
        return OAuthError::new("server_error", "no randomness")
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    };
    let id = format!("dcr-{id}");
    let confidential = checked.auth_method != "none";
    let client = Client {
        id: id.clone(),
        name: checked
            .name
            .clone()
            .unwrap_or_else(|| "an unnamed client".into()),
        redirect_uris: checked.redirect_uris.clone(),
        secret: confidential.then(|| digest_of(&secret)),
        grant_types: checked.grant_types.clone(),
        scope: checked.scope.clone(),
        source: Source::Registered,
    };
    if let Err(e) = s.store().add_client(client) {
        return OAuthError::new("temporarily_unavailable", e.to_string())
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    let mut out = json!({
        "client_id": id,
        "client_id_issued_at": now(),
        "redirect_uris": checked.redirect_uris,
        "grant_types": checked.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": checked.auth_method,
    });
    if let Some(name) = checked.name {
        out["client_name"] = json!(name);
    }
    if let Some(scope) = checked.scope {
        out["scope"] = json!(scope);
    }
    if confidential {
        out["client_secret"] = json!(secret);
        out["client_secret_expires_at"] = json!(0);
    }
    json_response(StatusCode::CREATED, &out)
}

/// Why a client could not be resolved (shown to the user or the client).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unresolved(pub String);

/// Whether a `client_id` names a metadata document.
pub(crate) fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Checks a metadata document URL before fetching it.
pub(crate) fn check_document_url(client_id: &str) -> Result<Url, Unresolved> {
    let bad = |why: &str| Unresolved(format!("the client_id `{client_id}` {why}"));
    if client_id.len() > MAX_FIELD_BYTES {
        return Err(Unresolved(format!(
            "the client_id is longer than {MAX_FIELD_BYTES} bytes"
        )));
    }
    let url = Url::parse(client_id).map_err(|_| bad("is not a valid URL"))?;
    if url.as_str() != client_id {
        return Err(bad(&format!(
            "is not in normal form (it reads as `{url}`); publish the metadata document at a normalized URL"
        )));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a fragment or credentials"));
    }
    if url.path() == "/" {
        return Err(bad("must have a path (e.g. /oauth/client.json)"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(bad(
            "is plain http to a host that is not loopback; a client metadata document must be served over https",
        )),
    }
}

/// Fetches and checks a metadata document.
async fn fetch_document(s: &Shared, url: Url) -> Result<Client, Unresolved> {
    let client_id = url.to_string();
    let fail = |why: String| {
        Unresolved(format!(
            "the client's metadata document at {client_id} {why}"
        ))
    };
    let max = s.settings.cimd_max_bytes;
    let mut response = s
        .http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                fail(format!(
                    "did not answer within {:?}",
                    s.settings.cimd_timeout
                ))
            } else {
                fail(format!("could not be fetched ({})", e.without_url()))
            }
        })?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(fail(format!(
            "answered HTTP {} (redirects are not followed); it must answer 200 with the JSON document",
            response.status().as_u16()
        )));
    }
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(fail(format!("is larger than {max} bytes")));
    }
    let mut body = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                fail(format!(
                    "did not arrive within {:?}",
                    s.settings.cimd_timeout
                ))
            } else {
                fail(format!("could not be read ({})", e.without_url()))
            }
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > max {
            return Err(fail(format!("is larger than {max} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let meta = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(fail("is not a JSON object".into())),
    };
    if meta.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
        return Err(fail(
            "does not name itself: its `client_id` must be exactly its own URL".into(),
        ));
    }
    if meta.contains_key("client_secret") || meta.contains_key("client_secret_expires_at") {
        return Err(fail(
            "carries a client secret; a metadata document describes a public client".into(),
        ));
    }
    let checked = check_metadata(&meta, "none", &s.settings.realm.scopes())
        .map_err(|(_, d)| fail(format!("is invalid: {d}")))?;
    if checked.auth_method != "none" {
        return Err(fail(
            "asks for a client secret (token_endpoint_auth_method); documents describe public clients: use `none`"
                .into(),
        ));
    }
    if checked.redirect_uris.is_empty() {
        return Err(fail("lists no `redirect_uris`".into()));
    }
    let host = Url::parse(&client_id)
        .ok()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_default();
    Ok(Client {
        name: checked.name.unwrap_or(host),
        id: client_id,
        redirect_uris: checked.redirect_uris,
        secret: None,
        grant_types: checked.grant_types,
        scope: None,
        source: Source::Document,
    })
}

/// The client a `client_id` names: registered, or a metadata document
/// (cached for a few minutes).
pub(crate) async fn resolve(s: &Shared, client_id: &str) -> Result<Client, Unresolved> {
    if !is_document_url(client_id) {
        return s.store().client(client_id).ok_or_else(|| {
            Unresolved(format!(
                "unknown client_id `{}`; register through the registration endpoint first, or use a client \
                 metadata document URL",
                client_id.chars().take(80).collect::<String>()
            ))
        });
    }
    let url = check_document_url(client_id)?;
    if let Some(client) = s.store().cached_document(client_id) {
        return Ok(client);
    }
    let client = fetch_document(s, url).await?;
    s.store()
        .cache_document(client.clone(), s.settings.cimd_cache_ttl);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let loopback = "http://127.0.0.1/callback";
        assert!(redirect_matches(
            loopback,
            "http://127.0.0.1:53177/callback"
        ));
        assert!(redirect_matches(loopback, "http://127.0.0.1/callback"));
        assert!(redirect_matches("http://[::1]:1/cb", "http://[::1]:2/cb"));
        assert!(redirect_matches(
            "http://localhost/cb",
            "http://localhost:8080/cb"
        ));
        for other in [
            "http://127.0.0.1:53177/other",
            "http://127.0.0.1:53177/callback?x=1",
            "http://127.0.0.1:53177/callback#f",
            "https://127.0.0.1:53177/callback",
            "http://localhost:53177/callback",
            "http://user@127.0.0.1:53177/callback",
        ] {
            assert!(!redirect_matches(loopback, other), "{other}");
        }
        let https = "https://app.example.com/cb";
        assert!(redirect_matches(https, https));
        assert!(!redirect_matches(https, "https://app.example.com:8443/cb"));
        assert!(!redirect_matches(https, "https://app.example.com/cb/"));
        assert!(!redirect_matches(
            "http://app.example.com/cb",
            "http://app.example.com:81/cb"
        ));
    }

    #[test]
    fn document_urls_are_https_or_loopback_with_a_path() {
        assert!(check_document_url("https://app.example.com/oauth/client.json").is_ok());
        assert!(check_document_url("http://127.0.0.1:8000/client.json").is_ok());
        for (url, why) in [
            ("http://app.example.com/client.json", "plain http"),
            ("https://app.example.com/", "must have a path"),
            ("https://app.example.com/a/../client.json", "normal form"),
            ("https://user:pw@app.example.com/client.json", "credentials"),
            ("https://app.example.com/client.json#x", "fragment"),
        ] {
            let e = check_document_url(url).unwrap_err().0;
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}

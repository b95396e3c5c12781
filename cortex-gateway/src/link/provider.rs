//! The gateway as an OAuth client of one third-party server's
//! authorization server: discovery, client registration, and the token
//! endpoint (code, refresh) and revocation calls.
//!
//! Discovery follows the MCP authorization spec: the server's RFC 9728
//! protected-resource metadata (path form, then root form, then the
//! `resource_metadata` of the `WWW-Authenticate` the server sends to an
//! unauthenticated request), whose `resource` must be the server URL; then
//! the first authorization server's RFC 8414 or OpenID metadata, whose
//! `issuer` must match. The client is the pre-registered one, else a
//! Client ID Metadata Document (when the authorization server supports it
//! and the gateway's origin is https), else one Dynamic Client
//! Registration (RFC 7591), kept sealed in the vault.
//!
//! Every request: no redirects followed, a timeout, an answer cap; no
//! plaintext to a host that is not loopback.

use std::time::Duration;

use base64::Engine as _;
use cortex_backend::auth::{check_transport, fetch_issuer_metadata, read_body_capped};
use serde_json::{Value, json};

use super::LinkServer;
use crate::vault::Secret;

/// The largest metadata or token-endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest wait for any one request to a provider.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest account label kept (characters).
const MAX_LABEL_CHARS: usize = 200;

/// How the gateway authenticates at a token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// HTTP Basic with the client secret.
    Basic,
    /// The client secret in the form body.
    Post,
    /// A public client: `client_id` only (PKCE protects the code).
    None,
}

/// The gateway's client at one authorization server.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) id: String,
    pub(crate) secret: Option<Secret>,
    pub(crate) auth: ClientAuth,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .field("auth", &self.auth)
            .finish()
    }
}

/// What discovery found for one server, and the client to use there.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    /// The scope asked for when none is configured (see
    /// `default_scope`).
    pub(crate) default_scope: Option<String>,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) revocation_endpoint: Option<String>,
    pub(crate) userinfo_endpoint: Option<String>,
    pub(crate) client: Client,
}

/// The metadata of an authorization server, as far as linking uses it.
#[derive(Debug, Clone)]
pub(crate) struct AuthServer {
    pub(crate) resource_scopes: Option<String>,
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) registration_endpoint: Option<String>,
    pub(crate) revocation_endpoint: Option<String>,
    pub(crate) userinfo_endpoint: Option<String>,
    pub(crate) cimd_supported: bool,
    pub(crate) auth_methods: Vec<String>,
}

/// A failed call to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProviderError {
    /// The provider refused the grant (`invalid_grant`, a 400 or 401 from
    /// the token endpoint): the user must link again. The text is the
    /// provider's reason, for the log.
    Refused(String),
    /// Anything else (unreachable, malformed, misconfigured); for the log.
    Failed(String),
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(s) => write!(f, "refused: {s}"),
            Self::Failed(s) => f.write_str(s),
        }
    }
}

/// A token endpoint's answer.
pub(crate) struct Tokens {
    pub(crate) access_token: Secret,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) expires_in: Option<u64>,
    pub(crate) scope: Option<String>,
    pub(crate) id_token: Option<Secret>,
}

/// The HTTP client for providers: no redirects, a timeout.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn failed(e: impl Into<String>) -> ProviderError {
    ProviderError::Failed(e.into())
}

/// The RFC 9728 metadata URLs of `resource`: path form, then root form.
fn resource_metadata_urls(resource: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(resource) else {
        return Vec::new();
    };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let mut urls = Vec::with_capacity(2);
    if !path.is_empty() {
        urls.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls
}

/// The `resource_metadata` parameter of a `WWW-Authenticate: Bearer`
/// challenge.
fn resource_metadata_param(challenge: &str) -> Option<String> {
    let at = challenge.find("resource_metadata=")?;
    let rest = &challenge[at + "resource_metadata=".len()..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_string())
}

pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    cortex_backend::auth::get_json_capped(http, url, false, MAX_ANSWER_BYTES).await
}

/// Whether two resource identifiers name the same resource (a trailing
/// slash aside).
fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Finds the authorization server of `server` (RFC 9728, then RFC 8414 or
/// OpenID discovery).
pub(crate) async fn discover(
    http: &reqwest::Client,
    server: &LinkServer,
) -> Result<AuthServer, ProviderError> {
    let mut tried = Vec::new();
    let mut document = None;
    for url in resource_metadata_urls(&server.url) {
        match get_json(http, &url).await {
            Ok(doc) => {
                document = Some(doc);
                break;
            }
            Err(e) => tried.push(e),
        }
    }
    if document.is_none() {
        match challenge_metadata_url(http, &server.url).await {
            Some(url) => match get_json(http, &url).await {
                Ok(doc) => document = Some(doc),
                Err(e) => tried.push(e),
            },
            None => tried.push(format!(
                "{} sent no WWW-Authenticate resource_metadata",
                server.url
            )),
        }
    }
    let Some(document) = document else {
        return Err(failed(format!(
            "no protected-resource metadata for {}: {}",
            server.url,
            tried.join("; ")
        )));
    };
    if let Some(resource) = document.get("resource").and_then(Value::as_str)
        && !same_resource(resource, &server.url)
    {
        return Err(failed(format!(
            "the protected-resource metadata of {} is for another resource ({resource})",
            server.url
        )));
    }
    let issuer = document
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            failed(format!(
                "the protected-resource metadata of {} names no authorization server",
                server.url
            ))
        })?;
    let meta = fetch_issuer_metadata(http, issuer, false)
        .await
        .map_err(failed)?;
    let mut found = auth_server(issuer, &meta)?;
    found.resource_scopes = default_scope(&document, &meta);
    Ok(found)
}

/// The scope to ask for when none is configured: the server's
/// `scopes_supported` (RFC 9728, as the MCP authorization spec says), plus
/// `openid` (an ID token names the linked account) and `offline_access` (a
/// refresh token) when the authorization server offers them.
fn default_scope(resource: &Value, auth_server: &Value) -> Option<String> {
    let list = |doc: &Value| -> Vec<String> {
        doc.get("scopes_supported")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut scopes = list(resource);
    let offered = list(auth_server);
    for extra in ["openid", "offline_access"] {
        if offered.iter().any(|s| s == extra) && !scopes.iter().any(|s| s == extra) {
            scopes.push(extra.to_string());
        }
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// A `POST` without a token to the server, for the `resource_metadata` of
/// its 401.
async fn challenge_metadata_url(http: &reqwest::Client, url: &str) -> Option<String> {
    check_transport(url, false).ok()?;
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
        .send()
        .await
        .ok()?;
    let challenge = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(resource_metadata_param)?;
    Some(challenge)
}

fn endpoint(meta: &Value, name: &str) -> Result<Option<String>, ProviderError> {
    match meta.get(name).and_then(Value::as_str) {
        Some(url) => {
            check_transport(url, false)
                .map_err(|e| failed(format!("the {name} is refused: {e}")))?;
            Ok(Some(url.to_string()))
        }
        None => Ok(None),
    }
}

pub(crate) fn auth_server(issuer: &str, meta: &Value) -> Result<AuthServer, ProviderError> {
    let required = |name: &str| {
        endpoint(meta, name)?
            .ok_or_else(|| failed(format!("the metadata of {issuer} has no {name}")))
    };
    let methods: Vec<&str> = meta
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !methods.contains(&"S256") {
        return Err(failed(format!(
            "the authorization server {issuer} does not advertise PKCE S256 \
             (code_challenge_methods_supported), which linking requires"
        )));
    }
    Ok(AuthServer {
        resource_scopes: None,
        issuer: issuer.to_string(),
        authorization_endpoint: required("authorization_endpoint")?,
        token_endpoint: required("token_endpoint")?,
        registration_endpoint: endpoint(meta, "registration_endpoint")?,
        revocation_endpoint: endpoint(meta, "revocation_endpoint")?,
        userinfo_endpoint: endpoint(meta, "userinfo_endpoint")?,
        cimd_supported: meta
            .get("client_id_metadata_document_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        auth_methods: meta
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            // RFC 8414's default.
            .unwrap_or_else(|| vec!["client_secret_basic".to_string()]),
    })
}

impl AuthServer {
    /// How a client with a secret authenticates here.
    pub(crate) fn secret_auth(&self) -> ClientAuth {
        if self.auth_methods.iter().any(|m| m == "client_secret_basic") {
            ClientAuth::Basic
        } else if self.auth_methods.iter().any(|m| m == "client_secret_post") {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }

    /// The provider with `client`.
    pub(crate) fn with_client(self, client: Client) -> Provider {
        Provider {
            default_scope: self.resource_scopes,
            authorization_endpoint: self.authorization_endpoint,
            token_endpoint: self.token_endpoint,
            revocation_endpoint: self.revocation_endpoint,
            userinfo_endpoint: self.userinfo_endpoint,
            client,
        }
    }
}

/// The client metadata the gateway registers (RFC 7591) or publishes
/// (Client ID Metadata Document) for `redirect_uris`.
pub(crate) fn client_metadata(
    client_id: Option<&str>,
    redirect_uris: &[String],
    auth: &str,
) -> Value {
    let mut doc = json!({
        "client_name": "Cortex gateway",
        "redirect_uris": redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth,
    });
    if let Some(id) = client_id {
        doc["client_id"] = json!(id);
    }
    doc
}

/// Registers the gateway at `registration` (RFC 7591): a confidential
/// client when the server takes client secrets, else a public one.
pub(crate) async fn register(
    http: &reqwest::Client,
    auth_server: &AuthServer,
    registration: &str,
    redirect_uri: &str,
) -> Result<Client, ProviderError> {
    let confidential = auth_server
        .auth_methods
        .iter()
        .any(|m| m == "client_secret_basic" || m == "client_secret_post");
    let method = if !confidential {
        "none"
    } else if auth_server.secret_auth() == ClientAuth::Post {
        "client_secret_post"
    } else {
        "client_secret_basic"
    };
    let body = client_metadata(None, &[redirect_uri.to_string()], method);
    let response = http
        .post(registration)
        .header("accept", "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "registration at {registration}: {}",
                e.without_url()
            ))
        })?;
    let status = response.status();
    let answer = read_body_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| failed(format!("registration at {registration}: {e}")))?;
    let doc: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(failed(format!(
            "registration at {registration} answered HTTP {}: {}",
            status.as_u16(),
            oauth_reason(&doc)
        )));
    }
    let id = doc
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| failed(format!("registration at {registration} gave no client_id")))?;
    let secret = doc
        .get("client_secret")
        .and_then(Value::as_str)
        .map(|s| Secret::new(s.to_string()));
    let auth = match (
        &secret,
        doc.get("token_endpoint_auth_method")
            .and_then(Value::as_str),
    ) {
        (None, _) | (_, Some("none")) => ClientAuth::None,
        (Some(_), Some("client_secret_post")) => ClientAuth::Post,
        (Some(_), _) => ClientAuth::Basic,
    };
    Ok(Client {
        id: id.to_string(),
        secret,
        auth,
    })
}

/// The OAuth error of an answer, for logs.
fn oauth_reason(doc: &Value) -> String {
    let code = doc
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no error code");
    match doc.get("error_description").and_then(Value::as_str) {
        Some(d) => format!("{code}: {}", d.chars().take(200).collect::<String>()),
        None => code.to_string(),
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

impl Provider {
    /// POSTs `pairs` (plus the client's credentials) to `url`; the answer
    /// as JSON, or why not.
    async fn post_form(
        &self,
        http: &reqwest::Client,
        url: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Value, ProviderError> {
        let mut pairs = pairs.to_vec();
        let mut request = http.post(url).header("accept", "application/json");
        let secret = self.client.secret.as_ref().map(Secret::expose);
        match (self.client.auth, secret) {
            (ClientAuth::Basic, Some(secret)) => {
                let enc = |s: &str| form(&[("", s)])[1..].to_string();
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    enc(&self.client.id),
                    enc(secret)
                ));
                request = request.header("authorization", format!("Basic {basic}"));
            }
            (ClientAuth::Post, Some(secret)) => {
                pairs.push(("client_id", &self.client.id));
                pairs.push(("client_secret", secret));
            }
            _ => pairs.push(("client_id", &self.client.id)),
        }
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&pairs))
            .send()
            .await
            .map_err(|e| failed(format!("{url} is unreachable: {}", e.without_url())))?;
        let status = response.status();
        let body = read_body_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| failed(format!("{url}: {e}")))?;
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(doc);
        }
        let reason = format!(
            "{url} answered HTTP {}: {}",
            status.as_u16(),
            oauth_reason(&doc)
        );
        let refused = matches!(status.as_u16(), 400 | 401)
            && matches!(
                doc.get("error").and_then(Value::as_str),
                Some("invalid_grant" | "invalid_token" | "unauthorized_client") | None
            );
        Err(if refused {
            ProviderError::Refused(reason)
        } else {
            failed(reason)
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier). `target`
    /// is the (parameter, value) naming the resource, if any is sent
    /// (`resource` per RFC 8707; some providers want `audience`, Entra
    /// refuses both).
    pub(crate) async fn exchange_code(
        &self,
        http: &reqwest::Client,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        target: Option<(&str, &str)>,
    ) -> Result<Tokens, ProviderError> {
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        pairs.extend(target);
        let doc = self.post_form(http, &self.token_endpoint, &pairs).await?;
        tokens(&doc)
    }

    /// Uses a refresh token (`target` as for [`Self::exchange_code`]).
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &Secret,
        target: Option<(&str, &str)>,
    ) -> Result<Tokens, ProviderError> {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        pairs.extend(target);
        let doc = self.post_form(http, &self.token_endpoint, &pairs).await?;
        tokens(&doc)
    }

    /// Revokes `token` (RFC 7009); `Ok(false)` when the provider
    /// advertises no revocation endpoint.
    pub(crate) async fn revoke(
        &self,
        http: &reqwest::Client,
        token: &Secret,
        hint: &str,
    ) -> Result<bool, ProviderError> {
        let Some(url) = &self.revocation_endpoint else {
            return Ok(false);
        };
        let pairs = [("token", token.expose()), ("token_type_hint", hint)];
        self.post_form(http, url, &pairs).await?;
        Ok(true)
    }

    /// A label for the account `tokens` belong to: from the ID token the
    /// token endpoint returned (received straight from the provider over
    /// a checked transport, so its claims are only displayed, not
    /// trusted), else the userinfo endpoint, else a generic label.
    pub(crate) async fn account_label(&self, http: &reqwest::Client, tokens: &Tokens) -> String {
        if let Some(label) = tokens
            .id_token
            .as_ref()
            .and_then(|t| id_token_claims(t.expose()))
            .and_then(|c| label_from(&c))
        {
            return label;
        }
        if let Some(url) = &self.userinfo_endpoint
            && let Ok(response) = http
                .get(url)
                .bearer_auth(tokens.access_token.expose())
                .header("accept", "application/json")
                .send()
                .await
            && response.status().is_success()
            && let Ok(body) = read_body_capped(response, MAX_ANSWER_BYTES).await
            && let Ok(claims) = serde_json::from_slice::<Value>(&body)
            && let Some(label) = label_from(&claims)
        {
            return label;
        }
        "linked account".to_string()
    }
}

fn tokens(doc: &Value) -> Result<Tokens, ProviderError> {
    let text = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let access_token = text("access_token")
        .ok_or_else(|| failed("the token endpoint's answer has no access_token"))?;
    if let Some(kind) = text("token_type")
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(failed(format!(
            "the token endpoint issued a `{kind}` token; only bearer tokens are supported"
        )));
    }
    Ok(Tokens {
        access_token: Secret::new(access_token),
        refresh_token: text("refresh_token").map(Secret::new),
        expires_in: doc.get("expires_in").and_then(Value::as_u64),
        scope: text("scope"),
        id_token: text("id_token").map(Secret::new),
    })
}

/// The claims of a JWT's payload (not verified: display only).
fn id_token_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The most readable name among `claims`, without control characters and
/// cut to [`MAX_LABEL_CHARS`].
fn label_from(claims: &Value) -> Option<String> {
    ["email", "preferred_username", "name", "login", "sub"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(MAX_LABEL_CHARS)
                .collect::<String>()
        })
        .filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_metadata_urls_use_the_path_form_first() {
        assert_eq!(
            resource_metadata_urls("https://mcp.example.com/v1/mcp"),
            vec![
                "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        assert_eq!(
            resource_metadata_urls("https://mcp.example.com/"),
            vec!["https://mcp.example.com/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn the_challenge_parameter_is_read_quoted_or_not() {
        let c = r#"Bearer error="invalid_token", resource_metadata="https://x.example/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            resource_metadata_param(c).as_deref(),
            Some("https://x.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            resource_metadata_param("Bearer resource_metadata=https://x/m, scope=a").as_deref(),
            Some("https://x/m")
        );
        assert_eq!(resource_metadata_param("Bearer realm=\"x\""), None);
    }

    #[test]
    fn labels_prefer_readable_claims_and_drop_control_characters() {
        let claims = json!({"sub": "u-1", "email": "ana@tracker.example\u{7}"});
        assert_eq!(label_from(&claims).as_deref(), Some("ana@tracker.example"));
        assert_eq!(label_from(&json!({"sub": "u-1"})).as_deref(), Some("u-1"));
        assert_eq!(label_from(&json!({"sub": "  "})), None);
        let jwt = format!(
            "x.{}.y",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"preferred_username":"ana"}"#)
        );
        assert_eq!(
            id_token_claims(&jwt)
                .and_then(|c| label_from(&c))
                .as_deref(),
            Some("ana")
        );
    }

    #[test]
    fn the_default_scope_is_the_resources_plus_openid_and_offline_access() {
        let resource = json!({"scopes_supported": ["tracker:read", "offline_access", "bad scope"]});
        let auth_server = json!({"scopes_supported": ["openid", "offline_access", "email"]});
        assert_eq!(
            default_scope(&resource, &auth_server).as_deref(),
            Some("tracker:read offline_access openid")
        );
        assert_eq!(default_scope(&json!({}), &json!({})), None);
        assert_eq!(
            default_scope(&json!({}), &auth_server).as_deref(),
            Some("openid offline_access")
        );
    }

    #[test]
    fn pkce_is_required_and_plaintext_endpoints_are_refused() {
        let good = json!({
            "issuer": "https://as.example",
            "authorization_endpoint": "https://as.example/auth",
            "token_endpoint": "https://as.example/token",
            "code_challenge_methods_supported": ["S256"],
        });
        assert!(auth_server("https://as.example", &good).is_ok());
        let mut no_pkce = good.clone();
        no_pkce["code_challenge_methods_supported"] = json!(["plain"]);
        let e = auth_server("https://as.example", &no_pkce).unwrap_err();
        assert!(e.to_string().contains("S256"), "{e}");
        let mut plaintext = good.clone();
        plaintext["token_endpoint"] = json!("http://as.example/token");
        let e = auth_server("https://as.example", &plaintext).unwrap_err();
        assert!(e.to_string().contains("plaintext"), "{e}");
    }
}

//! The OAuth facade: the gateway as the authorization server agents see,
//! for companies whose identity provider has no client registration
//! (Entra ID, some Okta plans) or has quirks agents cannot handle.
//!
//! Agents register (RFC 7591 `/register`, or a Client ID Metadata
//! Document as their `client_id`), send the user's browser to
//! `/authorize`, and redeem a code at `/token`, all at the gateway. The
//! gateway signs the user in at the company identity provider through
//! its one pre-registered confidential client (its own PKCE, state and
//! nonce), validates what the provider answers, and hands the agent a
//! code of its own. The differences between providers are data
//! (`profile.rs`); the provider client is `idp.rs`; the state (clients,
//! sign-ins, codes, grants, revocations) is `store::facade`.
//!
//! ## Why the agent gets a token the gateway signed
//!
//! The access token an agent receives is signed by the gateway
//! (`SigningKeys`, ES256, `typ: at+jwt`, `aud` = the canonical URI),
//! not the identity provider's own. Entra ID cannot mint a token whose
//! audience is our canonical URI (its audiences are app registrations,
//! and it refuses RFC 8707 `resource`), Okta and Auth0 only for APIs
//! registered on paid plans, so passing the provider's token on would
//! force the resource server to accept a token minted for another
//! audience. The gateway's own token names exactly this gateway, carries
//! only the Cortex scopes the provider granted and the agent asked for,
//! lives a short time (`CORTEX_FACADE_ACCESS_TTL_S`), and names its grant
//! (`sid`) so revocation takes effect at once. Refresh goes through the
//! provider's refresh token (kept sealed in the vault), so a user disabled
//! at the provider loses access at the next refresh.

pub(crate) mod client;
mod idp;
pub(crate) mod profile;
pub(crate) mod settings;

use std::{collections::BTreeMap, sync::Arc};

use cortex_backend::scopes;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use self::{
    idp::{IdentityProvider, IdpError, SignedIn},
    settings::FacadeConfig,
};
use crate::{
    keys::SigningKeys,
    link::state::{challenge, random_text},
    store::{
        facade::{
            FacadeState, GrantRecord, IssuedCode, Pending, Redeemed, RefreshLookup,
            RegisteredClient,
        },
        redis::Unavailable,
    },
    vault::{Grant, Secret, Vault, unix_now},
};

/// The vault "server" under which the provider's refresh tokens are kept
/// (the vault's `sub` is the grant id).
const VAULT_SERVER: &str = "cortex-oauth-facade";
/// The callback path at the gateway (the provider's redirect URI).
pub(crate) const CALLBACK_PATH: &str = "/oauth/callback";
/// Scopes the agent may ask for that are not Cortex scopes.
const OPENID_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Most scopes one authorization may ask for.
const MAX_SCOPES: usize = 64;
/// The longest `scope` or `state` parameter accepted.
const MAX_PARAMETER_BYTES: usize = 4096;
/// The longest client id accepted.
const MAX_CLIENT_ID_BYTES: usize = 2048;

/// An `/authorize` request (query parameters).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthorizeRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// What the identity provider sends the browser back with.
#[derive(Default, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Where a browser request of the facade ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BrowserOutcome {
    /// Redirect the browser here.
    Redirect(String),
    /// Show this explanation (the request cannot be sent back to the
    /// agent: unknown client, unregistered redirect URI, expired sign-in).
    Page(String),
    /// The shared store cannot be reached: try again shortly (503).
    Unavailable,
}

/// A refusal at the token, revocation or registration endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The OAuth `error` code.
    pub(crate) error: &'static str,
    /// What is wrong and what to do.
    pub(crate) description: String,
}

fn oauth_error(status: u16, error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        status,
        error,
        description: description.into(),
    }
}

fn invalid_grant(description: impl Into<String>) -> OAuthError {
    oauth_error(400, "invalid_grant", description)
}

/// The answer when the shared store cannot be reached (503, with
/// `Retry-After`).
fn store_unavailable(e: Unavailable) -> OAuthError {
    tracing::warn!(error = %e, "the OAuth facade cannot reach its shared store");
    oauth_error(
        503,
        "temporarily_unavailable",
        "the gateway's shared store cannot be reached; try again in a few seconds",
    )
}

/// [`store_unavailable`] for the browser.
fn browser_unavailable(e: Unavailable) -> BrowserOutcome {
    tracing::warn!(error = %e, "the OAuth facade cannot reach its shared store");
    BrowserOutcome::Unavailable
}

/// `uri` with `pairs` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// Whether `s` is an RFC 6749 scope token.
fn scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `s` is a PKCE S256 challenge (43 base64url characters).
fn pkce_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` is a PKCE verifier (RFC 7636: 43-128 unreserved characters).
fn pkce_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The HTTP client for client metadata documents: no redirects, a
/// timeout, the system's roots plus `roots`.
fn document_client(roots: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(crate::link::provider::REQUEST_TIMEOUT)
        .connect_timeout(crate::link::provider::REQUEST_TIMEOUT);
    for der in roots {
        let cert = reqwest::Certificate::from_der(der)
            .map_err(|e| format!("a root certificate for client metadata documents: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The gateway's access-token claims.
#[derive(serde::Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    scope: String,
    client_id: &'a str,
    sid: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// The OAuth facade.
pub(crate) struct Facade {
    issuer: String,
    canonical_uri: String,
    callback_uri: String,
    scope_prefix: String,
    group_scopes: BTreeMap<String, Vec<String>>,
    access_ttl_s: u64,
    refresh_ttl_s: u64,
    state: Arc<FacadeState>,
    keys: Arc<SigningKeys>,
    vault: Option<Arc<Vault>>,
    idp: IdentityProvider,
    http: reqwest::Client,
}

impl std::fmt::Debug for Facade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facade")
            .field("issuer", &self.issuer)
            .field("idp", &self.idp)
            .finish_non_exhaustive()
    }
}

impl Facade {
    /// The facade of `config` for the gateway at `canonical_uri`, signing
    /// with `keys` (whose issuer hosts the endpoints and the callback),
    /// keeping state in `state` and the provider's refresh tokens in
    /// `vault` (without one, agents get no refresh token).
    pub(crate) fn new(
        config: &FacadeConfig,
        canonical_uri: &str,
        keys: Arc<SigningKeys>,
        state: Arc<FacadeState>,
        vault: Option<Arc<Vault>>,
    ) -> Result<Self, String> {
        let row = profile::profile(config.profile);
        let scope_prefix = match (&config.scope_prefix, row.api_scope_prefix) {
            (Some(p), _) => p.clone(),
            (None, true) => format!("api://{}/", config.client_id),
            (None, false) => String::new(),
        };
        if vault.is_none() && config.refresh_ttl_s > 0 {
            tracing::warn!(
                "the OAuth facade issues no refresh tokens: the identity provider's refresh \
                 tokens are kept only in the vault; set CORTEX_VAULT_KEY"
            );
        }
        let issuer = keys.issuer().trim_end_matches('/').to_string();
        Ok(Self {
            callback_uri: format!("{issuer}{CALLBACK_PATH}"),
            issuer,
            canonical_uri: canonical_uri.to_string(),
            idp: IdentityProvider::new(config, row, &scope_prefix)?,
            scope_prefix,
            group_scopes: config.group_scopes.clone(),
            access_ttl_s: config.access_ttl_s,
            refresh_ttl_s: config.refresh_ttl_s,
            state,
            keys,
            vault,
            http: document_client(&config.document_roots)?,
        })
    }

    /// The path of the gateway's issuer (empty for a bare origin): the
    /// facade's endpoints are served under it.
    pub(crate) fn issuer_path(&self) -> &str {
        self.keys.issuer_path().trim_end_matches('/')
    }

    fn refresh_enabled(&self) -> bool {
        self.refresh_ttl_s > 0 && self.vault.is_some()
    }

    /// The RFC 8414 metadata.
    pub(crate) fn metadata(&self, scopes_supported: Vec<String>) -> Value {
        let at = |path: &str| format!("{}{path}", self.issuer);
        let mut grants = vec!["authorization_code"];
        if self.refresh_enabled() {
            grants.push("refresh_token");
        }
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": at("/authorize"),
            "token_endpoint": at("/token"),
            "registration_endpoint": at("/register"),
            "revocation_endpoint": at("/revoke"),
            "jwks_uri": at("/.well-known/jwks.json"),
            "scopes_supported": scopes_supported,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grants,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
        })
    }

    /// `/register`: a public client, kept in the store.
    pub(crate) async fn register(&self, body: &[u8]) -> Result<Value, OAuthError> {
        let client =
            client::registration(body).map_err(|e| oauth_error(400, e.error, e.description))?;
        let id = random_text(24);
        let answer = client::registration_answer(&id, &client, unix_now());
        self.state
            .register(&id, client)
            .await
            .map_err(store_unavailable)?;
        Ok(answer)
    }

    /// The client `client_id`: registered here, or its metadata document.
    async fn client(&self, client_id: &str) -> Result<RegisteredClient, BrowserOutcome> {
        if client::is_document_url(client_id) {
            return client::fetch_document(&self.http, client_id)
                .await
                .map_err(|e| BrowserOutcome::Page(e.description));
        }
        self.state
            .client(client_id)
            .await
            .map_err(browser_unavailable)?
            .ok_or_else(|| {
                BrowserOutcome::Page(
                    "this client is not registered here (it may have been registered at \
                     another gateway, or long ago); let the agent register again"
                        .to_string(),
                )
            })
    }

    /// `/authorize`: checks the agent's request and sends the browser to
    /// the identity provider. `catalog_scopes` are asked for when the agent
    /// names none.
    pub(crate) async fn authorize(
        &self,
        request: AuthorizeRequest,
        catalog_scopes: impl FnOnce() -> Vec<String>,
    ) -> BrowserOutcome {
        let Some(client_id) = request
            .client_id
            .filter(|c| !c.is_empty() && c.len() <= MAX_CLIENT_ID_BYTES)
        else {
            return BrowserOutcome::Page("the agent sent no usable client_id".into());
        };
        let client = match self.client(&client_id).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        let redirect_uri = match request.redirect_uri {
            Some(uri)
                if client
                    .redirect_uris
                    .iter()
                    .any(|r| client::redirect_matches(r, &uri)) =>
            {
                uri
            }
            Some(_) => {
                return BrowserOutcome::Page(
                    "the agent's redirect_uri is not one it registered; the sign-in was stopped"
                        .into(),
                );
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return BrowserOutcome::Page(
                    "the agent registered several redirect URIs and named none".into(),
                );
            }
        };
        let agent_state = request.state.filter(|s| !s.is_empty());
        let back = |error: &str, description: &str| {
            let mut pairs = vec![("error", error), ("error_description", description)];
            if let Some(s) = &agent_state {
                pairs.push(("state", s));
            }
            pairs.push(("iss", &self.issuer));
            BrowserOutcome::Redirect(with_query(&redirect_uri, &pairs))
        };
        if agent_state
            .as_ref()
            .is_some_and(|s| s.len() > MAX_PARAMETER_BYTES)
        {
            return BrowserOutcome::Page("the agent's state parameter is too long".into());
        }
        if request.response_type.as_deref() != Some("code") {
            return back(
                "unsupported_response_type",
                "only response_type=code is served",
            );
        }
        let Some(code_challenge) = request.code_challenge.filter(|c| pkce_challenge(c)) else {
            return back(
                "invalid_request",
                "PKCE is required: send a code_challenge (S256, 43 characters)",
            );
        };
        if request.code_challenge_method.as_deref() != Some("S256") {
            return back("invalid_request", "code_challenge_method must be S256");
        }
        if let Some(resource) = &request.resource
            && resource.trim_end_matches('/') != self.canonical_uri.trim_end_matches('/')
        {
            return back(
                "invalid_target",
                "this authorization server issues tokens for its own MCP endpoint only",
            );
        }
        let asked = request.scope.unwrap_or_default();
        if asked.len() > MAX_PARAMETER_BYTES {
            return back("invalid_scope", "the scope parameter is too long");
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in asked.split_whitespace() {
            if !scope_token(s) {
                return back("invalid_scope", "a scope holds characters a scope may not");
            }
            if !OPENID_SCOPES.contains(&s) && !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        if scopes.is_empty() {
            scopes = catalog_scopes();
        }
        if scopes.len() > MAX_SCOPES {
            return back("invalid_scope", "too many scopes in one request");
        }
        let provider = match self.idp.provider().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the OAuth facade cannot use the identity provider");
                return back(
                    "temporarily_unavailable",
                    "the identity provider cannot be reached; try again later",
                );
            }
        };
        let mut idp_scopes = vec!["openid", "profile", "email"];
        if self.refresh_enabled() {
            idp_scopes.push("offline_access");
        }
        let mapped: Vec<String> = scopes
            .iter()
            .map(|s| format!("{}{s}", self.scope_prefix))
            .collect();
        let idp_scope = idp_scopes
            .into_iter()
            .chain(mapped.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let state = random_text(32);
        let verifier = Zeroizing::new(random_text(32));
        let nonce = Zeroizing::new(random_text(16));
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", self.idp.client_id()),
            ("redirect_uri", self.callback_uri.as_str()),
            ("scope", idp_scope.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
        ];
        let idp_challenge = challenge(&verifier);
        pairs.push(("code_challenge", &idp_challenge));
        pairs.push(("code_challenge_method", "S256"));
        pairs.extend(self.idp.target());
        let location = with_query(&provider.authorization_endpoint, &pairs);
        if let Err(e) = self
            .state
            .put_pending(
                &state,
                Pending {
                    client_id,
                    redirect_uri,
                    code_challenge,
                    agent_state,
                    scopes,
                    verifier,
                    nonce,
                },
            )
            .await
        {
            return browser_unavailable(e);
        }
        BrowserOutcome::Redirect(location)
    }

    /// The Cortex scopes of what the provider granted (its scope names
    /// with the prefix stripped, roles, groups mapped by configuration).
    fn provider_scopes(&self, signed: &SignedIn) -> Vec<String> {
        let mut out: Vec<String> = signed
            .granted
            .iter()
            .filter_map(|s| {
                let bare = match s.strip_prefix(self.scope_prefix.as_str()) {
                    Some(rest) if !self.scope_prefix.is_empty() => rest,
                    _ => s.as_str(),
                };
                (!bare.contains("://") && !OPENID_SCOPES.contains(&bare) && scope_token(bare))
                    .then(|| bare.to_string())
            })
            .collect();
        for group in &signed.groups {
            if let Some(mapped) = self.group_scopes.get(group) {
                out.extend(mapped.iter().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// What the agent gets: each scope it asked for that the provider
    /// granted (a write scope granted covers the read scope).
    fn grantable(&self, signed: &SignedIn, requested: &[String]) -> Vec<String> {
        let granted = self.provider_scopes(signed);
        requested
            .iter()
            .filter(|s| scopes::satisfies(&granted, s))
            .cloned()
            .collect()
    }

    /// `/oauth/callback`: exchanges the provider's code and sends the
    /// browser back to the agent with a code of the gateway's own.
    pub(crate) async fn callback(&self, query: CallbackQuery) -> BrowserOutcome {
        let Some(state) = query.state.filter(|s| s.len() <= MAX_PARAMETER_BYTES) else {
            return BrowserOutcome::Page("the identity provider sent no state".into());
        };
        let pending = match self.state.take_pending(&state).await {
            Ok(p) => p,
            Err(e) => return browser_unavailable(e),
        };
        let Some(pending) = pending else {
            return BrowserOutcome::Page(
                "this sign-in is unknown, already finished or expired; start again from your \
                 agent"
                    .into(),
            );
        };
        let back = |pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            if let Some(s) = &pending.agent_state {
                pairs.push(("state", s));
            }
            pairs.push(("iss", &self.issuer));
            BrowserOutcome::Redirect(with_query(&pending.redirect_uri, &pairs))
        };
        if let Some(error) = &query.error {
            let code = match error.as_str() {
                "access_denied" | "temporarily_unavailable" | "server_error" | "invalid_scope" => {
                    error.as_str()
                }
                _ => "access_denied",
            };
            tracing::info!(error = %error.chars().take(64).collect::<String>(), "the identity provider refused a facade sign-in");
            return back(&[
                ("error", code),
                (
                    "error_description",
                    "the identity provider did not sign the user in",
                ),
            ]);
        }
        let Some(code) = query.code.filter(|c| c.len() <= MAX_PARAMETER_BYTES) else {
            return back(&[
                ("error", "server_error"),
                ("error_description", "the identity provider sent no code"),
            ]);
        };
        let signed = match self
            .idp
            .exchange(&code, &pending.verifier, &self.callback_uri, &pending.nonce)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a facade sign-in failed at the identity provider");
                let (error, description) = match e {
                    IdpError::Refused(_) => {
                        ("access_denied", "the identity provider refused the sign-in")
                    }
                    IdpError::Failed(_) => (
                        "server_error",
                        "the sign-in could not be completed; the gateway's log says why",
                    ),
                };
                return back(&[("error", error), ("error_description", description)]);
            }
        };
        let scopes = self.grantable(&signed, &pending.scopes);
        if scopes.is_empty() {
            return back(&[
                ("error", "invalid_scope"),
                (
                    "error_description",
                    "the identity provider granted none of the scopes asked for",
                ),
            ]);
        }
        let grant = GrantRecord {
            id: random_text(18),
            client_id: pending.client_id.clone(),
            sub: signed.sub,
            email: signed.email,
            name: signed.name,
            scopes,
            expires_at: unix_now() + self.refresh_ttl_s.max(self.access_ttl_s),
        };
        let code = random_text(32);
        let kept = self
            .state
            .put_code(
                &code,
                IssuedCode {
                    grant,
                    redirect_uri: pending.redirect_uri.clone(),
                    code_challenge: pending.code_challenge.clone(),
                    idp_refresh: signed
                        .refresh_token
                        .filter(|_| self.refresh_enabled())
                        .map(|t| Zeroizing::new(t.expose().to_string())),
                },
            )
            .await;
        if let Err(e) = kept {
            return browser_unavailable(e);
        }
        back(&[("code", &code)])
    }

    /// `/token`: the form's parameters, each at most once.
    pub(crate) async fn token(&self, form: &[(String, String)]) -> Result<Value, OAuthError> {
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in form {
            if params.insert(k, v).is_some() {
                return Err(oauth_error(
                    400,
                    "invalid_request",
                    format!("the parameter `{k}` is given twice"),
                ));
            }
        }
        let need = |k: &str| {
            params
                .get(k)
                .copied()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    oauth_error(
                        400,
                        "invalid_request",
                        format!("the parameter `{k}` is required"),
                    )
                })
        };
        match need("grant_type")? {
            "authorization_code" => {
                let code = need("code")?;
                let client_id = need("client_id")?;
                let redirect_uri = need("redirect_uri")?;
                let verifier = need("code_verifier")?;
                self.redeem(code, client_id, redirect_uri, verifier).await
            }
            "refresh_token" if self.refresh_enabled() => {
                self.refresh(
                    need("refresh_token")?,
                    need("client_id")?,
                    params.get("scope").copied(),
                )
                .await
            }
            _ => Err(oauth_error(
                400,
                "unsupported_grant_type",
                if self.refresh_enabled() {
                    "use authorization_code or refresh_token"
                } else {
                    "use authorization_code"
                },
            )),
        }
    }

    async fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Value, OAuthError> {
        let issued = match self
            .state
            .redeem_code(code)
            .await
            .map_err(store_unavailable)?
        {
            Redeemed::Fresh(issued) => issued,
            Redeemed::Replayed { grant_id } => {
                self.revoke_grant(&grant_id).await?;
                return Err(invalid_grant(
                    "the code was already used; the grant it gave is revoked: sign in again",
                ));
            }
            Redeemed::Unknown => {
                return Err(invalid_grant(
                    "the code is unknown or expired: sign in again",
                ));
            }
        };
        if !same(client_id, &issued.grant.client_id) {
            return Err(invalid_grant("the code was issued to another client"));
        }
        if issued.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "redirect_uri differs from the one the code was sent to",
            ));
        }
        if !pkce_verifier(verifier) || !same(&challenge(verifier), &issued.code_challenge) {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        let IssuedCode {
            grant, idp_refresh, ..
        } = *issued;
        let mut refresh = None;
        if let (Some(idp_refresh), Some(vault)) = (idp_refresh, &self.vault) {
            let mut kept = Grant::new(Secret::new(String::new()), grant.sub.clone());
            kept.refresh_token = Some(Secret::new(idp_refresh.to_string()));
            kept.scope = grant.scopes.join(" ");
            match vault.put(&grant.id, VAULT_SERVER, kept).await {
                Ok(()) => refresh = Some(random_text(32)),
                Err(e) => {
                    tracing::warn!(error = %e, "the vault cannot keep a facade grant; no refresh token is issued")
                }
            }
        }
        self.state
            .put_grant(grant.clone(), refresh.as_deref())
            .await
            .map_err(store_unavailable)?;
        self.answer(&grant, refresh)
    }

    async fn refresh(
        &self,
        refresh_token: &str,
        client_id: &str,
        narrower: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let grant = match self
            .state
            .grant_by_refresh(refresh_token)
            .await
            .map_err(store_unavailable)?
        {
            RefreshLookup::Current(g) => *g,
            RefreshLookup::Reused { grant_id } => {
                self.revoke_grant(&grant_id).await?;
                return Err(invalid_grant(
                    "the refresh token was already used; the grant is revoked: sign in again",
                ));
            }
            RefreshLookup::Unknown => {
                return Err(invalid_grant(
                    "the refresh token is unknown, expired or revoked: sign in again",
                ));
            }
        };
        if !same(client_id, &grant.client_id) {
            return Err(invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        let mut asked = grant.scopes.clone();
        if let Some(scope) = narrower {
            let wanted: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
            if let Some(extra) = wanted.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(oauth_error(
                    400,
                    "invalid_scope",
                    format!(
                        "`{}` was not granted; a refresh may only narrow the scopes",
                        extra.chars().take(64).collect::<String>()
                    ),
                ));
            }
            asked = wanted;
        }
        let Some(vault) = &self.vault else {
            return Err(invalid_grant("refresh is not available"));
        };
        let kept = vault.get(&grant.id, VAULT_SERVER).await.map_err(|e| {
            tracing::warn!(error = %e, "the vault cannot be read for a facade refresh");
            oauth_error(503, "temporarily_unavailable", "try again in a minute")
        })?;
        let Some(idp_refresh) = kept.and_then(|k| k.grant.refresh_token.clone()) else {
            self.revoke_grant(&grant.id).await?;
            return Err(invalid_grant(
                "the sign-in can no longer be renewed: sign in again",
            ));
        };
        let signed = match self.idp.refresh(&idp_refresh).await {
            Ok(s) => s,
            Err(IdpError::Refused(reason)) => {
                tracing::info!(reason = %reason, "the identity provider refused a facade refresh");
                self.revoke_grant(&grant.id).await?;
                return Err(invalid_grant(
                    "the identity provider no longer accepts this sign-in: sign in again",
                ));
            }
            Err(IdpError::Failed(e)) => {
                tracing::warn!(error = %e, "a facade refresh failed at the identity provider");
                return Err(oauth_error(
                    503,
                    "temporarily_unavailable",
                    "the identity provider cannot be reached; try again later",
                ));
            }
        };
        if signed.sub != grant.sub {
            self.revoke_grant(&grant.id).await?;
            return Err(invalid_grant(
                "the identity provider renewed another user: sign in again",
            ));
        }
        let scopes = self.grantable(&signed, &asked);
        if scopes.is_empty() {
            self.revoke_grant(&grant.id).await?;
            return Err(invalid_grant(
                "the identity provider no longer grants any of the scopes: sign in again",
            ));
        }
        if let Some(rotated) = &signed.refresh_token {
            let mut renewed = Grant::new(Secret::new(String::new()), grant.sub.clone());
            renewed.refresh_token = Some(rotated.clone());
            renewed.scope = scopes.join(" ");
            if let Err(e) = vault.put(&grant.id, VAULT_SERVER, renewed).await {
                tracing::warn!(error = %e, "the vault cannot keep a renewed facade grant");
            }
        }
        let renewed = GrantRecord {
            email: signed.email,
            name: signed.name,
            scopes,
            ..grant
        };
        let next = random_text(32);
        if !self
            .state
            .rotate_refresh(renewed.clone(), refresh_token, &next)
            .await
            .map_err(store_unavailable)?
        {
            return Err(invalid_grant(
                "the refresh token was used at the same time by another request, or the grant \
                 was revoked: sign in again",
            ));
        }
        self.answer(&renewed, Some(next))
    }

    /// The token response for `grant`.
    fn answer(&self, grant: &GrantRecord, refresh: Option<String>) -> Result<Value, OAuthError> {
        let now = unix_now();
        let scope = grant.scopes.join(" ");
        let claims = AccessClaims {
            iss: &self.issuer,
            aud: &self.canonical_uri,
            sub: &grant.sub,
            email: grant.email.as_deref(),
            name: grant.name.as_deref(),
            scope: scope.clone(),
            client_id: &grant.client_id,
            sid: &grant.id,
            jti: random_text(16),
            iat: now,
            exp: now + self.access_ttl_s,
        };
        let token = self.keys.sign(&claims, "at+jwt").map_err(|e| {
            tracing::warn!(error = %e, "the facade cannot sign an access token");
            oauth_error(
                500,
                "server_error",
                "the gateway cannot sign tokens right now",
            )
        })?;
        let mut doc = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.access_ttl_s,
            "scope": scope,
        });
        if let Some(r) = refresh {
            doc["refresh_token"] = json!(r);
        }
        Ok(doc)
    }

    /// Revokes a grant: its refresh token at once, its access tokens until
    /// they expire, and the provider's refresh token.
    async fn revoke_grant(&self, grant_id: &str) -> Result<(), OAuthError> {
        self.state
            .revoke(grant_id, unix_now() + self.access_ttl_s + 60)
            .await
            .map_err(store_unavailable)?;
        if let Some(vault) = &self.vault {
            if let Ok(Some(kept)) = vault.get(grant_id, VAULT_SERVER).await
                && let Some(t) = &kept.grant.refresh_token
            {
                self.idp.revoke(t).await;
            }
            if let Err(e) = vault.delete(grant_id, VAULT_SERVER).await {
                tracing::warn!(error = %e, "a revoked facade grant cannot be removed from the vault");
            }
        }
        Ok(())
    }

    /// `/revoke` (RFC 7009): a refresh token or an access token of this
    /// facade revokes its grant; anything else is ignored, as the RFC
    /// says.
    pub(crate) async fn revoke(&self, form: &[(String, String)]) -> Result<(), OAuthError> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let Some(token) = get("token").filter(|t| !t.is_empty() && t.len() <= 8192) else {
            return Err(oauth_error(
                400,
                "invalid_request",
                "the parameter `token` is required",
            ));
        };
        let client_id = get("client_id");
        let owned = |owner: &str| client_id.is_none_or(|c| same(c, owner));
        match self
            .state
            .grant_by_refresh(token)
            .await
            .map_err(store_unavailable)?
        {
            RefreshLookup::Current(g) if owned(&g.client_id) => {
                return self.revoke_grant(&g.id).await;
            }
            RefreshLookup::Reused { grant_id } => {
                return self.revoke_grant(&grant_id).await;
            }
            _ => {}
        }
        if let Some((sid, owner)) = self.own_token_grant(token)
            && owned(&owner)
        {
            self.revoke_grant(&sid).await?;
        }
        Ok(())
    }

    /// The grant id and client of an access token this facade signed (and
    /// that verifies), if `token` is one.
    fn own_token_grant(&self, token: &str) -> Option<(String, String)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let (_, key) = self
            .keys
            .decoding_keys()
            .into_iter()
            .find(|(k, _)| *k == kid)?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[self.canonical_uri.as_str()]);
        // A token past its expiry still names its grant.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).ok()?;
        let sid = data.claims.get("sid")?.as_str()?.to_string();
        let owner = data.claims.get("client_id")?.as_str()?.to_string();
        Some((sid, owner))
    }

    /// Whether access tokens of grant `sid` are refused; `Err` when the
    /// shared store cannot say (the request is refused with a 503).
    pub(crate) async fn is_revoked(&self, sid: &str) -> Result<bool, Unavailable> {
        self.state.is_revoked(sid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_formats() {
        let verifier = "a".repeat(43);
        assert!(pkce_verifier(&verifier));
        assert!(pkce_challenge(&challenge(&verifier)));
        assert!(!pkce_verifier("short"));
        assert!(!pkce_challenge("plain-challenge"));
        assert!(scope_token("crm.read"));
        assert!(!scope_token("a\"b"));
    }
}

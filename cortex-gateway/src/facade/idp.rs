//! The gateway as the one confidential client of the company's identity
//! provider: discovery (per the profile), the token endpoint (code and
//! refresh, through the account-linking client in `link::provider`), and
//! validation of what it answers with the SDK's [`JwtValidator`]: the ID
//! token (issuer, audience = the client id, signature, nonce) and, when it
//! is a JWT for a configured audience, the access token.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cortex_backend::auth::{JwtConfig, JwtValidator, KeySource};
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;

use super::{
    profile::{Discovery, Profile},
    settings::FacadeConfig,
};
use crate::{
    link::provider::{self, Client, Provider, ProviderError, Tokens},
    vault::Secret,
};

/// Discovered metadata is used this long before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Why the identity provider could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdpError {
    /// It refused the code or refresh token (the user must sign in again).
    Refused(String),
    /// Anything else (unreachable, malformed, misconfigured, a token that
    /// does not validate); for the log.
    Failed(String),
}

impl std::fmt::Display for IdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(s) => write!(f, "refused: {s}"),
            Self::Failed(s) => f.write_str(s),
        }
    }
}

impl From<ProviderError> for IdpError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Refused(s) => Self::Refused(s),
            ProviderError::Failed(s) => Self::Failed(s),
        }
    }
}

/// What a sign-in or refresh established, from validated tokens only.
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// The user (the profile's subject claim).
    pub(crate) sub: String,
    /// E-mail, if present.
    pub(crate) email: Option<String>,
    /// Display name, if present.
    pub(crate) name: Option<String>,
    /// Every scope, role and group-mapped scope the provider granted, in
    /// the provider's own names (prefix not yet stripped).
    pub(crate) granted: Vec<String>,
    /// Groups the provider named.
    pub(crate) groups: Vec<String>,
    /// The provider's refresh token, if it gave one.
    pub(crate) refresh_token: Option<Secret>,
}

/// The company identity provider.
pub(crate) struct IdentityProvider {
    issuer: String,
    client_id: String,
    secret: Secret,
    profile: Profile,
    /// (parameter, value) naming the audience, when the profile sends one
    /// and one is configured.
    target: Option<(&'static str, String)>,
    http: reqwest::Client,
    discovered: Mutex<Option<(Arc<Provider>, Instant)>>,
    id_tokens: JwtValidator,
    access_tokens: Option<JwtValidator>,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A validator of the provider's tokens for `audiences` (no cache: each
/// token is seen once).
fn validator(issuer: &str, audiences: Vec<String>) -> Result<JwtValidator, String> {
    let mut config = JwtConfig::new(issuer, audiences);
    config.keys = KeySource::Discover;
    config.cache_capacity = 0;
    JwtValidator::new(config).map_err(|e| e.to_string())
}

impl IdentityProvider {
    /// The provider of `config`, with `profile`'s differences and
    /// `scope_prefix` (for the audience Entra's access tokens carry).
    pub(crate) fn new(
        config: &FacadeConfig,
        profile: Profile,
        scope_prefix: &str,
    ) -> Result<Self, String> {
        let mut audiences: Vec<String> = config.audience.iter().cloned().collect();
        if profile.client_id_audience {
            audiences.push(config.client_id.clone());
        }
        if let Some(api) = scope_prefix.strip_suffix('/').filter(|p| p.contains("://")) {
            audiences.push(api.to_string());
        }
        audiences.dedup();
        Ok(Self {
            issuer: config.issuer.trim_end_matches('/').to_string(),
            client_id: config.client_id.clone(),
            secret: Secret::new(config.client_secret.clone()),
            profile,
            target: profile.audience_parameter.zip(config.audience.clone()),
            http: provider::http_client()?,
            discovered: Mutex::new(None),
            id_tokens: validator(&config.issuer, vec![config.client_id.clone()])?,
            access_tokens: if audiences.is_empty() {
                None
            } else {
                Some(validator(&config.issuer, audiences)?)
            },
        })
    }

    /// The (parameter, value) that names the audience, if one is sent.
    pub(crate) fn target(&self) -> Option<(&str, &str)> {
        self.target.as_ref().map(|(k, v)| (*k, v.as_str()))
    }

    /// The client id at the provider.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The provider's endpoints and the gateway's client there, cached.
    pub(crate) async fn provider(&self) -> Result<Arc<Provider>, IdpError> {
        let mut slot = self.discovered.lock().await;
        if let Some((p, at)) = &*slot
            && at.elapsed() < METADATA_TTL
        {
            return Ok(p.clone());
        }
        let urls = match self.profile.discovery {
            Discovery::OpenIdOnly => {
                vec![format!("{}/.well-known/openid-configuration", self.issuer)]
            }
            Discovery::Rfc8414ThenOpenId => cortex_backend::auth::metadata_urls(&self.issuer),
        };
        let mut tried = Vec::new();
        let mut meta = None;
        for url in urls {
            match provider::get_json(&self.http, &url).await {
                Ok(doc) => {
                    meta = Some(doc);
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let Some(mut meta) = meta else {
            return Err(IdpError::Failed(format!(
                "no metadata for the identity provider {}: {}",
                self.issuer,
                tried.join("; ")
            )));
        };
        let named = meta.get("issuer").and_then(Value::as_str).unwrap_or("");
        if named.trim_end_matches('/') != self.issuer {
            return Err(IdpError::Failed(format!(
                "the metadata of {} names another issuer (`{named}`); set CORTEX_FACADE_ISSUER \
                 to the provider's exact issuer",
                self.issuer
            )));
        }
        if !self.profile.pkce_advertised && meta.get("code_challenge_methods_supported").is_none() {
            meta["code_challenge_methods_supported"] = serde_json::json!(["S256"]);
        }
        let found = provider::auth_server(&self.issuer, &meta)?;
        let auth = found.secret_auth();
        let p = Arc::new(found.with_client(Client {
            id: self.client_id.clone(),
            secret: Some(self.secret.clone()),
            auth,
        }));
        *slot = Some((p.clone(), Instant::now()));
        Ok(p)
    }

    /// Exchanges the provider's code and validates the answer; `nonce` is
    /// the one sent with the sign-in.
    pub(crate) async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<SignedIn, IdpError> {
        let p = self.provider().await?;
        let tokens = p
            .exchange_code(&self.http, code, verifier, redirect_uri, self.target())
            .await?;
        self.signed_in(tokens, Some(nonce)).await
    }

    /// Uses the provider's refresh token and validates the answer.
    pub(crate) async fn refresh(&self, refresh_token: &Secret) -> Result<SignedIn, IdpError> {
        let p = self.provider().await?;
        let mut tokens = p.refresh(&self.http, refresh_token, self.target()).await?;
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        self.signed_in(tokens, None).await
    }

    /// Revokes the provider's refresh token where it offers RFC 7009.
    pub(crate) async fn revoke(&self, refresh_token: &Secret) {
        let revoked = match self.provider().await {
            Ok(p) => p
                .revoke(&self.http, refresh_token, "refresh_token")
                .await
                .map_err(IdpError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = revoked {
            tracing::warn!(error = %e, "revoking a facade grant at the identity provider failed");
        }
    }

    /// Validates `tokens` and reads who signed in and what was granted.
    async fn signed_in(&self, tokens: Tokens, nonce: Option<&str>) -> Result<SignedIn, IdpError> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            IdpError::Failed(format!("the identity provider's {what} is refused: {e}"))
        };
        let id_claims = match &tokens.id_token {
            Some(t) => Some(
                self.id_tokens
                    .validate(t.expose())
                    .await
                    .map_err(|e| invalid("ID token", &e))?
                    .claims
                    .clone(),
            ),
            None => None,
        };
        if let Some(nonce) = nonce {
            let sent = id_claims
                .as_ref()
                .and_then(|c| c.get("nonce"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) {
                return Err(IdpError::Failed(
                    "the identity provider's ID token is missing or does not carry the sign-in's \
                     nonce"
                        .into(),
                ));
            }
        }
        // The access token counts only when it validates for a configured
        // audience; an opaque one (or one for another API) says nothing.
        let access_claims = match &self.access_tokens {
            Some(v) if tokens.access_token.expose().matches('.').count() == 2 => {
                match v.validate(tokens.access_token.expose()).await {
                    Ok(c) => Some(c.claims.clone()),
                    Err(e) => {
                        tracing::debug!(error = %e, "the identity provider's access token is not read");
                        None
                    }
                }
            }
            _ => None,
        };
        let docs: Vec<&Value> = access_claims.iter().chain(id_claims.iter()).collect();
        if docs.is_empty() {
            return Err(IdpError::Failed(
                "the identity provider answered without an ID token (ask for the `openid` scope) \
                 and without an access token the gateway can validate"
                    .into(),
            ));
        }
        let text = |name: &str| {
            docs.iter()
                .find_map(|c| claim(c, name).and_then(Value::as_str))
                .map(str::to_string)
        };
        let Some(sub) = text(self.profile.subject_claim) else {
            return Err(IdpError::Failed(format!(
                "the identity provider's tokens carry no `{}` claim",
                self.profile.subject_claim
            )));
        };
        let email = self.profile.email_claims.iter().find_map(|c| text(c));
        let name = text(self.profile.name_claim);
        let mut granted = Vec::new();
        // Scopes: from the validated access token, else the token
        // endpoint's own statement of what it granted.
        match &access_claims {
            Some(c) => {
                for name in self.profile.scope_claims {
                    granted.extend(words(claim(c, name)));
                }
            }
            None => granted.extend(
                tokens
                    .scope
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string),
            ),
        }
        let mut groups = Vec::new();
        for doc in &docs {
            for name in self.profile.role_claims {
                granted.extend(words(claim(doc, name)));
            }
            groups.extend(words(claim(doc, self.profile.groups_claim)));
        }
        Ok(SignedIn {
            sub,
            email,
            name,
            granted,
            groups,
            refresh_token: tokens.refresh_token,
        })
    }
}

/// A claim by name, then by dotted path.
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    claims
        .get(path)
        .or_else(|| path.split('.').try_fold(claims, |v, part| v.get(part)))
}

/// The words of a space-separated string or the strings of an array.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

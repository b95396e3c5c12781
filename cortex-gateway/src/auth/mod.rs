//! The OAuth 2.1 resource server: bearer JWTs validated by the SDK's
//! [`JwtValidator`] (audience = the canonical URI; verified tokens cached),
//! RFC 9728 protected-resource metadata, and the 401/403 challenges that
//! point clients at it. Tokens are read from the `Authorization` header
//! only, never from the query string.

mod memo;

use std::sync::Arc;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cortex_backend::{
    Caller,
    auth::{AuthConfigError, AuthError, JwtValidator, bearer_token},
    scopes,
};
use serde_json::{Value, json};

pub use memo::CallerMemo;

use crate::{config::GatewayConfig, federation::Catalog};

/// Why a request is refused before any MCP processing.
#[derive(Debug)]
pub enum AuthRejection {
    /// 401: no usable token.
    Unauthenticated {
        /// Whether a token was presented (then `error="invalid_token"`).
        presented: bool,
        /// What was wrong.
        reason: String,
    },
    /// 403: a baseline scope is missing.
    InsufficientScope {
        /// The scopes the request needs.
        needed: Vec<String>,
    },
}

/// Why [`ResourceServer::authenticate_guarded`] did not authenticate.
#[derive(Debug)]
pub enum NotAuthenticated<R> {
    /// No usable token, or too few scopes.
    Rejected(AuthRejection),
    /// `before_verify` refused the signature check.
    Throttled(R),
}

/// The resource server.
#[derive(Debug)]
pub struct ResourceServer {
    validator: JwtValidator,
    canonical_uri: String,
    metadata_url: String,
    issuer: String,
    required_scopes: Vec<String>,
}

impl ResourceServer {
    /// Builds the validator from the configuration.
    pub fn new(config: &GatewayConfig) -> Result<Self, AuthConfigError> {
        // The audience is always the canonical URI (RFC 8707): a token
        // minted for another resource is refused.
        let jwt = config
            .oauth
            .jwt_config(&config.issuer, vec![config.canonical_uri.clone()])?;
        let validator = JwtValidator::new(jwt)?;
        let metadata_url = format!(
            "{}/.well-known/oauth-protected-resource{}",
            config.canonical_origin(),
            config.canonical_path()
        );
        Ok(Self {
            validator,
            canonical_uri: config.canonical_uri.clone(),
            metadata_url,
            issuer: config.issuer.clone(),
            required_scopes: config.required_scopes.clone(),
        })
    }

    /// The URL of the metadata document advertised in challenges.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// Authenticates a request from its headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Caller>, AuthRejection> {
        self.authenticate_guarded(headers, || Ok::<(), std::convert::Infallible>(()))
            .await
            .map_err(|refused| match refused {
                NotAuthenticated::Rejected(rejection) => rejection,
                NotAuthenticated::Throttled(never) => match never {},
            })
    }

    /// [`Self::authenticate`], calling `before_verify` first when the
    /// token is not one already verified (and cached): a signature check
    /// is work a caller can make the gateway do, so it may be refused
    /// before it starts. A request without a token, or a cached one, never
    /// calls it.
    pub async fn authenticate_guarded<R>(
        &self,
        headers: &HeaderMap,
        before_verify: impl FnOnce() -> Result<(), R>,
    ) -> Result<Arc<Caller>, NotAuthenticated<R>> {
        let unauthenticated = |presented: bool, reason: String| {
            NotAuthenticated::Rejected(AuthRejection::Unauthenticated { presented, reason })
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthenticated(false, AuthError::Missing.to_string()));
        };
        let value = value
            .to_str()
            .map_err(|_| unauthenticated(true, AuthError::Malformed.to_string()))?;
        let token = bearer_token(value).map_err(|e| unauthenticated(true, e.to_string()))?;
        let caller = match self.validator.cached_for(token) {
            Some(caller) => caller,
            None => {
                before_verify().map_err(NotAuthenticated::Throttled)?;
                self.validator.validate(token).await.map_err(|e| {
                    e.log_detail();
                    unauthenticated(true, e.to_string())
                })?
            }
        };
        let missing: Vec<String> = self
            .required_scopes
            .iter()
            .filter(|s| !scopes::satisfies(&caller.scopes, s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let mut needed = caller.scopes.clone();
            needed.extend(missing);
            needed.sort();
            needed.dedup();
            return Err(NotAuthenticated::Rejected(
                AuthRejection::InsufficientScope { needed },
            ));
        }
        Ok(caller)
    }

    /// The scopes a client should ask for: the baseline when configured,
    /// otherwise every scope the catalog uses.
    pub fn challenge_scopes(&self, catalog: &Catalog) -> Vec<String> {
        if !self.required_scopes.is_empty() {
            return self.required_scopes.clone();
        }
        scopes_supported(catalog, &[])
    }

    /// The RFC 9728 document.
    pub fn metadata(&self, catalog: &Catalog) -> Value {
        json!({
            "resource": self.canonical_uri,
            "authorization_servers": [self.issuer],
            "scopes_supported": scopes_supported(catalog, &self.required_scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": "Cortex gateway",
        })
    }

    /// Turns a rejection into the HTTP answer with its challenge.
    pub fn reject(&self, rejection: AuthRejection, catalog: &Catalog) -> Response {
        // Challenge parameters are quoted-strings: no quote, backslash,
        // control or non-ASCII character (a reason may hold a caller's
        // own `kid`).
        let quote = |s: &str| {
            s.chars()
                .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
                .collect::<String>()
        };
        match rejection {
            AuthRejection::Unauthenticated { presented, reason } => {
                let scope = self.challenge_scopes(catalog).join(" ");
                let mut challenge = format!("Bearer resource_metadata=\"{}\"", self.metadata_url);
                if !scope.is_empty() {
                    challenge.push_str(&format!(", scope=\"{}\"", quote(&scope)));
                }
                if presented {
                    challenge.push_str(&format!(
                        ", error=\"invalid_token\", error_description=\"{}\"",
                        quote(&reason)
                    ));
                }
                respond(
                    StatusCode::UNAUTHORIZED,
                    challenge,
                    json!({"error": if presented { "invalid_token" } else { "unauthorized" },
                           "error_description": format!("{reason}; get a token from {} for resource {}", self.issuer, self.canonical_uri)}),
                )
            }
            AuthRejection::InsufficientScope { needed } => {
                let scope = needed.join(" ");
                let challenge = format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", \
                     error_description=\"this gateway requires the scopes {}\"",
                    quote(&scope),
                    self.metadata_url,
                    quote(&self.required_scopes.join(" "))
                );
                respond(
                    StatusCode::FORBIDDEN,
                    challenge,
                    json!({"error": "insufficient_scope",
                           "error_description": format!("every caller of this gateway needs the scopes {}; ask for them when you get your token", self.required_scopes.join(" "))}),
                )
            }
        }
    }
}

fn respond(status: StatusCode, challenge: String, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// Every scope used by the catalog plus `extra`, sorted, `offline_access`
/// never included.
pub fn scopes_supported(catalog: &Catalog, extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = catalog
        .tools
        .iter()
        .map(|t| t.scope.clone())
        .chain(catalog.prompts.iter().map(|p| p.scope.clone()))
        .chain(catalog.templates.iter().map(|t| t.scope.clone()))
        .chain(extra.iter().cloned())
        .filter(|s| !s.is_empty() && s != "offline_access")
        .collect();
    all.sort();
    all.dedup();
    all
}

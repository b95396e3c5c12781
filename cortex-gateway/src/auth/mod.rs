//! The OAuth 2.1 resource server: bearer JWTs validated by the SDK's
//! [`JwtValidator`] (audience = the canonical URI; verified tokens cached),
//! RFC 9728 protected-resource metadata, and the 401/403 challenges that
//! point clients at it. Tokens are read from the `Authorization` header
//! only, never from the query string.
//!
//! With the OAuth facade the gateway is its own authorization server: the
//! resource server then accepts only the access tokens it signed itself
//! (issuer = the gateway, keys = its [`SigningKeys`], `typ: at+jwt`, ES256),
//! verified against the keys in memory, never fetched over HTTP; when the
//! key file changes, the verifier is rebuilt on the first token it does not
//! know.

pub(crate) mod introspection;

use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use cortex_backend::{
    Caller,
    auth::{AuthConfigError, AuthError, JwtValidator, bearer_token},
    scopes,
};
use serde_json::{Value, json};

use cortex_backend::auth::{JwtConfig, KeySource};

use crate::keys::SigningKeys;

/// Where the resource server is and what it asks of every caller.
#[derive(Debug, Clone)]
pub(crate) struct ResourceSettings {
    /// The canonical URI (the token audience).
    pub canonical_uri: String,
    /// The RFC 9728 document's URL, advertised in challenges.
    pub metadata_url: String,
    /// The authorization server.
    pub issuer: String,
    /// Scopes every caller needs (`CORTEX_REQUIRED_SCOPES`).
    pub required_scopes: Vec<String>,
}

/// Why a request is refused before any MCP processing.
#[derive(Debug)]
pub(crate) enum AuthRejection {
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

/// The RFC 6750 `error` code of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeError {
    /// No token was presented (401).
    Unauthorized,
    /// The token presented is not usable (401).
    InvalidToken,
    /// The token lacks a scope every caller needs (403).
    InsufficientScope,
}

impl ChallengeError {
    /// The code as written in the body.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A refusal as the resource server words it: the `WWW-Authenticate`
/// challenge and what the body says. The HTTP layer writes it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The `error` code (and with it the status).
    pub error: ChallengeError,
    /// What was wrong and how to get a usable token.
    pub description: String,
    /// The `WWW-Authenticate` value.
    pub header: String,
}

/// Why [`ResourceServer::authenticate_guarded`] did not authenticate.
#[derive(Debug)]
pub(crate) enum NotAuthenticated<R> {
    /// No usable token, or too few scopes.
    Rejected(AuthRejection),
    /// `before_verify` refused the signature check.
    Throttled(R),
}

/// Verifies the gateway's own tokens with its signing keys: the validator
/// of the JWKS it was built from, rebuilt when the keys change.
struct OwnTokens {
    keys: Arc<SigningKeys>,
    config: JwtConfig,
    current: RwLock<(bytes::Bytes, Arc<JwtValidator>)>,
}

impl OwnTokens {
    fn build(config: &JwtConfig, jwks: &[u8]) -> Result<JwtValidator, AuthConfigError> {
        let set = serde_json::from_slice(jwks).map_err(|e| AuthConfigError {
            variable: "CORTEX_SIGNING_KEY_FILE".into(),
            problem: format!("the keys do not make a usable JWKS: {e}"),
        })?;
        let mut config = config.clone();
        config.keys = KeySource::Static(set);
        JwtValidator::new(config)
    }

    /// The validator in use.
    fn validator(&self) -> Arc<JwtValidator> {
        crate::sync::read_lock(&self.current).1.clone()
    }

    /// The validator for the keys published now (rebuilt if they changed).
    fn current(&self) -> Arc<JwtValidator> {
        let jwks = self.keys.jwks();
        let (built, validator) = crate::sync::read_lock(&self.current).clone();
        if built == jwks {
            return validator;
        }
        match Self::build(&self.config, &jwks) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *crate::sync::write_lock(&self.current) = (jwks, fresh.clone());
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "the gateway's keys cannot verify its tokens");
                validator
            }
        }
    }
}

/// Where the resource server's keys come from.
#[allow(
    clippy::large_enum_variant,
    reason = "one per gateway; the issuer's validator stays inline on the hot path"
)]
enum Verifier {
    /// The configured issuer's (the SDK's validator).
    Issuer(JwtValidator),
    /// The gateway's own (the OAuth facade).
    Own(OwnTokens),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Issuer(v) => v.fmt(f),
            Self::Own(o) => f.debug_tuple("Own").field(&o.keys).finish(),
        }
    }
}

/// The resource server.
#[derive(Debug)]
pub(crate) struct ResourceServer {
    verifier: Verifier,
    canonical_uri: String,
    metadata_url: String,
    issuer: String,
    required_scopes: Vec<String>,
}

impl ResourceServer {
    /// Builds the validator. `jwt` must name the canonical URI as the only
    /// audience (RFC 8707: a token minted for another resource is refused).
    pub(crate) fn new(settings: ResourceSettings, jwt: JwtConfig) -> Result<Self, AuthConfigError> {
        let validator = JwtValidator::new(jwt)?;
        Ok(Self {
            verifier: Verifier::Issuer(validator),
            canonical_uri: settings.canonical_uri,
            metadata_url: settings.metadata_url,
            issuer: settings.issuer,
            required_scopes: settings.required_scopes,
        })
    }

    /// A resource server that accepts only the tokens the gateway signs
    /// with `keys` (the OAuth facade's): `typ: at+jwt`, ES256, issuer =
    /// `settings.issuer`, audience = the canonical URI.
    pub(crate) fn for_own_tokens(
        settings: ResourceSettings,
        keys: Arc<SigningKeys>,
    ) -> Result<Self, AuthConfigError> {
        let mut config = JwtConfig::new(
            settings.issuer.clone(),
            vec![settings.canonical_uri.clone()],
        );
        config.algorithms = vec![cortex_backend::auth::Algorithm::ES256];
        config.require_at_jwt = true;
        let jwks = keys.jwks();
        let validator = Arc::new(OwnTokens::build(&config, &jwks)?);
        Ok(Self {
            verifier: Verifier::Own(OwnTokens {
                keys,
                config,
                current: RwLock::new((jwks, validator)),
            }),
            canonical_uri: settings.canonical_uri,
            metadata_url: settings.metadata_url,
            issuer: settings.issuer,
            required_scopes: settings.required_scopes,
        })
    }

    /// Authenticates a request from its headers, calling `before_verify` first when the
    /// token is not one already verified (and cached): a signature check
    /// is work a caller can make the gateway do, so it may be refused
    /// before it starts. A request without a token, or a cached one, never
    /// calls it.
    pub(crate) async fn authenticate_guarded<R>(
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
        let own;
        let validator = match &self.verifier {
            Verifier::Issuer(v) => v,
            Verifier::Own(o) => {
                own = o.validator();
                &*own
            }
        };
        let caller = match validator.cached_for(token) {
            Some(caller) => caller,
            None => {
                before_verify().map_err(NotAuthenticated::Throttled)?;
                let verified = match &self.verifier {
                    Verifier::Issuer(v) => v.validate(token).await,
                    Verifier::Own(o) => o.current().validate(token).await,
                };
                verified.map_err(|e| {
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
    /// otherwise every scope the catalog uses (`catalog_scopes`).
    pub(crate) fn challenge_scopes(
        &self,
        catalog_scopes: impl FnOnce() -> Vec<String>,
    ) -> Vec<String> {
        if !self.required_scopes.is_empty() {
            return self.required_scopes.clone();
        }
        scopes_supported(catalog_scopes(), &[])
    }

    /// The RFC 9728 document, given the scopes the catalog uses.
    pub(crate) fn metadata(&self, catalog_scopes: Vec<String>) -> Value {
        json!({
            "resource": self.canonical_uri,
            "authorization_servers": [self.issuer],
            "scopes_supported": scopes_supported(catalog_scopes, &self.required_scopes),
            "bearer_methods_supported": ["header"],
            "resource_name": "Cortex gateway",
        })
    }

    /// The challenge that answers a rejection.
    pub(crate) fn challenge(
        &self,
        rejection: AuthRejection,
        catalog_scopes: impl FnOnce() -> Vec<String>,
    ) -> Challenge {
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
                let scope = self.challenge_scopes(catalog_scopes).join(" ");
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
                Challenge {
                    error: if presented {
                        ChallengeError::InvalidToken
                    } else {
                        ChallengeError::Unauthorized
                    },
                    description: format!(
                        "{reason}; get a token from {} for resource {}",
                        self.issuer, self.canonical_uri
                    ),
                    header: challenge,
                }
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
                Challenge {
                    error: ChallengeError::InsufficientScope,
                    description: format!(
                        "every caller of this gateway needs the scopes {}; ask for them when you get your token",
                        self.required_scopes.join(" ")
                    ),
                    header: challenge,
                }
            }
        }
    }
}

/// `used` (the scopes the catalog uses) plus `extra`, sorted, without
/// duplicates, `offline_access` never included.
pub(crate) fn scopes_supported(used: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = used
        .into_iter()
        .chain(extra.iter().cloned())
        .filter(|s| !s.is_empty() && s != "offline_access")
        .collect();
    all.sort();
    all.dedup();
    all
}

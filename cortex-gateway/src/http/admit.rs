//! Admission of a request to the MCP endpoint: authentication (with the
//! client address charged before an unknown token's signature is checked),
//! the caller's rate budget, and revocation through introspection.

use std::sync::Arc;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cortex_backend::Caller;

use super::perimeter::json_error;
use crate::{
    audit,
    auth::{
        AuthRejection, NotAuthenticated, ResourceServer,
        introspection::{IntrospectionError, Introspector},
    },
    catalog::Federation,
    store::ratelimit::{Budgets, RateLimited},
};

/// What admits a caller.
pub(crate) struct Admission {
    /// The token validator and its challenges.
    pub(crate) auth: ResourceServer,
    /// Per-caller budgets.
    pub(crate) budgets: Arc<Budgets>,
    /// Revocation check, when configured.
    pub(crate) introspector: Option<Introspector>,
    /// For the scopes named in challenges.
    pub(crate) catalog: Arc<Federation>,
}

/// Why [`Admission::after_auth`] refused an authenticated caller.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Over the per-caller budget (429).
    RateLimited(RateLimited),
    /// Introspection says the token is no longer active (401).
    Revoked,
    /// Introspection could not answer (503, fail closed).
    Unavailable(IntrospectionError),
}

impl Refused {
    /// The answer; `revoked` builds the 401 challenge for a revoked token.
    pub(crate) fn into_response(self, revoked: impl FnOnce() -> Response) -> Response {
        match self {
            Self::RateLimited(e) => e.into_response(),
            Self::Revoked => revoked(),
            Self::Unavailable(e) => {
                let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
        }
    }
}

impl Admission {
    /// Authentication, rate limit and revocation; `Err` is the finished
    /// refusal. The `Origin`/`Host` checks ran before, in the request
    /// checks that wrap every route.
    pub(crate) async fn admit(&self, headers: &HeaderMap) -> Result<Arc<Caller>, Response> {
        // A token not verified before is charged to the client address
        // before its signature is checked (docs/security.md, "Rate limiting").
        let caller = match self
            .auth
            .authenticate_guarded(headers, || self.charge_anonymous())
            .await
        {
            Ok(c) => c,
            Err(NotAuthenticated::Throttled(limited)) => return Err(limited.into_response()),
            Err(NotAuthenticated::Rejected(rejection)) => {
                return Err(self.auth.reject(rejection, || self.catalog_scopes()));
            }
        };
        match self.after_auth(&caller).await {
            Ok(()) => Ok(caller),
            Err(refused) => Err(refused.into_response(|| {
                self.auth.reject(
                    AuthRejection::Unauthenticated {
                        presented: true,
                        reason:
                            "the token was revoked (the authorization server reports it inactive)"
                                .into(),
                    },
                    || self.catalog_scopes(),
                )
            })),
        }
    }

    /// Charges a request that failed authentication to the client address;
    /// `Err` is the 429 to send instead of the 401.
    fn charge_anonymous(&self) -> Result<(), RateLimited> {
        match audit::peer() {
            Some(peer) => self.budgets.charge_address(peer),
            None => Ok(()),
        }
    }

    /// After authentication: records the caller, charges its budget, and
    /// checks revocation.
    async fn after_auth(&self, caller: &Arc<Caller>) -> Result<(), Refused> {
        audit::note_caller(caller);
        self.budgets
            .charge_subject(&caller.sub)
            .map_err(Refused::RateLimited)?;
        if let Some(introspector) = &self.introspector {
            // Boxed: its HTTP client future would otherwise be part of
            // every request's future, introspection or not.
            match Box::pin(introspector.is_active(caller.token())).await {
                Ok(true) => {}
                Ok(false) => {
                    audit::note_outcome("refused", Some("revoked"));
                    return Err(Refused::Revoked);
                }
                Err(e) => {
                    audit::note_outcome("error", Some("introspection"));
                    return Err(Refused::Unavailable(e));
                }
            }
        }
        Ok(())
    }

    /// The catalog's scopes (for challenges and the metadata document).
    pub(crate) fn catalog_scopes(&self) -> Vec<String> {
        self.catalog.catalog().scopes_in_use()
    }
}

//! Admission of a request to the MCP endpoint: authentication (with the
//! client address charged before an unknown token's signature is checked),
//! the caller's rate budget, and revocation through introspection.

use std::sync::Arc;

use axum::http::HeaderMap;
use cortex_backend::Caller;

use super::rejection::Rejection;
use crate::{
    audit,
    auth::{AuthRejection, NotAuthenticated, ResourceServer, introspection::Introspector},
    catalog::Federation,
    facade::Facade,
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
    /// The OAuth facade, whose revoked grants are refused.
    pub(crate) facade: Option<Arc<Facade>>,
}

impl Admission {
    /// Authentication, rate limit and revocation. The `Origin`/`Host`
    /// checks ran before, in the request checks that wrap every route.
    pub(crate) async fn admit(&self, headers: &HeaderMap) -> Result<Arc<Caller>, Rejection> {
        // A token not verified before is charged to the client address
        // before its signature is checked (docs/security.md, "Rate limiting").
        let caller = match self
            .auth
            .authenticate_guarded(headers, || self.charge_anonymous())
            .await
        {
            Ok(c) => c,
            Err(NotAuthenticated::Throttled(limited)) => return Err(limited.into()),
            Err(NotAuthenticated::Rejected(rejection)) => return Err(self.reject(rejection)),
        };
        self.after_auth(&caller).await?;
        Ok(caller)
    }

    /// The challenge answering an authentication failure.
    fn reject(&self, rejection: AuthRejection) -> Rejection {
        self.auth
            .challenge(rejection, || self.catalog_scopes())
            .into()
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
    async fn after_auth(&self, caller: &Arc<Caller>) -> Result<(), Rejection> {
        audit::note_caller(caller);
        self.budgets.charge_subject(&caller.sub).await?;
        if let Some(facade) = &self.facade
            && let Some(sid) = caller.claims.get("sid").and_then(serde_json::Value::as_str)
            && facade.is_revoked(sid).await.map_err(|e| {
                audit::note_outcome("error", Some("store"));
                Rejection::StoreUnavailable(e.0)
            })?
        {
            audit::note_outcome("refused", Some("revoked"));
            return Err(self.reject(AuthRejection::Unauthenticated {
                presented: true,
                reason: "the token's grant was revoked; sign in again".into(),
            }));
        }
        if let Some(introspector) = &self.introspector {
            // Boxed: its HTTP client future would otherwise be part of
            // every request's future, introspection or not.
            match Box::pin(introspector.is_active(caller.token())).await {
                Ok(true) => {}
                Ok(false) => {
                    audit::note_outcome("refused", Some("revoked"));
                    return Err(self.reject(AuthRejection::Unauthenticated {
                        presented: true,
                        reason:
                            "the token was revoked (the authorization server reports it inactive)"
                                .into(),
                    }));
                }
                Err(e) => {
                    audit::note_outcome("error", Some("introspection"));
                    return Err(e.into());
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

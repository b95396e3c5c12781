//! The operator endpoint `/admin/tool-integrity`: GET lists the open
//! quarantines with their changed fields and the tools refused for a name
//! another backend owns, POST `{"tool": "<public name>"}` approves a
//! quarantined one.
//!
//! It is protected by its own secret (`CORTEX_ADMIN_SECRET`), never by a
//! user token, so no agent, whatever its scopes, can approve a tool; and it
//! is never an MCP tool. Without a configured secret the route is not
//! mounted at all (404). The secret is compared in constant time (SHA-256
//! digests of equal length, compared with `subtle`).

use std::{future::Future, pin::Pin, sync::Arc};

use aws_lc_rs::digest::{SHA256, digest};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use crate::catalog::integrity::{ApproveError, IntegrityGuard};

/// The path of the endpoint.
pub(crate) const PATH: &str = "/admin/tool-integrity";

/// The shortest admin secret accepted.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Runs after an approval (a catalog refresh, so the tool is served at once).
pub(crate) type AfterApproval =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The admin secret, kept as a digest.
#[derive(Clone)]
pub(crate) struct AdminSecret {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminSecret([secret])")
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

impl AdminSecret {
    /// Keeps the digest of `secret`.
    pub(crate) fn new(secret: &str) -> Self {
        Self {
            digest: sha256(secret.as_bytes()),
        }
    }

    /// Whether `Authorization: Bearer <secret>` carries this secret.
    pub(crate) fn verify(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .unwrap_or("");
        self.matches(presented)
    }

    /// Whether `presented` is the secret (constant time; never empty).
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let matches: bool = sha256(presented.as_bytes()).ct_eq(&self.digest).into();
        matches && !presented.is_empty()
    }
}

#[derive(Clone)]
struct AdminState {
    secret: AdminSecret,
    integrity: Arc<IntegrityGuard>,
    after_approval: AfterApproval,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "the operator endpoint needs Authorization: Bearer <CORTEX_ADMIN_SECRET>; user tokens are not accepted here",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cortex-admin\""),
    );
    r
}

async fn list(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if !s.secret.verify(&headers) {
        return unauthorized();
    }
    let baseline = match s.integrity.corrupt() {
        Some(reason) => json!({"state": "corrupt", "problem": reason}),
        None => json!({"state": "ok"}),
    };
    Json(json!({
        "mode": s.integrity.mode(),
        "baseline": baseline,
        "quarantined": s.integrity.quarantines(),
        "clashes": s.integrity.clashes(),
    }))
    .into_response()
}

async fn approve(State(s): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if !s.secret.verify(&headers) {
        return unauthorized();
    }
    let tool = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("tool").and_then(Value::as_str).map(String::from));
    let Some(tool) = tool else {
        return error(
            StatusCode::BAD_REQUEST,
            "send a JSON body {\"tool\": \"<public tool name>\"}, e.g. {\"tool\": \"crm_search_accounts\"}",
        );
    };
    crate::audit::note(|r| r.tool = Some(tool.clone()));
    match s.integrity.approve(&tool) {
        Ok(view) => {
            (s.after_approval)().await;
            Json(json!({"approved": view})).into_response()
        }
        Err(e @ ApproveError::NotQuarantined(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ApproveError::Corrupt(_) | ApproveError::VerifyOnly(_))) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ ApproveError::Persist(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The operator routes. Mount them only when a secret is configured.
pub(crate) fn router(
    secret: AdminSecret,
    integrity: Arc<IntegrityGuard>,
    after_approval: AfterApproval,
) -> Router {
    Router::new()
        .route(PATH, get(list).post(approve))
        .with_state(AdminState {
            secret,
            integrity,
            after_approval,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn only_the_exact_secret_verifies() {
        let s = AdminSecret::new("an-operator-secret-of-32-characters!");
        assert!(s.verify(&bearer("an-operator-secret-of-32-characters!")));
        assert!(!s.verify(&bearer("an-operator-secret-of-32-characters")));
        assert!(!s.verify(&bearer("")));
        assert!(!s.verify(&HeaderMap::new()));
        assert!(!format!("{s:?}").contains("operator"));
    }
}

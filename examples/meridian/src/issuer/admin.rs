//! Revoking a person: `GET /admin` lists who holds grants with a button
//! each; `POST /admin/revoke` ends every grant of one person. The POST
//! needs the run's admin secret, as `Authorization: Bearer` (what
//! `meridian revoke` sends) or as the page's hidden form field (so another
//! site cannot submit the form).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{OAuthError, Shared, json_response, now, pages, parse_form, same};
use crate::firm::{Employee, Persona};

/// Finds a person by id (`e-007`), email or persona key (`sales_rep`).
pub fn find_person<'a>(people: &'a [Employee], who: &str) -> Option<&'a Employee> {
    let id = Persona::ALL
        .iter()
        .find(|p| p.key() == who)
        .map_or(who, |p| p.employee_id());
    people
        .iter()
        .find(|e| e.id == id || e.email.eq_ignore_ascii_case(who))
}

/// `GET /admin`.
pub(crate) async fn page(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let notice = parse_form(query.unwrap_or_default().as_bytes())
        .ok()
        .and_then(|q| q.get("revoked").cloned())
        .and_then(|sub| {
            s.person(&sub)
                .map(|e| format!("Revoked every grant of {}.", e.name))
        });
    let grants = s.store().grants_by_subject(now());
    pages::html(StatusCode::OK, pages::admin(&s, &grants, notice.as_deref()))
}

/// `POST /admin/revoke` with `person=<id, email or persona key>`.
pub(crate) async fn revoke(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_page = bearer.is_none();
    let given = bearer
        .or(form.get("csrf").map(String::as_str))
        .unwrap_or_default();
    if !same(given.as_bytes(), s.admin_secret.as_bytes()) {
        return OAuthError::new(
            "invalid_client",
            "revoking needs this run's admin secret: use `meridian revoke <person>` or the button on /admin",
        )
        .status(StatusCode::UNAUTHORIZED)
        .into_response();
    }
    let who = form.get("person").map(String::as_str).unwrap_or_default();
    let Some(person) = find_person(&s.people, who).cloned() else {
        return OAuthError::new(
            "invalid_request",
            format!(
                "no person `{}`; give an employee id (e-007), an email or a persona key (sales_rep, project_manager, cfo, ceo)",
                who.chars().take(80).collect::<String>()
            ),
        )
        .into_response();
    };
    let ended = s.store().revoke_subject(&person.id, now());
    tracing::info!(person = %person.id, grants = ended, "revoked every grant of a person");
    if from_page {
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/admin?revoked={}", person.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        return response;
    }
    json_response(
        StatusCode::OK,
        &json!({"person": person.id, "name": person.name, "grants_revoked": ended}),
    )
}

//! The authorization endpoint: `GET /authorize` checks the request and
//! shows the sign-in page; `POST /authorize/person` records who signs in
//! and shows the consent page; `POST /authorize/consent` sends the browser
//! back to the client with a code (or `access_denied`), `state` and `iss`.
//!
//! Until the client and its redirect URI are known to match, errors are
//! shown as a page (never redirected: the redirect target is not trusted
//! yet). After that, errors go back to the client (RFC 6749 section
//! 4.1.2.1). The sign-in's random id in the forms ties the three steps
//! together and is single-use at the consent.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use url::Url;

use super::{
    Shared, b64url, clients, digest_of, pages, parse_form, random_token,
    store::{Code, MAX_FIELD_BYTES, SignIn},
};

/// Where the user goes back to, with the response parameters.
fn back_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Invalid redirect URI",
            "The client's redirect URI is not a URL.",
        );
    };
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error sent back to the client, with `state` and `iss`.
fn refuse(s: &Shared, sign_in: &SignIn, error: &str, description: &str) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = &sign_in.state {
        params.push(("state", state));
    }
    params.push(("iss", &s.issuer));
    back_to(&sign_in.redirect_uri, &params)
}

fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `GET /authorize`.
pub(crate) async fn start(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let page = |title: &str, message: &str| pages::error(StatusCode::BAD_REQUEST, title, message);
    let params = match parse_form(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return page("Invalid authorization request", &e.description),
    };
    let Some(client_id) = params.get("client_id") else {
        return page(
            "Invalid authorization request",
            "The request has no client_id. Start the sign-in again from your MCP client.",
        );
    };
    let client = match clients::resolve(&s, client_id).await {
        Ok(c) => c,
        Err(e) => return page("Unknown client", &e.0),
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return page(
            "Invalid authorization request",
            "The request has no redirect_uri; the client must send one of its registered redirect URIs.",
        );
    };
    if redirect_uri.len() > MAX_FIELD_BYTES || !client.redirect_allowed(redirect_uri) {
        return page(
            "Redirect URI not registered",
            &format!(
                "{} asked to return to {}, which is not one of its registered redirect URIs ({}). \
                 Nothing was sent there.",
                client.name,
                redirect_uri.chars().take(200).collect::<String>(),
                client.redirect_uris.join(", ")
            ),
        );
    }
    let state = params.get("state").cloned();
    if state.as_ref().is_some_and(|st| st.len() > MAX_FIELD_BYTES) {
        return page(
            "Invalid authorization request",
            &format!("`state` is longer than {MAX_FIELD_BYTES} bytes."),
        );
    }
    let mut sign_in = SignIn {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        client_note: client.provenance(),
        redirect_uri: redirect_uri.clone(),
        state,
        code_challenge: String::new(),
        resource: s.resource.clone(),
        person: None,
        expires: Instant::now() + s.settings.sign_in_ttl,
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        return refuse(
            &s,
            &sign_in,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if !client.allows("authorization_code") {
        return refuse(
            &s,
            &sign_in,
            "unauthorized_client",
            "this client did not register the authorization_code grant",
        );
    }
    match (
        params.get("code_challenge"),
        params.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(challenge), Some("S256")) if is_pkce_value(challenge) => {
            sign_in.code_challenge = challenge.clone();
        }
        (None, _) => {
            return refuse(
                &s,
                &sign_in,
                "invalid_request",
                "PKCE is required: send code_challenge and code_challenge_method=S256",
            );
        }
        (Some(_), Some("S256")) => {
            return refuse(
                &s,
                &sign_in,
                "invalid_request",
                "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]",
            );
        }
        (Some(_), _) => {
            return refuse(
                &s,
                &sign_in,
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            );
        }
    }
    if let Some(resource) = params.get("resource")
        && *resource != s.resource
    {
        return refuse(
            &s,
            &sign_in,
            "invalid_target",
            &format!(
                "this server issues tokens for {} only; `resource` must be exactly that URL",
                s.resource
            ),
        );
    }
    let Ok(id) = random_token(24) else {
        return refuse(&s, &sign_in, "server_error", "no randomness");
    };
    if let Err(e) = s.store().add_sign_in(id.clone(), sign_in.clone()) {
        return refuse(&s, &sign_in, "temporarily_unavailable", &e.to_string());
    }
    pages::html(StatusCode::OK, pages::sign_in(&s, &id, &sign_in))
}

fn expired() -> Response {
    pages::error(
        StatusCode::BAD_REQUEST,
        "This sign-in is over",
        "It expired, was already completed, or never existed. Go back to your MCP client and connect again.",
    )
}

/// `POST /authorize/person`: who signs in.
pub(crate) async fn person(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(form) = parse_form(&body) else {
        return expired();
    };
    let (Some(id), Some(person)) = (form.get("request"), form.get("person")) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Pick a person",
            "The form lacked the sign-in or the person. Go back and pick someone.",
        );
    };
    let Some(employee) = s.person(person).cloned() else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Unknown person",
            "Nobody at Meridian has that id. Go back and pick someone from the list.",
        );
    };
    let sign_in = {
        let mut store = s.store();
        let Some(sign_in) = store.sign_in(id) else {
            return expired();
        };
        sign_in.person = Some(employee.id.clone());
        sign_in.clone()
    };
    pages::html(
        StatusCode::OK,
        pages::consent(
            &s,
            id,
            &sign_in,
            &employee,
            s.settings.realm.granted(employee.role),
        ),
    )
}

/// `POST /authorize/consent`: allow or deny.
pub(crate) async fn consent(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(form) = parse_form(&body) else {
        return expired();
    };
    let Some(id) = form.get("request") else {
        return expired();
    };
    let Some(sign_in) = s.store().take_sign_in(id) else {
        return expired();
    };
    let Some(person) = sign_in.person.clone().and_then(|p| s.person(&p).cloned()) else {
        return refuse(&s, &sign_in, "access_denied", "nobody signed in");
    };
    if form.get("decision").map(String::as_str) != Some("allow") {
        return refuse(&s, &sign_in, "access_denied", "the user denied the request");
    }
    let Ok(code) = random_token(32) else {
        return refuse(&s, &sign_in, "server_error", "no randomness");
    };
    let stored = Code {
        client_id: sign_in.client_id.clone(),
        redirect_uri: sign_in.redirect_uri.clone(),
        code_challenge: sign_in.code_challenge.clone(),
        resource: sign_in.resource.clone(),
        sub: person.id.clone(),
        scope: s.settings.realm.granted(person.role).join(" "),
        expires: Instant::now() + s.settings.code_ttl,
        used: false,
        grant: None,
    };
    if let Err(e) = s.store().add_code(digest_of(&code), stored) {
        return refuse(&s, &sign_in, "temporarily_unavailable", &e.to_string());
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &sign_in.state {
        params.push(("state", state));
    }
    params.push(("iss", &s.issuer));
    back_to(&sign_in.redirect_uri, &params)
}

/// `BASE64URL(SHA256(verifier))`, compared in constant time with the
/// stored challenge (RFC 7636 section 4.6).
pub(crate) fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    is_pkce_value(verifier)
        && super::same(
            b64url(&digest_of(verifier)).as_bytes(),
            challenge.as_bytes(),
        )
}

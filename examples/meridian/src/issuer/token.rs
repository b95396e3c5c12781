//! `POST /token` (authorization code, refresh token, client credentials),
//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662).
//!
//! Clients authenticate with HTTP Basic or form fields (confidential) or
//! send only `client_id` (public). Access tokens name their grant in
//! `jti` (`<grant>.<n>`), so introspection answers from the grant's
//! life: revoking it ends them all at once. Tokens minted without a grant
//! (the pasted persona tokens) end when their person is revoked.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{
    OAuthError, Shared,
    authorize::verifier_matches,
    clients,
    clients::Client,
    digest_of, json_response, now, parse_form, random_token, same,
    store::{Grant, RefreshProblem},
};

fn invalid_client(description: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_client", description).status(StatusCode::UNAUTHORIZED)
}

fn server_error() -> OAuthError {
    OAuthError::new("server_error", "the random generator failed")
        .status(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Decodes `Authorization: Basic` (RFC 6749 section 2.3.1: both parts
/// form-encoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad =
        || invalid_client("the Authorization header is not valid HTTP Basic client authentication");
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Err(bad());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// Authenticates the calling client.
async fn authenticate(
    s: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (id, secret) = match basic {
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(OAuthError::new(
                    "invalid_request",
                    "use one client authentication method: HTTP Basic or client_secret in the form, not both",
                ));
            }
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(invalid_client(
                    "client_id in the form differs from HTTP Basic",
                ));
            }
            (id, Some(secret))
        }
        None => {
            let id = form.get("client_id").cloned().ok_or_else(|| {
                invalid_client(
                    "no client authentication: send client_id (public clients) or HTTP Basic",
                )
            })?;
            (id, form.get("client_secret").cloned())
        }
    };
    let client = clients::resolve(s, &id)
        .await
        .map_err(|e| invalid_client(e.0))?;
    match (&client.secret, secret) {
        (Some(expected), Some(given)) if same(expected, &digest_of(&given)) => Ok(client),
        (Some(_), _) => Err(invalid_client("wrong or missing client secret")),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(invalid_client(
            "this client is public (token_endpoint_auth_method none); send no client secret",
        )),
    }
}

/// Identity claims of a subject: a person's, or a confidential client's.
fn identity(s: &Shared, sub: &str, client: &Client) -> Vec<(&'static str, Value)> {
    match s.person(sub) {
        Some(e) => vec![
            ("sub", json!(e.id)),
            ("email", json!(e.email)),
            ("name", json!(e.name)),
            ("role", json!(e.role)),
            ("team", json!(e.team)),
        ],
        None => vec![("sub", json!(sub)), ("name", json!(client.name))],
    }
}

/// Mints an access token of a grant and the token response.
fn issue(
    s: &Shared,
    grant_id: &str,
    grant: &Grant,
    client: &Client,
    scope: &str,
    refresh: Option<&str>,
) -> Result<Response, OAuthError> {
    let seq = s
        .store()
        .next_seq(grant_id)
        .ok_or_else(|| OAuthError::new("invalid_grant", "the grant was revoked"))?;
    let ttl = s.settings.access_ttl;
    let mut token = s
        .minter
        .token(&grant.resource)
        .typ(Some("at+jwt"))
        .ttl(ttl)
        .claim("scope", json!(scope))
        .claim("client_id", json!(client.id))
        .claim("jti", json!(format!("{grant_id}.{seq}")));
    for (name, value) in identity(s, &grant.sub, client) {
        token = token.claim(name, value);
    }
    let mut body = json!({
        "access_token": token.mint(),
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn check_resource(
    s: &Shared,
    form: &HashMap<String, String>,
    bound: &str,
) -> Result<(), OAuthError> {
    match form.get("resource") {
        Some(r) if r != bound || *r != s.resource => Err(OAuthError::new(
            "invalid_target",
            format!("tokens of this grant are for {bound} only; `resource` must be exactly that"),
        )),
        _ => Ok(()),
    }
}

async fn code_grant(
    s: &Shared,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let need = |name: &str| {
        form.get(name).ok_or_else(|| {
            OAuthError::new(
                "invalid_request",
                format!("`{name}` is required for this grant"),
            )
        })
    };
    let (code, redirect_uri, verifier) =
        (need("code")?, need("redirect_uri")?, need("code_verifier")?);
    let digest = digest_of(code);
    let stored = s
        .store()
        .present_code(&digest)
        .map_err(|d| OAuthError::new("invalid_grant", d))?;
    if stored.client_id != client.id {
        return Err(OAuthError::new(
            "invalid_grant",
            "the authorization code was issued to another client",
        ));
    }
    if stored.redirect_uri != *redirect_uri {
        return Err(OAuthError::new(
            "invalid_grant",
            "redirect_uri differs from the one of the authorization request",
        ));
    }
    if !verifier_matches(verifier, &stored.code_challenge) {
        return Err(OAuthError::new(
            "invalid_grant",
            "code_verifier does not match the code_challenge (PKCE S256); the code is now spent",
        ));
    }
    check_resource(s, form, &stored.resource)?;
    let refresh = if client.allows("refresh_token") {
        Some(random_token(32).map_err(|_| server_error())?)
    } else {
        None
    };
    let t = now();
    let lifetime = if refresh.is_some() {
        s.settings.refresh_ttl
    } else {
        s.settings.access_ttl
    };
    let grant = Grant {
        sub: stored.sub.clone(),
        client_id: client.id.clone(),
        scope: stored.scope.clone(),
        resource: stored.resource.clone(),
        expires: t + lifetime.as_secs(),
        refresh: refresh.as_deref().map(digest_of),
        previous_refresh: Vec::new(),
        seq: 0,
    };
    let grant_id = random_token(12).map_err(|_| server_error())?;
    {
        let mut store = s.store();
        store
            .add_grant(grant_id.clone(), grant.clone(), t)
            .map_err(|e| {
                OAuthError::new("temporarily_unavailable", e.to_string())
                    .status(StatusCode::SERVICE_UNAVAILABLE)
            })?;
        store.code_granted(&digest, &grant_id);
    }
    issue(
        s,
        &grant_id,
        &grant,
        client,
        &grant.scope,
        refresh.as_deref(),
    )
}

/// Narrows a grant's scope to a requested subset.
fn narrowed(granted: &str, requested: Option<&String>) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(granted.to_string());
    };
    let granted: Vec<&str> = granted.split(' ').collect();
    if let Some(extra) = requested.split(' ').find(|s| !granted.contains(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            format!(
                "`{extra}` was not granted; ask for a subset of: {}",
                granted.join(" ")
            ),
        ));
    }
    Ok(requested.clone())
}

async fn refresh_grant(
    s: &Shared,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let old = form.get("refresh_token").ok_or_else(|| {
        OAuthError::new(
            "invalid_request",
            "`refresh_token` is required for this grant",
        )
    })?;
    let new = random_token(32).map_err(|_| server_error())?;
    let t = now();
    // Refuse a bad `resource` or `scope` before rotating, so the client
    // keeps a working refresh token.
    let current = s.store().refresh_grant(&digest_of(old), t);
    if let Some((_, grant)) = &current {
        check_resource(s, form, &grant.resource)?;
        narrowed(&grant.scope, form.get("scope"))?;
    }
    let rotated = s.store().rotate(
        &digest_of(old),
        digest_of(&new),
        &client.id,
        t + s.settings.refresh_ttl.as_secs(),
        t,
    );
    let (grant_id, grant) = rotated.map_err(|p| {
        OAuthError::new(
            "invalid_grant",
            match p {
                RefreshProblem::Unknown => {
                    "unknown, expired or revoked refresh token; sign in again"
                }
                RefreshProblem::Replayed => {
                    "this refresh token was already used, so a copy may have leaked: the whole grant is \
                     revoked. Sign in again"
                }
                RefreshProblem::OtherClient => "the refresh token was issued to another client",
            },
        )
    })?;
    let scope = narrowed(&grant.scope, form.get("scope"))?;
    issue(s, &grant_id, &grant, client, &scope, Some(&new))
}

async fn client_credentials(
    s: &Shared,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    if client.secret.is_none() || !client.allows("client_credentials") {
        return Err(OAuthError::new(
            "unauthorized_client",
            "client credentials are for confidential clients registered with the client_credentials grant",
        ));
    }
    check_resource(s, form, &s.resource)?;
    let scope = narrowed(
        client.scope.as_deref().unwrap_or_default(),
        form.get("scope"),
    )?;
    let t = now();
    let grant = Grant {
        sub: client.id.clone(),
        client_id: client.id.clone(),
        scope: scope.clone(),
        resource: s.resource.clone(),
        expires: t + s.settings.access_ttl.as_secs(),
        refresh: None,
        previous_refresh: Vec::new(),
        seq: 0,
    };
    let grant_id = random_token(12).map_err(|_| server_error())?;
    s.store()
        .add_grant(grant_id.clone(), grant.clone(), t)
        .map_err(|e| {
            OAuthError::new("temporarily_unavailable", e.to_string())
                .status(StatusCode::SERVICE_UNAVAILABLE)
        })?;
    issue(s, &grant_id, &grant, client, &scope, None)
}

/// `POST /token`.
pub(crate) async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let client = authenticate(&s, &headers, &form).await?;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => code_grant(&s, &client, &form).await,
            Some("refresh_token") => refresh_grant(&s, &client, &form).await,
            Some("client_credentials") => client_credentials(&s, &client, &form).await,
            Some(other) => Err(OAuthError::new(
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use authorization_code, refresh_token or client_credentials",
                    other.chars().take(60).collect::<String>()
                ),
            )),
            None => Err(OAuthError::new("invalid_request", "`grant_type` is required")),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The claims of an access token this server signed (any expiry).
#[derive(serde::Deserialize)]
struct AccessClaims {
    sub: String,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    iat: u64,
    exp: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

fn decode_access(s: &Shared, token: &str, check_exp: bool) -> Option<AccessClaims> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[s.issuer.as_str()]);
    validation.set_audience(&[s.resource.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = check_exp;
    validation.leeway = 0;
    jsonwebtoken::decode::<AccessClaims>(token, &s.decoding, &validation)
        .ok()
        .map(|d| d.claims)
}

fn grant_of(jti: Option<&str>) -> Option<&str> {
    jti.and_then(|j| j.split_once('.')).map(|(g, _)| g)
}

/// `POST /introspect` (RFC 7662), for confidential clients.
pub(crate) async fn introspect(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let client = authenticate(&s, &headers, &form).await?;
        if client.secret.is_none() {
            return Err(invalid_client(
                "introspection is for confidential clients (the gateway); public clients cannot use it",
            ));
        }
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::new("invalid_request", "`token` is required"))?;
        let t = now();
        if let Some(claims) = decode_access(&s, token, true) {
            let store = s.store();
            let active = match grant_of(claims.jti.as_deref()) {
                Some(grant) => store
                    .grant(grant, t)
                    .is_some_and(|g| g.sub == claims.sub),
                None => !store.revoked(&claims.sub, claims.iat),
            };
            if active {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "active": true, "token_type": "Bearer", "sub": claims.sub,
                        "scope": claims.scope, "client_id": claims.client_id,
                        "exp": claims.exp, "iat": claims.iat, "iss": s.issuer, "aud": s.resource,
                    }),
                ));
            }
        } else if let Some((_, grant)) = s.store().refresh_grant(&digest_of(token), t) {
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "active": true, "token_type": "refresh_token", "sub": grant.sub,
                    "scope": grant.scope, "client_id": grant.client_id, "exp": grant.expires,
                    "iss": s.issuer, "aud": grant.resource,
                }),
            ));
        }
        Ok(json_response(StatusCode::OK, &json!({"active": false})))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /userinfo` (OpenID Connect Core section 5.3): the person behind a
/// live access token of this server, for a client to name the account
/// (the gateway's "account linked" page).
pub(crate) async fn userinfo(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let live = token.and_then(|t| decode_access(&s, t, true)).filter(|c| {
        let store = s.store();
        match grant_of(c.jti.as_deref()) {
            Some(grant) => store.grant(grant, now()).is_some_and(|g| g.sub == c.sub),
            None => !store.revoked(&c.sub, c.iat),
        }
    });
    let Some(claims) = live else {
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": "send a live access token of this server as Authorization: Bearer"}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return response;
    };
    let body = match s.person(&claims.sub) {
        Some(e) => json!({"sub": e.id, "email": e.email, "name": e.name}),
        None => json!({"sub": claims.sub}),
    };
    json_response(StatusCode::OK, &body)
}

/// `POST /revoke` (RFC 7009): ends the grant behind an access or refresh
/// token of the calling client.
pub(crate) async fn revoke(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = parse_form(&body)?;
        let client = authenticate(&s, &headers, &form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::new("invalid_request", "`token` is required"))?;
        let t = now();
        let mut store = s.store();
        let grant_id = match decode_access(&s, token, false) {
            Some(claims) => grant_of(claims.jti.as_deref()).map(String::from),
            None => store.refresh_grant(&digest_of(token), t).map(|(id, _)| id),
        };
        if let Some(id) = grant_id
            && let Some(grant) = store.grant(&id, t)
        {
            if grant.client_id != client.id {
                return Err(OAuthError::new(
                    "unauthorized_client",
                    "this token was issued to another client",
                ));
            }
            store.revoke_grant(&id);
        }
        // Unknown and already revoked tokens: 200 too (RFC 7009 section 2.2).
        Ok(json_response(StatusCode::OK, &json!({})))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

//! The operator status page at `/admin`: server-rendered HTML, no script,
//! behind the admin secret (`CORTEX_ADMIN_SECRET`; without it the page is
//! not mounted, 404).
//!
//! Sign-in posts the secret once; the answer sets a session cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the canonical URI is
//! https) holding a random session id, never the secret. Every form that
//! changes something (approve, reject, reconsider, sign-out) carries the
//! session's CSRF token, and a POST whose `Origin` is not the gateway's own
//! is refused: without a session the answer is 401, with a wrong token or
//! origin 403, and nothing changes. Too many wrong secrets close sign-in
//! for a while (see [`session`]).
//!
//! Approve is the operator endpoint's approval
//! ([`IntegrityGuard::approve`]). Reject keeps the tool withheld and marks
//! its pending definition rejected in the store (shared by the replicas on
//! Redis): the page then offers "reconsider" instead of approve until the
//! backend changes the tool again (a new definition is a new review).
//! Nothing is dropped: the baseline is untouched, so a reject is undone by
//! "reconsider" (or, in memory, by a restart), and the JSON endpoint can
//! still approve.
//!
//! Every answer carries a strict Content-Security-Policy (no script, styles
//! from the gateway only, forms to the gateway only, no framing),
//! `nosniff`, `Referrer-Policy: same-origin` and `no-store`.

mod render;
mod session;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use super::admin::{AdminSecret, AfterApproval};
use crate::{
    audit::Refusals,
    catalog::{Federation, Health, integrity::IntegrityGuard},
    link::Accounts,
    store::rejections::Rejections,
};
use session::Sessions;

/// The page.
pub(crate) const PATH: &str = "/admin";
/// Everything under the page (audited).
pub(crate) const AUDITED: &str = "/admin/";
const STYLE_PATH: &str = "/admin/style.css";
const SIGN_IN_PATH: &str = "/admin/sign-in";
const SIGN_OUT_PATH: &str = "/admin/sign-out";
const APPROVE_PATH: &str = "/admin/approve";
const REJECT_PATH: &str = "/admin/reject";
const RECONSIDER_PATH: &str = "/admin/reconsider";
/// The session cookie's name.
const COOKIE: &str = "cortex_admin";
/// Limit on a form body.
const MAX_FORM_BYTES: usize = 4 * 1024;

/// What the page reads and acts on.
pub(crate) struct PageDeps {
    pub(crate) secret: AdminSecret,
    pub(crate) integrity: Arc<IntegrityGuard>,
    pub(crate) federation: Arc<Federation>,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) refusals: Arc<Refusals>,
    pub(crate) after_approval: AfterApproval,
    /// The configuration, secrets masked.
    pub(crate) config_toml: String,
    /// The canonical URI (its origin is the only one forms are taken from).
    pub(crate) canonical_uri: String,
    /// Public tool name -> digest of the rejected pending definition.
    pub(crate) rejections: Arc<Rejections>,
}

struct Page {
    deps: PageDeps,
    origin: String,
    secure: bool,
    sessions: Sessions,
}

/// The page's routes. Mount them only when a secret is configured.
pub(crate) fn router(deps: PageDeps) -> Router {
    let (origin, secure) = match url::Url::parse(&deps.canonical_uri) {
        Ok(u) => (u.origin().ascii_serialization(), u.scheme() == "https"),
        Err(_) => (String::new(), true),
    };
    let page = Arc::new(Page {
        deps,
        origin,
        secure,
        sessions: Sessions::default(),
    });
    Router::new()
        .route(PATH, get(show))
        .route(STYLE_PATH, get(style))
        .route(SIGN_IN_PATH, post(sign_in))
        .route(SIGN_OUT_PATH, post(sign_out))
        .route(APPROVE_PATH, post(approve))
        .route(REJECT_PATH, post(reject))
        .route(RECONSIDER_PATH, post(reconsider))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(page)
}

/// The headers every answer of the page carries.
fn secure_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: under it Chromium sends `Origin: null` with
        // the page's own forms, which the origin check must refuse.
        // `same-origin` sends no referrer to any other origin either.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn html(status: StatusCode, text: String) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(r.headers_mut());
    r
}

/// A plain page saying why a request was refused.
fn refused(status: StatusCode, why: &str) -> Response {
    crate::audit::note_outcome(
        "refused",
        Some(if status == StatusCode::UNAUTHORIZED {
            "unauthenticated"
        } else {
            "forbidden"
        }),
    );
    html(
        status,
        render::document(
            "Refused",
            &format!(
                "<h1>Refused</h1><p>{}</p><p><a href=\"{PATH}\">Back to the status page</a></p>",
                super::link::escape(why)
            ),
        ),
    )
}

/// A refused form: the status and why.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refused(self.0, self.1)
    }
}

/// See-other to the page (after a form), with `cookie` set if given.
fn back(cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(PATH));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    secure_headers(h);
    r
}

impl Page {
    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Back to the page, which shows `notice` once.
    fn done(&self, id: &str, notice: &str) -> Response {
        self.sessions.set_notice(id, notice);
        back(None)
    }

    /// Whether a form's `Origin` (when the browser sent one) is the
    /// gateway's own; `Sec-Fetch-Site`, when sent, must be same-origin.
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        let origin_ok = headers
            .get(header::ORIGIN)
            .is_none_or(|o| o.as_bytes() == self.origin.as_bytes());
        let site_ok = headers
            .get("sec-fetch-site")
            .is_none_or(|s| s == "same-origin" || s == "none");
        origin_ok && site_ok
    }

    /// The live session id of the request's cookie.
    fn session_id(&self, headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string())
            .filter(|id| self.sessions.csrf_of(id).is_some())
    }

    /// The checks of a state-changing form: the origin, a live session
    /// (401 without), its CSRF token (403 when wrong). The form's fields.
    fn checked_form(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(String, HashMap<String, String>), Refused> {
        if !self.same_origin(headers) {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                "this form must be sent from the gateway's own status page (its Origin did not match)",
            ));
        }
        let Some(id) = self.session_id(headers) else {
            return Err(Refused(
                StatusCode::UNAUTHORIZED,
                "sign in first: the session is missing or has expired",
            ));
        };
        let fields = form(body);
        let csrf = fields.get("csrf").map_or("", String::as_str);
        if !self.sessions.csrf_matches(&id, csrf) {
            return Err(Refused(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong: reload the status page and try again",
            ));
        }
        Ok((id, fields))
    }

    /// [`Self::checked_form`] of a form naming a tool: the session id and
    /// the tool.
    fn checked_tool_form(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(String, String), Refused> {
        let (id, fields) = self.checked_form(headers, body)?;
        match fields.get("tool") {
            Some(t) if !t.is_empty() => {
                crate::audit::note(|r| r.tool = Some(t.clone()));
                Ok((id, t.clone()))
            }
            _ => Err(Refused(
                StatusCode::BAD_REQUEST,
                "the form names no tool: use the buttons of the status page",
            )),
        }
    }

    /// The rejections still current: those whose quarantine closed or
    /// whose pending definition changed since are forgotten. With the
    /// store unreachable, none (the page says so where it acts on one).
    async fn current_rejections(
        &self,
        digests: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, String> {
        self.deps
            .rejections
            .current(digests)
            .await
            .map_err(|e| format!("{e}; try again in a few seconds"))
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body)
        .take(8)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn style() -> Response {
    let mut r = render::STYLE.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    secure_headers(r.headers_mut());
    r
}

async fn show(State(page): State<Arc<Page>>, headers: HeaderMap) -> Response {
    let Some(id) = page.session_id(&headers) else {
        return html(StatusCode::OK, render::sign_in(None));
    };
    let Some(csrf) = page.sessions.csrf_of(&id) else {
        return html(StatusCode::OK, render::sign_in(None));
    };
    let notice = page.sessions.take_notice(&id);
    let d = &page.deps;
    let catalog = d.federation.catalog();
    let sources = d.federation.sources();
    let mut rows = Vec::new();
    for (id, health) in &catalog.health {
        let seen = sources.iter().find(|s| &s.id == id);
        rows.push(render::SourceRow {
            id: id.clone(),
            kind: match seen {
                Some(s) if s.mcp => "MCP server",
                _ => "backend",
            },
            health: match health {
                Health::Up => Ok(()),
                Health::Down(why) => Err(why.clone()),
            },
            refreshed: seen.map(|s| s.at),
            latency: seen.map(|s| s.latency),
            tools: catalog.tools.iter().filter(|t| &t.backend == id).count(),
        });
    }
    let mode = d.integrity.mode();
    let integrity = if mode == crate::IntegrityMode::Off {
        "not checked"
    } else {
        "approved"
    };
    let tools = catalog
        .tools
        .iter()
        .map(|t| render::ToolRow {
            name: t.name.clone(),
            backend: t.backend.clone(),
            scope: t.scope.clone(),
            description: t
                .definition
                .get("description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .chars()
                .take(160)
                .collect(),
            integrity,
        })
        .collect();
    let digests = d.integrity.pending_digests();
    let rejected = page.current_rejections(&digests).await.unwrap_or_default();
    let quarantines = d
        .integrity
        .quarantines()
        .into_iter()
        .map(|q| {
            let r = rejected.contains_key(&q.tool);
            (q, r)
        })
        .collect();
    let linked = if d.accounts.servers().is_empty() {
        Ok(Vec::new())
    } else {
        d.accounts.linked_counts().await
    };
    let view = render::View {
        version: env!("CARGO_PKG_VERSION"),
        csrf,
        sources: rows,
        tools,
        integrity_mode: serde_json::to_value(mode)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        baseline_problem: d.integrity.corrupt(),
        approvals_blocked: d.integrity.approvals_blocked(),
        quarantines,
        linked,
        refusals: d.refusals.recent(),
        config_toml: d.config_toml.clone(),
        notice,
    };
    html(StatusCode::OK, render::status(&view))
}

async fn sign_in(State(page): State<Arc<Page>>, headers: HeaderMap, body: Bytes) -> Response {
    if !page.same_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "sign in from the gateway's own status page (the form's Origin did not match)",
        );
    }
    if let Err(wait) = page.sessions.sign_in_allowed() {
        crate::audit::note_outcome("refused", Some("rate_limited"));
        let mut r = html(
            StatusCode::TOO_MANY_REQUESTS,
            render::sign_in(Some(&format!(
                "too many wrong secrets: sign-in is closed for {} more seconds",
                wait.as_secs().max(1)
            ))),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let fields = form(&body);
    let presented = fields.get("secret").map_or("", String::as_str);
    if !page.deps.secret.matches(presented) {
        page.sessions.failed();
        crate::audit::note_outcome("refused", Some("unauthenticated"));
        return html(
            StatusCode::UNAUTHORIZED,
            render::sign_in(Some(
                "that is not the admin secret (CORTEX_ADMIN_SECRET); user tokens are not accepted here",
            )),
        );
    }
    match page.sessions.open() {
        Some(id) => back(Some(page.cookie(&id, session::TTL.as_secs()))),
        None => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness available for a session; try again",
        ),
    }
}

async fn sign_out(State(page): State<Arc<Page>>, headers: HeaderMap, body: Bytes) -> Response {
    match page.checked_form(&headers, &body) {
        Ok((id, _)) => {
            page.sessions.close(&id);
            back(Some(page.cookie("", 0)))
        }
        Err(r) => r.into_response(),
    }
}

async fn approve(State(page): State<Arc<Page>>, headers: HeaderMap, body: Bytes) -> Response {
    let (id, tool) = match page.checked_tool_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let digests = page.deps.integrity.pending_digests();
    match page.current_rejections(&digests).await {
        Ok(r) if r.contains_key(&tool) => {
            return page.done(&id, &format!("`{tool}` was rejected: reconsider it first"));
        }
        Ok(_) => {}
        Err(e) => return page.done(&id, &e),
    }
    match page.deps.integrity.approve(&tool) {
        Ok(_) => {
            (page.deps.after_approval)().await;
            page.done(&id, &format!("approved `{tool}`: it is served again"))
        }
        Err(e) => page.done(&id, &e.to_string()),
    }
}

async fn reject(State(page): State<Arc<Page>>, headers: HeaderMap, body: Bytes) -> Response {
    let (id, tool) = match page.checked_tool_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    let digests = page.deps.integrity.pending_digests();
    let Some(digest) = digests.get(&tool) else {
        return page.done(&id, &format!("`{tool}` is not quarantined"));
    };
    if let Err(e) = page.current_rejections(&digests).await {
        return page.done(&id, &e);
    }
    match page.deps.rejections.reject(&tool, digest).await {
        Ok(true) => {}
        Ok(false) => {
            return page.done(
                &id,
                "too many rejections are open; approve or reconsider some",
            );
        }
        Err(e) => return page.done(&id, &format!("{e}; try again in a few seconds")),
    }
    page.done(
        &id,
        &format!("rejected `{tool}`: it stays withheld until the backend changes it again"),
    )
}

async fn reconsider(State(page): State<Arc<Page>>, headers: HeaderMap, body: Bytes) -> Response {
    let (id, tool) = match page.checked_tool_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    match page.deps.rejections.reconsider(&tool).await {
        Ok(()) => page.done(&id, &format!("`{tool}` awaits review again")),
        Err(e) => page.done(&id, &format!("{e}; try again in a few seconds")),
    }
}

//! Account linking end to end against an in-process provider: an MCP
//! server's RFC 9728 metadata plus an authorization server (RFC 8414,
//! dynamic registration, PKCE S256, refresh, RFC 7009 revocation), driven
//! through the gateway's `/link/…` pages like a browser would.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::Engine as _;
use cortex_gateway::testing::{AccountError, Accounts, LinkServer, LinkState, link_router};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the provider saw and how it behaves.
#[derive(Default)]
struct Seen {
    /// code → (code_challenge, redirect_uri, resource).
    codes: HashMap<String, (String, String, String)>,
    /// Live refresh tokens.
    refresh: HashSet<String>,
    revoked: Vec<String>,
    registrations: usize,
    /// Client ids the token endpoint authenticated.
    token_clients: Vec<String>,
    issued: usize,
    /// Refresh requests the token endpoint received.
    refreshes: usize,
    /// `expires_in` of issued access tokens.
    expires_in: u64,
    /// Advertise Client ID Metadata Document support.
    cimd: bool,
}

type Shared = Arc<Mutex<Seen>>;

#[derive(Clone)]
struct Provider {
    base: String,
    seen: Shared,
}

async fn resource_metadata(State(p): State<Provider>) -> Json<Value> {
    Json(json!({
        "resource": format!("{}/mcp", p.base),
        "authorization_servers": [p.base],
        "scopes_supported": ["tickets:read", "offline_access"],
    }))
}

async fn challenge(State(p): State<Provider>) -> Response {
    let value = format!(
        r#"Bearer error="invalid_token", resource_metadata="{}/metadata-of-other""#,
        p.base
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, value)],
    )
        .into_response()
}

async fn other_metadata(State(p): State<Provider>) -> Json<Value> {
    Json(json!({
        "resource": format!("{}/other", p.base),
        "authorization_servers": [p.base],
    }))
}

async fn as_metadata(State(p): State<Provider>) -> Json<Value> {
    let b = &p.base;
    let cimd = p.seen.lock().unwrap().cimd;
    Json(json!({
        "client_id_metadata_document_supported": cimd,
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "registration_endpoint": format!("{b}/register"),
        "revocation_endpoint": format!("{b}/revoke"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn register(State(p): State<Provider>, Json(body): Json<Value>) -> Json<Value> {
    p.seen.lock().unwrap().registrations += 1;
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    Json(json!({
        "client_id": "dcr-client",
        "client_secret": "dcr-secret",
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": body["redirect_uris"],
    }))
}

/// Consents at once: back to `redirect_uri` with a code.
async fn authorize(
    State(p): State<Provider>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(
        ["dcr-client", "pre-client"].contains(&q["client_id"].as_str()),
        "{}",
        q["client_id"]
    );
    if q["client_id"] == "dcr-client" {
        assert_eq!(
            q.get("scope").map(String::as_str),
            Some("tickets:read offline_access"),
            "the server's scopes_supported when none is configured"
        );
    }
    let mut seen = p.seen.lock().unwrap();
    let code = format!("code-{}", seen.codes.len());
    seen.codes.insert(
        code.clone(),
        (
            q["code_challenge"].clone(),
            q["redirect_uri"].clone(),
            q["resource"].clone(),
        ),
    );
    let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    Redirect::to(back.as_str()).into_response()
}

fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn basic_client(headers: &HeaderMap) -> String {
    let value = headers[header::AUTHORIZATION].to_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ").unwrap())
        .unwrap();
    let text = String::from_utf8(decoded).unwrap();
    let (id, secret) = text.split_once(':').unwrap();
    assert!(
        [("dcr-client", "dcr-secret"), ("pre-client", "pre%2Fsecret")].contains(&(id, secret)),
        "{text}"
    );
    id.into()
}

fn issue(seen: &mut Seen) -> Value {
    seen.issued += 1;
    let n = seen.issued;
    let refresh = format!("rt-secret-{n}");
    seen.refresh.insert(refresh.clone());
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"sub":"t-1","email":"ana@tracker.example"}"#);
    json!({
        "access_token": format!("at-secret-{n}"),
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": seen.expires_in,
        "id_token": format!("e30.{claims}.sig"),
    })
}

async fn token(State(p): State<Provider>, headers: HeaderMap, body: String) -> Response {
    let form = form(&body);
    let client = basic_client(&headers);
    let mut seen = p.seen.lock().unwrap();
    seen.token_clients.push(client);
    assert!(
        [format!("{}/mcp", p.base), format!("{}/other", p.base)].contains(&form["resource"]),
        "{}",
        form["resource"]
    );
    let refused = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    match form["grant_type"].as_str() {
        "authorization_code" => {
            let Some((challenge, redirect, _)) = seen.codes.remove(&form["code"]) else {
                return refused();
            };
            let expected =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA256,
                    form["code_verifier"].as_bytes(),
                ));
            if expected != challenge || redirect != form["redirect_uri"] {
                return refused();
            }
            Json(issue(&mut seen)).into_response()
        }
        "refresh_token" => {
            seen.refreshes += 1;
            if !seen.refresh.remove(&form["refresh_token"]) {
                return refused();
            }
            Json(issue(&mut seen)).into_response()
        }
        _ => refused(),
    }
}

async fn revoke(State(p): State<Provider>, headers: HeaderMap, body: String) -> StatusCode {
    let form = form(&body);
    basic_client(&headers);
    let mut seen = p.seen.lock().unwrap();
    seen.refresh.remove(&form["token"]);
    seen.revoked.push(form["token"].clone());
    StatusCode::OK
}

async fn serve(router: Router, listener: TcpListener) {
    tokio::spawn(async move { axum::serve(listener, router).await });
}

/// The provider on loopback; its base URL and what it saw.
async fn provider(expires_in: u64) -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Shared = Arc::new(Mutex::new(Seen {
        expires_in,
        ..Seen::default()
    }));
    let state = Provider {
        base: base.clone(),
        seen: seen.clone(),
    };
    let router = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/register", post(register))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        // A server whose metadata is only named by its 401.
        .route("/other", post(challenge))
        .route("/metadata-of-other", get(other_metadata))
        .with_state(state);
    serve(router, listener).await;
    (base, seen)
}

struct Linking {
    accounts: Arc<Accounts>,
    seen: Shared,
    http: reqwest::Client,
}

/// A gateway's link pages for the servers `tracker` and `design` (both
/// at the provider), tickets living `ttl`.
async fn linking(expires_in: u64, ttl: Duration) -> Linking {
    let (base, seen) = provider(expires_in).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut tracker = LinkServer::new("tracker", format!("{base}/mcp"));
    tracker.catalog_sub = Some("catalog-bot".into());
    let design = LinkServer::new("design", format!("{base}/mcp"));
    let accounts = Arc::new(Accounts::for_tests_with(vec![tracker, design], &origin, ttl).await);
    serve(link_router(accounts.clone()), listener).await;
    Linking {
        accounts,
        seen,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// The "Continue" form of a confirmation page: where it posts and the
/// ticket it carries.
fn continue_form(page: &str) -> (String, String) {
    let attribute = |name: &str| {
        let at = page
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {page}"))
            + name.len();
        page[at..].split('"').next().unwrap().to_string()
    };
    (
        attribute("<form method=\"post\" action=\""),
        attribute("name=\"ticket\" value=\""),
    )
}

/// Presses "Continue" on the confirmation page `page` that `start_url`
/// showed: the form's POST, sent from `origin` (the gateway's own when
/// `None`).
async fn press_continue(
    http: &reqwest::Client,
    start_url: &str,
    page: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let start = url::Url::parse(start_url).unwrap();
    let (action, ticket) = continue_form(page);
    let own = start.origin().ascii_serialization();
    http.post(start.join(&action).unwrap())
        .header(header::ORIGIN, origin.unwrap_or(&own))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("ticket={ticket}"))
        .send()
        .await
        .unwrap()
}

/// A browser's way through a start URL: the confirmation page, then
/// "Continue" (the consent redirect and the binding cookie); then the
/// provider's redirect back (the callback URL).
async fn consent(l: &Linking, start_url: &str) -> (String, String) {
    let page = page_at(l, start_url).await;
    let started = press_continue(&l.http, start_url, &page, None).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER, "{start_url}");
    to_callback(l, &started).await
}

/// The confirmation page a start URL shows.
async fn page_at(l: &Linking, start_url: &str) -> String {
    let shown = l.http.get(start_url).send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::OK, "{start_url}");
    shown.text().await.unwrap()
}

/// From the redirect "Continue" answered, through the provider's consent:
/// the callback URL and the binding cookie.
async fn to_callback(l: &Linking, started: &reqwest::Response) -> (String, String) {
    let cookie = started.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let to_provider = started.headers()[header::LOCATION].to_str().unwrap();
    let back = l.http.get(to_provider).send().await.unwrap();
    assert!(back.status().is_redirection(), "{}", back.status());
    let callback = back.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    (callback, cookie)
}

/// A forwarded link URL: the person who opens it sees whose Cortex
/// account it links to, and nothing happens before "Continue" on the
/// gateway's own page.
#[tokio::test]
async fn the_start_page_names_the_cortex_user_and_waits_for_continue() {
    let l = linking(3600, Duration::from_secs(600)).await;
    let mut mallory = cortex_backend::Caller::for_tests("u-17", &[]);
    mallory.email = Some("mallory@corp.example".into());
    let url = l.accounts.link_url(&mallory, "tracker").await;
    for _ in 0..2 {
        let shown = l.http.get(&url).send().await.unwrap();
        assert_eq!(shown.status(), StatusCode::OK);
        let headers = shown.headers().clone();
        assert!(headers.get(header::LOCATION).is_none());
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let page = shown.text().await.unwrap();
        assert!(
            page.contains("to the Cortex user <b>mallory@corp.example</b>"),
            "{page}"
        );
        assert!(
            page.contains("If you did not ask for this link in your own AI agent"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
        assert_eq!(continue_form(&page).0, "/link/tracker/start");
    }
    assert_eq!(
        l.seen.lock().unwrap().registrations,
        0,
        "the provider is not involved before Continue"
    );

    // Without an email claim the page names the `sub`; a label is escaped.
    let url_of_sub = l.accounts.link_url("u-18", "tracker").await;
    let page = page_at(&l, &url_of_sub).await;
    assert!(page.contains("Cortex user <b>u-18</b>"), "{page}");
    let mut odd = cortex_backend::Caller::for_tests("u-19", &[]);
    odd.email = Some("<i>bob</i>".into());
    let page = page_at(&l, &l.accounts.link_url(&odd, "tracker").await).await;
    assert!(page.contains("<b>&lt;i&gt;bob&lt;/i&gt;</b>"), "{page}");

    // Another server's ticket shows no page, by GET or by POST.
    let elsewhere = url.replace("/link/tracker/", "/link/design/");
    let (status, _) = visit(&l, &elsewhere, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let page = page_at(&l, &url).await;
    let refused = press_continue(
        &l.http,
        &elsewhere,
        &page.replace("/link/tracker/", "/link/design/"),
        None,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // A form posted from another origin is refused, and says what to do.
    let refused = press_continue(&l.http, &url, &page, Some("https://evil.example")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get(header::LOCATION).is_none());
    let text = refused.text().await.unwrap();
    assert!(text.contains("press Continue on that page"), "{text}");

    // An oversized form is refused before it is read.
    let too_big = l
        .http
        .post(url.split('?').next().unwrap())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("ticket={}", "a".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // "Continue" from the page itself goes to the provider, bound to
    // this browser, under the ticket's caller.
    let started = press_continue(&l.http, &url, &page, None).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert!(
        started.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("cortex_link_tracker=")
    );
    let (callback, cookie) = to_callback(&l, &started).await;
    let (status, page) = visit(&l, &callback, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(l.accounts.access_token("u-17", "tracker").await.is_ok());
}

async fn visit(l: &Linking, url: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let mut request = l.http.get(url);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
    (status, response.text().await.unwrap())
}

/// Links `sub` at `server` through the pages; the linked page's text.
async fn link(l: &Linking, sub: &str, server: &str) -> String {
    let url = l.accounts.link_url(sub, server).await;
    let (callback, cookie) = consent(l, &url).await;
    let (status, page) = visit(l, &callback, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

#[tokio::test]
async fn a_link_stores_the_grant_sealed_and_shows_the_account() {
    let l = linking(3600, Duration::from_secs(600)).await;
    let mut linked = l.accounts.subscribe_linked();
    assert!(matches!(
        l.accounts.access_token("ana", "tracker").await,
        Err(AccountError::NotLinked { .. })
    ));
    let page = link(&l, "ana", "tracker").await;
    assert!(page.contains("ana@tracker.example"), "{page}");
    assert!(!page.contains("secret"), "{page}");
    let token = l.accounts.access_token("ana", "tracker").await.unwrap();
    assert_eq!(token.expose(), "at-secret-1");
    {
        let seen = l.seen.lock().unwrap();
        assert_eq!(seen.registrations, 1, "registered once");
        assert_eq!(seen.token_clients, ["dcr-client"]);
    }
    let files = l.accounts.vault_files_for_tests();
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("at-secret") && !text.contains("rt-secret"),
            "{file:?}"
        );
    }
    assert!(linked.try_recv().is_err(), "ana is not the catalog account");
    link(&l, "catalog-bot", "tracker").await;
    assert_eq!(linked.try_recv().unwrap(), "tracker");
    let status = l.accounts.status("ana").await;
    assert_eq!(status.len(), 2);
    assert_eq!(
        status[0].link,
        LinkState::Linked {
            account: "ana@tracker.example".into()
        }
    );
    assert!(
        matches!(&status[1].link, LinkState::Unlinked { link_url } if link_url.contains("/link/design/start?ticket=")),
        "{status:?}"
    );
    assert_eq!(
        l.seen.lock().unwrap().registrations,
        1,
        "the registration is reused"
    );
}

#[tokio::test]
async fn tampered_replayed_unbound_and_misdirected_callbacks_are_refused() {
    let l = linking(3600, Duration::from_secs(600)).await;
    let url = l.accounts.link_url("ana", "tracker").await;
    let (callback, cookie) = consent(&l, &url).await;

    // Tampered state.
    let mut tampered = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                let mut v = v.into_owned();
                let last = v.pop().unwrap();
                v.push(if last == 'A' { 'B' } else { 'A' });
                v
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, page) = visit(&l, tampered.as_str(), Some(&cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("start the link again"), "{page}");

    // Another browser (no binding cookie, or another one): login CSRF.
    let (status, _) = visit(&l, &callback, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = visit(&l, &callback, Some("cortex_link_tracker=someone-else")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The state of `tracker` at the callback of `design`.
    let other = callback.replace("/link/tracker/callback", "/link/design/callback");
    let (status, _) = visit(
        &l,
        &other,
        Some(&cookie.replace("cortex_link_tracker", "cortex_link_design")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // None of that used the ticket: the real callback links, once.
    let (status, page) = visit(&l, &callback, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, page) = visit(&l, &callback, Some(&cookie)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "replayed: {page}");
    assert!(page.contains("already used"), "{page}");

    // A ticket of `tracker` does not start `design`; an unknown server is 404.
    let url = l.accounts.link_url("ana", "tracker").await;
    let (status, _) = visit(&l, &url.replace("/link/tracker/", "/link/design/"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = visit(&l, &url.replace("/link/tracker/", "/link/nope/"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = visit(&l, &format!("{url}x"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        l.accounts
            .access_token("ana", "tracker")
            .await
            .unwrap()
            .expose(),
        "at-secret-1"
    );
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let l = linking(3600, Duration::ZERO).await;
    let url = l.accounts.link_url("ana", "tracker").await;
    let (status, page) = visit(&l, &url, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("expired"), "{page}");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_silently() {
    // Tokens that expire at once: every use refreshes.
    let l = linking(0, Duration::from_secs(600)).await;
    link(&l, "ana", "tracker").await;
    let token = l.accounts.access_token("ana", "tracker").await.unwrap();
    assert_eq!(token.expose(), "at-secret-2", "refreshed");
    assert!(
        !l.seen.lock().unwrap().refresh.contains("rt-secret-1"),
        "rotated"
    );
    let token = l.accounts.access_token("ana", "tracker").await.unwrap();
    assert_eq!(token.expose(), "at-secret-3");
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_then_relinked_with_a_fresh_url() {
    let l = linking(3600, Duration::from_secs(600)).await;
    link(&l, "ana", "tracker").await;
    let first = l.accounts.access_token("ana", "tracker").await.unwrap();
    // The server answered 401: one refresh gives a new token.
    let second = l.accounts.rejected("ana", "tracker", &first).await.unwrap();
    assert_eq!(second.expose(), "at-secret-2");
    // A stale 401 (someone refreshed meanwhile) gets the current token.
    let again = l.accounts.rejected("ana", "tracker", &first).await.unwrap();
    assert_eq!(again, second);

    // The provider revokes everything: the next 401 asks to link again.
    l.seen.lock().unwrap().refresh.clear();
    let e = l
        .accounts
        .rejected("ana", "tracker", &second)
        .await
        .unwrap_err();
    let AccountError::Relink { link_url, .. } = &e else {
        panic!("expected a re-link, got {e:?}");
    };
    assert!(
        link_url.contains("/link/tracker/start?ticket="),
        "{link_url}"
    );
    assert!(e.to_string().contains(link_url.as_str()), "{e}");
    // And so does every call after it, with a fresh URL each time.
    let Err(AccountError::Relink { link_url: next, .. }) =
        l.accounts.access_token("ana", "tracker").await
    else {
        panic!("the grant must stay marked for re-linking");
    };
    assert_ne!(&next, link_url);
    assert!(matches!(
        &l.accounts.status("ana").await[0].link,
        LinkState::Unlinked { .. }
    ));
    // Linking again works.
    link(&l, "ana", "tracker").await;
    assert_eq!(
        l.accounts
            .access_token("ana", "tracker")
            .await
            .unwrap()
            .expose(),
        "at-secret-3"
    );
}

#[tokio::test]
async fn unlinking_deletes_the_grant_and_revokes_it_at_the_provider() {
    let l = linking(3600, Duration::from_secs(600)).await;
    link(&l, "ana", "tracker").await;
    assert!(l.accounts.unlink("ana", "tracker").await.unwrap());
    assert_eq!(l.seen.lock().unwrap().revoked, ["rt-secret-1"]);
    assert!(matches!(
        l.accounts.access_token("ana", "tracker").await,
        Err(AccountError::NotLinked { .. })
    ));
    assert!(!l.accounts.unlink("ana", "tracker").await.unwrap());
    assert_eq!(l.seen.lock().unwrap().revoked.len(), 1);
    let vault = l.accounts.vault_for_tests();
    assert!(vault.get("ana", "tracker").await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_refused_again_after_a_refresh_asks_to_link_again_without_refreshing() {
    let l = linking(3600, Duration::from_secs(600)).await;
    link(&l, "ana", "tracker").await;
    let first = l.accounts.access_token("ana", "tracker").await.unwrap();
    let second = l.accounts.rejected("ana", "tracker", &first).await.unwrap();
    assert_eq!(l.seen.lock().unwrap().refreshes, 1);
    // The server refuses the refreshed token too: re-link, and stay so.
    let e = l.accounts.refused("ana", "tracker", &second).await;
    assert!(matches!(e, AccountError::Relink { .. }), "{e:?}");
    assert!(e.to_string().contains("/link/tracker/start?ticket="), "{e}");
    for _ in 0..3 {
        let e = l.accounts.access_token("ana", "tracker").await.unwrap_err();
        assert!(matches!(e, AccountError::Relink { .. }), "{e:?}");
    }
    assert_eq!(l.seen.lock().unwrap().refreshes, 1, "no refresh after");

    // A refusal of a token that is no longer the grant's changes nothing.
    link(&l, "ana", "tracker").await;
    let current = l.accounts.access_token("ana", "tracker").await.unwrap();
    let e = l.accounts.refused("ana", "tracker", &second).await;
    assert!(matches!(e, AccountError::Relink { .. }), "{e:?}");
    assert_eq!(
        l.accounts.access_token("ana", "tracker").await.unwrap(),
        current
    );
}

/// The whole gateway, configured like an operator would: its router
/// serves the link pages for the configured MCP server, and the grant
/// lands in the configured vault.
#[tokio::test]
async fn the_gateway_serves_the_link_pages_from_its_configuration() {
    use cortex_gateway::{
        Gateway,
        config::{GatewayConfig, McpServerConfig, VaultConfig},
        testing::accounts_of,
    };
    use tower::ServiceExt as _;

    let (base, seen) = provider(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let path = dir.path().join("vault.db").display().to_string();
    let env: HashMap<&str, String> =
        [("CORTEX_VAULT_KEY", key), ("CORTEX_VAULT_PATH", path)].into();
    let mut config = GatewayConfig::new(
        "http://127.0.0.1:3213/mcp",
        "https://sso.example.com",
        "a-technical-token-of-32-characters",
    );
    config
        .mcp_servers
        .push(McpServerConfig::new("tracker", format!("{base}/mcp")));
    config.vault = VaultConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    let audit_file = dir.path().join("audit.log");
    config.controls.audit_file = Some(audit_file.clone());
    config.controls.admin_secret = Some(crate::controls::ADMIN.into());
    let gateway = Gateway::new(config).await.unwrap();
    let router = gateway.router();
    let get = |path_and_query: String, cookie: Option<String>| {
        let router = router.clone();
        async move {
            let mut request =
                axum::http::Request::get(path_and_query).header(header::HOST, "127.0.0.1:3213");
            if let Some(c) = cookie {
                request = request.header(header::COOKIE, c);
            }
            router
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let local = |url: &str| {
        url.strip_prefix("http://127.0.0.1:3213")
            .unwrap()
            .to_string()
    };

    let press_continue = |router: axum::Router, path_and_query: String| async move {
        let (path, ticket) = path_and_query.split_once("?ticket=").unwrap();
        router
            .oneshot(
                axum::http::Request::post(path)
                    .header(header::HOST, "127.0.0.1:3213")
                    .header(header::ORIGIN, "http://127.0.0.1:3213")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(axum::body::Body::from(format!("ticket={ticket}")))
                    .unwrap(),
            )
            .await
            .unwrap()
    };

    let accounts = accounts_of(&gateway);
    let start = local(&accounts.link_url("ana", "tracker").await);
    assert_eq!(get(start.clone(), None).await.status(), StatusCode::OK);
    let started = press_continue(router.clone(), start).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let cookie = started.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let to_provider = started.headers()[header::LOCATION].to_str().unwrap();
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(to_provider)
        .send()
        .await
        .unwrap();
    let callback = back.headers()[header::LOCATION].to_str().unwrap();
    let done = get(local(callback), Some(cookie)).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        accounts
            .access_token("ana", "tracker")
            .await
            .unwrap()
            .expose(),
        "at-secret-1"
    );
    assert_eq!(seen.lock().unwrap().registrations, 1);
    let bytes = std::fs::read(dir.path().join("vault.db")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("at-secret") && !text.contains("dcr-secret"));

    // Every page is audited under the ticket's sub, without the query.
    let lines = crate::controls::audit_lines(&audit_file, 3).await;
    let audited: Vec<(&str, u64, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["path"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
                l["sub"].as_str().unwrap_or(""),
                l["backend"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        audited,
        [
            ("/link/tracker/start", 200, "ana", "tracker"),
            ("/link/tracker/start", 303, "ana", "tracker"),
            ("/link/tracker/callback", 200, "ana", "tracker")
        ]
    );
    let raw = std::fs::read_to_string(&audit_file).unwrap();
    assert!(
        !raw.contains("ticket") && !raw.contains("code-") && !raw.contains("secret"),
        "{raw}"
    );

    // The status page counts the linked account, naming nobody.
    let signed_in = router
        .clone()
        .oneshot(
            axum::http::Request::post("/admin/sign-in")
                .header(header::HOST, "127.0.0.1:3213")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(axum::body::Body::from(format!(
                    "secret={}",
                    crate::controls::ADMIN
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let admin = signed_in.headers()[header::SET_COOKIE].to_str().unwrap();
    let admin = admin.split(';').next().unwrap().to_string();
    let status = get("/admin".into(), Some(admin)).await;
    let html = http_body_util::BodyExt::collect(status.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8_lossy(&html);
    let linked = &html[html.find("id=\"linked\"").expect("linked accounts")..];
    assert!(linked.contains("<td>tracker</td><td>1</td>"), "{html}");
    assert!(!html.contains("ana"), "no identities: {html}");

    // Another gateway on the same vault (a restart, a replica) reuses the
    // stored registration: linking there registers nothing new.
    let again = Gateway::new(gateway.config().clone()).await.unwrap();
    drop(gateway);
    let accounts = accounts_of(&again);
    let started = press_continue(
        again.router(),
        local(&accounts.link_url("bo", "tracker").await),
    )
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert!(
        started.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("client_id=dcr-client")
    );
    assert_eq!(
        seen.lock().unwrap().registrations,
        1,
        "registered once in all"
    );
}

#[tokio::test]
async fn an_https_gateway_uses_its_client_metadata_document_where_supported() {
    let (base, seen) = provider(3600).await;
    let servers = || vec![LinkServer::new("tracker", format!("{base}/mcp"))];
    seen.lock().unwrap().cimd = true;
    let https =
        Accounts::for_tests_with(servers(), "https://gw.example", Duration::from_secs(600)).await;
    let doc = https
        .client_metadata()
        .expect("published on an https origin");
    assert_eq!(
        doc["client_id"],
        "https://gw.example/link/client-metadata.json"
    );
    assert_eq!(
        doc["redirect_uris"],
        json!(["https://gw.example/link/tracker/callback"])
    );
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    let ticket_url = https.link_url("ana", "tracker").await;
    let ticket = ticket_url.split("ticket=").nth(1).unwrap();
    let started = https.start("tracker", ticket).await.unwrap();
    let location = url::Url::parse(&started.location).unwrap();
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(
        query["client_id"],
        "https://gw.example/link/client-metadata.json"
    );
    assert!(started.cookie.contains("; Secure"), "{}", started.cookie);
    assert_eq!(
        seen.lock().unwrap().registrations,
        0,
        "no registration needed"
    );

    // Over plain http the document cannot be fetched by the provider: DCR.
    let http =
        Accounts::for_tests_with(servers(), "http://127.0.0.1:3213", Duration::from_secs(600))
            .await;
    assert!(http.client_metadata().is_none());
    let ticket_url = http.link_url("ana", "tracker").await;
    let started = http
        .start("tracker", ticket_url.split("ticket=").nth(1).unwrap())
        .await
        .unwrap();
    assert!(started.location.contains("client_id=dcr-client"));
    assert!(!started.cookie.contains("Secure"));
    assert_eq!(seen.lock().unwrap().registrations, 1);
}

/// A pre-registered client at a server whose metadata only its 401 names
/// (`WWW-Authenticate: Bearer resource_metadata=…`).
#[tokio::test]
async fn a_pre_registered_client_links_a_server_found_through_its_challenge() {
    let (base, seen) = provider(3600).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut other = LinkServer::new("other", format!("{base}/other"));
    other.client_id = Some("pre-client".into());
    other.client_secret = Some(cortex_gateway::vault::Secret::new("pre/secret".into()));
    other.oauth_scope = Some("issues:read".into());
    let accounts =
        Arc::new(Accounts::for_tests_with(vec![other], &origin, Duration::from_secs(600)).await);
    serve(link_router(accounts.clone()), listener).await;
    let l = Linking {
        accounts,
        seen: seen.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let url = l.accounts.link_url("ana", "other").await;
    let page = page_at(&l, &url).await;
    let started = press_continue(&l.http, &url, &page, None).await;
    let location = started.headers()[header::LOCATION].to_str().unwrap();
    let query: HashMap<String, String> = url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["client_id"], "pre-client");
    assert_eq!(query["scope"], "issues:read", "the configured scope");
    assert_eq!(query["resource"], format!("{base}/other"));
    link(&l, "bo", "other").await;
    assert_eq!(
        l.accounts
            .access_token("bo", "other")
            .await
            .unwrap()
            .expose(),
        "at-secret-1"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.registrations, 0);
    assert_eq!(seen.token_clients, ["pre-client"]);
}

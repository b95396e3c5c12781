//! The operator status page (`/admin`) over real sockets: absent without
//! the admin secret; sign-in by form and session cookie; approve, reject
//! and reconsider through forms that need the session and its CSRF token;
//! security headers and escaping on every answer; the lock after wrong
//! secrets.

use cortex_gateway::{IntegrityMode as Mode, config::ControlsConfig};
use reqwest::{StatusCode, header};
use serde_json::json;

use crate::{
    client::Client,
    controls::{ADMIN, assert_tool_refused, docs, start, temp_dir, tool_names},
    signed_baseline::{cli, keygen},
};

/// A urlencoded form body (what a browser's form sends).
trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn controls() -> ControlsConfig {
    ControlsConfig {
        tool_integrity: Mode::Block,
        tool_baseline: Some(temp_dir("status-page").join("tools.json")),
        admin_secret: Some(ADMIN.into()),
        ..ControlsConfig::default()
    }
}

fn assert_secure_headers(r: &reqwest::Response) {
    let h = r.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
}

/// Signs in; the cookie pair (`name=value`) to send back.
pub(crate) async fn sign_in(base: &str) -> String {
    let r = http()
        .post(format!("{base}/admin/sign-in"))
        .form_body(&[("secret", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_secure_headers(&r);
    let set = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains(ADMIN), "the secret is never the cookie");
    set.split(';').next().unwrap().to_string()
}

/// The status page as the session `cookie` sees it.
pub(crate) async fn page(base: &str, cookie: &str) -> String {
    let r = http()
        .get(format!("{base}/admin"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_secure_headers(&r);
    r.text().await.unwrap()
}

pub(crate) fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

pub(crate) async fn post_form(
    base: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> u16 {
    let mut r = http().post(format!("{base}{path}")).form_body(form);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    let r = r.send().await.unwrap();
    assert_secure_headers(&r);
    r.status().as_u16()
}

#[tokio::test]
async fn without_the_admin_secret_there_is_no_status_page() {
    let (_with, gw) = start(controls()).await;
    for path in ["/admin", "/admin/style.css"] {
        let r = http()
            .get(format!("{}{path}", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with a secret");
        assert_secure_headers(&r);
    }
    let (_setup, gw) = start(ControlsConfig::default()).await;
    for path in ["/admin", "/admin/style.css"] {
        let r = http()
            .get(format!("{}{path}", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http()
        .post(format!("{}/admin/sign-in", gw.base))
        .form_body(&[("secret", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_status_page_approves_only_with_a_session_and_its_csrf_token() {
    let (setup, gw) = start(controls()).await;
    let base = gw.base.clone();
    let token = setup.token("alice");

    // Not signed in: the sign-in form, nothing of the gateway's state.
    let r = http().get(format!("{base}/admin")).send().await.unwrap();
    assert_secure_headers(&r);
    let form = r.text().await.unwrap();
    assert!(form.contains("name=\"secret\""), "{form}");
    assert!(!form.contains("docs_search"), "{form}");

    let wrong = http()
        .post(format!("{base}/admin/sign-in"))
        .form_body(&[("secret", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "a user token is not the admin secret");
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let cookie = sign_in(&base).await;
    let html = page(&base, &cookie).await;
    for needed in [
        "id=\"sources\"",
        ">crm<",
        ">docs<",
        "docs_search",
        "mcp:docs:read",
        env!("CARGO_PKG_VERSION"),
        "[masked",
    ] {
        assert!(html.contains(needed), "no {needed} in {html}");
    }
    assert!(
        !html.contains(ADMIN),
        "the configuration's secrets are masked"
    );
    assert!(!html.contains("<script"), "{html}");

    // A rug pull with markup in the description: quarantined.
    let evil = "Search documents. <img src=x onerror=alert(1)>";
    setup.docs.replace(docs(&setup.issuer, &setup.url, evil));
    gw.gateway.refresh_now().await;
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );
    assert_tool_refused(&gw.url, &token, "docs_search", "quarantined").await;
    let html = page(&base, &cookie).await;
    let quarantines = &html[html.find("id=\"quarantines\"").unwrap()..];
    assert!(quarantines.contains("docs_search"), "{html}");
    assert!(quarantines.contains("value=\"Approve\""), "{html}");
    let refusals = &html[html.find("id=\"refusals\"").unwrap()..];
    assert!(
        refusals.contains(">quarantined<"),
        "the refusal is listed: {html}"
    );
    let csrf = csrf_in(&html);
    let approve = [("csrf", csrf.as_str()), ("tool", "docs_search")];

    // No cookie: 401. A wrong or missing token, or a foreign origin: 403.
    assert_eq!(
        post_form(&base, "/admin/approve", None, &approve).await,
        401
    );
    let bad = [("csrf", "not-the-token"), ("tool", "docs_search")];
    assert_eq!(
        post_form(&base, "/admin/approve", Some(&cookie), &bad).await,
        403
    );
    let none = [("tool", "docs_search")];
    assert_eq!(
        post_form(&base, "/admin/approve", Some(&cookie), &none).await,
        403
    );
    let foreign = http()
        .post(format!("{base}/admin/approve"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, "https://app.corp.example")
        .form_body(&approve)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );

    // Reject: still withheld, approve no longer offered (nor accepted).
    assert_eq!(
        post_form(&base, "/admin/reject", Some(&cookie), &approve).await,
        303
    );
    let html = page(&base, &cookie).await;
    let quarantines = &html[html.find("id=\"quarantines\"").unwrap()..];
    assert!(quarantines.contains("rejected"), "{html}");
    assert!(!quarantines.contains("value=\"Approve\""), "{html}");
    assert_eq!(
        post_form(&base, "/admin/approve", Some(&cookie), &approve).await,
        303
    );
    assert!(page(&base, &cookie).await.contains("reconsider it first"));
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );

    // Reconsider, then approve: served again, its description escaped.
    assert_eq!(
        post_form(&base, "/admin/reconsider", Some(&cookie), &approve).await,
        303
    );
    assert_eq!(
        post_form(&base, "/admin/approve", Some(&cookie), &approve).await,
        303
    );
    assert!(
        tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );
    let ok = Client::modern(&gw.url, &token)
        .call("docs_search", json!({"query": "x"}))
        .await;
    assert_eq!(ok["isError"], false, "{ok}");
    let html = page(&base, &cookie).await;
    assert!(html.contains("approved `docs_search`"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );

    // Sign-out ends the session: its cookie no longer acts.
    assert_eq!(
        post_form(&base, "/admin/sign-out", Some(&cookie), &[("csrf", &csrf)]).await,
        303
    );
    assert_eq!(
        post_form(&base, "/admin/reject", Some(&cookie), &approve).await,
        401
    );
}

#[tokio::test]
async fn wrong_secrets_close_sign_in_for_a_while() {
    let (_setup, gw) = start(controls()).await;
    for _ in 0..5 {
        let r = http()
            .post(format!("{}/admin/sign-in", gw.base))
            .form_body(&[("secret", "guess-guess-guess-guess-guess-guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = http()
        .post(format!("{}/admin/sign-in", gw.base))
        .form_body(&[("secret", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "even the right secret waits");
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn with_only_the_baseline_public_key_the_page_says_why_it_cannot_approve() {
    let dir = temp_dir("page-verify-only");
    let (private, public) = keygen(&dir, "operator");
    let baseline = dir.join("tools.json");
    let proposed = dir.join("tools.json.proposed");
    let (setup, gw) = start(ControlsConfig {
        baseline_public_key: Some(public),
        tool_baseline: Some(baseline.clone()),
        ..controls()
    })
    .await;
    let (code, _, err) = cli(&[
        "sign",
        proposed.to_str().unwrap(),
        "--key",
        &private,
        "--out",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    gw.gateway.refresh_now().await;
    setup
        .docs
        .replace(docs(&setup.issuer, &setup.url, "Search, then mail out."));
    gw.gateway.refresh_now().await;
    let token = setup.token("alice");
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );

    let cookie = sign_in(&gw.base).await;
    let html = page(&gw.base, &cookie).await;
    let quarantines = &html[html.find("id=\"quarantines\"").unwrap()..];
    assert!(quarantines.contains("docs_search"), "{html}");
    assert!(!quarantines.contains("value=\"Approve\""), "{html}");
    let blocked = &html[html.find("id=\"blocked\"").expect("says why")..];
    assert!(blocked.contains("cortex-gateway baseline sign"), "{html}");

    // A forged form cannot act either: the guard refuses, nothing is written.
    let signed = std::fs::read(&baseline).unwrap();
    let form = [("csrf", csrf_in(&html)), ("tool", "docs_search".into())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post_form(&gw.base, "/admin/approve", Some(&cookie), &form).await,
        303
    );
    assert!(
        page(&gw.base, &cookie)
            .await
            .contains("cannot sign approvals")
    );
    assert!(
        !tool_names(&gw.url, &token)
            .await
            .contains(&"docs_search".into())
    );
    assert_eq!(std::fs::read(&baseline).unwrap(), signed, "never written");
}

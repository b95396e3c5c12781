//! Meridian's dev authorization server over HTTP: the sign-in and consent
//! pages, the code flow with PKCE for a registered (RFC 7591) client and
//! for a client ID metadata document, refresh rotation, client
//! credentials, introspection, revocation, and every bad input the issue
//! lists. The full-stack tests also go through the gateway.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aws_lc_rs::digest::{SHA256, digest};
use axum::{Router, http::header, response::IntoResponse, routing::get};
use base64::Engine as _;
use meridian::{
    Options, Running,
    firm::{self, Persona},
    issuer::{AuthServer, Settings},
};
use serde_json::{Value, json};

use crate::support::{mcp, names, start};

const RESOURCE: &str = "http://127.0.0.1:9/mcp";
const REDIRECT: &str = "http://127.0.0.1/callback";

/// `application/x-www-form-urlencoded` bodies (reqwest's `form` feature is off).
trait WithForm {
    fn with_form(self, pairs: &[(&str, &str)]) -> Self;
}

impl WithForm for reqwest::RequestBuilder {
    fn with_form(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// GETs `url` and reads its JSON body.
async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    let response = http().get(url).send().await.expect("GET");
    response.json().await.expect("a JSON body")
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}-verifier-of-the-meridian-tests-0123456789",
        rand_suffix()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest(&SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

fn rand_suffix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("n{}", N.fetch_add(1, Ordering::SeqCst))
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of the hidden `request` field of a page.
fn request_id(page: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no request field in {page}"))
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .expect("a value")
        .to_string()
}

/// The parameters of an authorization-code request with PKCE (S256), then
/// `more`.
fn code_request<'a>(
    client_id: &'a str,
    redirect_uri: &'a str,
    challenge: &'a str,
    more: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(more);
    params
}

/// A client's view of one authorization server.
pub(crate) struct Flow {
    issuer: String,
    http: reqwest::Client,
}

/// What `/authorize` sent back: a page (status, body) or a redirect.
enum Answer {
    Page(u16, String),
    Redirect(String),
}

impl Flow {
    pub(crate) fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            http: http(),
        }
    }

    async fn register(&self, metadata: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/register", self.issuer))
            .json(&metadata)
            .send()
            .await
            .expect("register");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn public_client(&self, name: &str) -> String {
        let (status, body) = self
            .register(json!({
                "client_name": name, "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }))
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(body.get("client_secret").is_none(), "{body}");
        body["client_id"].as_str().expect("client_id").to_string()
    }

    async fn authorize(&self, params: &[(&str, &str)]) -> Answer {
        let r = self
            .http
            .get(
                url::Url::parse_with_params(&format!("{}/authorize", self.issuer), params).unwrap(),
            )
            .send()
            .await
            .expect("authorize");
        let status = r.status().as_u16();
        match r.headers().get(header::LOCATION) {
            Some(l) => Answer::Redirect(l.to_str().unwrap().to_string()),
            None => Answer::Page(status, r.text().await.unwrap()),
        }
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.issuer))
            .with_form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Picks `person` on the sign-in `page`: the consent page.
    async fn choose_person(&self, page: &str, person: &str) -> String {
        let consent = self
            .post_form(
                "/authorize/person",
                &[("request", &request_id(page)), ("person", person)],
            )
            .await;
        assert_eq!(consent.status(), 200);
        consent.text().await.unwrap()
    }

    /// Allows on the `consent` page.
    async fn allow(&self, consent: &str) -> reqwest::Response {
        self.post_form(
            "/authorize/consent",
            &[("request", &request_id(consent)), ("decision", "allow")],
        )
        .await
    }

    /// Signs in as `person` and allows: the redirect back to the client.
    pub(crate) async fn sign_in(&self, page: &str, person: &str) -> String {
        let consent = self.choose_person(page, person).await;
        let back = self.allow(&consent).await;
        assert_eq!(back.status(), 303);
        back.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The whole code flow up to the code: (code, verifier).
    pub(crate) async fn code(
        &self,
        client_id: &str,
        resource: &str,
        person: &str,
    ) -> (String, String) {
        let (verifier, challenge) = pkce();
        let answer = self
            .authorize(&code_request(
                client_id,
                REDIRECT,
                &challenge,
                &[("state", "st-1"), ("resource", resource)],
            ))
            .await;
        let Answer::Page(200, page) = answer else {
            panic!("no sign-in page");
        };
        let back = self.sign_in(&page, person).await;
        let q = query(&back);
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["iss"], self.issuer);
        (q["code"].clone(), verifier)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.post_form("/token", form).await;
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub(crate) async fn exchange(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, client_id: &str, refresh: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh),
        ])
        .await
    }

    /// A refresh that asks for `scope`.
    async fn refresh_for(&self, client_id: &str, refresh: &str, scope: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh),
            ("scope", scope),
        ])
        .await
    }

    async fn introspect(&self, auth: &AuthServer, token: &str) -> Value {
        let creds = auth
            .register_confidential("test-introspection", "")
            .unwrap();
        self.http
            .post(format!("{}/introspect", self.issuer))
            .basic_auth(&creds.client_id, Some(&creds.client_secret))
            .with_form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Asserts an OAuth error answer (RFC 6749 section 5.2): its status and
/// `error` code. Returns its `error_description`.
#[track_caller]
fn refused((status, body): (u16, Value), expected_status: u16, error: &str) -> String {
    assert_eq!(
        (status, &body["error"]),
        (expected_status, &json!(error)),
        "{body}"
    );
    body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A dev authorization server for [`RESOURCE`] and a client of it.
async fn server(settings: Settings) -> (AuthServer, Flow) {
    let auth = AuthServer::start(RESOURCE, settings)
        .await
        .expect("authorization server");
    let flow = Flow::new(auth.issuer());
    (auth, flow)
}

#[tokio::test]
async fn metadata_follows_rfc_8414_and_the_gateway_points_to_it() {
    let running = start().await;
    let issuer = running.auth_server().issuer().to_string();
    let meta = get_json(format!("{issuer}/.well-known/oauth-authorization-server")).await;
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    for endpoint in [
        "authorization",
        "token",
        "registration",
        "revocation",
        "introspection",
    ] {
        let url = meta[format!("{endpoint}_endpoint")]
            .as_str()
            .unwrap_or_default();
        assert!(url.starts_with(&issuer), "{endpoint}: {meta}");
    }
    assert!(
        meta["dev_only"]
            .as_str()
            .unwrap()
            .contains("development only")
    );
    let jwks = get_json(meta["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(jwks["keys"][0]["kty"], "RSA", "{jwks}");
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] != "oct")
    );

    let prm = get_json(
        running
            .url
            .replace("/mcp", "/.well-known/oauth-protected-resource/mcp"),
    )
    .await;
    assert_eq!(prm["authorization_servers"], json!([issuer]), "{prm}");
    assert_eq!(prm["resource"], running.url, "{prm}");
    running.shutdown().await;
}

#[tokio::test]
async fn a_registered_client_signs_in_and_lists_the_personas_tools() {
    let running = start().await;
    let flow = Flow::new(running.auth_server().issuer());
    let client = flow.public_client("Test Agent <b>").await;
    let (verifier, challenge) = pkce();
    let Answer::Page(200, page) = flow
        .authorize(&code_request(
            &client,
            "http://127.0.0.1:53177/callback",
            &challenge,
            &[
                ("state", "xyz&<"),
                ("scope", "mcp:crm:read mcp:billing:write"),
                ("resource", &running.url),
            ],
        ))
        .await
    else {
        panic!("no sign-in page");
    };
    // The four personas first, then the 140 people; the client's name escaped.
    let buttons: Vec<&str> = page
        .match_indices("id=\"person-")
        .map(|(i, _)| &page[i + 11..i + 16])
        .collect();
    assert_eq!(buttons.len(), 144, "{page}");
    let personas: Vec<&str> = Persona::ALL.iter().map(|p| p.employee_id()).collect();
    assert_eq!(buttons[..4], personas[..]);
    assert!(page.contains("Test Agent &lt;b&gt;") && !page.contains("Test Agent <b>"));
    assert!(page.contains("development only"));

    let consent = flow.choose_person(&page, firm::SALES_REP).await;
    assert!(consent.contains("Allow <span id=\"client-name\">Test Agent &lt;b&gt;</span>?"));
    assert!(consent.contains("Lena Fischer") && consent.contains("<code>mcp:crm:write</code>"));
    assert!(
        !consent.contains("mcp:billing:write"),
        "scopes come from the role: {consent}"
    );
    let back = flow.allow(&consent).await;
    assert_eq!(back.status(), 303);
    let location = back.headers()[header::LOCATION].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:53177/callback?"),
        "{location}"
    );
    let q = query(location);
    assert_eq!(
        (q["state"].as_str(), q["iss"].as_str()),
        ("xyz&<", flow.issuer.as_str())
    );
    // The consent is single-use.
    let again = flow.allow(&consent).await;
    assert_eq!(again.status(), 400);

    let (status, tokens) = flow
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &q["code"]),
            ("redirect_uri", "http://127.0.0.1:53177/callback"),
            ("code_verifier", &verifier),
            ("resource", &running.url),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "mcp:crm:write mcp:tracker:write");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&header["typ"], &header["alg"]),
        (&json!("at+jwt"), &json!("RS256"))
    );
    let c = claims(access);
    assert_eq!(
        (
            &c["sub"],
            &c["email"],
            &c["name"],
            &c["role"],
            &c["team"],
            &c["aud"],
            &c["client_id"]
        ),
        (
            &json!("e-007"),
            &json!("lena.fischer@meridian.example"),
            &json!("Lena Fischer"),
            &json!("sales_rep"),
            &json!("sales-north"),
            &json!(running.url),
            &json!(client)
        )
    );
    let listed = mcp(&running.url, access, "tools/list", json!({}), None).await;
    let tools = names(&listed, "tools");
    assert!(tools.contains(&"crm_log_call".to_string()), "{tools:?}");
    assert!(
        !tools.iter().any(|t| t.starts_with("billing_")),
        "{tools:?}"
    );

    // Refresh rotates; the old refresh token then revokes the grant.
    let first_refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, rotated) = flow.refresh(&client, first_refresh).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    assert_eq!(
        flow.introspect(
            running.auth_server(),
            rotated["access_token"].as_str().unwrap()
        )
        .await["active"],
        true
    );
    // A broader scope is refused and the refresh token still works; a
    // subset of the grant is granted (and rotates again).
    let current = rotated["refresh_token"].as_str().unwrap();
    refused(
        flow.refresh_for(&client, current, "mcp:billing:read").await,
        400,
        "invalid_scope",
    );
    let (status, body) = flow.refresh_for(&client, current, "mcp:crm:write").await;
    assert_eq!(
        (status, &body["scope"]),
        (200, &json!("mcp:crm:write")),
        "{body}"
    );
    let new_access = body["access_token"].as_str().unwrap().to_string();
    let rotated = body;
    let description = refused(
        flow.refresh(&client, first_refresh).await,
        400,
        "invalid_grant",
    );
    assert!(description.contains("already used"), "{description}");
    assert_eq!(
        flow.introspect(running.auth_server(), &new_access).await["active"],
        false
    );
    let (status, _) = flow
        .refresh(&client, rotated["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 400, "the whole grant is gone");
    running.shutdown().await;
}

/// Serves client metadata documents on loopback http: `/good.json`,
/// `/large.json`, `/chunked.json` (large, no length), `/slow.json` (never answers), `/text.json`, `/other.json`
/// (names another URL). Counts fetches.
async fn document_host() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let doc = |path: &str| {
        json!({
            "client_id": format!("{base}{path}"), "client_name": "Document Agent",
            "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        })
    };
    let good = doc("/good.json");
    let mut large = doc("/large.json");
    large["padding"] = json!("x".repeat(10_000));
    let other = doc("/elsewhere.json");
    let counter = fetches.clone();
    let app = Router::new()
        .route(
            "/good.json",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { axum::Json(good) }
            }),
        )
        .route("/large.json", get(move || async move { axum::Json(large) }))
        .route(
            "/chunked.json",
            get(|| async {
                // No content-length: the limit applies while reading.
                let chunks = (0..12).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/slow.json",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route(
            "/text.json",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/html")], "<html>hi</html>").into_response()
            }),
        )
        .route("/other.json", get(move || async move { axum::Json(other) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fetches)
}

fn short_fetch() -> Settings {
    Settings {
        cimd_timeout: Duration::from_millis(700),
        ..Settings::default()
    }
}

#[tokio::test]
async fn a_metadata_document_client_signs_in_with_its_redirect_uris() {
    let (_auth, flow) = server(short_fetch()).await;
    let (base, fetches) = document_host().await;
    let client = format!("{base}/good.json");
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CFO).await;
    let (status, tokens) = flow.exchange(&client, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        claims(tokens["access_token"].as_str().unwrap())["role"],
        "cfo"
    );
    assert_eq!(
        tokens["scope"],
        "mcp:billing:write mcp:crm:read mcp:tracker:write"
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "cached after the first fetch"
    );

    // A redirect URI the document does not list: a page, no redirect.
    let (_, challenge) = pkce();
    let answer = flow
        .authorize(&code_request(
            &client,
            "https://attacker.example/callback",
            &challenge,
            &[],
        ))
        .await;
    let Answer::Page(400, page) = answer else {
        panic!("an unregistered redirect URI was followed");
    };
    assert!(
        page.contains("not one of its registered redirect URIs"),
        "{page}"
    );
}

#[tokio::test]
async fn bad_metadata_documents_are_refused() {
    let (_auth, flow) = server(short_fetch()).await;
    let (base, _) = document_host().await;
    let (_, challenge) = pkce();
    let cases = [
        (format!("{base}/large.json"), "larger than 5120 bytes"),
        (format!("{base}/chunked.json"), "larger than 5120 bytes"),
        (format!("{base}/slow.json"), "did not answer within"),
        (format!("{base}/text.json"), "is not a JSON object"),
        (format!("{base}/other.json"), "must be exactly its own URL"),
        (format!("{base}/missing.json"), "answered HTTP 404"),
        (
            "http://meridian-clients.example/client.json".to_string(),
            "plain http to a host that is not loopback",
        ),
        (format!("{base}/"), "must have a path"),
    ];
    for (client, expected) in cases {
        let answer = flow
            .authorize(&code_request(&client, REDIRECT, &challenge, &[]))
            .await;
        let Answer::Page(400, page) = answer else {
            panic!("{client}: not refused");
        };
        assert!(page.contains(expected), "{client}: {page}");
        // The token endpoint refuses the same client.
        let (status, body) = flow.refresh(&client, "x").await;
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("invalid_client")),
            "{client}: {body}"
        );
    }
}

#[tokio::test]
async fn bad_authorization_requests_are_refused() {
    let (_auth, flow) = server(Settings::default()).await;
    let client = flow.public_client("Agent").await;
    let (_, challenge) = pkce();
    let base = code_request(&client, REDIRECT, &challenge, &[("state", "s")]);
    let with = |changes: &[(&'static str, &'static str)]| {
        let mut params: Vec<(&str, &str)> = base
            .iter()
            .filter(|(k, _)| !changes.iter().any(|(c, _)| c == k))
            .copied()
            .collect();
        params.extend(changes.iter().filter(|(_, v)| !v.is_empty()).copied());
        params
    };
    // Errors sent back to the client, with state and iss.
    let redirected = [
        (
            with(&[("resource", "https://other.example/mcp")]),
            "invalid_target",
        ),
        (
            with(&[("code_challenge_method", "plain")]),
            "invalid_request",
        ),
        (
            with(&[("code_challenge", ""), ("code_challenge_method", "")]),
            "invalid_request",
        ),
        (
            with(&[("response_type", "token")]),
            "unsupported_response_type",
        ),
    ];
    for (params, error) in redirected {
        let Answer::Redirect(location) = flow.authorize(&params).await else {
            panic!("{params:?}: no redirect");
        };
        let q = query(&location);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str()),
            (error, "s"),
            "{params:?}"
        );
        assert_eq!(q["iss"], flow.issuer);
    }
    // Errors shown as a page: the redirect target is not trusted.
    let shown = [
        (
            with(&[("redirect_uri", "http://127.0.0.1/other")]),
            "not one of its registered",
        ),
        (
            with(&[("redirect_uri", "https://127.0.0.1/callback")]),
            "not one of its registered",
        ),
        (with(&[("client_id", "dcr-unknown")]), "unknown client_id"),
        (with(&[("redirect_uri", "")]), "no redirect_uri"),
    ];
    for (params, expected) in shown {
        let Answer::Page(400, page) = flow.authorize(&params).await else {
            panic!("{params:?}: redirected");
        };
        assert!(page.contains(expected), "{params:?}: {page}");
    }
    // A loopback redirect URI matches on any port (RFC 8252).
    let Answer::Page(200, _) = flow
        .authorize(&with(&[(
            "redirect_uri",
            "http://127.0.0.1:61000/callback",
        )]))
        .await
    else {
        panic!("a loopback port was refused");
    };
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let (auth, flow) = server(Settings::default()).await;
    let client = flow.public_client("Agent").await;

    // A wrong code_verifier; the code is spent afterwards.
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CEO).await;
    let wrong = format!("{verifier}x");
    let description = refused(
        flow.exchange(&client, &code, &wrong).await,
        400,
        "invalid_grant",
    );
    assert!(description.contains("code_verifier"), "{description}");
    let (status, _) = flow.exchange(&client, &code, &verifier).await;
    assert_eq!(status, 400);

    // A reused code: refused, and the tokens issued from it are revoked.
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CEO).await;
    let (status, tokens) = flow.exchange(&client, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(flow.introspect(&auth, access).await["active"], true);
    let description = refused(
        flow.exchange(&client, &code, &verifier).await,
        400,
        "invalid_grant",
    );
    assert!(description.contains("revoked"), "{description}");
    assert_eq!(flow.introspect(&auth, access).await["active"], false);
    let (status, _) = flow
        .refresh(&client, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 400);

    // Another resource at the token endpoint.
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CEO).await;
    refused(
        flow.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", "https://other.example/mcp"),
        ])
        .await,
        400,
        "invalid_target",
    );

    // Another client presenting the code; a redirect_uri that differs.
    let other = flow.public_client("Other").await;
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CEO).await;
    refused(
        flow.exchange(&other, &code, &verifier).await,
        400,
        "invalid_grant",
    );
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CEO).await;
    refused(
        flow.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1/elsewhere"),
            ("code_verifier", &verifier),
        ])
        .await,
        400,
        "invalid_grant",
    );

    // A parameter twice; an unknown grant type; a public client with a secret.
    refused(
        flow.token(&[
            ("grant_type", "refresh_token"),
            ("grant_type", "refresh_token"),
            ("client_id", &client),
        ])
        .await,
        400,
        "invalid_request",
    );
    refused(
        flow.token(&[("grant_type", "password"), ("client_id", &client)])
            .await,
        400,
        "unsupported_grant_type",
    );
    refused(
        flow.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("client_secret", "x"),
        ])
        .await,
        401,
        "invalid_client",
    );
}

#[tokio::test]
async fn expired_codes_are_refused() {
    let (_auth, flow) = server(Settings {
        code_ttl: Duration::ZERO,
        ..Settings::default()
    })
    .await;
    let client = flow.public_client("Agent").await;
    let (code, verifier) = flow.code(&client, RESOURCE, firm::CFO).await;
    let description = refused(
        flow.exchange(&client, &code, &verifier).await,
        400,
        "invalid_grant",
    );
    assert!(description.contains("expired"), "{description}");
}

#[tokio::test]
async fn registrations_with_bad_metadata_are_refused() {
    let (_auth, flow) = server(Settings::default()).await;
    let cases = [
        (
            json!({"client_name": "no redirect"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://ok.example/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": "https://ok.example/cb"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "scope": "mcp:crm:admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "client_name": "x".repeat(600)}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (metadata, error) in cases {
        let (status, body) = flow.register(metadata.clone()).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!(error)),
            "{metadata}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    let (status, body) = flow
        .register(json!({"redirect_uris": [REDIRECT], "padding": "x".repeat(9_000)}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn confidential_clients_get_tokens_by_client_credentials() {
    let (auth, flow) = server(Settings::default()).await;
    let (status, reg) = flow
        .register(json!({
            "client_name": "Nightly report", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic", "scope": "mcp:crm:read mcp:docs:read",
        }))
        .await;
    assert_eq!(status, 201, "{reg}");
    let (id, secret) = (
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
    );
    let r = flow
        .http
        .post(format!("{}/token", flow.issuer))
        .basic_auth(id, Some(secret))
        .with_form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mcp:crm:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        (&c["sub"], &c["scope"], &c["aud"]),
        (&json!(id), &json!("mcp:crm:read"), &json!(RESOURCE))
    );
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        flow.introspect(&auth, body["access_token"].as_str().unwrap())
            .await["active"],
        true
    );

    // More than registered; a wrong secret; a public client.
    refused(
        flow.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "mcp:billing:read"),
        ])
        .await,
        400,
        "invalid_scope",
    );
    refused(
        flow.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", "wrong"),
        ])
        .await,
        401,
        "invalid_client",
    );
    let public = flow.public_client("Public").await;
    refused(
        flow.token(&[("grant_type", "client_credentials"), ("client_id", &public)])
            .await,
        400,
        "unauthorized_client",
    );
    // Introspection is for confidential clients only.
    let r = flow
        .post_form("/introspect", &[("client_id", &public), ("token", "x")])
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn rfc_7009_revocation_ends_the_grant() {
    let (auth, flow) = server(Settings::default()).await;
    let client = flow.public_client("Agent").await;
    let (code, verifier) = flow.code(&client, RESOURCE, firm::PROJECT_MANAGER).await;
    let (_, tokens) = flow.exchange(&client, &code, &verifier).await;
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(
        flow.introspect(&auth, refresh).await["token_type"],
        "refresh_token"
    );
    // Another client may not revoke it.
    let other = flow.public_client("Other").await;
    let r = flow
        .post_form("/revoke", &[("client_id", &other), ("token", refresh)])
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(flow.introspect(&auth, access).await["active"], true);
    let r = flow
        .post_form("/revoke", &[("client_id", &client), ("token", refresh)])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(flow.introspect(&auth, access).await["active"], false);
    assert_eq!(flow.introspect(&auth, refresh).await["active"], false);
    let (status, _) = flow.refresh(&client, refresh).await;
    assert_eq!(status, 400);
    // Unknown tokens: 200 as well.
    let r = flow
        .post_form("/revoke", &[("client_id", &client), ("token", "nonsense")])
        .await;
    assert_eq!(r.status(), 200);
}

/// Calls `tools/list` through the gateway until it answers 401 (the
/// introspection cache expires within seconds); panics after 30 s.
pub(crate) async fn until_refused(running: &Running, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http()
            .post(&running.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", meridian::mcp::PROTOCOL_VERSION)
            .header("mcp-method", "tools/list")
            .body(meridian::mcp::request(1, "tools/list", json!({})).to_string())
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            return;
        }
        assert_eq!(status, 200, "neither served nor refused");
        assert!(
            Instant::now() < deadline,
            "still served 30 s after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn revoking_a_person_cuts_every_grant_and_pasted_token_at_the_gateway() {
    let running = meridian::start(Options {
        port: 0,
        token_ttl: Duration::from_secs(600),
    })
    .await
    .unwrap();
    let auth = running.auth_server();
    let flow = Flow::new(auth.issuer());
    let client = flow.public_client("Agent").await;
    let (code, verifier) = flow.code(&client, &running.url, firm::SALES_REP).await;
    let (_, tokens) = flow.exchange(&client, &code, &verifier).await;
    let signed_in = tokens["access_token"].as_str().unwrap();
    let pasted = running.tokens.sales_rep.clone();
    let cfo = running.tokens.cfo.clone();
    for token in [signed_in, pasted.as_str(), cfo.as_str()] {
        let listed = mcp(&running.url, token, "tools/list", json!({}), None).await;
        assert!(!names(&listed, "tools").is_empty());
    }
    // The grants page lists her; the revoke call needs the admin secret.
    let page = flow
        .http
        .get(auth.admin_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"revoke-e-007\""), "{page}");
    let r = flow
        .http
        .post(format!("{}/admin/revoke", auth.issuer()))
        .bearer_auth("wrong")
        .with_form(&[("person", "sales_rep")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = flow
        .http
        .post(format!("{}/admin/revoke", auth.issuer()))
        .bearer_auth(auth.admin_secret())
        .with_form(&[("person", "sales_rep")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["person"], &body["grants_revoked"]),
        (&json!("e-007"), &json!(1)),
        "{body}"
    );

    until_refused(&running, signed_in).await;
    until_refused(&running, &pasted).await;
    refused(
        flow.refresh(&client, tokens["refresh_token"].as_str().unwrap())
            .await,
        400,
        "invalid_grant",
    );
    // Someone else is untouched, and signing in again works.
    let listed = mcp(&running.url, &cfo, "tools/list", json!({}), None).await;
    assert!(!names(&listed, "tools").is_empty(), "{listed}");
    let (code, verifier) = flow.code(&client, &running.url, firm::SALES_REP).await;
    let (_, tokens) = flow.exchange(&client, &code, &verifier).await;
    let listed = mcp(
        &running.url,
        tokens["access_token"].as_str().unwrap(),
        "tools/list",
        json!({}),
        None,
    )
    .await;
    assert!(!names(&listed, "tools").is_empty(), "{listed}");
    running.shutdown().await;
}

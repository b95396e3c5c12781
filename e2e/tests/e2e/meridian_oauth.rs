//! Signing in to Meridian with no token given, by official clients: the
//! TypeScript SDK's OAuth client (`clients/ts_oauth_client.mjs`, its own
//! `authProvider` machinery) and the Python SDK's
//! (`clients/py_oauth_client.py`, its `OAuthClientProvider`), each once
//! with a Client ID Metadata Document and once with Dynamic Client
//! Registration, then the persona's tools and a call; one revocation
//! cutting a signed-in client off, refresh included; and a headless
//! Chromium through WebDriver on the sign-in and consent pages.
//!
//! The metadata document is served over https on loopback by a test
//! authority (`tests/fixtures/cimd-*.pem`, the SDKs accept only https
//! document URLs); Meridian's authorization server trusts that authority
//! for document fetches only (`Settings::cimd_roots`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use meridian::{Options, Running, firm::Persona, issuer::Settings};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::{
    meridian::check_tool_names,
    support::{e2e_dir, node, python, run},
};

pub(crate) const CA: &[u8] = include_bytes!("../fixtures/cimd-ca-cert.pem");
const HOST_CERT: &[u8] = include_bytes!("../fixtures/cimd-host-cert.pem");
const HOST_KEY: &[u8] = include_bytes!("../fixtures/cimd-host-key.pem");
const REDIRECT: &str = "http://127.0.0.1/callback";
/// The client's callback: any port matches a loopback redirect URI.
const CALLBACK: &str = "http://127.0.0.1:43117/callback";
pub(crate) const DOCUMENT_CLIENT_NAME: &str = "Cortex e2e client (metadata document)";

/// Meridian whose authorization server trusts the test authority for
/// metadata documents.
pub(crate) async fn start() -> Running {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    let ca = CertificateDer::from_pem_slice(CA).expect("the test CA");
    meridian::start_with(
        Options {
            port: 0,
            token_ttl: Duration::from_secs(900),
        },
        Settings {
            cimd_roots: vec![ca.to_vec()],
            ..Settings::default()
        },
    )
    .await
    .expect("Meridian starts")
}

/// An https server on loopback serving client metadata documents at
/// `/clients/<name>.json`; returns its base URL and a fetch counter.
pub(crate) async fn document_host() -> (String, Arc<AtomicUsize>) {
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(HOST_CERT).expect("host cert")],
        PrivateKeyDer::from_pem_slice(HOST_KEY).expect("host key"),
    )
    .expect("TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let base = format!("https://{}", listener.local_addr().expect("address"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (host, counter) = (base.clone(), fetches.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, host, counter) = (acceptor.clone(), host.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let path = request.uri().path().to_string();
                    let document = json!({
                        "client_id": format!("{host}{path}"),
                        "client_name": DOCUMENT_CLIENT_NAME,
                        "redirect_uris": [REDIRECT],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"],
                        "token_endpoint_auth_method": "none",
                    });
                    let found = path.starts_with("/clients/") && path.ends_with(".json");
                    async move {
                        let mut response = hyper::Response::new(http_body_util::Full::new(
                            axum::body::Bytes::from(if found {
                                document.to_string()
                            } else {
                                String::new()
                            }),
                        ));
                        *response.status_mut() = if found {
                            hyper::StatusCode::OK
                        } else {
                            hyper::StatusCode::NOT_FOUND
                        };
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (base, fetches)
}

/// Which official client signs in.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    /// `clients/ts_oauth_client.mjs`: `@modelcontextprotocol/sdk`'s `authProvider`.
    TypeScript,
    /// `clients/py_oauth_client.py`: `mcp`'s `OAuthClientProvider`.
    Python,
}

/// Runs `clients/ts_oauth_client.mjs` with `plan`; returns its output.
async fn ts_oauth(running: &Running, plan: Value) -> Value {
    oauth_client(Sdk::TypeScript, running, plan).await
}

/// Runs one SDK's OAuth client script with `plan`; returns its output.
async fn oauth_client(sdk: Sdk, running: &Running, plan: Value) -> Value {
    let mut command = match sdk {
        Sdk::TypeScript => {
            let mut c = Command::new(node());
            c.arg(e2e_dir().join("clients/ts_oauth_client.mjs"));
            c
        }
        Sdk::Python => {
            let mut c = Command::new(python());
            c.arg(e2e_dir().join("clients/py_oauth_client.py"));
            c
        }
    };
    command
        .arg(plan.to_string())
        .env("MCP_URL", &running.url)
        .env(
            "MERIDIAN_ADMIN_SECRET",
            running.auth_server().admin_secret(),
        )
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(120)).await;
    let what = format!("{sdk:?} OAuth client");
    finished.assert_success(&what);
    finished.json(&what)
}

/// What every signed-in client must show: the sign-in went through the
/// pages for the right person, the authorization request carried the
/// gateway as `resource` and S256, `state` and `iss` came back.
pub(crate) fn check_sign_in(who: &str, running: &Running, persona: Persona, sign_in: &Value) {
    assert_eq!(
        sign_in["sign_in_page"]["lists_person"], true,
        "{who}: {sign_in}"
    );
    let scopes: Vec<&str> = sign_in["consent_page"]["scopes"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no scopes on the consent page: {sign_in}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(scopes, persona.scopes(), "{who}: consent scopes");
    assert_eq!(sign_in["state_returned"], true, "{who}: {sign_in}");
    assert_eq!(
        sign_in["iss"],
        running.auth_server().issuer(),
        "{who}: {sign_in}"
    );
    assert_eq!(
        sign_in["authorize_params"]["resource"], running.url,
        "{who}: {sign_in}"
    );
    assert_eq!(
        sign_in["authorize_params"]["code_challenge_method"], "S256",
        "{who}: {sign_in}"
    );
}

fn ok_step<'a>(who: &str, output: &'a Value, index: usize) -> &'a Value {
    let step = &output["steps"][index];
    assert_eq!(step["ok"], true, "{who}: step {index}: {step}");
    &step["result"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_signs_in_with_a_client_metadata_document() {
    let running = start().await;
    let (host, fetches) = document_host().await;
    let document = format!("{host}/clients/typescript.json");
    let output = ts_oauth(
        &running,
        json!({
            "register": "cimd", "cimd_url": document, "redirect_uri": CALLBACK,
            "person": Persona::SalesRep.employee_id(),
            "steps": [
                {"op": "list_tools"},
                {"op": "call_tool", "name": "crm_get_deal", "arguments": {"deal_id": "D-1001"}},
            ],
        }),
    )
    .await;
    let who = "TypeScript SDK (metadata document)";
    assert_eq!(output["client_id"], document, "{who}: registered otherwise");
    assert!(
        fetches.load(Ordering::SeqCst) >= 1,
        "the document was never fetched"
    );
    check_sign_in(who, &running, Persona::SalesRep, &output["sign_in"]);
    assert_eq!(
        output["sign_in"]["consent_page"]["client_name"], DOCUMENT_CLIENT_NAME,
        "{who}: the consent page names the document's client"
    );
    check_tool_names(who, Persona::SalesRep, ok_step(who, &output, 0));
    let deal = ok_step(who, &output, 1);
    assert_eq!(deal["isError"], false, "{who}: {deal}");
    assert_eq!(
        deal["structuredContent"]["team"], "sales-north",
        "{who}: {deal}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_signs_in_after_dynamic_client_registration() {
    let running = start().await;
    let output = ts_oauth(
        &running,
        json!({
            "register": "dcr", "redirect_uri": CALLBACK, "person": Persona::Cfo.employee_id(),
            "steps": [
                {"op": "list_tools"},
                {"op": "call_tool", "name": "billing_list_invoices", "arguments": {"status": "overdue"}},
            ],
        }),
    )
    .await;
    let who = "TypeScript SDK (registration)";
    assert!(
        output["client_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("dcr-")),
        "{who}: {}",
        output["client_id"]
    );
    check_sign_in(who, &running, Persona::Cfo, &output["sign_in"]);
    assert_eq!(
        output["sign_in"]["consent_page"]["client_name"], "Cortex e2e (TypeScript SDK)",
        "{who}: the consent page names the registered client"
    );
    check_tool_names(who, Persona::Cfo, ok_step(who, &output, 0));
    let invoices = ok_step(who, &output, 1);
    assert_eq!(invoices["isError"], false, "{who}: {invoices}");
    assert!(
        invoices["structuredContent"]["invoices"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{who}: {invoices}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_v2_signs_in_in_the_2026_07_28_era() {
    let running = start().await;
    let (host, _) = document_host().await;
    let document = format!("{host}/clients/typescript-v2.json");
    let output = ts_oauth(
        &running,
        json!({
            "sdk": "v2", "era": "2026-07-28",
            "register": "cimd", "cimd_url": document, "redirect_uri": CALLBACK,
            "person": Persona::Ceo.employee_id(),
            "steps": [
                {"op": "list_tools"},
                {"op": "call_tool", "name": "staffing_list_hr_policies", "arguments": {}},
            ],
        }),
    )
    .await;
    let who = "TypeScript client v2 (2026-07-28, metadata document)";
    assert_eq!(output["protocolVersion"], "2026-07-28", "{who}");
    assert_eq!(output["client_id"], document, "{who}: registered otherwise");
    check_sign_in(who, &running, Persona::Ceo, &output["sign_in"]);
    check_tool_names(who, Persona::Ceo, ok_step(who, &output, 0));
    let policies = ok_step(who, &output, 1);
    assert_eq!(policies["isError"], false, "{who}: {policies}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_signs_in_with_a_client_metadata_document_and_by_registration() {
    let running = start().await;
    let (host, fetches) = document_host().await;
    let document = format!("{host}/clients/python.json");
    for (register, persona, era) in [
        ("cimd", Persona::Ceo, "2026-07-28"),
        ("dcr", Persona::ProjectManager, "legacy"),
    ] {
        let output = oauth_client(
            Sdk::Python,
            &running,
            json!({
                "register": register, "cimd_url": document, "redirect_uri": CALLBACK,
                "person": persona.employee_id(), "era": era,
                "steps": [
                    {"op": "list_tools"},
                    {"op": "call_tool", "name": "crm_list_deals", "arguments": {}},
                ],
            }),
        )
        .await;
        let who = format!("Python SDK ({register}, {era})");
        match register {
            "cimd" => {
                assert_eq!(output["client_id"], document, "{who}: registered otherwise");
                assert_eq!(
                    output["sign_in"]["consent_page"]["client_name"], DOCUMENT_CLIENT_NAME,
                    "{who}"
                );
            }
            _ => assert!(
                output["client_id"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("dcr-")),
                "{who}: {}",
                output["client_id"]
            ),
        }
        check_sign_in(&who, &running, persona, &output["sign_in"]);
        check_tool_names(&who, persona, ok_step(&who, &output, 0));
        let deals = ok_step(&who, &output, 1);
        assert_eq!(deals["isError"], false, "{who}: {deals}");
    }
    assert!(
        fetches.load(Ordering::SeqCst) >= 1,
        "the document was never fetched"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_revocation_cuts_a_signed_in_typescript_client() {
    let running = start().await;
    let person = Persona::ProjectManager.employee_id();
    let output = ts_oauth(
        &running,
        json!({
            "register": "dcr", "redirect_uri": CALLBACK, "person": person,
            "steps": [{"op": "list_tools"}],
            "revoke": {"url": format!("{}/admin/revoke", running.auth_server().issuer()), "person": person},
        }),
    )
    .await;
    let who = "TypeScript SDK, revoked";
    check_tool_names(who, Persona::ProjectManager, ok_step(who, &output, 0));
    // The next call through the gateway is refused with 401: the SDK then
    // tries its refresh token, which is refused too, so it gives up with
    // `UnauthorizedError` and needs the user to sign in again.
    let call = &output["after_revoke"]["call"];
    assert_eq!(
        call["ok"], false,
        "{who}: still served after revocation: {call}"
    );
    assert_eq!(call["error"]["name"], "UnauthorizedError", "{who}: {call}");
    let requests = output["token_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        requests
            .iter()
            .any(|r| r["grant_type"] == "authorization_code" && r["status"] == 200),
        "{who}: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r["grant_type"] == "refresh_token"
            && r["status"] == 400
            && r["error"] == "invalid_grant"),
        "{who}: the refresh was not refused: {requests:?}"
    );
    assert_eq!(
        output["after_revoke"]["reauth"], "REDIRECT",
        "{who}: {}",
        output["after_revoke"]
    );
    running.shutdown().await;
}

/// A WebDriver session (W3C protocol over HTTP) with Debian's
/// `chromedriver` driving a headless Chromium with a fresh profile.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    profile: std::path::PathBuf,
}

const DRIVER_HINT: &str = "install Debian's `chromium` and `chromium-driver` (.ci/run does: apt-get install chromium chromium-driver)";

impl Browser {
    pub(crate) async fn start() -> Self {
        for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing; {DRIVER_HINT}"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver: {e}; {DRIVER_HINT}"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        // Readiness: the driver's /status says ready.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .is_some_and(|s| s["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("cortex-e2e-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Element lookups wait (up to 10 s) for the element to appear, so
            // a lookup right after a click that submits a form waits for the
            // next page instead of racing it.
            "timeouts": {"implicit": 10000},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000", "--hide-scrollbars",
                    // Loopback only: any other host (e.g. a web font a
                    // page imports) does not resolve.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session JSON");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}; {DRIVER_HINT}"))
            .to_string();
        Self {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("WebDriver answers")
            .json()
            .await
            .expect("WebDriver JSON");
        assert!(
            answer["value"].get("error").is_none(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    pub(crate) async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn title(&self) -> String {
        self.command(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub(crate) async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element `css` finds.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Saves a PNG of the viewport as `dir/name`.
    pub(crate) async fn save_screenshot(&self, dir: &std::path::Path, name: &str) {
        use base64::Engine as _;
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("a PNG");
        std::fs::write(dir.join(name), png).unwrap_or_else(|e| panic!("saving {name}: {e}"));
    }

    pub(crate) async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    /// Ends the session even when a step panicked: killing chromedriver
    /// alone would leave Chromium running. A plain blocking HTTP `DELETE`
    /// (no runtime in `drop`); a session already ended answers an error,
    /// which is fine.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if let Some((host, path)) = self
            .session
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            && let Ok(mut stream) = std::net::TcpStream::connect(host)
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A client's loopback callback: hands over the first request's query.
async fn callback_server() -> (String, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!(
        "http://{}/callback",
        listener.local_addr().expect("address")
    );
    let (send, receive) = tokio::sync::oneshot::channel();
    let send = Arc::new(std::sync::Mutex::new(Some(send)));
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(
            move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                if let Some(send) = send.lock().expect("lock").take() {
                    let _ = send.send(query.unwrap_or_default());
                }
                async { axum::response::Html("<h1>Signed in; you can close this tab.</h1>") }
            },
        ),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, receive)
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Where the screenshots go: `CORTEX_SCREENSHOTS` or the target's temp dir.
pub(crate) fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("CORTEX_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
        });
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_signs_in_and_consents_then_revokes() {
    use base64::Engine as _;
    let running = start().await;
    let issuer = running.auth_server().issuer().to_string();
    let http = reqwest::Client::new();
    let (redirect_uri, code) = callback_server().await;
    let registered: Value = http
        .post(format!("{issuer}/register"))
        .json(&json!({
            "client_name": "Example agent", "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration JSON");
    let client_id = registered["client_id"].as_str().expect("client_id");
    let verifier = "browser-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let challenge = {
        use aws_lc_rs::digest::{SHA256, digest};
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(digest(&SHA256, verifier.as_bytes()).as_ref())
    };
    let authorize = format!(
        "{issuer}/authorize?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", &redirect_uri),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "browser-state"),
            ("resource", &running.url),
        ])
    );

    let browser = Browser::start().await;
    let shots = screenshot_dir();
    browser.go(&authorize).await;
    assert!(
        browser.title().await.starts_with("Sign in"),
        "{}",
        browser.title().await
    );
    assert_eq!(browser.text("#client-name").await, "Example agent");
    assert!(browser.text("#person-e-007").await.contains("Lena Fischer"));
    browser
        .save_screenshot(&shots, "meridian-sign-in.png")
        .await;

    browser.click("#person-e-007").await;
    assert!(
        browser.title().await.starts_with("Allow access"),
        "{}",
        browser.title().await
    );
    assert_eq!(browser.text("#person").await, "Lena Fischer");
    assert_eq!(
        browser.text("#scopes").await.lines().collect::<Vec<_>>(),
        [
            "mcp:crm:write: read and change records in the crm app",
            "mcp:tracker:write: read and change records in the tracker app"
        ]
    );
    browser
        .save_screenshot(&shots, "meridian-consent.png")
        .await;

    browser.click("#allow").await;
    let query = tokio::time::timeout(Duration::from_secs(30), code)
        .await
        .expect("the browser came back to the callback")
        .expect("a callback");
    println!("screenshots in {}", shots.display());

    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(params["state"], "browser-state");
    assert_eq!(params["iss"], issuer);
    let tokens: Value = http
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", &params["code"]),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ]))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    assert_eq!(
        tokens["scope"], "mcp:crm:write mcp:tracker:write",
        "{tokens}"
    );
    let token = tokens["access_token"].as_str().expect("a token");
    let listed: Value = list_tools(&http, &running.url, token)
        .await
        .json()
        .await
        .expect("tools/list JSON");
    check_tool_names("headless Chromium", Persona::SalesRep, &listed["result"]);

    // The grants page's button revokes her: the gateway then refuses the token.
    browser.go(&running.auth_server().admin_url()).await;
    browser.click("#revoke-e-007").await;
    assert_eq!(
        browser.text("#notice").await,
        "Revoked every grant of Lena Fischer."
    );
    browser.save_screenshot(&shots, "meridian-grants.png").await;
    browser.quit().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = list_tools(&http, &running.url, token).await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "neither served nor refused");
        assert!(
            std::time::Instant::now() < deadline,
            "still served 30 s after the revoke button"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.shutdown().await;
}

/// `tools/list` through the gateway, with the headers of Meridian's printed
/// curl command.
async fn list_tools(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    let mut request = http.post(url).bearer_auth(token);
    for (name, value) in meridian::mcp::headers("tools/list", None) {
        request = request.header(name, value);
    }
    request
        .body(meridian::mcp::request(1, "tools/list", json!({})).to_string())
        .send()
        .await
        .expect("tools/list")
}

//! Signing in to Meridian with no token given, by official clients: the
//! TypeScript SDK's OAuth client (`clients/ts_oauth_client.mjs`, its own
//! `authProvider` machinery) once with a Client ID Metadata Document and
//! once with Dynamic Client Registration, then the persona's tools and a
//! call; and one revocation cutting such a client off, refresh included.
//!
//! The metadata document is served over https on loopback by a test
//! authority (`tests/fixtures/cimd-*.pem`, the SDK accepts only https
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
    support::{e2e_dir, node, run},
};

const CA: &[u8] = include_bytes!("../fixtures/cimd-ca-cert.pem");
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

/// Runs `clients/ts_oauth_client.mjs` with `plan`; returns its output.
async fn ts_oauth(running: &Running, plan: Value) -> Value {
    let mut command = Command::new(node());
    command
        .arg(e2e_dir().join("clients/ts_oauth_client.mjs"))
        .arg(plan.to_string())
        .env("MCP_URL", &running.url)
        .env(
            "MERIDIAN_ADMIN_SECRET",
            running.auth_server().admin_secret(),
        )
        .current_dir(e2e_dir());
    let finished = run(command, Duration::from_secs(120)).await;
    assert_eq!(
        finished.status,
        Some(0),
        "ts_oauth_client failed:\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    serde_json::from_str(finished.stdout.trim())
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", finished.stdout, finished.stderr))
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

//! One issuer and one backend per adapter for the whole test binary, plus
//! [`send`]: the same request to both adapters, answers compared.

use std::{sync::OnceLock, time::Duration};

use adapter_tests::Adapter;
use cortex_backend::{Auth, testing::TestIssuer};
use serde_json::Value;

pub(crate) const AUDIENCE: &str = "https://cortex.test/backends/shelf";
pub(crate) const TECHNICAL: &str = "technical-token-for-the-adapter-suite";

pub(crate) struct Fixture {
    pub(crate) issuer: TestIssuer,
    targets: Vec<(Adapter, String)>,
    client: reqwest::Client,
}

/// Starts the issuer and both servers once, on threads that outlive every
/// test's own runtime.
pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the test issuer");
            runtime.block_on(async move {
                let issuer = TestIssuer::start().await.expect("the test issuer starts");
                tx.send(issuer).expect("the fixture is waiting");
                std::future::pending::<()>().await;
            });
        });
        let issuer = rx.recv().expect("the test issuer starts");
        let targets = Adapter::ALL
            .iter()
            .map(|&adapter| {
                let auth = Auth::new(issuer.auth_config(AUDIENCE, &[TECHNICAL]))
                    .expect("a valid auth configuration");
                let addr = adapter
                    .serve(crate::backend::build(auth), 2)
                    .unwrap_or_else(|e| panic!("the {} server starts: {e}", adapter.name()));
                (adapter, format!("http://{addr}"))
            })
            .collect();
        // No pooled connections: each test has its own runtime, and a
        // connection kept from a finished test's runtime is dead.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Fixture {
            issuer,
            targets,
            client,
        }
    })
}

/// A token for the suite's audience with these scopes.
pub(crate) fn token(scopes: &[&str]) -> String {
    fixture()
        .issuer
        .token(AUDIENCE)
        .sub("ana")
        .email("ana@example.com")
        .role("reader")
        .scopes(scopes.iter().copied())
        .mint()
}

/// A request to the contract endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: reqwest::Method,
    pub(crate) path: &'static str,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Call {
    /// A JSON POST of `body` with `Bearer token`.
    pub(crate) fn post(token: &str, body: &Value) -> Self {
        Self::raw(token, body.to_string().into_bytes())
    }

    /// A JSON POST of raw bytes.
    pub(crate) fn raw(token: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: reqwest::Method::POST,
            path: cortex_backend::contract::DEFAULT_PATH,
            content_type: Some("application/json"),
            authorization: Some(format!("Bearer {token}")),
            body: body.into(),
        }
    }

    /// `{"method": method, "params": params}` with `Bearer token`.
    pub(crate) fn method(token: &str, method: &str, params: Value) -> Self {
        Self::post(
            token,
            &serde_json::json!({"method": method, "params": params}),
        )
    }
}

/// What came back, identical from both adapters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) allow: Option<String>,
    pub(crate) raw: Vec<u8>,
    pub(crate) body: Value,
}

impl Reply {
    /// The `error` string of an error body.
    pub(crate) fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error body has an `error` string: {}", self.body))
    }

    /// The `code` of an error body.
    pub(crate) fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts a contract error: this status, a JSON body with a non-empty
    /// `error` string and this `code`.
    pub(crate) fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status of {}", self.body);
        assert!(
            !self.error().is_empty(),
            "an empty error message: {}",
            self.body
        );
        assert_eq!(self.code(), code, "code of {}", self.body);
    }
}

async fn send_to(adapter: Adapter, base: &str, call: &Call) -> Reply {
    let f = fixture();
    let mut request = f
        .client
        .request(call.method.clone(), format!("{base}{}", call.path))
        .body(call.body.clone());
    if let Some(ct) = call.content_type {
        request = request.header("content-type", ct);
    }
    if let Some(auth) = &call.authorization {
        request = request.header("authorization", auth);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} did not answer: {e}", adapter.name()));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
    };
    let status = response.status().as_u16();
    let content_type = header("content-type");
    let allow = header("allow");
    let raw = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{} sent a broken body: {e}", adapter.name()))
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or_else(|e| {
        panic!(
            "{} answered {status} with a body that is not JSON ({e}): {}",
            adapter.name(),
            String::from_utf8_lossy(&raw)
        )
    });
    Reply {
        status,
        content_type,
        allow,
        raw,
        body,
    }
}

/// Sends `call` to every adapter, fails unless the answers are identical
/// (status, content type, `Allow`, body bytes), and returns the answer.
pub(crate) async fn send(call: Call) -> Reply {
    let f = fixture();
    let replies =
        futures::future::join_all(f.targets.iter().map(|(a, base)| send_to(*a, base, &call))).await;
    let (first, rest) = replies.split_first().expect("at least one adapter");
    for (reply, (adapter, _)) in rest.iter().zip(&f.targets[1..]) {
        assert_eq!(
            first,
            reply,
            "{} and {} answered {:?} {} differently",
            f.targets[0].0.name(),
            adapter.name(),
            call.method,
            String::from_utf8_lossy(&call.body[..call.body.len().min(200)])
        );
    }
    assert_eq!(
        first.content_type.as_deref(),
        Some("application/json"),
        "every answer is JSON"
    );
    first.clone()
}

//! Three gateway replicas behind nginx, sharing one Redis: the reference
//! deployment of `docs/operations.md` on loopback.
//!
//! [`Replicas::start`] starts Debian's `redis-server` (through
//! [`cortex_gateway::testing::RedisServer`]), one backend app and a test
//! issuer in this process, three `cortex-gateway serve` processes with
//! `CORTEX_STORE` on that Redis (each with its own audit file), and
//! Debian's `nginx` with its own configuration in a temporary directory:
//! round-robin over the three, no stickiness, buffering off (event
//! streams), on a free loopback port. Every part is ready (answers) before
//! `start` returns; everything stops when dropped.
//!
//! Replica 0 refreshes its catalog every second; replicas 1 and 2 every
//! hour, so what they learn sooner comes from another replica (pub/sub).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use cortex_backend::{Auth, Backend, Ctx, ToolError, ToolFn, testing::TestIssuer};
use cortex_gateway::testing::RedisServer;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// The technical token shared by the gateways and the backend.
pub const TECH: &str = "replicas-technical-token-0123456789";
/// The operator secret of each replica's `/admin/tool-integrity`.
pub const ADMIN: &str = "replicas-operator-secret-0123456789abcdef";
/// Requests a minute per caller.
pub const RATE_PER_MINUTE: u32 = 6;
/// A caller's burst.
pub const BURST: u32 = 10;
/// The HMAC key of the audit pseudonyms (the same on every replica).
const AUDIT_SECRET: &str = "replicas-audit-secret-0123456789abcdef";

/// The `echo` tool's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// What to send back.
    pub text: String,
}

async fn echo(_ctx: Ctx<()>, args: EchoArgs) -> Result<Value, ToolError> {
    Ok(json!({ "echo": args.text }))
}

/// The backend app: `echo` with `description`.
pub fn app(issuer: &TestIssuer, audience: &str, description: &str) -> Backend {
    Backend::builder("app")
        .auth(Auth::new(issuer.auth_config(audience, &[TECH])).expect("auth"))
        .tool(
            ToolFn::new("echo")
                .scope("mcp:app:read")
                .description(description)
                .handler(echo),
        )
        .build()
        .expect("the app")
}

/// The contract endpoint of `backend`.
async fn contract(
    backend: Backend,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut request =
        cortex_backend::Request::new("POST", cortex_backend::RequestBody::Complete(body));
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            request.push_header(name, v);
        }
    }
    let response = backend.handle(request).await;
    (
        axum::http::StatusCode::from_u16(response.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        response.body,
    )
        .into_response()
}

/// Serves the backend in `backend` (replace it to change the app) on a
/// loopback port: its URL and the serving task.
pub async fn serve_backend(
    backend: Arc<RwLock<Backend>>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let router = axum::Router::new().route(
            "/api/cortex/backend",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let backend = backend.read().expect("the app").clone();
                    async move { contract(backend, headers, body).await }
                },
            ),
        );
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, task))
}

/// One `cortex-gateway serve` process.
#[derive(Debug)]
pub struct Replica {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its audit file.
    pub audit: PathBuf,
}

impl Replica {
    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its audit lines so far.
    pub fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The deployment.
pub struct Replicas {
    /// The shared store.
    pub redis: RedisServer,
    /// The authorization server of the tokens.
    pub issuer: TestIssuer,
    /// The three gateways.
    pub replicas: Vec<Replica>,
    /// The MCP URL through nginx (the canonical URI, the tokens' audience).
    pub url: String,
    backend: Arc<RwLock<Backend>>,
    backend_task: tokio::task::JoinHandle<()>,
    nginx: Option<Child>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("url", &self.url)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            // SIGTERM through nginx itself: the master stops its workers
            // (a SIGKILL of the master would leave them running).
            let _ = Command::new(nginx_bin())
                .arg("-p")
                .arg(self.dir.path())
                .arg("-c")
                .arg(self.dir.path().join("nginx.conf"))
                .args(["-s", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = nginx.wait();
        }
        self.backend_task.abort();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until `probe` holds, up to `limit`; panics naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !probe() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status of `GET <url>` (0 when nothing answers).
pub fn status_of(url: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let Ok(parsed) = url::Url::parse(url) else {
        return 0;
    };
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(80)
    );
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        parsed.path()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl Replicas {
    /// Starts Redis, the app, three replicas of `gateway_bin` and nginx.
    pub async fn start(gateway_bin: &Path) -> anyhow::Result<Self> {
        Self::start_on(gateway_bin, RedisServer::start_new()).await
    }

    /// The same deployment on `redis` (a Redis or Valkey server).
    pub async fn start_on(gateway_bin: &Path, redis: RedisServer) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nginx_port = free_port();
        let url = format!("http://127.0.0.1:{nginx_port}/mcp");
        let issuer = TestIssuer::start().await?;
        let backend = Arc::new(RwLock::new(app(&issuer, &url, "Echo a text.")));
        let (backend_url, backend_task) = serve_backend(backend.clone()).await?;
        let mut replicas = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let audit = dir.path().join(format!("audit-{i}.jsonl"));
            let refresh = if i == 0 { "1" } else { "3600" };
            let child = Command::new(gateway_bin)
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("CORTEX_LISTEN", format!("127.0.0.1:{port}"))
                .env("CORTEX_CANONICAL_URI", &url)
                .env("OAUTH_ISSUER", issuer.issuer())
                .env("OAUTH_JWKS_URL", issuer.jwks_url())
                .env("CORTEX_TECHNICAL_TOKEN", TECH)
                .env("CORTEX_BACKENDS", "app")
                .env("CORTEX_BACKEND_APP_URL", &backend_url)
                .env("CORTEX_REFRESH_INTERVAL_S", refresh)
                .env("CORTEX_STORE", redis.url())
                .env("CORTEX_RATE_LIMIT_PER_MINUTE", RATE_PER_MINUTE.to_string())
                .env("CORTEX_RATE_LIMIT_BURST", BURST.to_string())
                .env("CORTEX_TOOL_INTEGRITY", "block")
                .env("CORTEX_ADMIN_SECRET", ADMIN)
                .env("CORTEX_AUDIT_FILE", &audit)
                .env("CORTEX_AUDIT_SECRET", AUDIT_SECRET)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()?;
            replicas.push(Replica {
                child: Some(child),
                base: format!("http://127.0.0.1:{port}"),
                audit,
            });
        }
        for r in &replicas {
            let ready = format!("{}/readyz", r.base);
            wait_until(
                &format!("{} ready", r.base),
                Duration::from_secs(60),
                || status_of(&ready) == 200,
            );
        }
        let nginx = start_nginx(dir.path(), nginx_port, &replicas)?;
        let through = format!("http://127.0.0.1:{nginx_port}/readyz");
        wait_until("nginx ready", Duration::from_secs(30), || {
            status_of(&through) == 200
        });
        Ok(Self {
            redis,
            issuer,
            replicas,
            url,
            backend,
            backend_task,
            nginx: Some(nginx),
            dir,
        })
    }

    /// A token for `sub` with the app's scope.
    pub fn token(&self, sub: &str) -> String {
        self.issuer
            .token(&self.url)
            .sub(sub)
            .email(&format!("{sub}@example.com"))
            .scopes(["mcp:app:read"])
            .mint()
    }

    /// The app now describes `echo` as `description`.
    pub fn describe_echo(&self, description: &str) {
        *self.backend.write().expect("the app") = app(&self.issuer, &self.url, description);
    }

    /// The temporary directory (nginx's logs are there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `SocketAddr` of nginx.
    pub fn nginx_addr(&self) -> SocketAddr {
        let u = url::Url::parse(&self.url).expect("the URL");
        SocketAddr::from(([127, 0, 0, 1], u.port().unwrap_or(80)))
    }
}

/// Whether this process runs as root (nginx then needs a `user` line).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

fn nginx_bin() -> String {
    std::env::var("CORTEX_TEST_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
}

fn start_nginx(dir: &Path, port: u16, replicas: &[Replica]) -> anyhow::Result<Child> {
    let servers: String = replicas
        .iter()
        .map(|r| {
            format!(
                "        server {} max_fails=1 fail_timeout=2s;\n",
                r.base.trim_start_matches("http://")
            )
        })
        .collect();
    let user = if is_root() { "user root root;\n" } else { "" };
    let d = dir.display();
    let config = format!(
        "{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream gateways {{
{servers}        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config)?;
    let bin = nginx_bin();
    let child = Command::new(&bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start {bin} ({e}): run `.ci/run`, which installs Debian's nginx package, \
                 or `apt-get install nginx`"
            )
        })?;
    Ok(child)
}

//! The container image without a container engine (none runs on these
//! machines): the steps of the repository's `Dockerfile`, read from the
//! file, run here. The build stage's `RUN` command is run as written (a
//! release build with the lock file); the runtime stage becomes a directory
//! holding only what the image holds (the binary at its `COPY` destination,
//! CA certificates, the C runtime the binary links against, a passwd entry
//! for the image's user), and the gateway runs chrooted into it as the
//! image's `USER`, with the image's `ENV`, `ENTRYPOINT` and `CMD`, until
//! the image's `HEALTHCHECK` command passes; then an MCP client uses it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use cortex_backend::{Auth, testing::TestIssuer};
use e2e::fixture;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::{e2e_dir, http, run};

const TECHNICAL_TOKEN: &str = "e2e-container-technical-token-0123456789";

/// What the test takes from the Dockerfile.
#[derive(Debug, Default)]
struct Image {
    /// The build stage's `RUN` command.
    build: String,
    /// `COPY --from=build <from> <to>` of the runtime stage.
    copy_from: String,
    copy_to: String,
    env: Vec<(String, String)>,
    user: (u32, u32),
    exposed: u16,
    healthcheck: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn json_array(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON array ({e}): {text}"))
}

/// Reads the two stages of `Dockerfile`.
fn image(dockerfile: &str) -> Image {
    let mut image = Image::default();
    let mut stage = 0;
    for line in dockerfile.lines().map(str::trim) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "FROM" => stage += 1,
            "RUN" if stage == 1 => image.build = rest.to_owned(),
            "COPY" if stage == 2 => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                assert_eq!(parts.len(), 3, "COPY --from=build <from> <to>: {line}");
                assert_eq!(parts[0], "--from=build", "{line}");
                image.copy_from = parts[1].to_owned();
                image.copy_to = parts[2].to_owned();
            }
            "ENV" if stage == 2 => {
                let (k, v) = rest.split_once('=').expect("ENV KEY=value");
                image.env.push((k.to_owned(), v.to_owned()));
            }
            "USER" if stage == 2 => {
                let (u, g) = rest.split_once(':').expect("USER uid:gid");
                image.user = (u.parse().unwrap(), g.parse().unwrap());
            }
            "EXPOSE" if stage == 2 => image.exposed = rest.parse().unwrap(),
            "HEALTHCHECK" if stage == 2 => {
                let (_, cmd) = rest.split_once("CMD ").expect("HEALTHCHECK ... CMD [..]");
                image.healthcheck = json_array(cmd);
            }
            "ENTRYPOINT" if stage == 2 => image.entrypoint = json_array(rest),
            "CMD" if stage == 2 => image.cmd = json_array(rest),
            _ => {}
        }
    }
    assert_eq!(stage, 2, "the Dockerfile has a build and a runtime stage");
    image
}

/// The runtime stage as a directory: the binary, CA certificates, the
/// shared libraries `ldd` names (what the distroless `cc` base provides)
/// and the user.
fn runtime_root(root: &Path, binary: &Path, copy_to: &str, user: (u32, u32)) {
    let put = |from: &Path, to: &str| {
        let target = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from, &target).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    put(binary, copy_to);
    put(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "/etc/ssl/certs/ca-certificates.crt",
    );
    let ldd = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = path {
            let real = std::fs::canonicalize(&lib).unwrap();
            put(&real, lib.to_str().unwrap());
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        format!("nonroot:x:{}:{}:nonroot:/:/sbin/nologin\n", user.0, user.1),
    )
    .unwrap();
}

fn am_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// `argv` run inside `root` as `user`: `chroot --userspec` when root;
/// otherwise a user namespace mapping the image's user to ours, both
/// unprivileged on the host.
fn inside(root: &Path, user: (u32, u32), argv: &[String]) -> Command {
    let mut command = if am_root() {
        let mut c = Command::new("/usr/sbin/chroot");
        c.arg(format!("--userspec={}:{}", user.0, user.1)).arg(root);
        c
    } else {
        let mut c = Command::new("/usr/bin/unshare");
        c.arg("--user")
            .arg(format!("--map-user={}", user.0))
            .arg(format!("--map-group={}", user.1))
            .arg(format!("--root={}", root.display()));
        c
    };
    command.args(argv).env_clear();
    command
}

fn uid_of(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_steps_build_and_run_unprivileged() {
    let workspace = e2e_dir().parent().unwrap();
    let image = image(&std::fs::read_to_string(workspace.join("Dockerfile")).unwrap());
    assert_ne!(image.user.0, 0, "the image runs as a non-root user");

    // The build stage, as written (WORKDIR is the workspace here).
    let mut build = Command::new("sh");
    build.arg("-c").arg(&image.build).current_dir(workspace);
    run(build, Duration::from_secs(3600))
        .await
        .assert_success(&image.build);
    let binary = workspace.join(image.copy_from.trim_start_matches("/src/"));
    assert!(binary.exists(), "{} was not built", binary.display());

    let root = tempfile::tempdir().unwrap();
    runtime_root(root.path(), &binary, &image.copy_to, image.user);

    // What the gateway federates: the fixture backend and a test issuer.
    let issuer = TestIssuer::start().await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let auth = Auth::new(issuer.auth_config(&url, &[TECHNICAL_TOKEN])).unwrap();
    let app = fixture::router(auth, Arc::new(fixture::Catalog::default())).unwrap();
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_url = format!("http://{}", backend.local_addr().unwrap());
    let backend_task = tokio::spawn(async move {
        let _ = axum::serve(backend, app).await;
    });

    // `docker run -e …`: the image's ENV, then the operator's.
    let listen_default = image
        .env
        .iter()
        .find(|(k, _)| k == "CORTEX_LISTEN")
        .map(|(_, v)| v.clone())
        .expect("the image sets CORTEX_LISTEN");
    assert!(
        listen_default.starts_with("0.0.0.0:")
            && listen_default.ends_with(&image.exposed.to_string()),
        "the image listens on every interface at the exposed port: {listen_default}"
    );
    let mut env: Vec<(String, String)> = image.env.clone();
    env.extend(
        [
            ("CORTEX_LISTEN", format!("0.0.0.0:{port}")),
            ("CORTEX_BACKENDS", fixture::ID.to_owned()),
            ("CORTEX_BACKEND_CONFORMANCE_URL", backend_url),
            ("CORTEX_BACKEND_CONFORMANCE_PREFIX", "false".to_owned()),
            ("CORTEX_CANONICAL_URI", url.clone()),
            ("OAUTH_ISSUER", issuer.issuer().to_owned()),
            ("OAUTH_JWKS_URL", issuer.jwks_url()),
            ("CORTEX_TECHNICAL_TOKEN", TECHNICAL_TOKEN.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let argv: Vec<String> = image.entrypoint.iter().chain(&image.cmd).cloned().collect();
    let mut serve = inside(root.path(), image.user, &argv);
    serve
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut gateway = serve.spawn().expect("chroot or unshare");
    let pid = gateway.id().unwrap();

    // The image's health check, as the engine would run it, until it passes.
    let started = Instant::now();
    loop {
        let mut check = inside(root.path(), image.user, &image.healthcheck);
        check.envs(env.iter().map(|(k, v)| (k, v)));
        let finished = run(check, Duration::from_secs(10)).await;
        if finished.status == Some(0) {
            break;
        }
        if let Ok(Some(status)) = gateway.try_wait() {
            let mut stderr = String::new();
            use tokio::io::AsyncReadExt as _;
            gateway
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .await
                .unwrap();
            panic!("the gateway exited ({status}) before it was healthy:\n{stderr}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the health check never passed: {}",
            finished.stderr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Unprivileged on the host, confined to the runtime files.
    let uids = uid_of(pid);
    let chrooted = am_root();
    if chrooted {
        // `chroot` execs the gateway: the pid is the gateway itself.
        assert!(
            uids.iter().all(|u| *u == image.user.0.to_string()),
            "{uids:?}"
        );
        let seen_root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
        assert_eq!(seen_root, root.path().canonicalize().unwrap());
    } else {
        assert!(uids.iter().all(|u| u != "0"), "{uids:?}");
    }

    // An MCP client uses it.
    let token = issuer
        .token(&url)
        .sub("container-check")
        .scopes([fixture::SCOPE])
        .mint();
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    });
    let (status, _, answer) = http(
        "POST",
        &url,
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        Some(body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let listed: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        listed["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() > 3),
        "{listed}"
    );

    gateway.kill().await.unwrap();
    backend_task.abort();
}

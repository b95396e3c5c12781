//! The reference backend served by each adapter, unchanged: both must pass
//! every check, so the adapters add nothing and lose nothing.

use std::sync::mpsc;

use contract_tests::check;
use cortex_backend::contract::DEFAULT_PATH;

use crate::{
    faults, issuer, options,
    reference::{self, Shape},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_adapter_passes_every_check() {
    let issuer = issuer().await;
    let backend = reference::backend(&issuer, Shape::default());
    let server =
        faults::serve(axum::Router::new().merge(cortex_backend_axum::router(backend))).await;
    let report = check(&server.url, options(&issuer))
        .await
        .expect("the backend answers");
    report.assert_all_ran_and_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actix_adapter_passes_every_check() {
    let issuer = issuer().await;
    let backend = reference::backend(&issuer, Shape::default());
    let (started, ready) = mpsc::channel();
    // actix-web runs on its own single-threaded system, in its own thread.
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(cortex_backend_actix::configure(backend.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("bind a loopback port");
            let addr = server.addrs()[0];
            let server = server.run();
            started
                .send((addr, server.handle()))
                .expect("the test waits for the address");
            server.await
        })
    });
    let (addr, handle) = tokio::task::spawn_blocking(move || ready.recv())
        .await
        .expect("join")
        .expect("the actix server starts");
    let url = format!("http://{addr}{DEFAULT_PATH}");
    let report = check(&url, options(&issuer)).await;
    handle.stop(true).await;
    thread
        .join()
        .expect("the actix thread ends")
        .expect("the actix server ran");
    report
        .expect("the backend answers")
        .assert_all_ran_and_passed();
}

/// The adapters' example programs, as shipped, started as processes with
/// the settings `Auth::from_env` reads. `cargo test --workspace` (the
/// README's test command) builds every example before any test runs; a run
/// of this crate alone needs them built first:
/// `cargo build -p cortex-backend-axum --example axum_backend -p cortex-backend-actix --example actix_backend`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapters_example_programs_pass_every_check() {
    let examples = std::path::Path::new(env!("CARGO_BIN_EXE_cortex-conformance"))
        .parent()
        .expect("the binary's directory")
        .join("examples");
    let issuer = issuer().await;
    for name in ["axum_backend", "actix_backend"] {
        let program = examples.join(name);
        assert!(
            program.exists(),
            "{} is missing: run `cargo test --workspace` (it builds the examples), or \
             `cargo build -p cortex-backend-{} --example {name}` before this crate's tests",
            program.display(),
            name.trim_end_matches("_backend")
        );
        let mut child = std::process::Command::new(&program)
            .envs(issuer.env(reference::AUDIENCE))
            .env("CORTEX_TECHNICAL_TOKENS", reference::TECHNICAL)
            .env("CORTEX_LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("piped stdout");
        // Readiness: the example prints its address once it listens; the
        // reader stays alive in its thread so later output never breaks a pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let first = tokio::task::spawn_blocking(move || rx.recv().unwrap_or_default())
            .await
            .expect("join");
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!("{name} printed `{first}` instead of `listening on http://ADDR`")
            })
            .to_string();
        let report = check(&format!("{base}{DEFAULT_PATH}"), options(&issuer)).await;
        let _ = child.kill();
        let _ = child.wait();
        report.expect("the example answers").assert_passed();
    }
}

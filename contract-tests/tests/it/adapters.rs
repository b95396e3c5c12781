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

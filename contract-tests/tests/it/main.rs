//! The harness's own tests: a correct backend passes every check, and each
//! deliberately broken backend trips exactly the checks its fault breaks.

mod adapters;
mod cli;
mod conformance;
mod faults;
mod reference;
mod snapshots;

use std::sync::Arc;

use contract_tests::{Identity, Options, TestIssuer};

/// An issuer for one test.
pub(crate) async fn issuer() -> Arc<TestIssuer> {
    Arc::new(TestIssuer::start().await.expect("start the test issuer"))
}

/// Options minting every token from `issuer`, calling read-only tools. The
/// oversized body only needs to exceed the SDK's 1 MiB default, and a
/// smaller one keeps the debug-build test fast.
pub(crate) fn options(issuer: &Arc<TestIssuer>) -> Options {
    Options::new(reference::TECHNICAL)
        .issuer(issuer.clone(), reference::AUDIENCE)
        .call_read_only(true)
        .oversized_body(cortex_backend::DEFAULT_BODY_LIMIT + 4096)
}

/// A gateway issuer (assert mode) for one test.
pub(crate) async fn gateway() -> Arc<TestIssuer> {
    Arc::new(
        TestIssuer::start_gateway()
            .await
            .expect("start the test gateway issuer"),
    )
}

/// [`options`] in gateway-assertion mode: every token is an assertion of
/// `gateway`.
pub(crate) fn assert_options(gateway: &Arc<TestIssuer>) -> Options {
    options(gateway).identity(Identity::Assert)
}

//! Every Meridian app passes the conformance harness, started alone and
//! trusting the harness's own issuer (which mints valid and broken tokens).

use std::sync::Arc;

use contract_tests::{Options, Status, TestIssuer};
use cortex_backend::Auth;
use meridian::apps::{App, serve::ShutdownTrigger};

const TECHNICAL: &str = "meridian-conformance-technical-token";
const AUDIENCE: &str = "https://mcp.meridian.example/mcp";

#[tokio::test]
async fn every_app_passes_the_conformance_harness() {
    let issuer = Arc::new(TestIssuer::start().await.expect("issuer"));
    let (trigger, _) = ShutdownTrigger::new();
    for app in App::ALL {
        let auth = Auth::new(issuer.auth_config(AUDIENCE, &[TECHNICAL])).expect("auth");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let served = app
            .serve(auth, listener, trigger.subscribe())
            .await
            .expect("the app starts");
        let options = Options::new(TECHNICAL)
            .issuer(issuer.clone(), AUDIENCE)
            .call_read_only(true);
        let report = contract_tests::check(&served.url, options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", app.id()));
        report.assert_passed();
        assert!(
            report.ids_with(Status::Warn).is_empty(),
            "{}: warnings {:?}",
            app.id(),
            report.ids_with(Status::Warn)
        );
        if app == App::Docs {
            // The one app with a prompt and a resource template runs every check.
            report.assert_all_ran_and_passed();
        } else {
            let skipped = report.ids_with(Status::Skip);
            assert!(
                skipped
                    .iter()
                    .all(|id| id.contains("prompt") || id.contains("resource")),
                "{}: skipped {skipped:?}",
                app.id()
            );
        }
    }
    trigger.fire();
}

/// The app Meridian runs in `assert` mode passes the harness as the gateway
/// calls it: trusting the harness's gateway issuer only
/// (`--identity assert`), with the settings Meridian gives it.
#[tokio::test]
async fn the_asserted_app_passes_the_harness_in_assert_mode() {
    use contract_tests::Identity;
    let gateway = Arc::new(TestIssuer::start_gateway().await.expect("gateway issuer"));
    let own_audience = "https://billing.meridian.example";
    let auth =
        meridian::apps::gateway_assertion_auth(gateway.issuer(), own_audience, AUDIENCE, TECHNICAL)
            .expect("auth");
    let (trigger, _) = ShutdownTrigger::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let served = App::ASSERTED
        .serve(auth, listener, trigger.subscribe())
        .await
        .expect("the app starts");
    let options = Options::new(TECHNICAL)
        .issuer(gateway, own_audience)
        .identity(Identity::Assert)
        .gateway_audience(AUDIENCE)
        .call_read_only(true);
    let report = contract_tests::check(&served.url, options)
        .await
        .expect("the app answers");
    report.assert_passed();
    for id in [
        "auth.valid-token",
        "auth.bad-signature",
        "auth.wrong-audience",
        "auth.expired-token",
        "auth.hs256-public-key",
        "auth.alg-none",
        "assert.without-act",
        "assert.foreign-actor",
        "assert.idp-token",
        "assert.gateway-audience",
    ] {
        assert_eq!(report.get(id).map(|c| c.status), Some(Status::Pass), "{id}");
    }
    trigger.fire();
}

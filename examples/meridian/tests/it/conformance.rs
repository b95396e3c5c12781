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

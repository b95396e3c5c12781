use std::collections::BTreeMap;

use contract_tests::{CHECKS, Options, Status, check};

use crate::{
    faults::{self, Fault},
    issuer, options, reference,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_backend_passes_every_check() {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), Fault::None).await;
    let report = check(&server.url, options(&issuer))
        .await
        .expect("the backend answers");
    report.assert_all_ran_and_passed();
    assert_eq!(
        report.checks.len(),
        CHECKS.len(),
        "every check reports once"
    );
    assert!(
        report.ids_with(Status::Warn).is_empty(),
        "{:?}",
        report.ids_with(Status::Warn)
    );
}

/// The non-passing, non-skipped outcomes of a report.
fn tripped(report: &contract_tests::Report) -> BTreeMap<&'static str, Status> {
    report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
        .map(|c| (c.id, c.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_trips_exactly_its_checks() {
    use futures::StreamExt as _;
    let issuer = issuer().await;
    let runs = Fault::all().into_iter().map(|fault| {
        let issuer = issuer.clone();
        tokio::spawn(async move {
            let server = faults::start(issuer.clone(), fault).await;
            let report = check(&server.url, options(&issuer))
                .await
                .expect("the backend answers");
            let expected: BTreeMap<&str, Status> = fault.expected().into_iter().collect();
            let got = tripped(&report);
            (got != expected).then(|| {
                format!(
                    "{fault:?}: expected {expected:?}, got {got:?}\n{}",
                    contract_tests::render::human(&report, false)
                )
            })
        })
    });
    let mismatches: Vec<String> = futures::stream::iter(runs)
        .buffer_unordered(4)
        .filter_map(|m| async move { m.expect("the run does not panic") })
        .collect()
        .await;
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn every_check_is_tripped_by_some_fault() {
    let covered: Vec<&str> = Fault::all()
        .into_iter()
        .flat_map(|f| f.expected())
        .map(|(id, _)| id)
        .collect();
    let uncovered: Vec<&str> = CHECKS
        .iter()
        .map(|c| c.id)
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        uncovered.is_empty(),
        "no broken backend makes these checks fail: {uncovered:?}"
    );
    for (id, _) in Fault::all().into_iter().flat_map(|f| f.expected()) {
        assert!(
            contract_tests::check_info(id).is_some(),
            "{id} is not a check"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_given_token_runs_what_it_can_and_says_why_the_rest_is_skipped() {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), Fault::None).await;
    let token = issuer
        .token(reference::AUDIENCE)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .mint();
    let report = check(
        &server.url,
        Options::new(reference::TECHNICAL).user_token(token),
    )
    .await
    .expect("the backend answers");
    report.assert_passed();
    let skipped = report.ids_with(Status::Skip);
    assert!(skipped.contains(&"auth.expired-token"), "{skipped:?}");
    assert!(skipped.contains(&"tools.read-only-call"), "{skipped:?}");
    let expired = report.get("auth.expired-token").unwrap();
    assert!(expired.message.contains("--issuer"), "{}", expired.message);
    // The token lacks mcp:crm:write, so log_call's refusal is checked.
    let scope = report.get("scopes.missing-scope").unwrap();
    assert_eq!(scope.status, Status::Pass, "{}", scope.message);
    assert!(scope.message.contains("skipped"), "{}", scope.message);
    assert_eq!(
        report.get("help.all-sections").unwrap().status,
        Status::Pass
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_user_tokens_only_the_technical_checks_run() {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), Fault::None).await;
    let report = check(&server.url, Options::new(reference::TECHNICAL))
        .await
        .expect("the backend answers");
    report.assert_passed();
    for id in [
        "auth.valid-token",
        "scopes.missing-scope",
        "help.all-sections",
        "whoami.identity",
    ] {
        let c = report.get(id).unwrap();
        assert_eq!(c.status, Status::Skip, "{id}");
        assert!(c.message.contains("--user-token"), "{id}: {}", c.message);
    }
    for id in [
        "catalog.list-tools",
        "technical.tools-refused",
        "auth.no-token",
        "transport.oversized-body",
    ] {
        assert_eq!(report.get(id).unwrap().status, Status::Pass, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_runs_the_named_checks_and_unknown_ids_are_refused() {
    let issuer = issuer().await;
    let server = faults::start(
        issuer.clone(),
        Fault::Accepts(cortex_backend::testing::BrokenToken::Expired),
    )
    .await;
    let report = check(&server.url, options(&issuer).only("auth.expired-token"))
        .await
        .unwrap();
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.failures().next().unwrap().id, "auth.expired-token");
    let err = check(&server.url, options(&issuer).only("auth.nope"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cortex-conformance list"), "{err}");
}

#[tokio::test]
async fn an_unreachable_backend_is_an_error_not_a_report() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/api/cortex/backend",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let err = check(&url, Options::new(reference::TECHNICAL))
        .await
        .unwrap_err();
    assert!(
        matches!(err, contract_tests::CheckError::Unreachable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Is the backend running"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "technical.tools-refused")]
async fn assert_passed_names_the_failures() {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), Fault::TechnicalCallsTools).await;
    check(&server.url, options(&issuer))
        .await
        .unwrap()
        .assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_is_reported_with_a_hint() {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), Fault::None).await;
    let wrong = server.url.replace("/api/cortex/backend", "/api/backend");
    let report = check(&wrong, options(&issuer).only("catalog.list-tools"))
        .await
        .expect("the server answers");
    let c = report.get("catalog.list-tools").unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(c.message.contains("/api/cortex/backend"), "{}", c.message);
}

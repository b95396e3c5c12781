use std::{collections::BTreeMap, sync::Arc};

use contract_tests::{CHECKS, Identity, Options, Status, TestIssuer, check};

use crate::{
    assert_options,
    faults::{self, Fault},
    gateway, issuer, options, reference,
};

/// The checks of forward mode: all but the `assert.*` group.
fn forward_checks() -> usize {
    CHECKS.iter().filter(|c| c.group() != "assert").count()
}

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
        forward_checks(),
        "every check but assert.* reports once"
    );
    assert!(
        report.ids_with(Status::Warn).is_empty(),
        "{:?}",
        report.ids_with(Status::Warn)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_backend_in_assert_mode_passes_every_check() {
    let gateway = gateway().await;
    let server = faults::start(gateway.clone(), Fault::None).await;
    let report = check(&server.url, assert_options(&gateway))
        .await
        .expect("the backend answers");
    report.assert_all_ran_and_passed();
    assert_eq!(
        report.checks.len(),
        CHECKS.len(),
        "every check reports once"
    );
    assert!(report.ids_with(Status::Warn).is_empty());
    assert!(forward_checks() < CHECKS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_in_assert_mode_trips_exactly_its_checks() {
    let mismatches = run_faults(gateway().await, Fault::in_assert_mode(), Identity::Assert).await;
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_and_the_issuer_must_agree() {
    let (idp, gateway) = (issuer().await, gateway().await);
    let server = faults::start(idp.clone(), Fault::None).await;
    for (options, says) in [
        (
            options(&idp).identity(Identity::Assert),
            "issuer --identity assert",
        ),
        (options(&gateway), "pass --identity assert"),
        (
            options(&idp).only("assert.without-act"),
            "only with --identity assert",
        ),
    ] {
        let err = check(&server.url, options).await.unwrap_err();
        assert!(
            matches!(&err, contract_tests::CheckError::Identity(m) if m.contains(says)),
            "{err}"
        );
    }
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

/// Runs the harness against one broken backend per fault (four at a
/// time) trusting `issuer`; the faults that did not trip exactly their
/// checks, with the report.
async fn run_faults(
    issuer: Arc<TestIssuer>,
    faults: Vec<Fault>,
    identity: Identity,
) -> Vec<String> {
    use futures::StreamExt as _;
    let runs = faults.into_iter().map(|fault| {
        let issuer = issuer.clone();
        tokio::spawn(async move {
            let server = faults::start(issuer.clone(), fault).await;
            let report = check(&server.url, options(&issuer).identity(identity))
                .await
                .expect("the backend answers");
            let expected: BTreeMap<&str, Status> = match identity {
                Identity::Assert => fault.expected_in_assert_mode(),
                _ => fault.expected(),
            }
            .into_iter()
            .collect();
            let got = tripped(&report);
            (got != expected).then(|| {
                format!(
                    "{fault:?}: expected {expected:?}, got {got:?}\n{}",
                    contract_tests::render::human(&report, false)
                )
            })
        })
    });
    futures::stream::iter(runs)
        .buffer_unordered(4)
        .filter_map(|m| async move { m.expect("the run does not panic") })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_trips_exactly_its_checks() {
    let mismatches = run_faults(issuer().await, Fault::all(), Identity::Forward).await;
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn every_check_is_tripped_by_some_fault() {
    let covered: Vec<&str> = Fault::all()
        .into_iter()
        .chain(Fault::assert_only())
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

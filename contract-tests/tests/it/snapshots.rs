//! The reports as people and CI see them, for one passing and one failing
//! backend. Run-specific values (the port, the duration) are normalized
//! before snapshotting; tokens never appear in a report.

use std::time::Duration;

use contract_tests::{Report, check, render};

use crate::{
    faults::{self, Fault},
    issuer, options,
};

fn normalized(mut report: Report) -> Report {
    report.target = "http://127.0.0.1:[port]/api/cortex/backend".into();
    report.duration = Duration::ZERO;
    report
}

async fn report_for(fault: Fault) -> Report {
    let issuer = issuer().await;
    let server = faults::start(issuer.clone(), fault).await;
    let report = normalized(check(&server.url, options(&issuer)).await.unwrap());
    let addr = server.url.trim_end_matches("/api/cortex/backend");
    let text = render::json(&report);
    assert!(!text.contains(addr), "the port is in the report:\n{text}");
    assert!(
        !text.contains(issuer.issuer()),
        "the issuer's port is in the report"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_report() {
    let report = report_for(Fault::None).await;
    insta::assert_snapshot!("passing_human", render::human(&report, false));
    insta::assert_snapshot!("passing_json", render::json(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_report() {
    let report = report_for(Fault::TechnicalCallsTools).await;
    insta::assert_snapshot!("failing_human", render::human(&report, false));
    insta::assert_snapshot!("failing_json", render::json(&report));
    insta::assert_snapshot!("failing_junit", render::junit(&report));
}

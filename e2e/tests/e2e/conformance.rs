//! The official conformance suite against the gateway federating the
//! fixture backend without prefix, once per requirement set.

use std::time::Duration;

use e2e::stack::ConformanceStack;
use tokio::process::Command;

use crate::support::{Finished, e2e_dir, node, node_script, run};

const EXPECTED_FAILURES: &str = "conformance-expected-failures.yml";

async fn suite(requirements: &str) -> Finished {
    let stack = ConformanceStack::start()
        .await
        .expect("conformance stack starts");
    let results = tempdir(requirements);
    let mut command = Command::new(node());
    command
        .arg(node_script("conformance"))
        .args([
            "server",
            "--url",
            stack.url(),
            "--requirements",
            requirements,
        ])
        .arg("--expected-failures")
        .arg(e2e_dir().join(EXPECTED_FAILURES))
        .arg("--output-dir")
        .arg(&results)
        .current_dir(&results);
    let finished = run(command, Duration::from_secs(240)).await;
    stack.shutdown().await;
    if finished.status == Some(0) {
        let _ = std::fs::remove_dir_all(&results);
    } else {
        println!("conformance results kept in {}", results.display());
    }
    finished
}

fn tempdir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cortex-e2e-conformance-{label}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The suite's summary: everything from its `=== SUMMARY ===` line on.
fn summary(stdout: &str) -> &str {
    stdout
        .find("=== SUMMARY ===")
        .map_or(stdout, |at| &stdout[at..])
}

fn check(requirements: &str, finished: &Finished) {
    println!(
        "conformance --requirements {requirements}: exit {:?} in {:.1?}\n{}",
        finished.status,
        finished.elapsed,
        summary(&finished.stdout)
    );
    assert_eq!(
        finished.status,
        Some(0),
        "the conformance suite ({requirements}) reported unexpected failures or stale entries in \
         e2e/{EXPECTED_FAILURES} (see its summary above; stderr: {})",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2025_11_25() {
    let finished = suite("2025-11-25").await;
    check("2025-11-25", &finished);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_2026_07_28() {
    let finished = suite("2026-07-28").await;
    check("2026-07-28", &finished);
}

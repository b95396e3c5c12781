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

/// The suite's summary (everything from its `=== SUMMARY ===` line on),
/// each line quoted with `suite> ` and without colour codes. Its counts are
/// reworded ("checks passed") so CI never mistakes them for the test
/// runner's own closing line.
fn summary(stdout: &str) -> String {
    let from = stdout
        .find("=== SUMMARY ===")
        .map_or(stdout, |at| &stdout[at..]);
    from.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let plain = strip_ansi(line)
                .replace(" passed, ", " checks passed, ")
                .replace(" failed", " checks failed");
            format!("suite> {plain}\n")
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn check(requirements: &str, finished: &Finished) {
    // Written to the process's stderr directly (not `println!`), so the
    // summary shows in `cargo test` output even when the test passes.
    let report = format!(
        "\nconformance --requirements {requirements}: exit {:?} in {:.1?}\n{}\n",
        finished.status,
        finished.elapsed,
        summary(&finished.stdout).trim_end()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
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

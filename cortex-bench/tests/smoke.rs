//! Smoke test of the benchmark itself (not a benchmark, no timing asserted):
//! the roles start, the gateway federates the backend, and the load
//! generator counts answered requests without errors.

use std::process::Command;

/// The `call` scenario, as short as it gets: backend, bare proxy and gateway
/// processes (the proxy twice: per-thread and shared runtime), four
/// variants, one round each.
#[test]
fn call_scenario_runs_every_role_and_counts_requests() {
    let output = Command::new(env!("CARGO_BIN_EXE_cortex-bench"))
        .args([
            "call",
            "--duration",
            "200ms",
            "--warmup",
            "50ms",
            "--rounds",
            "1",
            "--connections",
            "2",
        ])
        .output()
        .expect("cortex-bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 0: targets met, 1: a target missed (timing is not judged here), 2: broken.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && (l.contains(" via ") || l.contains(" direct ")))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 4, "one row per variant:\n{stdout}");
    for row in rows {
        // | variant | req/s | p50 | p99 | requests | errors | hop CPU / req |
        let requests: u64 = row[5].parse().expect("a request count");
        let errors: u64 = row[6].parse().expect("an error count");
        assert!(requests > 0, "no request counted for {}:\n{stdout}", row[1]);
        assert_eq!(errors, 0, "errors for {}:\n{stdout}", row[1]);
    }
    assert!(
        stdout.contains("call: gateway / bare proxy throughput"),
        "{stdout}"
    );
}

/// The `adapter` scenario, as short as it gets: the MCP server role, a
/// vault with the bench user's linked token, one gateway federating the
/// server and a backend; both variants answered without errors.
#[test]
fn adapter_scenario_calls_through_the_mcp_server_and_the_backend() {
    let output = Command::new(env!("CARGO_BIN_EXE_cortex-bench"))
        .args([
            "adapter",
            "--duration",
            "200ms",
            "--warmup",
            "50ms",
            "--rounds",
            "1",
            "--connections",
            "2",
        ])
        .output()
        .expect("cortex-bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| tools/call"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 2, "one row per variant:\n{stdout}");
    for row in rows {
        let requests: u64 = row[5].parse().expect("a request count");
        let errors: u64 = row[6].parse().expect("an error count");
        assert!(requests > 0, "no request counted for {}:\n{stdout}", row[1]);
        assert_eq!(errors, 0, "errors for {}:\n{stdout}", row[1]);
    }
    assert!(
        stdout.contains("adapter: gateway CPU per call, MCP / contract"),
        "{stdout}"
    );
}

/// The `soak` scenario, as short as it gets: 64 callers, every kind of
/// request answered as expected (no RSS figure is judged here).
#[test]
fn soak_scenario_sends_every_kind_of_request_without_unexpected_answers() {
    let output = Command::new(env!("CARGO_BIN_EXE_cortex-bench"))
        .args(["soak", "--soak-duration", "1s", "--soak-warmup", "500ms"])
        .output()
        .expect("cortex-bench starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // | request | as expected | unexpected |
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("| request"))
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 6, "one row per kind of request:\n{stdout}");
    for row in rows {
        let expected: u64 = row[2].parse().expect("a count");
        let unexpected: u64 = row[3].parse().expect("a count");
        assert!(
            expected > 0,
            "no {} answered as expected:\n{stdout}",
            row[1]
        );
        assert_eq!(unexpected, 0, "unexpected answers to {}:\n{stdout}", row[1]);
    }
}

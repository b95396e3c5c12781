//! Audit for operations: the audit file reopened on SIGHUP (the real
//! binary) and rotated by size, a reopen that fails, and the PostgreSQL
//! sink (rows with typed columns, `audit purge`, the database stopped and
//! started again under load).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cortex_gateway::config::GatewayConfig;
use serde_json::{Value, json};

use crate::{
    cli::{CrmGateway, wait_ready},
    client::Client,
    pg_server::PgServer,
    support::{Options, World},
};

/// Polls `check` every 5 ms until it holds (10 s at most, then fails
/// with `what`).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The file's lines, each checked to be a whole JSON object (none when the
/// file does not exist).
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends mid-line",
        path.display()
    );
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", path.display()))
        })
        .collect()
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

async fn call(client: &mut Client) {
    client
        .call("crm_search_accounts", json!({"query": "a"}))
        .await;
}

/// The binary keeps serving through SIGHUP and reopens its audit file:
/// the lines before the signal stay in the moved file, the ones after go
/// to a new file (mode 0600) at the configured path, none cut in two.
#[tokio::test]
async fn sighup_reopens_the_audit_file_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let crm = CrmGateway::new().await;
    let mut command = crm.command();
    command
        .env("CORTEX_AUDIT_FILE", &path)
        .env("CORTEX_RATE_LIMIT_PER_MINUTE", "0");
    let mut child = crate::cli::Running(command.spawn().unwrap());
    wait_ready(crm.port).await;
    let token = crm
        .issuer
        .token(&crm.url)
        .sub("ana")
        .scopes(["mcp:crm:read"])
        .mint();
    let mut client = Client::modern(&crm.url, &token);
    for _ in 0..3 {
        call(&mut client).await;
    }
    until("3 lines in the file", || count_lines(&path) == 3).await;
    // What logrotate does: move the file, then signal the gateway.
    let moved = numbered(&path, 1);
    std::fs::rename(&path, &moved).unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    until("the file reopened at its path", || path.exists()).await;
    for _ in 0..4 {
        call(&mut client).await;
    }
    until("4 lines in the new file", || count_lines(&path) == 4).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "SIGHUP stopped the gateway"
    );
    let old = json_lines(&moved);
    let new = json_lines(&path);
    assert_eq!(old.len(), 3, "the moved file keeps the lines before SIGHUP");
    assert_eq!(new.len(), 4);
    for line in old.iter().chain(&new) {
        assert_eq!(line["method"], "tools/call", "{line}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A gateway whose lines go to `path`, rotated at `max_bytes` keeping
/// `keep` files, without a rate limit.
async fn file_world(path: &Path, max_bytes: u64, keep: u32) -> World {
    let path = path.to_path_buf();
    World::start_with(Options {
        configure: Some(Box::new(move |c: &mut GatewayConfig| {
            c.controls.audit_file = Some(path);
            c.controls.audit_max_bytes = max_bytes;
            c.controls.audit_keep = keep;
            c.controls.rate_limit_per_minute = 0;
        })),
        ..Options::default()
    })
    .await
}

/// The audit file and its rotated copies `.1 ..= .keep+1`.
fn all_files(path: &Path, keep: u32) -> Vec<PathBuf> {
    std::iter::once(path.to_path_buf())
        .chain((1..=keep + 1).map(|n| numbered(path, n)))
        .collect()
}

fn total_lines(path: &Path, keep: u32) -> usize {
    all_files(path, keep).iter().map(|p| count_lines(p)).sum()
}

/// Size rotation: files up to `.keep`, none over the limit but a one-line
/// one, every line whole JSON; no line lost until the oldest file is
/// deleted, and then exactly its lines.
#[tokio::test]
async fn the_audit_file_rotates_by_size_keeping_the_newest_files() {
    const MAX: u64 = 4096;
    const KEEP: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let w = file_world(&path, MAX, KEEP).await;
    let mut client = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    let oldest = numbered(&path, KEEP);
    // Until every kept file exists: nothing deleted yet.
    let mut requests = 0;
    while !oldest.exists() {
        call(&mut client).await;
        requests += 1;
        assert!(requests < 1000, "no rotation after {requests} requests");
        until("every line written", || {
            total_lines(&path, KEEP) == requests
        })
        .await;
    }
    let first_oldest = std::fs::read_to_string(&oldest).unwrap();
    let first_oldest_lines = first_oldest.lines().count();
    // Until the oldest file is deleted (its content shifted out).
    loop {
        call(&mut client).await;
        requests += 1;
        assert!(requests < 2000, "the oldest file was never deleted");
        until("every line written", || {
            let total = total_lines(&path, KEEP);
            total == requests || total == requests - first_oldest_lines
        })
        .await;
        if std::fs::read_to_string(&oldest).unwrap() != first_oldest {
            break;
        }
    }
    assert!(
        !numbered(&path, KEEP + 1).exists(),
        "more than {KEEP} files kept"
    );
    let mut kept = 0;
    for file in all_files(&path, KEEP).iter().take(KEEP as usize + 1) {
        let size = std::fs::metadata(file).unwrap().len();
        let lines = json_lines(file);
        assert!(
            size <= MAX || lines.len() == 1,
            "{}: {size} bytes in {} lines",
            file.display(),
            lines.len()
        );
        for line in &lines {
            assert_eq!(line["method"], "tools/call", "{line}");
        }
        kept += lines.len();
    }
    assert_eq!(
        kept,
        requests - first_oldest_lines,
        "every line but the deleted file's"
    );
}

/// A reopen that cannot open the path (a symbolic link planted there)
/// keeps the lines going to the open file and is counted.
#[cfg(unix)]
#[tokio::test]
async fn a_failed_reopen_keeps_the_old_file_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let w = file_world(&path, 0, 5).await;
    let mut client = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    call(&mut client).await;
    until("the first line", || count_lines(&path) == 1).await;
    let moved = dir.path().join("moved.log");
    std::fs::rename(&path, &moved).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
    w.gateway.reopen_audit_file();
    let metrics = format!("{}/metrics", w.base());
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("cortex_audit_file_reopen_failures_total 1") {
        assert!(Instant::now() < deadline, "not counted: {text}");
        text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    }
    call(&mut client).await;
    until("the second line in the open file", || {
        count_lines(&moved) == 2
    })
    .await;
    assert!(
        !dir.path().join("elsewhere").exists(),
        "the link was followed"
    );
}

/// The rows of `cortex_audit` for tool calls.
async fn tool_rows(pg: &PgServer) -> i64 {
    pg.client("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM cortex_audit WHERE method = 'tools/call'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn dropped(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cortex_audit_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The PostgreSQL sink (with the file sink on too): tool calls land as
/// rows with typed columns; `audit purge` deletes old rows in batches and
/// keeps recent ones, and waits its turn behind another gateway's purge; with the database stopped the gateway serves and
/// counts the dropped lines; started again, rows flow without a restart;
/// a graceful shutdown writes what is queued.
#[tokio::test]
async fn audit_rows_go_to_postgresql_are_purged_and_survive_an_outage() {
    let mut pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let url = pg.url("postgres");
    let (db_url, file_path) = (url.clone(), file.clone());
    let mut w = World::start_with(Options {
        configure: Some(Box::new(move |c: &mut GatewayConfig| {
            c.controls.audit_database_url = Some(db_url);
            c.controls.audit_file = Some(file_path);
            c.controls.audit_secret = Some("an-audit-secret-of-32-characters".into());
            c.controls.rate_limit_per_minute = 0;
        })),
        ..Options::default()
    })
    .await;
    let mut client = Client::modern(&w.url, &w.token("ana", &["mcp:crm:read"]));
    for _ in 0..5 {
        call(&mut client).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tool_rows(&pg).await < 5 {
        assert!(Instant::now() < deadline, "the rows never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = pg.client("postgres").await;
    let rows = db
        .query(
            "SELECT caller, client_id, tool, backend, status, outcome, latency_ms,
                    line->>'method', extract(epoch FROM now() - time)::float8
             FROM cortex_audit WHERE method = 'tools/call'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for row in &rows {
        let caller: Option<String> = row.get(0);
        let caller = caller.expect("the caller's pseudonym");
        assert!(!caller.contains("ana"), "{caller}");
        assert_eq!(
            row.get::<_, Option<String>>(2).as_deref(),
            Some("crm_search_accounts")
        );
        assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("crm"));
        assert_eq!(row.get::<_, i32>(4), 200);
        assert_eq!(row.get::<_, String>(5), "ok");
        assert!(row.get::<_, f64>(6) >= 0.0);
        assert_eq!(
            row.get::<_, Option<String>>(7).as_deref(),
            Some("tools/call")
        );
        let age: f64 = row.get(8);
        assert!(
            (-60.0..600.0).contains(&age),
            "time is now-ish: {age} s ago"
        );
    }
    // Both sinks are on: the file has the same lines.
    assert_eq!(
        json_lines(&file)
            .iter()
            .filter(|l| l["method"] == "tools/call")
            .count(),
        5
    );

    // Back-dated rows, more than one purge batch of them.
    db.execute(
        "INSERT INTO cortex_audit (time, caller, method, status, outcome, latency_ms, line)
         SELECT now() - interval '40 days', 'old', 'tools/list', 200, 'ok', 1, '{}'::jsonb
         FROM generate_series(1, 25000)",
        &[],
    )
    .await
    .unwrap();
    let purge = || {
        crate::cli::gateway()
            .env("CORTEX_AUDIT_DATABASE_URL", &url)
            .args(["audit", "purge", "--older-than", "30d"])
            .output()
            .unwrap()
    };
    // While another gateway holds the purge lock, nothing is deleted.
    let purge_lock = i64::from_be_bytes(*b"cortex-p");
    db.execute("SELECT pg_advisory_lock($1)", &[&purge_lock])
        .await
        .unwrap();
    let out = purge();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another gateway is purging"));
    db.execute("SELECT pg_advisory_unlock($1)", &[&purge_lock])
        .await
        .unwrap();
    let out = purge();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("25000 rows deleted"), "{said}");
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM cortex_audit WHERE caller = 'old'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert_eq!(tool_rows(&pg).await, 5, "recent rows are kept");
    // A bad age is refused naming what to write.
    let out = crate::cli::gateway()
        .env("CORTEX_AUDIT_DATABASE_URL", &url)
        .args(["audit", "purge", "--older-than", "30 days"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("30d"));
    drop(db);

    // The database goes away: calls still succeed, their lines are
    // dropped and counted.
    pg.stop();
    let before = dropped(&w.base()).await;
    for _ in 0..5 {
        call(&mut client).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped(&w.base()).await < before + 5 {
        assert!(Instant::now() < deadline, "the lost lines were not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back: rows flow again without a restart.
    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tool_rows(&pg).await <= 5 {
        assert!(
            Instant::now() < deadline,
            "no rows after the database came back"
        );
        call(&mut client).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A graceful shutdown waits for the queued rows: with the table
    // locked, their insert waits, and so does the shutdown.
    let mut db = pg.client("postgres").await;
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE cortex_audit IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut bea = Client::modern(&w.url, &w.token("bea", &["mcp:crm:read"]));
    for _ in 0..5 {
        call(&mut bea).await;
    }
    let stopping = tokio::spawn(async move {
        w.shutdown().await;
        w
    });
    let watcher = pg.client("postgres").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'cortex-gateway audit' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the insert never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !stopping.is_finished(),
        "the shutdown ended before the queued rows were written"
    );
    lock.commit().await.unwrap();
    let _w = stopping.await.unwrap();
    let rows: i64 = watcher
        .query_one(
            "SELECT count(*) FROM cortex_audit WHERE line->>'sub' = 'bea'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 5, "every row written before the shutdown ended");
}

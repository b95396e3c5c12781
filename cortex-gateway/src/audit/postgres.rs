//! The PostgreSQL audit sink (`CORTEX_AUDIT_DATABASE_URL`): every line as
//! a row of `cortex_audit`, with typed columns for what operators query
//! and the whole line as `jsonb`, plus a retention purge.
//!
//! The writer thread hands each pass's lines to this sink through a queue
//! bounded by batches ([`QUEUE_BATCHES`]) and bytes ([`QUEUE_BYTES`]); a
//! task writes them with one `INSERT … SELECT FROM unnest($1)` per
//! [`ROWS_PER_INSERT`] lines (PostgreSQL reads the typed columns out of
//! the JSON, so the gateway parses nothing). When the database is slow or
//! down, the queue fills and lines are dropped and counted in
//! `cortex_audit_lines_dropped_total`, as for a stuck file: requests never
//! wait for the audit. After a failure the task waits (0.25 s doubling up
//! to [`MAX_BACKOFF`]), dropping what arrives meanwhile, then connects
//! again: it recovers without a restart.
//!
//! The purge deletes rows older than the retention, [`PURGE_BATCH`] rows
//! per statement (each its own short transaction), under the session
//! advisory lock [`PURGE_LOCK`]: with several replicas, one purges at a
//! time and the others skip their turn.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_postgres::{Client, Config};

use super::sink::DropCounter;
use crate::{
    config_error::ConfigError,
    vault::{PgTls, VaultStorage, pg_error_text},
};

/// Batches (one per writer pass) that may wait for the database.
pub(crate) const QUEUE_BATCHES: usize = 256;
/// Bytes of lines that may wait for the database.
pub(crate) const QUEUE_BYTES: usize = 8 << 20;
/// Lines per `INSERT`.
pub(crate) const ROWS_PER_INSERT: usize = 1000;
/// Rows per purge `DELETE`.
pub(crate) const PURGE_BATCH: i64 = 10_000;
/// The longest wait before connecting again after a failure.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a gateway tries to purge.
pub(crate) const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// A statement that takes longer counts as failed (the lines dropped).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a graceful shutdown waits for the queued lines to be
/// written.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// The transaction-scoped lock taken while migrating.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"cortex-a");
/// The session lock held by the replica purging.
pub(crate) const PURGE_LOCK: i64 = i64::from_be_bytes(*b"cortex-p");

/// The numbered migrations of the audit table, each applied once
/// (recorded in `cortex_audit_schema`).
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS cortex_audit (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time TIMESTAMPTZ NOT NULL,
        caller TEXT,
        client_id TEXT,
        method TEXT,
        tool TEXT,
        backend TEXT,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        line JSONB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS cortex_audit_time ON cortex_audit (time);
    CREATE INDEX IF NOT EXISTS cortex_audit_caller_time ON cortex_audit (caller, time);",
)];

/// One batch of lines as PostgreSQL rows: the typed columns read from the
/// JSON of each line.
const INSERT: &str = "INSERT INTO cortex_audit
    (time, caller, client_id, method, tool, backend, status, outcome, latency_ms, line)
    SELECT (j->>'time')::timestamptz, j->>'caller', j->>'client_id', j->>'method', j->>'tool',
           j->>'backend', (j->>'status')::integer, j->>'outcome',
           (j->>'latency_ms')::double precision, j
    FROM (SELECT unnest($1::text[])::jsonb AS j) AS lines";

/// One purge step: the oldest expired rows, at most [`PURGE_BATCH`].
const PURGE: &str = "DELETE FROM cortex_audit WHERE id IN (
    SELECT id FROM cortex_audit WHERE time < now() - make_interval(secs => $1) LIMIT $2)";

/// Where the audit rows go, and how long they are kept.
#[derive(Clone)]
pub(crate) struct AuditDatabase {
    config: Config,
    tls: PgTls,
    /// Rows older than this are purged; `None`: kept.
    retention: Option<Duration>,
}

impl std::fmt::Debug for AuditDatabase {
    /// No password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditDatabase")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The variable of the database URL.
const URL_VARIABLE: &str = "CORTEX_AUDIT_DATABASE_URL";

impl AuditDatabase {
    /// From `CORTEX_AUDIT_DATABASE_URL`, `CORTEX_AUDIT_DATABASE_CA_FILE` and
    /// `CORTEX_AUDIT_RETENTION_DAYS` (0: keep). The same TLS rules as the
    /// vault's database: a host other than loopback never gets plaintext.
    pub(crate) fn from_settings(
        url: &str,
        ca_file: Option<&Path>,
        retention_days: u32,
    ) -> Result<Self, ConfigError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                URL_VARIABLE,
                "use a PostgreSQL URL, e.g. postgres://cortex_audit:<password>@db.example.com:5432/audit",
            ));
        }
        let mut storage = VaultStorage::postgres(URL_VARIABLE, url)?;
        if let Some(file) = ca_file {
            let variable = "CORTEX_AUDIT_DATABASE_CA_FILE";
            let pem = std::fs::read(file).map_err(|e| {
                ConfigError::new(variable, format!("cannot read `{}`: {e}", file.display()))
            })?;
            storage = storage.with_ca_pem(variable, &pem)?;
        }
        let VaultStorage::Postgres {
            mut config,
            tls_roots,
        } = storage
        else {
            return Err(ConfigError::new(URL_VARIABLE, "not a PostgreSQL URL"));
        };
        config.application_name("cortex-gateway audit");
        let tls = PgTls::for_roots(&tls_roots)
            .map_err(|e| ConfigError::new(URL_VARIABLE, e.to_string()))?;
        Ok(Self {
            config: *config,
            tls,
            retention: (retention_days > 0)
                .then(|| Duration::from_secs(u64::from(retention_days) * 86_400)),
        })
    }

    /// A new connection (its driver runs as a task of its own).
    async fn connect(&self) -> Result<Client, String> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| format!("cannot connect: {}", pg_error_text(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("the audit database connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// Connects and creates the table if missing (at start: a database
    /// that cannot be reached or used stops the start).
    pub(crate) async fn prepare(&self) -> Result<(), ConfigError> {
        let fail = |e: String| {
            ConfigError::new(
                URL_VARIABLE,
                format!(
                    "the audit database cannot be used: {e}; check the URL, the credentials and that the user may create a table"
                ),
            )
        };
        let mut client = self.connect().await.map_err(fail)?;
        migrate(&mut client)
            .await
            .map_err(|e| fail(pg_error_text(&e)))
    }

    /// Starts the task that writes the lines, and the periodic purge when
    /// a retention is set. Abort the tasks when the gateway goes.
    pub(crate) fn start(self, queue: Queue, dropped: DropCounter) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(write_rows(self.clone(), queue, dropped))];
        if let Some(retention) = self.retention {
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(PURGE_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    match self.purge(retention).await {
                        Ok(Some(0) | None) => {}
                        Ok(Some(n)) => tracing::info!(
                            deleted = n,
                            "audit rows older than the retention purged"
                        ),
                        Err(e) => tracing::warn!("the audit purge failed: {e}"),
                    }
                }
            }));
        }
        tasks
    }

    /// The retention (`None`: rows are kept).
    pub(crate) fn retention(&self) -> Option<Duration> {
        self.retention
    }

    /// Deletes the rows older than `older_than`, a batch at a time;
    /// `None` when another gateway holds the purge lock.
    pub(crate) async fn purge(&self, older_than: Duration) -> Result<Option<u64>, String> {
        let client = self.connect().await?;
        let text = |e: tokio_postgres::Error| pg_error_text(&e);
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PURGE_LOCK])
            .await
            .map_err(text)?
            .get(0);
        if !locked {
            return Ok(None);
        }
        let seconds = older_than.as_secs_f64();
        let mut deleted = 0u64;
        loop {
            let n = client
                .execute(PURGE, &[&seconds, &PURGE_BATCH])
                .await
                .map_err(text)?;
            deleted += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        // The lock also ends with the connection.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&PURGE_LOCK])
            .await;
        Ok(Some(deleted))
    }
}

async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS cortex_audit_schema
            (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM cortex_audit_schema", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO cortex_audit_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
    }
    tx.commit().await
}

/// The database sink's end of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    rx: mpsc::Receiver<Batch>,
    queued: Arc<AtomicUsize>,
    progress: Arc<Progress>,
}

/// A new queue from the writer thread to the database sink.
pub(crate) fn queue() -> (DatabaseFeed, Queue) {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let queued = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Progress::default());
    (
        DatabaseFeed {
            tx,
            queued: queued.clone(),
            progress: progress.clone(),
        },
        Queue {
            rx,
            queued,
            progress,
        },
    )
}

/// Batches queued for the database and not yet written or dropped.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pending: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Progress {
    /// One batch written or dropped.
    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until every batch queued so far is written or dropped, for
    /// at most [`DRAIN_LIMIT`] (a graceful shutdown).
    pub(crate) async fn drained(&self) {
        let all = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_LIMIT, all).await;
    }
}

/// One writer pass's lines.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// The writer thread's side of the database queue.
#[derive(Debug)]
pub(crate) struct DatabaseFeed {
    tx: mpsc::Sender<Batch>,
    queued: Arc<AtomicUsize>,
    progress: Arc<Progress>,
}

impl DatabaseFeed {
    /// Queues `bytes` (`lines` whole lines) for the database, or counts
    /// them as dropped when the queue is full; never waits.
    pub(crate) fn offer(&self, bytes: Vec<u8>, lines: u64, dropped: &DropCounter) {
        let len = bytes.len();
        self.progress.pending.fetch_add(1, Ordering::AcqRel);
        let full = self.queued.fetch_add(len, Ordering::AcqRel) + len > QUEUE_BYTES
            || self.tx.try_send(Batch { bytes, lines }).is_err();
        if full {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.progress.done();
            dropped.count(
                lines,
                "the audit database cannot keep up or cannot be reached",
            );
        }
    }

    /// What a graceful shutdown waits for.
    pub(crate) fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }
}

/// Writes the queued lines; reconnects after a failure (waiting longer
/// after each one in a row), dropping what arrives while it waits.
async fn write_rows(database: AuditDatabase, queue: Queue, dropped: DropCounter) {
    let Queue {
        mut rx,
        queued,
        progress,
    } = queue;
    let mut link = Link {
        client: None,
        backoff: Duration::ZERO,
        retry_at: Instant::now(),
    };
    while let Some(batch) = rx.recv().await {
        queued.fetch_sub(batch.bytes.len(), Ordering::AcqRel);
        link.write(&database, &batch, &dropped).await;
        progress.done();
    }
}

/// The sink's connection and its state after failures.
struct Link {
    client: Option<Client>,
    backoff: Duration,
    retry_at: Instant,
}

impl Link {
    /// Writes one batch, or counts its lines as dropped.
    async fn write(&mut self, database: &AuditDatabase, batch: &Batch, dropped: &DropCounter) {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            if Instant::now() < self.retry_at {
                dropped.count(batch.lines, "the audit database cannot be reached");
                return;
            }
            match tokio::time::timeout(STATEMENT_TIMEOUT, database.connect()).await {
                Ok(Ok(c)) => self.client = Some(c),
                Ok(Err(e)) => {
                    self.failed(&e);
                    dropped.count(batch.lines, "the audit database cannot be reached");
                    return;
                }
                Err(_) => {
                    self.failed("connecting timed out");
                    dropped.count(batch.lines, "the audit database cannot be reached");
                    return;
                }
            }
        }
        let Some(c) = &self.client else { return };
        match insert(c, batch).await {
            Ok(()) => {
                if self.backoff > Duration::ZERO {
                    tracing::info!("the audit database is back; audit rows are written again");
                    self.backoff = Duration::ZERO;
                }
            }
            Err((written, e)) => {
                self.failed(&e);
                dropped.count(
                    batch.lines.saturating_sub(written),
                    "the audit database failed",
                );
                self.client = None;
            }
        }
    }

    /// Notes a failure: warns on the first of a row, and sets the next
    /// try.
    fn failed(&mut self, e: &str) {
        if self.backoff.is_zero() {
            tracing::warn!(
                "the audit database failed: {e}; audit lines are dropped (and counted) until it is back"
            );
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
        self.retry_at = Instant::now() + self.backoff;
    }
}

/// Inserts the batch's lines, [`ROWS_PER_INSERT`] per statement; on a
/// failure, the lines written before it and the error.
async fn insert(client: &Client, batch: &Batch) -> Result<(), (u64, String)> {
    let text = String::from_utf8_lossy(&batch.bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut written = 0u64;
    for chunk in lines.chunks(ROWS_PER_INSERT) {
        let done = tokio::time::timeout(STATEMENT_TIMEOUT, client.execute(INSERT, &[&chunk]))
            .await
            .map_err(|_| "an insert timed out".to_string())
            .and_then(|r| r.map_err(|e| pg_error_text(&e)));
        match done {
            Ok(_) => written += chunk.len() as u64,
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}

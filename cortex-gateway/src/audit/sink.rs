//! Where lines go: a bounded in-memory queue drained by one writer thread,
//! so a slow disk or pipe never delays a request. When the queue is full,
//! lines are counted as dropped (and the count logged) instead of blocking.
//!
//! Why a thread and not a task: a busy gateway writes thousands of lines a
//! second. Waking a writer task for each line, and sending each write
//! through Tokio's blocking pool (`tokio::fs`), cost two or three thread
//! hand-offs per request, the largest single cost of a `tools/call` in
//! `docs/performance.md`. Here a request only pushes onto the queue; the
//! writer is woken by the first line after an idle spell, then, while lines
//! keep coming, wakes on its own every [`FLUSH_INTERVAL`] and writes
//! everything queued in one go. A line is therefore written at most
//! [`FLUSH_INTERVAL`] after its request ended (at once when the gateway is
//! quiet), and [`AuditSink::flush`] writes at once (shutdown).

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::Thread,
    time::Duration,
};

use tokio::sync::oneshot;

use super::AuditRecord;

/// Lines that may wait for the writer.
pub const QUEUE: usize = 8192;

/// The longest a line waits in the queue while the gateway is busy.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// The sending half, shared by every request.
#[derive(Debug, Clone)]
pub struct AuditSink {
    handle: Arc<Handle>,
}

/// Closes the queue when the last [`AuditSink`] clone goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// The writer is parked without a deadline (nothing was queued): the
    /// next line must wake it.
    idle: AtomicBool,
    writer: OnceLock<Thread>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Queue {
    lines: Vec<AuditRecord>,
    flushes: Vec<oneshot::Sender<()>>,
    closed: bool,
}

/// The writer thread; await [`AuditWriter::finish`] after the last request
/// to have everything queued written.
#[derive(Debug)]
pub struct AuditWriter {
    done: oneshot::Receiver<()>,
}

impl AuditWriter {
    /// Waits until every queued line is written (all senders dropped).
    pub async fn finish(self) {
        let _ = self.done.await;
    }
}

/// The audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the audit file {path}: {reason}; check the path (--audit-file, CORTEX_AUDIT_FILE) and the directory's permissions"
)]
pub struct AuditFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl AuditSink {
    /// Lines to standard output.
    pub fn stdout() -> (Self, AuditWriter) {
        Self::spawn(std::io::stdout())
    }

    /// Lines appended to `path` (created with mode 0600).
    pub fn file(path: &Path) -> Result<(Self, AuditWriter), AuditFileError> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| AuditFileError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self::spawn(file))
    }

    /// Lines written to any writer, by a thread of their own.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> (Self, AuditWriter) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            idle: AtomicBool::new(false),
            writer: OnceLock::new(),
            dropped: Arc::new(AtomicU64::new(0)),
        });
        let (done_tx, done) = oneshot::channel();
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cortex-audit".into())
            .spawn(move || {
                write_lines(&writer_shared, out);
                let _ = done_tx.send(());
            });
        match thread {
            Ok(t) => {
                let _ = shared.writer.set(t.thread().clone());
            }
            Err(e) => {
                // Without a writer every line counts as dropped (and the
                // metrics say so) rather than piling up in memory.
                tracing::error!("cannot start the audit writer thread: {e}");
                shared.lock().closed = true;
            }
        }
        (
            Self {
                handle: Arc::new(Handle { shared }),
            },
            AuditWriter { done },
        )
    }

    /// Queues one line; never waits for the output.
    pub fn write(&self, record: AuditRecord) {
        let shared = &self.handle.shared;
        let queued = {
            let mut queue = shared.lock();
            if queue.closed || queue.lines.len() >= QUEUE {
                false
            } else {
                queue.lines.push(record);
                true
            }
        };
        if !queued {
            let n = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    dropped = n,
                    "audit lines dropped: the audit output cannot keep up; use a faster disk or pipe"
                );
            }
            return;
        }
        if shared.idle.swap(false, Ordering::AcqRel) {
            shared.wake();
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.handle.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written and
    /// flushed (used at shutdown).
    pub async fn flush(&self) {
        let shared = &self.handle.shared;
        let (done, wait) = oneshot::channel();
        {
            let mut queue = shared.lock();
            if queue.closed {
                return;
            }
            queue.flushes.push(done);
        }
        shared.wake();
        let _ = wait.await;
    }

    /// The dropped-line counter itself (for the metrics).
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.handle.shared.dropped.clone()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

fn write_lines<W: Write>(shared: &Shared, out: W) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut lines = Vec::new();
    let mut flushes = Vec::new();
    let mut line = Vec::with_capacity(512);
    loop {
        let closed = {
            let mut queue = shared.lock();
            std::mem::swap(&mut lines, &mut queue.lines);
            std::mem::swap(&mut flushes, &mut queue.flushes);
            queue.closed
        };
        let busy = !lines.is_empty();
        for record in lines.drain(..) {
            line.clear();
            record.write_json(&mut line);
            line.push(b'\n');
            if let Err(e) = out.write_all(&line) {
                let n = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(dropped = n, "cannot write an audit line: {e}");
                }
            }
        }
        if busy && let Err(e) = out.flush() {
            tracing::error!("cannot flush the audit output: {e}");
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if closed {
            break;
        }
        if busy {
            // Lines are coming in: collect for a while instead of being
            // woken by each one.
            std::thread::park_timeout(FLUSH_INTERVAL);
        } else {
            shared.idle.store(true, Ordering::Release);
            // A line queued between the swap above and `idle` being set
            // would find `idle` false and not wake us: look once more.
            let pending = {
                let queue = shared.lock();
                !queue.lines.is_empty() || !queue.flushes.is_empty() || queue.closed
            };
            if pending {
                shared.idle.store(false, Ordering::Release);
            } else {
                std::thread::park();
                shared.idle.store(false, Ordering::Release);
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16) -> AuditRecord {
        AuditRecord {
            status,
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn lines_are_json_and_flushed_on_finish() {
        let path = crate::integrity::temp_path("audit").with_file_name("audit.jsonl");
        let (sink, writer) = AuditSink::file(&path).unwrap();
        for i in 0..3 {
            sink.write(record(200 + i));
        }
        sink.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        sink.write(record(203));
        drop(sink);
        writer.finish().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2]["status"], 202);
        assert_eq!(lines[3]["status"], 203);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// A line written while the gateway is quiet reaches the output without
    /// a flush (the writer is woken, not left waiting for a deadline).
    #[tokio::test]
    async fn a_lone_line_is_written_without_a_flush() {
        let path = crate::integrity::temp_path("audit-lone").with_file_name("audit-lone.jsonl");
        let (sink, _writer) = AuditSink::file(&path).unwrap();
        // Let the writer go idle first.
        tokio::time::sleep(FLUSH_INTERVAL * 3).await;
        sink.write(record(200));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was not written within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A writer that blocks forever: lines beyond the queue are counted as
    /// dropped and `write` never waits.
    #[test]
    fn a_stuck_output_drops_lines_instead_of_blocking() {
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Err(std::io::Error::other("closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (sink, _writer) = AuditSink::spawn(Stuck(stuck));
        // The writes run on a thread of their own, so that a `write` that
        // blocks fails the test instead of hanging it.
        let (done, finished) = std::sync::mpsc::channel();
        let writer_sink = sink.clone();
        std::thread::spawn(move || {
            for i in 0..(QUEUE * 3) {
                writer_sink.write(record(200 + (i % 100) as u16));
            }
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "writing to the queue blocked on a stuck output"
        );
        // The writer took at most one batch before blocking; the rest of
        // what did not fit was dropped.
        assert!(sink.dropped() >= QUEUE as u64, "{}", sink.dropped());
        drop(release);
    }
}

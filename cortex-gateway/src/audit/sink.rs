//! Where lines go: bounded in-memory buffers drained by one writer thread,
//! so a slow disk or pipe never delays a request. Each buffer is bounded by
//! lines ([`QUEUE`]) and by bytes ([`QUEUE_BYTES`]); when either is
//! reached, lines are counted as dropped (`cortex_audit_lines_dropped_total`,
//! and the count logged) instead of blocking.
//!
//! Why a thread and not a task: a busy gateway writes thousands of lines a
//! second. Waking a writer task for each line, and sending each write
//! through Tokio's blocking pool (`tokio::fs`), cost two or three thread
//! hand-offs per request, the largest single cost of a `tools/call` in
//! `docs/performance.md`. Here a request only appends its line to a buffer;
//! the writer is woken by the first line after an idle spell, then, while
//! lines keep coming, wakes on its own every [`FLUSH_INTERVAL`] and writes
//! everything buffered in one go. A line is therefore written at most
//! [`FLUSH_INTERVAL`] after its request ended (at once when the gateway is
//! quiet), and [`AuditSink::flush`] writes at once (shutdown).
//!
//! Each line is serialized by the thread that served the request, into a
//! buffer of that thread's slot ([`crate::sync::thread_slot`]), and the record is
//! freed there too. The writer only swaps buffers and writes bytes. When
//! the writer serialized the records itself, it took a core for a burst of
//! a few hundred lines every 10 ms, stalling every connection of the serving
//! thread it displaced (the benchmark's p99), and freed memory allocated by
//! other threads, which takes their allocator's lock. The lines of one
//! flush are grouped by serving thread, so two requests served on different
//! threads within the same 10 ms may be written out of order; each line
//! carries its own `time`.
//!
//! The writer puts each pass's lines to its outputs: the file
//! ([`super::file`], reopened between two passes after
//! [`AuditSink::reopen`]) or standard output, and the database sink's
//! bounded queue ([`super::postgres`]), which drops and counts what does
//! not fit as the buffers here do.

use std::{
    io::Write,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::Thread,
    time::Duration,
};

use tokio::sync::oneshot;

#[cfg(test)]
use super::file::{AuditFile, AuditFileError, Rotation};
use super::{
    AuditRecord,
    postgres::{DatabaseFeed, Progress},
};
use crate::sync::lock;

/// Lines that may wait for the writer, per serving thread.
pub(crate) const QUEUE: usize = 8192;

/// Bytes of lines that may wait for the writer, per serving thread (a
/// line is at most [`super::MAX_LINE_BYTES`], so a buffer holds at most
/// this plus one line).
pub(crate) const QUEUE_BYTES: usize = 2 << 20;

/// The longest a line waits in the queue while the gateway is busy.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// The sending half, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    handle: Arc<Handle>,
}

/// Closes the queue when the last [`AuditSink`] clone goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Serialized lines waiting for the writer, one buffer per thread slot.
    slots: Box<[Slot]>,
    control: Mutex<Control>,
    /// No more lines are taken (the last sink is gone, or no writer).
    closed: AtomicBool,
    /// The writer is parked without a deadline (nothing was queued): the
    /// next line must wake it.
    idle: AtomicBool,
    writer: OnceLock<Thread>,
    dropped: DropCounter,
    /// The audit file is to be reopened (SIGHUP).
    reopen: AtomicBool,
    reopen_failures: Arc<AtomicU64>,
    /// The database sink's progress (a flush waits for it).
    database: Option<Arc<Progress>>,
}

/// `cortex_audit_lines_dropped_total`, shared by every stage that may drop
/// a line.
#[derive(Debug, Clone, Default)]
pub(crate) struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    /// Counts `lines` as dropped, logging `why` when the count passes a
    /// power of two (rarely, but the log follows its growth).
    pub(crate) fn count(&self, lines: u64, why: &str) {
        if lines == 0 {
            return;
        }
        let before = self.0.fetch_add(lines, Ordering::Relaxed);
        if (before + lines).ilog2() != before.checked_ilog2().unwrap_or(u32::MAX) {
            tracing::error!(dropped = before + lines, "audit lines dropped: {why}");
        }
    }
}

/// Where the writer thread puts lines: whole lines, a batch at a time.
pub(crate) trait Output: Send + 'static {
    /// Writes `lines` (each ending in `\n`).
    fn write_lines(&mut self, lines: &[u8]) -> std::io::Result<()>;
    /// Hands what is buffered to the system.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Opens the destination again (a file moved away by logrotate).
    fn reopen(&mut self) {}
}

/// Standard output, buffered.
pub(crate) fn stdout() -> Box<dyn Output> {
    stream(std::io::stdout())
}

/// Any writer, buffered.
fn stream<W: Write + Send + 'static>(out: W) -> Box<dyn Output> {
    Box::new(Stream(std::io::BufWriter::with_capacity(64 * 1024, out)))
}

/// Any writer (standard output, a test's buffer), buffered.
struct Stream<W: Write>(std::io::BufWriter<W>);

impl<W: Write + Send + 'static> Output for Stream<W> {
    fn write_lines(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.0.write_all(lines)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// What the writer thread writes to.
pub(crate) struct Outputs {
    /// A file or a stream; `None`: the database only.
    pub(crate) primary: Option<Box<dyn Output>>,
    /// The database sink's queue.
    pub(crate) database: Option<DatabaseFeed>,
    /// Failed reopens and rotations of the file.
    pub(crate) reopen_failures: Arc<AtomicU64>,
}

/// One thread slot's waiting lines, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Lines, each ending in `\n`.
    bytes: Vec<u8>,
    lines: usize,
}

#[derive(Debug, Default)]
struct Control {
    flushes: Vec<oneshot::Sender<()>>,
    closed: bool,
}

/// The writer thread; await [`AuditWriter::finish`] after the last request
/// to have everything queued written.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    #[cfg_attr(not(test), allow(dead_code))]
    done: oneshot::Receiver<()>,
}

impl AuditWriter {
    #[cfg(test)]
    /// Waits until every queued line is written (all senders dropped).
    pub(crate) async fn finish(self) {
        let _ = self.done.await;
    }
}

impl AuditSink {
    /// Lines appended to `path` (see [`super::file::open`]), rotated by
    /// size per `rotation`, and reopened by [`AuditSink::reopen`].
    #[cfg(test)]
    pub(crate) fn file(
        path: &std::path::Path,
        rotation: Rotation,
    ) -> Result<(Self, AuditWriter), AuditFileError> {
        let failures = Arc::new(AtomicU64::new(0));
        let file = AuditFile::open(path, rotation, failures.clone())?;
        Ok(Self::start(Outputs {
            primary: Some(Box::new(file)),
            database: None,
            reopen_failures: failures,
        }))
    }

    /// Lines written to any writer, by a thread of their own.
    #[cfg(test)]
    pub(crate) fn spawn<W: Write + Send + 'static>(out: W) -> (Self, AuditWriter) {
        Self::start(Outputs {
            primary: Some(stream(out)),
            database: None,
            reopen_failures: Arc::default(),
        })
    }

    /// Lines written to `outputs` by a thread of their own.
    pub(crate) fn start(outputs: Outputs) -> (Self, AuditWriter) {
        let shared = Arc::new(Shared {
            slots: (0..crate::sync::THREAD_SLOTS)
                .map(|_| Slot::default())
                .collect(),
            control: Mutex::new(Control::default()),
            closed: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            writer: OnceLock::new(),
            dropped: DropCounter::default(),
            reopen: AtomicBool::new(false),
            reopen_failures: outputs.reopen_failures.clone(),
            database: outputs.database.as_ref().map(DatabaseFeed::progress),
        });
        let (done_tx, done) = oneshot::channel();
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cortex-audit".into())
            .spawn(move || {
                write_lines(&writer_shared, outputs);
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
                shared.close();
            }
        }
        (
            Self {
                handle: Arc::new(Handle { shared }),
            },
            AuditWriter { done },
        )
    }

    /// Serializes one line into the calling thread's buffer; never waits
    /// for the output.
    pub(crate) fn write(&self, record: AuditRecord) {
        let shared = &self.handle.shared;
        let queued = !shared.closed.load(Ordering::Acquire) && {
            let mut pending = lock(&shared.slots[crate::sync::thread_slot()].pending);
            if pending.lines >= QUEUE || pending.bytes.len() >= QUEUE_BYTES {
                false
            } else {
                record.write_json(&mut pending.bytes);
                pending.bytes.push(b'\n');
                pending.lines += 1;
                true
            }
        };
        // The record is freed here, on the thread that allocated it.
        drop(record);
        if !queued {
            shared.dropped.count(
                1,
                "the audit output cannot keep up; use a faster disk or pipe",
            );
            return;
        }
        // Read first: the flag is written only when the writer goes idle,
        // so a busy gateway's threads do not write it on every line.
        if shared.idle.load(Ordering::Acquire) && shared.idle.swap(false, Ordering::AcqRel) {
            shared.wake();
        }
    }

    #[cfg(test)]
    /// Lines dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.handle.shared.dropped.0.load(Ordering::Relaxed)
    }

    /// Has the writer reopen the audit file after the batch it is writing
    /// (SIGHUP); nothing for standard output.
    pub(crate) fn reopen(&self) {
        let shared = &self.handle.shared;
        shared.reopen.store(true, Ordering::Release);
        shared.wake();
    }

    /// Failed reopens and rotations of the audit file (for the metrics).
    pub(crate) fn reopen_failures(&self) -> Arc<AtomicU64> {
        self.handle.shared.reopen_failures.clone()
    }

    /// The dropped-line count, for another stage that drops lines (the
    /// database sink).
    pub(crate) fn drops(&self) -> DropCounter {
        self.handle.shared.dropped.clone()
    }

    /// Waits until every line queued before this call is written and
    /// flushed, to the database too (for at most
    /// [`super::postgres::DRAIN_LIMIT`]); used at shutdown.
    pub(crate) async fn flush(&self) {
        let shared = &self.handle.shared;
        let (done, wait) = oneshot::channel();
        {
            let mut control = lock(&shared.control);
            if control.closed {
                return;
            }
            control.flushes.push(done);
        }
        shared.wake();
        let _ = wait.await;
        if let Some(database) = &shared.database {
            database.drained().await;
        }
    }

    /// Bytes waiting for the writer, over every thread's buffer.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.handle
            .shared
            .slots
            .iter()
            .map(|s| lock(&s.pending).bytes.len())
            .sum()
    }

    /// The dropped-line counter itself (for the metrics).
    pub(crate) fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.handle.shared.dropped.0.clone()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
        self.shared.wake();
    }
}

impl Shared {
    fn close(&self) {
        lock(&self.control).closed = true;
        self.closed.store(true, Ordering::Release);
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    /// Whether any slot holds lines, or a flush or the close is waiting.
    fn pending(&self) -> bool {
        let control = lock(&self.control);
        control.closed
            || !control.flushes.is_empty()
            || self.slots.iter().any(|s| lock(&s.pending).lines > 0)
    }
}

fn write_lines(shared: &Shared, outputs: Outputs) {
    let Outputs {
        mut primary,
        database,
        ..
    } = outputs;
    // Swapped with a slot's buffer, so both keep their capacity.
    let mut batch = Vec::new();
    // The lines of one pass for the database sink, and their count.
    let mut for_database = Vec::new();
    let mut database_lines = 0u64;
    let mut flushes = Vec::new();
    loop {
        // Flushes and the close are taken before the buffers: every line
        // queued before `flush` was called is in a buffer by now.
        let closed = {
            let mut control = lock(&shared.control);
            std::mem::swap(&mut flushes, &mut control.flushes);
            control.closed
        };
        // Between two batches: no line is cut across the two files.
        if shared.reopen.swap(false, Ordering::AcqRel)
            && let Some(out) = primary.as_mut()
        {
            out.reopen();
        }
        let mut busy = false;
        for slot in &shared.slots {
            let lines = {
                let mut pending = lock(&slot.pending);
                if pending.lines == 0 {
                    continue;
                }
                std::mem::swap(&mut batch, &mut pending.bytes);
                std::mem::take(&mut pending.lines)
            };
            busy = true;
            if let Some(out) = primary.as_mut()
                && let Err(e) = out.write_lines(&batch)
            {
                shared
                    .dropped
                    .count(lines as u64, &format!("cannot write them: {e}"));
            }
            if database.is_some() {
                for_database.extend_from_slice(&batch);
                database_lines += lines as u64;
            }
            batch.clear();
        }
        if busy
            && let Some(out) = primary.as_mut()
            && let Err(e) = out.flush()
        {
            tracing::error!("cannot flush the audit output: {e}");
        }
        if let Some(db) = &database
            && database_lines > 0
        {
            let lines = std::mem::take(&mut database_lines);
            db.offer(std::mem::take(&mut for_database), lines, &shared.dropped);
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
            // A line queued after the buffers were read but before `idle`
            // was set would find `idle` false and not wake us: look again.
            if shared.pending() {
                shared.idle.store(false, Ordering::Release);
            } else {
                std::thread::park();
                shared.idle.store(false, Ordering::Release);
            }
        }
    }
    if let Some(out) = primary.as_mut() {
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output whose first write blocks until the sender is dropped.
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

    fn record(status: u16) -> AuditRecord {
        AuditRecord {
            status,
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn lines_are_json_and_flushed_on_finish() {
        let path = crate::scratch::temp_path("audit").with_file_name("audit.jsonl");
        let (sink, writer) = AuditSink::file(&path, Rotation::OFF).unwrap();
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

    /// A symbolic link at the audit path is refused (its target is left
    /// alone), and an existing file readable by others is tightened to
    /// 0600.
    #[cfg(unix)]
    #[tokio::test]
    async fn links_are_refused_and_open_files_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::scratch::temp_path("audit-link")
            .parent()
            .unwrap()
            .to_path_buf();
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = AuditSink::file(&link, Rotation::OFF)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(e.contains("CORTEX_AUDIT_FILE"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the link's target was changed");

        let (sink, writer) = AuditSink::file(&victim, Rotation::OFF).unwrap();
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        sink.write(record(200));
        drop(sink);
        writer.finish().await;
        let text = std::fs::read_to_string(&victim).unwrap();
        assert!(text.starts_with("precious{"), "appended: {text}");
    }

    /// Lines from several serving threads (each with a buffer of its own)
    /// are all written, and each thread's lines in the order it wrote them.
    #[tokio::test]
    async fn every_threads_lines_are_written_in_that_threads_order() {
        let path = crate::scratch::temp_path("audit-threads").with_file_name("audit-threads.jsonl");
        let (sink, writer) = AuditSink::file(&path, Rotation::OFF).unwrap();
        std::thread::scope(|scope| {
            for thread in 0..3u16 {
                let sink = &sink;
                scope.spawn(move || {
                    crate::sync::claim_thread_slot(usize::from(thread) + 1);
                    for n in 0..500 {
                        let mut r = record(200 + thread);
                        r.response_bytes = Some(n);
                        sink.write(r);
                    }
                });
            }
        });
        drop(sink);
        writer.finish().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let mut next = [0u64; 3];
        for line in text.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            let thread = usize::from(line["status"].as_u64().unwrap() as u16 - 200);
            assert_eq!(
                line["response_bytes"], next[thread],
                "thread {thread}: {line}"
            );
            next[thread] += 1;
        }
        assert_eq!(next, [500, 500, 500], "every line of every thread");
    }

    /// A line written while the gateway is quiet reaches the output without
    /// a flush (the writer is woken, not left waiting for a deadline).
    #[tokio::test]
    async fn a_lone_line_is_written_without_a_flush() {
        let path = crate::scratch::temp_path("audit-lone").with_file_name("audit-lone.jsonl");
        let (sink, _writer) = AuditSink::file(&path, Rotation::OFF).unwrap();
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

    /// Lines as long as a line can be fill a buffer by bytes long before
    /// its line count: the bytes waiting stay within [`QUEUE_BYTES`] (plus
    /// one line) and the rest is counted as dropped.
    #[test]
    fn the_queue_is_bounded_by_bytes() {
        let (release, stuck) = std::sync::mpsc::channel();
        let (sink, _writer) = AuditSink::spawn(Stuck(stuck));
        let huge = || {
            let mut r = record(200);
            r.path = "\u{1}".repeat(1 << 20);
            r.sub = Some("\u{1}".repeat(1 << 20).into());
            r.bound();
            r
        };
        let mut line = Vec::new();
        huge().write_json(&mut line);
        assert!(line.len() > 3_000, "{}", line.len());
        let writes = QUEUE_BYTES / line.len() * 3;
        assert!(writes < QUEUE, "the byte bound is reached first");
        for _ in 0..writes {
            sink.write(huge());
        }
        // The writer may hold one batch it took before it blocked.
        let queued = sink.queued_bytes();
        assert!(queued <= QUEUE_BYTES + line.len() + 1, "{queued}");
        assert!(
            sink.dropped() as usize >= writes - 2 * (QUEUE_BYTES / line.len() + 1),
            "{} of {writes}",
            sink.dropped()
        );
        drop(release);
    }
}

//! Where lines go: a bounded queue drained by one writer task, so a slow
//! disk or pipe never delays a request. When the queue is full, lines are
//! counted as dropped (and the count logged) instead of blocking.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use super::AuditRecord;

/// Lines that may wait for the writer.
pub const QUEUE: usize = 8192;

/// The sending half, shared by every request.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Message {
    Line(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// The writer task; await [`AuditWriter::finish`] after the last request
/// to flush what is queued.
#[derive(Debug)]
pub struct AuditWriter {
    task: JoinHandle<()>,
}

impl AuditWriter {
    /// Waits until every queued line is written (all senders dropped).
    pub async fn finish(self) {
        let _ = self.task.await;
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
    /// Lines to standard output. Must be called inside a Tokio runtime.
    pub fn stdout() -> (Self, AuditWriter) {
        Self::spawn(tokio::io::stdout())
    }

    /// Lines appended to `path` (created with mode 0600). Must be called
    /// inside a Tokio runtime.
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
        Ok(Self::spawn(tokio::fs::File::from_std(file)))
    }

    /// Lines written to any async writer.
    pub fn spawn<W: AsyncWrite + Unpin + Send + 'static>(out: W) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_lines(rx, out, dropped.clone()));
        (Self { tx, dropped }, AuditWriter { task })
    }

    /// Queues one line; never waits.
    pub fn write(&self, record: AuditRecord) {
        if self.tx.try_send(Message::Line(Box::new(record))).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    dropped = n,
                    "audit lines dropped: the audit output cannot keep up; use a faster disk or pipe"
                );
            }
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line queued before this call is written and
    /// flushed (used at shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The dropped-line counter itself (for the metrics).
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Message>,
    out: W,
    dropped: Arc<AtomicU64>,
) {
    let mut out = tokio::io::BufWriter::new(out);
    let mut line = Vec::with_capacity(512);
    let mut waiting = Vec::new();
    while let Some(message) = rx.recv().await {
        let mut next = Some(message);
        // Write what is queued, then flush once the queue is empty.
        while let Some(message) = next {
            match message {
                Message::Line(record) => {
                    line.clear();
                    if serde_json::to_writer(&mut line, &record).is_ok() {
                        line.push(b'\n');
                        if let Err(e) = out.write_all(&line).await {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::error!("cannot write an audit line: {e}");
                        }
                    }
                }
                Message::Flush(done) => waiting.push(done),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush().await {
            tracing::error!("cannot flush the audit output: {e}");
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    let _ = out.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_json_and_flushed_on_finish() {
        let path = crate::integrity::temp_path("audit").with_file_name("audit.jsonl");
        let (sink, writer) = AuditSink::file(&path).unwrap();
        for i in 0..3 {
            sink.write(AuditRecord {
                status: 200 + i,
                outcome: "ok".into(),
                ..AuditRecord::default()
            });
        }
        sink.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        drop(sink);
        writer.finish().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["status"], 202);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

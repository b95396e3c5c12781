//! The audit file: opened without following links and with its mode
//! tightened, reopened on request (SIGHUP, the logrotate convention), and
//! rotated by size.
//!
//! Both happen in the writer thread between two batches of whole lines,
//! after what was buffered is flushed to the old file: a line is never cut
//! across two files, and none is lost on the way.
//!
//! Size rotation (`CORTEX_AUDIT_MAX_BYTES`): before a line that would take
//! the file past the limit, `audit.log.<keep>` is deleted,
//! `audit.log.<n>` becomes `audit.log.<n+1>`, `audit.log` becomes
//! `audit.log.1`, and a new `audit.log` is opened. A file therefore holds
//! at most the limit, except a file whose only line is longer than it.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use super::sink::Output;

/// The audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the audit file {path}: {reason}; check the path (--audit-file, CORTEX_AUDIT_FILE) and the directory's permissions"
)]
pub(crate) struct AuditFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// How the audit file rotates by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Rotate before the file would exceed this many bytes; 0: never.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` is the newest).
    pub keep: u32,
}

impl Rotation {
    /// No rotation by size.
    #[cfg(test)]
    pub(crate) const OFF: Self = Self {
        max_bytes: 0,
        keep: 0,
    };
}

/// Opens `path` for appending. A new file is created with mode 0600; an
/// existing regular file that others may read or write is tightened to
/// 0600 (and the change logged). A symbolic link at `path` is refused,
/// never followed: a link planted there could send the lines into another
/// file.
pub(crate) fn open(path: &Path) -> Result<File, AuditFileError> {
    let failed = |reason: String| AuditFileError {
        path: path.to_path_buf(),
        reason,
    };
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return failed(
                "it is a symbolic link, which the gateway does not follow for its audit file; \
                 set the path of the file itself"
                    .into(),
            );
        }
        failed(e.to_string())
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.file_type().is_file() && mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    failed(format!(
                        "its mode is {mode:o} (others may read it) and it cannot be set to 600: {e}"
                    ))
                })?;
            tracing::warn!(
                path = %path.display(),
                "the audit file's mode was {mode:o}; set to 600 (owner only)"
            );
        }
    }
    Ok(file)
}

/// The open audit file, as the writer thread's output.
#[derive(Debug)]
pub(crate) struct AuditFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the file, buffered ones included.
    size: u64,
    rotation: Rotation,
    /// Reopens and rotations that failed (the lines stayed in the old
    /// file): `cortex_audit_file_reopen_failures_total`.
    failures: Arc<AtomicU64>,
}

impl AuditFile {
    /// Opens `path` (see [`open`]).
    pub(crate) fn open(
        path: &Path,
        rotation: Rotation,
        failures: Arc<AtomicU64>,
    ) -> Result<Self, AuditFileError> {
        let file = open(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            rotation,
            failures,
        })
    }

    /// Counts a failed reopen or rotation and says so.
    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        let before = self.failures.fetch_add(1, Ordering::Relaxed);
        // Logged when the count passes a power of two: a rotation that
        // keeps failing is tried before every batch.
        if (before + 1).is_power_of_two() {
            tracing::warn!(
                path = %self.path.display(),
                failures = before + 1,
                "cannot {what} the audit file: {e}; lines still go to the open file"
            );
        }
    }

    /// Opens the path again (the old file was moved away or deleted):
    /// what was buffered goes to the old file first.
    fn reopen(&mut self) -> bool {
        if let Err(e) = self.out.flush() {
            tracing::error!("cannot flush the audit file: {e}");
        }
        match open(&self.path) {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.out = BufWriter::with_capacity(64 * 1024, file);
                true
            }
            Err(e) => {
                self.failed("reopen", &e.reason);
                false
            }
        }
    }

    /// `<path>.<n>`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts the numbered files up by one (dropping the oldest), moves
    /// the current file to `.1` and opens a new one.
    fn rotate(&mut self) -> bool {
        if let Err(e) = self.out.flush() {
            self.failed("rotate", &e);
            return false;
        }
        let keep = self.rotation.keep.max(1);
        match std::fs::remove_file(self.numbered(keep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                self.failed("rotate", &e);
                return false;
            }
            _ => {}
        }
        for n in (1..keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    self.failed("rotate", &e);
                    return false;
                }
                _ => {}
            }
        }
        if let Err(e) = std::fs::rename(&self.path, self.numbered(1)) {
            self.failed("rotate", &e);
            return false;
        }
        self.reopen()
    }
}

impl Output for AuditFile {
    fn write_lines(&mut self, mut lines: &[u8]) -> std::io::Result<()> {
        let max = self.rotation.max_bytes;
        if max == 0 {
            self.size += lines.len() as u64;
            return self.out.write_all(lines);
        }
        while !lines.is_empty() {
            let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
            // The whole lines that still fit.
            let mut take = if lines.len() <= room {
                lines.len()
            } else {
                lines[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
            };
            if take == 0 {
                if self.size > 0 && self.rotate() {
                    continue;
                }
                // A line longer than the limit in a new file (alone), or
                // a rotation that failed: the next line goes here anyway.
                take = lines
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(lines.len(), |i| i + 1);
            }
            self.out.write_all(&lines[..take])?;
            self.size += take as u64;
            lines = &lines[take..];
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn reopen(&mut self) {
        if self.reopen() {
            tracing::info!(path = %self.path.display(), "audit file reopened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, width: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let line = format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(width));
            out.extend_from_slice(line.as_bytes());
        }
        out
    }

    /// Lines are split between files only at line ends, no file but a
    /// one-line one exceeds the limit, and only `keep` old files remain.
    #[test]
    fn rotation_cuts_at_line_ends_and_keeps_only_keep_files() {
        let path = crate::scratch::temp_path("audit-rotate").with_file_name("audit.log");
        let rotation = Rotation {
            max_bytes: 1000,
            keep: 3,
        };
        let mut file = AuditFile::open(&path, rotation, Arc::default()).unwrap();
        let batch = lines(60, 50);
        // The writer sends whole lines, several at a time.
        for group in batch
            .split_inclusive(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .chunks(7)
        {
            file.write_lines(&group.concat()).unwrap();
        }
        // One line longer than the limit gets a file of its own.
        file.write_lines(&lines(1, 2000)).unwrap();
        Output::flush(&mut file).unwrap();
        let mut seen = 0;
        for p in [
            path.clone(),
            file.numbered(1),
            file.numbered(2),
            file.numbered(3),
        ] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.ends_with('\n'), "{}", p.display());
            let count = text.lines().count();
            assert!(
                text.len() <= 1000 || count == 1,
                "{}: {} bytes",
                p.display(),
                text.len()
            );
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
            seen += count;
        }
        assert!(!file.numbered(4).exists());
        assert!(seen < 61, "the oldest files were deleted: {seen}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().lines().count(),
            1,
            "the long line is alone"
        );
    }
}

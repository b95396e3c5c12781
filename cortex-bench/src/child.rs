//! Child processes of the driver: the roles (this binary re-executed) and
//! the gateway, each ready when it prints a `listening on` line, and their
//! CPU time and memory read from `/proc`.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    process::Command,
    sync::mpsc,
};

/// How long a child may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`.
const TICKS_PER_SECOND: u64 = 100;
const KEPT_LOG_LINES: usize = 20;

/// A running child process, killed when dropped.
pub(crate) struct Child {
    name: String,
    child: tokio::process::Child,
    _lifeline: Option<tokio::process::ChildStdin>,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Child {
    /// Starts `program args` with `env` added, and waits for a line
    /// containing `listening on [http://]ADDR` on stdout or stderr. When
    /// the line's address has port 0 or cannot be read, `expected` is used.
    pub(crate) async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        expected: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // The roles exit when this pipe closes, so a driver that is
            // killed (no destructor runs) leaves no process behind.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        let lifeline = child.stdin.take();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, mut ready_rx) = mpsc::channel(2);
        if let Some(out) = child.stdout.take() {
            drain(out, log.clone(), ready_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, log.clone(), ready_tx);
        }
        let line = tokio::time::timeout(READY_TIMEOUT, ready_rx.recv()).await;
        let addr = match line {
            Ok(Some(line)) => parse_ready(&line).filter(|a| a.port() != 0).or(expected),
            Ok(None) => None,
            Err(_) => bail!(
                "{name} printed no `listening on` line within {READY_TIMEOUT:?}; its last output:\n{}",
                tail(&log)
            ),
        };
        let Some(addr) = addr else {
            bail!(
                "{name} stopped before it was ready; its last output:\n{}",
                tail(&log)
            );
        };
        Ok(Self {
            name: name.to_owned(),
            child,
            _lifeline: lifeline,
            addr,
            log,
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.name))
    }

    /// User plus system CPU time used so far (all threads).
    pub(crate) fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // Fields after the command name (which may contain spaces) start at
        // field 3; utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("unreadable /proc/<pid>/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(i)
                .context("short /proc/<pid>/stat")?
                .parse::<u64>()?)
        };
        let total = ticks(11)? + ticks(12)?;
        Ok(Duration::from_millis(total * 1000 / TICKS_PER_SECOND))
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in KiB.
    pub(crate) fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/<pid>/status"))
    }

    /// The last lines it printed (for error messages).
    pub(crate) fn last_output(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn drain(
    stream: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    ready: mpsc::Sender<String>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut announced = false;
        while let Ok(Some(line)) = lines.next_line().await {
            if !announced && line.contains("listening on") {
                announced = true;
                let _ = ready.send(line.clone()).await;
            }
            let mut log = cortex_backend::sync::lock(&log);
            if log.len() == KEPT_LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = cortex_backend::sync::lock(log);
    log.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// Reads the address out of `... listening on [http://]ADDR[, ...]`.
fn parse_ready(line: &str) -> Option<SocketAddr> {
    let after = line.split("listening on").nth(1)?.trim_start();
    let after = after.strip_prefix("http://").unwrap_or(after);
    let end = after
        .find(|c: char| c.is_whitespace() || c == ',' || c == '/')
        .unwrap_or(after.len());
    after[..end].parse().ok()
}

/// A free loopback port (bound then released: for children that cannot
/// report the port they bound).
pub(crate) fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

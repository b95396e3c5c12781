//! Node.js parts of the e2e tests (`oauth/*.mjs`) as child processes: each
//! prints one JSON line when it listens (the readiness check) and exits
//! when its stdin closes, so it never outlives the test process.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// How long a script may take to print its ready line (a cold Node start
/// on a loaded 2-core machine takes a few seconds).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Keeps at most this much of a script's output, for error messages.
const OUTPUT_KEPT: usize = 16 * 1024;

fn keep(output: &Mutex<String>, line: &str) {
    let mut kept = cortex_backend::sync::lock(output);
    if kept.len() + line.len() < OUTPUT_KEPT {
        kept.push_str(line);
        kept.push('\n');
    }
}

/// A running script; dropping the handle kills it at once.
#[derive(Debug)]
pub struct NodeProcess {
    ready: Value,
    child: Child,
    _stdin: ChildStdin,
}

impl NodeProcess {
    /// Starts `script` with `node` and `config` (the script's JSON argument)
    /// and waits for its ready line, a JSON object. `what` names it in
    /// errors.
    pub fn start(node: &Path, script: &Path, config: &Value, what: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(node)
            .arg(script)
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} {}", node.display(), script.display()))?;
        let stdin = child.stdin.take().context("the script's stdin")?;
        let stdout = child.stdout.take().context("the script's stdout")?;
        let stderr = child.stderr.take().context("the script's stderr")?;
        // Both pipes are read until the script exits (oidc-provider prints
        // notices on stdout after the ready line; a closed pipe would make
        // it fail); the start of its output is kept for error messages.
        let output = Arc::new(Mutex::new(String::new()));
        let (ready, line) = mpsc::channel();
        let stdout_reader = std::thread::spawn({
            let output = output.clone();
            move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(first)) = lines.next() {
                    let _ = ready.send(first);
                }
                for line in lines.map_while(Result::ok) {
                    keep(&output, &line);
                }
            }
        });
        let stderr_reader = std::thread::spawn({
            let output = output.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    keep(&output, &line);
                }
            }
        });
        let first = line.recv_timeout(READY_LIMIT).ok();
        let parsed = first
            .as_deref()
            .and_then(|first| serde_json::from_str::<Value>(first.trim()).ok())
            .filter(Value::is_object);
        let Some(ready) = parsed else {
            // Everything the script said, once it has stopped saying it.
            let _ = child.kill();
            let _ = child.wait();
            let _ = stdout_reader.join();
            let _ = stderr_reader.join();
            let output = output.lock().map(|o| o.clone()).unwrap_or_default();
            bail!(
                "{what} did not start (no ready line within {READY_LIMIT:?}; first line \
                 {first:?}); its output:\n{output}"
            );
        };
        Ok(Self {
            ready,
            child,
            _stdin: stdin,
        })
    }

    /// A text field of the ready line.
    pub fn field(&self, name: &str) -> anyhow::Result<String> {
        self.ready[name]
            .as_str()
            .map(String::from)
            .with_context(|| format!("no \"{name}\" in the ready line {}", self.ready))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

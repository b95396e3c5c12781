//! Scratch files for unit tests.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

/// A unique temporary file path (`baseline.json` in a fresh directory).
pub(crate) fn temp_path(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "cortex-integrity-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir.join("baseline.json")
}

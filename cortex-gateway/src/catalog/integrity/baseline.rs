//! The baseline file: approved definitions and open quarantines, written
//! atomically (a new temporary file with a random name and mode 0600,
//! fsync, rename, fsync of the directory), read strictly (any doubt is
//! corruption).

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;

/// The file format version this build reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// A tool withheld until an operator approves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quarantine {
    /// The public (MCP) name of the tool.
    pub public: String,
    /// The fields that differ from the approved definition.
    pub changed: Vec<String>,
    /// The fingerprint of the definition now offered (what approval accepts).
    pub pending: Fingerprint,
    /// When the change was first seen (seconds since the Unix epoch).
    pub since: u64,
}

/// The whole file. Maps are `backend id -> tool name (in the backend) -> ...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Baseline {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Approved fingerprints.
    pub approved: BTreeMap<String, BTreeMap<String, Fingerprint>>,
    /// Open quarantines.
    #[serde(default)]
    pub quarantined: BTreeMap<String, BTreeMap<String, Quarantine>>,
}

/// Why the baseline file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BaselineError {
    /// It exists but cannot be read or parsed.
    #[error(
        "the tool-integrity baseline {path} is unreadable or corrupt ({reason}); it is left untouched. \
         Restore it from a backup, or delete it to trust the current definitions again (every tool \
         is then re-approved as first seen)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Writing it failed.
    #[error(
        "cannot write the tool-integrity baseline {path}: {reason}; check the directory's permissions and free space"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl Baseline {
    /// Reads `path`; `Ok(None)` when it does not exist yet.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, BaselineError> {
        let corrupt = |reason: String| BaselineError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let baseline: Self = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if baseline.format != FORMAT {
            return Err(corrupt(format!(
                "format {} is not the format {FORMAT} this gateway reads",
                baseline.format
            )));
        }
        Ok(Some(baseline))
    }

    /// Replaces `path` atomically with this baseline (mode 0600).
    pub(crate) fn store(&self, path: &Path) -> Result<(), BaselineError> {
        let failed = |e: std::io::Error| BaselineError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|e| failed(std::io::Error::other(e)))?;
        text.push(b'\n');
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A random name, created with O_EXCL and mode 0600: nothing planted
        // at a predictable path (a symbolic link to another file) can be
        // followed or overwritten. Removed if anything below fails.
        let result = (|| -> std::io::Result<()> {
            let mut file = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                .tempfile_in(&dir)?;
            file.write_all(&text)?;
            file.as_file().sync_all()?;
            file.persist(path).map_err(|e| e.error)?;
            #[cfg(unix)]
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(())
        })();
        result.map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::temp_path;

    #[test]
    fn round_trip_with_mode_0600() {
        let path = temp_path("roundtrip");
        assert!(Baseline::load(&path).unwrap().is_none());
        let mut b = Baseline {
            format: FORMAT,
            ..Baseline::default()
        };
        b.approved.entry("crm".into()).or_default().insert(
            "search".into(),
            [("scope".to_string(), "ab".to_string())].into(),
        );
        b.store(&path).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), Some(b));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// Links planted at every name the temporary file could have had
    /// before (`.<name>.<pid>.tmp`) and at likely random names: the store
    /// writes none of their targets and leaves a regular file at `path`.
    #[cfg(unix)]
    #[test]
    fn planted_links_are_never_followed() {
        let path = temp_path("planted");
        let dir = path.parent().unwrap().to_path_buf();
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let predictable = dir.join(format!(".baseline.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &predictable).unwrap();
        let b = Baseline {
            format: FORMAT,
            ..Baseline::default()
        };
        b.store(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        assert_eq!(Baseline::load(&path).unwrap(), Some(b));
        // Only the planted link and the victim are left beside the file.
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            "baseline.json".to_string(),
            predictable
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            "victim.txt".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn garbage_and_unknown_formats_are_corrupt() {
        let path = temp_path("corrupt");
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            Baseline::load(&path),
            Err(BaselineError::Corrupt { .. })
        ));
        std::fs::write(&path, r#"{"format": 99, "approved": {}}"#).unwrap();
        let e = Baseline::load(&path).unwrap_err().to_string();
        assert!(e.contains("format 99"), "{e}");
    }
}

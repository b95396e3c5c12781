//! Where the tool-integrity state is kept: one document holding the
//! approved definitions and the open quarantines. The catalog layer owns
//! its format (JSON, parsed strictly); the store only loads and saves the
//! text, so a shared implementation can keep the same text under one key.
//!
//! The file implementation writes atomically: a new temporary file with a
//! random name and mode 0600, fsync, rename, fsync of the directory.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::sync::lock;

/// The integrity document, wherever it is kept. Loaded at start and saved
/// after a refresh that changed it or an approval: never per request, so
/// the methods are synchronous.
#[derive(Debug)]
pub(crate) enum IntegrityDocument {
    /// In this process's memory: lost on restart.
    Memory(Mutex<Option<Vec<u8>>>),
    /// A file (`CORTEX_TOOL_BASELINE`), for one process.
    File(PathBuf),
    /// On Redis, shared by the replicas (mirrored in memory; see
    /// [`IntegrityDocument::sync`]).
    Redis(Box<super::redis::RedisDocument>),
}

impl IntegrityDocument {
    /// The file at `path`, or memory without one.
    pub(crate) fn at(path: Option<PathBuf>) -> Self {
        match path {
            Some(path) => Self::File(path),
            None => Self::Memory(Mutex::default()),
        }
    }

    /// Where the document is kept, for messages.
    pub(crate) fn place(&self) -> String {
        match self {
            Self::Memory(_) => "(in memory)".to_string(),
            Self::File(path) => path.display().to_string(),
            Self::Redis(r) => r.place(),
        }
    }

    /// The document's text; `Ok(None)` when none was saved yet.
    pub(crate) fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(text) => Ok(lock(text).clone()),
            Self::File(path) => match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Self::Redis(r) => Ok(r.load()),
        }
    }

    /// Keeps `text` as a proposal beside the document, for an operator to
    /// review and sign (a gateway that can only verify a signed baseline
    /// never replaces it): `<file>.proposed`; in memory, nowhere.
    pub(crate) fn save_proposal(&self, text: &[u8]) -> std::io::Result<()> {
        match self {
            // A shared store is refused with a public key alone (config).
            Self::Memory(_) | Self::Redis(_) => Ok(()),
            Self::File(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(".proposed");
                write_atomically(Path::new(&name), text)
            }
        }
    }

    /// Replaces the document with `text`.
    pub(crate) fn save(&self, text: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Memory(held) => {
                *lock(held) = Some(text.to_vec());
                Ok(())
            }
            Self::File(path) => write_atomically(path, text),
            Self::Redis(r) => {
                r.save(text);
                Ok(())
            }
        }
    }

    /// For a shared document: writes what was saved here, then reads what
    /// another replica saved; true when that changed the document. The
    /// others are never shared: always false.
    pub(crate) async fn sync(&self) -> bool {
        match self {
            Self::Memory(_) | Self::File(_) => false,
            Self::Redis(r) => r.sync().await.unwrap_or(false),
        }
    }
}

/// Replaces `path` with `text`. A random temporary name, created with
/// O_EXCL and mode 0600: nothing planted at a predictable path (a symbolic
/// link to another file) can be followed or overwritten. The temporary
/// file is removed if anything fails.
fn write_atomically(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    file.write_all(text)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::temp_path;

    #[test]
    fn memory_keeps_the_last_text() {
        let doc = IntegrityDocument::at(None);
        assert_eq!(doc.load().unwrap(), None);
        doc.save(b"one").unwrap();
        doc.save(b"two").unwrap();
        assert_eq!(doc.load().unwrap().as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn a_file_round_trips_with_mode_0600() {
        let path = temp_path("roundtrip");
        let doc = IntegrityDocument::at(Some(path.clone()));
        assert_eq!(doc.load().unwrap(), None);
        doc.save(b"{\"format\": 1}\n").unwrap();
        assert_eq!(
            IntegrityDocument::File(path.clone())
                .load()
                .unwrap()
                .as_deref(),
            Some(&b"{\"format\": 1}\n"[..])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(doc.place(), path.display().to_string());
    }

    /// Links planted at the name the temporary file could have had before
    /// (`.<name>.<pid>.tmp`): the store writes no link's target and leaves
    /// a regular file at `path`.
    #[cfg(unix)]
    #[test]
    fn planted_links_are_never_followed() {
        let path = temp_path("planted");
        let dir = path.parent().unwrap().to_path_buf();
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let predictable = dir.join(format!(".baseline.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &predictable).unwrap();
        let doc = IntegrityDocument::File(path.clone());
        doc.save(b"text").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{meta:?}");
        assert_eq!(doc.load().unwrap().as_deref(), Some(&b"text"[..]));
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
}

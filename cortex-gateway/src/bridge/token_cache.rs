//! The bridge's sign-in cache: one file per gateway URL (the tokens) and
//! one per authorization server (the bridge's registration there), in
//! `$XDG_CONFIG_HOME/cortex/` (else `~/.config/cortex/`).
//!
//! Files are created with mode 0600 in a 0700 directory, written to a
//! temporary file and renamed into place, so a reader never sees half a
//! file. A file that other users could read, or a symbolic link, is
//! refused rather than used: a token that leaked is not worth reusing.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::Zeroize as _;

/// The largest cache file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The tokens of one sign-in, as cached.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CachedToken {
    pub(crate) access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    /// Unix seconds; absent when the server gave no lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    /// Where refreshes go (from the issuer's metadata at sign-in).
    pub(crate) token_endpoint: String,
    /// The RFC 8707 resource the tokens were asked for.
    pub(crate) resource: String,
}

impl Drop for CachedToken {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(r) = &mut self.refresh_token {
            r.zeroize();
        }
    }
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The bridge's registration at one authorization server (RFC 7591).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Registration {
    pub(crate) issuer: String,
    pub(crate) client_id: String,
}

/// The cache directory and the files in it.
#[derive(Debug, Clone)]
pub(crate) struct TokenCache {
    dir: PathBuf,
}

/// The first 32 hex digits of the SHA-256 of `text`: a file name that
/// says nothing about the URL it stands for.
fn hashed(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TokenCache {
    /// `$XDG_CONFIG_HOME/cortex`, else `$HOME/.config/cortex`.
    pub(crate) fn from_env() -> Result<Self, String> {
        let non_empty = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let base = non_empty("XDG_CONFIG_HOME")
            .or_else(|| non_empty("HOME").map(|home| home.join(".config")))
            .ok_or_else(|| {
                "neither XDG_CONFIG_HOME nor HOME is set to an absolute path; set one so \
                 the bridge can keep its sign-in, or give a token with CORTEX_BRIDGE_TOKEN"
                    .to_owned()
            })?;
        Ok(Self {
            dir: base.join("cortex"),
        })
    }

    /// The token file of the gateway at `url`.
    pub(crate) fn token_path(&self, url: &str) -> PathBuf {
        self.dir.join(format!("bridge-token-{}.json", hashed(url)))
    }

    /// The registration file for the authorization server `issuer`.
    fn registration_path(&self, issuer: &str) -> PathBuf {
        self.dir
            .join(format!("bridge-client-{}.json", hashed(issuer)))
    }

    pub(crate) fn load_token(&self, url: &str) -> Result<Option<CachedToken>, String> {
        read_json(&self.token_path(url))
    }

    pub(crate) fn save_token(&self, url: &str, token: &CachedToken) -> Result<(), String> {
        write_json(&self.dir, &self.token_path(url), token)
    }

    /// Deletes the token of `url`; whether there was one.
    pub(crate) fn remove_token(&self, url: &str) -> Result<bool, String> {
        remove(&self.token_path(url))
    }

    pub(crate) fn load_registration(&self, issuer: &str) -> Result<Option<Registration>, String> {
        Ok(read_json::<Registration>(&self.registration_path(issuer))?
            .filter(|r| r.issuer == issuer))
    }

    pub(crate) fn save_registration(&self, registration: &Registration) -> Result<(), String> {
        write_json(
            &self.dir,
            &self.registration_path(&registration.issuer),
            registration,
        )
    }

    pub(crate) fn remove_registration(&self, issuer: &str) -> Result<bool, String> {
        remove(&self.registration_path(issuer))
    }
}

/// Reads a cache file, refusing links and files others may read.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) if path.is_symlink() => {
            return Err(format!(
                "the bridge's sign-in cache {} is a symbolic link, which the bridge refuses; \
                 delete it (`rm {}`) and sign in again",
                path.display(),
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "the bridge's sign-in cache {} is not a regular file; remove it",
            path.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the bridge's sign-in cache {} has mode {mode:04o}, so other users may read \
                 your tokens; the bridge refuses it. Run `chmod 600 {}` if only you could \
                 read it, else delete it (`cortex-gateway stdio --url … --logout`) and sign \
                 in again",
                path.display(),
                path.display()
            ));
        }
    }
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "the bridge's sign-in cache {} is not valid ({e}); delete it and sign in again",
            path.display()
        )
    });
    text.zeroize();
    parsed.map(Some)
}

/// Writes a cache file: mode 0600, in a 0700 directory, atomically.
fn write_json<T: Serialize>(dir: &Path, path: &Path, value: &T) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(failed)?;
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|e| failed(std::io::Error::other(e)))?;
    // `tempfile` creates the file with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    let written = file
        .write_all(&text)
        .and_then(|()| file.as_file().sync_all());
    text.zeroize();
    written.map_err(failed)?;
    file.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

fn remove(path: &Path) -> Result<bool, String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot delete {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> CachedToken {
        CachedToken {
            access_token: "the-access-token".into(),
            refresh_token: Some("the-refresh-token".into()),
            expires_at: Some(1),
            scope: None,
            issuer: "https://as.example".into(),
            client_id: "c".into(),
            token_endpoint: "https://as.example/token".into(),
            resource: "https://gw.example/mcp".into(),
        }
    }

    #[test]
    fn a_saved_token_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache {
            dir: dir.path().join("cortex"),
        };
        cache
            .save_token("https://gw.example/mcp", &token())
            .unwrap();
        let back = cache.load_token("https://gw.example/mcp").unwrap().unwrap();
        assert_eq!(back.access_token, "the-access-token");
        assert!(
            cache
                .load_token("https://other.example/mcp")
                .unwrap()
                .is_none()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file = cache.token_path("https://gw.example/mcp");
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&cache.dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let debug = format!("{back:?}");
        assert!(!debug.contains("the-access-token"), "{debug}");
        assert!(!debug.contains("the-refresh-token"), "{debug}");
        assert!(cache.remove_token("https://gw.example/mcp").unwrap());
        assert!(!cache.remove_token("https://gw.example/mcp").unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_cache_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache {
            dir: dir.path().to_path_buf(),
        };
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, "{}").unwrap();
        std::os::unix::fs::symlink(&target, cache.token_path("u")).unwrap();
        let refused = cache.load_token("u").unwrap_err();
        assert!(refused.contains("symbolic link"), "{refused}");
    }
}

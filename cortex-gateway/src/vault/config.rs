//! The vault's settings, read from environment variables.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CORTEX_VAULT_KEYS` | `id:base64,id:base64`: 32-byte AES-256-GCM keys; the first seals, every one opens | – |
//! | `CORTEX_VAULT_KEY` | one base64 key, with the key id `default` | – |
//! | `CORTEX_DATABASE_URL` | `postgres://…`: keep the vault in PostgreSQL | – (SQLite) |
//! | `CORTEX_DATABASE_CA_FILE` | PEM file of the authorities trusted for PostgreSQL's TLS certificate | the platform's roots |
//! | `CORTEX_VAULT_PATH` | the SQLite file (created with mode 0600) | `cortex-vault.db` |
//! | `CORTEX_VAULT_CACHE_ENTRIES` | decrypted grants kept in memory; `0` keeps none | `10000` |
//! | `CORTEX_VAULT_CACHE_BYTES` | bytes those may hold | `8388608` |
//! | `CORTEX_VAULT_CACHE_TTL_S` | longest a decrypted grant is kept (also bounds how long another replica's change goes unseen) | `300` |

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};

use super::seal::KeyBytes;
use crate::config_error::ConfigError;

/// The key id of the single key given by `CORTEX_VAULT_KEY`. To rotate
/// away from it, list it under this id after the new key:
/// `CORTEX_VAULT_KEYS=new:<base64>,default:<old base64>`.
pub const SINGLE_KEY_ID: &str = "default";
/// The SQLite file used when neither `CORTEX_VAULT_PATH` nor
/// `CORTEX_DATABASE_URL` is set (relative to the working directory).
pub const DEFAULT_VAULT_PATH: &str = "cortex-vault.db";

const KEY_HELP: &str = "a key is 32 random bytes in standard base64 (44 characters ending in `=`); \
                        generate one with `openssl rand -base64 32`";

/// The vault's keys, in order: the first seals, every one opens. `Debug`
/// shows the ids only.
#[derive(Clone)]
pub struct VaultKeys {
    keys: Vec<(String, KeyBytes)>,
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl VaultKeys {
    /// Parses `CORTEX_VAULT_KEYS`'s format: `id:base64` pairs separated by
    /// commas. `variable` names the setting in errors.
    pub fn parse_list(variable: &str, value: &str) -> Result<Self, ConfigError> {
        let mut keys: Vec<(String, KeyBytes)> = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((id, b64)) = item.split_once(':') else {
                return Err(error(
                    variable,
                    format!(
                        "each entry must be `id:base64`, e.g. `k2026:<key>,k2025:<old key>`; {KEY_HELP}"
                    ),
                ));
            };
            let id = id.trim();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(error(
                    variable,
                    "a key id must be 1 to 64 letters, digits, `-`, `_` or `.`".to_string(),
                ));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(error(
                    variable,
                    format!("the key id `{id}` is listed twice; give every key its own id"),
                ));
            }
            keys.push((id.to_string(), decode_key(variable, id, b64.trim())?));
        }
        if keys.is_empty() {
            return Err(error(
                variable,
                format!("no key given; use `id:base64[,id:base64…]`; {KEY_HELP}"),
            ));
        }
        Ok(Self { keys })
    }

    /// One key (`CORTEX_VAULT_KEY`'s format), with the id [`SINGLE_KEY_ID`].
    pub fn parse_single(variable: &str, value: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            keys: vec![(
                SINGLE_KEY_ID.to_string(),
                decode_key(variable, SINGLE_KEY_ID, value.trim())?,
            )],
        })
    }

    /// The key ids, the sealing key first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// (id, key bytes), the sealing key first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys
            .iter()
            .map(|(id, key)| (id.as_str(), key.0.as_slice()))
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(keys: Vec<(String, KeyBytes)>) -> Self {
        Self { keys }
    }
}

fn decode_key(variable: &str, id: &str, b64: &str) -> Result<KeyBytes, ConfigError> {
    // Decoded into a buffer that is wiped on every path; the message never
    // repeats the value.
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                error(
                    variable,
                    format!("key `{id}` is not standard base64; {KEY_HELP}"),
                )
            })?,
    );
    let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
        error(
            variable,
            format!("key `{id}` is {} bytes, not 32; {KEY_HELP}", decoded.len()),
        )
    })?;
    Ok(KeyBytes(Box::new(bytes)))
}

/// Where the vault keeps its records.
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultStorage {
    /// One SQLite file.
    Sqlite {
        /// The file (created with mode 0600).
        path: PathBuf,
    },
    /// A PostgreSQL database (shared by replicas).
    Postgres {
        /// The connection settings, checked: a non-loopback host never
        /// gets a plaintext connection.
        config: Box<tokio_postgres::Config>,
        /// The certificate authorities the server's certificate must chain
        /// to; empty: the platform's (`CORTEX_DATABASE_CA_FILE`).
        tls_roots: Vec<CertificateDer<'static>>,
    },
}

impl fmt::Debug for VaultStorage {
    /// The PostgreSQL password is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { config, tls_roots } => f
                .debug_struct("Postgres")
                .field("hosts", &config.get_hosts())
                .field("ports", &config.get_ports())
                .field("dbname", &config.get_dbname())
                .field("user", &config.get_user())
                .field("ssl_mode", &config.get_ssl_mode())
                .field("tls_roots", &tls_roots.len())
                .finish_non_exhaustive(),
        }
    }
}

impl VaultStorage {
    /// PostgreSQL from a `postgres://` URL (or `key=value` string).
    ///
    /// A TCP host other than loopback needs TLS: `sslmode=disable` is
    /// refused, and the default `prefer` (which falls back to plaintext if
    /// the server offers no TLS) becomes `require`. The server certificate
    /// is then verified against the system's trust roots, host name
    /// included.
    pub fn postgres(variable: &str, url: &str) -> Result<Self, ConfigError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            error(
                variable,
                format!(
                    "not a PostgreSQL connection URL ({e}); use e.g. \
                     postgres://cortex:<password>@db.example.com:5432/cortex?sslmode=require"
                ),
            )
        })?;
        if config.get_hosts().is_empty() {
            return Err(error(
                variable,
                "no host; use e.g. postgres://cortex:<password>@db.example.com/cortex".into(),
            ));
        }
        let remote = config.get_hosts().iter().any(|h| match h {
            Host::Tcp(name) => !is_loopback_name(name),
            #[cfg(unix)]
            Host::Unix(_) => false,
        }) || config.get_hostaddrs().iter().any(|a| !a.is_loopback());
        if remote {
            match config.get_ssl_mode() {
                SslMode::Disable => {
                    return Err(error(
                        variable,
                        "sslmode=disable to a host that is not loopback would send the database \
                         credentials and the data in clear; use sslmode=require"
                            .into(),
                    ));
                }
                SslMode::Prefer => {
                    config.ssl_mode(SslMode::Require);
                }
                _ => {}
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("cortex-gateway vault");
        }
        Ok(Self::Postgres {
            config: Box::new(config),
            tls_roots: Vec::new(),
        })
    }

    /// Trust exactly the certificate authorities in `pem` (the PEM file
    /// `variable` names) for the PostgreSQL server, instead of the
    /// platform's. No effect on SQLite.
    pub fn with_ca_pem(mut self, variable: &str, pem: &[u8]) -> Result<Self, ConfigError> {
        use rustls::pki_types::pem::PemObject as _;
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(variable, format!("not a PEM certificate file: {e}")))?;
        if roots.is_empty() {
            return Err(error(
                variable,
                "no certificate in it; give the PEM file of the authority that signed the \
                 database server's certificate"
                    .into(),
            ));
        }
        if let Self::Postgres { tls_roots, .. } = &mut self {
            *tls_roots = roots;
        }
        Ok(self)
    }
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Bounds of the in-memory cache of decrypted grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultCacheLimits {
    /// Grants kept; `0` keeps none.
    pub max_entries: usize,
    /// Estimated bytes they may hold.
    pub max_bytes: usize,
    /// Longest a grant is kept, in seconds (it is never kept past its own
    /// expiry).
    pub max_age_s: u64,
}

impl Default for VaultCacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 8 << 20,
            max_age_s: 300,
        }
    }
}

/// The vault's whole configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VaultConfig {
    /// The keys (the first seals).
    pub keys: VaultKeys,
    /// Where the records are kept.
    pub storage: VaultStorage,
    /// The decrypted-grant cache.
    pub cache: VaultCacheLimits,
}

impl VaultConfig {
    /// A configuration with these keys and storage and the default cache.
    pub fn new(keys: VaultKeys, storage: VaultStorage) -> Self {
        Self {
            keys,
            storage,
            cache: VaultCacheLimits::default(),
        }
    }

    /// Reads the variables of the module documentation through `lookup`
    /// (e.g. `|k| std::env::var(k).ok()`). `Ok(None)` when no key is set
    /// and nothing else asks for a vault.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let keys = match (get("CORTEX_VAULT_KEYS"), get("CORTEX_VAULT_KEY")) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "CORTEX_VAULT_KEY",
                    "set either CORTEX_VAULT_KEYS (several keys, for rotation) or \
                     CORTEX_VAULT_KEY (one key), not both"
                        .into(),
                ));
            }
            (Some(list), None) => VaultKeys::parse_list("CORTEX_VAULT_KEYS", &list)?,
            (None, Some(one)) => VaultKeys::parse_single("CORTEX_VAULT_KEY", &one)?,
            (None, None) => {
                if get("CORTEX_VAULT_PATH").is_some() {
                    return Err(error(
                        "CORTEX_VAULT_KEY",
                        format!("CORTEX_VAULT_PATH is set but the vault has no key; {KEY_HELP}"),
                    ));
                }
                return Ok(None);
            }
        };
        let storage = match (get("CORTEX_DATABASE_URL"), get("CORTEX_VAULT_PATH")) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "CORTEX_VAULT_PATH",
                    "the vault is in PostgreSQL when CORTEX_DATABASE_URL is set; \
                     unset CORTEX_VAULT_PATH (or CORTEX_DATABASE_URL to use SQLite)"
                        .into(),
                ));
            }
            (Some(url), None) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(error(
                        "CORTEX_DATABASE_URL",
                        "only PostgreSQL is supported: use postgres://user:<password>@host:5432/db \
                         (or unset it to keep the vault in a SQLite file)"
                            .into(),
                    ));
                }
                let storage = VaultStorage::postgres("CORTEX_DATABASE_URL", &url)?;
                match get("CORTEX_DATABASE_CA_FILE") {
                    Some(file) => {
                        let pem = std::fs::read(&file).map_err(|e| {
                            error(
                                "CORTEX_DATABASE_CA_FILE",
                                format!("cannot read `{file}`: {e}"),
                            )
                        })?;
                        storage.with_ca_pem("CORTEX_DATABASE_CA_FILE", &pem)?
                    }
                    None => storage,
                }
            }
            (None, path) => VaultStorage::Sqlite {
                path: PathBuf::from(path.as_deref().unwrap_or(DEFAULT_VAULT_PATH)),
            },
        };
        let mut cache = VaultCacheLimits::default();
        if let Some(v) = get("CORTEX_VAULT_CACHE_ENTRIES") {
            cache.max_entries = whole("CORTEX_VAULT_CACHE_ENTRIES", &v, "10000 (0 keeps none)")?;
        }
        if let Some(v) = get("CORTEX_VAULT_CACHE_BYTES") {
            cache.max_bytes = whole("CORTEX_VAULT_CACHE_BYTES", &v, "8388608")?;
        }
        if let Some(v) = get("CORTEX_VAULT_CACHE_TTL_S") {
            cache.max_age_s = whole("CORTEX_VAULT_CACHE_TTL_S", &v, "300")?;
        }
        Ok(Some(Self {
            keys,
            storage,
            cache,
        }))
    }
}

fn error(variable: &str, problem: String) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        problem,
    }
}

fn whole<T: FromStr>(variable: &str, value: &str, example: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| {
        error(
            variable,
            format!("`{value}` is not a whole number; e.g. {example}"),
        )
    })
}

//! The per-user vault: the OAuth grants users link to third-party MCP
//! servers, sealed at rest, one record per (`sub`, server).
//!
//! For the parts of the gateway (and tools) that act for a user at a
//! third-party server: they [`Vault::put`] the grant a consent produced,
//! [`Vault::get`] it for every call, [`Vault::delete`] it to unlink, and
//! list what a user linked ([`Vault::servers`]) or how many accounts each
//! server has ([`Vault::linked_counts`], counts only, for an operator page).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cortex_gateway::vault::{Grant, Secret, Vault, VaultConfig};
//!
//! let config = VaultConfig::from_lookup(|k| std::env::var(k).ok())?
//!     .ok_or("set CORTEX_VAULT_KEY")?;
//! let vault = Vault::open(&config).await?;
//! vault
//!     .put("alice", "tracker", Grant::new(Secret::new("at-…".into()), "alice@tracker.example"))
//!     .await?;
//! let grant = vault.get("alice", "tracker").await?.expect("linked");
//! assert_eq!(grant.grant.account, "alice@tracker.example");
//! # Ok(()) }
//! ```
//!
//! ## Choices
//!
//! - **Sealing**: AES-256-GCM from aws-lc-rs, the crypto stack rustls and
//!   jsonwebtoken already use here. A fresh random 96-bit nonce per seal;
//!   the associated data binds a record to its (`sub`, server), so a row
//!   copied elsewhere does not open. See `seal.rs`.
//! - **Keys**: `CORTEX_VAULT_KEYS=id:base64,…`; the first seals, any opens.
//!   A record under an id that is not configured is an error naming the
//!   id ([`VaultError::UnknownKey`]), never a missing grant.
//!   [`Vault::rotate`] (`cortex-gateway vault rotate`) re-seals every
//!   record under the first key, after which the old key can go.
//! - **Storage**: rusqlite (one file, bundled SQLite) and tokio-postgres,
//!   not sqlx: they need Rust 1.89 (sqlx 0.9 needs 1.94) and bring fewer
//!   crates; the migrations are a short numbered list (`store/mod.rs`).
//!   PostgreSQL TLS goes through rustls with aws-lc-rs (`store/pg_tls.rs`),
//!   so no second crypto stack is built.
//! - **Cache**: decrypted grants stay in memory until their expiry or
//!   `CORTEX_VAULT_CACHE_TTL_S`, bounded by count and bytes, and are
//!   dropped on put, delete and rotate. With replicas sharing PostgreSQL,
//!   another replica's change is seen after at most that age.
//! - **In clear**: `sub`, server, key id, timestamps. Sealed: both tokens,
//!   expiry, granted scope and the linked account's label.

mod cache;
pub mod config;
mod seal;
mod store;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use zeroize::Zeroize as _;

pub use cache::VaultCacheUsage;
pub use config::{VaultCacheLimits, VaultConfig, VaultKeys, VaultStorage};
pub(crate) use store::{RustlsConnect as PgTls, described as pg_error_text};

use self::{
    cache::GrantCache,
    seal::Keyring,
    store::{CLIENTS, GRANTS, Row, Store},
};

/// Longest `sub` accepted (bytes).
pub const MAX_SUB_BYTES: usize = 1024;
/// Longest server id accepted (bytes).
pub const MAX_SERVER_BYTES: usize = 128;
/// Records re-sealed per storage round trip by [`Vault::rotate`].
const ROTATE_PAGE: u32 = 256;

/// A secret string (a token): wiped from memory when dropped, never shown
/// by `Debug`, compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted, {} bytes]", self.0.len())
    }
}

/// What a user granted the gateway at one third-party server.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// The access token sent to the server.
    pub access_token: Secret,
    /// The refresh token, if the provider gave one.
    pub refresh_token: Option<Secret>,
    /// When the access token expires (unix seconds), if known.
    pub expires_at: Option<u64>,
    /// The scope the provider granted (space-separated).
    pub scope: String,
    /// Which account is linked, for display (the provider's `sub`, e-mail
    /// or user name).
    pub account: String,
}

impl Grant {
    /// A grant with an access token and an account label only.
    pub fn new(access_token: Secret, account: impl Into<String>) -> Self {
        Self {
            access_token,
            refresh_token: None,
            expires_at: None,
            scope: String::new(),
            account: account.into(),
        }
    }
}

impl fmt::Debug for Grant {
    /// The tokens are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("account", &self.account)
            .finish()
    }
}

/// The gateway's client registration (RFC 7591) at one authorization
/// server, for one third-party server.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The client id it was given.
    pub(crate) client_id: String,
    /// Its secret, if it is a confidential client.
    pub(crate) client_secret: Option<Secret>,
    /// Its `token_endpoint_auth_method`.
    pub(crate) auth_method: String,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("auth_method", &self.auth_method)
            .finish()
    }
}

/// A grant as the vault holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    /// The grant.
    pub grant: Grant,
    /// When it was first linked (unix seconds).
    pub created_at: u64,
    /// When it was last written (unix seconds).
    pub updated_at: u64,
}

/// Why the vault could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The record was sealed under a key id that is not configured.
    #[error(
        "the vault record for server `{server}` is sealed under key id `{key_id}`, which is not \
         configured: add that key to CORTEX_VAULT_KEYS (after the first), or link the account again"
    )]
    UnknownKey {
        /// The record's key id.
        key_id: String,
        /// The record's server.
        server: String,
    },
    /// The record does not authenticate under the key with its id.
    #[error(
        "the vault record for server `{server}` (key id `{key_id}`) fails authentication: it was \
         altered or moved to another user or server, or the key with that id changed; link the \
         account again"
    )]
    Unreadable {
        /// The record's key id.
        key_id: String,
        /// The record's server.
        server: String,
    },
    /// The storage failed.
    #[error("vault storage: {0}")]
    Storage(String),
    /// A key or a seal failed.
    #[error("vault encryption: {0}")]
    Crypto(String),
    /// A `sub` or server id the vault does not accept.
    #[error("vault: {0}")]
    Invalid(String),
}

/// What [`Vault::rotate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotateReport {
    /// The key id records are now sealed under.
    pub key_id: String,
    /// Records in the vault when the rotation started.
    pub total: u64,
    /// Records re-sealed under [`RotateReport::key_id`].
    pub resealed: u64,
    /// Records already under it.
    pub current: u64,
    /// Records replaced or deleted while being re-sealed (what replaced
    /// them is under the new key).
    pub changed_meanwhile: u64,
    /// Records under a key id that is not configured, per id: left as they
    /// are.
    pub unknown_key: BTreeMap<String, u64>,
    /// Records that failed authentication: left as they are.
    pub unreadable: u64,
}

impl RotateReport {
    /// Whether every record is now under the first key (so the others can
    /// be removed).
    pub fn is_complete(&self) -> bool {
        self.unknown_key.is_empty() && self.unreadable == 0
    }
}

impl fmt::Display for RotateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records: {} re-encrypted under key `{}`, {} already under it, {} changed meanwhile, \
             {} unreadable",
            self.total,
            self.resealed,
            self.key_id,
            self.current,
            self.changed_meanwhile,
            self.unreadable
        )?;
        for (id, n) in &self.unknown_key {
            write!(
                f,
                "; {n} under unknown key `{id}` (add it to CORTEX_VAULT_KEYS and run again)"
            )?;
        }
        Ok(())
    }
}

/// The vault: keys, storage and the decrypted-grant cache. Share it in an
/// `Arc`.
pub struct Vault {
    keys: Keyring,
    store: Store,
    cache: GrantCache,
    /// Bumped by every write, so a read that raced a write does not cache
    /// what it read.
    generation: AtomicU64,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("keys", &self.keys)
            .field("store", &self.store)
            .field("cache", &self.cache)
            .finish()
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn check_names(sub: &str, server: &str) -> Result<(), VaultError> {
    let bad = |what: &str, max: usize, v: &str| {
        (v.is_empty() || v.len() > max || v.contains('\0')).then(|| {
            VaultError::Invalid(format!(
                "a {what} must be 1 to {max} bytes without NUL characters"
            ))
        })
    };
    match bad("sub", MAX_SUB_BYTES, sub).or_else(|| bad("server id", MAX_SERVER_BYTES, server)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Vault {
    /// Connects to the storage (creating the SQLite file if needed), runs
    /// the pending migrations and loads the keys.
    pub async fn open(config: &VaultConfig) -> Result<Self, VaultError> {
        let keys = Keyring::new(&config.keys)?;
        let store = Store::open(&config.storage).await?;
        Ok(Self {
            keys,
            store,
            cache: GrantCache::new(config.cache),
            generation: AtomicU64::new(0),
        })
    }

    fn wrote(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Stores `grant` for (`sub`, `server`), replacing any earlier one
    /// (its first link time is kept).
    pub async fn put(&self, sub: &str, server: &str, grant: Grant) -> Result<(), VaultError> {
        check_names(sub, server)?;
        let record = self.keys.seal(sub, server, &grant)?;
        let now = unix_now() as i64;
        self.wrote();
        self.cache.remove(sub, server);
        let done = self
            .store
            .upsert(Row {
                sub: sub.to_string(),
                server: server.to_string(),
                record,
                created_at: now,
                updated_at: now,
            })
            .await;
        self.wrote();
        done
    }

    /// The grant of (`sub`, `server`), if linked. A record that cannot be
    /// opened is an error ([`VaultError::UnknownKey`],
    /// [`VaultError::Unreadable`]), not `None`.
    pub async fn get(
        &self,
        sub: &str,
        server: &str,
    ) -> Result<Option<Arc<StoredGrant>>, VaultError> {
        if let Some(hit) = self.cache.get(sub, server) {
            return Ok(Some(hit));
        }
        check_names(sub, server)?;
        let generation = self.generation.load(Ordering::Acquire);
        let Some(row) = self.store.fetch(sub, server).await? else {
            return Ok(None);
        };
        let grant = Arc::new(StoredGrant {
            grant: self.keys.open(sub, server, &row.record)?,
            created_at: u64::try_from(row.created_at).unwrap_or(0),
            updated_at: u64::try_from(row.updated_at).unwrap_or(0),
        });
        if self.generation.load(Ordering::Acquire) == generation {
            self.cache.insert(sub, server, grant.clone(), unix_now());
        }
        Ok(Some(grant))
    }

    /// Unlinks (`sub`, `server`); whether there was a grant.
    pub async fn delete(&self, sub: &str, server: &str) -> Result<bool, VaultError> {
        check_names(sub, server)?;
        self.wrote();
        self.cache.remove(sub, server);
        let done = self.store.delete(sub, server).await;
        self.wrote();
        done
    }

    /// The servers `sub` has linked, sorted (nothing is decrypted).
    pub async fn servers(&self, sub: &str) -> Result<Vec<String>, VaultError> {
        self.store.servers_of(sub).await
    }

    /// Linked accounts per server (counts only, no identities).
    pub async fn linked_counts(&self) -> Result<BTreeMap<String, u64>, VaultError> {
        self.store.counts().await
    }

    /// Re-seals every record under the first key. Records under an unknown
    /// key id, or that fail authentication, are counted and left as they
    /// are. Safe while the gateway serves: a record replaced meanwhile is
    /// left to its new version.
    pub async fn rotate(&self) -> Result<RotateReport, VaultError> {
        let primary = self.keys.primary_id().to_string();
        let mut report = RotateReport {
            key_id: primary.clone(),
            ..RotateReport::default()
        };
        let mut seen = 0u64;
        for (table, domain) in [(GRANTS, seal::DOMAIN), (CLIENTS, seal::CLIENT_DOMAIN)] {
            report.total += self.store.total(table).await?;
            let mut after: Option<(String, String)> = None;
            loop {
                let page = self
                    .store
                    .page_not_under(
                        table,
                        &primary,
                        after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                        ROTATE_PAGE,
                    )
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some((last.sub.clone(), last.server.clone()));
                for row in &page {
                    seen += 1;
                    let grant = match self
                        .keys
                        .open_in(domain, &row.sub, &row.server, &row.record)
                    {
                        Ok(g) => g,
                        Err(VaultError::UnknownKey { key_id, .. }) => {
                            *report.unknown_key.entry(key_id).or_default() += 1;
                            continue;
                        }
                        Err(VaultError::Unreadable { .. }) => {
                            report.unreadable += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let sealed = self.keys.seal_in(domain, &row.sub, &row.server, &grant)?;
                    if self
                        .store
                        .reseal(table, &row.sub, &row.server, &row.record, &sealed)
                        .await?
                    {
                        report.resealed += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
            }
        }
        report.current = report.total.saturating_sub(seen);
        self.wrote();
        self.cache.clear();
        Ok(report)
    }

    /// Stores the gateway's registration at `issuer` for `server`
    /// (sealed like a grant, in its own table and domain).
    pub(crate) async fn put_client(
        &self,
        issuer: &str,
        server: &str,
        registration: &Registration,
    ) -> Result<(), VaultError> {
        check_names(issuer, server)?;
        // Sealed in the grant format: the secret where the access token
        // goes, the id as the label, the method as the scope.
        let as_grant = Grant {
            access_token: registration
                .client_secret
                .clone()
                .unwrap_or_else(|| Secret::new(String::new())),
            refresh_token: None,
            expires_at: None,
            scope: registration.auth_method.clone(),
            account: registration.client_id.clone(),
        };
        let record = self
            .keys
            .seal_in(seal::CLIENT_DOMAIN, issuer, server, &as_grant)?;
        let now = unix_now() as i64;
        self.store
            .upsert_client(Row {
                sub: issuer.to_string(),
                server: server.to_string(),
                record,
                created_at: now,
                updated_at: now,
            })
            .await
    }

    /// The gateway's registration at `issuer` for `server`, if stored.
    pub(crate) async fn get_client(
        &self,
        issuer: &str,
        server: &str,
    ) -> Result<Option<Registration>, VaultError> {
        check_names(issuer, server)?;
        let Some(row) = self.store.fetch_client(issuer, server).await? else {
            return Ok(None);
        };
        let g = self
            .keys
            .open_in(seal::CLIENT_DOMAIN, issuer, server, &row.record)?;
        Ok(Some(Registration {
            client_secret: (!g.access_token.expose().is_empty()).then_some(g.access_token),
            client_id: g.account,
            auth_method: g.scope,
        }))
    }

    /// A 32-byte key derived (HKDF-SHA256) from the first vault key for
    /// another use named by `label`; replicas sharing the keys agree on it.
    pub(crate) fn derive_key(&self, label: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        self.keys.derive(label)
    }

    /// How full the decrypted-grant cache is.
    pub fn cache_usage(&self) -> VaultCacheUsage {
        self.cache.usage()
    }
}

/// A 32-byte key for another use of the configured vault's first key,
/// named by `label`: what [`Vault::derive_key`] gives once the vault is
/// open, without opening its database.
pub(crate) fn derive_key_of(
    config: &config::VaultConfig,
    label: &[u8],
) -> Result<zeroize::Zeroizing<[u8; 32]>, VaultError> {
    Ok(Keyring::new(&config.keys)?.derive(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite_vault(dir: &std::path::Path, keys: &[(&str, u8)]) -> Vault {
        let keys = VaultKeys::from_pairs(
            keys.iter()
                .map(|(id, b)| (id.to_string(), seal::KeyBytes(Box::new([*b; 32]))))
                .collect(),
        );
        let storage = VaultStorage::Sqlite {
            path: dir.join("vault.db"),
        };
        Vault::open(&VaultConfig::new(keys, storage)).await.unwrap()
    }

    #[tokio::test]
    async fn rotation_reseals_client_registrations_too() {
        let dir = tempfile::tempdir().unwrap();
        let registration = Registration {
            client_id: "dcr-client".into(),
            client_secret: Some(Secret::new("dcr-secret".into())),
            auth_method: "client_secret_basic".into(),
        };
        let old = sqlite_vault(dir.path(), &[("old", 1)]).await;
        old.put_client("https://as.example", "tracker", &registration)
            .await
            .unwrap();
        old.put(
            "ana",
            "tracker",
            Grant::new(Secret::new("at".into()), "ana"),
        )
        .await
        .unwrap();
        drop(old);
        let both = sqlite_vault(dir.path(), &[("new", 2), ("old", 1)]).await;
        let report = both.rotate().await.unwrap();
        assert_eq!((report.total, report.resealed), (2, 2), "{report}");
        assert!(report.is_complete());
        drop(both);
        let new_only = sqlite_vault(dir.path(), &[("new", 2)]).await;
        assert_eq!(
            new_only
                .get_client("https://as.example", "tracker")
                .await
                .unwrap(),
            Some(registration)
        );
        assert!(new_only.get("ana", "tracker").await.unwrap().is_some());
        // A registration row never opens as a grant.
        assert!(
            new_only
                .get("https://as.example", "tracker")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn secrets_compare_by_value_and_never_show() {
        let a = Secret::new("token-a".into());
        assert_eq!(a, Secret::new("token-a".into()));
        assert_ne!(a, Secret::new("token-b".into()));
        assert_ne!(a, Secret::new("token-a-longer".into()));
        assert_eq!(format!("{a:?}"), "[redacted, 7 bytes]");
    }
}

//! The SQLite engine: one file, owner-only.
//!
//! The file is created with mode 0600 (its directory, when the gateway
//! creates it, 0700). An existing file that others may read is tightened to
//! 0600 and the change logged, as the audit file is; a symbolic link is
//! refused, never followed. SQLite gives its transient journal the
//! database file's mode. Deleted records are overwritten on disk
//! (`secure_delete`).
//!
//! rusqlite is synchronous: every statement runs on Tokio's blocking pool,
//! one at a time on one connection.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use super::{MIGRATIONS, Row, Table, check_known};
use crate::vault::{VaultError, seal::SealedRecord};

pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn storage(e: rusqlite::Error) -> VaultError {
    VaultError::Storage(format!("SQLite: {e}"))
}

/// Creates the file owner-only, or checks (and tightens) an existing one.
fn prepare_file(path: &Path) -> Result<(), VaultError> {
    let failed = |reason: String| {
        VaultError::Storage(format!("{} (CORTEX_VAULT_PATH): {reason}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(failed(
                "it is a symbolic link, which the vault does not follow; set the path of the file itself"
                    .into(),
            ));
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(failed("it is not a regular file".into()));
        }
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| {
                            failed(format!(
                                "its mode is {mode:o} (others may read it) and it cannot be set to 600: {e}"
                            ))
                        })?;
                    tracing::warn!(
                        path = %path.display(),
                        "the vault file's mode was {mode:o}; set to 600 (owner only)"
                    );
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.exists()
            {
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder
                    .create(dir)
                    .map_err(|e| failed(format!("cannot create its directory: {e}")))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(_) => {}
                // Created meanwhile by another process: check it as above.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return prepare_file(path);
                }
                Err(e) => return Err(failed(format!("cannot create it: {e}"))),
            }
        }
        Err(e) => return Err(failed(e.to_string())),
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), VaultError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(storage)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS vault_schema (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(storage)?;
    let applied: Vec<i64> = {
        let mut stmt = tx
            .prepare("SELECT version FROM vault_schema")
            .map_err(storage)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(storage)?
            .collect::<Result<_, _>>()
            .map_err(storage)?
    };
    check_known(&applied)?;
    for (version, sql, _) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.execute_batch(sql).map_err(storage)?;
        tx.execute(
            "INSERT INTO vault_schema (version, applied_at) VALUES (?1, ?2)",
            params![version, crate::vault::unix_now() as i64],
        )
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let nonce: Vec<u8> = r.get(3)?;
    Ok(Row {
        sub: r.get(0)?,
        server: r.get(1)?,
        record: SealedRecord {
            key_id: r.get(2)?,
            // A wrong length cannot open: all zeroes fail authentication.
            nonce: nonce.as_slice().try_into().unwrap_or_default(),
            ciphertext: r.get(4)?,
        },
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<Self, VaultError> {
        let path = path.to_path_buf();
        let for_task = path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let path = for_task;
            prepare_file(&path)?;
            let mut conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_NOFOLLOW,
            )
            .map_err(|e| {
                VaultError::Storage(format!("{} (CORTEX_VAULT_PATH): {e}", path.display()))
            })?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(storage)?;
            conn.pragma_update(None, "secure_delete", "ON")
                .map_err(storage)?;
            migrate(&mut conn)?;
            Ok::<_, VaultError>(conn)
        })
        .await
        .map_err(|e| VaultError::Storage(format!("the SQLite task failed: {e}")))??;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, VaultError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut crate::sync::lock(&conn)))
            .await
            .map_err(|e| VaultError::Storage(format!("the SQLite task failed: {e}")))?
            .map_err(storage)
    }

    pub(crate) async fn upsert(&self, table: Table, row: Row) -> Result<(), VaultError> {
        let Table { name, owner } = table;
        let sql = format!(
            "INSERT INTO {name} ({owner}, server, key_id, nonce, ciphertext, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT ({owner}, server) DO UPDATE SET key_id = excluded.key_id,
               nonce = excluded.nonce, ciphertext = excluded.ciphertext,
               updated_at = excluded.updated_at"
        );
        self.with(move |c| {
            c.execute(
                &sql,
                params![
                    row.sub,
                    row.server,
                    row.record.key_id,
                    &row.record.nonce[..],
                    row.record.ciphertext,
                    row.created_at,
                    row.updated_at
                ],
            )
            .map(drop)
        })
        .await
    }

    pub(crate) async fn fetch(
        &self,
        table: Table,
        owner: &str,
        server: &str,
    ) -> Result<Option<Row>, VaultError> {
        let Table {
            name,
            owner: column,
        } = table;
        let sql = format!(
            "SELECT {column}, server, key_id, nonce, ciphertext, created_at, updated_at
             FROM {name} WHERE {column} = ?1 AND server = ?2"
        );
        let (owner, server) = (owner.to_string(), server.to_string());
        self.with(move |c| c.query_row(&sql, params![owner, server], row).optional())
            .await
    }

    pub(crate) async fn delete(&self, sub: &str, server: &str) -> Result<bool, VaultError> {
        let (sub, server) = (sub.to_string(), server.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM vault_grants WHERE sub = ?1 AND server = ?2",
                params![sub, server],
            )
            .map(|n| n > 0)
        })
        .await
    }

    pub(crate) async fn servers_of(&self, sub: &str) -> Result<Vec<String>, VaultError> {
        let sub = sub.to_string();
        self.with(move |c| {
            let mut stmt =
                c.prepare("SELECT server FROM vault_grants WHERE sub = ?1 ORDER BY server")?;
            stmt.query_map(params![sub], |r| r.get(0))?.collect()
        })
        .await
    }

    pub(crate) async fn counts(&self) -> Result<BTreeMap<String, u64>, VaultError> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT server, COUNT(*) FROM vault_grants GROUP BY server")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
        })
        .await
    }

    pub(crate) async fn page_not_under(
        &self,
        table: Table,
        key_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Row>, VaultError> {
        let Table { name, owner } = table;
        let sql = format!(
            "SELECT {owner}, server, key_id, nonce, ciphertext, created_at, updated_at FROM {name}
             WHERE key_id <> ?1 AND ({owner} > ?2 OR ({owner} = ?2 AND server > ?3))
             ORDER BY {owner}, server LIMIT ?4"
        );
        let key_id = key_id.to_string();
        let after = after.map(|(a, b)| (a.to_string(), b.to_string()));
        self.with(move |c| {
            let (first, server) = after.unwrap_or_default();
            let mut stmt = c.prepare(&sql)?;
            stmt.query_map(params![key_id, first, server, limit], row)?
                .collect()
        })
        .await
    }

    pub(crate) async fn reseal(
        &self,
        table: Table,
        owner: &str,
        server: &str,
        old: &SealedRecord,
        new: &SealedRecord,
    ) -> Result<bool, VaultError> {
        let Table {
            name,
            owner: column,
        } = table;
        let sql = format!(
            "UPDATE {name} SET key_id = ?1, nonce = ?2, ciphertext = ?3
             WHERE {column} = ?4 AND server = ?5 AND key_id = ?6 AND nonce = ?7"
        );
        let (owner, server, old, new) = (
            owner.to_string(),
            server.to_string(),
            old.clone(),
            new.clone(),
        );
        self.with(move |c| {
            c.execute(
                &sql,
                params![
                    new.key_id,
                    &new.nonce[..],
                    new.ciphertext,
                    owner,
                    server,
                    old.key_id,
                    &old.nonce[..]
                ],
            )
            .map(|n| n == 1)
        })
        .await
    }

    pub(crate) async fn total(&self, table: Table) -> Result<u64, VaultError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        self.with(move |c| c.query_row(&sql, [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n as u64)
    }
}

//! The PostgreSQL engine: one pipelined connection, re-opened when it
//! breaks (a statement that failed because it closed is run once more). Migrations run under a transaction-scoped advisory lock, so
//! replicas starting together apply each one once.

use std::{collections::BTreeMap, sync::Arc};

use tokio_postgres::{Client, Config};

use super::{MIGRATIONS, Row, Table, check_known, pg_tls::RustlsConnect};
use crate::vault::{VaultError, seal::SealedRecord};

/// The advisory lock taken while migrating ("cortex-v" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_7274_6578_2d76;

pub(crate) struct PgStore {
    config: Config,
    tls: RustlsConnect,
    client: tokio::sync::Mutex<Arc<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

/// `e` and its causes (tokio-postgres keeps the useful part, e.g. why a
/// TLS handshake failed, in the source).
pub(crate) fn described(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn storage(e: tokio_postgres::Error) -> VaultError {
    VaultError::Storage(format!("PostgreSQL: {}", described(&e)))
}

fn row(r: &tokio_postgres::Row) -> Result<Row, VaultError> {
    let bad = |e: tokio_postgres::Error| VaultError::Storage(format!("PostgreSQL row: {e}"));
    let nonce: &[u8] = r.try_get(3).map_err(bad)?;
    Ok(Row {
        sub: r.try_get(0).map_err(bad)?,
        server: r.try_get(1).map_err(bad)?,
        record: SealedRecord {
            key_id: r.try_get(2).map_err(bad)?,
            // A wrong length cannot open: all zeroes fail authentication.
            nonce: nonce.try_into().unwrap_or_default(),
            ciphertext: r.try_get(4).map_err(bad)?,
        },
        created_at: r.try_get(5).map_err(bad)?,
        updated_at: r.try_get(6).map_err(bad)?,
    })
}

/// Runs `$op` (an expression using the connection `$c`) once, and once
/// more on a new connection if the first failed because the connection
/// was closed (a server restart, a fail-over, an idle timeout). Every
/// statement here may run twice: they are idempotent.
macro_rules! on_connection {
    ($store:expr, |$c:ident| $op:expr) => {{
        let $c = $store.client().await?;
        match $op.await {
            Err(e) if e.is_closed() || $c.is_closed() || connection_lost(&e) => {
                tracing::info!("the vault's PostgreSQL connection closed; reconnecting");
                let $c = $store.reconnect(&$c).await?;
                $op.await.map_err(storage)
            }
            done => done.map_err(storage),
        }
    }};
}

/// Whether `e` says the server is ending the session (SQLSTATE class
/// 57P: an administrator's command, a crash or a restart). The connection
/// may not show as closed yet when the statement's error arrives.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| code.code().starts_with("57P"))
}

async fn connect(config: &Config, tls: &RustlsConnect) -> Result<Client, VaultError> {
    let (client, connection) = config.connect(tls.clone()).await.map_err(|e| {
        VaultError::Storage(format!(
            "cannot connect to PostgreSQL (CORTEX_DATABASE_URL): {}",
            described(&e)
        ))
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("the vault's PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

async fn migrate(client: &mut Client) -> Result<(), VaultError> {
    let tx = client.transaction().await.map_err(storage)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(storage)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vault_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(storage)?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM vault_schema", &[])
        .await
        .map_err(storage)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    check_known(&applied)?;
    for (version, _, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(storage)?;
        tx.execute(
            "INSERT INTO vault_schema (version, applied_at) VALUES ($1, $2)",
            &[version, &(crate::vault::unix_now() as i64)],
        )
        .await
        .map_err(storage)?;
    }
    tx.commit().await.map_err(storage)
}

impl PgStore {
    pub(crate) async fn connect(config: Config, tls: RustlsConnect) -> Result<Self, VaultError> {
        let mut client = connect(&config, &tls).await?;
        migrate(&mut client).await?;
        Ok(Self {
            config,
            tls,
            client: tokio::sync::Mutex::new(Arc::new(client)),
        })
    }

    /// The connection, re-opened first if it broke.
    async fn client(&self) -> Result<Arc<Client>, VaultError> {
        let mut guard = self.client.lock().await;
        if guard.is_closed() {
            *guard = Arc::new(connect(&self.config, &self.tls).await?);
        }
        Ok(guard.clone())
    }

    /// A new connection in place of `lost` (unless another statement has
    /// replaced it already).
    async fn reconnect(&self, lost: &Arc<Client>) -> Result<Arc<Client>, VaultError> {
        let mut guard = self.client.lock().await;
        if Arc::ptr_eq(&guard, lost) || guard.is_closed() {
            *guard = Arc::new(connect(&self.config, &self.tls).await?);
        }
        Ok(guard.clone())
    }

    pub(crate) async fn upsert(&self, table: Table, row: Row) -> Result<(), VaultError> {
        let Table { name, owner } = table;
        let sql = format!(
            "INSERT INTO {name} ({owner}, server, key_id, nonce, ciphertext, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT ({owner}, server) DO UPDATE SET key_id = EXCLUDED.key_id,
               nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
               updated_at = EXCLUDED.updated_at"
        );
        on_connection!(self, |c| c.execute(
            &sql,
            &[
                &row.sub,
                &row.server,
                &row.record.key_id,
                &&row.record.nonce[..],
                &row.record.ciphertext,
                &row.created_at,
                &row.updated_at,
            ],
        ))
        .map(drop)
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
            "SELECT {column}, server, key_id, nonce, ciphertext, created_at, updated_at \
             FROM {name} WHERE {column} = $1 AND server = $2"
        );
        on_connection!(self, |c| c.query_opt(&sql, &[&owner, &server]))?
            .as_ref()
            .map(row)
            .transpose()
    }

    pub(crate) async fn delete(&self, sub: &str, server: &str) -> Result<bool, VaultError> {
        on_connection!(self, |c| c.execute(
            "DELETE FROM vault_grants WHERE sub = $1 AND server = $2",
            &[&sub, &server],
        ))
        .map(|n| n > 0)
    }

    pub(crate) async fn servers_of(&self, sub: &str) -> Result<Vec<String>, VaultError> {
        Ok(on_connection!(self, |c| c.query(
            "SELECT server FROM vault_grants WHERE sub = $1 ORDER BY server",
            &[&sub],
        ))?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    pub(crate) async fn counts(&self) -> Result<BTreeMap<String, u64>, VaultError> {
        Ok(on_connection!(self, |c| c.query(
            "SELECT server, COUNT(*) FROM vault_grants GROUP BY server",
            &[],
        ))?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect())
    }

    pub(crate) async fn page_not_under(
        &self,
        table: Table,
        key_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Row>, VaultError> {
        let Table { name, owner } = table;
        let (first, server) = after.unwrap_or(("", ""));
        // Both key columns are `COLLATE "C"`: byte order, as SQLite's.
        let sql = format!(
            "SELECT {owner}, server, key_id, nonce, ciphertext, created_at, updated_at FROM {name}
             WHERE key_id <> $1 AND ({owner}, server) > ($2, $3)
             ORDER BY {owner}, server LIMIT $4"
        );
        let limit = i64::from(limit);
        on_connection!(self, |c| c.query(&sql, &[&key_id, &first, &server, &limit]))?
            .iter()
            .map(row)
            .collect()
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
            "UPDATE {name} SET key_id = $1, nonce = $2, ciphertext = $3
             WHERE {column} = $4 AND server = $5 AND key_id = $6 AND nonce = $7"
        );
        on_connection!(self, |c| c.execute(
            &sql,
            &[
                &new.key_id,
                &&new.nonce[..],
                &new.ciphertext,
                &owner,
                &server,
                &old.key_id,
                &&old.nonce[..],
            ],
        ))
        .map(|n| n == 1)
    }

    pub(crate) async fn total(&self, table: Table) -> Result<u64, VaultError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        let row = on_connection!(self, |c| c.query_one(&sql, &[]))?;
        row.try_get::<_, i64>(0)
            .map(|n| n as u64)
            .map_err(|e| VaultError::Storage(format!("PostgreSQL row: {e}")))
    }
}

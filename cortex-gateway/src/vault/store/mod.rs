//! Where sealed records live: one SQLite file, or PostgreSQL. Both hold the
//! same table; the engines differ only in SQL dialect and driver.
//!
//! ```sql
//! vault_grants (sub, server, key_id, nonce, ciphertext, created_at, updated_at)
//!   PRIMARY KEY (sub, server)
//! vault_clients (issuer, server, key_id, nonce, ciphertext, created_at, updated_at)
//!   PRIMARY KEY (issuer, server)
//! ```
//!
//! `vault_clients` holds the gateway's own client registrations (RFC 7591)
//! at third-party authorization servers, sealed like grants.
//!
//! `sub` and `server` are in clear (they are looked up); everything about
//! the grant (tokens, expiry, scope, linked account) is inside the
//! ciphertext. Migrations are numbered; each runs once, in a transaction,
//! recorded in `vault_schema`. A database with a migration this build does
//! not know (written by a newer gateway) is refused.

mod pg_tls;
mod postgres;
mod sqlite;

pub(crate) use pg_tls::RustlsConnect;
pub(crate) use postgres::described;

use std::collections::BTreeMap;

use super::{VaultError, config::VaultStorage, seal::SealedRecord};

/// The numbered migrations, the same for both engines except the types.
/// (version, SQLite statements, PostgreSQL statements)
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "CREATE TABLE vault_grants (
        sub TEXT NOT NULL,
        server TEXT NOT NULL,
        key_id TEXT NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (sub, server)
    );
    CREATE INDEX vault_grants_server ON vault_grants (server);
    CREATE INDEX vault_grants_key_id ON vault_grants (key_id);",
        "CREATE TABLE vault_grants (
        sub TEXT COLLATE \"C\" NOT NULL,
        server TEXT COLLATE \"C\" NOT NULL,
        key_id TEXT NOT NULL,
        nonce BYTEA NOT NULL,
        ciphertext BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (sub, server)
    );
    CREATE INDEX vault_grants_server ON vault_grants (server);
    CREATE INDEX vault_grants_key_id ON vault_grants (key_id);",
    ),
    (
        2,
        "CREATE TABLE vault_clients (
            issuer TEXT NOT NULL,
            server TEXT NOT NULL,
            key_id TEXT NOT NULL,
            nonce BLOB NOT NULL,
            ciphertext BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (issuer, server)
        );",
        "CREATE TABLE vault_clients (
            issuer TEXT COLLATE \"C\" NOT NULL,
            server TEXT COLLATE \"C\" NOT NULL,
            key_id TEXT NOT NULL,
            nonce BYTEA NOT NULL,
            ciphertext BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (issuer, server)
        );",
    ),
];

/// A table of sealed records: its name and the column naming the record's
/// owner (a user's `sub`, or an issuer for client registrations).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) owner: &'static str,
}

/// Users' grants.
pub(crate) const GRANTS: Table = Table {
    name: "vault_grants",
    owner: "sub",
};
/// The gateway's client registrations.
pub(crate) const CLIENTS: Table = Table {
    name: "vault_clients",
    owner: "issuer",
};

/// One stored row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) sub: String,
    pub(crate) server: String,
    pub(crate) record: SealedRecord,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A storage engine, connected and migrated.
#[derive(Debug)]
pub(crate) enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(Box<postgres::PgStore>),
}

/// Dispatches one call to the engine in use.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Connects (or creates the file) and runs the pending migrations.
    pub(crate) async fn open(storage: &VaultStorage) -> Result<Self, VaultError> {
        Ok(match storage {
            VaultStorage::Sqlite { path } => Self::Sqlite(sqlite::SqliteStore::open(path).await?),
            VaultStorage::Postgres { config, tls_roots } => {
                let tls = pg_tls::RustlsConnect::for_roots(tls_roots)?;
                Self::Postgres(Box::new(
                    postgres::PgStore::connect((**config).clone(), tls).await?,
                ))
            }
        })
    }

    /// Inserts or replaces the row of (`row.sub`, `row.server`), keeping
    /// the first `created_at`.
    pub(crate) async fn upsert(&self, row: Row) -> Result<(), VaultError> {
        dispatch!(self, s => s.upsert(GRANTS, row).await)
    }

    pub(crate) async fn fetch(&self, sub: &str, server: &str) -> Result<Option<Row>, VaultError> {
        dispatch!(self, s => s.fetch(GRANTS, sub, server).await)
    }

    /// Whether a row was there.
    pub(crate) async fn delete(&self, sub: &str, server: &str) -> Result<bool, VaultError> {
        dispatch!(self, s => s.delete(sub, server).await)
    }

    /// The servers `sub` has a row for, sorted.
    pub(crate) async fn servers_of(&self, sub: &str) -> Result<Vec<String>, VaultError> {
        dispatch!(self, s => s.servers_of(sub).await)
    }

    /// Rows per server.
    pub(crate) async fn counts(&self) -> Result<BTreeMap<String, u64>, VaultError> {
        dispatch!(self, s => s.counts().await)
    }

    /// Up to `limit` rows of `table` not sealed under `key_id`, after
    /// (owner, `server`) in key order.
    pub(crate) async fn page_not_under(
        &self,
        table: Table,
        key_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Row>, VaultError> {
        dispatch!(self, s => s.page_not_under(table, key_id, after, limit).await)
    }

    /// Replaces the sealed record of a row of `table` if it still holds
    /// `old` (a concurrent put or delete wins); whether it did.
    pub(crate) async fn reseal(
        &self,
        table: Table,
        owner: &str,
        server: &str,
        old: &SealedRecord,
        new: &SealedRecord,
    ) -> Result<bool, VaultError> {
        dispatch!(self, s => s.reseal(table, owner, server, old, new).await)
    }

    /// Inserts or replaces a client registration (`row.sub` is the
    /// issuer).
    pub(crate) async fn upsert_client(&self, row: Row) -> Result<(), VaultError> {
        dispatch!(self, s => s.upsert(CLIENTS, row).await)
    }

    /// The client registration at `issuer` for `server`.
    pub(crate) async fn fetch_client(
        &self,
        issuer: &str,
        server: &str,
    ) -> Result<Option<Row>, VaultError> {
        dispatch!(self, s => s.fetch(CLIENTS, issuer, server).await)
    }

    /// Rows of `table`.
    pub(crate) async fn total(&self, table: Table) -> Result<u64, VaultError> {
        dispatch!(self, s => s.total(table).await)
    }
}

/// The versions in `applied` this build does not know stop the start.
fn check_known(applied: &[i64]) -> Result<(), VaultError> {
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    match applied.iter().find(|v| **v > newest) {
        Some(v) => Err(VaultError::Storage(format!(
            "the vault's schema is at version {v}, newer than this gateway knows ({newest}); \
             run the newer gateway, or restore a backup"
        ))),
        None => Ok(()),
    }
}

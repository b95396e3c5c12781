//! The vault of linked accounts: sealed records on SQLite and on a real
//! PostgreSQL server, bound to their (sub, server), key rotation, key
//! configuration errors, and the bounded decrypted-grant cache.

use std::{collections::HashMap, path::Path, process::Command, sync::Arc};

use base64::Engine as _;
use cortex_gateway::vault::{
    Grant, Secret, StoredGrant, Vault, VaultCacheLimits, VaultConfig, VaultError, VaultStorage,
};

use crate::pg_server::PgServer;

fn b64(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// A configuration read from `vars` the way the gateway reads its
/// environment.
fn config(vars: &[(&str, String)]) -> VaultConfig {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    VaultConfig::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .expect("a key is set")
}

fn sqlite(path: &Path, keys: &str) -> VaultConfig {
    config(&[
        ("CORTEX_VAULT_KEYS", keys.to_string()),
        ("CORTEX_VAULT_PATH", path.display().to_string()),
    ])
}

fn postgres(url: &str, keys: &str) -> VaultConfig {
    config(&[
        ("CORTEX_VAULT_KEYS", keys.to_string()),
        ("CORTEX_DATABASE_URL", url.to_string()),
    ])
}

fn keys(list: &[(&str, u8)]) -> String {
    list.iter()
        .map(|(id, b)| format!("{id}:{}", b64(*b)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A grant whose every secret string is unique to (`sub`, `server`).
fn grant(sub: &str, server: &str) -> Grant {
    Grant {
        access_token: Secret::new(format!("access-{sub}-{server}-Zq81")),
        refresh_token: Some(Secret::new(format!("refresh-{sub}-{server}-Kx27"))),
        expires_at: Some(4_000_000_000),
        scope: "issues:read issues:write".into(),
        account: format!("{sub}@{server}.example"),
    }
}

fn secrets_of(sub: &str, server: &str) -> [String; 3] {
    [
        format!("access-{sub}-{server}-Zq81"),
        format!("refresh-{sub}-{server}-Kx27"),
        format!("{sub}@{server}.example"),
    ]
}

fn cortex_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `cortex-gateway vault rotate` with nothing but the variables the test sets.
fn rotate_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    c.env_clear()
        .env("RUST_LOG", "off")
        .args(["vault", "rotate"]);
    c
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const PAIRS: [(&str, &str); 4] = [
    ("alice", "tracker"),
    ("alice", "design"),
    ("bob", "tracker"),
    ("carol|with:odd chars", "design"),
];

/// The behaviour both engines must share: round trip, listing, counting,
/// replacing and unlinking.
async fn round_trip(vault: &Vault) {
    for (sub, server) in PAIRS {
        vault.put(sub, server, grant(sub, server)).await.unwrap();
    }
    for (sub, server) in PAIRS {
        let got = vault.get(sub, server).await.unwrap().expect("linked");
        assert_eq!(got.grant, grant(sub, server), "{sub}/{server}");
        assert!(got.created_at > 0 && got.updated_at >= got.created_at);
    }
    assert_eq!(vault.get("alice", "nowhere").await.unwrap(), None);
    assert_eq!(vault.servers("alice").await.unwrap(), ["design", "tracker"]);
    assert!(vault.servers("nobody").await.unwrap().is_empty());
    let counts = vault.linked_counts().await.unwrap();
    assert_eq!(counts.get("tracker"), Some(&2));
    assert_eq!(counts.get("design"), Some(&2));
    // Replacing keeps the first link time and serves the new grant at once
    // (the cached one is dropped).
    let before = vault.get("bob", "tracker").await.unwrap().unwrap();
    let mut newer = grant("bob", "tracker");
    newer.access_token = Secret::new("access-bob-tracker-renewed".into());
    vault.put("bob", "tracker", newer).await.unwrap();
    let after = vault.get("bob", "tracker").await.unwrap().unwrap();
    assert_eq!(
        after.grant.access_token.expose(),
        "access-bob-tracker-renewed"
    );
    assert_eq!(after.created_at, before.created_at);
    vault
        .put("bob", "tracker", grant("bob", "tracker"))
        .await
        .unwrap();
    // Unlinking.
    vault
        .put("dave", "tracker", grant("dave", "tracker"))
        .await
        .unwrap();
    assert!(vault.get("dave", "tracker").await.unwrap().is_some());
    assert!(vault.delete("dave", "tracker").await.unwrap());
    assert!(!vault.delete("dave", "tracker").await.unwrap());
    assert_eq!(vault.get("dave", "tracker").await.unwrap(), None);
    // Names the vault refuses.
    for (sub, server) in [("", "tracker"), ("alice", ""), ("a\0b", "tracker")] {
        assert!(matches!(
            vault.put(sub, server, grant("x", "y")).await,
            Err(VaultError::Invalid(_))
        ));
    }
}

#[tokio::test]
async fn sqlite_round_trip_in_an_owner_only_file_without_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("vault.db");
    let vault = Vault::open(&sqlite(&path, &keys(&[("k1", 1)])))
        .await
        .unwrap();
    round_trip(&vault).await;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the vault file is owner-only");
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "a directory it creates too");
    }
    drop(vault);
    let raw = std::fs::read(&path).unwrap();
    // The search finds what is in clear, so its silence below means something.
    assert!(contains(&raw, "carol|with:odd chars"));
    for (sub, server) in PAIRS.iter().chain([("dave", "tracker")].iter()) {
        for secret in secrets_of(sub, server) {
            assert!(!contains(&raw, &secret), "`{secret}` is in the file");
        }
    }
    assert!(!contains(&raw, "access-bob-tracker-renewed"));
    assert!(!contains(&raw, "issues:write"), "the scope is sealed too");

    // An existing file others may read is tightened when opened again.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let vault = Vault::open(&sqlite(&path, &keys(&[("k1", 1)])))
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(vault.get("alice", "tracker").await.unwrap().is_some());
    drop(vault);
    // A symbolic link is refused, never followed.
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = Vault::open(&sqlite(&link, &keys(&[("k1", 1)])))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

/// Copies the record of (alice, tracker) to (mallory, tracker) and to
/// (alice, design2), with SQL run by `exec`.
const COPIES: [&str; 2] = [
    "INSERT INTO vault_grants (sub, server, key_id, nonce, ciphertext, created_at, updated_at)
     SELECT 'mallory', server, key_id, nonce, ciphertext, created_at, updated_at
     FROM vault_grants WHERE sub = 'alice' AND server = 'tracker'",
    "INSERT INTO vault_grants (sub, server, key_id, nonce, ciphertext, created_at, updated_at)
     SELECT sub, 'design2', key_id, nonce, ciphertext, created_at, updated_at
     FROM vault_grants WHERE sub = 'alice' AND server = 'tracker'",
];

async fn copies_do_not_open(vault: &Vault) {
    for (sub, server) in [("mallory", "tracker"), ("alice", "design2")] {
        match vault.get(sub, server).await {
            Err(e @ VaultError::Unreadable { .. }) => {
                assert!(e.to_string().contains(server), "{e}");
            }
            other => panic!("a record copied to ({sub}, {server}) opened: {other:?}"),
        }
    }
    assert!(vault.get("alice", "tracker").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_record_copied_to_another_sub_or_server_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let vault = Vault::open(&sqlite(&path, &keys(&[("k1", 1)])))
        .await
        .unwrap();
    vault
        .put("alice", "tracker", grant("alice", "tracker"))
        .await
        .unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    for sql in COPIES {
        db.execute(sql, []).unwrap();
    }
    copies_do_not_open(&vault).await;
}

#[tokio::test]
async fn rotation_keeps_every_grant_readable_and_then_the_old_key_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let old = Vault::open(&sqlite(&path, &keys(&[("old", 1)])))
        .await
        .unwrap();
    for (sub, server) in PAIRS {
        old.put(sub, server, grant(sub, server)).await.unwrap();
    }
    drop(old);

    // The command an operator runs, new key first.
    let both = keys(&[("new", 2), ("old", 1)]);
    let out = rotate_command()
        .env("CORTEX_VAULT_KEYS", &both)
        .env("CORTEX_VAULT_PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4 records: 4 re-encrypted under key `new`, 0 already under it"),
        "{stdout}"
    );

    // Only the new key left: every grant still opens.
    let new_only = Vault::open(&sqlite(&path, &keys(&[("new", 2)])))
        .await
        .unwrap();
    for (sub, server) in PAIRS {
        assert_eq!(
            new_only.get(sub, server).await.unwrap().unwrap().grant,
            grant(sub, server)
        );
    }
    // A second rotation has nothing to do.
    let report = new_only.rotate().await.unwrap();
    assert_eq!((report.total, report.resealed, report.current), (4, 0, 4));
    assert!(report.is_complete());
}

#[tokio::test]
async fn a_record_under_an_unknown_key_id_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let retired = Vault::open(&sqlite(&path, &keys(&[("retired", 7)])))
        .await
        .unwrap();
    retired
        .put("alice", "tracker", grant("alice", "tracker"))
        .await
        .unwrap();
    drop(retired);
    let vault = Vault::open(&sqlite(&path, &keys(&[("new", 2)])))
        .await
        .unwrap();
    vault
        .put("bob", "tracker", grant("bob", "tracker"))
        .await
        .unwrap();
    match vault.get("alice", "tracker").await {
        Err(e @ VaultError::UnknownKey { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("`retired`") && text.contains("CORTEX_VAULT_KEYS"),
                "{text}"
            );
        }
        other => panic!("expected an unknown key id, got {other:?}"),
    }
    // Still listed as linked, and rotation counts it and leaves it be.
    assert_eq!(vault.servers("alice").await.unwrap(), ["tracker"]);
    let report = vault.rotate().await.unwrap();
    assert_eq!(report.unknown_key.get("retired"), Some(&1));
    assert!(!report.is_complete());
    assert!(
        report.to_string().contains("1 under unknown key `retired`"),
        "{report}"
    );
    // The command exits 1 and says so.
    let out = rotate_command()
        .env("CORTEX_VAULT_KEY", b64(2))
        .env("CORTEX_VAULT_PATH", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown key `retired`"));
    // With the key back, it opens again: nothing was lost.
    let again = Vault::open(&sqlite(&path, &keys(&[("new", 2), ("retired", 7)])))
        .await
        .unwrap();
    assert!(again.get("alice", "tracker").await.unwrap().is_some());
}

#[test]
fn bad_key_values_stop_the_start_naming_the_variable() {
    let good = b64(1);
    let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
    // (variables, the variable named, what the message says)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("CORTEX_VAULT_KEY", "not base64!".into())],
            "CORTEX_VAULT_KEY",
            "base64",
        ),
        (
            vec![("CORTEX_VAULT_KEY", short.clone())],
            "CORTEX_VAULT_KEY",
            "16 bytes, not 32",
        ),
        (
            vec![("CORTEX_VAULT_KEYS", good.clone())],
            "CORTEX_VAULT_KEYS",
            "id:base64",
        ),
        (
            vec![("CORTEX_VAULT_KEYS", format!("k1:{short}"))],
            "CORTEX_VAULT_KEYS",
            "`k1`",
        ),
        (
            vec![("CORTEX_VAULT_KEYS", format!("k1:{good},k1:{good}"))],
            "CORTEX_VAULT_KEYS",
            "twice",
        ),
        (
            vec![("CORTEX_VAULT_KEYS", format!("bad id:{good}"))],
            "CORTEX_VAULT_KEYS",
            "key id",
        ),
        (
            vec![
                ("CORTEX_VAULT_KEYS", format!("k1:{good}")),
                ("CORTEX_VAULT_KEY", good.clone()),
            ],
            "CORTEX_VAULT_KEY",
            "not both",
        ),
        (
            vec![("CORTEX_VAULT_PATH", "/tmp/v.db".into())],
            "CORTEX_VAULT_KEY",
            "no key",
        ),
        (
            vec![
                ("CORTEX_VAULT_KEY", good.clone()),
                ("CORTEX_DATABASE_URL", "mysql://db.example.com/x".into()),
            ],
            "CORTEX_DATABASE_URL",
            "only PostgreSQL",
        ),
        (
            vec![
                ("CORTEX_VAULT_KEY", good.clone()),
                (
                    "CORTEX_DATABASE_URL",
                    "postgres://u:pw@db.example.com/x?sslmode=disable".into(),
                ),
            ],
            "CORTEX_DATABASE_URL",
            "sslmode=require",
        ),
        (
            vec![
                ("CORTEX_VAULT_KEY", good.clone()),
                ("CORTEX_VAULT_CACHE_ENTRIES", "many".into()),
            ],
            "CORTEX_VAULT_CACHE_ENTRIES",
            "whole number",
        ),
    ];
    for (vars, variable, says) in cases {
        let env: HashMap<&str, String> = vars.iter().cloned().collect();
        let err = VaultConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert_eq!(err.variable, variable, "{vars:?}: {err}");
        assert!(err.problem.contains(says), "{vars:?}: {err}");
        if variable.starts_with("CORTEX_VAULT_KEY") {
            assert!(
                err.problem.contains("openssl rand -base64 32")
                    || says == "twice"
                    || says == "key id"
                    || says == "not both",
                "{err}"
            );
            assert!(
                !err.problem.contains(&good) && !err.problem.contains(&short),
                "{err}"
            );
        }
    }
    // Nothing set: no vault, no error.
    assert!(VaultConfig::from_lookup(|_| None).unwrap().is_none());
    // A single key gets the documented id; a remote PostgreSQL without an
    // explicit sslmode gets TLS required.
    let env = HashMap::from([
        ("CORTEX_VAULT_KEY", good.clone()),
        (
            "CORTEX_DATABASE_URL",
            "postgres://u:pw@db.example.com/x".to_string(),
        ),
    ]);
    let c = VaultConfig::from_lookup(|k| env.get(k).cloned())
        .unwrap()
        .unwrap();
    assert_eq!(c.keys.ids().collect::<Vec<_>>(), ["default"]);
    match &c.storage {
        VaultStorage::Postgres { config, .. } => {
            assert_eq!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            )
        }
        other => panic!("{other:?}"),
    }
    let shown = format!("{c:?}");
    assert!(!shown.contains("pw") && !shown.contains(&good), "{shown}");

    // The command stops with exit code 2 naming the variable.
    let out = rotate_command()
        .env("CORTEX_VAULT_KEYS", format!("k1:{short}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CORTEX_VAULT_KEYS") && stderr.contains("openssl rand"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_cache_never_exceeds_its_bounds_and_follows_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let mut c = sqlite(&path, &keys(&[("k1", 1)]));
    c.cache = VaultCacheLimits {
        max_entries: 8,
        max_bytes: 4096,
        max_age_s: 300,
    };
    let vault = Vault::open(&c).await.unwrap();
    // What a request handler awaits must be `Send`.
    fn send<T: Send>(f: T) -> T {
        f
    }
    send(vault.put("first", "tracker", grant("first", "tracker")))
        .await
        .unwrap();
    send(vault.get("first", "tracker")).await.unwrap().unwrap();
    send(vault.rotate()).await.unwrap();
    let mut peak = 0;
    for i in 0..60 {
        let sub = format!("user{i}");
        let mut g = grant(&sub, "tracker");
        // Sizes from small to larger than a quarter of the byte bound.
        g.access_token = Secret::new("t".repeat(20 * i));
        vault.put(&sub, "tracker", g).await.unwrap();
        vault.get(&sub, "tracker").await.unwrap().unwrap();
        let usage = vault.cache_usage();
        assert!(usage.entries <= 8, "{usage:?}");
        assert!(usage.bytes <= 4096, "{usage:?}");
        peak = peak.max(usage.entries);
    }
    assert!(peak >= 4, "the cache was used at all ({peak})");

    // A hit comes from memory: a row removed behind the vault's back is
    // still served until a write through the vault drops it.
    vault
        .put("zed", "tracker", grant("zed", "tracker"))
        .await
        .unwrap();
    vault.get("zed", "tracker").await.unwrap().unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM vault_grants WHERE sub = 'zed'", [])
        .unwrap();
    assert!(
        vault.get("zed", "tracker").await.unwrap().is_some(),
        "served from the cache"
    );
    assert!(!vault.delete("zed", "tracker").await.unwrap());
    assert_eq!(
        vault.get("zed", "tracker").await.unwrap(),
        None,
        "delete drops it"
    );
    // put replaces it.
    vault
        .put("zed", "tracker", grant("zed", "tracker"))
        .await
        .unwrap();
    vault.get("zed", "tracker").await.unwrap().unwrap();
    let mut renewed = grant("zed", "tracker");
    renewed.access_token = Secret::new("renewed".into());
    vault.put("zed", "tracker", renewed).await.unwrap();
    let got: Arc<StoredGrant> = vault.get("zed", "tracker").await.unwrap().unwrap();
    assert_eq!(got.grant.access_token.expose(), "renewed");
    // An expired grant is served (the caller refreshes it) but not kept.
    let before = vault.cache_usage();
    let mut expired = grant("old", "tracker");
    expired.expires_at = Some(cortex_now() - 10);
    vault.put("old", "tracker", expired).await.unwrap();
    assert!(vault.get("old", "tracker").await.unwrap().is_some());
    assert_eq!(vault.cache_usage(), before);
}

#[tokio::test]
async fn postgres_round_trip_binding_and_rotation_on_a_real_server() {
    let server = PgServer::start();
    let admin = server.client("postgres").await;
    admin.batch_execute("CREATE DATABASE vault").await.unwrap();
    let url = server.url("vault");

    let old = Vault::open(&postgres(&url, &keys(&[("old", 1)])))
        .await
        .unwrap();
    round_trip(&old).await;
    drop(old);

    // The raw rows hold no token, scope or account label.
    let db = server.client("vault").await;
    let rows = db
        .query(
            "SELECT sub, server, key_id, nonce, ciphertext, created_at::text, updated_at::text \
             FROM vault_grants",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), PAIRS.len());
    let mut raw = Vec::new();
    for row in &rows {
        for i in [0, 1, 2, 5, 6] {
            raw.extend_from_slice(row.get::<_, &str>(i).as_bytes());
        }
        for i in [3, 4] {
            raw.extend_from_slice(row.get::<_, &[u8]>(i));
        }
    }
    assert!(contains(&raw, "carol|with:odd chars"));
    for (sub, server) in PAIRS {
        for secret in secrets_of(sub, server) {
            assert!(!contains(&raw, &secret), "`{secret}` is in a row");
        }
    }
    assert!(!contains(&raw, "issues:write"));

    // Copies to another sub or server do not open.
    for sql in COPIES {
        db.batch_execute(sql).await.unwrap();
    }
    let both = Vault::open(&postgres(&url, &keys(&[("new", 2), ("old", 1)])))
        .await
        .unwrap();
    copies_do_not_open(&both).await;
    db.batch_execute("DELETE FROM vault_grants WHERE sub = 'mallory' OR server = 'design2'")
        .await
        .unwrap();

    // Rotation (the migrations ran once; this open found them applied).
    let report = both.rotate().await.unwrap();
    assert_eq!((report.total, report.resealed), (4, 4), "{report}");
    assert!(report.is_complete());
    drop(both);
    let new_only = Vault::open(&postgres(&url, &keys(&[("new", 2)])))
        .await
        .unwrap();
    // The server drops the vault's connection (a restart, a fail-over):
    // the vault connects again.
    let killed: i64 = db
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'vault' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    for (sub, server) in PAIRS {
        assert_eq!(
            new_only.get(sub, server).await.unwrap().unwrap().grant,
            grant(sub, server)
        );
    }
    let versions: i64 = db
        .query_one("SELECT COUNT(*) FROM vault_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 2, "grants, then client registrations");
    // An unknown key id is reported by PostgreSQL's engine too.
    let other = Vault::open(&postgres(&url, &keys(&[("third", 3)])))
        .await
        .unwrap();
    assert!(matches!(
        other.get("alice", "tracker").await,
        Err(VaultError::UnknownKey { key_id, .. }) if key_id == "new"
    ));
}

#[tokio::test]
async fn postgres_over_verified_tls_and_never_past_an_unknown_certificate() {
    // The server takes TCP clients only over TLS (pg_hba `hostssl`), so a
    // working vault proves the connection was encrypted.
    let server = PgServer::start_tls(
        include_bytes!("../fixtures/backend-cert.pem"),
        include_bytes!("../fixtures/backend-key.pem"),
    );
    let admin = server.client("postgres").await;
    admin.batch_execute("CREATE DATABASE vault").await.unwrap();
    let url = format!("{}?sslmode=require", server.url("vault"));
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), include_bytes!("../fixtures/test-ca-cert.pem")).unwrap();
    let with_ca = config(&[
        ("CORTEX_VAULT_KEY", b64(1)),
        ("CORTEX_DATABASE_URL", url.clone()),
        ("CORTEX_DATABASE_CA_FILE", ca.path().display().to_string()),
    ]);
    let vault = Vault::open(&with_ca).await.unwrap();
    vault
        .put("alice", "tracker", grant("alice", "tracker"))
        .await
        .unwrap();
    assert!(vault.get("alice", "tracker").await.unwrap().is_some());
    let encrypted: bool = admin
        .query_one(
            "SELECT bool_and(ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'vault'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the vault's connection uses TLS");

    // Without the authority, the certificate is not trusted: no connection.
    let err = Vault::open(&postgres(&url, &keys(&[("k1", 1)])))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("CORTEX_DATABASE_URL") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // A CA file that is not PEM stops the start naming its variable.
    std::fs::write(ca.path(), b"not a certificate").unwrap();
    let env = HashMap::from([
        ("CORTEX_VAULT_KEY", b64(1)),
        ("CORTEX_DATABASE_URL", url),
        ("CORTEX_DATABASE_CA_FILE", ca.path().display().to_string()),
    ]);
    let err = VaultConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
    assert_eq!(err.variable, "CORTEX_DATABASE_CA_FILE", "{err}");
}

//! A throwaway PostgreSQL server for tests: Debian's server binaries,
//! `initdb` in a temporary directory, the server on a free loopback port
//! with its Unix socket inside that directory, ready when `pg_isready`
//! says so, stopped (and the directory removed) when dropped.
//!
//! The binaries are looked up in `CORTEX_TEST_PG_BIN`, then in the newest
//! `/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run as root;
//! under root the cluster runs as the `postgres` user (or `nobody`).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The cluster's superuser (trusted on loopback, no password).
pub(crate) const PG_USER: &str = "cortex";

pub(crate) struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CORTEX_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/<version>/bin/initdb, \
             CORTEX_TEST_PG_BIN unset): run `.ci/run`, which installs Debian's `postgresql` \
             package, or `apt-get install postgresql`"
        ),
    }
}

/// (uid, gid) to run the server as when this process is root.
fn unprivileged_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    // The owner of /proc/self is this process's effective user.
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let find = |name: &str| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    Some(
        find("postgres")
            .or_else(|| find("nobody"))
            .unwrap_or((65534, 65534)),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.env_clear().env("LC_ALL", "C").env("TZ", "UTC");
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts a new cluster (a few seconds: `initdb`, then the server).
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a cluster that accepts TCP connections only over TLS, with
    /// this certificate and key (PEM); the Unix socket stays plain.
    pub(crate) fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&[u8], &[u8])>) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("cortex-pg-")
            .tempdir()
            .unwrap();
        let run_as = unprivileged_user();
        let mut server = Self {
            dir,
            bin,
            port: 0,
            run_as,
            child: None,
        };
        for sub in ["data", "sock"] {
            std::fs::create_dir(server.dir.path().join(sub)).unwrap();
        }
        if let Some((uid, gid)) = run_as {
            for p in [
                server.dir.path().to_path_buf(),
                server.data(),
                server.dir.path().join("sock"),
            ] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            server.require_tls(cert, key);
        }
        // A port found free can be taken before the server binds it:
        // another one is tried then.
        for _ in 0..5 {
            if server.try_listen(free_port()) {
                return server;
            }
        }
        panic!(
            "the PostgreSQL server did not start: {}",
            std::fs::read_to_string(server.log()).unwrap_or_default()
        );
    }

    /// Installs the certificate and lets TCP clients in only over TLS.
    fn require_tls(&self, cert: &[u8], key: &[u8]) {
        use std::{io::Write as _, os::unix::fs::PermissionsExt as _};
        let data = self.data();
        for (name, pem) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap()
            .write_all(b"\nssl = on\n")
            .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
    }

    fn try_listen(&mut self, port: u16) -> bool {
        let log = std::fs::File::create(self.log()).unwrap();
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(self.log(), Some(uid), Some(gid)).unwrap();
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.port = port;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                assert!(
                    log.contains("could not bind") || log.contains("already in use"),
                    "the PostgreSQL server exited ({status}): {log}"
                );
                return false;
            }
            let ready = self
                .command("pg_isready")
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    PG_USER,
                ])
                .status()
                .unwrap();
            if ready.success() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "the PostgreSQL server is not ready after 60 s: {}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            // Between two readiness checks.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A URL for database `db` (`postgres` always exists).
    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection of the test's own over the Unix socket (to inspect
    /// raw rows).
    pub(crate) async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(self.dir.path().join("sock"))
            .port(self.port)
            .user(PG_USER)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl PgServer {
    /// Stops the server (as an operator would), keeping its data and port.
    pub(crate) fn stop(&mut self) {
        self.halt();
    }

    /// Starts the stopped server again on the same port.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        assert!(
            self.try_listen(self.port),
            "the PostgreSQL server did not start again on port {}",
            self.port
        );
    }

    fn halt(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let stopped = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.halt();
    }
}

//! A throwaway Redis server for the tests (the gateway's unit tests, its
//! integration tests through `testing`, e2e and the bench). A leaf: it
//! imports nothing from the gateway.

/// A throwaway Redis server for tests: Debian's `/usr/bin/redis-server`
/// (or `CORTEX_TEST_REDIS_SERVER`) on a free loopback port, in a temporary
/// directory, with persistence off (`--save '' --appendonly no`). Ready
/// when it answers `PING`; killed (and the directory removed) when
/// dropped. [`RedisServer::stop`] and [`RedisServer::start`] take it down
/// and bring it back on the same port.
#[derive(Debug)]
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
    /// The server binary.
    bin: std::path::PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn start_new() -> Self {
        let bin = std::env::var("CORTEX_TEST_REDIS_SERVER")
            .unwrap_or_else(|_| "/usr/bin/redis-server".to_string());
        Self::start_new_with(bin)
    }

    /// Starts the server binary `bin` (Redis, or a server that speaks its
    /// protocol and takes its options, such as Valkey's `valkey-server`)
    /// and waits until it answers.
    pub fn start_new_with(bin: impl Into<std::path::PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self {
            dir,
            port,
            child: None,
            bin: bin.into(),
        };
        server.start();
        server
    }

    /// The server's URL (`redis://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// (Re)starts the server on its port and waits until it answers `PING`.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = self.dir.path().join("redis.log");
        let child = std::process::Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): run `.ci/run`, which installs Debian's \
                     `redis-server` package (and Valkey through `bash e2e/install.sh`), or \
                     `apt-get install redis-server`",
                    self.bin.display()
                )
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.answers() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited ({status}): {}",
                    self.bin.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not answer PING on port {}",
                self.bin.display(),
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Kills the server (its data is gone: persistence is off) and waits
    /// for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers `PING` now.
    pub fn answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Every key and every value (strings, hash fields and values, list
    /// items, set members) the server holds, in RESP text: what a dump of
    /// the store would show.
    pub fn dump(&self) -> String {
        self.command(
            "EVAL \"local o={} for _,k in ipairs(redis.call('KEYS','*')) do o[#o+1]=k \
             local t=redis.call('TYPE',k).ok \
             if t=='string' then o[#o+1]=redis.call('GET',k) \
             elseif t=='hash' then for _,v in ipairs(redis.call('HGETALL',k)) do o[#o+1]=v end \
             elseif t=='list' then for _,v in ipairs(redis.call('LRANGE',k,0,-1)) do o[#o+1]=v end \
             elseif t=='set' then for _,v in ipairs(redis.call('SMEMBERS',k)) do o[#o+1]=v end \
             elseif t=='zset' then for _,v in ipairs(redis.call('ZRANGE',k,0,-1)) do o[#o+1]=v end end end \
             return o\" 0",
        )
    }

    /// Runs one command (inline form: arguments separated by spaces,
    /// quoted with `"` when needed) and returns its reply in the RESP text
    /// Redis sent.
    pub fn command(&self, line: &str) -> String {
        use std::io::{BufRead as _, Read as _, Write as _};
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("redis up");
        (&s).write_all(format!("{line}\r\n").as_bytes())
            .expect("sent");
        let mut reader = std::io::BufReader::new(s);
        let mut out = String::new();
        // Values still to read: one reply, arrays add their elements.
        let mut pending = 1i64;
        while pending > 0 {
            let mut head = String::new();
            reader.read_line(&mut head).expect("a reply");
            out.push_str(&head);
            pending -= 1;
            let n: i64 = head[1..].trim().parse().unwrap_or(0);
            match head.as_bytes().first() {
                Some(b'*') => pending += n.max(0),
                Some(b'$') if n >= 0 => {
                    let mut body = vec![0u8; n as usize + 2];
                    reader.read_exact(&mut body).expect("a bulk string");
                    out.push_str(&String::from_utf8_lossy(&body));
                }
                _ => {}
            }
        }
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

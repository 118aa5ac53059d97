//! A throw-away Redis server for integration tests: `redis-server` on a free 127.0.0.1 port,
//! without persistence, its working directory a temporary one, killed when dropped. With
//! `start_tls`, the port speaks TLS only (`--port 0 --tls-port PORT`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running Redis server, stopped when dropped.
pub struct Redis {
    child: Child,
    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` with TLS.
    pub url: String,
    pub port: u16,
    // Dropped last: the directory goes only after the server has stopped.
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts the server; panics with a hint when `redis-server` is missing.
    pub fn start() -> Redis {
        Redis::start_with(None)
    }

    /// Same, speaking TLS only, with this certificate and key, trusting `ca_file` for client
    /// certificates; `require_client_cert` is `--tls-auth-clients yes`.
    #[allow(dead_code)]
    pub fn start_tls(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
        ca_file: &std::path::Path,
        require_client_cert: bool,
    ) -> Redis {
        Redis::start_with(Some((cert_file, key_file, ca_file, require_client_cert)))
    }

    fn start_with(
        tls: Option<(&std::path::Path, &std::path::Path, &std::path::Path, bool)>,
    ) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("plimsoll-redis")
            .tempdir()
            .unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new("redis-server");
        match tls {
            None => cmd.args(["--port", &port.to_string()]),
            Some((cert, key, ca, auth)) => cmd
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", if auth { "yes" } else { "no" }]),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs: install the `redis-server` package (scripts/test does)");
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        let mut r = Redis {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        // A TLS port cannot be PINGed in plain text: accepting connections is ready enough.
        let ready = |r: &Redis| match tls {
            None => r.command(&["PING"]).as_deref() == Some("+PONG"),
            Some(_) => TcpStream::connect(("127.0.0.1", r.port)).is_ok(),
        };
        while !ready(&r) {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("redis-server exited during start-up: {status}");
            }
            assert!(t0.elapsed() < START_TIMEOUT, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// Sends one command and returns the first line of the answer (`+PONG`, `:3`, …); enough
    /// for the checks the tests make without going through the client under test.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// The server's process id (a test that crashes it sends it SIGKILL).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Keys in the database (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        let answer = self.command(&["DBSIZE"]).expect("DBSIZE answers");
        answer
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected DBSIZE answer {answer:?}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A throw-away PostgreSQL server for integration tests: a fresh cluster in a temporary
//! directory, listening on a free 127.0.0.1 port (its unix socket stays in that directory),
//! stopped and deleted when dropped. Any test that needs a real database can use it; it knows
//! nothing of what the tests put in it.
//!
//! PostgreSQL refuses to run as root, and tests here often do: then the server runs as the
//! `postgres` system user that Debian's package creates (the process's uid is switched before
//! exec, no `su` or `runuser` in between, so stopping it stops the server itself).

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running PostgreSQL server, stopped when dropped.
pub struct Postgres {
    child: Child,
    bin: PathBuf,
    data: PathBuf,
    user: Option<(u32, u32)>,
    /// `postgres://plimsoll@127.0.0.1:PORT/postgres`: trust authentication, superuser.
    pub url: String,
    pub port: u16,
    // Dropped last: the cluster's files go only after the server has stopped.
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates a cluster and starts the server; panics with a hint when PostgreSQL is missing.
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// Same, with TLS on (`ssl=on`) using this certificate and key (PEM); clients may still
    /// connect without TLS, as `sslmode=prefer` expects.
    #[allow(dead_code)]
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("plimsoll-pg")
            .tempdir()
            .unwrap();
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = as_user(Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "plimsoll",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .arg("--no-sync")
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut ssl_args: Vec<&str> = Vec::new();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, text) in [("server.crt", cert), ("server.key", key)] {
                let p = data.join(name);
                std::fs::write(&p, text).unwrap();
                // The server refuses a key others can read.
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
                }
            }
            ssl_args = vec![
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
            ];
        }
        // Durability costs time and proves nothing here: the cluster dies with the test.
        let child = as_user(Command::new(bin.join("postgres")), user)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(&ssl_args)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let mut pg = Postgres {
            child,
            bin,
            data,
            user,
            url: format!("postgres://plimsoll@127.0.0.1:{port}/postgres"),
            port,
            _dir: dir,
        };
        pg.wait_ready();
        pg
    }

    /// The argv of `pg_ctl -D DATA ARGS…` on this cluster, run as the server's user (through
    /// `runuser` when the test runs as root), for a fault action that restarts or stops it.
    pub fn pg_ctl_argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = Vec::new();
        if self.user.is_some() {
            argv.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        argv.push(self.bin.join("pg_ctl").display().to_string());
        argv.push("-D".into());
        argv.push(self.data.display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// The server's options as this helper starts it, for `pg_ctl start -o …` after a stop
    /// (`restart` reuses them by itself).
    pub fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self._dir.path().display()
        )
    }

    /// A file the server's user may write (the log of a server `pg_ctl` starts).
    pub fn log_path(&self) -> PathBuf {
        self._dir.path().join("pg_ctl.log")
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited during start-up: {status}");
            }
            let up = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Command::new(self.bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
            if up {
                return;
            }
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "postgres did not accept connections within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown: nothing in a test cluster needs a checkpoint.
        let _ = as_user(Command::new(self.bin.join("pg_ctl")), self.user)
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w", "-t", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest `/usr/lib/postgresql/*/bin` with an `initdb` (Debian's layout), or the folder
/// in `PLIMSOLL_TEST_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PLIMSOLL_TEST_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!("no PostgreSQL server under /usr/lib/postgresql: install the `postgresql` package (scripts/test does)")
    })
}

/// The uid and gid to run the server as: the `postgres` user when we are root, else ourselves.
fn server_user() -> Option<(u32, u32)> {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("`id` runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("running as root needs the `postgres` user (created by Debian's package)")
    };
    Some((id("-u"), id("-g")))
}

fn as_user(mut c: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
        // The server's environment must not point it at root's files.
        c.env("HOME", "/tmp");
    }
    c
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

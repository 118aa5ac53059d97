//! Helpers shared by the integration tests: real servers on 127.0.0.1, bounded in time.
#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plimsoll::report::ProbeResult;

/// Runs the first probe of a TOML configuration and returns its result.
pub fn run_toml(text: &str) -> ProbeResult {
    let cfg = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    plimsoll::probe::run_probe(&cfg, &cfg.probe[0], &Default::default())
}

/// A raw TCP server that hands every accepted connection to `handler` on its own thread.
/// The listener thread lives as long as the test process; connections end with the client.
pub fn raw_server<F>(handler: F) -> u16
where
    F: Fn(TcpStream) + Send + Sync + Clone + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let h = handler.clone();
            std::thread::spawn(move || h(s));
        }
    });
    port
}

/// Reads one request head (up to the blank line) from a connection; false at EOF.
pub fn read_head(s: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    let mut any = false;
    loop {
        line.clear();
        match s.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" && any => return true,
            Ok(_) => any = true,
        }
    }
}

/// Serves the same raw response to every request on keep-alive connections.
pub fn canned_server(response: &'static [u8]) -> u16 {
    raw_server(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        while read_head(&mut r) {
            if w.write_all(response).is_err() {
                return;
            }
        }
    })
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The sample backend, killed when dropped.
pub struct Backend {
    child: Child,
    pub url: String,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::start_with(&[])
    }

    /// Starts the backend with extra command-line arguments (`--database-url URL`, …).
    pub fn start_with(args: &[&str]) -> Backend {
        let mut child = Command::new(env!("CARGO_BIN_EXE_plimsoll-sample-backend"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("sample backend starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Backend { child, url }
    }

    /// The backend's process id (for the capacity probe's `/proc` resource reads).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drains whatever a client sends until it closes (for servers that ignore requests).
pub fn drain(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// `promtool check metrics` on an exposition: parse errors and lint findings fail the test.
pub fn promtool_check(text: &str) {
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("promtool runs (scripts/test installs the prometheus package)");
    // promtool exits 0 on lint-clean input, 3 on lint findings only, 1 on a parse error.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {report}\n{text}");
}

//! `plimsoll run` as a child process for the integration tests: started on a free port, its
//! log collected, its endpoints fetched over plain HTTP, killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `plimsoll run`, killed when dropped; its log lines are collected.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The daemon's own state directory (its baseline store), unless the test named one.
    _state: tempfile::TempDir,
}

impl Daemon {
    pub fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        cmd.args(["run", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Each daemon keeps its baseline store apart from every other test's.
        let state = tempfile::tempdir().unwrap();
        cmd.env("STATE_DIRECTORY", state.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("plimsoll starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on http://".len()..].trim().to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the daemon reports its address");
        Daemon {
            child,
            addr,
            log,
            _state: state,
        }
    }

    pub fn get(&self, path: &str, headers: &[&str]) -> (u16, String) {
        http_get(&self.addr, path, headers)
    }

    pub fn probes(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/probes", &[]);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["probes"].as_array().unwrap().clone()
    }

    /// Polls the probe listing until `ok` holds, for at most `limit`.
    pub fn wait_for(&self, limit: Duration, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let p = self.probes();
            if ok(&p) {
                return p;
            }
            assert!(
                start.elapsed() < limit,
                "condition not met within {limit:?}: {p:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit; its exit code, or None after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // The endpoints answer with Content-Length, never chunked.
    (status, body.to_string())
}

//! A real Prometheus (and Alertmanager) for the integration tests: started on free ports of
//! 127.0.0.1 with their data in a temp directory, killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0, so Go servers answer without chunked framing and close.
pub fn get_json(addr: &str, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Polls `f` every 250 ms until it gives a value; fails the test after `limit`.
pub fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Starts Prometheus scraping `target` every second and evaluating the shipped rules every
/// second (`alertmanager`: where to send alerts); returns it and its address.
pub fn start_prometheus(dir: &Path, target: &str, alertmanager: Option<&str>) -> (Server, String) {
    let port = free_port();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/plimsoll.rules.yml");
    let alerting = alertmanager
        .map(|am| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            )
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n{alerting}\
             scrape_configs:\n  - job_name: plimsoll\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let server = Server(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (scripts/test installs the prometheus package)"),
    );
    (server, format!("127.0.0.1:{port}"))
}

/// The alerts Prometheus holds now (pending and firing).
pub fn alerts(prom: &str) -> Option<Vec<Value>> {
    let v = get_json(prom, "/api/v1/alerts")?;
    v["data"]["alerts"].as_array().cloned()
}

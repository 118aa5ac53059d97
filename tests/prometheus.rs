//! The shipped alert rules against a real Prometheus and Alertmanager: Prometheus scrapes a
//! running daemon (OpenMetrics negotiation included), evaluates `alerts/plimsoll.rules.yml`,
//! and delivers the race alert to Alertmanager. Everything listens on 127.0.0.1 and lives in
//! a temp directory.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{closed_port, Backend};
use serde_json::Value;

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0, so Go servers answer without chunked framing and close.
fn get_json(addr: &str, path: &str) -> Option<Value> {
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

fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_evaluates_the_rules_and_alertmanager_gets_the_race_alert() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let dead = closed_port();
    let config = dir.path().join("plimsoll.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[report]
dir = ""

[[target]]
name = "sample"
url = "{url}"

[[target]]
name = "dead"
url = "http://127.0.0.1:{dead}"

[[probe]]
name = "vendor-race-racy"
kind = "race"
target = "sample"
schedule = {{ every = "1s" }}
[probe.race]
claimants = 5
rounds = 5
[probe.race.setup]
method = "POST"
url = "/orders"
[probe.race.claim]
method = "POST"
url = "/orders/{{{{id}}}}/accept-racy"
json = {{ vendor = "v{{{{claimant}}}}" }}

[[probe]]
name = "refused"
kind = "load"
target = "dead"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "200ms", rate = 10 }}]
[probe.load.request]
url = "/"
"#,
            url = backend.url
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &[]);

    let am_port = free_port();
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        "route:\n  receiver: 'null'\n  group_wait: 1s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    let _am = Server(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager runs (scripts/test installs prometheus-alertmanager)"),
    );

    let prom_port = free_port();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/plimsoll.rules.yml");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: plimsoll\n    static_configs:\n      - targets: ['{}']\n",
            daemon.addr
        ),
    )
    .unwrap();
    let _prom = Server(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (scripts/test installs the prometheus package)"),
    );
    let prom = format!("127.0.0.1:{prom_port}");
    let am = format!("127.0.0.1:{am_port}");

    // The scrape works: the target is up and the daemon's series are in the TSDB.
    wait_until(Duration::from_secs(30), "a healthy scrape", || {
        let v = get_json(&prom, "/api/v1/targets")?;
        let t = v["data"]["activeTargets"].as_array()?.first()?.clone();
        (t["health"] == "up").then_some(())
    });
    let grade = wait_until(Duration::from_secs(30), "the refused probe's grade", || {
        let v = get_json(
            &prom,
            "/api/v1/query?query=plimsoll_probe_grade%7Bprobe%3D%22refused%22%7D",
        )?;
        v["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(grade, "3");

    // The rules evaluate on the real series: the race alert fires (no `for`), the critical
    // probe alert is pending (it waits 5 minutes before firing).
    let alerts = wait_until(Duration::from_secs(40), "the race alert firing", || {
        let v = get_json(&prom, "/api/v1/alerts")?;
        let list = v["data"]["alerts"].as_array()?.clone();
        list.iter()
            .any(|a| {
                a["labels"]["alertname"] == "PlimsollRaceDetected"
                    && a["labels"]["probe"] == "vendor-race-racy"
                    && a["state"] == "firing"
            })
            .then_some(list)
    });
    assert!(
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "PlimsollProbeCritical"
                && a["labels"]["probe"] == "refused"
                && a["state"] == "pending"),
        "{alerts:#?}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "PlimsollProbeCritical"
                && a["labels"]["probe"] == "vendor-race-racy"
                && a["state"] == "firing"),
        "{alerts:#?}"
    );

    // Alertmanager received it, with the annotations a person on call needs.
    let got = wait_until(Duration::from_secs(30), "the alert at Alertmanager", || {
        let v = get_json(&am, "/api/v2/alerts")?;
        v.as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "PlimsollRaceDetected")
            .cloned()
    });
    assert_eq!(got["labels"]["severity"], "warning");
    assert_eq!(got["labels"]["probe"], "vendor-race-racy");
    assert!(got["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("runbook.md#plimsollracedetected"));
    drop(daemon);
}

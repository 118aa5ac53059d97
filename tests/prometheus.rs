//! The shipped alert rules against a real Prometheus and Alertmanager: Prometheus scrapes a
//! running daemon (OpenMetrics negotiation included), evaluates `alerts/plimsoll.rules.yml`,
//! and delivers the race alert to Alertmanager. Everything listens on 127.0.0.1 and lives in
//! a temp directory.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::Daemon;
use common::prometheus::{free_port, get_json, start_prometheus, wait_until, Server};
use common::{closed_port, Backend};

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

    let am = format!("127.0.0.1:{am_port}");
    let (_prom, prom) = start_prometheus(dir.path(), &daemon.addr, Some(&am));

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

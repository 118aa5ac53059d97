//! The stop contract: a stopped run of any kind returns what it measured within the grace
//! period plus one second, whatever its target does, and its result is recorded. Targets here
//! accept connections and never say a word; every request timeout is a minute, so only the
//! stop can end these runs. Everything listens on 127.0.0.1.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use serde_json::Value;

/// The daemon's grace period in these tests.
const GRACE: Duration = Duration::from_secs(2);
/// The stop bound on top of the grace period.
const STOP_BOUND: Duration = Duration::from_secs(1);
/// Process exit, reading the last log lines, the scheduler's 20 ms polls: a little slack.
const SLACK: Duration = Duration::from_millis(500);

/// A TCP server on 127.0.0.1 that accepts every connection and never reads or writes; the
/// connections stay open until the test ends.
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            held.lock().unwrap().push(s);
        }
    });
    port
}

/// The `[[probe]]` table of each kind, aimed at a silent server on `port`.
fn probe_of(kind: &str, port: u16) -> String {
    let body = match kind {
        "load" => r#"
[probe.load]
concurrency = 4
duration = "60s"
timeout = "60s"
[probe.load.request]
url = "/"
"#
        .to_string(),
        "race" => r#"
[probe.race]
claimants = 2
rounds = 10
timeout = "60s"
[probe.race.claim]
method = "POST"
url = "/claim"
"#
        .to_string(),
        "benchmark" => r#"
[probe.benchmark]
timeout = "60s"
[[probe.benchmark.operations]]
name = "op"
samples = 10
request = { url = "/" }
"#
        .to_string(),
        "redis" => format!(
            r#"
[probe.redis]
url = "redis://127.0.0.1:{port}"
concurrency = 2
duration = "60s"
timeout = "60s"
connect_timeout = "60s"
"#
        ),
        "pubsub" => r#"
[probe.pubsub]
url = "/ws"
publish_url = "/publish"
subscribers = 1
rate = 1
duration = "60s"
timeout = "60s"
"#
        .to_string(),
        "sql" => format!(
            r#"
[probe.sql]
database_url = "postgres://u:p@127.0.0.1:{port}/db"
concurrency = 1
duration = "60s"
timeout = "60s"
[[probe.sql.queries]]
name = "q"
sql = "SELECT 1"
"#
        ),
        other => panic!("no probe table for {other}"),
    };
    let target = match kind {
        "redis" | "sql" => String::new(),
        _ => "target = \"silent\"\n".to_string(),
    };
    format!(
        "[[probe]]\nname = \"hung-{kind}\"\nkind = \"{kind}\"\n{target}schedule = {{ every = \"1s\" }}\n{body}"
    )
}

fn config(dir: &std::path::Path, grace: &str, probes: &str, port: u16) -> std::path::PathBuf {
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[daemon]
grace_period = "{grace}"

[report]
dir = "{results}"

[[target]]
name = "silent"
url = "http://127.0.0.1:{port}"

{probes}
"#,
            results = dir.join("results").display(),
        ),
    )
    .unwrap();
    p
}

/// Starts a daemon with one probe of `kind` against a silent server, stops it mid-run and
/// returns how long the process took to exit after SIGTERM and the recorded result.
fn stop_mid_run(kind: &str) -> (Duration, Value) {
    let port = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "2s", &probe_of(kind, port), port);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(Duration::from_secs(10), |p| p[0]["running"] == true);
    std::thread::sleep(Duration::from_millis(500));
    d.signal("-TERM");
    let t0 = Instant::now();
    let code = d.wait_exit(Duration::from_secs(90));
    let took = t0.elapsed();
    eprintln!("stop time {kind}: {took:?} (grace {GRACE:?})");
    assert_eq!(code, Some(0), "{}", d.log_text());
    let docs: Vec<_> = std::fs::read_dir(dir.path().join("results"))
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert_eq!(docs.len(), 1, "{kind}: {docs:?}\n{}", d.log_text());
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&docs[0]).unwrap()).unwrap();
    assert_eq!(doc["probe"], format!("hung-{kind}"));
    (took, doc)
}

fn assert_stopped_in_time(kind: &str) -> Value {
    let (took, doc) = stop_mid_run(kind);
    assert!(
        took < GRACE + STOP_BOUND + SLACK,
        "{kind}: exited {took:?} after SIGTERM (grace {GRACE:?})\n{doc:#}"
    );
    doc
}

#[test]
fn stop_load_run_against_a_silent_target_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("load");
    assert!(
        doc["stats"]["iterations"]["abandoned"].as_u64().unwrap() >= 1,
        "{doc:#}"
    );
    assert!(
        doc["notes"].to_string().contains("abandoned at stop"),
        "{doc:#}"
    );
}

#[test]
fn stop_race_run_against_a_silent_target_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("race");
    assert!(doc["notes"].to_string().contains("abandoned"), "{doc:#}");
}

#[test]
fn stop_benchmark_run_against_a_silent_target_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("benchmark");
    assert!(
        doc["stats"]["iterations"]["abandoned"].as_u64().unwrap() >= 1,
        "{doc:#}"
    );
}

#[test]
fn stop_redis_run_against_a_silent_server_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("redis");
    assert!(
        doc["stats"]["iterations"]["abandoned"].as_u64().unwrap() >= 1,
        "{doc:#}"
    );
}

#[test]
fn stop_pubsub_run_against_a_silent_target_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("pubsub");
    assert!(doc.to_string().contains("stopped"), "{doc:#}");
}

#[test]
fn stop_sql_run_against_a_silent_server_returns_within_grace_plus_one_second() {
    let doc = assert_stopped_in_time("sql");
    assert!(
        doc["stats"]["iterations"]["abandoned"].as_u64().unwrap() >= 1,
        "{doc:#}"
    );
}

#[test]
fn stop_second_sigterm_ends_the_process_at_once() {
    let port = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "60s", &probe_of("load", port), port);
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(Duration::from_secs(10), |p| p[0]["running"] == true);
    d.signal("-TERM");
    std::thread::sleep(Duration::from_millis(300));
    d.signal("-TERM");
    let t0 = Instant::now();
    let code = d.wait_exit(Duration::from_secs(30));
    let took = t0.elapsed();
    eprintln!("stop time after a second SIGTERM: {took:?}");
    assert_eq!(code, Some(0), "{}", d.log_text());
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn stop_once_on_sigterm_keeps_and_writes_the_partial_result() {
    let port = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "2s", &probe_of("load", port), port);
    let out = dir.path().join("out.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["once", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "once did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    eprintln!("stop time of once after SIGTERM: {took:?}");
    // Exit code by verdict (every request hung: critical), never killed by the signal.
    assert_eq!(status.code(), Some(2), "{status:?}");
    assert!(took < STOP_BOUND + SLACK, "{took:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0]["notes"].to_string().contains("stopped"), "{text}");
    assert!(
        lines[0]["stats"]["iterations"]["abandoned"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

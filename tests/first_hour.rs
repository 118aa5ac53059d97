//! The first hour of a new user (issue 11): safe defaults, a dead target that ends a run early
//! with a hint, grades that say why and mean something for the model that was run.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn plimsoll() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
}

#[test]
fn a_dead_target_ends_the_run_early_with_a_hint() {
    let port = closed_port();
    let t0 = Instant::now();
    let out = plimsoll()
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/health"),
            "--duration",
            "10s",
            "--json",
        ])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}:\n{err}");
    let hint = format!("nothing listens on 127.0.0.1:{port} — is the service running?");
    assert!(err.contains(&hint), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["grade"], "critical");
    assert_eq!(doc["grade_reason"], format!("critical: {hint}"));
    // No flags: the gentle default, said on stderr.
    assert!(err.contains("a gentle 10 requests/s"), "{err}");
    eprintln!("dead target stopped after {took:?}");
}

#[test]
fn twenty_users_on_a_50ms_endpoint_grade_good_and_say_why() {
    let backend = Backend::start();
    let out = plimsoll()
        .args([
            "load",
            &format!("{}/delay?ms=50", backend.url),
            "--concurrency",
            "20",
            "--duration",
            "2s",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["grade"], "good", "{err}");
    // ~400 req/s would be a "warning" on the absolute 500 req/s table: a closed model is
    // not held to it without a target_rps, and the reason says so.
    let why = doc["grade_reason"].as_str().unwrap();
    assert!(why.starts_with("good: "), "{why}");
    assert!(why.contains("not graded: a closed-model run"), "{why}");
    let thresholds = doc["thresholds"].as_array().unwrap();
    assert!(thresholds.iter().all(|t| t["metric"] != "rps"), "{doc}");
    assert_eq!(
        thresholds.iter().filter(|t| t["decides"] == true).count(),
        1,
        "{doc}"
    );
    // The summary shows every figure, the reason and each threshold's mark and band.
    for want in [
        "why ",
        "min ",
        "p90 ",
        "max ",
        "status      200 ×",
        "threshold   ✓ p99",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    eprintln!("{err}");
}

#[test]
fn failed_requests_do_not_make_the_latency_look_fast() {
    // Every other request is a fast 503; the successful ones take 30 ms.
    let backend = Backend::start();
    let cfg = format!(
        r#"
[[target]]
name = "b"
url = "{url}"

[[probe]]
name = "mixed"
kind = "load"
target = "b"
[probe.load]
phases = [{{ duration = "1s", rate = 40 }}]
[[probe.load.steps]]
name = "slow-ok"
url = "/delay?ms=30"
[[probe.load.steps]]
name = "fast-fail"
url = "/status/503"
"#,
        url = backend.url
    );
    let r = run_toml(&cfg);
    let s = r.stats.as_ref().unwrap();
    assert!(s.errors > 0, "{s:?}");
    assert!(s.latency_ms.p50 >= 30.0, "{:?}", s.latency_ms);
    let failed = s.failed_latency_ms.expect("failed requests reported apart");
    assert!(failed.p50 < 30.0, "{failed:?}");
    // Two steps per iteration: the plan (iterations) is compared with iterations.
    assert!(s.iterations.rate_per_s.is_some());
    assert!(
        r.thresholds.iter().any(|t| t.metric == "iterations_per_s"),
        "{:?}",
        r.thresholds
    );
}

#[test]
fn once_out_dash_writes_the_documents_on_stdout() {
    let port = canned_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[target]]
name = "t"
url = "http://127.0.0.1:{port}"

[[probe]]
name = "p"
kind = "load"
target = "t"
[probe.load]
phases = [{{ duration = "500ms", rate = 20 }}]
[probe.load.request]
url = "/"
"#
        ),
    )
    .unwrap();
    let out = plimsoll()
        .current_dir(dir.path())
        .args(["once", "--config", "c.toml", "--out", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let line = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(doc["probe"], "p");
    assert!(!dir.path().join("-").exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("why "));
}

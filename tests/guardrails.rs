//! Guardrails end to end against the sample backend, which counts what it really received
//! (`/capacity/stats`): caps held at the target, an abort within a second of the target
//! failing, the allowlist, the kill switch (API and file, mid-run), blackout windows and
//! `once --dry-run`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::daemon::{http_get, Daemon};
use common::{run_toml, Backend};
use plimsoll::config::Grade;
use serde_json::Value;

fn stats(b: &Backend) -> Value {
    let addr = b.url.trim_start_matches("http://");
    let (status, body) = http_get(addr, "/capacity/stats", &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn post(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[test]
fn a_rate_above_the_cap_is_held_to_it_at_the_target() {
    let b = Backend::start();
    let r = run_toml(&format!(
        r#"
[guardrails]
max_rate = 100
[[probe]]
name = "greedy"
kind = "load"
[probe.load]
phases = [{{ duration = "3s", rate = 400 }}]
request = {{ url = "{}/capacity" }}
"#,
        b.url
    ));
    let s = stats(&b);
    let got = s["requests"].as_u64().unwrap();
    let peak = s["peak_per_second"].as_u64().unwrap();
    eprintln!("asked 400 req/s for 3 s, cap 100: target counted {got} requests, at most {peak} in one second");
    assert!(got <= 305, "{got} requests reached the target: {s}");
    assert!(got >= 280, "{got}");
    assert!(peak <= 105, "{peak} in one second: {s}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("held to guardrails.max_rate")),
        "{:?}",
        r.notes
    );
}

#[test]
fn concurrency_above_the_cap_is_held_to_it_at_the_target() {
    let b = Backend::start();
    let r = run_toml(&format!(
        r#"
[guardrails]
max_concurrency = 5
[[probe]]
name = "crowd"
kind = "load"
[probe.load]
concurrency = 50
duration = "1s"
request = {{ url = "{}/capacity?ms=20" }}
"#,
        b.url
    ));
    let s = stats(&b);
    let peak = s["peak_in_flight"].as_u64().unwrap();
    eprintln!("asked 50 users, cap 5: at most {peak} in flight at the target");
    assert!(peak <= 5, "{s}");
    assert!(
        r.notes.iter().any(|n| n.contains("5 users instead of 50")),
        "{:?}",
        r.notes
    );
}

/// Runs `text` against the sample backend `b`, whose stats field `since` says when the target
/// changed (ms before now); returns the result, how long before the probe returned the
/// target changed (ms), how long the run took, and the backend's stats.
fn run_through_a_change(
    b: &Backend,
    text: &str,
    since: &str,
) -> (plimsoll::report::ProbeResult, f64, Duration, Value) {
    let started = Instant::now();
    let r = run_toml(text);
    let returned = Instant::now();
    let s = stats(b);
    let since_ms = s[since].as_f64().expect("the target changed");
    let abort_ms = since_ms - returned.elapsed().as_secs_f64() * 1000.0;
    eprintln!(
        "target changed {abort_ms:.0} ms before the probe returned (run {:.2} s, {} requests \
         at the target): {:?}",
        (returned - started).as_secs_f64(),
        s["requests"],
        r.aborted
    );
    (r, abort_ms, returned - started, s)
}

#[test]
fn a_target_that_starts_failing_stops_the_probe_within_a_second() {
    let b = Backend::start();
    let text = format!(
        r#"
[guardrails.abort]
error_rate = 0.2
window = "2s"
[[probe]]
name = "doomed"
kind = "load"
[probe.load]
phases = [{{ duration = "20s", rate = 200 }}]
request = {{ url = "{}/capacity?fail_after=300" }}
"#,
        b.url
    );
    let (r, abort_ms, took, _) = run_through_a_change(&b, &text, "failing_since_ms");
    let a = r.aborted.as_ref().expect("aborted");
    assert_eq!(a.reason, "error_rate");
    assert!(
        abort_ms < 1000.0,
        "stopped {abort_ms:.0} ms after the target began failing"
    );
    assert_eq!(r.grade, Grade::Critical);
    assert!(took < Duration::from_secs(5));
}

#[test]
fn a_target_that_becomes_slow_stops_the_probe_on_p99_within_a_second() {
    let b = Backend::start();
    let text = format!(
        r#"
[guardrails.abort]
p99_ms = 100
window = "2s"
[[probe]]
name = "sluggish"
kind = "load"
[probe.load]
phases = [{{ duration = "20s", rate = 200 }}]
request = {{ url = "{}/capacity?slow_after=300&slow_ms=250" }}
"#,
        b.url
    );
    let (r, abort_ms, took, s) = run_through_a_change(&b, &text, "slow_since_ms");
    let sent = s["requests"].as_u64().unwrap();
    let a = r.aborted.as_ref().expect("aborted");
    assert_eq!(a.reason, "p99", "{a:?}");
    assert!(a.detail.contains("p99"), "{a:?}");
    assert!(
        abort_ms < 1000.0,
        "stopped {abort_ms:.0} ms after the target became slow"
    );
    // 300 fast requests, then at most a second of 200 req/s before the stop.
    assert!(sent <= 300 + 200 + 20, "{sent} requests reached the target");
    assert_eq!(r.grade, Grade::Critical);
    assert!(took < Duration::from_secs(5));
}

#[test]
fn a_host_not_on_the_allowlist_is_not_sent_to() {
    let b = Backend::start();
    let r = run_toml(&format!(
        r#"
[guardrails]
allow_hosts = ["*.staging.example.com"]
[[probe]]
name = "stray"
kind = "capacity"
[probe.capacity]
request = {{ url = "{}/capacity" }}
steps = [10]
"#,
        b.url
    ));
    assert_eq!(r.grade, Grade::Critical);
    let why = r.refused.as_deref().expect("refused");
    assert!(
        why.contains("127.0.0.1") && why.contains("allow_hosts"),
        "{why}"
    );
    assert_eq!(stats(&b)["requests"], 0);
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[guardrails]
max_rate = 150
[[probe]]
name = "steps"
kind = "capacity"
[probe.capacity]
request = {{ url = "{url}/capacity" }}
steps = [50, 100, 200]
warm_up = "1s"
hold = "2s"
[[probe]]
name = "open"
kind = "load"
[probe.load]
phases = [{{ duration = "10s", rate = 20 }}]
request = {{ url = "{url}/capacity" }}
"#,
            url = b.url
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["once", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("requests:  200"), "{text}");
    assert!(text.contains("peak rate: 20 req/s"), "{text}");
    assert!(text.contains("peak rate: 150 req/s"), "{text}");
    assert!(text.contains("hosts:     127.0.0.1"), "{text}");
    assert!(text.contains("held to guardrails.max_rate"), "{text}");
    assert_eq!(stats(&b)["requests"], 0);
}

/// A daemon whose one probe runs for 20 s from its first tick at 1 s.
fn long_probe_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[daemon]
bearer_token = "s3cret"
[guardrails]
{extra}
[[probe]]
name = "long"
kind = "load"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "20s", rate = 50 }}]
request = {{ url = "{url}/capacity" }}
"#
    )
}

fn last_of(d: &Daemon) -> Value {
    let (status, body) = d.get("/api/v1/probes", &["Authorization: Bearer s3cret"]);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["probes"][0].clone()
}

/// Waits until the probe runs, then pauses with `pause`; returns how long the run took to
/// stop and its result.
fn stop_mid_run(d: &Daemon, pause: impl FnOnce()) -> (Duration, Value) {
    let t0 = Instant::now();
    while !last_of(d)["running"].as_bool().unwrap() {
        assert!(t0.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let paused_at = Instant::now();
    pause();
    loop {
        let p = last_of(d);
        if !p["running"].as_bool().unwrap() && !p["last"].is_null() {
            return (paused_at.elapsed(), p);
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(10),
            "did not stop: {p}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_pause_api_stops_a_running_probe_and_holds_new_ones() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, long_probe_config(&b.url, "")).unwrap();
    let d = Daemon::start(&cfg, &[]);
    // The token is required.
    assert_eq!(post(&d.addr, "/api/v1/pause", &[]).0, 401);
    let (took, p) = stop_mid_run(&d, || {
        let (s, body) = post(&d.addr, "/api/v1/pause", &["Authorization: Bearer s3cret"]);
        assert_eq!(s, 200, "{body}");
        assert!(body.contains(r#""paused":true"#), "{body}");
    });
    eprintln!("pause API: the running probe stopped {took:?} after the request");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(p["last"]["aborted"]["reason"], "paused", "{p}");
    // While paused, ticks are skipped and nothing reaches the target.
    let before = stats(&b)["requests"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stats(&b)["requests"].as_u64().unwrap(), before);
    let (_, metrics) = d.get("/metrics", &["Authorization: Bearer s3cret"]);
    assert!(
        metrics.contains(r#"plimsoll_probe_skipped_total{probe="long",reason="paused"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"plimsoll_probe_aborts_total{probe="long",reason="paused"} 1"#),
        "{metrics}"
    );
    // Resume: the next tick runs again.
    let (s, body) = post(&d.addr, "/api/v1/resume", &["Authorization: Bearer s3cret"]);
    assert_eq!(s, 200, "{body}");
    let t = Instant::now();
    while !last_of(&d)["running"].as_bool().unwrap() {
        assert!(t.elapsed() < Duration::from_secs(5), "did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_pause_file_stops_a_running_probe() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("pause");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        long_probe_config(
            &b.url,
            &format!("pause_file = {:?}", flag.display().to_string()),
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    let (took, p) = stop_mid_run(&d, || std::fs::write(&flag, "").unwrap());
    eprintln!("pause file: the running probe stopped {took:?} after the file appeared");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(p["last"]["aborted"]["reason"], "paused", "{p}");
    let (_, body) = d.get("/api/v1/pause", &["Authorization: Bearer s3cret"]);
    assert!(body.contains(r#""by":"file""#), "{body}");
}

#[test]
fn no_load_probe_starts_in_a_blackout_and_a_stray_host_is_counted() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[daemon]
bearer_token = "s3cret"
[guardrails]
blackout = ["* * * * * *"]
[[probe]]
name = "dark"
kind = "load"
schedule = {{ every = "500ms" }}
[probe.load]
phases = [{{ duration = "1s", rate = 10 }}]
request = {{ url = "{url}/capacity" }}
"#,
            url = b.url
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    let p = last_of(&d);
    assert_eq!(p["runs"], 0, "{p}");
    assert!(p["skipped"].as_u64().unwrap() >= 2, "{p}");
    assert_eq!(stats(&b)["requests"], 0);
    let (_, metrics) = d.get("/metrics", &["Authorization: Bearer s3cret"]);
    assert!(
        metrics.contains(r#"plimsoll_probe_skipped_total{probe="dark",reason="guardrail"}"#),
        "{metrics}"
    );
    assert!(d.log_text().contains("blackout"), "{}", d.log_text());
    drop(d);

    // The allowlist: the run is refused, critical, and counted as a guardrail skip.
    std::fs::write(
        &cfg,
        format!(
            r#"
[daemon]
bearer_token = "s3cret"
[guardrails]
allow_hosts = ["api.example.com"]
[[probe]]
name = "stray"
kind = "load"
schedule = {{ every = "500ms" }}
[probe.load]
phases = [{{ duration = "1s", rate = 10 }}]
request = {{ url = "{url}/capacity" }}
"#,
            url = b.url
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    let t = Instant::now();
    let p = loop {
        let p = last_of(&d);
        if !p["last"].is_null() {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{p}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(p["last"]["grade"], "critical", "{p}");
    assert!(
        p["last"]["refused"]
            .as_str()
            .unwrap()
            .contains("allow_hosts"),
        "{p}"
    );
    let (_, metrics) = d.get("/metrics", &["Authorization: Bearer s3cret"]);
    assert!(
        metrics.contains(r#"plimsoll_probe_skipped_total{probe="stray",reason="guardrail"}"#),
        "{metrics}"
    );
    assert_eq!(stats(&b)["requests"], 0);
}

#[test]
fn a_benchmark_is_held_to_the_rate_cap_at_the_target() {
    let b = Backend::start();
    let started = Instant::now();
    let r = run_toml(&format!(
        r#"
[guardrails]
max_rate = 50
[[probe]]
name = "bench"
kind = "benchmark"
[probe.benchmark]
operations = [{{ name = "read", samples = 100, request = {{ url = "{}/capacity" }} }}]
"#,
        b.url
    ));
    let took = started.elapsed();
    let s = stats(&b);
    let peak = s["peak_per_second"].as_u64().unwrap();
    eprintln!("benchmark of 100 samples, cap 50 req/s: {took:?}, at most {peak} in one second");
    assert_eq!(s["requests"], 100, "{s}");
    assert!(peak <= 52, "{peak} in one second: {s}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("held to guardrails.max_rate")),
        "{:?}",
        r.notes
    );
}

#[test]
fn the_overall_rate_budget_holds_probes_on_every_target_together() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let probe = |name: &str| {
        format!(
            r#"
[[target]]
name = "{name}"
url = "{url}"
[[probe]]
name = "{name}"
kind = "load"
target = "{name}"
share_target = true
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "3s", rate = 150 }}]
request = {{ url = "/capacity" }}
"#,
            url = b.url
        )
    };
    std::fs::write(
        &cfg,
        format!(
            "[guardrails]\nmax_total_rate = 200\n{}{}",
            probe("north"),
            probe("south")
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    // Both probes ask 150 req/s; together they may offer 200. Let them run for a while.
    let t0 = Instant::now();
    let probes = loop {
        let p = d.probes();
        if p.iter().all(|p| !p["last"].is_null()) {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "no runs: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let s = stats(&b);
    let peak = s["peak_per_second"].as_u64().unwrap();
    eprintln!("two probes asking 150 req/s each, overall budget 200: at most {peak} in one second at the target");
    assert!(peak <= 210, "{peak} requests in one second: {s}");
    // The budget was shared rather than one probe waiting: more than one probe's worth.
    assert!(peak > 160, "{peak}: the probes did not run together: {s}");
    let notes: Vec<String> = probes
        .iter()
        .flat_map(|p| p["last"]["notes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("guardrails.max_total_rate")),
        "{notes:?}"
    );
}

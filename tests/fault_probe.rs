//! The fault probe against the sample backend over real sockets on 127.0.0.1: a proxy
//! `down` held for a known time (recovery ≈ 0 after the clear), a target that keeps failing
//! for a known time after the clear (recovery = that time), and a stop in the middle of the
//! fault (the fault is cleared and the run ends at once). Each run is a few seconds.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{closed_port, Backend};
use plimsoll::probe::RunContext;
use plimsoll::report::{FaultFigures, ProbeResult};

fn run(text: &str, ctx: &RunContext) -> ProbeResult {
    let cfg = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
    plimsoll::probe::run_probe(&cfg, &cfg.probe[0], ctx)
}

/// A route without a fallback through a fault whose clear ends it: it was fine before, failed
/// most requests during, recovered within 0.5 s of the clear (the truth is 0) and graded
/// critical.
fn assert_fails_during_and_recovers(name: &str, r: &ProbeResult) {
    let f = fault_of(r);
    assert!(f.inject_ok && f.clear_ok, "{name}: {f:?}");
    assert!(f.error_rate.before < 0.01, "{name}: {:?}", f.error_rate);
    assert!(f.error_rate.during > 0.5, "{name}: {:?}", f.error_rate);
    assert!(f.error_rate.after < 0.05, "{name}: {:?}", f.error_rate);
    let recovery = f.recovery_s.expect("recovered");
    eprintln!("{name}: recovery {recovery} s (truth ≈ 0)");
    assert!(recovery <= 0.5, "{name}: recovery {recovery} s");
    assert_eq!(
        r.grade,
        plimsoll::config::Grade::Critical,
        "{name}: {}",
        r.grade_reason
    );
}

fn fault_of(r: &ProbeResult) -> &FaultFigures {
    let f = r.fault().expect("a fault block");
    eprintln!(
        "{}",
        plimsoll::report::summary::render(std::slice::from_ref(r))
    );
    &f.faults[0]
}

/// A probe whose load goes through its own proxy listener to the backend.
fn proxy_down(backend: &Backend, port: u16, hold: &str, after: &str) -> String {
    let upstream = backend
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    format!(
        r#"
[[probe]]
name = "proxy-down"
kind = "fault"
[probe.fault]
name = "backend-down"
rate = 100
before = "2s"
hold = "{hold}"
after = "{after}"
recovery_stretch = "1s"
[probe.fault.load]
request = {{ url = "http://127.0.0.1:{port}/health" }}
timeout = "1s"
[[probe.fault.proxy]]
name = "backend"
listen = "127.0.0.1:{port}"
upstream = "{upstream}"
[probe.fault.inject]
listener = "backend"
toxic = [{{ kind = "down" }}]
"#
    )
}

#[test]
fn a_proxy_down_recovers_at_the_clear() {
    let backend = Backend::start();
    let port = closed_port();
    let r = run(
        &proxy_down(&backend, port, "2s", "3s"),
        &RunContext::default(),
    );
    let f = fault_of(&r);
    assert!(f.inject_ok && f.clear_ok, "{f:?}");
    assert_eq!(f.clear_reason.as_deref(), Some("ended"));
    let (inject, clear) = (f.inject_s.unwrap(), f.clear_s.unwrap());
    assert!((clear - inject - 2.0).abs() < 0.1, "hold {inject}..{clear}");
    let recovery = f.recovery_s.expect("recovered");
    eprintln!(
        "proxy down: recovery {recovery} s (truth 0), detect {:?} s",
        f.detect_s
    );
    assert!(recovery <= 0.5, "recovery {recovery} s, truth 0");
    assert!(f.detect_s.expect("detected") <= 0.5, "{:?}", f.detect_s);
    assert!(f.error_rate.before < 0.01, "{:?}", f.error_rate);
    assert!(f.error_rate.during > 0.9, "{:?}", f.error_rate);
    assert!(f.error_rate.after < 0.05, "{:?}", f.error_rate);
    assert!(f.success_rate_after_recovery.unwrap() > 0.99);
    assert!(f.windows.len() >= 24, "{} windows", f.windows.len());
    // An outage with every request failing is critical (outage error rate > 20 %).
    assert_eq!(
        r.grade,
        plimsoll::config::Grade::Critical,
        "{}",
        r.grade_reason
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["fault"]["faults"][0]["recovery_s"].is_number(),
        "{json}"
    );
}

#[test]
fn a_target_failing_after_the_clear_recovers_when_it_stops_failing() {
    let backend = Backend::start();
    let url = backend.url.trim_end_matches('/');
    // The inject arms the backend to fail for 3.5 s; the hold is 2 s: the target keeps
    // failing for 1.5 s after the clear.
    let text = format!(
        r#"
[[probe]]
name = "flaky"
kind = "fault"
[probe.fault]
name = "flaky"
rate = 100
before = "2s"
hold = "2s"
after = "4s"
recovery_stretch = "1s"
[probe.fault.load]
request = {{ url = "{url}/flaky" }}
timeout = "1s"
[probe.fault.inject.action.http]
method = "POST"
url = "{url}/flaky?ms=3500"
timeout = "2s"
"#
    );
    let r = run(&text, &RunContext::default());
    let f = fault_of(&r);
    assert!(f.inject_ok && f.clear_ok, "{f:?}");
    let recovery = f.recovery_s.expect("recovered");
    eprintln!("flaky: recovery {recovery} s (truth 1.5)");
    assert!(
        (recovery - 1.5).abs() <= 0.5,
        "recovery {recovery} s, truth 1.5"
    );
    assert!(f.error_rate.during > 0.9, "{:?}", f.error_rate);
}

#[test]
fn a_stop_mid_fault_clears_it_and_ends_the_run() {
    let backend = Backend::start();
    let port = closed_port();
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = RunContext {
        stop: stop.clone(),
        ..Default::default()
    };
    let raiser = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3000));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let t = Instant::now();
    let r = run(&proxy_down(&backend, port, "20s", "5s"), &ctx);
    let took = t.elapsed();
    raiser.join().unwrap();
    let f = fault_of(&r);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(f.inject_ok, "{f:?}");
    assert_eq!(f.clear_reason.as_deref(), Some("stopped"), "{f:?}");
    // The clear put back the listener's toxics from before the inject: none.
    assert!(f.clear_ok, "{f:?}");
    assert_eq!(
        f.clear_action.as_deref(),
        Some("toxics backend: none"),
        "{f:?}"
    );
    // The proxy is gone with the run: its port is free again.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// A Redis server a fault's clear command started (`--daemonize yes`), killed by its pid
/// file when the test ends, however it ends.
struct Restarted(std::path::PathBuf);

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .status();
        }
    }
}

/// A fault probe on the sample backend's queue: `route` under load at 100/s, the backend's
/// Redis link through the probe's proxy listener on `port`, and `inject` as the fault.
fn queue_fault(backend: &Backend, name: &str, route: &str, port: u16, inject: &str) -> String {
    let url = backend.url.trim_end_matches('/');
    format!(
        r#"
[[probe]]
name = "{name}"
kind = "fault"
[probe.fault]
name = "{name}"
rate = 100
before = "2s"
hold = "2s"
after = "3s"
recovery_stretch = "1s"
[probe.fault.load]
request = {{ method = "POST", url = "{url}{route}", body = "job" }}
timeout = "1s"
[[probe.fault.proxy]]
name = "redis"
listen = "127.0.0.1:{port}"
upstream = "127.0.0.1:{{redis_port}}"
[probe.fault.backlog]
metrics_url = "{url}/metrics"
series = "sample_queue_backlog"
interval = "100ms"
{inject}
"#
    )
}

/// Seeds 000 and 001 end to end: a real redis-server behind the probe's proxy, the sample
/// backend's queue in front of it under load. A `down` toxic on the route without fallback
/// fails most jobs and recovers at the clear; the same outage on the route with the breaker
/// and the fallback queue fails almost none and leaves a backlog that drains; a crash of
/// redis-server (SIGKILL) and its restart by the clear command fails jobs until the restart
/// and recovers after it.
#[test]
fn a_real_redis_outage_through_the_proxy_and_a_crash_restart() {
    let redis = common::redis::Redis::start();
    let port = closed_port();
    let backend = Backend::start_with(&[
        "--queue-redis-url",
        &format!("redis://127.0.0.1:{port}"),
        "--breaker-open-ms",
        "300",
    ]);
    let toxic_down = "[probe.fault.inject]\nlistener = \"redis\"\ntoxic = [{ kind = \"down\" }]";
    let with_port = |t: String| t.replace("{redis_port}", &redis.port.to_string());

    // 1. Refused, no fallback: most jobs fail during the outage, none after.
    let r = run(
        &with_port(queue_fault(
            &backend,
            "direct-down",
            "/queue/direct",
            port,
            toxic_down,
        )),
        &RunContext::default(),
    );
    assert_fails_during_and_recovers("direct route, redis down", &r);
    let f = fault_of(&r);
    assert_eq!(f.clear_reason.as_deref(), Some("ended"));
    assert_eq!(f.clear_action.as_deref(), Some("toxics redis: none"));

    // 2. Refused, with the breaker and the fallback queue: jobs keep being taken, and the
    // fallback's backlog builds during the outage and drains after it.
    let r = run(
        &with_port(queue_fault(
            &backend,
            "fallback-down",
            "/queue/jobs",
            port,
            toxic_down,
        )),
        &RunContext::default(),
    );
    let f = fault_of(&r);
    assert!(f.inject_ok && f.clear_ok, "{f:?}");
    assert!(f.error_rate.during < 0.01, "{:?}", f.error_rate);
    assert!(f.error_rate.after < 0.01, "{:?}", f.error_rate);
    let peak = f.backlog_peak.expect("backlog sampled");
    // 100 jobs/s for 2 s go to the fallback, less the first ones Redis took.
    assert!(peak >= 50.0, "backlog peak {peak}");
    let drain = f.backlog_drain_s.expect("the backlog drained");
    eprintln!("fallback route, redis down: backlog peak {peak}, drained {drain} s after the clear");
    assert!(drain < 3.0, "drain {drain} s");
    assert_ne!(
        r.grade,
        plimsoll::config::Grade::Critical,
        "{}",
        r.grade_reason
    );
    // The backend's own account: the breaker opened, jobs went to the fallback and all of
    // them are back in Redis.
    let (status, body) = common::daemon::http_get(
        backend
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/'),
        "/queue/stats",
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(stats["breaker_opened"].as_u64() >= Some(1), "{stats}");
    assert!(stats["jobs_to_fallback"].as_u64() >= Some(50), "{stats}");
    assert_eq!(stats["backlog_fallback"].as_u64(), Some(0), "{stats}");
    assert_eq!(stats["fallback_store"], "memory", "{stats}");

    // 3. Crash and restart: SIGKILL, then the clear starts a new server on the same port.
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("redis.pid");
    let _restarted = Restarted(pidfile.clone());
    let crash = format!(
        r#"[probe.fault.inject.action.command]
argv = ["kill", "-KILL", "{pid}"]
timeout = "5s"
[probe.fault.inject.clear.command]
argv = ["redis-server", "--port", "{rport}", "--bind", "127.0.0.1", "--daemonize", "yes", "--pidfile", "{pidfile}", "--dir", "{dir}", "--save", "", "--appendonly", "no"]
timeout = "10s""#,
        pid = redis.pid(),
        rport = redis.port,
        pidfile = pidfile.display(),
        dir = dir.path().display(),
    );
    let r = run(
        &with_port(queue_fault(
            &backend,
            "direct-crash",
            "/queue/direct",
            port,
            &crash,
        )),
        &RunContext::default(),
    );
    let f = fault_of(&r);
    assert!(f.inject_ok, "{f:?}");
    assert!(f.clear_ok, "the restart: {f:?}");
    assert_eq!(f.clear_reason.as_deref(), Some("ended"));
    assert!(
        f.clear_action
            .as_deref()
            .unwrap_or("")
            .contains("redis-server"),
        "{f:?}"
    );
    assert!(f.error_rate.during > 0.5, "{:?}", f.error_rate);
    assert!(f.error_rate.after < 0.05, "{:?}", f.error_rate);
    let recovery = f.recovery_s.expect("recovered after the restart");
    eprintln!("direct route, redis crash: recovery {recovery} s after the restart returned");
    assert!(recovery <= 1.0, "recovery {recovery} s");
    assert!(pidfile.exists(), "the clear started a new server");
}

/// Seed 001's fallback in PostgreSQL: with `--database-url` the queue's fallback is a real
/// table. A blackhole on the Redis link (every command hangs until the backend's timeout)
/// opens the breaker; the jobs go to the table during the hold and back to Redis after it.
#[test]
fn a_hung_redis_falls_back_to_a_postgres_table_and_drains_back() {
    let redis = common::redis::Redis::start();
    let pg = common::postgres::Postgres::start();
    let port = closed_port();
    let backend = Backend::start_with(&[
        "--queue-redis-url",
        &format!("redis://127.0.0.1:{port}"),
        "--database-url",
        &pg.url,
        "--breaker-open-ms",
        "300",
    ]);
    let hung = "[probe.fault.inject]\nlistener = \"redis\"\ntoxic = [{ kind = \"blackhole\", direction = \"both\" }]";
    let text = queue_fault(&backend, "fallback-hung", "/queue/jobs", port, hung)
        .replace("{redis_port}", &redis.port.to_string());
    let r = run(&text, &RunContext::default());
    let f = fault_of(&r);
    assert!(f.inject_ok && f.clear_ok, "{f:?}");
    // Until the breaker opens, a few jobs wait out the 250 ms Redis timeout; none fails.
    assert!(f.error_rate.during < 0.01, "{:?}", f.error_rate);
    assert!(f.error_rate.after < 0.01, "{:?}", f.error_rate);
    assert!(f.backlog_peak.expect("backlog sampled") >= 50.0, "{f:?}");
    assert!(f.backlog_drain_s.is_some(), "the backlog drained: {f:?}");
    let (status, body) = common::daemon::http_get(
        backend
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/'),
        "/queue/stats",
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["fallback_store"], "postgres", "{stats}");
    assert!(stats["jobs_to_fallback"].as_u64() >= Some(50), "{stats}");
    assert!(
        stats["jobs_drained_from_fallback"].as_u64() >= Some(50),
        "{stats}"
    );
    assert_eq!(stats["backlog_fallback"].as_u64(), Some(0), "{stats}");
}

/// A fault probe on the sample backend's order creation (`POST /orders`, a PostgreSQL
/// insert through its pool) with `action` as the fault.
fn pg_fault(backend: &Backend, name: &str, hold: &str, action: &str) -> String {
    let url = backend.url.trim_end_matches('/');
    format!(
        r#"
[[probe]]
name = "{name}"
kind = "fault"
[probe.fault]
name = "{name}"
rate = 50
before = "2s"
hold = "{hold}"
after = "5s"
recovery_stretch = "1s"
[probe.fault.load]
request = {{ method = "POST", url = "{url}/orders" }}
timeout = "1s"
{action}
"#
    )
}

fn toml_argv(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Seeds 000 and 001's database restart test, both modes, against a real PostgreSQL: a
/// graceful restart (`pg_ctl restart -m fast`, the recovery counted from its return) and a
/// crash (`pg_ctl stop -m immediate`, then `pg_ctl start` as the clear). The backend's pool
/// must open new connections after each: requests fail during the fault and not after.
#[test]
fn postgres_graceful_restart_and_crash_recover_under_load() {
    let pg = common::postgres::Postgres::start();
    let backend = Backend::start_with(&["--database-url", &pg.url]);
    let log = pg.log_path().display().to_string();

    let restart = pg.pg_ctl_argv(&["restart", "-m", "fast", "-w", "-t", "30", "-l", &log]);
    let action = format!(
        "[probe.fault.inject.action.command]\nargv = {}\ntimeout = \"40s\"",
        toml_argv(&restart)
    );
    let r = run(
        &pg_fault(&backend, "pg-graceful", "100ms", &action),
        &RunContext::default(),
    );
    let f = fault_of(&r);
    assert!(f.inject_ok, "the restart: {f:?}");
    assert!(f.clear_ok, "{f:?}");
    assert!(f.error_rate.before < 0.01, "{:?}", f.error_rate);
    assert!(f.error_rate.after < 0.05, "{:?}", f.error_rate);
    let recovery = f.recovery_s.expect("recovered after the restart");
    eprintln!(
        "postgres graceful restart: error rate during {:.3}, recovery {recovery} s",
        f.error_rate.during
    );
    assert!(recovery <= 2.0, "recovery {recovery} s");

    let options = pg.server_options();
    let stop = pg.pg_ctl_argv(&["stop", "-m", "immediate", "-w", "-t", "30"]);
    let start = pg.pg_ctl_argv(&["start", "-w", "-t", "30", "-l", &log, "-o", &options]);
    let action = format!(
        "[probe.fault.inject.action.command]\nargv = {}\ntimeout = \"40s\"\n\
         [probe.fault.inject.clear.command]\nargv = {}\ntimeout = \"40s\"",
        toml_argv(&stop),
        toml_argv(&start)
    );
    // A request sent during the crash waits for the database: it times out (1 s) unless
    // the database is back within a second of its send, then it succeeds late. Counted by
    // send time, the outage error rate is about (fault − timeout) / fault, so the hold is
    // well past the timeout for most of the fault's requests to fail.
    let r = run(
        &pg_fault(&backend, "pg-crash", "3s", &action),
        &RunContext::default(),
    );
    let f = fault_of(&r);
    assert!(f.inject_ok, "the crash: {f:?}");
    assert!(f.clear_ok, "the start: {f:?}");
    assert!(f.error_rate.during > 0.5, "{:?}", f.error_rate);
    // The late successes of the fault's last second show in its p99.
    assert!(f.p99_ms.during > f.steady.max_p99_ms, "{:?}", f.p99_ms);
    assert!(f.detect_s.is_some_and(|d| d <= 0.5), "{:?}", f.detect_s);
    assert!(f.error_rate.after < 0.05, "{:?}", f.error_rate);
    let recovery = f.recovery_s.expect("recovered after the start");
    eprintln!("postgres crash: recovery {recovery} s after the start returned");
    assert!(recovery <= 2.0, "recovery {recovery} s");
    assert_ne!(
        r.grade,
        plimsoll::config::Grade::Excellent,
        "{}",
        r.grade_reason
    );
}

/// The two Redis modes left, on the route without fallback: slow (every answer 300 ms late,
/// past the backend's 250 ms timeout) and reset (every connection reset as soon as it
/// carries data). Both fail the jobs during the fault and none after the clear.
#[test]
fn a_slow_and_a_resetting_redis_fail_the_direct_route_until_the_clear() {
    let redis = common::redis::Redis::start();
    let port = closed_port();
    let backend = Backend::start_with(&["--queue-redis-url", &format!("redis://127.0.0.1:{port}")]);
    for (name, toxic) in [
        (
            "direct-slow",
            "{ kind = \"latency\", latency = \"300ms\", jitter = \"20ms\" }",
        ),
        (
            "direct-reset",
            "{ kind = \"reset_peer\", direction = \"both\" }",
        ),
    ] {
        let inject = format!("[probe.fault.inject]\nlistener = \"redis\"\ntoxic = [{toxic}]");
        let text = queue_fault(&backend, name, "/queue/direct", port, &inject)
            .replace("{redis_port}", &redis.port.to_string());
        let r = run(&text, &RunContext::default());
        assert_fails_during_and_recovers(name, &r);
    }
}

//! The capacity probe against the sample backend's services of known capacity: a queue
//! served at a fixed rate, and a pool of workers (capacity limited by concurrency). The
//! breaking point found must be within ±10 % of the true capacity, and the search short.

mod common;

use common::{run_toml, Backend};
use plimsoll::config::Grade;

/// A short search: steps of 2 s (0.5 s discarded), bisection to 10 req/s.
fn search(url: &str, steps: &str) -> plimsoll::report::ProbeResult {
    run_toml(&format!(
        r#"
[[probe]]
name = "capacity"
kind = "capacity"
target_rps = 250
[probe.capacity]
request = {{ url = "{url}" }}
steps = {steps}
warm_up = "500ms"
hold = "1500ms"
rest = "300ms"
p99_ms = 100
resolution_rps = 10
timeout = "5s"
"#
    ))
}

fn check(name: &str, r: &plimsoll::report::ProbeResult, capacity: f64) {
    let c = r.capacity().expect("a capacity block");
    let text = plimsoll::report::summary::render(std::slice::from_ref(r));
    eprintln!("{name}:\n{text}");
    let found = c.breaking_point_rps;
    eprintln!(
        "{name}: breaking point {found} req/s vs capacity {capacity} ({:+.1} %), search {:.1} s, {} requests, {} steps",
        (found / capacity - 1.0) * 100.0,
        c.search.duration_s,
        c.search.requests,
        c.search.steps
    );
    assert!(
        (found - capacity).abs() <= 0.1 * capacity,
        "{name}: breaking point {found} is not within 10 % of {capacity}\n{text}"
    );
    assert!(
        c.search.duration_s < 40.0,
        "{name}: search too long\n{text}"
    );
    assert!(c.first_failure_rps.is_some());
    assert!(!c.search.stopped_early);
    // The search stops at once after converging: nothing above the first failure was tried
    // after it, and the bisection ended within the resolution.
    let fail = c.first_failure_rps.unwrap();
    let best_offered = c
        .steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.offered_rps)
        .fold(0.0, f64::max);
    assert!(fail - best_offered <= 10.0 + 1e-9, "{text}");
    assert!(found <= best_offered, "{text}");
    assert!(r.stats.is_some());
    assert!(text.contains("<- breaking point"), "{text}");
}

#[test]
fn finds_the_breaking_point_of_a_fixed_service_rate() {
    let b = Backend::start();
    let r = search(
        &format!("{}/capacity?rps=300", b.url),
        "[50, 100, 200, 400]",
    );
    check("rate-limited (300 req/s)", &r, 300.0);
    assert_eq!(r.grade, Grade::Good, "{:?}", r.thresholds);
}

#[test]
fn finds_the_breaking_point_of_a_concurrency_limit() {
    let b = Backend::start();
    let r = search(
        &format!("{}/capacity?workers=4&ms=10", b.url),
        "[50, 100, 200, 300, 600]",
    );
    check("concurrency-limited (4 workers x 10 ms)", &r, 400.0);
}

/// Two steps against a service that spends about 1 ms of CPU per request, with the target's
/// own resource use read from `resources` (a TOML table body).
fn resource_search(url: &str, resources: &str) -> plimsoll::report::ProbeResult {
    run_toml(&format!(
        r#"
[[probe]]
name = "capacity-resources"
kind = "capacity"
[probe.capacity]
request = {{ url = "{url}/capacity?work_us=1000" }}
steps = [40, 200]
warm_up = "300ms"
hold = "1500ms"
rest = "200ms"
p99_ms = 400
timeout = "5s"
[probe.capacity.resources]
{resources}
"#
    ))
}

/// Per-step CPU rises with the rate, resident memory is read, and CPU per request is near
/// what the route spends; the table shows the columns.
fn check_resources(name: &str, r: &plimsoll::report::ProbeResult, source: &str) {
    let c = r.capacity().expect("a capacity block");
    let text = plimsoll::report::summary::render(std::slice::from_ref(r));
    eprintln!("{name}:\n{text}");
    assert_eq!(c.resources_source.as_deref(), Some(source), "{text}");
    assert_eq!(c.steps.len(), 2, "{text}");
    let figures: Vec<_> = c
        .steps
        .iter()
        .map(|s| s.resources.clone().expect("per-step resources"))
        .collect();
    for f in &figures {
        assert_eq!(f.error, None, "{text}");
        assert!(f.rss_bytes.is_some_and(|b| b > 1024 * 1024), "{text}");
    }
    let (low, high) = (
        figures[0].cpu_cores.expect("cpu"),
        figures[1].cpu_cores.expect("cpu"),
    );
    eprintln!("{name}: {low} cores at 40 req/s, {high} cores at 200 req/s");
    // 40 and 200 requests a second of ~1 ms each: ~0.04 and ~0.2 cores, plus the server's
    // own overhead. Five times the rate must cost clearly more than twice the CPU.
    assert!(high > 2.0 * low, "{name}: {low} -> {high} cores\n{text}");
    assert!(high > 0.08, "{name}: {high} cores at 200 req/s\n{text}");
    let per_request = figures[1].cpu_ms_per_request.expect("cpu per request");
    assert!(
        (0.4..5.0).contains(&per_request),
        "{name}: {per_request} ms of CPU per request\n{text}"
    );
    assert!(text.contains("cpu ms/req"), "{text}");
    let json = serde_json::to_value(r).unwrap();
    assert!(
        json["capacity"]["steps"][0]["resources"]["rss_bytes"].as_u64() > Some(0),
        "{json}"
    );
}

#[test]
fn the_targets_own_cpu_and_memory_are_read_from_its_metrics_per_step() {
    let b = Backend::start();
    let metrics = format!("{}/metrics", b.url);
    let r = resource_search(&b.url, &format!("metrics_url = \"{metrics}\""));
    check_resources("metrics endpoint", &r, &metrics);
}

#[test]
fn the_targets_own_cpu_and_memory_are_read_from_proc_by_pid_file() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("backend.pid");
    std::fs::write(&pid_file, format!("{}\n", b.pid())).unwrap();
    let r = resource_search(
        &b.url,
        &format!("pid_file = {:?}", pid_file.display().to_string()),
    );
    check_resources(
        "/proc by pid file",
        &r,
        &format!("pid file {}", pid_file.display()),
    );
    let r = resource_search(&b.url, &format!("pid = {}", b.pid()));
    check_resources("/proc by pid", &r, &format!("pid {}", b.pid()));
}

#[test]
fn a_resource_source_that_fails_is_noted_and_the_search_goes_on() {
    let b = Backend::start();
    let closed = common::closed_port();
    let r = resource_search(
        &b.url,
        &format!("metrics_url = \"http://127.0.0.1:{closed}/metrics\"\ntimeout = \"200ms\""),
    );
    let c = r.capacity().expect("a capacity block");
    assert_eq!(c.steps.len(), 2, "{:?}", r.notes);
    assert!(c.breaking_point_rps > 0.0, "{c:?}");
    for s in &c.steps {
        let f = s.resources.as_ref().expect("the step says why");
        assert!(f.cpu_cores.is_none());
        assert!(
            f.error.as_deref().is_some_and(|e| e.contains("connect")),
            "{f:?}"
        );
    }
    assert!(
        r.notes.iter().any(|n| n.contains("resource use")),
        "{:?}",
        r.notes
    );
    assert_ne!(r.grade, Grade::Critical, "{:?}", r.notes);
}

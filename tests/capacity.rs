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

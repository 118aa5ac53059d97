//! Measurement accuracy against the sample backend (issue 2, "Must reach"): a fixed 20 ms
//! endpoint reads as 20 ms, and a service that freezes 200 ms of every 2 s shows its stall in
//! the open model's percentiles instead of hiding it (coordinated omission).
//!
//! These tests measure time, so nextest runs them alone (.config/nextest.toml) and the test
//! command builds them optimised.

mod common;

use common::{run_toml, Backend};

fn probe(url: &str, model: &str) -> String {
    format!(
        r#"
[[probe]]
name = "accuracy"
kind = "load"
[probe.load]
{model}
timeout = "5s"
[probe.load.request]
url = "{url}"
"#
    )
}

#[test]
fn fixed_20ms_reads_as_20ms_in_both_models() {
    let b = Backend::start();
    let url = format!("{}/delay?ms=20", b.url);
    for model in [
        "concurrency = 4\nduration = \"3s\"",
        "phases = [{ duration = \"3s\", rate = 100 }]",
    ] {
        let r = run_toml(&probe(&url, model));
        let s = r.stats.as_ref().unwrap();
        assert_eq!(s.errors, 0, "{:?}", s.error_samples);
        assert!(s.requests >= 300, "{model}: {}", s.requests);
        let p50 = s.latency_ms.p50;
        assert!(
            (p50 - 20.0).abs() <= 0.5,
            "{model}: p50 {p50} ms, want 20 ± 0.5 ms"
        );
        assert!(
            s.latency_ms.min >= 19.9,
            "{model}: min {} ms is below the server's delay",
            s.latency_ms.min
        );
    }
}

#[test]
fn a_freezing_service_shows_its_stall_in_the_open_model() {
    let b = Backend::start();
    let url = format!("{}/stall?period_ms=2000&freeze_ms=200", b.url);
    // Three whole periods at a constant rate: 10 % of arrivals land in a freeze and wait
    // uniformly 0–200 ms, so the analytic p99 is 180 ms and the median is the fast path.
    let r = run_toml(&probe(&url, "phases = [{ duration = \"6s\", rate = 200 }]"));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
    assert_eq!(s.requests, 1200);
    let l = s.latency_ms;
    assert!(
        (165.0..=200.0).contains(&l.p99),
        "p99 {} ms, analytic 180 ms",
        l.p99
    );
    assert!(l.p50 < 10.0, "p50 {} ms", l.p50);
    assert!(l.max >= 190.0 && l.max <= 230.0, "max {} ms", l.max);
}

#[test]
fn the_open_model_sends_every_planned_arrival_on_time() {
    let b = Backend::start();
    let url = format!("{}/health", b.url);
    let r = run_toml(&probe(
        &url,
        "phases = [{ duration = \"3s\", rate = 1000 }]",
    ));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.iterations.planned, Some(3000));
    assert_eq!(s.iterations.started, 3000);
    assert_eq!(s.requests, 3000);
    assert_eq!(s.errors, 0);
    assert_eq!(s.offered_rps, Some(1000.0));
    assert!(
        (s.rps - 1000.0).abs() / 1000.0 < 0.02,
        "achieved {} rps",
        s.rps
    );
    // The pacer is never early, and late only by scheduling noise.
    let lag = s.send_lag_ms.unwrap();
    assert!(lag.p50 < 2.0 && lag.p99 < 20.0, "send lag {lag:?}");
}

//! Seed 002's operation benchmark against the sample backend: every operation runs its
//! samples one after another, the table has a row per operation, and each operation's p95 and
//! mean decide the grade.

mod common;

use common::{run_toml, Backend};
use plimsoll::verdict::Grade;

fn benchmark(url: &str, thresholds: &str) -> String {
    format!(
        r#"
[[target]]
name = "sample"
url = "{url}"

[[probe]]
name = "key-operations"
kind = "benchmark"
target = "sample"
{thresholds}
[[probe.benchmark.operations]]
name = "health-check"
samples = 60
request = {{ url = "/health" }}
[[probe.benchmark.operations]]
name = "slow-report"
samples = 15
request = {{ url = "/delay?ms=30" }}
"#
    )
}

#[test]
fn operations_run_their_samples_and_are_graded_one_by_one() {
    let b = Backend::start();
    let r = run_toml(&benchmark(&b.url, ""));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.requests, 75);
    let health = &s.endpoints["health-check"];
    let slow = &s.endpoints["slow-report"];
    assert_eq!((health.requests, slow.requests), (60, 15));
    assert!(slow.latency_ms.min >= 30.0, "{:?}", slow.latency_ms);
    assert!(health.latency_ms.p95 < 30.0, "{:?}", health.latency_ms);
    // One user, one request at a time: 15 × 30 ms alone is 450 ms.
    assert!(r.duration_s >= 0.45, "{}", r.duration_s);
    // Seed defaults: p95 < 200 ms and mean < 100 ms per operation → good.
    assert_eq!(r.grade, Grade::Good, "{}", r.to_json_pretty());
    for metric in [
        "p95[health-check]",
        "mean[health-check]",
        "p95[slow-report]",
        "mean[slow-report]",
    ] {
        assert!(
            r.thresholds.iter().any(|t| t.metric == metric),
            "{metric} not graded"
        );
    }
    let table = plimsoll::report::summary::render(std::slice::from_ref(&r));
    assert!(
        table.contains("operation") && table.contains("slow-report"),
        "{table}"
    );
}

#[test]
fn an_operation_over_its_p95_threshold_fails_the_run() {
    let b = Backend::start();
    let r = run_toml(&benchmark(
        &b.url,
        "[probe.thresholds]\np95_ms = { good = 20 }\n",
    ));
    assert_eq!(r.grade, Grade::Critical);
    let failing: Vec<&str> = r
        .thresholds
        .iter()
        .filter(|t| t.grade == Grade::Critical)
        .map(|t| t.metric.as_str())
        .collect();
    assert_eq!(failing, ["p95[slow-report]"], "{}", r.to_json_pretty());
}

#[test]
fn bad_benchmark_configs_name_the_path() {
    let text = r#"
[[probe]]
name = "b"
kind = "benchmark"
[probe.benchmark]
timeout = "0s"
[[probe.benchmark.operations]]
name = "x"
samples = 0
request = { url = "/relative" }
[[probe.benchmark.operations]]
name = "x"
request = { url = "http://127.0.0.1:1/" }
"#;
    let err = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_err()
        .to_string();
    for expected in [
        "probe[0].benchmark.timeout: must be greater than 0",
        "probe[0].benchmark.operations[0].samples: must be between 1 and 100000",
        "probe[0].benchmark.operations[0].request.url: relative URL, but the probe names no `target`",
        "probe[0].benchmark.operations[1].name: duplicate operation name \"x\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

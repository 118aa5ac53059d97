//! The project's own contracts in `docs/` stay true: the metric reference lists exactly the
//! families `/metrics` registers (names, types and label names), and every kind's result
//! document, a failed one included, validates against `docs/result.schema.json` with a real
//! JSON Schema validator (Python's `jsonschema`, which scripts/test installs).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use common::postgres::Postgres;
use common::redis::Redis;
use common::{closed_port, run_toml, Backend};
use plimsoll::config::Kind;
use plimsoll::report::ProbeResult;

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What one side has and the other lacks, for a failure message.
fn diff<T: Ord + std::fmt::Debug>(what: &str, a: &BTreeSet<T>, b: &BTreeSet<T>) -> String {
    format!(
        "{what}:\n  registered but not documented: {:?}\n  documented but not registered: {:?}",
        a.difference(b).collect::<Vec<_>>(),
        b.difference(a).collect::<Vec<_>>()
    )
}

// ---------------------------------------------------------------------------------------------
// docs/metrics.md

/// A row of the Prometheus table: type and label names by metric name.
type Rows = BTreeMap<String, (String, BTreeSet<String>)>;

/// The rows of the "Prometheus families" table of docs/metrics.md.
fn documented_families() -> Rows {
    let text = read("docs/metrics.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Prometheus families"))
        .expect("docs/metrics.md has a \"## Prometheus families\" section");
    let mut rows = Rows::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", metric, type, labels, meaning, ""
        assert!(cells.len() >= 5, "malformed row: {line}");
        let name = cells[1].trim_matches('`').to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        let dup = rows.insert(name.clone(), (cells[2].to_string(), labels));
        assert!(dup.is_none(), "{name} has two rows");
    }
    rows
}

/// Splits a sample line into its name and label names.
fn sample_labels(line: &str) -> (String, BTreeSet<String>) {
    let Some((name, rest)) = line.split_once('{') else {
        let name = line.split_whitespace().next().unwrap_or_default();
        return (name.to_string(), BTreeSet::new());
    };
    let mut labels = BTreeSet::new();
    let mut rest = rest;
    // key="value", with \" and \\ escaped inside values; the set ends at the first `}`
    // outside a value.
    while let Some((key, after)) = rest.split_once("=\"") {
        labels.insert(key.trim_start_matches(',').to_string());
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close
            })
            .map(|(i, _)| i)
            .expect("a label value ends");
        rest = &after[end + 1..];
        if rest.starts_with('}') {
            break;
        }
    }
    (name.to_string(), labels)
}

/// A run whose result reaches the series `record_run` writes: stats with an endpoint error, a
/// race block, and per-request detail of one step.
fn synthetic_run() -> ProbeResult {
    let latency = serde_json::json!({
        "min": 1.0, "mean": 2.0, "p50": 2.0, "p90": 3.0, "p95": 3.5, "p99": 4.0,
        "p999": 5.0, "max": 6.0
    });
    let doc = serde_json::json!({
        "schema": "plimsoll.result/v1",
        "probe": "docs",
        "kind": "race",
        "started_at": "2026-11-22T10:00:00Z",
        "duration_s": 1.0,
        "grade": "good",
        "stats": {
            "requests": 10, "errors": 1, "error_rate": 0.1, "rps": 10.0, "offered_rps": 10.0,
            "latency_ms": latency, "service_time_ms": latency,
            "errors_by_kind": { "timeout": 1 }, "status_classes": { "2xx": 9, "none": 1 },
            "iterations": { "started": 10, "completed": 9, "failed": 1, "dropped": 0 },
            "bytes_received": 100,
            "endpoints": { "step": {
                "requests": 10, "errors": 1, "latency_ms": latency,
                "errors_by_kind": { "timeout": 1 }
            } }
        },
        "race": {
            "rounds": 1, "claimants": 2, "single_winner": 1, "multiple_winners": 0,
            "no_winner": 0, "win_rate": 1.0, "race_rate": 0.0, "race_time_ms": latency,
            "send_spread_ms": latency, "claims_by_outcome": { "won": 1, "lost": 1 },
            "setup_failures": 0
        },
        "regression": { "mode": "detect", "figures": {
            "p99": { "baseline": 3.0, "current": 4.0, "shift_ratio": 0.333, "statistic": 7.2,
                     "threshold": 5.5, "state": "open", "transition": "opened", "runs": 30 },
            "rps": { "current": 10.0, "state": "warmup", "runs": 3 }
        } },
        "thresholds": []
    });
    let mut r: ProbeResult = serde_json::from_value(doc).expect("the synthetic document reads");
    assert!(r.race().is_some(), "the race block was read");
    r.detail.steps.push(plimsoll::report::StepInfo {
        name: "step".into(),
        method: "GET".into(),
        server_address: "127.0.0.1".into(),
        server_port: 80,
    });
    let mut buckets = plimsoll::engine::recorder::ClassicBuckets::default();
    buckets.counts[0] = 9;
    buckets.sum_micros = 9_000;
    r.detail.requests.push(plimsoll::report::OutcomeSeries {
        step: 0,
        status: Some(200),
        error: None,
        buckets,
    });
    r
}

/// A capacity run that a guardrail both refused and aborted (impossible, but it reaches the
/// series of both).
fn synthetic_capacity_run() -> ProbeResult {
    let mut r = synthetic_run();
    r.probe = "docs-capacity".into();
    r.kind = Kind::Capacity;
    r.block = Some(plimsoll::report::KindBlock::Capacity(
        plimsoll::report::CapacityStats {
            breaking_point_rps: 100.0,
            steps: vec![plimsoll::report::CapacityStep::default()],
            ..Default::default()
        },
    ));
    r.refused = Some("not on the allowlist".into());
    r.aborted = Some(plimsoll::report::Abort {
        reason: "health".into(),
        detail: "the health check failed".into(),
        after_s: 1.0,
    });
    r
}

/// Runs of the kinds with series of their own figures: Redis operations, SQL queries (with an
/// error), pub/sub deliveries.
fn synthetic_store_runs() -> Vec<ProbeResult> {
    let mut out = Vec::new();
    for (name, kind) in [("docs-redis", Kind::Redis), ("docs-sql", Kind::Sql)] {
        let mut r = synthetic_run();
        r.probe = name.into();
        r.kind = kind;
        r.block = None;
        r.detail = Default::default();
        out.push(r);
    }
    let mut r = synthetic_run();
    r.probe = "docs-pubsub".into();
    r.kind = Kind::Pubsub;
    r.detail = Default::default();
    r.block = Some(plimsoll::report::KindBlock::Pubsub(
        plimsoll::report::PubsubStats {
            subscribers: 2,
            connected: 2,
            published: 10,
            expected_deliveries: 20,
            delivered: 19,
            delivery_ratio: 0.95,
            lost: 1,
            duplicates: 1,
            ..Default::default()
        },
    ));
    out.push(r);
    out
}

#[test]
fn the_metric_reference_lists_exactly_the_registered_families() {
    let t = plimsoll::telemetry::Telemetry::new();
    // Every family the registry holds, written or not (a counter without `_total`).
    let registered: BTreeSet<String> = t.family_names().into_iter().collect();
    assert!(registered.contains("plimsoll_probe_runs"), "{registered:?}");

    // The documented names as registered: a counter's row carries the `_total` of its samples.
    let docs = documented_families();
    let mut documented = BTreeMap::new();
    for (name, (kind, _)) in &docs {
        let base = match kind.as_str() {
            "counter" => name
                .strip_suffix("_total")
                .unwrap_or_else(|| panic!("docs/metrics.md: counter {name} must end in _total")),
            _ => name,
        };
        documented.insert(base.to_string(), name.clone());
    }
    let doc_names: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        registered,
        doc_names,
        "{}",
        diff(
            "docs/metrics.md and the registry disagree (counters compared without _total)",
            &registered,
            &doc_names
        )
    );

    // A run that writes every series `record_run` feeds, and a skip.
    t.record_run(&synthetic_run(), 0.0);
    t.record_run(&synthetic_capacity_run(), 0.0);
    for r in synthetic_store_runs() {
        t.record_run(&r, 0.0);
    }
    t.record_skip("docs", plimsoll::telemetry::SkipReason::Overlap);
    // The classic text format names counters by their samples (`…_total`), as queries do.
    let text = t.encode_text();
    let mut exposed: BTreeMap<String, String> = BTreeMap::new();
    for rest in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
        exposed.insert(name.to_string(), kind.to_string());
    }
    for (name, kind) in &exposed {
        let (doc_kind, _) = docs.get(name).unwrap_or_else(|| {
            panic!("/metrics exposes {name}, which docs/metrics.md does not list")
        });
        assert_eq!(
            doc_kind, kind,
            "docs/metrics.md gives {name} the wrong type"
        );
    }

    // Label names of every family with a sample.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (sample, mut labels) = sample_labels(line);
        let family = exposed
            .keys()
            .filter(|f| {
                sample
                    .strip_prefix(f.as_str())
                    .is_some_and(|s| ["", "_bucket", "_sum", "_count"].contains(&s))
            })
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample {sample} belongs to no family"));
        labels.remove("le");
        seen.entry(family.clone()).or_default().extend(labels);
    }
    for (family, labels) in &seen {
        assert_eq!(
            labels, &docs[family].1,
            "docs/metrics.md gives {family} the wrong labels"
        );
    }

    // What a run leaves unwritten is exactly what the reference marks as planned (besides the
    // OTLP counter, which exists only while OTLP is on).
    let metrics_md = read("docs/metrics.md");
    let planned: BTreeSet<&String> = docs
        .keys()
        .filter(|name| {
            metrics_md.lines().any(|l| {
                l.starts_with(&format!("| `{name}`"))
                    && l.contains("written by")
                    && (l.ends_with("(planned) |") || l.ends_with("(fault runs only) |"))
            })
        })
        .collect();
    let unwritten: BTreeSet<&String> = documented
        .values()
        .filter(|n| !seen.contains_key(*n) && n.as_str() != "plimsoll_otlp_dropped_total")
        .collect();
    assert_eq!(
        unwritten, planned,
        "the families no run writes must be exactly those docs/metrics.md marks \"written by … (planned)\""
    );
}

// ---------------------------------------------------------------------------------------------
// docs/result.schema.json

fn schema() -> serde_json::Value {
    serde_json::from_str(&read("docs/result.schema.json")).expect("the schema is JSON")
}

#[test]
fn the_schema_lists_exactly_the_probe_kinds() {
    let s = schema();
    let listed: BTreeSet<&str> = s["properties"]["kind"]["enum"]
        .as_array()
        .expect("kind is an enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let kinds: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(listed, kinds, "{}", diff("kind enum", &kinds, &listed));
    assert_eq!(
        s["properties"]["schema"]["const"],
        plimsoll::report::SCHEMA,
        "the schema's version"
    );
}

/// Validates documents with Python's `jsonschema` (Draft 2020-12): every `valid` one must
/// pass, every `invalid` one must fail; the failure message lists the validator's complaints.
fn validate(valid: &[(String, serde_json::Value)], invalid: &[(String, serde_json::Value)]) {
    const SCRIPT: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
cases = json.load(sys.stdin)
bad = []
for label, doc in cases["valid"]:
    for e in v.iter_errors(doc):
        bad.append(f"{label}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
for label, doc in cases["invalid"]:
    if v.is_valid(doc):
        bad.append(f"{label}: accepted, but must be rejected")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;
    let schema_path = format!("{}/docs/result.schema.json", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT, &schema_path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs it)");
    let input = serde_json::json!({ "valid": valid, "invalid": invalid });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'jsonschema'"),
        "Python's jsonschema is missing: `python3 -m pip install jsonschema` (scripts/test does)"
    );
    assert!(
        out.status.success(),
        "docs/result.schema.json and the result documents disagree:\n{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn doc(r: &ProbeResult) -> serde_json::Value {
    // Through the text, as a file or `--json` carries it.
    serde_json::from_str(&r.to_json_pretty()).unwrap()
}

/// Tiny runs of every kind, against the sample backend, PostgreSQL and Redis on 127.0.0.1.
fn results_of_every_kind() -> Vec<(String, ProbeResult)> {
    // The database takes the longest to start: start it and Redis while the HTTP kinds run.
    let stores = std::thread::spawn(|| (Postgres::start(), Redis::start()));
    let backend = Backend::start();
    let url = &backend.url;
    let ws = url.replacen("http://", "ws://", 1);
    let refused = closed_port();
    let mut out = Vec::new();
    let mut run = |label: &str, toml: String| out.push((label.to_string(), run_toml(&toml)));

    run(
        "load, open model",
        format!(
            r#"
[[probe]]
name = "load-open"
kind = "load"
[probe.load]
phases = [{{ duration = "300ms", rate = 50 }}]
request = {{ url = "{url}/health" }}
"#
        ),
    );
    run(
        "load, closed model, steps with errors",
        format!(
            r#"
[[probe]]
name = "load-closed"
kind = "load"
thresholds = {{ p50_ms = {{ good = 100.0, warning = 500.0 }} }}
[probe.load]
concurrency = 2
duration = "300ms"
timeout = "1s"
[[probe.load.steps]]
name = "health"
url = "{url}/health"
[[probe.load.steps]]
name = "missing"
url = "{url}/no-such-route"
expect_status = [200]
"#
        ),
    );
    run(
        "load, refused",
        format!(
            r#"
[[probe]]
name = "load-refused"
kind = "load"
[probe.load]
concurrency = 1
duration = "200ms"
request = {{ url = "http://127.0.0.1:{refused}/" }}
"#
        ),
    );
    run(
        "race, in memory",
        format!(
            r#"
[[probe]]
name = "race-memory"
kind = "race"
[probe.race]
claimants = 3
rounds = 5
[probe.race.setup]
method = "POST"
url = "{url}/orders"
[probe.race.claim]
method = "POST"
url = "{url}/orders/{{{{id}}}}/accept-racy"
json = {{ vendor = "v{{{{claimant}}}}" }}
"#
        ),
    );
    run(
        "benchmark",
        format!(
            r#"
[[probe]]
name = "benchmark"
kind = "benchmark"
[[probe.benchmark.operations]]
name = "health"
samples = 5
request = {{ url = "{url}/health" }}
"#
        ),
    );
    run(
        "pubsub over HTTP publishing",
        format!(
            r#"
[[probe]]
name = "pubsub"
kind = "pubsub"
[probe.pubsub]
url = "{ws}/ws/events"
subscribers = 2
rate = 50
duration = "300ms"
warmup = "100ms"
grace = "300ms"
publish = "http"
publish_url = "{url}/events"
"#
        ),
    );

    run(
        "capacity",
        format!(
            r#"
[[probe]]
name = "capacity"
kind = "capacity"
[probe.capacity]
request = {{ url = "{url}/capacity?rps=100" }}
steps = [20, 400]
warm_up = "100ms"
hold = "300ms"
rest = "0s"
resolution_rps = 300
[probe.capacity.resources]
metrics_url = "{url}/metrics"
"#
        ),
    );
    run(
        "refused by the host allowlist",
        format!(
            r#"
[guardrails]
allow_hosts = ["example.com"]

[[probe]]
name = "refused"
kind = "load"
[probe.load]
phases = [{{ duration = "300ms", rate = 10 }}]
request = {{ url = "{url}/health" }}
"#
        ),
    );
    run(
        "aborted by the health check",
        format!(
            r#"
[guardrails.abort]
health_url = "http://127.0.0.1:{refused}/"

[[probe]]
name = "aborted"
kind = "load"
[probe.load]
phases = [{{ duration = "5s", rate = 20 }}]
request = {{ url = "{url}/health" }}
"#
        ),
    );

    let (pg, redis) = stores.join().expect("PostgreSQL and Redis start");
    let db_backend = Backend::start_with(&["--database-url", &pg.url]);
    let db_url = &db_backend.url;
    run(
        "race, verified in PostgreSQL",
        format!(
            r#"
[[probe]]
name = "race-verified"
kind = "race"
[probe.race]
claimants = 5
rounds = 10
[probe.race.setup]
method = "POST"
url = "{db_url}/orders"
[probe.race.claim]
method = "POST"
url = "{db_url}/orders/{{{{id}}}}/accept-racy"
json = {{ vendor = "v{{{{claimant}}}}" }}
[probe.race.verify]
database_url = "{pg}"
query = "SELECT count(*) FROM vendor_routing_responses WHERE routing_id = $1 AND response = 'ACCEPTED'"
"#,
            pg = pg.url
        ),
    );
    run(
        "redis",
        format!(
            r#"
[[probe]]
name = "redis"
kind = "redis"
[probe.redis]
url = "{}"
concurrency = 2
operations = 50
"#,
            redis.url
        ),
    );
    run(
        "sql, open model with a failing query",
        format!(
            r#"
[[probe]]
name = "sql-open"
kind = "sql"
[probe.sql]
database_url = "{}"
rate = 40
duration = "300ms"
[[probe.sql.queries]]
name = "one"
sql = "SELECT 1"
[[probe.sql.queries]]
name = "broken"
sql = "SELEC nothing"
"#,
            pg.url
        ),
    );
    run(
        "sql, closed model",
        format!(
            r#"
[[probe]]
name = "sql-closed"
kind = "sql"
[probe.sql]
database_url = "{}"
concurrency = 2
duration = "300ms"
[[probe.sql.queries]]
name = "one"
sql = "SELECT 1"
"#,
            pg.url
        ),
    );
    out
}

#[test]
fn every_kind_result_matches_the_schema() {
    let mut results = results_of_every_kind();
    // A probe that could not run at all.
    let cfg = plimsoll::config::load_str(
        "[[probe]]\nname = \"failed\"\nkind = \"redis\"\n[probe.redis]\nurl = \"redis://127.0.0.1:1\"\n",
        std::iter::empty(),
    )
    .unwrap();
    results.push((
        "failed".into(),
        ProbeResult::failed(&cfg.probe[0], "could not start"),
    ));

    let kinds: BTreeSet<Kind> = results.iter().map(|(_, r)| r.kind).collect();
    // The fault kind landed beside this test in the same change; its block is held to DESIGN's
    // named fields above ("DESIGN's fault and regression blocks") and by tests/fault_probe.rs,
    // and a real fault run joins this list next (its timeline takes seconds to run).
    let all: BTreeSet<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|k| *k != Kind::Fault)
        .collect();
    assert_eq!(
        kinds, all,
        "add a run of every new kind to results_of_every_kind"
    );
    let mut valid: Vec<(String, serde_json::Value)> =
        results.iter().map(|(l, r)| (l.clone(), doc(r))).collect();
    // The runs reach the optional parts of the document they exist for.
    let has = |pred: &dyn Fn(&ProbeResult) -> bool| results.iter().any(|(_, r)| pred(r));
    assert!(has(&|r| r
        .race()
        .is_some_and(|x| x.verify_errors.is_some())));
    assert!(has(&|r| r.pubsub().is_some()));
    assert!(has(&|r| r.stats.as_ref().is_some_and(|s| {
        s.send_lag_ms.is_some() && !s.error_samples.is_empty()
    })));
    assert!(has(&|r| !r.notes.is_empty() && r.stats.is_none()));
    assert!(has(&|r| r.capacity().is_some_and(|c| !c.steps.is_empty())));
    assert!(has(&|r| r.capacity().is_some_and(|c| c.steps.iter().any(
        |s| s.resources.as_ref().is_some_and(|x| x.cpu_cores.is_some())
    ))));
    assert!(has(&|r| r.refused.is_some()));
    assert!(has(&|r| r.aborted.is_some()));
    assert!(has(&|r| r.thresholds.iter().any(|t| t.decides)));

    // DESIGN's blocks of the work to come, on a real load document.
    let mut planned = doc(&results[0].1);
    let design = serde_json::json!({
        "fault": {
            "faults": [ { "name": "redis-down", "injected_at": "2026-11-22T10:00:05Z",
                          "cleared_at": "2026-11-22T10:00:15Z",
                          "detect_s": 0.25, "recovery_s": 2.1,
                          "error_rate": { "before": 0.0, "during": 0.93, "after": 0.0 },
                          "backlog_peak": 412 } ]
        },
        "regression": {
            "figures": { "p99": { "baseline": 41.0, "current": 55.2, "shift_ratio": 0.35,
                                  "state": "open" } }
        }
    });
    for (k, v) in design.as_object().unwrap() {
        planned[k] = v.clone();
    }
    valid.push(("DESIGN's fault and regression blocks".into(), planned));

    // The schema is closed where the code is: a renamed or unknown field is rejected.
    let load = doc(&results[0].1);
    let race = valid
        .iter()
        .find(|(_, d)| d.get("race").is_some())
        .unwrap()
        .1
        .clone();
    let rename = |d: &serde_json::Value, ptr: &str, to: &str| {
        let mut d = d.clone();
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let obj = d.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        let v = obj.remove(key).unwrap_or_else(|| panic!("{ptr} missing"));
        obj.insert(to.into(), v);
        d
    };
    let capacity = valid
        .iter()
        .find(|(_, d)| d.get("capacity").is_some())
        .unwrap()
        .1
        .clone();
    let invalid = vec![
        (
            "capacity step's achieved_rps renamed".into(),
            rename(&capacity, "/capacity/steps/0/achieved_rps", "achieved"),
        ),
        (
            "capacity step's cpu_cores renamed".into(),
            rename(&capacity, "/capacity/steps/0/resources/cpu_cores", "cpu"),
        ),
        (
            "grade_reason renamed".into(),
            rename(&load, "/grade_reason", "reason"),
        ),
        (
            "stats.rps renamed".into(),
            rename(&load, "/stats/rps", "rate"),
        ),
        (
            "latency p99 renamed".into(),
            rename(&load, "/stats/latency_ms/p99", "p99_ms"),
        ),
        (
            "threshold bands renamed".into(),
            rename(&load, "/thresholds/0/bands", "band"),
        ),
        ("grade renamed".into(), rename(&load, "/grade", "verdict")),
        (
            "race.win_rate renamed".into(),
            rename(&race, "/race/win_rate", "wins"),
        ),
        ("a race block on a load".into(), {
            let mut d = load.clone();
            d["race"] = race["race"].clone();
            d
        }),
        ("an unknown grade".into(), {
            let mut d = load.clone();
            d["grade"] = "fine".into();
            d
        }),
    ];
    validate(&valid, &invalid);

    // And the documents read back into the type they came from.
    for (label, d) in &valid[..results.len()] {
        let back: ProbeResult = serde_json::from_value(d.clone())
            .unwrap_or_else(|e| panic!("{label}: the document does not read back: {e}"));
        assert_eq!(
            &doc(&back),
            d,
            "{label}: the document changed on the way back"
        );
    }
}

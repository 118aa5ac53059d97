//! The rolling baseline wired into the product: `plimsoll once` against a stored baseline
//! gates CI by its exit code, and a daemon whose target slows down by 30 % opens the
//! `PlimsollRegression` alert in a real Prometheus and closes it once the target is back.
//!
//! The target is the sample backend's `/delay` behind Plimsoll's own fault proxy (in this
//! process), whose latency toxic raises the latency without changing the probe's
//! configuration (a changed configuration starts a new series instead of alerting).
//! Everything listens on 127.0.0.1; stores and Prometheus live in temp directories.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::prometheus::{alerts, get_json, start_prometheus, wait_until};
use common::Backend;
use plimsoll::fault::{Direction, FaultProxy, ListenerSpec, Toxic, ToxicKind};
use serde_json::Value;

/// The sample backend behind a fault proxy listener named `backend`.
struct SlowableTarget {
    _backend: Backend,
    rt: tokio::runtime::Runtime,
    proxy: Option<FaultProxy>,
    /// `http://127.0.0.1:PORT` of the proxy.
    url: String,
}

impl SlowableTarget {
    fn start() -> SlowableTarget {
        let backend = Backend::start();
        let upstream = backend
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spec = ListenerSpec::new("backend", "127.0.0.1:0".parse().unwrap(), upstream);
        let proxy = rt.block_on(FaultProxy::start(vec![spec])).unwrap();
        let addr = proxy.handle().local_addr("backend").unwrap();
        SlowableTarget {
            _backend: backend,
            rt,
            proxy: Some(proxy),
            url: format!("http://{addr}"),
        }
    }

    /// Adds `extra` to every request (0: none): the toxic holds the request, one chunk, on its
    /// way to the backend, so each exchange is `extra` slower and no more.
    fn slow_by(&self, extra: Duration) {
        let h = self.proxy.as_ref().unwrap().handle();
        let toxics = if extra.is_zero() {
            Vec::new()
        } else {
            vec![Toxic::new(
                ToxicKind::Latency {
                    latency: extra,
                    jitter: Duration::ZERO,
                },
                Direction::Upstream,
            )]
        };
        h.set_toxics("backend", toxics).unwrap();
    }
}

impl Drop for SlowableTarget {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            self.rt.block_on(p.shutdown(Duration::from_millis(200)));
        }
    }
}

/// A configuration probing `/delay?ms=20` at 20 requests per second, judged on its p50 with
/// the smallest detector the configuration allows (5 runs of warm-up, a window of 10).
fn config(dir: &Path, url: &str, schedule: &str) -> std::path::PathBuf {
    let path = dir.join("plimsoll.toml");
    let store = dir.join("store").join("plimsoll.db");
    std::fs::write(
        &path,
        format!(
            r#"
[report]
dir = ""

[baseline]
store = "{store}"
figures = ["p50"]
[baseline.detector]
window = 10
min_runs = 5

[[target]]
name = "slowable"
url = "{url}"

[[probe]]
name = "delay"
kind = "load"
target = "slowable"
{schedule}
[probe.load]
phases = [{{ duration = "500ms", rate = 20 }}]
[probe.load.request]
url = "/delay?ms=20"
"#,
            store = store.display()
        ),
    )
    .unwrap();
    path
}

/// `plimsoll once --out -`: its exit code, its result document (stdout) and its terminal
/// summary (stderr, where `--out -` moves it).
fn once(config: &Path) -> (i32, Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["once", "--out", "-", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = stdout
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no result document; stderr:\n{stderr}"));
    let doc = serde_json::from_str(line).unwrap();
    (o.status.code().unwrap(), doc, stderr)
}

fn plimsoll(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn once_against_a_regressed_baseline_exits_1_with_the_regression_block() {
    let dir = tempfile::tempdir().unwrap();
    let target = SlowableTarget::start();
    let cfg = config(dir.path(), &target.url, "");

    // Warm-up: the first four steady runs are not judged (the fifth completes the baseline);
    // all pass, and the summary says how far the warm-up is.
    let mut p99s = Vec::new();
    for i in 0..5 {
        let (code, doc, summary) = once(&cfg);
        assert_eq!(code, 0, "steady run {i}: {doc:#}");
        let state = &doc["regression"]["figures"]["p50"]["state"];
        assert_eq!(state, if i < 4 { "warmup" } else { "ok" }, "{doc:#}");
        let warming = format!("baseline    warming up ({}/5 runs)", i + 1);
        assert_eq!(summary.contains(&warming), i < 4, "run {i}:\n{summary}");
        assert!(!summary.contains("regression  "), "{summary}");
        p99s.push(doc["stats"]["latency_ms"]["p99"].as_f64().unwrap());
    }
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 0, "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(p50["state"], "ok", "{doc:#}");
    let baseline = p50["baseline"].as_f64().unwrap();
    assert!((19.0..25.0).contains(&baseline), "{doc:#}");
    // A figure steadily within its baseline prints nothing.
    assert!(!summary.contains("regression  "), "{summary}");
    assert!(!summary.contains("warming up"), "{summary}");
    p99s.push(doc["stats"]["latency_ms"]["p99"].as_f64().unwrap());

    // Each run's merged histogram is stored: `show --json` recomputes the latency over the six
    // runs, and the p99 of their union lies between the runs' own lowest and highest p99.
    let config = cfg.to_str().unwrap();
    let (code, text, err) = plimsoll(&["baseline", "--config", config, "show", "delay", "--json"]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["latency_runs"], 6, "{shown:#}");
    let merged = shown["latency_ms"]["p99"].as_f64().unwrap();
    let (lo, hi) = p99s
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    assert!(
        lo - 0.001 <= merged && merged <= hi + 0.001,
        "merged p99 {merged} outside the runs' {p99s:?}"
    );
    let p50 = shown["latency_ms"]["p50"].as_f64().unwrap();
    assert!((19.0..25.0).contains(&p50), "{shown:#}");
    let (code, text, err) = plimsoll(&["baseline", "--config", config, "show", "delay"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("latency over the 6 stored run(s) of the series: p50"),
        "{text}"
    );

    // The target slows by half: the first slow run is held as a possible outlier, the next
    // confirms it and the regression opens; `once` exits 1 (warning).
    target.slow_by(Duration::from_millis(10));
    let mut opened = None;
    for _ in 0..3 {
        let (code, doc, summary) = once(&cfg);
        if code != 0 {
            opened = Some((code, doc, summary));
            break;
        }
    }
    let (code, doc, summary) = opened.expect("a regression within 3 slow runs");
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["grade"], "warning", "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(p50["state"], "open", "{doc:#}");
    assert_eq!(p50["transition"], "opened", "{doc:#}");
    let shift = p50["shift_ratio"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&shift), "shift {shift}: {doc:#}");
    assert!(doc["grade_reason"].as_str().unwrap().contains("regression"));
    // The summary has the figure's line: baseline, current, shift and state, as judged.
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("regression  p50"))
        .unwrap_or_else(|| panic!("no regression line:\n{summary}"));
    let base = p50["baseline"].as_f64().unwrap();
    let current = p50["current"].as_f64().unwrap();
    assert!(line.contains(&format!("baseline {base:.3}")), "{line}");
    assert!(line.contains(&format!("current {current:.3}")), "{line}");
    assert!(
        line.contains(&format!("shift {:+.1} %", shift * 100.0)),
        "{line}"
    );
    assert!(line.ends_with("open (opened by this run)"), "{line}");

    // The CLI sees the same: `show --json` has p50 open, `compare` prints it worse.
    let store = dir.path().join("store").join("plimsoll.db");
    let store = store.to_str().unwrap();
    // `--config` brings the store and the test's detector settings.
    let (code, text, err) = plimsoll(&["baseline", "--config", config, "show", "delay", "--json"]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["figures"]["p50"]["state"], "open", "{shown:#}");
    let (code, text, err) = plimsoll(&["baseline", "--config", config, "compare", "delay"]);
    assert_eq!(code, 0, "{err}");
    let row = text.lines().find(|l| l.starts_with("p50")).unwrap();
    assert!(row.contains("worse by"), "{text}");
    let (code, text, _) = plimsoll(&["baseline", "--store", store, "list"]);
    assert_eq!(code, 0);
    assert!(text.lines().any(|l| l.starts_with("delay")), "{text}");

    // Accepting the new level starts the series again: the next run warms up, exit 0.
    let (code, _, err) = plimsoll(&["baseline", "--store", store, "accept", "delay"]);
    assert_eq!(code, 0, "{err}");
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["regression"]["figures"]["p50"]["state"], "warmup");
    assert!(summary.contains("warming up (1/5 runs)"), "{summary}");

    // Every run is in the store: 6 steady, the slow ones, the one after the accept.
    let (code, text, _) = plimsoll(&["baseline", "--store", store, "export"]);
    assert_eq!(code, 0);
    let runs = text.lines().count();
    assert!((8..=10).contains(&runs), "{runs} runs exported");
    let (code, _, err) = plimsoll(&["baseline", "--store", store, "show", "nope"]);
    assert_eq!(code, 3);
    assert!(err.contains("no runs of a probe named \"nope\""), "{err}");
}

#[test]
fn a_30_percent_slowdown_opens_the_regression_alert_in_prometheus_and_it_closes_after() {
    let dir = tempfile::tempdir().unwrap();
    let target = SlowableTarget::start();
    let cfg = config(dir.path(), &target.url, "schedule = { every = \"1s\" }");
    let daemon = Daemon::start(&cfg, &[]);
    let (_prom, prom) = start_prometheus(dir.path(), &daemon.addr, None);
    let query = |q: &str| -> Option<f64> {
        let v = get_json(&prom, &format!("/api/v1/query?query={q}"))?;
        v["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    };

    // Warm-up: the baseline appears once five runs are stored.
    let baseline = wait_until(
        Duration::from_secs(40),
        "the p50 baseline in Prometheus",
        || query("plimsoll_baseline_value%7Bprobe%3D%22delay%22%2Cmetric%3D%22p50%22%7D"),
    );
    assert!((19.0..25.0).contains(&baseline), "baseline {baseline}");
    assert_eq!(
        query("plimsoll_regression%7Bprobe%3D%22delay%22%2Cmetric%3D%22p50%22%7D"),
        Some(0.0)
    );
    let (status, ready) = daemon.get("/readyz", &[]);
    assert_eq!(status, 200);
    assert!(ready.contains("store: ok"), "{ready}");
    assert!(
        !alerts(&prom)
            .unwrap_or_default()
            .iter()
            .any(|a| a["labels"]["alertname"] == "PlimsollRegression"),
        "no regression before the slowdown"
    );

    // 20 ms → 26 ms: the alert fires (the rule has no `for`).
    target.slow_by(Duration::from_millis(6));
    let slowed = Instant::now();
    let alert = wait_until(Duration::from_secs(40), "PlimsollRegression firing", || {
        alerts(&prom)?.into_iter().find(|a| {
            a["labels"]["alertname"] == "PlimsollRegression"
                && a["labels"]["probe"] == "delay"
                && a["labels"]["metric"] == "p50"
                && a["state"] == "firing"
        })
    });
    eprintln!("alert firing {:.1?} after the slowdown", slowed.elapsed());
    assert_eq!(alert["labels"]["severity"], "warning");
    let shift =
        query("plimsoll_regression_shift_ratio%7Bprobe%3D%22delay%22%2Cmetric%3D%22p50%22%7D")
            .unwrap();
    // p50 rises by the toxic's 6 ms: a 30 % shift, read as such within noise.
    assert!((0.2..0.45).contains(&shift), "shift {shift}");
    let probes = daemon.probes();
    let last = &probes[0]["last"];
    assert_eq!(last["grade"], "warning", "{last:#}");

    // The target is back: the alert clears after a few steady runs.
    target.slow_by(Duration::ZERO);
    let back = Instant::now();
    wait_until(Duration::from_secs(60), "PlimsollRegression gone", || {
        let list = alerts(&prom)?;
        (!list
            .iter()
            .any(|a| a["labels"]["alertname"] == "PlimsollRegression"))
        .then_some(())
    });
    eprintln!(
        "alert cleared {:.1?} after the target returned",
        back.elapsed()
    );
    assert_eq!(
        query("plimsoll_regression%7Bprobe%3D%22delay%22%2Cmetric%3D%22p50%22%7D"),
        Some(0.0)
    );
    assert!(
        daemon.log_text().contains("baseline store open"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn percentage_mode_reports_when_a_run_opens_and_clears_the_regression() {
    let dir = tempfile::tempdir().unwrap();
    let target = SlowableTarget::start();
    let cfg = config(dir.path(), &target.url, "");
    // Against the pinned run (the first), 20 % worse at most.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "figures = [\"p50\"]",
        "figures = [\"p50\"]\nmode = \"percentage\"\npercentage_tolerance = 0.2",
    );
    std::fs::write(&cfg, text).unwrap();
    let p50_line = |summary: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with("regression  p50"))
            .map(str::trim)
            .map(String::from)
    };

    // The first run is the pinned baseline: within it, nothing to say.
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 0, "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(doc["regression"]["mode"], "percentage", "{doc:#}");
    assert_eq!(p50["state"], "ok", "{doc:#}");
    assert!(p50.get("transition").is_none(), "{doc:#}");
    assert_eq!(p50_line(&summary), None, "{summary}");

    // 20 ms → 30 ms: the first slow run opens the regression, the second keeps it open.
    target.slow_by(Duration::from_millis(10));
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 1, "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(p50["state"], "open", "{doc:#}");
    assert_eq!(p50["transition"], "opened", "{doc:#}");
    let line = p50_line(&summary).unwrap_or_else(|| panic!("{summary}"));
    assert!(line.ends_with("open (opened by this run)"), "{line}");
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 1, "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(p50["state"], "open", "{doc:#}");
    assert!(p50.get("transition").is_none(), "{doc:#}");
    let line = p50_line(&summary).unwrap_or_else(|| panic!("{summary}"));
    assert!(line.ends_with("  open"), "{line}");

    // The target is back: the next run clears it.
    target.slow_by(Duration::ZERO);
    let (code, doc, summary) = once(&cfg);
    assert_eq!(code, 0, "{doc:#}");
    let p50 = &doc["regression"]["figures"]["p50"];
    assert_eq!(p50["state"], "ok", "{doc:#}");
    assert_eq!(p50["transition"], "cleared", "{doc:#}");
    let line = p50_line(&summary).unwrap_or_else(|| panic!("{summary}"));
    assert!(line.ends_with("ok (cleared by this run)"), "{line}");
}

//! The alert rules and the dashboard stay in step with the metrics: `promtool` checks and
//! tests the rules, both use only metric names from DESIGN.md, and the dashboard follows the
//! Grafana habits of STYLE.md (a datasource variable, `$__rate_interval`).

use std::collections::BTreeSet;
use std::process::Command;

/// The metric names DESIGN.md fixes (histograms and counters as they appear in queries).
const DESIGN_METRICS: &[&str] = &[
    "plimsoll_probe_success",
    "plimsoll_probe_grade",
    "plimsoll_probe_duration_seconds",
    "plimsoll_probe_last_run_timestamp_seconds",
    "plimsoll_probe_runs_total",
    "plimsoll_probe_skipped_total",
    "plimsoll_probe_aborts_total",
    "plimsoll_http_request_duration_seconds_bucket",
    "plimsoll_http_request_duration_seconds_sum",
    "plimsoll_http_request_duration_seconds_count",
    "plimsoll_http_requests_total",
    "plimsoll_http_request_errors_total",
    "plimsoll_latency_seconds",
    "plimsoll_throughput_rps",
    "plimsoll_offered_rps",
    "plimsoll_error_ratio",
    "plimsoll_breaking_point_rps",
    "plimsoll_race_rounds_total",
    "plimsoll_fault_recovery_seconds",
    "plimsoll_fault_error_ratio",
    "plimsoll_fault_backlog_peak",
    "plimsoll_fault_cleared",
    "plimsoll_baseline_value",
    "plimsoll_regression",
    "plimsoll_regression_shift_ratio",
    "plimsoll_build_info",
];

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every `plimsoll_…` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("plimsoll_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
    out
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/alerts"))
        .output()
        .expect("promtool runs (scripts/test installs the prometheus package)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules", "plimsoll.rules.yml"]);
    promtool(&["test", "rules", "plimsoll.rules.test.yml"]);
    promtool(&["check", "rules", "plimsoll-faults.rules.yml"]);
    promtool(&["test", "rules", "plimsoll-faults.rules.test.yml"]);
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let rules = read("alerts/plimsoll.rules.yml") + &read("alerts/plimsoll-faults.rules.yml");
    let runbook = read("alerts/runbook.md");
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 11, "{} alerts", blocks.len());
    for b in blocks {
        let name = b.lines().next().unwrap().trim();
        for field in ["severity:", "summary:", "description:", "runbook_url:"] {
            assert!(b.contains(field), "{name} has no {field}");
        }
        let anchor = format!("#{}", name.to_lowercase());
        assert!(
            b.contains(&anchor),
            "{name}'s runbook_url does not point at {anchor}"
        );
        assert!(
            runbook.contains(&format!("## {name}")),
            "runbook.md has no section for {name}"
        );
    }
}

#[test]
fn rules_and_dashboards_use_only_design_metric_names() {
    for file in [
        "alerts/plimsoll.rules.yml",
        "alerts/plimsoll-faults.rules.yml",
        "dashboards/plimsoll-overview.json",
        "dashboards/plimsoll-faults.json",
    ] {
        for name in metric_names(&read(file)) {
            assert!(
                DESIGN_METRICS.contains(&name.as_str()),
                "{file} uses {name}, which DESIGN.md does not name"
            );
        }
    }
}

#[test]
fn the_dashboard_has_a_datasource_variable_and_uses_rate_interval() {
    for (file, least_panels) in [
        ("dashboards/plimsoll-overview.json", 8),
        ("dashboards/plimsoll-faults.json", 4),
    ] {
        dashboard_follows_the_habits(file, least_panels);
    }
}

fn dashboard_follows_the_habits(file: &str, least_panels: usize) {
    let d: serde_json::Value = serde_json::from_str(&read(file)).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    let panels = d["panels"].as_array().unwrap();
    assert!(
        panels.len() >= least_panels,
        "{file}: {} panels",
        panels.len()
    );
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for f in ["rate(", "increase("] {
                if expr.contains(f) {
                    assert!(
                        expr.contains("[$__rate_interval]"),
                        "{}: {expr}",
                        p["title"]
                    );
                }
            }
        }
    }
}

//! `/metrics` with hostile probe and step names: both exposition formats stay parseable by
//! `promtool check metrics` and by the Python client's parsers, which give back the exact
//! names. Everything listens on 127.0.0.1 and is bounded in time.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::Daemon;
use common::{promtool_check, Backend};
use serde_json::Value;

/// A probe name with every character the exposition formats treat specially, plus unicode,
/// a tab, control characters and a terminal escape.
const HOSTILE_PROBE: &str = "q\"uote \\back\\slash\nnew line ünïcødé ☃ \t\u{1}\u{7f}\u{1b}[31m";
/// The same for a step (the `endpoint` label).
const HOSTILE_STEP: &str = "step \"x\"\\\n\u{2028}end";

/// `s` as a TOML basic string (every non-printable character escaped).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '\u{2028}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse(text: &str, format: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/parse_metrics.py");
    let mut child = Command::new("python3")
        .args([script, format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs it with prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {format} parser rejected the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The label values of every sample named `name`, as the parser returned them.
fn label_values(parsed: &Value, name: &str, label: &str) -> Vec<String> {
    parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == name)
        .filter_map(|s| s[1][label].as_str().map(str::to_string))
        .collect()
}

#[test]
fn label_values_with_quotes_backslashes_and_newlines_are_escaped_in_both_formats() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[report]
dir = ""

[[target]]
name = "sample"
url = "{url}"

[[probe]]
name = {probe}
kind = "load"
target = "sample"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "300ms", rate = 20 }}]
[probe.load.request]
name = {step}
url = "/health"
"#,
            url = b.url,
            probe = toml_str(HOSTILE_PROBE),
            step = toml_str(HOSTILE_STEP),
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg, &[]);
    d.wait_for(Duration::from_secs(15), |p| {
        p[0]["runs"].as_u64().unwrap_or(0) >= 1
    });

    let (status, text) = d.get("/metrics", &[]);
    assert_eq!(status, 200);
    promtool_check(&text);
    let parsed = parse(&text, "text");
    for name in ["plimsoll_probe_success", "plimsoll_latency_seconds"] {
        assert_eq!(
            label_values(&parsed, name, "probe"),
            [HOSTILE_PROBE].repeat(if name == "plimsoll_latency_seconds" {
                6
            } else {
                1
            }),
            "{name}"
        );
    }
    assert!(
        label_values(&parsed, "plimsoll_http_requests_total", "endpoint")
            .iter()
            .all(|e| e == HOSTILE_STEP)
    );
    assert!(!label_values(&parsed, "plimsoll_http_requests_total", "endpoint").is_empty());

    let (status, om) = d.get(
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5"],
    );
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"));
    let parsed = parse(&om, "openmetrics");
    assert_eq!(
        label_values(&parsed, "plimsoll_probe_success", "probe"),
        [HOSTILE_PROBE]
    );
    let endpoints = label_values(&parsed, "plimsoll_http_requests_total", "endpoint");
    assert!(
        !endpoints.is_empty() && endpoints.iter().all(|e| e == HOSTILE_STEP),
        "{endpoints:?}"
    );
}

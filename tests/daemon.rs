//! The daemon over real sockets: `plimsoll run` against the sample backend, its endpoints
//! scraped and parsed by real exposition parsers (the Python client's OpenMetrics and text
//! parsers, `promtool check metrics`), signals, reload and the systemd notify protocol.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{http_get, Daemon};
use common::{closed_port, raw_server, read_head, Backend};
use serde_json::Value;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Samples of an exposition, parsed by the Python client's parser for `format`.
fn parse_exposition(text: &str, format: &str) -> Vec<(String, Value, f64)> {
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
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_string(),
                s[1].clone(),
                s[2].as_f64().unwrap(),
            )
        })
        .collect()
}

fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|(_, _, v)| *v)
}

#[test]
fn metrics_and_endpoints_after_good_and_failing_runs() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let dead = closed_port();
    let cfg = write(
        &dir,
        "p.toml",
        &format!(
            r#"
[daemon]
bearer_token = "s3cret"

[report]
dir = "{results}"

[[target]]
name = "sample"
url = "{url}"

[[target]]
name = "dead"
url = "http://127.0.0.1:{dead}"

[[probe]]
name = "health"
kind = "load"
target = "sample"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "500ms", rate = 40 }}]
[probe.load.request]
name = "health"
url = "/health"

[[probe]]
name = "refused"
kind = "load"
target = "dead"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "200ms", rate = 20 }}]
[probe.load.request]
name = "root"
url = "/"

[[probe]]
name = "unscheduled"
kind = "load"
target = "sample"
[probe.load]
concurrency = 1
[probe.load.request]
url = "/health"
"#,
            results = dir.path().join("results").display(),
            url = b.url
        ),
    );
    let d = Daemon::start(&cfg, &[]);
    assert_eq!(d.get("/healthz", &[]).0, 200);
    assert_eq!(d.get("/readyz", &[]).0, 200);
    // The listing endpoints want the token.
    assert_eq!(d.get("/metrics", &[]).0, 401);
    assert_eq!(d.get("/", &["Authorization: Bearer wrong"]).0, 401);
    let auth = ["Authorization: Bearer s3cret"];
    let (status, body) = d.get("/api/v1/probes", &auth);
    assert_eq!(status, 200, "{body}");

    // Both scheduled probes run at least twice; the failing one does not stop anything.
    let start = Instant::now();
    let probes = loop {
        let (_, body) = d.get("/api/v1/probes", &auth);
        let v: Value = serde_json::from_str(&body).unwrap();
        let p = v["probes"].as_array().unwrap().clone();
        if p.iter()
            .filter(|p| p["name"] != "unscheduled")
            .all(|p| p["runs"].as_u64().unwrap() >= 2)
        {
            break p;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{p:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let by_name = |n: &str| probes.iter().find(|p| p["name"] == n).unwrap().clone();
    assert_eq!(by_name("health")["last"]["grade"], "good");
    assert_eq!(by_name("refused")["last"]["grade"], "critical");
    assert!(
        by_name("refused")["last"]["stats"]["errors_by_kind"]["connect"]
            .as_u64()
            .unwrap()
            > 0
    );
    let never = by_name("unscheduled");
    assert_eq!(never["runs"], 0);
    assert!(never["next_run"].is_null());
    assert!(by_name("health")["next_run"].is_string());

    // The classic text format, through the Python client's parser and promtool.
    let (status, text) = d.get("/metrics", &auth);
    assert_eq!(status, 200);
    let s = parse_exposition(&text, "text");
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("promtool runs (scripts/test installs the prometheus package)");
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
    assert_eq!(
        sample(&s, "plimsoll_probe_success", &[("probe", "health")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&s, "plimsoll_probe_success", &[("probe", "refused")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&s, "plimsoll_probe_grade", &[("probe", "refused")]),
        Some(3.0)
    );
    assert!(
        sample(
            &s,
            "plimsoll_probe_runs_total",
            &[("probe", "refused"), ("grade", "critical")]
        )
        .unwrap()
            >= 2.0
    );
    let ok_labels = [
        ("probe", "health"),
        ("endpoint", "health"),
        ("method", "GET"),
        ("status_class", "2xx"),
    ];
    let requests = sample(&s, "plimsoll_http_requests_total", &ok_labels).unwrap();
    assert!(requests >= 40.0, "{requests}");
    // The histogram counts the same requests as the counter.
    assert_eq!(
        sample(
            &s,
            "plimsoll_http_request_duration_seconds_count",
            &ok_labels
        ),
        Some(requests)
    );
    let mut inf = ok_labels.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        sample(&s, "plimsoll_http_request_duration_seconds_bucket", &inf),
        Some(requests)
    );
    assert!(
        sample(
            &s,
            "plimsoll_http_request_errors_total",
            &[
                ("probe", "refused"),
                ("endpoint", "root"),
                ("kind", "connect")
            ]
        )
        .unwrap()
            > 0.0
    );
    let p99 = sample(
        &s,
        "plimsoll_latency_seconds",
        &[("probe", "health"), ("quantile", "0.99")],
    )
    .unwrap();
    assert!(p99 > 0.0 && p99 < 0.5, "{p99}");
    assert!(sample(&s, "plimsoll_throughput_rps", &[("probe", "health")]).unwrap() > 0.0);
    assert_eq!(
        sample(&s, "plimsoll_offered_rps", &[("probe", "health")]),
        Some(40.0)
    );
    assert_eq!(
        sample(&s, "plimsoll_error_ratio", &[("probe", "refused")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &s,
            "plimsoll_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // OpenMetrics, which Prometheus asks for, through the strict OpenMetrics parser.
    let (status, om) = d.get(
        "/metrics",
        &[
            auth[0],
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        ],
    );
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"));
    let s = parse_exposition(&om, "openmetrics");
    assert!(sample(&s, "plimsoll_probe_success", &[("probe", "health")]).is_some());

    // The status page lists every probe with its last grade.
    let (status, page) = d.get("/", &auth);
    assert_eq!(status, 200);
    for needle in [
        "health",
        "refused",
        "unscheduled",
        "critical",
        "not run yet",
    ] {
        assert!(
            page.contains(needle),
            "{needle} missing from the status page"
        );
    }
    // Each run wrote its result document.
    let docs = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .count();
    assert!(docs >= 4, "{docs} result documents");
}

#[test]
fn an_overrunning_probe_is_skipped_not_overlapped() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "p.toml",
        &format!(
            r#"
[report]
dir = ""

[[target]]
name = "sample"
url = "{}"

[[probe]]
name = "slow"
kind = "load"
target = "sample"
schedule = {{ every = "500ms" }}
[probe.load]
concurrency = 1
duration = "1800ms"
[probe.load.request]
url = "/delay?ms=20"
"#,
            b.url
        ),
    );
    let d = Daemon::start(&cfg, &[]);
    let p = d.wait_for(Duration::from_secs(15), |p| {
        p[0]["runs"].as_u64() >= Some(2)
    });
    // Each 1.8 s run spans three or four 500 ms ticks: the ones it covers are skipped.
    let skipped = p[0]["skipped"].as_u64().unwrap();
    assert!(skipped >= 4, "{p:#?}");
    let (_, text) = d.get("/metrics", &[]);
    let s = parse_exposition(&text, "text");
    let counted = sample(
        &s,
        "plimsoll_probe_skipped_total",
        &[("probe", "slow"), ("reason", "overlap")],
    )
    .unwrap();
    assert!(counted >= skipped as f64, "{counted} < {skipped}");
}

/// Records which path each request of a two-path target asked for, in arrival order.
fn path_recorder() -> (u16, Arc<Mutex<Vec<char>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let port = raw_server(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        loop {
            let mut first = String::new();
            if r.read_line(&mut first).unwrap_or(0) == 0 {
                return;
            }
            if !read_head(&mut r) {
                return;
            }
            let which = if first.starts_with("GET /a") {
                'a'
            } else {
                'b'
            };
            seen2.lock().unwrap().push(which);
            std::thread::sleep(Duration::from_millis(5));
            if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    });
    (port, seen)
}

fn two_probes(port: u16, share: bool) -> String {
    let probe = |name: &str| {
        format!(
            r#"
[[probe]]
name = "{name}"
kind = "load"
target = "t"
share_target = {share}
schedule = {{ every = "700ms" }}
[probe.load]
concurrency = 1
duration = "600ms"
[probe.load.request]
url = "/{name}"
"#
        )
    };
    format!(
        "[report]\ndir = \"\"\n[[target]]\nname = \"t\"\nurl = \"http://127.0.0.1:{port}\"\n{}{}",
        probe("a"),
        probe("b")
    )
}

/// How often consecutive requests switch between the two probes.
fn switches(seen: &[char]) -> usize {
    seen.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn load_probes_of_one_target_take_turns_unless_they_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut counts = Vec::new();
    for share in [false, true] {
        let (port, seen) = path_recorder();
        let cfg = write(&dir, &format!("p{share}.toml"), &two_probes(port, share));
        let d = Daemon::start(&cfg, &[]);
        d.wait_for(Duration::from_secs(20), |p| {
            p.iter().all(|p| p["runs"].as_u64() >= Some(3))
        });
        drop(d);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.contains(&'a') && seen.contains(&'b'));
        counts.push((switches(&seen), seen.len()));
    }
    let (alone, n_alone) = counts[0];
    let (shared, n_shared) = counts[1];
    // Taking turns, the requests come in blocks, one per run (≥ 3 runs each).
    assert!(
        alone <= 16,
        "exclusive: {alone} switches in {n_alone} requests"
    );
    // Sharing, the two probes' requests interleave all the time.
    assert!(
        shared > 40,
        "shared: {shared} switches in {n_shared} requests"
    );
}

#[test]
fn sigterm_mid_run_exits_within_the_grace_period_and_keeps_the_result() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let cfg = write(
        &dir,
        "p.toml",
        &format!(
            r#"
[daemon]
grace_period = "1s"

[report]
dir = "{}"

[[target]]
name = "sample"
url = "{}"

[[probe]]
name = "long"
kind = "load"
target = "sample"
schedule = {{ every = "500ms" }}
[probe.load]
concurrency = 2
duration = "60s"
[probe.load.request]
url = "/delay?ms=5"
"#,
            results.display(),
            b.url
        ),
    );
    // systemd's side of the notify protocol: a datagram socket we read.
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = Daemon::start(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    d.wait_for(Duration::from_secs(10), |p| p[0]["running"] == true);
    // The first run starts soon after the daemon (not one interval later), so give the
    // watchdog pings below their time inside the run.
    std::thread::sleep(Duration::from_millis(1500));
    d.signal("-TERM");
    let t0 = Instant::now();
    let code = d.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "{}", d.log_text());
    // Grace (1 s) + stopping the run: well under the run's 60 s.
    assert!(took < Duration::from_secs(5), "{took:?}");

    let docs: Vec<_> = std::fs::read_dir(&results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(docs.len(), 1, "{docs:?}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&docs[0]).unwrap()).unwrap();
    assert!(r["stats"]["requests"].as_u64().unwrap() > 50, "{r:#}");
    assert!(r["notes"]
        .to_string()
        .contains("stopped before the plan ended"));

    let mut states = Vec::new();
    let mut buf = [0u8; 256];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        states.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let first = |s: &str| states.iter().position(|x| x == s);
    let ready = first("READY=1").expect("READY=1 sent");
    let stopping = first("STOPPING=1").expect("STOPPING=1 sent");
    assert!(ready < stopping, "{states:?}");
    // The watchdog wants a ping every 200 ms; the run lasted about 2 s.
    let pings = states.iter().filter(|s| *s == "WATCHDOG=1").count();
    assert!(pings >= 4, "{states:?}");
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let config = |name: &str, rate: &str| {
        format!(
            r#"
[report]
dir = ""
[baseline]
store = "{}"
[[target]]
name = "sample"
url = "{}"
[[probe]]
name = "{name}"
kind = "load"
target = "sample"
schedule = {{ every = "1s" }}
[probe.load]
phases = [{{ duration = "200ms", rate = {rate} }}]
[probe.load.request]
url = "/health"
"#,
            store.display(),
            b.url
        )
    };
    let path = write(&dir, "p.toml", &config("first", "10"));
    let d = Daemon::start(&path, &[]);
    d.wait_for(Duration::from_secs(10), |p| {
        p[0]["runs"].as_u64() >= Some(1)
    });

    // A broken file: the daemon says what is wrong and keeps running the old probes.
    std::fs::write(&path, config("second", "0")).unwrap();
    d.signal("-HUP");
    // The refusal and each problem are log lines of their own, written one after the other:
    // wait for both rather than read the log between them.
    let start = Instant::now();
    while !(d.log_text().contains("keeping the running one")
        && d.log_text()
            .contains("probe[0].load.phases[0].rate: must be greater than 0"))
    {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let runs_before = d.probes()[0]["runs"].as_u64().unwrap();
    // Judged against its (warming) baseline: the probe has regression gauges.
    let (_, text) = d.get("/metrics", &[]);
    assert!(regression_series(&text, "first") > 0, "{text}");
    let p = d.wait_for(Duration::from_secs(10), |p| {
        p[0]["runs"].as_u64() > Some(runs_before)
    });
    assert_eq!(p[0]["name"], "first");

    // A good file replaces the probes.
    std::fs::write(&path, config("second", "10")).unwrap();
    d.signal("-HUP");
    let p = d.wait_for(Duration::from_secs(10), |p| {
        p.len() == 1 && p[0]["name"] == "second" && p[0]["runs"].as_u64() >= Some(1)
    });
    assert_eq!(p[0]["last"]["grade"], "good");
    // The removed probe's last-run gauges are gone; its counters stay.
    let (_, text) = d.get("/metrics", &[]);
    assert!(!text.contains("plimsoll_probe_success{probe=\"first\"}"));
    assert!(text.contains("plimsoll_probe_runs_total{probe=\"first\""));
    // So are its regression gauges, while the new probe has its own.
    assert_eq!(regression_series(&text, "first"), 0, "{text}");
    assert!(regression_series(&text, "second") > 0, "{text}");
}

/// The regression gauges' series of a probe in an exposition.
fn regression_series(text: &str, probe: &str) -> usize {
    text.lines()
        .filter(|l| {
            (l.starts_with("plimsoll_regression") || l.starts_with("plimsoll_baseline_value"))
                && l.contains(&format!("probe=\"{probe}\""))
        })
        .count()
}

#[test]
fn demo_starts_the_backend_and_the_daemon_and_stops_both() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("STATE_DIRECTORY", state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut status_url = None;
    let mut backend_url = None;
    for line in lines.by_ref().map_while(Result::ok).take(10) {
        let url = line.split_whitespace().last().unwrap_or("").to_string();
        if line.contains("status page") {
            status_url = Some(url);
        } else if line.contains("sample backend") {
            backend_url = Some(url);
        } else if line.contains("probes ") && !line.contains("JSON") {
            assert!(
                line.contains("health") && line.contains("webhook-light"),
                "{line}"
            );
            break;
        }
    }
    let addr = status_url
        .expect("the demo prints its status page")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let backend = backend_url.expect("the demo prints the backend's URL");
    let backend_addr = backend
        .trim_start_matches("http://")
        .trim_end_matches("/health")
        .to_string();
    assert_eq!(http_get(&backend_addr, "/health", &[]).0, 200);

    // The health probe runs every 10 s; its first run is graded good.
    let start = Instant::now();
    loop {
        let (_, body) = http_get(&addr, "/api/v1/probes", &[]);
        let v: Value = serde_json::from_str(&body).unwrap();
        let health = v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "health")
            .unwrap()
            .clone();
        if !health["last"].is_null() {
            assert_eq!(health["last"]["grade"], "good", "{health:#}");
            break;
        }
        // The demo's nine probes of one target take turns, and every first run falls within
        // 30 s of the start: the health probe may wait behind all the others' first runs.
        assert!(start.elapsed() < Duration::from_secs(90), "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    // The backend went with it.
    assert!(TcpStream::connect(&backend_addr).is_err());
}

//! The binary's contract: exit codes by grade, every config problem reported with its path,
//! `load --json` printing the result document (DESIGN.md, "Command line").

mod common;

use std::process::Command;

use common::*;

fn plimsoll() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `validate` on `config`, which must fail with exit 3 and name every one of `expected`
/// (and that many problems in all); returns what it printed.
fn validate_names(config: &std::path::Path, expected: &[&str]) -> String {
    let out = plimsoll()
        .args(["validate", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    for e in expected {
        assert!(err.contains(e), "missing {e:?} in:\n{err}");
    }
    let count = format!("{} problem(s)", expected.len());
    assert!(err.contains(&count), "{err}");
    err
}

#[test]
fn validate_reports_every_problem_with_its_path_and_exits_3() {
    validate_names(
        std::path::Path::new("tests/data/config/many-problems.toml"),
        &[
        "target[0].url: unsupported scheme \"ftp\": use http or https (line 3)",
        "probe[0].load.phases[1].rate: must be greater than 0 (line 10)",
        "probe[0].load.request.url: unknown placeholder {{nope}}",
        "probe[1].load.timeout: durations are strings with a unit: write \"30s\" or \"30ms\" (line 20)",
        "probe[2].kind: unknown probe kind \"laod\" (known: load, race, benchmark, redis, pubsub, sql, capacity, fault) (line 26)",
        "probe[3].load.colour: unknown field `colour`",
        ],
    );
}

/// Regression (issue 11.5): a typo and a wrong type in the same probe table took two runs of
/// `validate` to find, because serde stops at the first error of a table.
#[test]
fn validate_reports_a_typo_and_a_wrong_type_of_one_table_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "c.toml",
        r#"[[probe]]
name = "a"
kind = "load"
[probe.load]
concurency = 5
timeout = "2s"
phases = [{ duration = "10s", rate = "ten" }, { duration = 5, rate = 1 }]
[probe.load.request]
url = "http://127.0.0.1:9/"
methd = "GET"

[[probe]]
name = 7
kind = "redis"
colour = "red"
[probe.redis]
url = "redis://127.0.0.1:6379"
"#,
    );
    let err = validate_names(
        &p,
        &[
            "probe[0].load.concurency: unknown field `concurency`: did you mean `concurrency`? (line 5)",
            "probe[0].load.phases[0].rate: expected a number, found the text \"ten\" (line 7)",
            "probe[0].load.phases[1].duration: durations are strings with a unit: write \"5s\" or \"5ms\" (line 7)",
            "probe[0].load.request.methd: unknown field `methd`: did you mean `method`? (line 10)",
            "probe[1].name: expected text in quotes, found the number `7` (line 13)",
            "probe[1].colour: unknown field `colour`",
        ],
    );
    assert!(!err.contains("missing field"), "{err}");
}

/// `validate --no-secrets` checks the shipped examples' structure on a machine without their
/// secrets (a CI lint); without the flag, an unset secret is named.
#[test]
fn shipped_configs_validate_without_their_secrets() {
    let secrets = [
        "TWILIO_AUTH_TOKEN",
        "PLIMSOLL_RACE_DATABASE_URL",
        "PLIMSOLL_REDIS_URL",
        "PLIMSOLL_SQL_DATABASE_URL",
    ];
    let mut unset_named = 0;
    for e in std::fs::read_dir("config/examples").unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let mut cmd = plimsoll();
        cmd.args(["validate", "--no-secrets", "--config"]).arg(&f);
        for s in secrets {
            cmd.env_remove(s);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = plimsoll();
        cmd.args(["validate", "--config"]).arg(&f);
        for s in secrets {
            cmd.env_remove(s);
        }
        let out = cmd.output().unwrap();
        if out.status.code() == Some(3) {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("is not set"), "{}: {err}", f.display());
            unset_named += 1;
        }
    }
    assert!(unset_named >= 1, "no example needs a secret");
}

/// A data file is found beside the configuration file, whatever the working directory.
#[test]
fn data_files_resolve_from_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/users.csv"), "email\na@b\n").unwrap();
    let p = write(
        &dir,
        "c.toml",
        r#"[[probe]]
name = "p"
kind = "load"
[probe.load]
concurrency = 1
[probe.load.data]
file = "data/users.csv"
[probe.load.request]
url = "http://127.0.0.1:9/{{email}}"
"#,
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let out = plimsoll()
        .current_dir(elsewhere.path())
        .args(["validate", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(dir.path().join("data/users.csv")).unwrap();
    let out = plimsoll()
        .current_dir(elsewhere.path())
        .args(["validate", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("probe[0].load.data.file"), "{err}");
}

#[test]
fn shipped_configs_validate() {
    for f in [
        "config/reference.toml",
        "config/examples/webhook-levels.toml",
        "config/examples/vendor-race.toml",
        "config/examples/benchmark.toml",
        "config/examples/call-states.toml",
        "config/examples/bounties-wallet.toml",
        "config/examples/redis-workload.toml",
        "config/examples/pubsub.toml",
        "config/examples/sql.toml",
        "config/examples/fault-proxy.toml",
        "config/examples/redis-outage.toml",
        "config/examples/postgres-restart.toml",
    ] {
        let out = plimsoll()
            .args(["validate", "--config", f])
            .env("TWILIO_AUTH_TOKEN", "t")
            .env(
                "PLIMSOLL_RACE_DATABASE_URL",
                "postgres://plimsoll@127.0.0.1:5432/orders",
            )
            .env("PLIMSOLL_REDIS_URL", "redis://127.0.0.1:6379")
            .env(
                "PLIMSOLL_SQL_DATABASE_URL",
                "postgres://plimsoll@127.0.0.1:5432/orders",
            )
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_demo_configuration_validates() {
    let text = plimsoll::cli::DEMO_CONFIG
        .replace("@BACKEND@", "http://127.0.0.1:8080")
        .replace("@BACKEND_ADDR@", "127.0.0.1:8080")
        .replace("@RESULTS@", "/tmp/plimsoll-demo-test");
    let cfg =
        plimsoll::config::load_str(&text, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.probe.len() >= 4);
    // Every probe of the demo is scheduled, and every probe kind appears in it, except the
    // kinds that measure a data store the demo does not start (it runs without Redis and
    // PostgreSQL); whether `pubsub` joins it over the backend's in-process fan-out is open.
    assert!(cfg.probe.iter().all(|p| p.schedule.is_some()));
    use plimsoll::config::Kind;
    let needs_a_store = [Kind::Redis, Kind::Pubsub, Kind::Sql];
    for kind in Kind::ALL {
        if needs_a_store.contains(kind) {
            continue;
        }
        assert!(
            cfg.probe.iter().any(|p| p.kind() == *kind),
            "the demo has no {kind} probe"
        );
    }
}

#[test]
fn syntax_errors_and_missing_files_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "bad.toml", "[[probe]]\nname = \"x\"\nkind =\n");
    let out = plimsoll()
        .args(["once", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(line 3)"));
    let out = plimsoll()
        .args(["once", "--config", "/nonexistent/plimsoll.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let out = plimsoll().args(["load"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "usage errors exit 3");
}

#[test]
fn environment_overrides_reach_sections_and_array_entries() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "c.toml",
        "[[probe]]\nname = \"p\"\nkind = \"load\"\n[probe.load]\nconcurrency = 1\n[probe.load.request]\nurl = \"http://127.0.0.1:9/\"\n",
    );
    let out = plimsoll()
        .args(["validate", "--config"])
        .arg(&p)
        .env("PLIMSOLL__PROBE__0__LOAD__CONCURRENCY", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("probe[0].load.concurrency: must be greater than 0"));
    let out = plimsoll()
        .args(["validate", "--config"])
        .arg(&p)
        .env("PLIMSOLL__REPORT__COLOUR", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report.colour: unknown field"));
}

fn once_config(url: &str, dir: &str) -> String {
    format!(
        r#"
[report]
dir = "{dir}"

[[target]]
name = "t"
url = "{url}"

[[probe]]
name = "ok-probe"
kind = "load"
target = "t"
[probe.load]
concurrency = 2
duration = "500ms"
[probe.load.request]
url = "/"

[[probe]]
name = "slow-probe"
kind = "load"
target = "t"
thresholds = {{ p99_ms = {{ good = 0.001, warning = 100000 }} }}
[probe.load]
concurrency = 2
duration = "500ms"
[probe.load.request]
url = "/"
"#
    )
}

#[test]
fn once_exits_by_the_worst_grade_and_writes_results() {
    let port = canned_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let cfg = write(
        &dir,
        "c.toml",
        &once_config(
            &format!("http://127.0.0.1:{port}"),
            results.to_str().unwrap(),
        ),
    );
    // The good probe alone: exit 0 (the canned server is far above 100 rps but p99 has no
    // excellent band, so the grade is good), one document written.
    let out = plimsoll()
        .args(["once", "--config"])
        .arg(&cfg)
        .args(["--probe", "ok-probe"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ok-probe") && !table.contains("slow-probe"),
        "{table}"
    );
    let docs: Vec<_> = std::fs::read_dir(&results).unwrap().collect();
    assert_eq!(docs.len(), 1);

    // Both: the p99 threshold makes the second a warning, so exit 1; --out gets JSON lines.
    let out_file = dir.path().join("out.jsonl");
    let out = plimsoll()
        .args(["once", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["schema"], "plimsoll.result/v1");
    assert_eq!(lines[1]["probe"], "slow-probe");
    assert_eq!(lines[1]["grade"], "warning");

    // A dead target: critical, exit 2.
    let dead = write(
        &dir,
        "dead.toml",
        &once_config(&format!("http://127.0.0.1:{}", closed_port()), ""),
    );
    let out = plimsoll()
        .args(["once", "--config"])
        .arg(&dead)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("connect error"));

    let out = plimsoll()
        .args(["once", "--config"])
        .arg(&cfg)
        .args(["--probe", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn load_json_prints_the_result_document() {
    let port = canned_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let out = plimsoll()
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/x?y=1"),
            "--rate",
            "50",
            "--duration",
            "1s",
            "--json",
        ])
        .args([
            "--method",
            "POST",
            "--header",
            "X-Test: 1",
            "--body",
            "hello",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], "plimsoll.result/v1");
    assert_eq!(doc["kind"], "load");
    assert_eq!(doc["stats"]["requests"], 50);
    assert_eq!(doc["stats"]["offered_rps"], 50.0);
    assert!(doc["stats"]["endpoints"]["/x"]["requests"] == 50);
    for k in ["min", "mean", "p50", "p90", "p95", "p99", "p999", "max"] {
        assert!(doc["stats"]["latency_ms"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    // The summary went to stderr, so stdout stays pure JSON.
    assert!(String::from_utf8_lossy(&out.stderr).contains("p99 ms"));

    let out = plimsoll()
        .args(["load", "ftp://127.0.0.1/", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn unreachable_network_is_a_connect_error() {
    // A network namespace of our own with loopback down: 127.0.0.1 is unreachable there and
    // no packet can leave it.
    if !Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: this machine does not allow `unshare -n` (needs root)");
        return;
    }
    let out = Command::new("unshare")
        .args([
            "-n",
            env!("CARGO_BIN_EXE_plimsoll"),
            "load",
            "http://127.0.0.1:9/",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["stats"]["errors_by_kind"]["connect"], 10);
    let sample = doc["stats"]["error_samples"]["connect"].as_str().unwrap();
    assert!(sample.contains("unreachable"), "{sample}");
}

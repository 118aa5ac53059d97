//! `plimsoll import artillery`: seed 002's scripts (tests/data/artillery/) convert, the output
//! validates, what could not be converted is listed on stderr with its YAML path, and a
//! converted flow runs against the sample backend.

mod common;

use std::process::{Command, Output};

use common::{run_toml, Backend};

fn import(file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["import", "artillery", file])
        .output()
        .unwrap()
}

/// Converts a fixture; returns the configuration text and the stderr listing.
fn convert(file: &str) -> (String, String) {
    let out = import(file);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn validated(text: &str) -> plimsoll::config::Config {
    plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_or_else(|e| panic!("the converted configuration does not validate:\n{e}\n{text}"))
}

#[test]
fn seed_002_load_script_converts_and_lists_what_it_dropped() {
    let (text, stderr) = convert("tests/data/artillery/artillery-load-test.yml");
    let cfg = validated(&text);
    assert_eq!(cfg.target[0].url, "http://localhost:3001");
    let plimsoll::config::ProbeSpec::Load(load) = &cfg.probe[0].spec else {
        panic!("not a load probe")
    };
    let rates: Vec<f64> = load.phases.iter().map(|p| p.rate.unwrap()).collect();
    assert_eq!(rates, [10.0, 50.0, 100.0, 10.0]);
    assert_eq!(load.timeout.as_duration().as_secs(), 30);
    let weights: Vec<u32> = load.scenarios.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [40, 20, 20, 10, 10]);
    let core = &load.scenarios[0];
    assert_eq!(core.name.as_deref(), Some("Core API Flow"));
    assert_eq!(core.steps[1].capture[0].json.as_deref(), Some("/token"));
    assert_eq!(core.steps[1].capture[0].var, "authToken");
    assert_eq!(core.steps[2].when.as_deref(), Some("authToken"));
    assert_eq!(
        core.steps[2].expect.as_ref().unwrap().status,
        Some(vec![200, 401])
    );
    assert_eq!(
        core.steps[3].request.url,
        "/api/bounties?limit=20&status=open"
    );
    assert!(load.vars.contains_key("testEmail"));
    for needle in [
        "config.processor: processor functions",
        "config.plugins.metrics-by-endpoint",
        "config.plugins.expect",
        "scenarios[3].flow[0].get: variable \"adminToken\" is used but never set",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} not listed in:\n{stderr}"
        );
    }
    // The listing is also kept in the file, as comments.
    assert!(text.contains("#   config.processor:"));
}

#[test]
fn seed_002_stress_script_converts_its_ramps() {
    let (text, stderr) = convert("tests/data/artillery/artillery-stress-test.yml");
    assert!(stderr.is_empty(), "nothing should be dropped: {stderr}");
    let cfg = validated(&text);
    let plimsoll::config::ProbeSpec::Load(load) = &cfg.probe[0].spec else {
        panic!("not a load probe")
    };
    let ramps: Vec<(f64, Option<f64>)> = load
        .phases
        .iter()
        .map(|p| (p.rate.unwrap(), p.ramp_to))
        .collect();
    assert_eq!(
        ramps,
        [
            (50.0, Some(100.0)),
            (100.0, Some(200.0)),
            (200.0, Some(500.0)),
            (500.0, Some(1000.0)),
            (1000.0, None)
        ]
    );
    assert_eq!(load.phases[4].name.as_deref(), Some("Maximum load"));
}

#[test]
fn a_converted_flow_runs_against_the_sample_backend() {
    let b = Backend::start();
    let (text, stderr) = convert("tests/data/artillery/call-states.yml");
    for needle in [
        "scenarios[0].flow[1].post.afterResponse: hooks",
        "scenarios[0].flow[6].loop: loops over arrays",
        "scenarios[0].flow[0].post.expect[3].contentType",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} not listed in:\n{stderr}"
        );
    }
    let text = text.replace("http://127.0.0.1:1", &b.url);
    let r = run_toml(&text);
    let s = r.stats.unwrap();
    assert_eq!(s.errors, 0, "{:?}\n{text}", s.error_samples);
    assert_eq!(s.iterations.completed, 20);
    // create, ring, answer, complete, and the loop's two reads.
    assert_eq!(s.requests, 20 * 6);
    assert_eq!(s.endpoints["/api/calls/{id}"].requests, 40);
}

#[test]
fn unreadable_or_foreign_files_are_usage_errors() {
    let out = import("tests/data/artillery/no-such-file.yml");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let out = import("Cargo.toml");
    assert_eq!(out.status.code(), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k8s.yml");
    std::fs::write(&p, "apiVersion: v1\nkind: Service\n").unwrap();
    let out = import(p.to_str().unwrap());
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `scenarios` list"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

/// Imports a script written to a temporary file; returns exit code, stdout and stderr.
fn import_text(yaml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("script.yml");
    std::fs::write(&p, yaml).unwrap();
    let out = import(p.to_str().unwrap());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regression (issue 10.7): `arrivalRate: -5` became a rate of 0.1 silently.
#[test]
fn negative_and_absurd_artillery_values_are_refused_by_yaml_path() {
    let (code, stdout, stderr) = import_text(
        "config:\n  target: \"http://127.0.0.1:9\"\n  phases:\n    - { duration: 60, arrivalRate: -5 }\n    - { duration: 10, arrivalRate: 1e12 }\n    - { duration: -3, arrivalRate: 5 }\n    - { duration: 10, arrivalRate: 0, rampTo: -1 }\nscenarios:\n  - flow:\n      - get: { url: \"/\" }\n      - think: -2\n",
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for expected in [
        "config.phases[0].arrivalRate: must be 0 or greater (found -5)",
        "config.phases[1].arrivalRate: must be at most 100000 per second (found 1000000000000)",
        "config.phases[2].duration: must be 0 or greater (found -3)",
        "config.phases[3].rampTo: must be 0 or greater (found -1)",
        "scenarios[0].flow[1].think: must be 0 or greater (found -2)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

/// Regression (issue 10.7): the importer printed a configuration that `validate` refuses,
/// and exited 0.
#[test]
fn a_conversion_that_would_not_validate_is_refused_with_its_problems() {
    let (code, stdout, stderr) = import_text(
        "config:\n  target: \"ftp://127.0.0.1:9\"\n  phases:\n    - { duration: 10, arrivalRate: 5 }\nscenarios:\n  - flow:\n      - get: { url: \"/search?q=<x>\" }\n",
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("the converted configuration does not validate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("target[0].url: unsupported scheme \"ftp\""),
        "{stderr}"
    );
}

//! Flows against the real sample backend: weighted scenarios whose steps capture values from
//! responses for later steps, check what responses show, skip on `if`, repeat on `loop`, and
//! take variables from a data file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{run_toml, Backend};
use plimsoll::report::Stats;

/// The head of a config: the sample backend as target, a load probe, and `load` settings.
fn config(url: &str, load: &str) -> String {
    format!(
        r#"
[[target]]
name = "sample"
url = "{url}"

[[probe]]
name = "flow"
kind = "load"
target = "sample"

[probe.load]
{load}
"#
    )
}

fn stats(text: &str) -> Stats {
    run_toml(text).stats.expect("a load result has stats")
}

/// One request without a body on a fresh connection; the status and the response body.
fn send(base: &str, method: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

fn get(base: &str, path: &str) -> String {
    send(base, "GET", path).1
}

fn call(base: &str, id: u64) -> serde_json::Value {
    serde_json::from_str(&get(base, &format!("/api/calls/{id}"))).unwrap()
}

const PROGRESSION: &str = r#"
[[probe.load.scenarios]]
name = "call-lifecycle"
[[probe.load.scenarios.steps]]
name = "create-call"
request = { method = "POST", url = "/api/calls", json = { to = "{{phone}}" } }
capture = [ { json = "/id", as = "call_id" }, { header = "location", as = "where" } ]
expect = { status = [201], json = [ { pointer = "/state", equals = "INITIATED" } ], header = "content-type" }
[[probe.load.scenarios.steps]]
request = { method = "POST", url = "/api/calls/{{call_id}}/ring" }
expect = { json = [ { pointer = "/state", equals = "RINGING" } ] }
[[probe.load.scenarios.steps]]
request = { method = "POST", url = "/api/calls/{{call_id}}/answer" }
expect = { json = [ { pointer = "/state", equals = "ANSWERED" } ] }
[[probe.load.scenarios.steps]]
request = { method = "POST", url = "/api/calls/{{call_id}}/complete" }
capture = [ { regex = "state\":\"(\\w+)", as = "state" } ]
expect = { contains = "COMPLETED" }
[[probe.load.scenarios.steps]]
request = { url = "/api/calls/{{call_id}}" }
expect = { json = [ { pointer = "/state", equals = "COMPLETED" } ] }
"#;

fn data_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn captured_ids_carry_every_call_to_completed() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = data_file(&dir, "callers.csv", "phone\n+1555000\n");
    let load = format!(
        "concurrency = 4\niterations = 10\nworkers = 2\n[probe.load.data]\nfile = {csv:?}\n{PROGRESSION}"
    );
    let s = stats(&config(&b.url, &load));
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
    assert_eq!((s.iterations.completed, s.iterations.failed), (40, 0));
    assert_eq!(s.endpoints["create-call"].requests, 40);
    // Unnamed steps are labelled by their path with the id collapsed.
    for label in [
        "/api/calls/{id}/ring",
        "/api/calls/{id}/answer",
        "/api/calls/{id}/complete",
        "/api/calls/{id}",
    ] {
        assert_eq!(s.endpoints[label].requests, 40, "{label}");
    }
    for id in 1..=40 {
        assert_eq!(call(&b.url, id)["state"], "COMPLETED", "call {id}");
    }
}

#[test]
fn the_open_model_runs_flows_too() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = data_file(&dir, "callers.csv", "phone\n+1555000\n");
    let load = format!(
        "phases = [ {{ duration = \"1s\", rate = 40 }} ]\n[probe.load.data]\nfile = {csv:?}\n{PROGRESSION}"
    );
    let s = stats(&config(&b.url, &load));
    assert_eq!(s.iterations.planned, Some(40));
    assert_eq!(
        (s.iterations.completed, s.errors),
        (40, 0),
        "{:?}",
        s.error_samples
    );
    assert_eq!(s.requests, 200);
}

#[test]
fn headers_are_captured_and_checked_over_http2_too() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = data_file(&dir, "callers.csv", "phone\n+1555000\n");
    let load = format!(
        "concurrency = 2\niterations = 5\n[probe.load.data]\nfile = {csv:?}\n{PROGRESSION}\n\
         [[probe.load.scenarios.steps]]\nname = \"where\"\nrequest = {{ url = \"{{{{where}}}}\" }}\n\
         expect = {{ json = [ {{ pointer = \"/state\", equals = \"COMPLETED\" }} ] }}\n"
    );
    // The same flow with the target spoken to in HTTP/2 (prior knowledge): the head of an
    // HTTP/2 response is kept in the same text form as an HTTP/1.1 one.
    let text = config(&b.url, &load).replace("url = \"http", "http = \"2\"\nurl = \"http");
    let s = stats(&text);
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
    assert_eq!(s.iterations.completed, 10);
    // The captured Location header was requested as it came.
    assert_eq!(s.endpoints["where"].requests, 10);
}

#[test]
fn data_rows_are_taken_in_file_order() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = data_file(&dir, "callers.csv", "phone,name\nA1,x\n\"B,2\",y\nC3,z\n");
    let load = format!(
        r#"concurrency = 1
iterations = 7
workers = 1
[probe.load.data]
file = {csv:?}
order = "sequential"
[[probe.load.scenarios]]
[[probe.load.scenarios.steps]]
request = {{ method = "POST", url = "/api/calls", json = {{ to = "{{{{phone}}}}-{{{{name}}}}" }} }}
"#
    );
    let s = stats(&config(&b.url, &load));
    assert_eq!(s.iterations.completed, 7, "{:?}", s.error_samples);
    let seen: Vec<String> = (1..=7)
        .map(|id| call(&b.url, id)["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        ["A1-x", "B,2-y", "C3-z", "A1-x", "B,2-y", "C3-z", "A1-x"]
    );
}

#[test]
fn a_failed_expectation_is_an_expect_error_and_ends_the_iteration() {
    let b = Backend::start();
    let load = r#"concurrency = 2
iterations = 5
[[probe.load.scenarios]]
[[probe.load.scenarios.steps]]
name = "create"
request = { method = "POST", url = "/api/calls" }
capture = [ { json = "/id", as = "id" } ]
[[probe.load.scenarios.steps]]
name = "ring"
request = { method = "POST", url = "/api/calls/{{id}}/ring" }
expect = { json = [ { pointer = "/state", equals = "ANSWERED" } ] }
[[probe.load.scenarios.steps]]
name = "never"
request = { method = "POST", url = "/api/calls/{{id}}/answer" }
"#;
    let s = stats(&config(&b.url, load));
    assert_eq!((s.iterations.failed, s.iterations.completed), (10, 0));
    assert_eq!(s.endpoints["create"].errors, 0);
    assert_eq!(s.endpoints["ring"].errors_by_kind["expect"], 10);
    assert_eq!(s.errors_by_kind["expect"], 10);
    assert!(
        !s.endpoints.contains_key("never") || s.endpoints["never"].requests == 0,
        "a step after a failed expectation was sent"
    );
    let msg = &s.error_samples["expect"];
    assert!(
        msg.contains(r#"ring: expected /state = "ANSWERED", got "RINGING""#),
        "{msg}"
    );
    // Nothing was answered: the backend never saw the third step.
    assert_eq!(call(&b.url, 1)["state"], "RINGING");
}

#[test]
fn a_capture_that_finds_nothing_is_an_expect_error() {
    let b = Backend::start();
    let load = r#"concurrency = 1
iterations = 3
[[probe.load.scenarios]]
[[probe.load.scenarios.steps]]
name = "items"
request = { url = "/api/items" }
capture = [ { json = "/0/nope", as = "x" } ]
[[probe.load.scenarios.steps]]
name = "after"
request = { url = "/health?{{x}}" }
"#;
    let s = stats(&config(&b.url, load));
    assert_eq!(s.endpoints["items"].errors_by_kind["expect"], 3);
    assert!(s.error_samples["expect"].contains("capture json /0/nope"));
    assert!(!s.endpoints.contains_key("after") || s.endpoints["after"].requests == 0);
}

#[test]
fn weights_pick_scenarios_in_proportion() {
    let b = Backend::start();
    let load = r#"concurrency = 4
iterations = 150
[[probe.load.scenarios]]
weight = 3
steps = [ { name = "heavy", request = { url = "/health" } } ]
[[probe.load.scenarios]]
steps = [ { name = "light", request = { url = "/api/items" } } ]
"#;
    let s = stats(&config(&b.url, load));
    let (h, l) = (s.endpoints["heavy"].requests, s.endpoints["light"].requests);
    assert_eq!(h + l, 600);
    // With 600 draws at p = 0.75 the standard deviation of the share is 1.8 points, so
    // ±8 points is more than 4 standard deviations: a false failure about once in 10^5 runs.
    let share = h as f64 / 600.0;
    assert!((share - 0.75).abs() < 0.08, "heavy share {share}");
}

#[test]
fn if_skips_a_step_and_loop_repeats_one() {
    let b = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = data_file(&dir, "tokens.csv", "token\nabc\n\nxyz\n\"\"\n");
    let load = format!(
        r#"concurrency = 1
iterations = 8
workers = 1
[probe.load.data]
file = {csv:?}
[[probe.load.scenarios]]
[[probe.load.scenarios.steps]]
name = "with-token"
if = "token"
request = {{ url = "/health", headers = {{ authorization = "Bearer {{{{token}}}}" }} }}
[[probe.load.scenarios.steps]]
name = "poll"
loop = 3
think = "1ms"
request = {{ url = "/api/items/1" }}
"#
    );
    let s = stats(&config(&b.url, &load));
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
    // Rows abc, xyz, "" (the blank line is no row), taken in turn over 8 iterations: the
    // empty token skips the step twice.
    assert_eq!(s.endpoints["with-token"].requests, 6);
    assert_eq!(s.endpoints["poll"].requests, 24);
}

#[test]
fn the_call_state_api_allows_only_the_next_state() {
    let b = Backend::start();
    let (status, body) = send(&b.url, "POST", "/api/calls");
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""state":"INITIATED""#), "{body}");
    assert_eq!(send(&b.url, "POST", "/api/calls/1/answer").0, 409);
    assert_eq!(send(&b.url, "POST", "/api/calls/1/ring").0, 200);
    assert_eq!(send(&b.url, "POST", "/api/calls/1/ring").0, 409);
    assert_eq!(send(&b.url, "POST", "/api/calls/1/answer").0, 200);
    let (status, body) = send(&b.url, "POST", "/api/calls/1/complete");
    assert_eq!((status, body.contains("COMPLETED")), (200, true), "{body}");
    assert_eq!(send(&b.url, "POST", "/api/calls/1/complete").0, 409);
    assert_eq!(send(&b.url, "POST", "/api/calls/99/ring").0, 404);
    assert_eq!(send(&b.url, "GET", "/api/calls/99").0, 404);
    assert_eq!(send(&b.url, "GET", "/api/calls/1/ring").0, 405);
    assert_eq!(send(&b.url, "POST", "/api/calls/1/hang-up").0, 404);
}

fn problems(load: &str) -> Vec<String> {
    let text = config("http://127.0.0.1:1", load);
    match plimsoll::config::load_str(&text, std::iter::empty()) {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect()
        }
    }
}

#[test]
fn validation_names_the_exact_path() {
    let errs = problems(
        r#"concurrency = 1
[[probe.load.scenarios]]
steps = [ { request = { url = "/a" } } ]
[[probe.load.scenarios]]
weight = 0
[[probe.load.scenarios.steps]]
request = { url = "/calls/{{call_id}}" }
[[probe.load.scenarios.steps]]
if = "nothing"
request = { url = "/b" }
[[probe.load.scenarios.steps]]
request = { url = "/c" }
capture = [ { json = "id", as = "call_id" }, { regex = "(", as = "r" }, { json = "/x", header = "h", as = "y" } ]
expect = { status = [99], json = [ { pointer = "state" } ] }
"#,
    );
    let want = [
        "probe[0].load.scenarios[1].weight: must be greater than 0",
        "probe[0].load.scenarios[1].steps[0].request.url: unknown placeholder {{call_id}}",
        "probe[0].load.scenarios[1].steps[1].if: unknown variable \"nothing\"",
        "probe[0].load.scenarios[1].steps[2].capture[0].json: must start with \"/\"",
        "probe[0].load.scenarios[1].steps[2].capture[1].regex: invalid regex",
        "probe[0].load.scenarios[1].steps[2].capture[2]: give exactly one of",
        "probe[0].load.scenarios[1].steps[2].expect.status: 99 is not an HTTP status",
        "probe[0].load.scenarios[1].steps[2].expect.json[0].pointer: must start with \"/\"",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");

    let errs = problems(
        "concurrency = 1\nrequest = { url = \"/a\" }\n[[probe.load.scenarios]]\nsteps = [ { request = { url = \"/a\" } } ]\n",
    );
    assert!(errs[0].contains("exclude each other"), "{errs:?}");
    let errs = problems(
        "concurrency = 1\n[probe.load.data]\nfile = \"/nonexistent/users.csv\"\n[[probe.load.scenarios]]\nsteps = [ { request = { url = \"/a\" } } ]\n",
    );
    assert!(
        errs[0].starts_with("probe[0].load.data.file: cannot read"),
        "{errs:?}"
    );
}

//! Bad targets become counted errors of a named kind, the run completes, and the summary says
//! what happened (issue 2, "Bad input").

mod common;

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use common::*;
use plimsoll::verdict::Grade;

fn closed_model(url: &str, extra: &str) -> String {
    format!(
        r#"
[[probe]]
name = "bad"
kind = "load"
[probe.load]
concurrency = 2
duration = "1s"
timeout = "300ms"
{extra}
[probe.load.request]
url = "{url}"
"#
    )
}

fn errors_of(r: &plimsoll::report::ProbeResult, kind: &str) -> u64 {
    r.stats
        .as_ref()
        .unwrap()
        .errors_by_kind
        .get(kind)
        .copied()
        .unwrap_or(0)
}

#[test]
fn refused_connection_is_a_connect_error() {
    let port = closed_port();
    let r = run_toml(&closed_model(&format!("http://127.0.0.1:{port}/"), ""));
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests > 0);
    assert_eq!(
        errors_of(&r, "connect"),
        s.requests,
        "{:?}",
        s.errors_by_kind
    );
    assert!(
        s.error_samples["connect"].contains("refused"),
        "{:?}",
        s.error_samples
    );
    assert_eq!(r.grade, Grade::Critical);
    // The closed model backs off after a failed connect instead of spinning: with 2 users for
    // 1 s that is at most ~200 attempts, not hundreds of thousands.
    assert!(s.requests < 400, "{} connection attempts", s.requests);
}

#[test]
fn tls_failure_is_a_tls_error() {
    // A plain-HTTP server answering a TLS ClientHello with HTTP text.
    let port = raw_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        drain(s);
    });
    let r = run_toml(&closed_model(&format!("https://127.0.0.1:{port}/"), ""));
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests > 0);
    assert_eq!(errors_of(&r, "tls"), s.requests, "{:?}", s.errors_by_kind);
    assert_eq!(r.grade, Grade::Critical);
}

#[test]
fn a_response_that_never_ends_times_out() {
    // Headers, then a trickle of chunks forever.
    let port = raw_server(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        if !read_head(&mut r) {
            return;
        }
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..600 {
            if w.write_all(b"1\r\nx\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let started = Instant::now();
    let r = run_toml(&closed_model(&format!("http://127.0.0.1:{port}/"), ""));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run must end on time"
    );
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests >= 2);
    assert_eq!(
        errors_of(&r, "timeout"),
        s.requests,
        "{:?}",
        s.errors_by_kind
    );
    // Timed-out requests count with their full wait in the failed requests' latency, apart from
    // the successful ones' headline (there are none here).
    let failed = s
        .failed_latency_ms
        .as_ref()
        .expect("failed requests' latency");
    assert!(failed.p50 >= 290.0, "{failed:?}");
}

#[test]
fn a_100_mb_body_is_a_body_error_without_reading_it_all() {
    let port = raw_server(|s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        while read_head(&mut r) {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n");
            let chunk = vec![b'z'; 64 * 1024];
            for _ in 0..1600 {
                if w.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    });
    let text = closed_model(
        &format!("http://127.0.0.1:{port}/"),
        "max_body_bytes = 1048576",
    )
    .replace("timeout = \"300ms\"", "timeout = \"5s\"");
    let r = run_toml(&text);
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests > 0);
    assert_eq!(errors_of(&r, "body"), s.requests, "{:?}", s.errors_by_kind);
    assert!(
        s.error_samples["body"].contains("limit"),
        "{:?}",
        s.error_samples
    );
    // Reading stops at the limit: well under 100 MB per request was taken in.
    assert!(
        s.bytes_received <= s.requests * (1048576 + 256 * 1024),
        "{}",
        s.bytes_received
    );
}

#[test]
fn malformed_http_is_a_protocol_error() {
    let port = canned_server(b"this is not HTTP at all\r\n\r\n");
    let r = run_toml(&closed_model(&format!("http://127.0.0.1:{port}/"), ""));
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests > 0);
    assert_eq!(
        errors_of(&r, "protocol"),
        s.requests,
        "{:?}",
        s.errors_by_kind
    );
    assert_eq!(r.grade, Grade::Critical);
}

#[test]
fn error_statuses_are_status_errors_and_listed_statuses_are_not() {
    let port = canned_server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    let url = format!("http://127.0.0.1:{port}/");
    let r = run_toml(&closed_model(&url, ""));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(errors_of(&r, "status"), s.requests);
    assert_eq!(s.status_classes.get("5xx"), Some(&s.requests));
    assert!(s.error_samples["status"].contains("503"));

    let text = closed_model(&url, "").replace(
        "[probe.load.request]\n",
        "[probe.load.request]\nexpect_status = [503]\n",
    );
    let r = run_toml(&text);
    assert_eq!(r.stats.as_ref().unwrap().errors, 0);
}

#[test]
fn a_dead_target_in_the_open_model_keeps_the_schedule() {
    // Every arrival still happens, each one a counted error; nothing waits for the dead target.
    let port = closed_port();
    let text = format!(
        r#"
[[probe]]
name = "dead"
kind = "load"
[probe.load]
phases = [{{ duration = "1s", rate = 200 }}]
timeout = "200ms"
[probe.load.request]
url = "http://127.0.0.1:{port}/"
"#
    );
    let r = run_toml(&text);
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.iterations.planned, Some(200));
    assert_eq!(s.requests, 200);
    assert_eq!(errors_of(&r, "connect"), 200);
    assert!(r.duration_s >= 0.99, "{}", r.duration_s);
}

//! Seed 003's pub/sub delivery over WebSocket, against the sample backend's `/ws/events`
//! (in-process fan-out, or fed by a real Redis started on 127.0.0.1): every message arrives in
//! the normal case, and a dropped or doubled delivery is caught (issue 4). Also the backend's
//! PostgreSQL reporting endpoint.

mod common;

use std::io::{Read, Write};

use common::postgres::Postgres;
use common::redis::Redis;
use common::{closed_port, run_toml, Backend};
use plimsoll::report::{ProbeResult, PubsubStats};
use plimsoll::verdict::Grade;

/// A pub/sub probe against the backend; `ws_query` goes on the WebSocket URL.
fn probe(backend: &str, ws_query: &str, sizing: &str, publish: &str) -> String {
    let ws = backend.replacen("http://", "ws://", 1);
    format!(
        r#"
[[probe]]
name = "events"
kind = "pubsub"
[probe.pubsub]
url = "{ws}/ws/events{ws_query}"
{sizing}
warmup = "100ms"
grace = "1s"
{publish}
"#
    )
}

fn http_publish(backend: &str) -> String {
    format!("publish = \"http\"\npublish_url = \"{backend}/events\"")
}

fn pubsub_of(r: &ProbeResult) -> &PubsubStats {
    r.pubsub()
        .unwrap_or_else(|| panic!("no pubsub block: {}", r.to_json_pretty()))
}

fn report(what: &str, p: &PubsubStats) {
    eprintln!(
        "{what}: published {}, delivered {}/{} ({}), lost {}, duplicates {}, out of order {}, \
         latency p50 {:.3} ms p95 {:.3} ms p99 {:.3} ms",
        p.published,
        p.delivered,
        p.expected_deliveries,
        p.delivery_ratio,
        p.lost,
        p.duplicates,
        p.out_of_order,
        p.latency_ms.p50,
        p.latency_ms.p95,
        p.latency_ms.p99
    );
}

#[test]
fn every_message_reaches_every_subscriber_over_http_publishing() {
    let backend = Backend::start();
    let r = run_toml(&probe(
        &backend.url,
        "",
        "subscribers = 5\nrate = 200\nduration = \"1s\"\npublishers = 2",
        &http_publish(&backend.url),
    ));
    let p = pubsub_of(&r);
    report("http", p);
    assert_eq!(p.connected, 5);
    assert_eq!(p.published, 200, "{}", r.to_json_pretty());
    assert_eq!(p.expected_deliveries, 1000);
    assert_eq!(p.delivered, 1000);
    assert_eq!(p.delivery_ratio, 1.0);
    assert_eq!(
        (p.lost, p.duplicates, p.unexpected, p.foreign),
        (0, 0, 0, 0)
    );
    assert!(p.per_subscriber.iter().all(|s| s.delivered == 200));
    assert!(p.latency_ms.p50 > 0.0 && p.latency_ms.p99 < 1000.0);
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.requests, 200);
    assert_eq!(s.errors, 0);
    assert!(r.grade <= Grade::Warning, "{}", r.to_json_pretty());
}

#[test]
fn a_dropped_delivery_is_detected() {
    let backend = Backend::start();
    // The backend skips the 40th event on this subscriber's connection.
    let r = run_toml(&probe(
        &backend.url,
        "?drop_every=40",
        "subscribers = 1\nrate = 100\nduration = \"500ms\"",
        &http_publish(&backend.url),
    ));
    let p = pubsub_of(&r);
    report("drop", p);
    assert_eq!(p.published, 50);
    assert_eq!(p.lost, 1, "{}", r.to_json_pretty());
    assert_eq!(p.delivered, 49);
    assert!(p.delivery_ratio < 1.0);
    assert_eq!(p.per_subscriber[0].lost, 1);
    assert_eq!(p.duplicates, 0);
    let t = r
        .thresholds
        .iter()
        .find(|t| t.metric == "delivery_ratio")
        .unwrap();
    assert!(t.grade >= Grade::Warning, "2 % lost: {t:?}");
}

#[test]
fn doubled_deliveries_are_counted_as_duplicates() {
    let backend = Backend::start();
    let r = run_toml(&probe(
        &backend.url,
        "?duplicate_every=10",
        "subscribers = 2\nrate = 100\nduration = \"500ms\"",
        &http_publish(&backend.url),
    ));
    let p = pubsub_of(&r);
    report("duplicates", p);
    assert_eq!(p.duplicates, 10, "{}", r.to_json_pretty());
    assert_eq!(p.delivered, 100);
    assert_eq!(p.lost, 0);
    assert_eq!(r.grade, Grade::Critical, "one duplicate in ten deliveries");
}

#[test]
fn redis_publish_reaches_websocket_subscribers() {
    let redis = Redis::start();
    let backend = Backend::start_with(&["--redis-url", &redis.url]);
    let publish = format!(
        "publish = \"redis\"\nredis_url = \"{}\"\nchannel = \"events\"",
        redis.url
    );
    let r = run_toml(&probe(
        &backend.url,
        "",
        "subscribers = 4\nrate = 200\nduration = \"1s\"",
        &publish,
    ));
    let p = pubsub_of(&r);
    report("redis", p);
    assert_eq!(p.published, 200, "{}", r.to_json_pretty());
    assert_eq!(p.delivered, 800);
    assert_eq!(p.lost, 0);
    // Through the backend's HTTP route too, which publishes on the same channel.
    let r = run_toml(&probe(
        &backend.url,
        "",
        "subscribers = 2\nrate = 50\nduration = \"500ms\"",
        &http_publish(&backend.url),
    ));
    assert_eq!(pubsub_of(&r).delivered, 50, "{}", r.to_json_pretty());
}

#[test]
fn unreachable_subscribers_grade_critical() {
    let backend = Backend::start();
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let r = run_toml(&probe(
        &dead,
        "",
        "subscribers = 3\nrate = 20\nduration = \"200ms\"",
        &http_publish(&backend.url),
    ));
    let p = pubsub_of(&r);
    assert_eq!(p.connected, 0);
    assert_eq!(p.delivered, 0);
    assert_eq!(p.lost, p.expected_deliveries);
    assert!(p
        .subscriber_error
        .as_deref()
        .unwrap_or("")
        .contains("connect"));
    assert_eq!(r.grade, Grade::Critical);
}

#[test]
fn pubsub_configuration_errors_name_their_paths() {
    let text = r#"
[[probe]]
name = "p"
kind = "pubsub"
[probe.pubsub]
url = "http://127.0.0.1/ws"
subscribers = 0
publish = "redis"
"#;
    let err = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_err()
        .to_string();
    for want in [
        "probe[0].pubsub.url: must be a ws:// or wss:// URL",
        "probe[0].pubsub.subscribers: must be between 1 and",
        "probe[0].pubsub.redis_url: missing",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; returns the status and the body.
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

#[test]
fn the_reporting_endpoint_aggregates_in_postgresql() {
    let pg = Postgres::start();
    let backend = Backend::start_with(&["--database-url", &pg.url]);
    for vendor in ["v2", "v1", "v2"] {
        let (status, created) = http(&backend.url, "POST", "/orders", "");
        assert_eq!(status, 201, "{created}");
        let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].clone();
        let body = format!(r#"{{"vendor":"{vendor}"}}"#);
        let (status, _) = http(&backend.url, "POST", &format!("/orders/{id}/accept"), &body);
        assert_eq!(status, 200);
    }
    let (status, body) = http(&backend.url, "GET", "/api/reports/orders-per-vendor", "");
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"vendor": "v2", "accepted": 2}, {"vendor": "v1", "accepted": 1}])
    );
}

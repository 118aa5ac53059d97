//! The data-store probes against real servers started on 127.0.0.1 (issue 4): the Redis
//! workload (seed 004) against `redis-server`, the SQL probe against PostgreSQL, and their
//! configuration errors with exact paths.

mod common;

use common::postgres::Postgres;
use common::redis::Redis;
use common::{closed_port, run_toml};
use plimsoll::report::{ProbeResult, Stats};
use plimsoll::verdict::Grade;

fn stats_of(r: &ProbeResult) -> &Stats {
    r.stats
        .as_ref()
        .unwrap_or_else(|| panic!("no stats: {}", r.to_json_pretty()))
}

fn redis_probe(url: &str, extra: &str) -> String {
    format!(
        r#"
[[probe]]
name = "redis-workload"
kind = "redis"
[probe.redis]
url = "{url}"
{extra}
"#
    )
}

#[test]
fn redis_workload_counts_its_mix_and_cleans_up() {
    let redis = Redis::start();
    // A key of the application's own, which the probe must leave alone.
    assert_eq!(
        redis.command(&["SET", "app:key", "x"]).as_deref(),
        Some("+OK")
    );
    let r = run_toml(&redis_probe(
        &redis.url,
        "concurrency = 20\noperations = 1000\nkey_space = 500",
    ));
    let s = stats_of(&r);
    eprintln!(
        "redis: {} ops, {:.0} ops/s, mean {:.3} ms, p99 {:.3} ms, grade {}",
        s.requests, s.rps, s.latency_ms.mean, s.latency_ms.p99, r.grade
    );
    assert_eq!(s.requests, 20_000, "{}", r.to_json_pretty());
    assert_eq!(s.errors, 0, "{:?}", s.error_samples);
    let share = |op: &str| s.endpoints[op].requests as f64 / s.requests as f64;
    // ±2 points around 70/25/5 is over six standard deviations at 20 000 operations.
    assert!(
        (share("get") - 0.70).abs() < 0.02,
        "{:?}",
        s.endpoints.keys()
    );
    assert!((share("set") - 0.25).abs() < 0.02);
    assert!((share("del") - 0.05).abs() < 0.02);
    assert!(s.latency_ms.p99 > 0.0 && s.latency_ms.p99 >= s.latency_ms.p50);
    assert!(s.endpoints["set"].latency_ms.max > 0.0);
    assert!(r.thresholds.iter().any(|t| t.metric == "mean"));
    // Only the application's key is left: every key the probe wrote was deleted.
    assert_eq!(redis.dbsize(), 1, "notes: {:?}", r.notes);
    assert!(
        r.notes.iter().any(|n| n.contains("clean-up deleted")),
        "{:?}",
        r.notes
    );
}

#[test]
fn redis_keys_carry_an_expiry_when_not_cleaned_up() {
    let redis = Redis::start();
    let r = run_toml(&redis_probe(
        &redis.url,
        "concurrency = 2\noperations = 200\nkey_space = 10\nread_percent = 0\n\
         write_percent = 100\ndelete_percent = 0\ncleanup = false\nkey_ttl = \"1m\"\n\
         key_prefix = \"probe-test:\"",
    ));
    assert_eq!(stats_of(&r).errors, 0);
    let keys = redis.dbsize();
    assert!((1..=10).contains(&keys), "{keys} keys");
    // Every key is the probe's and expires: the keyspace line counts keys with an expiry.
    let info = redis_info_keyspace(&redis);
    assert!(
        info.contains(&format!("keys={keys},expires={keys}")),
        "{info}"
    );
}

/// The `db0:` line of `INFO keyspace`, read with a plain socket.
fn redis_info_keyspace(redis: &Redis) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[test]
fn a_refused_redis_is_a_connect_error_and_critical() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let r = run_toml(&redis_probe(&url, "concurrency = 5\noperations = 100"));
    assert_eq!(r.grade, Grade::Critical);
    let s = stats_of(&r);
    // One attempt per worker: a server that never answered is not hammered.
    assert_eq!(s.requests, 5, "{}", r.to_json_pretty());
    assert_eq!(s.errors_by_kind.get("connect"), Some(&5));
    assert!(s.error_samples["connect"].contains("connecting to Redis"));
}

fn sql_probe(url: &str, model: &str, queries: &str) -> String {
    format!(
        r#"
[[probe]]
name = "reporting-sql"
kind = "sql"
[probe.sql]
database_url = "{url}"
{model}
duration = "2s"
timeout = "5s"
{queries}
"#
    )
}

#[test]
fn sql_probe_measures_each_query_and_counts_bad_ones() {
    let pg = Postgres::start();
    let queries = r#"
[[probe.sql.queries]]
name = "cheap"
sql = "SELECT $1::bigint + 1"
params = [41]
weight = 3
[[probe.sql.queries]]
name = "slow"
sql = "SELECT pg_sleep(0.05)"
p95_ms = 40
[[probe.sql.queries]]
name = "broken"
sql = "SELEC nothing"
"#;
    let r = run_toml(&sql_probe(&pg.url, "rate = 50", queries));
    let s = stats_of(&r);
    for (name, e) in &s.endpoints {
        eprintln!(
            "sql {name}: {} queries, p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, errors {:?}",
            e.requests, e.latency_ms.p50, e.latency_ms.p95, e.latency_ms.p99, e.errors_by_kind
        );
    }
    assert_eq!(s.offered_rps, Some(50.0));
    assert_eq!(s.iterations.planned, Some(100));
    assert_eq!(s.requests, 100, "{}", r.to_json_pretty());
    let cheap = &s.endpoints["cheap"];
    let slow = &s.endpoints["slow"];
    let broken = &s.endpoints["broken"];
    assert_eq!(cheap.errors, 0);
    assert!(cheap.requests > slow.requests, "weights 3:1");
    assert!(
        slow.latency_ms.min >= 50.0,
        "pg_sleep(0.05): {:?}",
        slow.latency_ms
    );
    assert!(cheap.latency_ms.p50 < 50.0);
    assert_eq!(broken.errors, broken.requests);
    assert!(broken.requests > 0);
    assert_eq!(broken.errors_by_kind.get("query"), Some(&broken.requests));
    assert!(
        s.error_samples["query"].contains("syntax error"),
        "{:?}",
        s.error_samples
    );
    // The slow query breaks its 40 ms threshold: a warning at least.
    let t = r
        .thresholds
        .iter()
        .find(|t| t.metric == "slow.p95")
        .unwrap();
    assert!(t.grade >= Grade::Warning, "{t:?}");
    assert_eq!(r.grade, Grade::Critical, "a fifth of the queries fail");
}

#[test]
fn sql_probe_closed_model_and_refused_database() {
    let pg = Postgres::start();
    let one = "[[probe.sql.queries]]\nname = \"one\"\nsql = \"SELECT 1\"\n";
    let r = run_toml(&sql_probe(&pg.url, "concurrency = 4", one));
    let s = stats_of(&r);
    eprintln!(
        "sql closed: {} queries, {:.0}/s, p99 {:.3} ms",
        s.requests, s.rps, s.latency_ms.p99
    );
    assert!(s.requests > 100, "{}", r.to_json_pretty());
    assert_eq!(s.errors, 0);
    assert!(s.offered_rps.is_none());

    let refused = format!("postgres://plimsoll@127.0.0.1:{}/postgres", closed_port());
    let r = run_toml(&sql_probe(&refused, "concurrency = 2", one));
    assert_eq!(r.grade, Grade::Critical);
    assert_eq!(stats_of(&r).errors_by_kind.get("connect"), Some(&1));
}

#[test]
fn store_configuration_errors_name_their_paths() {
    let text = r#"
[[probe]]
name = "r"
kind = "redis"
[probe.redis]
url = "http://127.0.0.1:6379"
read_percent = 80
key_prefix = ""

[[probe]]
name = "s"
kind = "sql"
[probe.sql]
database_url = "postgres://u@127.0.0.1/db"
rate = 5
concurrency = 2
[[probe.sql.queries]]
name = "q"
sql = "SELECT 1"
[[probe.sql.queries]]
name = "q"
sql = ""
params = [[1]]

[[probe]]
name = "n"
kind = "redis"
"#;
    let err = plimsoll::config::load_str(text, std::iter::empty())
        .unwrap_err()
        .to_string();
    for want in [
        "probe[0].redis.url: must be a Redis URL",
        "probe[0].redis.read_percent: read, write and delete percentages must add up to 100",
        "probe[0].redis.key_prefix: must not be empty",
        "probe[1].sql.concurrency: give either `rate` (open model) or `concurrency`",
        "probe[1].sql.queries[1].name: duplicate query name \"q\"",
        "probe[1].sql.queries[1].sql: must not be empty",
        "probe[1].sql.queries[1].params[0]: must be an integer",
        "probe[2].redis: missing",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

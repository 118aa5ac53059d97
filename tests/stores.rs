//! The data-store probes against real servers started on 127.0.0.1 (issue 4): the Redis
//! workload (seed 004) against `redis-server`, the SQL probe against PostgreSQL, and their
//! configuration errors with exact paths.

mod common;

use common::daemon::Daemon;
use common::postgres::Postgres;
use common::redis::Redis;
use common::{closed_port, promtool_check, run_toml, Backend};
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

/// The value of the sample that starts with `prefix` (name and labels), if any.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Issue 11.7: the Redis, SQL and pub/sub probes' own figures reach `/metrics` — per operation,
/// per query, deliveries — equal to their result documents, and the scrape passes `promtool`.
#[test]
fn store_and_pubsub_figures_reach_metrics() {
    let stores = std::thread::spawn(|| (Postgres::start(), Redis::start()));
    let backend = Backend::start();
    let (pg, redis) = stores.join().expect("PostgreSQL and Redis start");
    let ws = backend.url.replacen("http://", "ws://", 1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plimsoll.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[report]
dir = ""

[[probe]]
name = "cache"
kind = "redis"
schedule = {{ every = "1h" }}
[probe.redis]
url = "{redis}"
concurrency = 2
operations = 50
key_space = 20

[[probe]]
name = "reports"
kind = "sql"
schedule = {{ every = "1h" }}
[probe.sql]
database_url = "{pg}"
rate = 40
duration = "500ms"
timeout = "5s"
[[probe.sql.queries]]
name = "cheap"
sql = "SELECT 1"
[[probe.sql.queries]]
name = "broken"
sql = "SELEC nothing"

[[probe]]
name = "events"
kind = "pubsub"
schedule = {{ every = "1h" }}
[probe.pubsub]
url = "{ws}/ws/events"
subscribers = 2
rate = 50
duration = "500ms"
warmup = "100ms"
grace = "500ms"
publish = "http"
publish_url = "{backend}/events"
"#,
            redis = redis.url,
            pg = pg.url,
            backend = backend.url,
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&p, &[]);
    // A probe's first run comes within 30 s of the start.
    d.wait_for(std::time::Duration::from_secs(60), |p| {
        p.len() == 3 && p.iter().all(|p| p["runs"].as_u64() >= Some(1))
    });
    let (status, text) = d.get("/metrics", &[]);
    assert_eq!(status, 200);

    // Redis: every operation of the mix counted, their sum the run's 100 operations.
    let ops: f64 = ["get", "set", "del"]
        .iter()
        .filter_map(|op| {
            sample(
                &text,
                &format!("plimsoll_redis_operations_total{{probe=\"cache\",operation=\"{op}\"}} "),
            )
        })
        .sum();
    assert_eq!(ops, 100.0, "{text}");
    let p99 = sample(
        &text,
        "plimsoll_redis_operation_latency_seconds{probe=\"cache\",operation=\"get\",quantile=\"0.99\"} ",
    )
    .unwrap_or_else(|| panic!("no Redis get latency in\n{text}"));
    assert!(p99 > 0.0 && p99 < 5.0, "{p99}");

    // SQL: 20 planned queries between the two names; every broken one an error of kind query,
    // and no latency for a query that never succeeded.
    let q = |name: &str| {
        sample(
            &text,
            &format!("plimsoll_sql_queries_total{{probe=\"reports\",query=\"{name}\"}} "),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(q("cheap") + q("broken"), 20.0, "{text}");
    assert!(q("broken") > 0.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "plimsoll_sql_query_errors_total{probe=\"reports\",query=\"broken\",kind=\"query\"} "
        ),
        Some(q("broken")),
        "{text}"
    );
    assert!(text.contains(
        "plimsoll_sql_query_latency_seconds{probe=\"reports\",query=\"cheap\",quantile=\"0.5\"} "
    ));
    assert!(!text.contains("plimsoll_sql_query_latency_seconds{probe=\"reports\",query=\"broken\""));

    // Pub/sub: 25 messages to 2 subscribers, all delivered on a healthy backend.
    let pubsub = |name: &str| {
        sample(
            &text,
            &format!("plimsoll_pubsub_{name}{{probe=\"events\"}} "),
        )
    };
    assert_eq!(pubsub("published_messages_total"), Some(25.0), "{text}");
    assert_eq!(pubsub("delivered_messages_total"), Some(50.0), "{text}");
    assert_eq!(pubsub("delivery_ratio"), Some(1.0), "{text}");
    assert_eq!(pubsub("lost_messages_total"), Some(0.0), "{text}");
    assert_eq!(pubsub("duplicate_messages_total"), Some(0.0), "{text}");

    promtool_check(&text);
    d.signal("-TERM");
    assert_eq!(d.wait_exit(std::time::Duration::from_secs(10)), Some(0));
}

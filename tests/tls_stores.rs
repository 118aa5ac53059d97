//! TLS to the data stores the probes measure, against local servers with certificates made
//! here: PostgreSQL with `ssl=on` for the SQL probe (`sslmode` and `sslrootcert` in the URL,
//! as libpq reads them), and `redis-server` on a TLS-only port for the Redis probes
//! (`rediss://` with a `tls` table). Regressions (issue 10, "TLS to real infrastructure"): the
//! SQL probe was built without TLS, so any `sslmode=require` database was unreachable; the
//! Redis client was built without TLS, so `rediss://` validated and then failed at connect.

mod common;

use common::postgres::Postgres;
use common::redis::Redis;
use common::run_toml;
use common::tls::TestPki;
use plimsoll::config::Grade;
use plimsoll::report::ProbeResult;

fn sql_probe(url: &str) -> String {
    format!(
        r#"
[[probe]]
name = "tls-sql"
kind = "sql"
[probe.sql]
database_url = "{url}"
concurrency = 2
duration = "1s"
timeout = "5s"
[[probe.sql.queries]]
name = "one"
sql = "SELECT 1"
"#
    )
}

fn connect_errors(r: &ProbeResult) -> u64 {
    let s = r.stats.as_ref().expect("an SQL run has stats");
    s.errors_by_kind.get("connect").copied().unwrap_or(0)
}

#[test]
fn sql_probe_speaks_tls_and_verifies_the_server() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pg = Postgres::start_tls(&ck.cert.pem(), &ck.key_pair.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();

    // Verified: the certificate chains to the CA file and names 127.0.0.1.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        ca.display()
    );
    let r = run_toml(&sql_probe(&url));
    let s = r.stats.as_ref().unwrap();
    assert!(s.requests > 10, "{}", r.to_json_pretty());
    assert_eq!(s.errors, 0, "{}", r.to_json_pretty());

    // Without the CA file, the bundled web roots do not know the issuer: refused.
    let url = format!("{}?sslmode=verify-full", pg.url);
    let r = run_toml(&sql_probe(&url));
    assert_eq!(r.grade, Grade::Critical);
    assert_eq!(connect_errors(&r), 1, "{}", r.to_json_pretty());

    // `require` encrypts without verifying, as libpq does.
    let url = format!("{}?sslmode=require", pg.url);
    let r = run_toml(&sql_probe(&url));
    assert_eq!(
        r.stats.as_ref().unwrap().errors,
        0,
        "{}",
        r.to_json_pretty()
    );
}

#[test]
fn sslmode_require_refuses_a_server_without_tls() {
    let pg = Postgres::start();
    let url = format!("{}?sslmode=require", pg.url);
    let r = run_toml(&sql_probe(&url));
    assert_eq!(r.grade, Grade::Critical);
    assert_eq!(connect_errors(&r), 1, "{}", r.to_json_pretty());
}

fn redis_probe(url: &str, tls: &str) -> String {
    format!(
        r#"
[[probe]]
name = "tls-redis"
kind = "redis"
[probe.redis]
url = "{url}"
concurrency = 2
operations = 50
connect_timeout = "5s"
{tls}
"#
    )
}

fn redis_errors(r: &ProbeResult, kind: &str) -> u64 {
    let s = r.stats.as_ref().expect("a Redis run has stats");
    s.errors_by_kind.get(kind).copied().unwrap_or(0)
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

#[test]
fn rediss_connects_with_a_ca_file_and_refuses_an_unknown_issuer() {
    let pki = TestPki::new();
    let redis = Redis::start_tls(
        &pki.server_cert_file,
        &pki.server_key_file,
        &pki.ca_file,
        false,
    );
    assert!(redis.url.starts_with("rediss://127.0.0.1:"));

    // Verified against the CA file: every operation succeeds.
    let tls = format!("tls = {{ ca_file = \"{}\" }}", toml_path(&pki.ca_file));
    let r = run_toml(&redis_probe(&redis.url, &tls));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.requests, 100, "{}", r.to_json_pretty());
    assert_eq!(s.errors, 0, "{}", r.to_json_pretty());
    assert!(
        r.notes.iter().any(|n| n.contains("clean-up deleted")),
        "{}",
        r.to_json_pretty()
    );

    // Without the CA file, the bundled web roots do not know the issuer: one `connect`
    // error per worker, naming the certificate, and a critical grade.
    for tls in [
        String::new(),
        format!(
            "tls = {{ ca_file = \"{}\" }}",
            toml_path(&pki.other_ca_file)
        ),
    ] {
        let r = run_toml(&redis_probe(&redis.url, &tls));
        assert_eq!(r.grade, Grade::Critical, "{}", r.to_json_pretty());
        assert_eq!(redis_errors(&r, "connect"), 2, "{}", r.to_json_pretty());
        let json = r.to_json_pretty();
        assert!(
            json.to_lowercase().contains("certificate"),
            "the error should say the certificate was refused: {json}"
        );
    }

    // `insecure_skip_verify`, and the URL's own `#insecure`, encrypt without verifying.
    for (url, tls) in [
        (
            redis.url.clone(),
            "tls = { insecure_skip_verify = true }".to_string(),
        ),
        (format!("{}/#insecure", redis.url), String::new()),
    ] {
        let r = run_toml(&redis_probe(&url, &tls));
        assert_eq!(
            r.stats.as_ref().unwrap().errors,
            0,
            "{url}: {}",
            r.to_json_pretty()
        );
    }
}

#[test]
fn rediss_presents_a_client_certificate_when_the_server_asks() {
    let pki = TestPki::new();
    let redis = Redis::start_tls(
        &pki.server_cert_file,
        &pki.server_key_file,
        &pki.ca_file,
        true,
    );
    let with_cert = format!(
        "tls = {{ ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
        toml_path(&pki.ca_file),
        toml_path(&pki.client_cert_file),
        toml_path(&pki.client_key_file)
    );
    let r = run_toml(&redis_probe(&redis.url, &with_cert));
    assert_eq!(
        r.stats.as_ref().unwrap().errors,
        0,
        "{}",
        r.to_json_pretty()
    );
    // No client certificate: the server ends the handshake, a `connect` error per worker.
    let without = format!("tls = {{ ca_file = \"{}\" }}", toml_path(&pki.ca_file));
    let r = run_toml(&redis_probe(&redis.url, &without));
    assert_eq!(r.grade, Grade::Critical, "{}", r.to_json_pretty());
    assert!(
        r.stats.as_ref().unwrap().errors >= 2,
        "{}",
        r.to_json_pretty()
    );
}

#[test]
fn pubsub_publishes_through_rediss() {
    let pki = TestPki::new();
    let redis = Redis::start_tls(
        &pki.server_cert_file,
        &pki.server_key_file,
        &pki.ca_file,
        false,
    );
    // The publisher alone shows the TLS connection works (deliveries are the pub/sub tests'
    // business): its one subscriber dials a closed port, and that failure is ignored here.
    let closed = common::closed_port();
    let cfg = |tls: &str| {
        format!(
            r#"
[[probe]]
name = "tls-pubsub"
kind = "pubsub"
[probe.pubsub]
url = "ws://127.0.0.1:{closed}/ws"
subscribers = 1
rate = 20
duration = "300ms"
grace = "100ms"
warmup = "10ms"
timeout = "3s"
publish = "redis"
redis_url = "{}"
channel = "plimsoll-tls"
{tls}
"#,
            redis.url
        )
    };
    let r = run_toml(&cfg(&format!(
        "redis_tls = {{ ca_file = \"{}\" }}",
        toml_path(&pki.ca_file)
    )));
    let s = r.stats.as_ref().expect("publishes were counted");
    assert!(s.requests > 0, "{}", r.to_json_pretty());
    assert_eq!(s.errors, 0, "{}", r.to_json_pretty());

    // Without the CA the publisher cannot connect: the run fails, saying why.
    let r = run_toml(&cfg(""));
    assert_eq!(r.grade, Grade::Critical);
    let json = r.to_json_pretty();
    assert!(
        json.contains("connecting to the publishing Redis"),
        "{json}"
    );
}

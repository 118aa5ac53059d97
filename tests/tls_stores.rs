//! TLS to the data stores the probes measure, against local servers with certificates made
//! here: PostgreSQL with `ssl=on` for the SQL probe (`sslmode` and `sslrootcert` in the URL,
//! as libpq reads them). Regression (issue 10, "TLS to real infrastructure"): the SQL probe
//! was built without TLS, so any `sslmode=require` database was unreachable.

mod common;

use common::postgres::Postgres;
use common::run_toml;
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

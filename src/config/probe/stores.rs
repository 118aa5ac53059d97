//! Settings of the probe kinds that measure data stores directly: `redis` (seed 004's Redis
//! benchmark) and `sql` (seed 003's reporting queries and slow-query checks).
//!
//! Like the rest of `config`, this module only reads and checks; it never connects to the
//! servers it names, and never echoes a URL that may hold a password.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Ceiling, HumanDuration, Limits, Problems, Secret};

/// Settings of a Redis workload probe: `concurrency` workers, each on its own connection,
/// run a read/write/delete mix over a key space of their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL (`redis://[:password@]host:port[/db]`, or `rediss://…` for TLS); use an
    /// `env:` or `file:` reference when it holds a password.
    pub url: Secret,
    /// TLS settings of a `rediss://` URL. Default: verify the server against the bundled web
    /// roots.
    #[serde(default)]
    pub tls: Option<RedisTlsConfig>,
    /// Workers, each with its own connection, running operations back to back (seed 004:
    /// 100 concurrent operations).
    #[serde(default = "default_redis_concurrency")]
    pub concurrency: u32,
    /// Operations per worker (seed 004: 1000). Default: 1000 when no `duration` is given,
    /// else no limit.
    #[serde(default)]
    pub operations: Option<u64>,
    /// How long the workers run. Default: no limit (the operations bound the run).
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Share of `GET`s, in percent.
    #[serde(default = "default_read_percent")]
    pub read_percent: u32,
    /// Share of `SET`s, in percent.
    #[serde(default = "default_write_percent")]
    pub write_percent: u32,
    /// Share of `DEL`s, in percent. The three shares must add up to 100.
    #[serde(default = "default_delete_percent")]
    pub delete_percent: u32,
    /// Distinct keys the operations pick from, uniformly.
    #[serde(default = "default_key_space")]
    pub key_space: u64,
    /// Size of every value written, in bytes.
    #[serde(default = "default_value_bytes")]
    pub value_bytes: u32,
    /// Prefix of every key; the run adds its own id after it (`plimsoll:<run>:<n>`), so a
    /// run only ever touches keys it made up.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Expiry set on every key written: keys a crashed run could not delete still go.
    #[serde(default = "default_key_ttl")]
    pub key_ttl: HumanDuration,
    /// Delete the run's keys when it ends.
    #[serde(default = "default_true")]
    pub cleanup: bool,
    /// Per-operation timeout; an operation without an answer by then is a `timeout` error.
    #[serde(default = "default_op_timeout")]
    pub timeout: HumanDuration,
    /// Timeout of each connection attempt; a failed one is a `connect` error.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

/// TLS settings of a `rediss://` connection (the Redis workload probe's `tls`, the pub/sub
/// probe's `redis_tls`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsConfig {
    /// PEM file of the CA certificates that sign the server's certificate. The Redis client
    /// trusts one store: given, it replaces the bundled web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (as `#insecure` at the end of the URL does). Only for test
    /// servers with throw-away certificates.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of a client certificate (chain), for servers that ask for one
    /// (`tls-auth-clients yes`). Needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl RedisTlsConfig {
    /// Checks the table against its (resolved) URL: TLS settings on a plain `redis://` URL
    /// would be silently ignored, so they are refused.
    pub fn validate(&self, url: &Secret, path: &str, problems: &mut Problems) {
        let plain = ["redis://", "redis+unix://", "unix://"];
        if plain.iter().any(|s| url.expose().starts_with(s)) {
            problems.push(
                path,
                "TLS settings need a `rediss://` URL (the URL given speaks plain TCP)",
            );
        }
        for (name, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    problems.push(
                        format!("{path}.{name}"),
                        format!("no such file: {}", f.display()),
                    );
                }
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => problems.push(
                format!("{path}.client_key"),
                "missing: `client_cert` needs the key that goes with it",
            ),
            (None, Some(_)) => problems.push(
                format!("{path}.client_cert"),
                "missing: `client_key` needs the certificate that goes with it",
            ),
            _ => {}
        }
    }
}

/// Settings of an SQL probe: named queries against PostgreSQL, at a rate (open model) or a
/// concurrency (closed model), for a duration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// PostgreSQL URL (`postgres://user:password@host:port/db`); use an `env:` or `file:`
    /// reference, since it holds a password.
    pub database_url: Secret,
    /// Open model: queries started per second, whatever the database answers; latency is
    /// measured from each query's planned start. Exactly one of `rate` and `concurrency`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Closed model: this many sessions run queries back to back.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// How long queries are started.
    #[serde(default = "default_sql_duration")]
    pub duration: HumanDuration,
    /// Per-query timeout, from its planned start; a query without an answer by then is a
    /// `timeout` error.
    #[serde(default = "default_sql_timeout")]
    pub timeout: HumanDuration,
    /// Database connections. Default: the concurrency, or 10 in the open model (seed 003:
    /// a pool of 20 per API instance).
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Open model: most queries in flight at once; an arrival beyond it is counted as
    /// dropped instead of silently delaying the plan.
    #[serde(default = "default_sql_max_in_flight")]
    pub max_in_flight: u32,
    /// The queries; each arrival picks one by weight.
    pub queries: Vec<SqlQueryConfig>,
}

/// One named query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlQueryConfig {
    /// Name: the `endpoint` label of its metrics and its key in the result's `endpoints`.
    pub name: String,
    /// The statement. `$1`, `$2`, … are bound to `params` in order.
    pub sql: String,
    /// Values bound to `$1`, `$2`, …: integers, floats, strings, booleans. Cast in the SQL
    /// where PostgreSQL cannot infer the type (`$1::bigint`).
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
    /// Relative share of the arrivals this query gets.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Slow-query threshold: this query's p95 in ms is good below it, a warning up to twice
    /// it, critical beyond. Default: not graded on its own.
    #[serde(default)]
    pub p95_ms: Option<f64>,
}

fn default_redis_concurrency() -> u32 {
    100
}
fn default_read_percent() -> u32 {
    70
}
fn default_write_percent() -> u32 {
    25
}
fn default_delete_percent() -> u32 {
    5
}
fn default_key_space() -> u64 {
    10_000
}
fn default_value_bytes() -> u32 {
    100
}
fn default_key_prefix() -> String {
    "plimsoll:".to_string()
}
fn default_key_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_true() -> bool {
    true
}
fn default_op_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_sql_duration() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_sql_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_sql_max_in_flight() -> u32 {
    100
}
fn default_weight() -> u32 {
    1
}

/// Operations per worker when neither `operations` nor `duration` is given (seed 004).
pub const DEFAULT_REDIS_OPERATIONS: u64 = 1000;
/// Most Redis workers: each holds a connection, and a monitor must not exhaust the server's.
pub const MAX_REDIS_CONCURRENCY: u32 = 1000;
/// Largest Redis value: a workload probe measures latency, not bulk transfer.
pub const MAX_REDIS_VALUE_BYTES: u32 = 1024 * 1024;

impl RedisConfig {
    /// Operations per worker, if bounded.
    pub fn operation_limit(&self) -> Option<u64> {
        match (self.operations, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_REDIS_OPERATIONS),
        }
    }

    /// Checks the settings, resolving the URL's secret.
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        for (name, v) in [
            ("operations", self.operations),
            ("key_space", Some(self.key_space)),
        ] {
            if let Some(v) = v {
                limits.check_count(format!("{path}.{name}"), v, Ceiling::Count, problems);
            }
        }
        for (name, d) in [
            ("duration", self.duration),
            ("key_ttl", Some(self.key_ttl)),
            ("timeout", Some(self.timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
        ] {
            if let Some(d) = d {
                limits.check_duration(format!("{path}.{name}"), d, problems);
            }
        }
        check_url(
            &mut self.url,
            &format!("{path}.url"),
            &["redis://", "rediss://", "redis+unix://", "unix://"],
            "a Redis URL (redis://…)",
            problems,
        );
        if let Some(tls) = &self.tls {
            tls.validate(&self.url, &format!("{path}.tls"), problems);
        }
        if !(1..=MAX_REDIS_CONCURRENCY).contains(&self.concurrency) {
            problems.push(
                format!("{path}.concurrency"),
                format!("must be between 1 and {MAX_REDIS_CONCURRENCY}"),
            );
        }
        if self.operations == Some(0) {
            problems.push(format!("{path}.operations"), "must be greater than 0");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            problems.push(format!("{path}.duration"), "must be greater than 0");
        }
        let sum = u64::from(self.read_percent)
            + u64::from(self.write_percent)
            + u64::from(self.delete_percent);
        if sum != 100 {
            problems.push(
                format!("{path}.read_percent"),
                format!(
                    "read, write and delete percentages must add up to 100 (they add up to {sum})"
                ),
            );
        }
        if self.key_space == 0 {
            problems.push(format!("{path}.key_space"), "must be greater than 0");
        }
        if !(1..=MAX_REDIS_VALUE_BYTES).contains(&self.value_bytes) {
            problems.push(
                format!("{path}.value_bytes"),
                format!("must be between 1 and {MAX_REDIS_VALUE_BYTES}"),
            );
        }
        if self.key_prefix.is_empty() {
            // Without a prefix the run's keys could collide with the application's.
            problems.push(
                format!("{path}.key_prefix"),
                "must not be empty: it keeps the probe's keys apart from real ones",
            );
        }
        if self.key_ttl.as_duration().as_millis() == 0 {
            problems.push(
                format!("{path}.key_ttl"),
                "must be at least 1ms: keys without expiry could outlive a crashed run",
            );
        }
        for (name, d) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{path}.{name}"), "must be greater than 0");
            }
        }
    }
}

impl SqlConfig {
    /// Connections of the pool.
    pub fn pool(&self) -> u32 {
        self.pool_size.or(self.concurrency).unwrap_or(10)
    }

    /// Checks the settings, resolving the URL's secret.
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        for (name, v, ceiling) in [
            ("concurrency", self.concurrency, Ceiling::Concurrency),
            ("pool_size", self.pool_size, Ceiling::Concurrency),
            (
                "max_in_flight",
                Some(self.max_in_flight),
                Ceiling::MaxInFlight,
            ),
        ] {
            if let Some(v) = v {
                limits.check_count(format!("{path}.{name}"), v.into(), ceiling, problems);
            }
        }
        for (name, d) in [("duration", self.duration), ("timeout", self.timeout)] {
            limits.check_duration(format!("{path}.{name}"), d, problems);
        }
        check_url(
            &mut self.database_url,
            &format!("{path}.database_url"),
            &["postgres://", "postgresql://"],
            "a PostgreSQL URL (postgres://…)",
            problems,
        );
        match (self.rate, self.concurrency) {
            (Some(_), Some(_)) => problems.push(
                format!("{path}.concurrency"),
                "give either `rate` (open model) or `concurrency` (closed model), not both",
            ),
            (None, None) => problems.push(
                path,
                "missing: give `rate` (open model) or `concurrency` (closed model)",
            ),
            (Some(r), None) => limits.check_rate(format!("{path}.rate"), r, false, problems),
            (None, Some(0)) => {
                problems.push(format!("{path}.concurrency"), "must be greater than 0")
            }
            _ => {}
        }
        for (name, d) in [("duration", self.duration), ("timeout", self.timeout)] {
            if d.is_zero() {
                problems.push(format!("{path}.{name}"), "must be greater than 0");
            }
        }
        if self.pool_size == Some(0) {
            problems.push(format!("{path}.pool_size"), "must be greater than 0");
        }
        if self.max_in_flight == 0 {
            problems.push(format!("{path}.max_in_flight"), "must be greater than 0");
        }
        if self.queries.is_empty() {
            problems.push(format!("{path}.queries"), "must name at least one query");
        }
        let mut names = std::collections::HashSet::new();
        for (i, q) in self.queries.iter().enumerate() {
            let qp = format!("{path}.queries[{i}]");
            if q.name.trim().is_empty() {
                problems.push(format!("{qp}.name"), "must not be empty");
            } else if !names.insert(q.name.as_str()) {
                problems.push(
                    format!("{qp}.name"),
                    format!("duplicate query name {:?}", q.name),
                );
            }
            if q.sql.trim().is_empty() {
                problems.push(format!("{qp}.sql"), "must not be empty");
            }
            for (j, p) in q.params.iter().enumerate() {
                if matches!(
                    p,
                    serde_json::Value::Array(_) | serde_json::Value::Object(_)
                ) {
                    problems.push(
                        format!("{qp}.params[{j}]"),
                        "must be an integer, a float, a string or a boolean",
                    );
                }
            }
            if let Some(ms) = q.p95_ms {
                if !(ms > 0.0 && ms.is_finite()) {
                    problems.push(format!("{qp}.p95_ms"), "must be greater than 0");
                }
            }
        }
        if !self.queries.is_empty() && self.queries.iter().all(|q| q.weight == 0) {
            problems.push(
                format!("{path}.queries"),
                "at least one query needs a weight above 0",
            );
        }
    }
}

/// Resolves a URL secret and checks its scheme without echoing it (it may hold a password).
pub(crate) fn check_url(
    url: &mut Secret,
    path: &str,
    schemes: &[&str],
    what: &str,
    problems: &mut Problems,
) {
    match url.resolve() {
        Err(e) => problems.push(path, e),
        Ok(()) => {
            if !schemes.iter().any(|s| url.expose().starts_with(s)) {
                problems.push(path, format!("must be {what}"));
            }
        }
    }
}

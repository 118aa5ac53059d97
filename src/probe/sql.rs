//! The `sql` kind: named queries against PostgreSQL (seed 003's reporting queries and its
//! slow-query checks), at a rate (open model: latency from each query's planned start, so a
//! stalled database shows) or a concurrency (closed model) for a duration. Each query is an
//! `endpoint` of the result's `stats`, with its own percentiles and errors by kind (`query`
//! for an error the database returned, `timeout`, `connect`, `pool`, …); a query may carry a
//! slow-query threshold on its p95.
//!
//! What it must not do: stop the daemon on an unreachable database (that is a `connect` error
//! and a critical grade), let a slow database silently slow the plan (arrivals beyond the
//! in-flight cap are counted as dropped), or keep per-query data (HDR histograms only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions};
use sqlx::Postgres;

use super::ops::{abandoned_note, runtime, unless_stopped, OpTally, WeightedChoice};
use super::{ProbeKind, RunContext, Sends};
use crate::config::{Config, GuardrailsConfig, ProbeConfig, SqlConfig, SqlQueryConfig};
use crate::report::ProbeResult;
use crate::verdict::{self, grade_with, Bands, StatDefaults};

/// Seed 003's reporting targets where the probe's thresholds say nothing: 100 QPS, and the
/// seed table's p99.
/// How long closing the pool may take at the end of a run.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

const SQL_DEFAULTS: StatDefaults = StatDefaults {
    rps: Some(Bands::new(
        Some(2.0 * verdict::DEFAULT_SQL_QPS),
        Some(verdict::DEFAULT_SQL_QPS),
        Some(verdict::DEFAULT_SQL_QPS / 5.0),
    )),
    p99_ms: verdict::DEFAULT_P99_MS,
    mean_ms: None,
};

pub struct SqlProbe;

impl ProbeKind for SqlProbe {
    type Config = SqlConfig;

    /// Its commands go to the store, not over HTTP: the allowlist and the rate caps are for
    /// HTTP targets.
    fn urls(_: &SqlConfig) -> Vec<&str> {
        Vec::new()
    }

    fn cap(_: &GuardrailsConfig, _: &mut SqlConfig, _: &mut Vec<String>) {}

    fn sends(_: &SqlConfig) -> Sends {
        Sends::default()
    }

    fn run(
        _config: &Config,
        probe: &ProbeConfig,
        cfg: &SqlConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let weights: Vec<u64> = cfg.queries.iter().map(|q| q.weight.into()).collect();
        let Some(choice) = WeightedChoice::new(&weights) else {
            return ProbeResult::failed(probe, "no query has a weight above 0");
        };
        // The database does the work; two threads keep up with any rate it can answer.
        let rt = match runtime(2) {
            Ok(r) => r,
            Err(e) => return ProbeResult::failed(probe, format!("cannot start a runtime: {e}")),
        };
        let started = SystemTime::now();
        let run = SqlRun {
            queries: Arc::new(cfg.queries.clone()),
            choice,
            timeout: cfg.timeout.as_duration(),
            duration: cfg.duration.as_duration(),
        };
        let (tally, elapsed, offered) = rt.block_on(run.run(cfg, &ctx.stop));
        let mut notes = Vec::new();
        if ctx.stop.load(Ordering::Relaxed) {
            notes.push("stopped before the duration ended".into());
        }
        notes.extend(abandoned_note(tally.abandoned));
        let stats = tally.into_stats(elapsed, offered);
        let mut verdict = grade_with(&probe.thresholds, probe.target_rps, &stats, &SQL_DEFAULTS);
        for q in &cfg.queries {
            let (Some(p95), Some(e)) = (q.p95_ms, stats.endpoints.get(&q.name)) else {
                continue;
            };
            verdict.lower_better(
                &format!("{}.p95", q.name),
                e.latency_ms.p95,
                slow_query_bands(p95),
            );
        }
        ProbeResult::graded(
            probe,
            started,
            elapsed,
            Some(stats),
            None,
            verdict,
            notes,
            Default::default(),
        )
    }
}

/// A query's slow-query threshold as bands: good below it, a warning up to twice it.
pub fn slow_query_bands(p95_ms: f64) -> Bands {
    Bands::new(None, Some(p95_ms), Some(2.0 * p95_ms))
}

struct SqlRun {
    queries: Arc<Vec<SqlQueryConfig>>,
    choice: WeightedChoice,
    timeout: Duration,
    duration: Duration,
}

impl SqlRun {
    /// Connects, runs the model, and returns the tally, the run's length and, for the open
    /// model, the planned arrivals and rate.
    async fn run(
        &self,
        cfg: &SqlConfig,
        stop: &Arc<AtomicBool>,
    ) -> (OpTally, Duration, Option<(u64, f64)>) {
        let names: Vec<String> = self.queries.iter().map(|q| q.name.clone()).collect();
        let offered = cfg.rate.map(|r| {
            let planned = (r * self.duration.as_secs_f64()).ceil() as u64;
            (planned, r)
        });
        let mut tally = OpTally::new(&names, offered.is_some());
        let t0 = Instant::now();
        let connect = PgPoolOptions::new()
            .max_connections(cfg.pool())
            .acquire_timeout(self.timeout)
            .connect(cfg.database_url.expose());
        let Some(connected) =
            unless_stopped(stop, tokio::time::timeout(self.timeout, connect)).await
        else {
            tally.abandoned += 1;
            return (tally, t0.elapsed(), offered);
        };
        let pool = match connected {
            Ok(Ok(p)) => p,
            failed => {
                let message = match failed {
                    Ok(Err(e)) => format!("connecting to PostgreSQL: {e}"),
                    _ => format!("connecting to PostgreSQL took over {:?}", self.timeout),
                };
                let took = t0.elapsed();
                tally.record(0, took, took, Some(("connect", &message)));
                return (tally, took, offered);
            }
        };
        let t0 = Instant::now();
        let tally = match (cfg.rate, cfg.concurrency) {
            (Some(rate), _) => {
                self.open(&pool, tally, rate, cfg.max_in_flight as usize, stop)
                    .await
            }
            (None, c) => self.closed(&pool, tally, c.unwrap_or(1), stop).await,
        };
        let elapsed = t0.elapsed();
        // Closing says goodbye to the server; one that never answers is not waited for.
        let _ = tokio::time::timeout(CLOSE_WAIT, pool.close()).await;
        (tally, elapsed, offered)
    }

    /// Open model: arrivals at `rate` per second, each its own task, at most `cap` at once.
    async fn open(
        &self,
        pool: &PgPool,
        tally: OpTally,
        rate: f64,
        cap: usize,
        stop: &Arc<AtomicBool>,
    ) -> OpTally {
        let tally = Arc::new(Mutex::new(tally));
        let slots = Arc::new(tokio::sync::Semaphore::new(cap));
        let planned = (rate * self.duration.as_secs_f64()).ceil() as u64;
        let t0 = tokio::time::Instant::now();
        let mut rng = fastrand::Rng::new();
        for i in 0..planned {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            if unless_stopped(stop, tokio::time::sleep_until(due))
                .await
                .is_none()
            {
                break;
            }
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                lock(&tally).dropped += 1;
                continue;
            };
            let q = self.choice.pick(&mut rng);
            let (queries, pool, tally) = (Arc::clone(&self.queries), pool.clone(), tally.clone());
            let (timeout, stop) = (self.timeout, Arc::clone(stop));
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let query = tokio::time::timeout_at(due + timeout, execute(&pool, &queries[q]));
                let Some(result) = unless_stopped(&stop, query).await else {
                    lock(&tally).abandoned += 1;
                    return;
                };
                let end = tokio::time::Instant::now();
                let mut t = lock(&tally);
                t.lag(started - due);
                record(&mut t, q, end - due, end - started, result, timeout);
                drop(slot);
            });
        }
        // Every query in flight ends by its timeout; the margin covers the last record.
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            self.timeout + Duration::from_secs(1),
            slots.acquire_many(all),
        )
        .await;
        let out = lock(&tally).clone();
        out
    }

    /// Closed model: `sessions` tasks run queries back to back until the duration is over.
    async fn closed(
        &self,
        pool: &PgPool,
        tally: OpTally,
        sessions: u32,
        stop: &Arc<AtomicBool>,
    ) -> OpTally {
        let deadline = Instant::now() + self.duration;
        let handles: Vec<_> = (0..sessions)
            .map(|_| {
                let (queries, pool, stop) =
                    (Arc::clone(&self.queries), pool.clone(), Arc::clone(stop));
                let (choice, timeout) = (self.choice.clone(), self.timeout);
                let mut own = tally.clone();
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::new();
                    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                        let q = choice.pick(&mut rng);
                        let t = Instant::now();
                        let query = tokio::time::timeout(timeout, execute(&pool, &queries[q]));
                        let Some(result) = unless_stopped(&stop, query).await else {
                            own.abandoned += 1;
                            break;
                        };
                        let took = t.elapsed();
                        record(&mut own, q, took, took, result, timeout);
                    }
                    own
                })
            })
            .collect();
        let mut total = tally;
        for h in handles {
            if let Ok(t) = h.await {
                total.merge(&t);
            }
        }
        total
    }
}

fn lock(t: &Mutex<OpTally>) -> std::sync::MutexGuard<'_, OpTally> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

fn record(
    t: &mut OpTally,
    q: usize,
    latency: Duration,
    service: Duration,
    result: Result<Result<(), sqlx::Error>, tokio::time::error::Elapsed>,
    timeout: Duration,
) {
    match result {
        Ok(Ok(())) => t.record(q, latency, service, None),
        Ok(Err(e)) => t.record(q, latency, service, Some((error_kind(&e), &e.to_string()))),
        Err(_) => {
            let m = format!("no answer within {timeout:?}");
            t.record(q, latency, service, Some(("timeout", &m)));
        }
    }
}

/// Runs one query to its end; rows are read and dropped, never kept.
async fn execute(pool: &PgPool, q: &SqlQueryConfig) -> Result<(), sqlx::Error> {
    let mut query: sqlx::query::Query<'_, Postgres, PgArguments> = sqlx::query(&q.sql);
    for p in &q.params {
        query = match p {
            serde_json::Value::Bool(b) => query.bind(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => query.bind(i),
                None => query.bind(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => query.bind(s.as_str()),
            serde_json::Value::Null => query.bind(None::<String>),
            // Refused by validation; sent as JSON text rather than panicking.
            other => query.bind(other.to_string()),
        };
    }
    query.execute(pool).await.map(|_| ())
}

/// The `errors_by_kind` name of a database error: `query` (the database refused or failed
/// the statement: syntax, permissions, a cancelled statement), `connect`, `pool` (no
/// connection free in time), `protocol`, `decode` or `other`.
pub fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Database(_) => "query",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "connect",
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => "pool",
        sqlx::Error::Protocol(_) => "protocol",
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_query_threshold_bands() {
        let b = slow_query_bands(50.0);
        assert_eq!(b.grade_lower_better(49.0), verdict::Grade::Good);
        assert_eq!(b.grade_lower_better(80.0), verdict::Grade::Warning);
        assert_eq!(b.grade_lower_better(101.0), verdict::Grade::Critical);
    }

    #[test]
    fn database_errors_are_query_errors() {
        assert_eq!(error_kind(&sqlx::Error::PoolTimedOut), "pool");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(error_kind(&sqlx::Error::Io(io)), "connect");
        assert_eq!(error_kind(&sqlx::Error::Protocol("x".into())), "protocol");
    }
}

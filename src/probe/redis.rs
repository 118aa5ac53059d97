//! The `redis` kind: seed 004's Redis benchmark. `concurrency` workers, each on its own
//! connection, run a read/write/delete mix (`GET`/`SET`/`DEL`, 70/25/5 by default) back to
//! back over a key space, and the run is graded on ops/s, mean and p99 latency, and errors
//! (seed 004: 5 ms average, 50 ms p99, 1000 ops/s).
//!
//! Every key is `<key_prefix><run id>:<n>`: a run only touches keys it made up, each `SET`
//! carries an expiry, and the run deletes its keys at the end, so the probe never pollutes a
//! real Redis. What it must not do: panic or stop the daemon on an unreachable server (that is
//! a `connect` error and a critical grade), hammer a refused server with reconnects, or keep
//! per-operation data (latency goes into HDR histograms).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client};

use super::ops::{abandoned_note, runtime, unless_stopped, OpTally, WeightedChoice};
use super::redis_client::{client, error_kind};
use super::{ProbeKind, RunContext, Sends};
use crate::config::{Config, GuardrailsConfig, ProbeConfig, RedisConfig};
use crate::report::ProbeResult;
use crate::verdict::{self, grade_with, StatDefaults};

/// The operations, in the order of their names in the result's `endpoints`.
const OP_NAMES: [&str; 3] = ["get", "set", "del"];
const GET: usize = 0;
const SET: usize = 1;
/// Keys deleted per `DEL` during the clean-up.
const CLEANUP_BATCH: u64 = 1000;
/// Wait before a worker whose connection broke tries again; short, since each failed
/// attempt is counted, and bounded, since the server may be gone for good.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Seed 004's Redis targets (see the constants in `verdict`).
const REDIS_DEFAULTS: StatDefaults = StatDefaults {
    rps: Some(verdict::Bands::new(
        Some(2.0 * verdict::DEFAULT_REDIS_OPS),
        Some(verdict::DEFAULT_REDIS_OPS),
        Some(verdict::DEFAULT_REDIS_OPS / 5.0),
    )),
    p99_ms: verdict::DEFAULT_REDIS_P99_MS,
    mean_ms: Some(verdict::DEFAULT_REDIS_MEAN_MS),
};

pub struct RedisProbe;

impl ProbeKind for RedisProbe {
    type Config = RedisConfig;

    /// Its commands go to the store, not over HTTP: the allowlist and the rate caps are for
    /// HTTP targets.
    fn urls(_: &RedisConfig) -> Vec<&str> {
        Vec::new()
    }

    fn cap(_: &GuardrailsConfig, _: &mut RedisConfig, _: &mut Vec<String>) {}

    fn sends(_: &RedisConfig) -> Sends {
        Sends::default()
    }

    fn run(
        _config: &Config,
        probe: &ProbeConfig,
        cfg: &RedisConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let workload = match Workload::new(cfg) {
            Ok(w) => Arc::new(w),
            Err(e) => return ProbeResult::failed(probe, e),
        };
        // Redis answers in microseconds: the client's own work is the bottleneck, so use the
        // cores there are (bounded, to leave room for the daemon).
        let rt = match runtime(4) {
            Ok(r) => r,
            Err(e) => return ProbeResult::failed(probe, format!("cannot start a runtime: {e}")),
        };
        let started = SystemTime::now();
        let (tally, elapsed, mut notes) = rt.block_on(workload.run(cfg.concurrency, &ctx.stop));
        if ctx.stop.load(Ordering::Relaxed) {
            notes.push("stopped before the workload ended".into());
        }
        let stats = tally.into_stats(elapsed, None);
        let verdict = grade_with(&probe.thresholds, probe.target_rps, &stats, &REDIS_DEFAULTS);
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

/// Which operation comes next: a draw from 0..100 against the configured percentages.
#[derive(Debug, Clone)]
pub struct OperationMix(WeightedChoice);

impl OperationMix {
    /// `None` when all three shares are zero.
    pub fn new(read: u32, write: u32, delete: u32) -> Option<Self> {
        WeightedChoice::new(&[read.into(), write.into(), delete.into()]).map(OperationMix)
    }

    /// `get`, `set` or `del`, as an index of the operation names.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        self.0.pick(rng)
    }
}

/// A workload ready to run: the client, the mix and the run's key namespace.
struct Workload {
    client: Client,
    mix: OperationMix,
    /// `<key_prefix><run id>:`; a key is this plus its number.
    namespace: String,
    key_space: u64,
    value: Vec<u8>,
    ttl_ms: u64,
    operations: Option<u64>,
    duration: Option<Duration>,
    cleanup: bool,
    connection: AsyncConnectionConfig,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Workload {
    fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let client = client(cfg.url.expose(), cfg.tls.as_ref())?;
        let mix = OperationMix::new(cfg.read_percent, cfg.write_percent, cfg.delete_percent)
            .ok_or("the operation mix is empty")?;
        let run_id = format!("{:08x}", fastrand::u32(..));
        let timeout = cfg.timeout.as_duration();
        let connect_timeout = cfg.connect_timeout.as_duration();
        Ok(Workload {
            client,
            mix,
            namespace: format!("{}{run_id}:", cfg.key_prefix),
            key_space: cfg.key_space,
            // Printable bytes: a person who looks at a key during a run sees what it is.
            value: b"plimsoll"
                .iter()
                .copied()
                .cycle()
                .take(cfg.value_bytes as usize)
                .collect(),
            ttl_ms: u64::try_from(cfg.key_ttl.as_duration().as_millis()).unwrap_or(u64::MAX),
            operations: cfg.operation_limit(),
            duration: cfg.duration.map(|d| d.as_duration()),
            cleanup: cfg.cleanup,
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(timeout)),
            connect_timeout,
            timeout,
        })
    }

    /// Runs every worker; returns their merged tally, the time they took, and notes.
    async fn run(
        self: &Arc<Self>,
        concurrency: u32,
        stop: &Arc<AtomicBool>,
    ) -> (OpTally, Duration, Vec<String>) {
        let t0 = Instant::now();
        let deadline = self.duration.map(|d| t0 + d);
        let handles: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(Arc::clone(self).worker(deadline, Arc::clone(stop))))
            .collect();
        let mut total = OpTally::new(&names(), false);
        let mut notes = Vec::new();
        for h in handles {
            match h.await {
                Ok(t) => total.merge(&t),
                Err(e) => notes.push(format!("a worker failed: {e}")),
            }
        }
        let elapsed = t0.elapsed();
        if self.cleanup && total.count() > 0 {
            if stop.load(Ordering::Relaxed) {
                notes.push(
                    "clean-up skipped: the run was stopped; the keys expire on their own".into(),
                );
            } else {
                notes.push(self.clean_up().await);
            }
        }
        notes.extend(abandoned_note(total.abandoned));
        (total, elapsed, notes)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, (&'static str, String)> {
        let attempt = self
            .client
            .get_multiplexed_async_connection_with_config(&self.connection);
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                // Whatever breaks while connecting (refused, reset, auth) is a connect error.
                let kind = match error_kind(&e) {
                    "auth" => "auth",
                    _ => "connect",
                };
                Err((kind, format!("connecting to Redis: {e}")))
            }
            Err(_) => Err((
                "connect",
                format!("connecting to Redis took over {:?}", self.connect_timeout),
            )),
        }
    }

    /// One worker: its own connection, operations back to back until its share is done,
    /// the duration is over, or the run is stopped.
    async fn worker(self: Arc<Self>, deadline: Option<Instant>, stop: Arc<AtomicBool>) -> OpTally {
        let mut tally = OpTally::new(&names(), false);
        let mut rng = fastrand::Rng::new();
        let mut conn: Option<MultiplexedConnection> = None;
        let mut ever_connected = false;
        let mut key = String::with_capacity(self.namespace.len() + 20);
        let mut done = 0u64;
        while self.operations.is_none_or(|n| done < n)
            && deadline.is_none_or(|d| Instant::now() < d)
            && !stop.load(Ordering::Relaxed)
        {
            done += 1;
            let op = self.mix.pick(&mut rng);
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    let t = Instant::now();
                    let Some(connected) = unless_stopped(&stop, self.connect()).await else {
                        tally.abandoned += 1;
                        break;
                    };
                    match connected {
                        Ok(c) => {
                            ever_connected = true;
                            conn.insert(c)
                        }
                        Err((kind, message)) => {
                            tally.record(op, t.elapsed(), t.elapsed(), Some((kind, &message)));
                            // A server that never answered is not retried: one error per
                            // worker says it all. One that went away mid-run may come back.
                            if !ever_connected {
                                break;
                            }
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                    }
                }
            };
            key.truncate(0);
            key.push_str(&self.namespace);
            key.push_str(&rng.u64(0..self.key_space).to_string());
            let mut cmd = ::redis::cmd(match op {
                GET => "GET",
                SET => "SET",
                _ => "DEL",
            });
            cmd.arg(&key);
            if op == SET {
                cmd.arg(&self.value[..]).arg("PX").arg(self.ttl_ms);
            }
            let t = Instant::now();
            let exchange =
                tokio::time::timeout(self.timeout, cmd.query_async::<::redis::Value>(&mut *c));
            let Some(answer) = unless_stopped(&stop, exchange).await else {
                // The connection has a command in flight: it goes with the worker.
                tally.abandoned += 1;
                break;
            };
            let took = t.elapsed();
            match answer {
                Ok(Ok(_)) => tally.record(op, took, took, None),
                Ok(Err(e)) => {
                    let kind = error_kind(&e);
                    tally.record(op, took, took, Some((kind, &e.to_string())));
                    if matches!(kind, "io" | "connect" | "protocol") {
                        // The connection is not to be trusted any more.
                        conn = None;
                    }
                }
                Err(_) => {
                    let m = format!("no answer within {:?}", self.timeout);
                    tally.record(op, took, took, Some(("timeout", &m)));
                }
            }
        }
        tally
    }

    /// Deletes every key the run may have written; returns a note saying how it went.
    async fn clean_up(&self) -> String {
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err((_, m)) => return format!("clean-up skipped ({m}); the keys expire on their own"),
        };
        let mut deleted = 0u64;
        let mut start = 0;
        while start < self.key_space {
            let end = (start + CLEANUP_BATCH).min(self.key_space);
            let mut cmd = ::redis::cmd("DEL");
            for n in start..end {
                cmd.arg(format!("{}{n}", self.namespace));
            }
            let answer = tokio::time::timeout(
                self.timeout.max(Duration::from_secs(5)),
                cmd.query_async::<u64>(&mut conn),
            )
            .await;
            match answer {
                Ok(Ok(n)) => deleted += n,
                Ok(Err(e)) => {
                    return format!("clean-up failed ({e}); the keys expire on their own")
                }
                Err(_) => return "clean-up timed out; the keys expire on their own".into(),
            }
            start = end;
        }
        format!(
            "clean-up deleted {deleted} key(s) under {}*",
            self.namespace
        )
    }
}

fn names() -> Vec<String> {
    OP_NAMES.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_is_seed_004s() {
        let mix = OperationMix::new(70, 25, 5).unwrap();
        let mut rng = fastrand::Rng::with_seed(4);
        let mut n = [0u32; 3];
        for _ in 0..20_000 {
            n[mix.pick(&mut rng)] += 1;
        }
        // ±1.5 points: more than four standard deviations at 20 000 draws.
        for (got, want) in n.iter().zip([0.70, 0.25, 0.05]) {
            let share = f64::from(*got) / 20_000.0;
            assert!((share - want).abs() < 0.015, "{n:?}");
        }
        assert!(OperationMix::new(0, 0, 0).is_none());
        let only_reads = OperationMix::new(100, 0, 0).unwrap();
        assert!((0..100).all(|_| only_reads.pick(&mut rng) == GET));
    }

    #[test]
    fn redis_defaults_grade_seed_004s_targets() {
        use crate::report::{LatencySummary, Stats};
        let stats = |rps: f64, mean: f64, p99: f64| Stats {
            requests: 1000,
            errors: 0,
            error_rate: 0.0,
            rps,
            offered_rps: None,
            latency_ms: LatencySummary {
                mean,
                p99,
                ..Default::default()
            },
            service_time_ms: LatencySummary::default(),
            failed_latency_ms: None,
            status_codes: Default::default(),
            errors_by_kind: Default::default(),
            error_samples: Default::default(),
            status_classes: Default::default(),
            iterations: Default::default(),
            send_lag_ms: None,
            bytes_received: 0,
            endpoints: Default::default(),
        };
        let t = Default::default();
        let g = |s| grade_with(&t, None, &s, &REDIS_DEFAULTS).grade();
        assert_eq!(g(stats(1500.0, 1.0, 10.0)), verdict::Grade::Good);
        assert_eq!(g(stats(2500.0, 1.0, 10.0)), verdict::Grade::Good);
        assert_eq!(g(stats(900.0, 1.0, 10.0)), verdict::Grade::Warning);
        assert_eq!(g(stats(1500.0, 7.0, 10.0)), verdict::Grade::Warning);
        assert_eq!(g(stats(1500.0, 1.0, 300.0)), verdict::Grade::Critical);
    }
}

//! What the data-store probes (`redis`, `sql`) have in common: a weighted choice of the next
//! operation, and a per-operation tally (HDR latency histograms, counts, errors by kind) that
//! becomes the result document's `stats` block, so the daemon's existing metrics and grades
//! (`plimsoll_latency_seconds`, `plimsoll_throughput_rps`, `plimsoll_error_ratio`) work for
//! them unchanged: an operation or a query is a request, its name the `endpoint`.
//!
//! Memory is fixed by the number of operation names, never by the number of operations. It
//! sends nothing and grades nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::engine::recorder::new_histogram;
use crate::report::{
    error_rate_and_rps, round3, EndpointStats, IterationStats, LatencySummary, Stats,
};

pub use crate::engine::WeightedChoice;

/// Measurements of one operation name.
#[derive(Debug, Clone)]
struct OpRecord {
    /// Successful operations, from the planned start (open model) or the actual start
    /// (closed model).
    latency: Histogram<u64>,
    /// Successful operations, from the actual start, whatever the model.
    service: Histogram<u64>,
    /// Failed operations, from the same start as `latency`: reported apart.
    failed: Histogram<u64>,
    count: u64,
    errors: BTreeMap<&'static str, u64>,
}

/// Everything one worker measured; workers merge theirs at the end of the run.
#[derive(Debug, Clone)]
pub struct OpTally {
    names: Vec<String>,
    ops: Vec<OpRecord>,
    /// The first message seen of each error kind.
    samples: BTreeMap<&'static str, String>,
    /// Open model: lateness of actual starts behind the plan.
    send_lag: Option<Histogram<u64>>,
    /// Open model: arrivals that could not start (the in-flight cap was reached).
    pub dropped: u64,
    /// Operations in flight when the run was stopped, abandoned unanswered.
    pub abandoned: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl OpTally {
    pub fn new(names: &[String], open_model: bool) -> Self {
        OpTally {
            names: names.to_vec(),
            ops: names
                .iter()
                .map(|_| OpRecord {
                    latency: new_histogram(),
                    service: new_histogram(),
                    failed: new_histogram(),
                    count: 0,
                    errors: BTreeMap::new(),
                })
                .collect(),
            samples: BTreeMap::new(),
            send_lag: open_model.then(new_histogram),
            dropped: 0,
            abandoned: 0,
        }
    }

    /// Records one finished operation; `error` is its kind and message when it failed.
    pub fn record(
        &mut self,
        op: usize,
        latency: Duration,
        service: Duration,
        error: Option<(&'static str, &str)>,
    ) {
        let r = &mut self.ops[op];
        r.count += 1;
        if error.is_some() {
            r.failed.saturating_record(micros(latency));
        } else {
            r.latency.saturating_record(micros(latency));
            r.service.saturating_record(micros(service));
        }
        if let Some((kind, message)) = error {
            *r.errors.entry(kind).or_insert(0) += 1;
            self.samples
                .entry(kind)
                .or_insert_with(|| message.to_string());
        }
    }

    /// Records how late an open-model operation started behind its plan.
    pub fn lag(&mut self, lag: Duration) {
        if let Some(h) = &mut self.send_lag {
            h.saturating_record(micros(lag));
        }
    }

    pub fn merge(&mut self, o: &OpTally) {
        for (a, b) in self.ops.iter_mut().zip(&o.ops) {
            // Same bounds on both sides, so `add` cannot fail.
            let _ = a.latency.add(&b.latency);
            let _ = a.service.add(&b.service);
            let _ = a.failed.add(&b.failed);
            a.count += b.count;
            for (k, n) in &b.errors {
                *a.errors.entry(k).or_insert(0) += n;
            }
        }
        for (k, m) in &o.samples {
            self.samples.entry(k).or_insert_with(|| m.clone());
        }
        if let (Some(a), Some(b)) = (&mut self.send_lag, &o.send_lag) {
            let _ = a.add(b);
        }
        self.dropped += o.dropped;
        self.abandoned += o.abandoned;
    }

    /// Operations recorded so far, failed ones included.
    pub fn count(&self) -> u64 {
        self.ops.iter().map(|r| r.count).sum()
    }

    /// Failed operations so far.
    pub fn errors(&self) -> u64 {
        self.ops.iter().flat_map(|r| r.errors.values()).sum()
    }

    /// The `stats` block of the run: `elapsed` is the run's length, `offered` the planned
    /// rate and arrivals of an open-model run.
    pub fn into_stats(self, elapsed: Duration, offered: Option<(u64, f64)>) -> Stats {
        let requests = self.count();
        let errors = self.errors();
        let mut latency = new_histogram();
        let mut service = new_histogram();
        let mut failed = new_histogram();
        let mut errors_by_kind = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for (name, r) in self.names.iter().zip(&self.ops) {
            let _ = latency.add(&r.latency);
            let _ = service.add(&r.service);
            let _ = failed.add(&r.failed);
            for (k, n) in &r.errors {
                *errors_by_kind.entry(k.to_string()).or_insert(0) += n;
            }
            if r.count == 0 {
                continue;
            }
            let e: &mut EndpointStats = endpoints.entry(name.clone()).or_default();
            e.requests += r.count;
            e.errors += r.errors.values().sum::<u64>();
            e.latency_ms = LatencySummary::from_micros(&r.latency);
            for (k, n) in &r.errors {
                *e.errors_by_kind.entry(k.to_string()).or_insert(0) += n;
            }
        }
        let secs = elapsed.as_secs_f64();
        let (error_rate, rps) = error_rate_and_rps(requests, errors, secs);
        Stats {
            requests,
            errors,
            error_rate,
            rps,
            offered_rps: offered.map(|(_, r)| round3(r)),
            latency_ms: LatencySummary::from_micros(&latency),
            service_time_ms: LatencySummary::from_micros(&service),
            failed_latency_ms: (!failed.is_empty()).then(|| LatencySummary::from_micros(&failed)),
            status_codes: BTreeMap::new(),
            errors_by_kind,
            error_samples: self
                .samples
                .into_iter()
                .map(|(k, m)| (k.to_string(), m))
                .collect(),
            status_classes: BTreeMap::new(),
            iterations: IterationStats {
                started: requests,
                completed: requests - errors,
                failed: errors,
                dropped: self.dropped,
                planned: offered.map(|(n, _)| n),
                abandoned: self.abandoned,
                rate_per_s: None,
            },
            send_lag_ms: self.send_lag.as_ref().map(LatencySummary::from_micros),
            bytes_received: 0,
            endpoints,
        }
    }
}

/// A runtime for a probe's own tasks: at most `threads` workers, fewer on a smaller machine.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.min(cores).max(1))
        .enable_all()
        .build()
}

/// How often a waiting exchange looks at the stop flag: the stop contract's reaction time.
pub const STOP_POLL: Duration = Duration::from_millis(20);

/// Resolves once `stop` is set. Every await on a target in a probe races this (through
/// [`unless_stopped`]), so a stopped run returns whatever its target does.
pub async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Runs `work` unless the run is stopped first; `None` means it was abandoned unfinished
/// (dropping it drops its connection, so nothing half-read is ever reused).
pub async fn unless_stopped<F: Future>(stop: &AtomicBool, work: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = work => Some(r),
        () = stopped(stop) => None,
    }
}

/// The note of a stopped run that abandoned `n` exchanges in flight.
pub fn abandoned_note(n: u64) -> Option<String> {
    (n > 0).then(|| format!("{n} exchange(s) in flight abandoned at stop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_maps_draws_to_slices() {
        let c = WeightedChoice::new(&[70, 25, 5]).unwrap();
        assert_eq!(c.pick_at(0), 0);
        assert_eq!(c.pick_at(69), 0);
        assert_eq!(c.pick_at(70), 1);
        assert_eq!(c.pick_at(94), 1);
        assert_eq!(c.pick_at(95), 2);
        assert_eq!(c.pick_at(99), 2);
        // A zero weight is never picked.
        let z = WeightedChoice::new(&[0, 3, 0, 1]).unwrap();
        assert_eq!(z.pick_at(0), 1);
        assert_eq!(z.pick_at(2), 1);
        assert_eq!(z.pick_at(3), 3);
        assert!(WeightedChoice::new(&[0, 0]).is_none());
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let c = WeightedChoice::new(&[70, 25, 5]).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut n = [0u32; 3];
        for _ in 0..100_000 {
            n[c.pick(&mut rng)] += 1;
        }
        // Three standard deviations of a binomial at 100 000 draws are well under 0.5 %.
        for (got, want) in n.iter().zip([70_000, 25_000, 5_000]) {
            assert!((*got as i64 - want).abs() < 500, "{n:?}");
        }
    }

    #[test]
    fn tally_counts_per_name_and_merges() {
        let names = vec!["get".to_string(), "set".to_string()];
        let mut a = OpTally::new(&names, false);
        let ms = Duration::from_millis;
        a.record(0, ms(2), ms(2), None);
        a.record(0, ms(4), ms(4), Some(("timeout", "no answer in 1s")));
        let mut b = OpTally::new(&names, false);
        b.record(1, ms(1), ms(1), Some(("timeout", "later message")));
        b.record(1, ms(1), ms(1), Some(("server", "OOM")));
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.errors(), 3);
        let s = a.into_stats(Duration::from_secs(2), None);
        assert_eq!(s.requests, 4);
        assert_eq!(s.rps, 2.0);
        assert_eq!(s.error_rate, 0.75);
        assert_eq!(s.errors_by_kind["timeout"], 2);
        assert_eq!(s.error_samples["timeout"], "no answer in 1s");
        assert_eq!(s.endpoints["get"].requests, 2);
        assert_eq!(s.endpoints["set"].errors_by_kind["server"], 1);
        // Successful operations only; the failed ones are reported apart.
        assert!((s.endpoints["get"].latency_ms.max - 2.0).abs() < 0.01);
        let failed = s.failed_latency_ms.unwrap();
        assert!((failed.max - 4.0).abs() < 0.01, "{failed:?}");
        assert!(s.send_lag_ms.is_none());
    }
}

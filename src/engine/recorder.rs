//! Per-worker measurements: HDR histograms and counters that a worker owns alone and that are
//! merged once at the end of a run.
//!
//! Memory is fixed by the histograms' range and precision, never by the number of requests.
//! Nothing here is shared between threads, so recording is a few adds and no atomics, except
//! the progress counters that a terminal reads once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::http::ErrorKind;

/// Highest latency a histogram keeps exactly, in microseconds (one hour); larger values are
/// clamped to it and still counted.
const MAX_MICROS: u64 = 3_600_000_000;

/// Upper bounds, in seconds, of the classic histogram buckets kept beside the HDR histograms
/// for the Prometheus exporter (`plimsoll_http_request_duration_seconds`). Fixed, so that
/// series from different runs and replicas add up.
pub const REQUEST_BUCKETS_SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BUCKET_BOUNDS_MICROS: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// Classic (Prometheus-style) bucket counts of one step and status class: one count per
/// bound of [`REQUEST_BUCKETS_SECONDS`] plus the overflow bucket, not cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassicBuckets {
    pub counts: [u64; REQUEST_BUCKETS_SECONDS.len() + 1],
    pub sum_micros: u64,
}

impl ClassicBuckets {
    /// The bucket a latency in microseconds falls in.
    #[inline]
    fn index_of(us: u64) -> usize {
        // A short linear scan: most requests land in the first few buckets.
        BUCKET_BOUNDS_MICROS
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len())
    }

    #[inline]
    fn add_at(&mut self, i: usize, us: u64) {
        self.counts[i] += 1;
        self.sum_micros = self.sum_micros.saturating_add(us);
    }

    pub fn merge(&mut self, o: &ClassicBuckets) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            *a += b;
        }
        self.sum_micros = self.sum_micros.saturating_add(o.sum_micros);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 20 ms is resolved to 20 µs.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds are valid")
}

/// A worker's histogram: the same precision as [`new_histogram`], but it starts covering
/// about 16 ms and grows (a reallocation, a few times per run at most) only as far as the
/// largest value recorded, never past [`MAX_MICROS`] since every record is clamped there.
/// A full-range histogram is 188 KiB of counts; a worker holds three per step, most of which
/// never see a value above a few hundred milliseconds.
fn worker_histogram() -> Histogram<u64> {
    let mut h =
        Histogram::new_with_bounds(1, 16_384, 3).expect("static histogram bounds are valid");
    h.auto(true);
    h
}

/// Latency of one step's requests that ended the same way: the same status code (none when
/// no response came) and the same error kind (none when the request succeeded). OTLP's
/// `http.response.status_code` and `error.type` attributes need this finer split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutcomeBuckets {
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    pub buckets: ClassicBuckets,
}

/// Adds a latency to the entry of its outcome, creating it on first sight. The list is short
/// (a step sees a handful of distinct outcomes), so a linear search beats hashing.
#[inline]
fn add_outcome(
    list: &mut Vec<OutcomeBuckets>,
    status: Option<u16>,
    error: Option<ErrorKind>,
    i: usize,
    us: u64,
) {
    match list
        .iter_mut()
        .find(|o| o.status == status && o.error == error)
    {
        Some(o) => o.buckets.add_at(i, us),
        None => {
            let mut buckets = ClassicBuckets::default();
            buckets.add_at(i, us);
            list.push(OutcomeBuckets {
                status,
                error,
                buckets,
            });
        }
    }
}

/// Index of a status's class in [`StepRecord::status_classes`]: 1..=5 for 1xx..5xx, 0 for a
/// request without a response.
#[inline]
pub fn class_index(status: Option<u16>) -> usize {
    status.map(|c| usize::from(c / 100).min(5)).unwrap_or(0)
}

/// Measurements of one step (the `endpoint` label).
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Latency of successful requests as the user would see it: from the planned send time
    /// in the open model.
    pub latency: Histogram<u64>,
    /// Service time of successful requests: from the actual send to the end of the response.
    pub service: Histogram<u64>,
    /// Latency (as `latency` measures it) of failed requests, kept apart so that a target
    /// that fails fast does not look fast.
    pub failed: Histogram<u64>,
    pub requests: u64,
    /// Requests by status class: index 1..=5 for 1xx..5xx, 0 for no response.
    pub status_classes: [u64; 6],
    pub errors: [u64; ErrorKind::ALL.len()],
    pub bytes: u64,
    /// Latency in classic buckets by exact status code and error kind (status classes and
    /// everything coarser are derived from it).
    pub outcomes: Vec<OutcomeBuckets>,
}

impl StepRecord {
    fn new() -> Self {
        StepRecord {
            latency: worker_histogram(),
            service: worker_histogram(),
            failed: worker_histogram(),
            requests: 0,
            status_classes: [0; 6],
            errors: [0; ErrorKind::ALL.len()],
            bytes: 0,
            outcomes: Vec::new(),
        }
    }

    fn merge(&mut self, o: &StepRecord) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.service.add(&o.service);
        let _ = self.failed.add(&o.failed);
        self.requests += o.requests;
        for (a, b) in self.status_classes.iter_mut().zip(o.status_classes) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(o.errors) {
            *a += b;
        }
        self.bytes += o.bytes;
        for b in &o.outcomes {
            match self
                .outcomes
                .iter_mut()
                .find(|a| a.status == b.status && a.error == b.error)
            {
                Some(a) => a.buckets.merge(&b.buckets),
                None => self.outcomes.push(*b),
            }
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Everything one worker measured.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub steps: Vec<StepRecord>,
    pub iterations_started: u64,
    pub iterations_completed: u64,
    pub iterations_failed: u64,
    /// Planned iterations that could not start because the in-flight cap was reached.
    pub dropped: u64,
    /// Iterations in flight when the run was stopped, abandoned unanswered.
    pub abandoned: u64,
    /// The first error message of each kind, for the summary.
    pub error_samples: [Option<String>; ErrorKind::ALL.len()],
    /// Lateness of actual sends behind their planned time (open model), in microseconds.
    pub send_lag: Histogram<u64>,
}

impl Recorder {
    pub fn new(steps: usize) -> Self {
        Recorder {
            steps: (0..steps).map(|_| StepRecord::new()).collect(),
            iterations_started: 0,
            iterations_completed: 0,
            iterations_failed: 0,
            dropped: 0,
            abandoned: 0,
            error_samples: Default::default(),
            send_lag: worker_histogram(),
        }
    }

    /// Records how late a request went out behind its planned time (open model).
    #[inline]
    pub fn record_send_lag(&mut self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        record(&mut self.send_lag, us);
    }

    /// Records one finished request.
    #[inline]
    pub fn request(
        &mut self,
        step: usize,
        latency: Duration,
        service: Duration,
        status: Option<u16>,
        error: Option<(ErrorKind, &str)>,
        bytes: u64,
    ) {
        let s = &mut self.steps[step];
        let latency_us = micros(latency).min(MAX_MICROS);
        if error.is_none() {
            record(&mut s.latency, latency_us);
            record(&mut s.service, micros(service));
        } else {
            record(&mut s.failed, latency_us);
        }
        s.requests += 1;
        s.bytes += bytes;
        s.status_classes[class_index(status)] += 1;
        let bucket = ClassicBuckets::index_of(latency_us);
        add_outcome(
            &mut s.outcomes,
            status,
            error.map(|(k, _)| k),
            bucket,
            latency_us,
        );
        if let Some((kind, msg)) = error {
            s.errors[kind.index()] += 1;
            let slot = &mut self.error_samples[kind.index()];
            if slot.is_none() {
                *slot = Some(msg.to_string());
            }
        }
    }

    pub fn merge(&mut self, o: &Recorder) {
        for (a, b) in self.steps.iter_mut().zip(&o.steps) {
            a.merge(b);
        }
        self.iterations_started += o.iterations_started;
        self.iterations_completed += o.iterations_completed;
        self.iterations_failed += o.iterations_failed;
        self.dropped += o.dropped;
        self.abandoned += o.abandoned;
        for (a, b) in self.error_samples.iter_mut().zip(&o.error_samples) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
        let _ = self.send_lag.add(&o.send_lag);
    }

    /// All steps' failed requests' latencies in one histogram.
    pub fn total_failed(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in &self.steps {
            let _ = h.add(&s.failed);
        }
        h
    }

    /// All steps' successful requests' latencies in one histogram.
    pub fn total_latency(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in &self.steps {
            let _ = h.add(&s.latency);
        }
        h
    }

    pub fn total_service(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for s in &self.steps {
            let _ = h.add(&s.service);
        }
        h
    }

    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.requests).sum()
    }

    pub fn errors_by_kind(&self) -> [u64; ErrorKind::ALL.len()] {
        let mut out = [0; ErrorKind::ALL.len()];
        for s in &self.steps {
            for (a, b) in out.iter_mut().zip(s.errors) {
                *a += b;
            }
        }
        out
    }
}

/// Records a value in a [`worker_histogram`], growing it if needed. Not `saturating_record`:
/// that clamps to the histogram's current top instead of growing it. Clamped to
/// [`MAX_MICROS`] here instead, so a histogram never grows past the full range; a `u64` count
/// does not overflow in practice, so the only error left (an allocation failure) is ignored.
#[inline]
fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.min(MAX_MICROS));
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Buckets of [`ProgressSlot::latency`]: log-spaced, each bound 1.25 times the one before,
/// from 100 µs (bucket 0 holds everything up to it) to about two minutes (the last bucket
/// holds everything above). A percentile read from them is within 25 % of the truth.
pub const LIVE_LATENCY_BUCKETS: usize = 64;
const LIVE_FIRST_BOUND_MICROS: f64 = 100.0;
const LIVE_GROWTH: f64 = 1.25;

/// The live bucket of a latency in microseconds.
#[inline]
pub fn live_bucket(us: u64) -> usize {
    let x = us as f64 / LIVE_FIRST_BOUND_MICROS;
    if x <= 1.0 {
        return 0;
    }
    ((x.ln() / LIVE_GROWTH.ln()).ceil() as usize).min(LIVE_LATENCY_BUCKETS - 1)
}

/// Upper bound of a live bucket, in microseconds.
pub fn live_bucket_bound_micros(i: usize) -> f64 {
    LIVE_FIRST_BOUND_MICROS * LIVE_GROWTH.powi(i as i32)
}

/// The `q` quantile of live bucket counts in milliseconds (the upper bound of the bucket that
/// holds it); `None` when nothing was counted.
pub fn live_quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    counts
        .iter()
        .position(|n| {
            seen += n;
            seen >= rank
        })
        .map(|i| live_bucket_bound_micros(i) / 1000.0)
}

/// Live counters for a progress display, one cache line per worker so workers never contend.
#[derive(Debug)]
#[repr(align(64))]
pub struct ProgressSlot {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Latency of the successful requests (from the planned send time), in the log-spaced
    /// buckets of [`live_bucket`]: lets a reader (the fault probe) take a percentile of any
    /// stretch of time by differencing two reads.
    pub latency: [AtomicU64; LIVE_LATENCY_BUCKETS],
}

impl Default for ProgressSlot {
    fn default() -> Self {
        ProgressSlot {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Most windows [`Progress::with_send_windows`] allocates: each costs every worker about
/// half a KiB, so this bounds the memory to a few MiB per worker (an hour at 250 ms windows
/// would be 14 400).
pub const MAX_SEND_WINDOWS: usize = 8192;

/// One worker's counters of the requests planned to be sent in one window, one cache line
/// aligned so neighbouring windows of different workers never share one.
#[derive(Debug)]
#[repr(align(64))]
pub struct SendWindowSlot {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Latency of the successful requests, in the buckets of [`live_bucket`].
    pub latency: [AtomicU64; LIVE_LATENCY_BUCKETS],
}

impl Default for SendWindowSlot {
    fn default() -> Self {
        SendWindowSlot {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The counts of one window by planned send time, every worker added.
#[derive(Debug, Clone, PartialEq)]
pub struct SendWindowCounts {
    pub requests: u64,
    pub errors: u64,
    pub latency: [u64; LIVE_LATENCY_BUCKETS],
}

impl Default for SendWindowCounts {
    fn default() -> Self {
        SendWindowCounts {
            requests: 0,
            errors: 0,
            latency: [0; LIVE_LATENCY_BUCKETS],
        }
    }
}

/// Windows by planned send time: a finished request counts in window
/// `(planned − t0) / window`, however late it ends. Each worker has its own row, allocated
/// before the run; a request costs two or three uncontended atomic adds.
#[derive(Debug)]
pub struct SendWindows {
    t0: Instant,
    window: Duration,
    count: usize,
    /// One row of `count` windows per worker.
    rows: Vec<Box<[SendWindowSlot]>>,
}

impl SendWindows {
    /// The window of a planned send time, if it lies in the allocated span.
    #[inline]
    fn index(&self, planned: Instant) -> Option<usize> {
        // Before t0 (the engine's head start is after it, so never in practice): window 0.
        let since = planned.saturating_duration_since(self.t0);
        let k = (since.as_nanos() / self.window.as_nanos().max(1)) as usize;
        (k < self.count).then_some(k)
    }

    /// Window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Number of windows allocated.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Every window's counts, every worker added.
    pub fn counts(&self) -> Vec<SendWindowCounts> {
        let mut out = vec![SendWindowCounts::default(); self.count];
        for row in &self.rows {
            for (o, w) in out.iter_mut().zip(row.iter()) {
                o.requests += w.requests.load(Ordering::Relaxed);
                o.errors += w.errors.load(Ordering::Relaxed);
                for (a, b) in o.latency.iter_mut().zip(&w.latency) {
                    *a += b.load(Ordering::Relaxed);
                }
            }
        }
        out
    }
}

/// Progress of a running load, readable from another thread.
#[derive(Debug)]
pub struct Progress {
    pub slots: Vec<ProgressSlot>,
    /// Windows by planned send time, for a reader that asked for them (the fault probe).
    pub by_send: Option<SendWindows>,
}

impl Progress {
    pub fn new(workers: usize) -> Self {
        Progress {
            slots: (0..workers).map(|_| ProgressSlot::default()).collect(),
            by_send: None,
        }
    }

    /// Progress that also counts requests by the window of their planned send time:
    /// `count` windows of `window` from `t0` (at least one, at most [`MAX_SEND_WINDOWS`];
    /// requests planned past the last are not counted there).
    pub fn with_send_windows(workers: usize, t0: Instant, window: Duration, count: usize) -> Self {
        let count = count.clamp(1, MAX_SEND_WINDOWS);
        let window = window.max(Duration::from_micros(1));
        let mut p = Progress::new(workers);
        p.by_send = Some(SendWindows {
            t0,
            window,
            count,
            rows: (0..workers)
                .map(|_| (0..count).map(|_| SendWindowSlot::default()).collect())
                .collect(),
        });
        p
    }

    /// Records a finished request of worker `worker`: planned (or sent) at `planned`, ended
    /// after `latency` counted from it, failed or not. Abandoned exchanges are not finished
    /// and not recorded.
    #[inline]
    pub fn record(&self, worker: usize, planned: Instant, latency: Duration, failed: bool) {
        let slot = &self.slots[worker];
        let bucket =
            (!failed).then(|| live_bucket(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)));
        if let Some(b) = bucket {
            slot.latency[b].fetch_add(1, Ordering::Relaxed);
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(w) = &self.by_send {
            if let Some(k) = w.index(planned) {
                let win = &w.rows[worker][k];
                if let Some(b) = bucket {
                    win.latency[b].fetch_add(1, Ordering::Relaxed);
                }
                win.requests.fetch_add(1, Ordering::Relaxed);
                if failed {
                    win.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts of the successful requests' latency per live bucket so far, every worker added.
    pub fn latency_buckets(&self) -> [u64; LIVE_LATENCY_BUCKETS] {
        let mut out = [0u64; LIVE_LATENCY_BUCKETS];
        for s in &self.slots {
            for (o, c) in out.iter_mut().zip(&s.latency) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// (requests, errors) so far.
    pub fn totals(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(r, e), s| {
            (
                r + s.requests.load(Ordering::Relaxed),
                e + s.errors.load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_in_the_window_of_its_planned_send() {
        let t0 = Instant::now();
        let w = Duration::from_millis(250);
        let p = Progress::with_send_windows(2, t0, w, 10);
        // Planned in window 2, ended in window 5 (a timeout 800 ms later): window 2.
        let planned = t0 + w * 2 + Duration::from_millis(10);
        p.record(0, planned, Duration::from_millis(800), true);
        // Planned in window 2 by the other worker, a success ending in window 3.
        p.record(1, planned, Duration::from_millis(300), false);
        // Planned past the last window: counted in the totals only.
        p.record(1, t0 + w * 10, Duration::from_millis(1), false);
        let c = p.by_send.as_ref().unwrap().counts();
        assert_eq!(c.len(), 10);
        assert_eq!((c[2].requests, c[2].errors), (2, 1));
        assert_eq!(c[2].latency[live_bucket(300_000)], 1);
        assert_eq!(c[2].latency.iter().sum::<u64>(), 1);
        for (k, x) in c.iter().enumerate() {
            if k != 2 {
                assert_eq!(x, &SendWindowCounts::default(), "window {k}");
            }
        }
        assert_eq!(p.totals(), (3, 1));
        assert_eq!(p.latency_buckets().iter().sum::<u64>(), 2);
        // Absurd counts are clamped.
        let p = Progress::with_send_windows(1, t0, w, usize::MAX);
        assert_eq!(p.by_send.unwrap().count(), MAX_SEND_WINDOWS);
    }

    #[test]
    fn worker_histograms_grow_only_as_far_as_needed_and_clamp_at_an_hour() {
        let mut r = Recorder::new(1);
        let ms = Duration::from_millis;
        r.request(0, ms(5), ms(5), Some(200), None, 0);
        r.record_send_lag(Duration::ZERO);
        assert!(r.steps[0].latency.high() < 100_000, "starts small");
        r.request(0, Duration::from_secs(7200), ms(5), Some(200), None, 0);
        let h = &r.steps[0].latency;
        assert_eq!(h.max(), h.highest_equivalent(MAX_MICROS));
        assert_eq!(r.send_lag.min(), 0);
        // A full-range histogram takes the worker's in a merge.
        let mut total = Recorder::new(1);
        total.merge(&r);
        assert_eq!(total.total_latency().len(), 2);
    }

    #[test]
    fn merge_adds_counts_and_keeps_percentiles() {
        let mut a = Recorder::new(1);
        let mut b = Recorder::new(1);
        for ms in 1..=100 {
            a.request(
                0,
                Duration::from_millis(ms),
                Duration::from_millis(ms),
                Some(200),
                None,
                10,
            );
        }
        b.request(
            0,
            Duration::from_secs(2),
            Duration::from_secs(2),
            None,
            Some((ErrorKind::Timeout, "late")),
            0,
        );
        a.merge(&b);
        assert_eq!(a.requests(), 101);
        assert_eq!(a.errors_by_kind()[ErrorKind::Timeout.index()], 1);
        assert_eq!(
            a.error_samples[ErrorKind::Timeout.index()].as_deref(),
            Some("late")
        );
        // The timeout is kept apart from the successful requests' latency.
        let h = a.total_latency();
        assert_eq!(h.len(), 100);
        assert_eq!(h.max(), h.highest_equivalent(100_000));
        let p50 = h.value_at_quantile(0.5) as f64 / 1000.0;
        assert!((p50 - 50.0).abs() < 0.1, "{p50}");
        let failed = a.total_failed();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed.max(), failed.highest_equivalent(2_000_000));
        assert_eq!(a.steps[0].status_classes[2], 100);
        assert_eq!(a.steps[0].status_classes[0], 1);
        // By exact outcome: the 200s and the timeout apart, each in classic buckets.
        let outcomes = &a.steps[0].outcomes;
        assert_eq!(outcomes.len(), 2);
        assert_eq!((outcomes[0].status, outcomes[0].error), (Some(200), None));
        assert_eq!(
            (outcomes[1].status, outcomes[1].error),
            (None, Some(ErrorKind::Timeout))
        );
        // 1..=100 ms land at or under the 0.1 s bound, 2 s under 2.5 s.
        let ok = &outcomes[0].buckets;
        assert_eq!(ok.count(), 100);
        assert_eq!(ok.counts[0], 1); // 1 ms <= 0.001 s
        assert_eq!(ok.counts[..=6].iter().sum::<u64>(), 100);
        assert_eq!(outcomes[1].buckets.counts[10], 1); // 2 s: (1, 2.5] s
        assert_eq!(ok.sum_micros, (1..=100).map(|m| m * 1000).sum::<u64>());
        assert_eq!(class_index(Some(204)), 2);
        assert_eq!(class_index(Some(503)), 5);
        assert_eq!(class_index(None), 0);
    }
}

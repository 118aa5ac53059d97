//! The regression detector: one figure of one probe (p99, rps, error rate…), one run at a
//! time, against a robust rolling baseline of the same configuration's earlier runs.
//!
//! It must not read the store, build metric names or decide grades: it turns a series of
//! numbers into a [`FigureState`], and the callers store, export and grade.
//!
//! # Method: a one-sided CUSUM on log values, with a robust, lagged, frozen baseline
//!
//! Run-to-run noise on load figures is multiplicative (a p99 of 40 ms moves by ±4 ms, one of
//! 400 ms by ±40 ms) and skewed, so every value is taken as its logarithm: noise becomes
//! roughly symmetric with a constant spread, and a shift becomes a ratio ("+35 %") whatever
//! the figure's unit.
//!
//! - **Baseline.** The last [`DetectorSettings::window`] runs that were judged in control
//!   give a location and a scale: values winsorized at the median ± 3 MAD, then their mean
//!   and standard deviation. The median and MAD make one wild run harmless; the mean and SD
//!   of the winsorized values keep most of the efficiency that a bare median/MAD would lose
//!   (a MAD over 50 runs has a ±18 % error, enough to double the false alerts). The scale has
//!   a floor ([`DetectorSettings::min_scale`]) so a figure that never moves (a race win rate
//!   of exactly 1) does not turn a rounding difference into an alert.
//! - **Lag.** A run joins the baseline only [`DetectorSettings::guard`] runs later, and those
//!   waiting runs are thrown away when an alert opens: the first runs of a regression, which
//!   happen before anything could notice, do not drag the baseline towards themselves.
//! - **Frozen while open.** While an alert is open nothing joins the baseline, so a lasting
//!   regression stays open until the figure returns or someone `accept`s the new level.
//! - **Evidence.** Each run's standardized deviation `z` (signed so that "worse" is positive:
//!   latency and errors up, throughput and win rate down) feeds a one-sided CUSUM
//!   `S = max(0, S + z − k)`; the alert opens when `S > h`. CUSUM is the optimal sequential
//!   test for a persistent step change (Lorden, Moustakides): it accumulates small,
//!   consistent evidence that a per-run threshold would need a hair trigger to see, and
//!   forgets noise at a rate `k` per run.
//! - **One bad run never fires.** A run beyond [`DetectorSettings::outlier`] σ (6 σ: a
//!   3× run at 10 % noise is 11 σ, a 50 % shift 4 σ) is held back and only counts once the
//!   next run confirms it (is itself beyond [`DetectorSettings::confirm`] σ); it then weighs
//!   no more than the run that confirmed it. An unconfirmed outlier is dropped: it neither
//!   moves `S` nor enters the baseline. And every alert needs an excursion of at least two
//!   runs, so no single run, however extreme, opens one.
//! - **Short baselines are distrusted.** The scale is widened by
//!   `1 + small_sample / n` for a baseline of `n` runs: a scale estimated from 20 runs is
//!   ±16 % wrong, and an underestimate doubles the false alerts of a fresh series.
//! - **Clearing.** While open, a second CUSUM `T = max(0, T + r − z)` with `r` half the
//!   current estimated shift (at least `k`) measures evidence that the figure is back; the
//!   alert clears when `T > clear_threshold`, i.e. after several runs near the baseline,
//!   not after one lucky run.
//! - **Series.** The detector only ever sees one configuration fingerprint since the last
//!   `accept`: the store hands it that series, so a configuration change starts a new
//!   baseline (a warm-up of [`DetectorSettings::min_reference`] runs) instead of alerting.
//!
//! Mann-Whitney with a Hodges-Lehmann shift was the alternative: it is distribution-free
//! but compares two windows, so it needs a window of regressed runs (6–12) before it can say
//! anything, which loses the 50 %-in-3-runs target, and re-testing after every run needs a
//! multiple-testing correction that CUSUM has built in.
//!
//! # What it reaches
//!
//! Generated series (`tests/baseline/simulation.rs`, printed by its `detection_delay_table`
//! test; seeded, log-normal noise at 10 % CV, one figure per run, 60 steady runs before the
//! shift, default settings, 1,000 trials per row; a false alert before the shift counts as
//! a miss). Delay = runs until the alert opens, counting the first shifted run as 1:
//!
//! | shift (σ of the log) | ≤ 3 runs | ≤ 6 runs | ≤ 12 runs | ≤ 20 runs | median delay | required |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | 10 % (0.95 σ) | 0.9 % | 11.1 % | 43.2 % | 66.8 % | 14 | — |
//! | 15 % (1.40 σ) | 4.4 % | 35.9 % | **82.9 %** | 96.3 % | 8 | ≥ 75 % within 12 |
//! | 25 % (2.24 σ) | 27.8 % | **88.6 %** | 98.5 % | 98.7 % | 4 | ≥ 85 % within 6 |
//! | 50 % (4.06 σ) | **96.7 %** | 98.7 % | 98.7 % | 98.7 % | 2 | ≥ 95 % within 3 |
//!
//! False alerts on steady series (warm-up included): 0.39 per 1,000 runs over 200,000 runs
//! (the test), 0.46 per 1,000 over 1,000,000 runs (required ≤ 1). After a single 3× outlier
//! in 1,000 steady series, the next 20 runs open as many alerts as without it (9 and 9: the
//! base rate). A 30 % rise opens in about 3 runs, stays open while it lasts and clears about
//! 6 runs after the figure returns.
//!
//! The trade-off is the usual one: `threshold` 5 and `slack` 0.6 alert less (0.3 per 1,000)
//! but find 15 % in 12 runs only 78 % of the time; `threshold` 5 with `slack` 0.5 finds it
//! faster but cries wolf at 1 per 1,000.

use std::collections::VecDeque;

/// Which way a figure gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Latency, error rate, recovery time: a rise is a regression.
    HigherIsWorse,
    /// Throughput, win rate, delivery ratio: a fall is a regression.
    LowerIsWorse,
}

impl Direction {
    /// The direction of a headline figure by its name, for the figures Plimsoll records:
    /// throughput (`rps`, `*_rps`, `throughput*`), ratios of success (`*win*`, `*success*`,
    /// `*delivery*`, `*single_winner*`) and `breaking_point*` get worse when they fall;
    /// everything else (latencies, error rates, times) when it rises.
    pub fn of_figure(name: &str) -> Direction {
        let n = name.to_ascii_lowercase();
        let lower_is_worse = n == "rps"
            || n.ends_with("_rps")
            || n.starts_with("rps_")
            || n.contains("throughput")
            || n.contains("breaking_point")
            || n.contains("win")
            || n.contains("success")
            || n.contains("delivery")
            || n.contains("ops_per_s");
        if lower_is_worse {
            Direction::LowerIsWorse
        } else {
            Direction::HigherIsWorse
        }
    }

    fn sign(self) -> f64 {
        match self {
            Direction::HigherIsWorse => 1.0,
            Direction::LowerIsWorse => -1.0,
        }
    }
}

/// How one figure's values are read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FigureSpec {
    /// Which way is worse.
    pub direction: Direction,
    /// Values below this are taken as this (logarithms need a positive value, and an error
    /// rate going from 0 to 0.0001 is not worth an alert).
    pub floor: f64,
}

impl FigureSpec {
    /// The spec of a headline figure by its name: [`Direction::of_figure`], and a floor of
    /// 0.001 for ratios and rates of failure (`*error*`, `*ratio*`, `*lost*`, `*multiple*`),
    /// 1e-9 otherwise.
    pub fn of_figure(name: &str) -> FigureSpec {
        let n = name.to_ascii_lowercase();
        let floor = if n.contains("error")
            || n.contains("ratio")
            || n.contains("lost")
            || n.contains("multiple")
        {
            0.001
        } else {
            1e-9
        };
        FigureSpec {
            direction: Direction::of_figure(name),
            floor,
        }
    }
}

/// Tuning of the detector; the defaults meet the targets in the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    /// Runs in the rolling baseline.
    pub window: usize,
    /// Runs needed in the baseline before anything is judged (the warm-up of a new series).
    pub min_reference: usize,
    /// Runs a run waits before it joins the baseline.
    pub guard: usize,
    /// CUSUM slack `k`, in baseline standard deviations: evidence a run must exceed to count.
    pub slack: f64,
    /// CUSUM decision threshold `h`, in baseline standard deviations.
    pub threshold: f64,
    /// A run further than this (σ) from the baseline is an outlier held for confirmation.
    pub outlier: f64,
    /// The run after an outlier confirms it when it is itself beyond this (σ).
    pub confirm: f64,
    /// Evidence of return (σ) that clears an open alert.
    pub clear_threshold: f64,
    /// Smallest scale of the log values (0.02 ≈ 2 % run-to-run noise).
    pub min_scale: f64,
    /// Smallest relative shift worth an alert, whatever the noise (0.05 = 5 %).
    pub min_shift: f64,
    /// Widening of the scale for a short baseline: σ × (1 + small_sample / n), so the
    /// first runs of a series, judged against few others, do not cry wolf.
    pub small_sample: f64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            window: 100,
            min_reference: 20,
            guard: 8,
            slack: 0.5,
            threshold: 5.5,
            outlier: 6.0,
            confirm: 3.0,
            clear_threshold: 6.0,
            min_scale: 0.02,
            min_shift: 0.05,
            small_sample: 10.0,
        }
    }
}

/// Where a figure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegressionState {
    /// Not enough runs of this series yet to judge.
    Warmup,
    /// In line with the baseline.
    Ok,
    /// A regression alert is open.
    Open,
}

impl RegressionState {
    /// `warmup`, `ok`, `open`: the name used in the result document.
    pub fn as_str(self) -> &'static str {
        match self {
            RegressionState::Warmup => "warmup",
            RegressionState::Ok => "ok",
            RegressionState::Open => "open",
        }
    }
}

/// A change of state caused by the latest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// This run opened a regression alert.
    Opened,
    /// This run cleared the open alert.
    Cleared,
}

/// The detector's judgement after the latest run.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureState {
    /// Warm-up, ok or open.
    pub state: RegressionState,
    /// Set when this run changed the state.
    pub transition: Option<Transition>,
    /// The baseline level in the figure's unit (the exponential of the baseline's log
    /// location: a robust geometric mean); `None` during warm-up.
    pub baseline: Option<f64>,
    /// The current level: while open, the median of the runs since the regression began;
    /// otherwise the latest run.
    pub current: f64,
    /// The latest run's value.
    pub latest: f64,
    /// `current / baseline − 1`: +0.35 is 35 % up, whatever the direction.
    pub shift_ratio: Option<f64>,
    /// The CUSUM statistic `S` (σ units); the alert opens above `threshold`.
    pub statistic: f64,
    /// The decision threshold `h` the statistic is compared with.
    pub threshold: f64,
    /// Index (into the values observed) of the first run of the open regression, as the
    /// CUSUM estimates it.
    pub onset: Option<usize>,
    /// Runs observed in this series.
    pub runs: usize,
}

/// The incremental detector for one series (one probe, figure and fingerprint since the last
/// accept). Feed it every run in order with [`observe`](Self::observe), or replay a stored
/// history with [`RegressionDetector::replay`].
#[derive(Debug, Clone)]
pub struct RegressionDetector {
    settings: DetectorSettings,
    spec: FigureSpec,
    /// In-control log values, oldest first, at most `window`.
    reference: VecDeque<f64>,
    /// Log values waiting `guard` runs before they join `reference`.
    waiting: VecDeque<f64>,
    /// Baseline location and scale of `reference` (recomputed when it changes).
    location: f64,
    scale: f64,
    /// CUSUM of regression evidence.
    s: f64,
    /// Where the current CUSUM excursion began (index of the run).
    excursion: Option<usize>,
    /// An outlier waiting for confirmation: its oriented z and log value.
    held: Option<(f64, f64)>,
    /// Open alert: its onset, the log values since it, and the return evidence `T`.
    open: Option<OpenAlert>,
    runs: usize,
    latest: f64,
}

#[derive(Debug, Clone)]
struct OpenAlert {
    onset: usize,
    since: VecDeque<f64>,
    t: f64,
}

impl RegressionDetector {
    /// A detector for a new series.
    pub fn new(settings: DetectorSettings, spec: FigureSpec) -> Self {
        RegressionDetector {
            reference: VecDeque::with_capacity(settings.window + 1),
            waiting: VecDeque::with_capacity(settings.guard + 1),
            settings,
            spec,
            location: 0.0,
            scale: 0.0,
            s: 0.0,
            excursion: None,
            held: None,
            open: None,
            runs: 0,
            latest: f64::NAN,
        }
    }

    /// Replays a whole series (oldest first) and returns the state after its last run.
    /// `None` for an empty series.
    pub fn replay(
        settings: &DetectorSettings,
        spec: FigureSpec,
        values: impl IntoIterator<Item = f64>,
    ) -> Option<FigureState> {
        let mut d = RegressionDetector::new(settings.clone(), spec);
        let mut last = None;
        for v in values {
            last = Some(d.observe(v));
        }
        last
    }

    /// Whether an alert is open now.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the next run's value and returns the state after it. Values that are not
    /// finite are ignored (the state is returned unchanged).
    pub fn observe(&mut self, value: f64) -> FigureState {
        if !value.is_finite() {
            return self.state(None);
        }
        let index = self.runs;
        self.runs += 1;
        self.latest = value;
        let y = value.max(self.spec.floor).max(f64::MIN_POSITIVE).ln();

        if self.reference.len() < self.settings.min_reference {
            // Warm-up: nothing can be judged yet, and there is no regression to guard the
            // baseline against.
            self.push_reference(y);
            return self.state(None);
        }

        let sigma = self.scale;
        let z = self.spec.direction.sign() * (y - self.location) / sigma;
        // The slack in σ: at least half the smallest shift worth an alert.
        let k = self
            .settings
            .slack
            .max((1.0 + self.settings.min_shift).ln() / 2.0 / sigma);

        if let Some(open) = &mut self.open {
            open.since.push_back(y);
            if open.since.len() > self.settings.window {
                open.since.pop_front();
            }
            let level = median(open.since.iter().copied());
            let shift = self.spec.direction.sign() * (level - self.location) / sigma;
            let r = (shift / 2.0).max(k);
            open.t = (open.t + r - z.min(self.settings.outlier)).max(0.0);
            if open.t > self.settings.clear_threshold && z < r {
                self.open = None;
                self.s = 0.0;
                self.excursion = None;
                self.held = None;
                self.waiting.clear();
                return self.state(Some(Transition::Cleared));
            }
            return self.state(None);
        }

        let (zs, ys): (Vec<f64>, Vec<f64>) = match self.held.take() {
            Some((zh, yh)) if z > self.settings.confirm => {
                // Confirmed: the outlier counts, but for no more than its confirmation.
                (vec![zh.min(z), z], vec![yh, y])
            }
            _ if z > self.settings.outlier => {
                // Hold it (an unconfirmed earlier outlier is dropped).
                self.held = Some((z, y));
                return self.state(None);
            }
            _ => (vec![z], vec![y]),
        };

        let start = index + 1 - zs.len();
        for (i, z) in zs.iter().enumerate() {
            let z = z.max(-self.settings.outlier);
            let before = self.s;
            self.s = (self.s + z - k).max(0.0);
            if before == 0.0 && self.s > 0.0 {
                self.excursion = Some(start + i);
            } else if self.s == 0.0 {
                self.excursion = None;
            }
        }
        // Every alert needs at least two runs of evidence.
        let two_runs = self.excursion.is_some_and(|e| e < index);
        if self.s > self.settings.threshold && two_runs {
            let onset = self.excursion.unwrap_or(index);
            let since: VecDeque<f64> = ys.iter().copied().collect();
            // The runs that waited to join the baseline may already be regressed.
            self.waiting.clear();
            self.open = Some(OpenAlert {
                onset,
                since,
                t: 0.0,
            });
            return self.state(Some(Transition::Opened));
        }
        for y in ys {
            self.waiting.push_back(y);
        }
        while self.waiting.len() > self.settings.guard {
            let y = self.waiting.pop_front().expect("non-empty");
            self.push_reference(y);
        }
        self.state(None)
    }

    fn push_reference(&mut self, y: f64) {
        self.reference.push_back(y);
        if self.reference.len() > self.settings.window {
            self.reference.pop_front();
        }
        let (location, scale) = robust_location_scale(self.reference.make_contiguous());
        self.location = location;
        let n = self.reference.len() as f64;
        self.scale = (scale * (1.0 + self.settings.small_sample / n)).max(self.settings.min_scale);
    }

    fn state(&self, transition: Option<Transition>) -> FigureState {
        let warm = self.reference.len() >= self.settings.min_reference;
        let baseline = warm.then(|| self.location.exp());
        let (state, current, onset) = match &self.open {
            Some(open) => (
                RegressionState::Open,
                median(open.since.iter().copied()).exp(),
                Some(open.onset),
            ),
            None if warm => (RegressionState::Ok, self.latest, None),
            None => (RegressionState::Warmup, self.latest, None),
        };
        FigureState {
            state,
            transition,
            baseline,
            current,
            latest: self.latest,
            shift_ratio: baseline.map(|b| current / b - 1.0),
            statistic: self.s,
            threshold: self.settings.threshold,
            onset,
            runs: self.runs,
        }
    }
}

/// Winsorized mean and standard deviation: values beyond the median ± 3 MAD (scaled to σ)
/// are pulled in to that bound first.
fn robust_location_scale(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let m = median(values.iter().copied());
    let mad = 1.4826 * median(values.iter().map(|v| (v - m).abs()));
    let (lo, hi) = (m - 3.0 * mad, m + 3.0 * mad);
    let clipped = values.iter().map(|v| v.clamp(lo, hi));
    let mean = clipped.clone().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = clipped.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Winsorizing a normal sample at 3σ keeps 99.5 % of its variance.
    (mean, (var / 0.995).sqrt())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Percentage mode: the latest run against a pinned baseline run (seed 000's "baseline vs
/// current, improvement %"), no statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct PercentageComparison {
    /// The pinned baseline's value.
    pub baseline: f64,
    /// The current run's value.
    pub current: f64,
    /// `current / baseline − 1` (signed: +0.10 is 10 % up).
    pub change_ratio: f64,
    /// How much better (positive) or worse (negative) the figure got, as a ratio, in its
    /// direction: seed 000's "improvement %" divided by 100.
    pub improvement_ratio: f64,
    /// `Open` when worse than the tolerance allows, else `Ok`.
    pub state: RegressionState,
}

impl PercentageComparison {
    /// Compares `current` with `baseline`; a change worse than `tolerance` (0.10 = 10 %) in
    /// the figure's bad direction is a regression. A baseline of 0 compares through
    /// `spec.floor`.
    pub fn compare(spec: FigureSpec, baseline: f64, current: f64, tolerance: f64) -> Self {
        let b = baseline.max(spec.floor);
        let c = current.max(spec.floor);
        let change_ratio = c / b - 1.0;
        let improvement_ratio = -spec.direction.sign() * change_ratio;
        let state = if improvement_ratio < -tolerance {
            RegressionState::Open
        } else {
            RegressionState::Ok
        };
        PercentageComparison {
            baseline,
            current,
            change_ratio,
            improvement_ratio,
            state,
        }
    }
}

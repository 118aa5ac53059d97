//! Thresholds and grades: turns measured numbers into excellent / good / warning / critical.
//!
//! The defaults are the breaking points of the seed documents (DESIGN.md, "Grades"); every
//! threshold can be replaced per probe. A run's grade is its worst metric's grade. This module
//! computes; it never measures and never emits metrics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// A grade, from best to worst. The order matters: a run takes the maximum of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    Excellent,
    Good,
    Warning,
    Critical,
}

impl Grade {
    /// Value of the `plimsoll_probe_grade` gauge: 0 excellent … 3 critical.
    pub fn as_number(self) -> u8 {
        self as u8
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Excellent => "excellent",
            Grade::Good => "good",
            Grade::Warning => "warning",
            Grade::Critical => "critical",
        }
    }
    /// Process exit code of `plimsoll once` for this grade.
    pub fn exit_code(self) -> i32 {
        match self {
            Grade::Excellent | Grade::Good => 0,
            Grade::Warning => 1,
            Grade::Critical => 2,
        }
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds of one metric's grade bands. For a lower-is-better metric (latency, error rate):
/// below `excellent` is excellent, below `good` is good, up to `warning` is warning, above is
/// critical. For a higher-is-better metric (throughput) the comparisons turn around. A band
/// left out does not exist (the seed table gives p99 no excellent band).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    /// Bound of the excellent band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excellent: Option<f64>,
    /// Bound of the good band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<f64>,
    /// Bound of the warning band; beyond it is critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
}

impl Bands {
    pub const fn new(excellent: Option<f64>, good: Option<f64>, warning: Option<f64>) -> Self {
        Bands {
            excellent,
            good,
            warning,
        }
    }

    /// Grade of a value where lower is better.
    pub fn grade_lower_better(&self, v: f64) -> Grade {
        if self.excellent.is_some_and(|b| v < b) {
            Grade::Excellent
        } else if self.good.is_some_and(|b| v < b) {
            Grade::Good
        } else if self.warning.is_some_and(|b| v <= b) {
            Grade::Warning
        } else if self.good.is_none() && self.warning.is_none() && self.excellent.is_none() {
            Grade::Good
        } else {
            Grade::Critical
        }
    }

    /// Grade of a value where higher is better.
    pub fn grade_higher_better(&self, v: f64) -> Grade {
        if self.excellent.is_some_and(|b| v > b) {
            Grade::Excellent
        } else if self.good.is_some_and(|b| v >= b) {
            Grade::Good
        } else if self.warning.is_some_and(|b| v >= b) {
            Grade::Warning
        } else if self.good.is_none() && self.warning.is_none() && self.excellent.is_none() {
            Grade::Good
        } else {
            Grade::Critical
        }
    }

    fn validate(&self, path: &str, lower_better: bool, problems: &mut Problems) {
        let bounds = [self.excellent, self.good, self.warning];
        for b in bounds.iter().flatten() {
            if !b.is_finite() || *b < 0.0 {
                problems.push(path, "bounds must be finite numbers of 0 or more");
                return;
            }
        }
        let present: Vec<f64> = bounds.iter().flatten().copied().collect();
        let ordered = present.windows(2).all(|w| {
            if lower_better {
                w[0] <= w[1]
            } else {
                w[0] >= w[1]
            }
        });
        if !ordered {
            let how = if lower_better { "increase" } else { "decrease" };
            problems.push(
                path,
                format!("bounds must {how} from excellent to good to warning"),
            );
        }
    }
}

/// Per-probe threshold overrides. Each field replaces the default bands of its metric.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Achieved requests per second (higher is better). Default: seed table, or `target_rps`.
    #[serde(default)]
    pub rps: Option<Bands>,
    /// Error ratio, 0 to 1 (lower is better). Default: good < 0.001, warning ≤ 0.01.
    #[serde(default)]
    pub error_rate: Option<Bands>,
    /// 99th percentile latency in ms. Default: good < 500, warning ≤ 2000.
    #[serde(default)]
    pub p99_ms: Option<Bands>,
    /// Median latency in ms. No default.
    #[serde(default)]
    pub p50_ms: Option<Bands>,
    /// 95th percentile latency in ms. No default.
    #[serde(default)]
    pub p95_ms: Option<Bands>,
    /// 99.9th percentile latency in ms. No default.
    #[serde(default)]
    pub p999_ms: Option<Bands>,
    /// Mean latency in ms. No default.
    #[serde(default)]
    pub mean_ms: Option<Bands>,
    /// Share of planned iterations that could not start (open model), 0 to 1. Default: good
    /// < 0.001, warning ≤ 0.05.
    #[serde(default)]
    pub dropped_ratio: Option<Bands>,
    /// Race: share of rounds with exactly one winner, 0 to 1 (higher is better). Default:
    /// good ≥ 0.99, warning ≥ 0.95.
    #[serde(default)]
    pub win_rate: Option<Bands>,
    /// Race: share of rounds with several winners, 0 to 1 (lower is better). Default:
    /// excellent only when none (< 1e-9), warning ≤ 0.01.
    #[serde(default)]
    pub race_rate: Option<Bands>,
    /// Race: 99th percentile of a round's race time in ms. Default: excellent < 100, good
    /// < 500, warning ≤ 1000.
    #[serde(default)]
    pub race_time_p99_ms: Option<Bands>,
    /// Race with verification: share of rounds where the database disagreed with the API, 0
    /// to 1. Default: the `race_rate` defaults.
    #[serde(default)]
    pub verify_mismatch_rate: Option<Bands>,
    /// Pub/sub: delivered / expected deliveries, 0 to 1 (higher is better). Default:
    /// excellent when every message arrived, good ≥ 0.99, warning ≥ 0.95.
    #[serde(default)]
    pub delivery_ratio: Option<Bands>,
    /// Pub/sub: duplicate deliveries / expected deliveries (lower is better). Default:
    /// excellent only when none, good < 0.001, warning ≤ 0.01.
    #[serde(default)]
    pub duplicate_ratio: Option<Bands>,
    /// Pub/sub: deliveries that arrived after a later message / expected deliveries (lower
    /// is better). Default: as `duplicate_ratio`.
    #[serde(default)]
    pub out_of_order_ratio: Option<Bands>,
    /// Pub/sub: 95th percentile of the end-to-end delivery latency in ms. Default: good
    /// < 100, warning ≤ 300.
    #[serde(default)]
    pub delivery_p95_ms: Option<Bands>,
    /// Pub/sub: 99th percentile of the end-to-end delivery latency in ms. Default: good
    /// < 200, warning ≤ 1000.
    #[serde(default)]
    pub delivery_p99_ms: Option<Bands>,
}

impl ThresholdsConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let lower = [
            ("error_rate", self.error_rate),
            ("p99_ms", self.p99_ms),
            ("p50_ms", self.p50_ms),
            ("p95_ms", self.p95_ms),
            ("p999_ms", self.p999_ms),
            ("mean_ms", self.mean_ms),
            ("dropped_ratio", self.dropped_ratio),
            ("race_rate", self.race_rate),
            ("race_time_p99_ms", self.race_time_p99_ms),
            ("verify_mismatch_rate", self.verify_mismatch_rate),
            ("duplicate_ratio", self.duplicate_ratio),
            ("out_of_order_ratio", self.out_of_order_ratio),
            ("delivery_p95_ms", self.delivery_p95_ms),
            ("delivery_p99_ms", self.delivery_p99_ms),
        ];
        for (name, b) in lower {
            if let Some(b) = b {
                b.validate(&format!("{path}.{name}"), true, problems);
            }
        }
        if let Some(b) = self.rps {
            b.validate(&format!("{path}.rps"), false, problems);
        }
        for (name, b) in [
            ("win_rate", self.win_rate),
            ("delivery_ratio", self.delivery_ratio),
        ] {
            if let Some(b) = b {
                b.validate(&format!("{path}.{name}"), false, problems);
            }
        }
    }
}

/// The seed table's throughput bands: excellent > 1000, good ≥ 500, warning ≥ 100.
pub const DEFAULT_RPS: Bands = Bands::new(Some(1000.0), Some(500.0), Some(100.0));
/// The seed table's p99 bands in ms: good < 500, warning ≤ 2000.
pub const DEFAULT_P99_MS: Bands = Bands::new(None, Some(500.0), Some(2000.0));
/// The seed table's error-rate bands: good < 0.1 %, warning ≤ 1 %.
pub const DEFAULT_ERROR_RATE: Bands = Bands::new(None, Some(0.001), Some(0.01));
/// Dropped iterations: good < 0.1 %, warning ≤ 5 %.
pub const DEFAULT_DROPPED_RATIO: Bands = Bands::new(None, Some(0.001), Some(0.05));

/// Race, rounds with exactly one winner (seed 000): good above 99 %, warning from 95 %.
pub const DEFAULT_WIN_RATE: Bands = Bands::new(None, Some(0.99), Some(0.95));
/// Race, rounds with several winners (seed 000): excellent only at 0 % (the bound is below
/// one round in a billion), warning up to 1 %, critical above: one double acceptance in a
/// hundred rounds is a data-integrity failure.
pub const DEFAULT_RACE_RATE: Bands = Bands::new(Some(1e-9), None, Some(0.01));
/// Race time p99 in ms: seed 000 fixes excellent below 100 ms and critical above 1000 ms; the
/// good band ends at 500 ms, the seed's p99 bound for an ordinary request.
pub const DEFAULT_RACE_TIME_P99_MS: Bands = Bands::new(Some(100.0), Some(500.0), Some(1000.0));

/// Redis workload (seed 004's benchmark): its "target latency 5 ms average" is the good bound;
/// the 50 ms average it reports as the pre-optimization state is where warning ends.
pub const DEFAULT_REDIS_MEAN_MS: Bands = Bands::new(None, Some(5.0), Some(50.0));
/// Redis workload p99 in ms: seed 004's "maximum latency 50 ms P99" is the good bound; its
/// pre-optimization 200 ms (P95) is where warning ends.
pub const DEFAULT_REDIS_P99_MS: Bands = Bands::new(None, Some(50.0), Some(200.0));
/// Redis workload: seed 004's "minimum throughput 1000 ops/second", scaled like a stated
/// `target_rps` (excellent above 2000, warning down to 200).
pub const DEFAULT_REDIS_OPS: f64 = 1000.0;
/// SQL probe without a rate or `target_rps`: seed 003's reporting endpoints aim at 100 QPS.
pub const DEFAULT_SQL_QPS: f64 = 100.0;

/// Pub/sub delivery ratio. Seed 003 passes a run at "> 95 %" delivered: below that is
/// critical. A monitor should speak up well before the pass line, so a run that lost more
/// than 1 % is a warning, and only a run that lost nothing at all is excellent (the bound
/// sits below one loss in a million deliveries).
pub const DEFAULT_DELIVERY_RATIO: Bands = Bands::new(Some(0.999_999), Some(0.99), Some(0.95));
/// Pub/sub duplicates and out-of-order deliveries, per expected delivery: a healthy channel
/// has none (excellent); one in a thousand is still good, one in a hundred a warning.
pub const DEFAULT_DELIVERY_ANOMALY_RATIO: Bands = Bands::new(Some(1e-9), Some(0.001), Some(0.01));
/// Pub/sub end-to-end p95 in ms: seed 003's "p95 < 100 ms" is good; three times that warns.
pub const DEFAULT_DELIVERY_P95_MS: Bands = Bands::new(None, Some(100.0), Some(300.0));
/// Pub/sub end-to-end p99 in ms: seed 003's "p99 < 200 ms" is good; a second is critical.
pub const DEFAULT_DELIVERY_P99_MS: Bands = Bands::new(None, Some(200.0), Some(1000.0));

/// Throughput bands for a stated target: the seed table scaled so that its "good" bound (500)
/// falls on the target: excellent above 2×, warning down to a fifth.
pub fn rps_bands_for_target(target: f64) -> Bands {
    Bands::new(Some(2.0 * target), Some(target), Some(target / 5.0))
}

/// Throughput bands for an open-model run held to its own plan: it cannot exceed the plan, so
/// there is no excellent band; within 5 % of the plan is good, half of it a warning.
pub fn rps_bands_for_plan(offered: f64) -> Bands {
    Bands::new(None, Some(0.95 * offered), Some(0.5 * offered))
}

/// One graded metric, as it appears in the result document's `thresholds` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub metric: String,
    pub value: f64,
    pub grade: Grade,
    /// The bands the value was held to.
    pub bands: Bands,
}

/// Grades accumulated over a run's metrics.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub results: Vec<ThresholdResult>,
    /// Reasons that force the grade regardless of thresholds (no request completed, …).
    pub forced: Vec<(Grade, String)>,
}

impl Verdict {
    pub fn lower_better(&mut self, metric: &str, value: f64, bands: Bands) {
        self.results.push(ThresholdResult {
            metric: metric.to_string(),
            value,
            grade: bands.grade_lower_better(value),
            bands,
        });
    }
    pub fn higher_better(&mut self, metric: &str, value: f64, bands: Bands) {
        self.results.push(ThresholdResult {
            metric: metric.to_string(),
            value,
            grade: bands.grade_higher_better(value),
            bands,
        });
    }
    pub fn force(&mut self, grade: Grade, why: impl Into<String>) {
        self.forced.push((grade, why.into()));
    }
    /// The run's grade: its worst metric's. A run with nothing graded is critical, since it
    /// proved nothing.
    pub fn grade(&self) -> Grade {
        let worst = self
            .results
            .iter()
            .map(|r| r.grade)
            .chain(self.forced.iter().map(|f| f.0))
            .max();
        worst.unwrap_or(Grade::Critical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_table_bands() {
        assert_eq!(DEFAULT_RPS.grade_higher_better(1500.0), Grade::Excellent);
        assert_eq!(DEFAULT_RPS.grade_higher_better(1000.0), Grade::Good);
        assert_eq!(DEFAULT_RPS.grade_higher_better(500.0), Grade::Good);
        assert_eq!(DEFAULT_RPS.grade_higher_better(499.0), Grade::Warning);
        assert_eq!(DEFAULT_RPS.grade_higher_better(99.9), Grade::Critical);
        assert_eq!(DEFAULT_P99_MS.grade_lower_better(499.0), Grade::Good);
        assert_eq!(DEFAULT_P99_MS.grade_lower_better(500.0), Grade::Warning);
        assert_eq!(DEFAULT_P99_MS.grade_lower_better(2000.0), Grade::Warning);
        assert_eq!(DEFAULT_P99_MS.grade_lower_better(2000.1), Grade::Critical);
        assert_eq!(DEFAULT_ERROR_RATE.grade_lower_better(0.0), Grade::Good);
        assert_eq!(DEFAULT_ERROR_RATE.grade_lower_better(0.005), Grade::Warning);
        assert_eq!(DEFAULT_ERROR_RATE.grade_lower_better(0.02), Grade::Critical);
    }

    #[test]
    fn run_grade_is_the_worst_metric_and_empty_is_critical() {
        let mut v = Verdict::default();
        assert_eq!(v.grade(), Grade::Critical);
        v.higher_better("rps", 2000.0, DEFAULT_RPS);
        assert_eq!(v.grade(), Grade::Excellent);
        v.lower_better("p99", 700.0, DEFAULT_P99_MS);
        assert_eq!(v.grade(), Grade::Warning);
        v.force(Grade::Critical, "no request completed");
        assert_eq!(v.grade(), Grade::Critical);
    }

    #[test]
    fn race_defaults_follow_seed_000() {
        let w = DEFAULT_WIN_RATE;
        assert_eq!(w.grade_higher_better(1.0), Grade::Good);
        assert_eq!(w.grade_higher_better(0.99), Grade::Good);
        assert_eq!(w.grade_higher_better(0.97), Grade::Warning);
        assert_eq!(w.grade_higher_better(0.94), Grade::Critical);
        let r = DEFAULT_RACE_RATE;
        assert_eq!(r.grade_lower_better(0.0), Grade::Excellent);
        assert_eq!(r.grade_lower_better(1.0 / 500.0), Grade::Warning);
        assert_eq!(r.grade_lower_better(0.01), Grade::Warning);
        assert_eq!(r.grade_lower_better(0.011), Grade::Critical);
        let t = DEFAULT_RACE_TIME_P99_MS;
        assert_eq!(t.grade_lower_better(99.0), Grade::Excellent);
        assert_eq!(t.grade_lower_better(300.0), Grade::Good);
        assert_eq!(t.grade_lower_better(800.0), Grade::Warning);
        assert_eq!(t.grade_lower_better(1000.1), Grade::Critical);
    }

    #[test]
    fn store_defaults_follow_seeds_003_and_004() {
        assert_eq!(DEFAULT_REDIS_MEAN_MS.grade_lower_better(4.9), Grade::Good);
        assert_eq!(
            DEFAULT_REDIS_MEAN_MS.grade_lower_better(6.0),
            Grade::Warning
        );
        assert_eq!(DEFAULT_REDIS_P99_MS.grade_lower_better(49.0), Grade::Good);
        assert_eq!(
            DEFAULT_REDIS_P99_MS.grade_lower_better(250.0),
            Grade::Critical
        );
        let ops = rps_bands_for_target(DEFAULT_REDIS_OPS);
        assert_eq!(ops.grade_higher_better(999.0), Grade::Warning);
        assert_eq!(ops.grade_higher_better(1000.0), Grade::Good);
        let d = DEFAULT_DELIVERY_RATIO;
        assert_eq!(d.grade_higher_better(1.0), Grade::Excellent);
        assert_eq!(d.grade_higher_better(0.999), Grade::Good);
        assert_eq!(d.grade_higher_better(0.96), Grade::Warning);
        assert_eq!(d.grade_higher_better(0.949), Grade::Critical);
        let a = DEFAULT_DELIVERY_ANOMALY_RATIO;
        assert_eq!(a.grade_lower_better(0.0), Grade::Excellent);
        assert_eq!(a.grade_lower_better(0.0005), Grade::Good);
        assert_eq!(a.grade_lower_better(0.02), Grade::Critical);
    }

    #[test]
    fn target_rps_scales_the_table() {
        let b = rps_bands_for_target(50.0);
        assert_eq!(b.grade_higher_better(49.0), Grade::Warning);
        assert_eq!(b.grade_higher_better(50.0), Grade::Good);
        assert_eq!(b.grade_higher_better(101.0), Grade::Excellent);
        assert_eq!(b.grade_higher_better(9.0), Grade::Critical);
    }

    #[test]
    fn misordered_bounds_are_reported() {
        let mut p = Problems::default();
        let t = ThresholdsConfig {
            p99_ms: Some(Bands::new(None, Some(900.0), Some(100.0))),
            ..Default::default()
        };
        t.validate("probe[0].thresholds", &mut p);
        let errs = p.into_errors();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "probe[0].thresholds.p99_ms");
    }
}

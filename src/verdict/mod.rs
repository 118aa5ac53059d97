//! Thresholds and grades: turns measured numbers into excellent / good / warning / critical.
//!
//! The defaults are the breaking points of the seed documents (DESIGN.md, "Grades"); every
//! threshold can be replaced per probe. A run's grade is its worst metric's grade. This module
//! computes; it never measures and never emits metrics.

use serde::{Deserialize, Serialize};

pub use crate::config::{Bands, Grade, ThresholdsConfig};
use crate::stats::Stats;

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
    /// Whether lower values are better (latency, errors) or higher (throughput).
    #[serde(default)]
    pub lower_better: bool,
    /// This metric set the run's grade (the first of the worst).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decides: bool,
}

impl ThresholdResult {
    /// The band the value fell in, in words: `good (< 500)` or `warning (500–2000)`.
    pub fn band_text(&self) -> String {
        format!(
            "{} ({})",
            self.grade,
            band_range(&self.bands, self.grade, self.lower_better)
        )
    }

    /// The value with the metric's unit (`52.1 ms`, `0.20 %`, `480 req/s`).
    pub fn value_text(&self) -> String {
        with_unit(&self.metric, self.value)
    }
}

/// Formats a number without trailing zeros (`500`, `0.001`, `2.5`), to at most 3 decimals.
pub fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "0" || t == "-0" {
            format!("{v:.2e}")
        } else {
            t.to_string()
        }
    }
}

/// A metric's value with its unit, ratios as percentages.
pub fn with_unit(metric: &str, v: f64) -> String {
    if metric.ends_with("_rate") || metric.ends_with("_ratio") {
        format!("{} %", number(v * 100.0))
    } else if metric == "rps" || metric.ends_with("_per_s") || metric.ends_with("ops") {
        format!("{}/s", number(v))
    } else if metric.starts_with('p') && metric[1..].chars().all(|c| c.is_ascii_digit())
        || metric.ends_with("_ms")
        || metric == "mean"
    {
        format!("{} ms", number(v))
    } else {
        number(v)
    }
}

/// The range of `grade`'s band in `bands`, in words (`< 500`, `500–2000`, `> 2000`).
pub fn band_range(bands: &Bands, grade: Grade, lower_better: bool) -> String {
    let (lt, gt) = if lower_better { ("<", ">") } else { (">", "<") };
    let (ex, good, warn) = (bands.excellent, bands.good, bands.warning);
    let range = |a: f64, b: f64| format!("{}–{}", number(a.min(b)), number(a.max(b)));
    let text = match grade {
        Grade::Excellent => ex.map(|b| format!("{lt} {}", number(b))),
        Grade::Good => match (ex, good) {
            (Some(e), Some(g)) => Some(range(e, g)),
            (None, Some(g)) => Some(format!("{lt} {}", number(g))),
            (Some(e), None) => Some(format!("not {lt} {}", number(e))),
            (None, None) => None,
        },
        Grade::Warning => match (good.or(ex), warn) {
            (Some(g), Some(w)) => Some(range(g, w)),
            (None, Some(w)) => Some(format!("up to {}", number(w))),
            (Some(g), None) => Some(format!("beyond {}", number(g))),
            (None, None) => None,
        },
        Grade::Critical => warn.or(good).or(ex).map(|b| format!("{gt} {}", number(b))),
    };
    text.unwrap_or_else(|| "no bounds".into())
}

/// Grades accumulated over a run's metrics.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub results: Vec<ThresholdResult>,
    /// Reasons that force the grade regardless of thresholds (no request completed, …).
    pub forced: Vec<(Grade, String)>,
    /// Figures left ungraded on purpose and why (a closed-model run's throughput without a
    /// `target_rps`): part of the grade's reason, never of the grade.
    pub remarks: Vec<String>,
}

impl Verdict {
    pub fn lower_better(&mut self, metric: &str, value: f64, bands: Bands) {
        self.results.push(ThresholdResult {
            metric: metric.to_string(),
            value,
            grade: bands.grade_lower_better(value),
            bands,
            lower_better: true,
            decides: false,
        });
    }
    pub fn higher_better(&mut self, metric: &str, value: f64, bands: Bands) {
        self.results.push(ThresholdResult {
            metric: metric.to_string(),
            value,
            grade: bands.grade_higher_better(value),
            bands,
            lower_better: false,
            decides: false,
        });
    }
    /// A figure reported but deliberately not graded, with why (shown in the grade's reason).
    pub fn remark(&mut self, why: impl Into<String>) {
        self.remarks.push(why.into());
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

    /// Marks the metric that decided the grade (the first of the worst; none when a forced
    /// reason is at least as bad) and says in one sentence why the run got its grade.
    pub fn decide(&mut self) -> String {
        let grade = self.grade();
        let forced = self.forced.iter().find(|f| f.0 == grade);
        let mut reason = match forced {
            Some((g, why)) => format!("{g}: {why}"),
            None => match self.results.iter_mut().find(|r| r.grade == grade) {
                Some(r) => {
                    r.decides = true;
                    let mut t = format!(
                        "{grade}: {} {} is in its {grade} band ({})",
                        r.metric,
                        r.value_text(),
                        band_range(&r.bands, r.grade, r.lower_better)
                    );
                    if grade == Grade::Good && r.bands.excellent.is_none() {
                        t.push_str(&format!(
                            " and {} has no excellent band, so good is the best it can grade",
                            r.metric
                        ));
                    }
                    t
                }
                None => format!("{grade}: nothing was graded"),
            },
        };
        for r in &self.remarks {
            reason.push_str("; ");
            reason.push_str(r);
        }
        reason
    }
}

/// Default bands of the metrics every request-counting kind is graded on, where its
/// thresholds say nothing.
#[derive(Debug, Clone, Copy)]
pub struct StatDefaults {
    /// Throughput when the probe states no `target_rps` and has no planned rate; `None`
    /// leaves such a run's throughput ungraded (a closed model's rate is the target's answer
    /// to its users, not a figure with an absolute meaning).
    pub rps: Option<Bands>,
    pub p99_ms: Bands,
    /// Mean latency, graded only where a seed names it (Redis: 5 ms).
    pub mean_ms: Option<Bands>,
}

/// The seed table of DESIGN.md, for HTTP load, without its absolute throughput bands: a
/// closed-model run is graded on throughput only against a stated `target_rps`.
pub const HTTP_DEFAULTS: StatDefaults = StatDefaults {
    rps: None,
    p99_ms: DEFAULT_P99_MS,
    mean_ms: None,
};

/// Grades a run's statistics against the probe's thresholds and the seed defaults.
pub fn grade_http(t: &ThresholdsConfig, target_rps: Option<f64>, s: &Stats) -> Verdict {
    grade_with(t, target_rps, s, &HTTP_DEFAULTS)
}

/// Grades a run's statistics against the probe's thresholds and the given defaults.
pub fn grade_with(
    t: &ThresholdsConfig,
    target_rps: Option<f64>,
    s: &Stats,
    defaults: &StatDefaults,
) -> Verdict {
    let mut v = Verdict::default();
    if s.requests == 0 {
        v.force(Grade::Critical, "no request completed");
        return v;
    }
    // Throughput: an explicit band, a stated target, the run's own plan, or the kind's
    // default. A flow's plan counts iterations, so its iterations are compared with it.
    match (t.rps, target_rps, s.offered_rps, s.iterations.rate_per_s) {
        (Some(b), ..) => v.higher_better("rps", s.rps, b),
        (None, Some(target), ..) => v.higher_better("rps", s.rps, rps_bands_for_target(target)),
        (None, None, Some(offered), Some(iter_rate)) => {
            v.higher_better("iterations_per_s", iter_rate, rps_bands_for_plan(offered))
        }
        (None, None, Some(offered), None) => {
            v.higher_better("rps", s.rps, rps_bands_for_plan(offered))
        }
        (None, None, None, _) => match defaults.rps {
            Some(b) => v.higher_better("rps", s.rps, b),
            None => v.remark(format!(
                "throughput ({} req/s) not graded: a closed-model run without `target_rps`",
                number(s.rps)
            )),
        },
    }
    // The headline latency is that of successful requests; a run where none succeeded has
    // no latency to grade (its error rate says the rest).
    let succeeded = s.requests > s.errors;
    if succeeded {
        v.lower_better("p99", s.latency_ms.p99, t.p99_ms.unwrap_or(defaults.p99_ms));
    }
    v.lower_better(
        "error_rate",
        s.error_rate,
        t.error_rate.unwrap_or(DEFAULT_ERROR_RATE),
    );
    let optional = [
        ("p50", t.p50_ms, s.latency_ms.p50),
        ("p95", t.p95_ms, s.latency_ms.p95),
        ("p999", t.p999_ms, s.latency_ms.p999),
        ("mean", t.mean_ms.or(defaults.mean_ms), s.latency_ms.mean),
    ];
    for (name, bands, value) in optional {
        if let Some(b) = bands.filter(|_| succeeded) {
            v.lower_better(name, value, b);
        }
    }
    if let Some(planned) = s.iterations.planned.filter(|n| *n > 0) {
        let ratio = s.iterations.dropped as f64 / planned as f64;
        v.lower_better(
            "dropped_ratio",
            ratio,
            t.dropped_ratio.unwrap_or(DEFAULT_DROPPED_RATIO),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Problems;

    #[test]
    fn the_reason_names_the_deciding_figure_and_its_band() {
        let mut v = Verdict::default();
        v.lower_better("p99", 52.1, DEFAULT_P99_MS);
        v.lower_better("error_rate", 0.0, DEFAULT_ERROR_RATE);
        let why = v.decide();
        assert_eq!(
            why,
            "good: p99 52.1 ms is in its good band (< 500) and p99 has no excellent band, \
             so good is the best it can grade"
        );
        assert!(v.results[0].decides && !v.results[1].decides);
        let mut v = Verdict::default();
        v.lower_better("p99", 52.1, DEFAULT_P99_MS);
        v.lower_better("error_rate", 0.005, DEFAULT_ERROR_RATE);
        v.remark("throughput not graded");
        assert_eq!(
            v.decide(),
            "warning: error_rate 0.5 % is in its warning band (0.001–0.01); throughput not graded"
        );
        assert!(v.results[1].decides);
        assert_eq!(v.results[1].band_text(), "warning (0.001–0.01)");
        let r = rps_bands_for_plan(100.0);
        assert_eq!(band_range(&r, Grade::Critical, false), "< 50");
        assert_eq!(band_range(&r, Grade::Good, false), "> 95");
    }

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

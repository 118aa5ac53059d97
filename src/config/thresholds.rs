//! Grade thresholds as configured: the grade scale, the bands of one metric and a probe's
//! per-metric overrides.
//!
//! This module describes and checks thresholds; grading a run (`verdict`) and the defaults of
//! the design's table live there, not here.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Problems;

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
    /// A ready set of thresholds for a deployment size (seed 001): `development`, `staging`,
    /// `production` or `enterprise`. It fills `rps`, `p99_ms` and `win_rate` where they are
    /// not given here.
    #[serde(default)]
    pub profile: Option<Profile>,
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

/// Seed 001's "performance targets by deployment size".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A single server: webhook RPS > 100, p99 < 2000 ms, vendor win rate > 99 %.
    Development,
    /// 2–3 servers: RPS > 200, p99 < 1000 ms, win rate 100 %.
    Staging,
    /// 5+ servers: RPS > 500, p99 < 500 ms, win rate 100 %.
    Production,
    /// 10+ servers: RPS > 1000, p99 < 200 ms, win rate 100 %.
    Enterprise,
}

impl Profile {
    /// The seed's targets: (requests per second, p99 in ms, least share of single winners).
    pub fn targets(self) -> (f64, f64, f64) {
        match self {
            Profile::Development => (100.0, 2000.0, 0.99),
            Profile::Staging => (200.0, 1000.0, 1.0),
            Profile::Production => (500.0, 500.0, 1.0),
            Profile::Enterprise => (1000.0, 200.0, 1.0),
        }
    }

    /// The profile's bands. Throughput: the target is the good bound, twice it excellent, a
    /// fifth of it the end of warning (the design table's shape: 500 / 1000 / 100). p99: the
    /// target is the good bound and four times it the end of warning (the table's 500 / 2000).
    /// Win rate: the target is the good bound (100 % means not one round lost, below one in
    /// a billion), and 95 % ends warning as in the design table.
    pub fn bands(self) -> (Bands, Bands, Bands) {
        let (rps, p99, win) = self.targets();
        (
            Bands::new(Some(2.0 * rps), Some(rps), Some(rps / 5.0)),
            Bands::new(None, Some(p99), Some(4.0 * p99)),
            Bands::new(None, Some(win.min(1.0 - 1e-9)), Some(0.95)),
        )
    }
}

impl ThresholdsConfig {
    /// Fills what the profile sets and the probe did not.
    pub fn apply_profile(&mut self) {
        if let Some(p) = self.profile {
            let (rps, p99, win) = p.bands();
            self.rps.get_or_insert(rps);
            self.p99_ms.get_or_insert(p99);
            self.win_rate.get_or_insert(win);
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_fill_only_what_the_probe_left_out() {
        let mut t: ThresholdsConfig =
            toml::from_str("profile = \"production\"\np99_ms = { good = 300.0 }").unwrap();
        t.apply_profile();
        assert_eq!(t.p99_ms.unwrap().good, Some(300.0));
        let rps = t.rps.unwrap();
        assert_eq!(rps.grade_higher_better(499.0), Grade::Warning);
        assert_eq!(rps.grade_higher_better(500.0), Grade::Good);
        let mut t: ThresholdsConfig = toml::from_str("profile = \"enterprise\"").unwrap();
        t.apply_profile();
        assert_eq!(t.p99_ms.unwrap().grade_lower_better(250.0), Grade::Warning);
        assert_eq!(t.win_rate.unwrap().grade_higher_better(1.0), Grade::Good);
        assert_eq!(
            t.win_rate.unwrap().grade_higher_better(0.999),
            Grade::Warning
        );
        let e = toml::from_str::<ThresholdsConfig>("profile = \"huge\"").unwrap_err();
        assert!(e.to_string().contains("development"), "{e}");
    }
}

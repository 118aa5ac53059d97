//! Settings of the rolling baseline (`[baseline]`): where runs are stored, how long they are
//! kept, and how regressions are judged.
//!
//! This module only reads and checks; the store and the detector live in `src/baseline/`,
//! which turns these settings into its own types.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{HumanDuration, Problems};

/// The `[baseline]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// Whether runs are stored and judged at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The store: `postgres://user@host/db` for PostgreSQL, `sqlite:PATH` or a plain path
    /// for an SQLite file. Default: none, which means `plimsoll.db` in the state directory.
    #[serde(default)]
    pub store: Option<String>,
    /// Where runs wait while the store cannot take them. Default: beside the SQLite file
    /// (`plimsoll.db.spool`), or `spool` in the state directory for PostgreSQL.
    #[serde(default)]
    pub spool_dir: Option<String>,
    /// Newest runs kept per probe.
    #[serde(default = "default_retention_runs")]
    pub retention_runs: u32,
    /// Runs older than this are deleted (per probe, whichever limit comes first).
    #[serde(default = "default_retention_age")]
    pub retention_age: HumanDuration,
    /// Bound of one store operation; past it the run is spooled instead.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// `"detect"`: a CUSUM detector against the rolling baseline of earlier runs.
    /// `"percentage"`: each run against the pinned baseline run, by `percentage_tolerance`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// In `percentage` mode, how much worse than the pinned baseline (0.10 = 10 %) a figure
    /// may get before it counts as a regression.
    #[serde(default = "default_percentage_tolerance")]
    pub percentage_tolerance: f64,
    /// The least grade of a run with a figure in an open regression: `"warning"` or
    /// `"critical"`, or `"none"` to report regressions without changing grades.
    #[serde(default = "default_grade_on_regression")]
    pub grade_on_regression: String,
    /// Headline figures to judge (`p99`, `rps`, `error_rate`…). Default: empty, all of them.
    #[serde(default)]
    pub figures: Vec<String>,
    /// Settings of the `detect` mode; the defaults meet the targets in the detector's docs.
    #[serde(default)]
    pub detector: BaselineDetectorConfig,
    /// Settings of single probes, by probe name (`[baseline.probes.checkout]`).
    #[serde(default)]
    pub probes: BTreeMap<String, ProbeBaselineConfig>,
}

/// One probe's own baseline settings (`[baseline.probes.NAME]`); what is left out follows
/// `[baseline]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeBaselineConfig {
    /// Whether this probe's runs are judged against its baseline (they are stored anyway
    /// while `[baseline]` is enabled).
    #[serde(default)]
    pub judge: Option<bool>,
    /// The least grade of this probe's run with a figure in an open regression: `"warning"`,
    /// `"critical"` or `"none"`.
    #[serde(default)]
    pub grade_on_regression: Option<String>,
    /// Headline figures of this probe to judge; empty: as `[baseline].figures`.
    #[serde(default)]
    pub figures: Vec<String>,
}

/// The `[baseline.detector]` table (CUSUM on log values; see `src/baseline/detector.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineDetectorConfig {
    /// Runs in the rolling baseline.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Runs of a new series (new configuration or after `accept`) before it is judged.
    #[serde(default = "default_min_runs")]
    pub min_runs: u32,
    /// CUSUM slack `k` in baseline standard deviations.
    #[serde(default = "default_slack")]
    pub slack: f64,
    /// CUSUM threshold `h` in baseline standard deviations: higher alerts later and less often.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Smallest relative shift worth an alert, however quiet the figure (0.05 = 5 %).
    #[serde(default = "default_min_shift")]
    pub min_shift: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            enabled: default_enabled(),
            store: None,
            spool_dir: None,
            retention_runs: default_retention_runs(),
            retention_age: default_retention_age(),
            timeout: default_timeout(),
            mode: default_mode(),
            percentage_tolerance: default_percentage_tolerance(),
            grade_on_regression: default_grade_on_regression(),
            figures: Vec::new(),
            detector: BaselineDetectorConfig::default(),
            probes: BTreeMap::new(),
        }
    }
}

impl Default for BaselineDetectorConfig {
    fn default() -> Self {
        BaselineDetectorConfig {
            window: default_window(),
            min_runs: default_min_runs(),
            slack: default_slack(),
            threshold: default_threshold(),
            min_shift: default_min_shift(),
        }
    }
}

fn default_enabled() -> bool {
    true
}
fn default_retention_runs() -> u32 {
    500
}
fn default_retention_age() -> HumanDuration {
    HumanDuration::from_secs(90 * 24 * 3600)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_mode() -> String {
    "detect".to_string()
}
fn default_percentage_tolerance() -> f64 {
    0.10
}
fn default_grade_on_regression() -> String {
    "warning".to_string()
}
fn default_window() -> u32 {
    100
}
fn default_min_runs() -> u32 {
    20
}
fn default_slack() -> f64 {
    0.5
}
fn default_threshold() -> f64 {
    5.5
}
fn default_min_shift() -> f64 {
    0.05
}

impl BaselineConfig {
    /// Checks what types alone cannot; `path` is the table's path (`baseline`).
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if let Some(store) = &self.store {
            let ok = store.starts_with("postgres://")
                || store.starts_with("postgresql://")
                || !(store.trim().is_empty() || store.contains("://"));
            if !ok {
                problems.push(
                    format!("{path}.store"),
                    format!(
                        "{store:?} is neither postgres://… nor an SQLite path (sqlite:PATH or PATH)"
                    ),
                );
            }
        }
        if self.retention_runs < 2 {
            problems.push(
                format!("{path}.retention_runs"),
                "must be at least 2 (the detector needs history)",
            );
        }
        if self.retention_age.is_zero() {
            problems.push(format!("{path}.retention_age"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if !matches!(self.mode.as_str(), "detect" | "percentage") {
            problems.push(
                format!("{path}.mode"),
                format!("{:?} is not one of \"detect\", \"percentage\"", self.mode),
            );
        }
        if !(self.percentage_tolerance.is_finite() && self.percentage_tolerance >= 0.0) {
            problems.push(
                format!("{path}.percentage_tolerance"),
                "must be a ratio of 0 or more (0.10 = 10 %)",
            );
        }
        check_grade(
            &self.grade_on_regression,
            &format!("{path}.grade_on_regression"),
            problems,
        );
        check_figures(&self.figures, &format!("{path}.figures"), problems);
        for (name, p) in &self.probes {
            let pp = format!("{path}.probes.{name}");
            if let Some(g) = &p.grade_on_regression {
                check_grade(g, &format!("{pp}.grade_on_regression"), problems);
            }
            check_figures(&p.figures, &format!("{pp}.figures"), problems);
        }
        let d = &self.detector;
        let dp = format!("{path}.detector");
        if d.window < 10 {
            problems.push(format!("{dp}.window"), "must be at least 10");
        }
        if d.min_runs < 5 || d.min_runs > d.window {
            problems.push(
                format!("{dp}.min_runs"),
                format!("must be between 5 and window ({})", d.window),
            );
        }
        if !(d.slack.is_finite() && d.slack >= 0.0) {
            problems.push(format!("{dp}.slack"), "must be 0 or more");
        }
        if !(d.threshold.is_finite() && d.threshold > 0.0) {
            problems.push(format!("{dp}.threshold"), "must be greater than 0");
        }
        if !(d.min_shift.is_finite() && d.min_shift >= 0.0) {
            problems.push(format!("{dp}.min_shift"), "must be 0 or more");
        }
    }
}

impl BaselineConfig {
    /// The least grade of a regressed run of `probe` (`warning`, `critical`, `none`).
    pub fn grade_on_regression_of(&self, probe: &str) -> &str {
        self.probes
            .get(probe)
            .and_then(|p| p.grade_on_regression.as_deref())
            .unwrap_or(&self.grade_on_regression)
    }

    /// Whether runs of `probe` are judged against its baseline.
    pub fn judges(&self, probe: &str) -> bool {
        self.enabled && self.probes.get(probe).and_then(|p| p.judge).unwrap_or(true)
    }

    /// The figures of `probe` to judge; empty means all of them.
    pub fn figures_of(&self, probe: &str) -> &[String] {
        match self.probes.get(probe) {
            Some(p) if !p.figures.is_empty() => &p.figures,
            _ => &self.figures,
        }
    }
}

fn check_grade(grade: &str, path: &str, problems: &mut Problems) {
    if !matches!(grade, "warning" | "critical" | "none") {
        problems.push(
            path,
            format!("{grade:?} is not one of \"warning\", \"critical\", \"none\""),
        );
    }
}

fn check_figures(figures: &[String], path: &str, problems: &mut Problems) {
    for (i, f) in figures.iter().enumerate() {
        if f.trim().is_empty() {
            problems.push(format!("{path}[{i}]"), "must not be empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<String> {
        let cfg: BaselineConfig = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        cfg.validate("baseline", &mut p);
        p.into_errors()
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            toml::from_str::<BaselineConfig>("").unwrap(),
            BaselineConfig::default()
        );
        assert!(problems_of("").is_empty());
        assert!(problems_of("store = \"postgres://p@db/plimsoll\"").is_empty());
    }

    #[test]
    fn every_problem_by_path() {
        let p = problems_of(
            "store = \"mysql://x\"\nmode = \"guess\"\ngrade_on_regression = \"panic\"\n\
             retention_runs = 1\n[detector]\nwindow = 5\nthreshold = 0",
        );
        assert_eq!(
            p,
            vec![
                "baseline.store: \"mysql://x\" is neither postgres://… nor an SQLite path (sqlite:PATH or PATH)",
                "baseline.retention_runs: must be at least 2 (the detector needs history)",
                "baseline.mode: \"guess\" is not one of \"detect\", \"percentage\"",
                "baseline.grade_on_regression: \"panic\" is not one of \"warning\", \"critical\", \"none\"",
                "baseline.detector.window: must be at least 10",
                "baseline.detector.min_runs: must be between 5 and window (5)",
                "baseline.detector.threshold: must be greater than 0",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<BaselineConfig>("stroe = \"x\"").is_err());
        assert!(toml::from_str::<BaselineConfig>("[detector]\nk = 1").is_err());
    }
}

//! The `capacity` block: the breaking point, the knee, every step measured (with the target's
//! own resource use), and its summary table and plot.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::LatencySummary;

/// Figures of a capacity search (DESIGN.md's `capacity` block).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityStats {
    /// The highest rate the target sustained: what it served at the highest passing step
    /// (at most that step's offered rate; 0 when no step passed).
    pub breaking_point_rps: f64,
    /// The lowest offered rate that failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_rps: Option<f64>,
    /// Where latency starts to climb: the highest rate measured before the first step whose
    /// p99 was more than twice the lightest step's (absent when latency stayed flat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee_rps: Option<f64>,
    /// The limits a step was held to.
    pub limits: CapacityLimits,
    /// Where the target's own CPU and memory were read (`[probe.capacity.resources]`):
    /// the metrics URL, `pid N` or `pid file PATH`; absent when they were not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_source: Option<String>,
    /// Every step measured, in the order run (the ramp, then the bisection).
    pub steps: Vec<CapacityStep>,
    pub search: CapacitySearch,
}

/// What made a step fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityLimits {
    pub p99_ms: f64,
    /// Ratio, 0 to 1.
    pub error_rate: f64,
    /// Least achieved / offered, 0 to 1.
    pub min_throughput_ratio: f64,
    pub resolution_rps: f64,
}

/// One step of a capacity search: its measured window (the warm-up is not in it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub latency_ms: LatencySummary,
    /// Ratio, 0 to 1.
    pub error_rate: f64,
    pub requests: u64,
    pub errors: u64,
    /// Arrivals that could not start: the in-flight cap was reached.
    pub dropped: u64,
    pub passed: bool,
    /// `ramp` or `bisect`.
    pub phase: String,
    /// Which limits the step broke (`p99`, `error_rate`, `throughput`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_on: Vec<String>,
    /// What the target spent on the step's measured window, when a resource source is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<StepResources>,
}

/// The target's own resource use over one step's measured window, from two reads (its
/// start and its end). A figure the source could not give is absent, and `error` says why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResources {
    /// CPU seconds the target spent per second of the window: the cores it kept busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// CPU the target spent per request answered in the window, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_request: Option<f64>,
    /// Resident memory at the end of the window, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Why a figure is missing (the source could not be read, the process restarted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the search cost the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacitySearch {
    /// Every request sent, warm-ups included.
    pub requests: u64,
    pub duration_s: f64,
    /// Steps measured.
    pub steps: u32,
    /// The search was stopped before it converged.
    pub stopped_early: bool,
}

/// A capacity search: its verdict in one line, the steps table, and a text plot of p99
/// against the offered rate with the breaking point marked.
pub(super) fn summary(c: &CapacityStats) -> String {
    let mut t = format!(
        "breaking point {} req/s{}{}; search: {} steps, {} requests, {:.1} s",
        c.breaking_point_rps,
        c.knee_rps
            .map(|k| format!(", knee {k} req/s"))
            .unwrap_or_default(),
        c.first_failure_rps
            .map(|f| format!(", first failure {f} req/s"))
            .unwrap_or_default(),
        c.search.steps,
        c.search.requests,
        c.search.duration_s
    );
    // The target's own resource use, as three more columns when it was read.
    let with_resources = c.resources_source.is_some();
    let _ = write!(
        t,
        "\n  {:>9}  {:>9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:<6}  ",
        "offered", "achieved", "p50 ms", "p95 ms", "p99 ms", "errors", "dropped", "step"
    );
    if with_resources {
        let _ = write!(
            t,
            "{:>6}  {:>10}  {:>8}  ",
            "cores", "cpu ms/req", "rss MiB"
        );
    }
    t.push_str("verdict");
    for s in &c.steps {
        let verdict = if s.passed {
            "pass".to_string()
        } else {
            format!("FAIL ({})", s.failed_on.join(", "))
        };
        let _ = write!(
            t,
            "\n  {:>9.1}  {:>9.1}  {:>8.2}  {:>8.2}  {:>8.2}  {:>6.2}%  {:>7}  {:<6}  ",
            s.offered_rps,
            s.achieved_rps,
            s.latency_ms.p50,
            s.latency_ms.p95,
            s.latency_ms.p99,
            s.error_rate * 100.0,
            s.dropped,
            s.phase,
        );
        if with_resources {
            let r = s.resources.clone().unwrap_or_default();
            let shown = |v: Option<f64>, digits: usize| {
                v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
            };
            let _ = write!(
                t,
                "{:>6}  {:>10}  {:>8}  ",
                shown(r.cpu_cores, 3),
                shown(r.cpu_ms_per_request, 3),
                shown(r.rss_bytes.map(|b| b as f64 / (1024.0 * 1024.0)), 1),
            );
        }
        t.push_str(&verdict);
    }
    if let Some(src) = &c.resources_source {
        let _ = write!(
            t,
            "\n  (cores, cpu ms/req and rss: the target's own, from {src})"
        );
    }
    let mut by_rate: Vec<&super::CapacityStep> = c.steps.iter().collect();
    by_rate.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let best = by_rate
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.offered_rps)
        .next_back();
    // Bars on a log scale: a queue's p99 grows by orders of magnitude past the knee.
    let top = by_rate
        .iter()
        .map(|s| s.latency_ms.p99)
        .fold(c.limits.p99_ms, f64::max)
        .max(1.0);
    const WIDTH: f64 = 40.0;
    let bar = |ms: f64| ((ms.max(0.1) * 10.0).ln() / (top * 10.0).ln() * WIDTH).round() as usize;
    let limit_at = bar(c.limits.p99_ms);
    let _ = write!(
        t,
        "\n  p99 by offered rate (log scale, '|' = the {} ms limit):",
        c.limits.p99_ms
    );
    for s in by_rate {
        let n = bar(s.latency_ms.p99);
        let mut line: Vec<char> = std::iter::repeat_n(if s.passed { '#' } else { 'x' }, n)
            .chain(std::iter::repeat_n(' ', (limit_at + 1).saturating_sub(n)))
            .collect();
        if limit_at < line.len() && line[limit_at] == ' ' {
            line[limit_at] = '|';
        }
        let mark = if s.passed && Some(s.offered_rps) == best {
            "  <- breaking point"
        } else {
            ""
        };
        let _ = write!(
            t,
            "\n  {:>9.1} {} {:.1} ms{mark}",
            s.offered_rps,
            line.into_iter().collect::<String>().trim_end(),
            s.latency_ms.p99
        );
    }
    t
}

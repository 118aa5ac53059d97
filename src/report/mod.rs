//! Result documents (`plimsoll.result/v1`, one per probe run) and the terminal summary.
//!
//! The document's field names carry their unit and are a contract (DESIGN.md): dashboards,
//! CI scripts and the baseline store read them. This module formats; it never measures.

mod blocks;
pub mod outcome;
pub mod summary;
pub mod terminal;
mod write;

pub(crate) use crate::stats::round3;
pub use crate::stats::{error_rate_and_rps, EndpointStats, IterationStats, LatencySummary, Stats};
pub use blocks::*;
pub use write::{result_file_name, write_into_dir, write_json_lines, WriteError};

use std::collections::BTreeMap;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::config::{Kind, ProbeConfig};
use crate::verdict::{Grade, ThresholdResult, Verdict};

/// Schema name and version of the result document.
pub const SCHEMA: &str = "plimsoll.result/v1";

/// One probe run's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub schema: String,
    pub probe: String,
    pub kind: Kind,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_s: f64,
    pub grade: Grade,
    /// Why the run got its grade, in one sentence: the deciding figure and its band (that
    /// threshold is marked `decides` in `thresholds`), or the reason that forced it.
    #[serde(default)]
    pub grade_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// The kind's own figures (`race`, `pubsub`, …), beside `stats`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub block: Option<KindBlock>,
    pub thresholds: Vec<ThresholdResult>,
    /// Why the grade is what it is beyond the thresholds (no request completed, stopped early).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A guardrail stopped the run before its end (abort condition or kill switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Abort>,
    /// A guardrail refused to start the run (allowlist, pause, blackout): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The run judged against its stored baseline, figure by figure; absent when no baseline
    /// store judged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionBlock>,
    /// What OTLP export needs beyond the document (exact start, exact status codes, sampled
    /// requests). Not part of the document either.
    #[serde(skip)]
    pub detail: RunDetail,
}

impl ProbeResult {
    /// A graded run: its figures, its verdict (whose forced reasons open the notes) and
    /// further notes.
    #[allow(clippy::too_many_arguments)]
    pub fn graded(
        probe: &ProbeConfig,
        started: SystemTime,
        elapsed: std::time::Duration,
        stats: Option<Stats>,
        block: Option<KindBlock>,
        mut verdict: Verdict,
        notes: Vec<String>,
        detail: RunDetail,
    ) -> ProbeResult {
        let grade_reason = verdict.decide();
        let mut all: Vec<String> = verdict.forced.iter().map(|(_, w)| w.clone()).collect();
        all.extend(notes);
        ProbeResult {
            schema: SCHEMA.to_string(),
            probe: probe.name.clone(),
            kind: probe.kind(),
            started_at: rfc3339(started),
            duration_s: round3(elapsed.as_secs_f64()),
            grade: verdict.grade(),
            grade_reason,
            stats,
            block,
            thresholds: verdict.results,
            notes: all,
            aborted: None,
            refused: None,
            regression: None,
            detail,
        }
    }

    /// A probe that could not run at all: critical, with the reason as its note.
    pub fn failed(probe: &ProbeConfig, why: impl Into<String>) -> ProbeResult {
        let mut v = Verdict::default();
        v.force(Grade::Critical, why);
        ProbeResult::graded(
            probe,
            SystemTime::now(),
            std::time::Duration::ZERO,
            None,
            None,
            v,
            Vec::new(),
            RunDetail::default(),
        )
    }

    /// The race block, when this is a race run.
    pub fn race(&self) -> Option<&RaceStats> {
        match &self.block {
            Some(KindBlock::Race(r)) => Some(r),
            _ => None,
        }
    }

    /// The capacity block, when this is a capacity run.
    pub fn capacity(&self) -> Option<&CapacityStats> {
        match &self.block {
            Some(KindBlock::Capacity(c)) => Some(c),
            _ => None,
        }
    }

    /// The fault block, when this is a fault run.
    pub fn fault(&self) -> Option<&FaultStats> {
        match &self.block {
            Some(KindBlock::Fault(f)) => Some(f),
            _ => None,
        }
    }

    /// The pub/sub block, when this is a pub/sub run.
    pub fn pubsub(&self) -> Option<&PubsubStats> {
        match &self.block {
            Some(KindBlock::Pubsub(p)) => Some(p),
            _ => None,
        }
    }
}

/// The `regression` block: each judged figure against its baseline (DESIGN.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionBlock {
    /// `detect` (CUSUM against the rolling baseline) or `percentage` (against a pinned run).
    pub mode: String,
    /// By figure name (`p99`, `rps`, `error_rate`, …).
    pub figures: BTreeMap<String, RegressionFigure>,
    /// Runs a new series needs before it is judged (`detect` mode's warm-up), for the
    /// terminal summary's "warming up (3/5 runs)". Not part of the document.
    #[serde(skip)]
    pub min_runs: u64,
}

impl RegressionBlock {
    /// The figures in an open regression, by name.
    pub fn open(&self) -> impl Iterator<Item = (&String, &RegressionFigure)> {
        self.figures.iter().filter(|(_, f)| f.state == "open")
    }
}

/// One figure of the `regression` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionFigure {
    /// The baseline level in the figure's unit; absent while the series warms up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The current level: while open, the median of the runs since the regression began;
    /// otherwise this run's value.
    pub current: f64,
    /// `current / baseline − 1` (+0.35 is 35 % up, whatever the figure's direction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift_ratio: Option<f64>,
    /// The detector's CUSUM statistic (σ units) and the threshold it opens above; absent in
    /// `percentage` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `warmup`, `ok` or `open`.
    pub state: String,
    /// `opened` or `cleared` when this run changed the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// Runs in the figure's series (this configuration since the last `accept`).
    pub runs: u64,
}

/// The run's measurements at the grain of OpenTelemetry's HTTP client conventions.
#[derive(Debug, Clone, Default)]
pub struct RunDetail {
    /// When the run started, to the microsecond (`started_at` is to the second).
    pub started: Option<SystemTime>,
    /// The steps of the iteration, by index (client spans refer to them).
    pub steps: Vec<StepInfo>,
    /// Requests by step and outcome, in classic buckets.
    pub requests: Vec<OutcomeSeries>,
    /// Sampled requests, whose `traceparent` the target received.
    pub client_spans: Vec<crate::engine::ClientSpan>,
    /// The fault kind's actions (each inject and its clear), one span each.
    pub fault_actions: Vec<FaultActionSpan>,
    /// The merged latency histogram of the successful requests behind `stats.latency_ms`, in
    /// microseconds (HTTP kinds): the baseline store keeps it so percentiles over many runs
    /// can be recomputed. Not part of the document.
    pub latency: Option<Histogram<u64>>,
}

/// One fault action as a span: what ran, when, and whether it did what it should.
#[derive(Debug, Clone)]
pub struct FaultActionSpan {
    /// The fault's name (`fault` label).
    pub fault: String,
    /// `inject` or `clear`.
    pub step: &'static str,
    /// What ran (`toxics redis: down`, `command pg_ctl restart -m fast`).
    pub action: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub ok: bool,
    /// Why the fault was cleared (`ended`, `stopped`, …); clears only.
    pub clear_reason: Option<String>,
}

/// A step as the HTTP client conventions describe it.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// The step's name (`endpoint` label).
    pub name: String,
    pub method: String,
    pub server_address: String,
    pub server_port: u16,
}

/// Requests of one step that ended the same way.
#[derive(Debug, Clone)]
pub struct OutcomeSeries {
    /// Index into [`RunDetail::steps`].
    pub step: usize,
    pub status: Option<u16>,
    pub error: Option<crate::engine::ErrorKind>,
    pub buckets: crate::engine::recorder::ClassicBuckets,
}

/// The `status_class` label of index `i` of a step's status-class counters.
pub fn status_class_label(i: usize) -> &'static str {
    ["none", "1xx", "2xx", "3xx", "4xx", "5xx"][i.min(5)]
}

/// Why and when a guardrail stopped a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abort {
    /// `error_rate`, `health` or `paused` (the `reason` label of `plimsoll_probe_aborts_total`).
    pub reason: String,
    /// The condition in words.
    pub detail: String,
    /// From the start of the run to the decision to stop.
    pub after_s: f64,
}

/// RFC 3339 timestamp in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl ProbeResult {
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a result document always serializes")
    }
}

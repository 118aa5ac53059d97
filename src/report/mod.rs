//! Result documents (`plimsoll.result/v1`, one per probe run) and the terminal summary.
//!
//! The document's field names carry their unit and are a contract (DESIGN.md): dashboards,
//! CI scripts and the baseline store read them. This module formats; it never measures.

mod blocks;
pub mod outcome;
pub mod summary;
pub mod terminal;
mod write;

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

/// Request statistics of a load-generating run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Ratio, 0 to 1.
    pub error_rate: f64,
    /// Achieved requests per second over the run.
    pub rps: f64,
    /// Planned arrivals per second (open model); absent for the closed model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rps: Option<f64>,
    /// Successful requests only (a failed request's latency is in `failed_latency_ms`): from
    /// the planned send time in the open model; from the actual send in the closed model.
    pub latency_ms: LatencySummary,
    /// Successful requests only: from the actual send to the end of the response, whatever
    /// the model. Beside `latency_ms` it shows the coordinated-omission gap.
    pub service_time_ms: LatencySummary,
    /// Failed requests (an error of any kind), reported apart so that a target that fails
    /// fast does not look fast; absent when none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_latency_ms: Option<LatencySummary>,
    /// Exact status codes (`"200"`, `"503"`), beside the classes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_codes: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first message seen of each error kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_samples: BTreeMap<String, String>,
    /// Responses by status class (`2xx`, …); `none` counts requests without a response.
    pub status_classes: BTreeMap<String, u64>,
    pub iterations: IterationStats,
    /// How late the generator sent behind the plan (open model): its own health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<LatencySummary>,
    pub bytes_received: u64,
    /// Per step (`endpoint` label).
    pub endpoints: BTreeMap<String, EndpointStats>,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IterationStats {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    /// Planned iterations that could not start: the in-flight cap was reached.
    pub dropped: u64,
    /// Planned iterations (open model); up to the stop when the run was stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<u64>,
    /// Exchanges in flight when the run was stopped: abandoned unanswered, counted neither as
    /// completed nor as failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned: u64,
    /// Iterations (completed or failed) per second, when an iteration is more than one
    /// request (steps or a flow): what the open model's plan is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointStats {
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: LatencySummary,
    pub errors_by_kind: BTreeMap<String, u64>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        LatencySummary {
            min: ms(h.min()),
            mean: round3(h.mean() / 1000.0),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// A run's error ratio and achieved requests per second (rounded to three decimals); zero
/// where there is nothing to divide by.
pub fn error_rate_and_rps(requests: u64, errors: u64, elapsed_s: f64) -> (f64, f64) {
    let error_rate = if requests > 0 {
        errors as f64 / requests as f64
    } else {
        0.0
    };
    let rps = if elapsed_s > 0.0 {
        round3(requests as f64 / elapsed_s)
    } else {
        0.0
    };
    (error_rate, rps)
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
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

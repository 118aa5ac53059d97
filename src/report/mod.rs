//! Result documents (`plimsoll.result/v1`, one per probe run) and the terminal summary.
//!
//! The document's field names carry their unit and are a contract (DESIGN.md): dashboards,
//! CI scripts and the baseline store read them. This module formats; it never measures.

pub mod outcome;
pub mod summary;
pub mod terminal;
mod write;

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

/// A kind's own block of figures. Serialized under the variant's name beside `stats`
/// (`"race": {…}`), so a new block is a new variant here and nothing in other kinds' code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindBlock {
    /// Figures of a `race` probe.
    Race(RaceStats),
    /// Figures of a `pubsub` probe: deliveries, beside `stats` (which counts the publishes).
    Pubsub(PubsubStats),
    /// Figures of a `capacity` probe: the breaking point, the knee and every step measured.
    Capacity(CapacityStats),
    /// Figures of a `fault` probe: each fault's timeline of windows and its recovery.
    Fault(FaultStats),
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

/// Figures of a race probe run (seed 000's vendor race). The round counts are the
/// `outcome` values of `plimsoll_race_rounds_total`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceStats {
    /// Rounds whose claimants were released (a round whose setup failed is not one).
    pub rounds: u64,
    /// Claimants per round.
    pub claimants: u32,
    /// Rounds with exactly one winner.
    pub single_winner: u64,
    /// Rounds with several winners: the race the probe exists to catch.
    pub multiple_winners: u64,
    /// Rounds nobody won.
    pub no_winner: u64,
    /// `single_winner / rounds`, 0 to 1.
    pub win_rate: f64,
    /// `multiple_winners / rounds`, 0 to 1.
    pub race_rate: f64,
    /// Per round, first claim sent → last claim answered (or given up).
    pub race_time_ms: LatencySummary,
    /// Per round, first claim sent → last claim sent: how close together the claims left.
    pub send_spread_ms: LatencySummary,
    /// Claims by outcome: `won`, `lost`, `timeout`, or an error kind (`connect`, `status`,
    /// `expect`, …). A claimant that timed out is `timeout`, never `lost`.
    pub claims_by_outcome: BTreeMap<String, u64>,
    /// The first message seen of each error kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_samples: BTreeMap<String, String>,
    /// Rounds not run because the setup request failed.
    pub setup_failures: u64,
    /// With verification: rounds where the database count differed from the API's winners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_mismatches: Option<u64>,
    /// With verification: rounds whose query failed (graded on the API's answers alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_errors: Option<u64>,
    /// The first rounds with several winners or a mismatch, for the person on call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspect_rounds: Vec<RaceRound>,
}

/// Figures of a pub/sub delivery run (seed 003): what was published, what each subscriber
/// received of it, and how long a message took from its send to its delivery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PubsubStats {
    /// Subscriber connections asked for.
    pub subscribers: u32,
    /// Subscribers whose connection was open when publishing began.
    pub connected: u32,
    /// Messages published successfully (a failed publish is not expected anywhere).
    pub published: u64,
    /// Publishes that failed; counted in `stats.errors` too.
    pub publish_errors: u64,
    /// `published × subscribers`: deliveries a perfect channel makes.
    pub expected_deliveries: u64,
    /// Distinct expected messages received, all subscribers together.
    pub delivered: u64,
    /// `delivered / expected_deliveries`, 0 to 1.
    pub delivery_ratio: f64,
    /// Expected deliveries that never arrived (within the grace period).
    pub lost: u64,
    /// Messages received again by a subscriber that already had them.
    pub duplicates: u64,
    /// Messages received after a message published later than them.
    pub out_of_order: u64,
    /// Messages of this run received that were never reported published (the publish
    /// failed or timed out but got through); not counted as delivered.
    pub unexpected: u64,
    /// Text messages that were not this run's (other traffic on the channel); ignored.
    pub foreign: u64,
    /// From the publisher's send time (carried in the message) to the delivery.
    pub latency_ms: LatencySummary,
    /// Per subscriber, in connection order.
    pub per_subscriber: Vec<SubscriberStats>,
    /// The first subscriber error (connect, closed, protocol), for the person on call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_error: Option<String>,
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

/// Figures of a fault probe (DESIGN.md's `fault` block).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    pub faults: Vec<FaultFigures>,
}

/// One fault under load: when it was injected and cleared, how fast it showed and went,
/// and the windows of the whole timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultFigures {
    pub name: String,
    /// RFC 3339; absent when the run ended before the inject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<String>,
    /// From the start of the run to the inject and to the clear's return, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_s: Option<f64>,
    /// `ended`, `failed`, `timed_out`, `stopped`, `dropped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_reason: Option<String>,
    /// What was injected and what cleared it, in words, and whether each worked.
    pub inject_action: String,
    pub inject_ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_action: Option<String>,
    pub clear_ok: bool,
    /// Inject → start of the first window out of the steady band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_s: Option<f64>,
    /// Clear → start of the first stretch of `recovery_stretch` whose windows are all in the
    /// steady band; absent when it never came back within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    /// Error ratio per phase (before the inject, inject → clear, clear → end).
    pub error_rate: PhaseFigures,
    /// p99 latency of the successful requests per phase, ms (live buckets: within 25 %).
    pub p99_ms: PhaseFigures,
    /// Success ratio from the recovery to the end of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_after_recovery: Option<f64>,
    /// The band a window must be in to count as steady.
    pub steady: SteadyBand,
    /// Highest backlog read from the inject to the end, and the time from the clear until
    /// it was back to its level before the inject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_peak: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_drain_s: Option<f64>,
    /// Every backlog reading: (seconds from the start, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backlog: Vec<BacklogSample>,
    pub window_ms: f64,
    /// The timeline, window by window.
    pub windows: Vec<FaultWindow>,
}

/// A figure before, during and after a fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    pub before: f64,
    pub during: f64,
    pub after: f64,
}

/// The steady band computed from the windows before the inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyBand {
    pub min_success_ratio: f64,
    pub max_p99_ms: f64,
}

/// One measuring window of a fault probe's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Start, seconds from the start of the run.
    pub start_s: f64,
    /// `before`, `during` or `after`.
    pub phase: String,
    pub requests: u64,
    pub errors: u64,
    /// 1 when the window had no request.
    pub success_ratio: f64,
    /// p99 of the window's successful requests, ms; absent when none succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    pub steady: bool,
}

/// One backlog reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BacklogSample {
    pub at_s: f64,
    pub value: f64,
}

/// What one subscriber received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriberStats {
    /// Index, from 0.
    pub subscriber: u32,
    /// Whether its connection was open when publishing began.
    pub connected: bool,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// `delivered / published`, 0 to 1.
    pub delivery_ratio: f64,
}

/// One round worth a look: which resource, and who said how many won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceRound {
    /// Round number, from 0.
    pub round: u64,
    /// The captured id, when there was a setup request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Claims the API answered as won.
    pub api_winners: u64,
    /// Accepted claims the verification query counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_winners: Option<u64>,
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

//! The one place that names and emits metrics: every Prometheus series of DESIGN.md is
//! defined here, and the rest of the code reports events ([`Telemetry::record_run`],
//! [`Telemetry::record_skip`]) instead of building metric names inline.
//!
//! Series are updated once per probe run from its result document (plus the run's classic
//! latency buckets), never per request: the engine's hot path does not touch this module.
//! The same holds for OTLP ([`otlp`]): metrics and spans are built after each run.

mod histogram;
mod kinds;
mod label;
pub mod otlp;
mod otlp_export;
mod otlp_tls;
mod quantiles;
mod sdk_log;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::BucketHistogram;
use label::LabelValue;
use quantiles::LastRunQuantiles;
pub use sdk_log::SdkLogFilter;

use crate::engine::recorder::class_index;
use crate::report::{status_class_label, ProbeResult};
use crate::verdict::Grade;

type GaugeF = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GradeLabels {
    probe: LabelValue,
    grade: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    probe: LabelValue,
    reason: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    probe: LabelValue,
    endpoint: LabelValue,
    method: LabelValue,
    status_class: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    probe: LabelValue,
    endpoint: LabelValue,
    kind: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    probe: LabelValue,
    metric: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: LabelValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: LabelValue,
}

/// Why a scheduled run did not start (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The previous run of the same probe was still going.
    Overlap,
    /// The daemon was shutting down or the probe is paused.
    Paused,
    /// A safety limit refused the run.
    Guardrail,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Paused => "paused",
            SkipReason::Guardrail => "guardrail",
        }
    }
}

/// The daemon's metrics: a registry and a handle on every family in it.
pub struct Telemetry {
    registry: Registry,
    probe_success: Family<ProbeLabels, Gauge>,
    probe_grade: Family<ProbeLabels, Gauge>,
    probe_duration: Family<ProbeLabels, GaugeF>,
    probe_last_run: Family<ProbeLabels, GaugeF>,
    probe_runs: Family<GradeLabels, Counter>,
    probe_skipped: Family<ReasonLabels, Counter>,
    probe_aborts: Family<ReasonLabels, Counter>,
    request_duration: Family<RequestLabels, BucketHistogram>,
    requests: Family<RequestLabels, Counter>,
    request_errors: Family<ErrorLabels, Counter>,
    latency: LastRunQuantiles,
    throughput: Family<ProbeLabels, GaugeF>,
    offered: Family<ProbeLabels, GaugeF>,
    error_ratio: Family<ProbeLabels, GaugeF>,
    /// The families of the kinds' own figures.
    kinds: kinds::KindFamilies,
    otlp_dropped: Family<SignalLabels, Counter>,
    result_write_failures: Counter,
    /// Bumped by every event that changes the series: lets an endpoint reuse an encoding.
    generation: AtomicU64,
    /// OTLP pipelines, when configured.
    otlp: Option<otlp::Otlp>,
    baseline_value: Family<MetricLabels, GaugeF>,
    regression: Family<MetricLabels, Gauge>,
    regression_shift: Family<MetricLabels, GaugeF>,
    /// The figures each probe has regression series for: the families cannot be listed by
    /// label, and [`Telemetry::forget_probe`] must remove them all.
    regression_figures: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    store_spooled: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("plimsoll");
        let t = Telemetry {
            probe_success: Family::default(),
            probe_grade: Family::default(),
            probe_duration: Family::default(),
            probe_last_run: Family::default(),
            probe_runs: Family::default(),
            probe_skipped: Family::default(),
            probe_aborts: Family::default(),
            request_duration: Family::default(),
            requests: Family::default(),
            request_errors: Family::default(),
            latency: LastRunQuantiles::default(),
            throughput: Family::default(),
            offered: Family::default(),
            error_ratio: Family::default(),
            kinds: kinds::KindFamilies::new(),
            otlp_dropped: Family::default(),
            result_write_failures: Counter::default(),
            generation: AtomicU64::new(0),
            otlp: None,
            baseline_value: Family::default(),
            regression: Family::default(),
            regression_shift: Family::default(),
            regression_figures: Default::default(),
            store_spooled: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "probe_success",
            "1 when the last run graded good or better",
            t.probe_success.clone(),
        );
        r.register(
            "probe_grade",
            "Last grade: 0 excellent, 1 good, 2 warning, 3 critical",
            t.probe_grade.clone(),
        );
        r.register_with_unit(
            "probe_duration",
            "Length of the last run",
            Unit::Seconds,
            t.probe_duration.clone(),
        );
        r.register_with_unit(
            "probe_last_run_timestamp",
            "When the last run ended (Unix time)",
            Unit::Seconds,
            t.probe_last_run.clone(),
        );
        r.register("probe_runs", "Runs by grade", t.probe_runs.clone());
        r.register(
            "probe_skipped",
            "Scheduled runs not started, by reason (overlap, paused, guardrail)",
            t.probe_skipped.clone(),
        );
        r.register(
            "probe_aborts",
            "Runs stopped by a guardrail's abort condition, by reason (error_rate, health, paused)",
            t.probe_aborts.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Every request, from the planned send time in the open model",
            Unit::Seconds,
            t.request_duration.clone(),
        );
        r.register("http_requests", "Every request", t.requests.clone());
        r.register(
            "http_request_errors",
            "Failed requests by kind (connect, tls, timeout, status, body, protocol, expect)",
            t.request_errors.clone(),
        );
        r.register_with_unit(
            "latency",
            "Exact percentiles of the last run",
            Unit::Seconds,
            t.latency.clone(),
        );
        r.register(
            "throughput_rps",
            "Achieved requests per second of the last run",
            t.throughput.clone(),
        );
        r.register(
            "offered_rps",
            "Planned arrivals per second of the last run (open model)",
            t.offered.clone(),
        );
        r.register(
            "error_ratio",
            "Failed requests / requests of the last run",
            t.error_ratio.clone(),
        );
        t.kinds.register(&mut r);
        r.register(
            "baseline_value",
            "The baseline the regression detector compares against",
            t.baseline_value.clone(),
        );
        r.register(
            "regression",
            "1 while a regression alert is open",
            t.regression.clone(),
        );
        r.register(
            "regression_shift_ratio",
            "Estimated relative change of a regressed metric",
            t.regression_shift.clone(),
        );
        r.register(
            "store_spooled_results",
            "Results waiting in the spool for a baseline store that is down or locked",
            t.store_spooled.clone(),
        );
        r.register(
            "otlp_dropped",
            "Spans and metric streams lost to OTLP export (queue full, collector down or slow), by signal",
            t.otlp_dropped.clone(),
        );
        r.register(
            "result_write_failures",
            "Result documents that could not be written into report.dir (disk full, permissions)",
            t.result_write_failures.clone(),
        );
        let build_info: Family<VersionLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        r.register("build_info", "Always 1", build_info);
        Telemetry { registry: r, ..t }
    }

    /// The Prometheus series plus OTLP pipelines as `cfg` (or the standard `OTEL_*`
    /// variables) asks. OTLP that cannot start is reported and left off: it must not stop the
    /// daemon.
    pub fn with_otlp(cfg: &crate::config::OtlpConfig) -> Self {
        let mut t = Telemetry::new();
        let counter = |signal: &str| {
            t.otlp_dropped
                .get_or_create(&SignalLabels {
                    signal: signal.into(),
                })
                .clone()
        };
        let (traces, metrics) = (counter("traces"), counter("metrics"));
        match otlp::Otlp::start(cfg, traces, metrics) {
            Ok(o) => t.otlp = o,
            Err(e) => {
                tracing::error!("OTLP export is off: {e}");
                t.otlp_dropped.clear();
            }
        }
        if t.otlp.is_none() {
            t.otlp_dropped.clear();
        }
        t
    }

    /// The trace of a run about to start, when traces are exported.
    pub fn begin_run(&self) -> Option<crate::engine::TraceContext> {
        self.otlp.as_ref()?.begin_run()
    }

    /// Feeds a finished run to OTLP (metrics, and its spans when it was traced). Costs time
    /// proportional to the run's requests: call it off the scheduler loop.
    pub fn export_run(
        &self,
        probe: &crate::config::ProbeConfig,
        r: &ProbeResult,
        trace: Option<&crate::engine::TraceContext>,
    ) {
        if let Some(o) = &self.otlp {
            o.record_run(probe, r, trace);
        }
    }

    /// Flushes OTLP within its flush timeout (on shutdown).
    pub fn shutdown_otlp(&self) {
        if let Some(o) = &self.otlp {
            o.shutdown();
        }
    }

    /// Updates every series a finished run feeds.
    pub fn record_run(&self, r: &ProbeResult, ended_unix_s: f64) {
        self.record_run_series(r, ended_unix_s);
        self.changed();
    }

    fn record_run_series(&self, r: &ProbeResult, ended_unix_s: f64) {
        let probe = ProbeLabels {
            probe: r.probe.as_str().into(),
        };
        let good = matches!(r.grade, Grade::Excellent | Grade::Good);
        self.probe_success
            .get_or_create(&probe)
            .set(i64::from(good));
        self.probe_grade
            .get_or_create(&probe)
            .set(grade_number(r.grade));
        self.probe_duration.get_or_create(&probe).set(r.duration_s);
        self.probe_last_run.get_or_create(&probe).set(ended_unix_s);
        self.probe_runs
            .get_or_create(&GradeLabels {
                probe: r.probe.as_str().into(),
                grade: r.grade.as_str().into(),
            })
            .inc();
        // Exact outcomes fold into status classes here; two steps sharing a name and method
        // add up under one series.
        for o in &r.detail.requests {
            let Some(step) = r.detail.steps.get(o.step) else {
                continue;
            };
            let labels = RequestLabels {
                probe: r.probe.as_str().into(),
                endpoint: step.name.as_str().into(),
                method: step.method.as_str().into(),
                status_class: status_class_label(class_index(o.status)).into(),
            };
            self.request_duration.get_or_create(&labels).add(&o.buckets);
            self.requests
                .get_or_create(&labels)
                .inc_by(o.buckets.count());
        }
        self.kinds.record(r);
        if let Some(stats) = &r.stats {
            for (endpoint, e) in &stats.endpoints {
                for (kind, n) in &e.errors_by_kind {
                    self.request_errors
                        .get_or_create(&ErrorLabels {
                            probe: r.probe.as_str().into(),
                            endpoint: endpoint.as_str().into(),
                            kind: kind.as_str().into(),
                        })
                        .inc_by(*n);
                }
            }
            self.latency
                .set(&r.probe, quantile_seconds(&stats.latency_ms));
            self.throughput.get_or_create(&probe).set(stats.rps);
            match stats.offered_rps {
                Some(o) => {
                    self.offered.get_or_create(&probe).set(o);
                }
                None => {
                    self.offered.remove(&probe);
                }
            }
            self.error_ratio.get_or_create(&probe).set(stats.error_rate);
        }
        if r.refused.is_some() {
            self.record_skip(&r.probe, SkipReason::Guardrail);
        }
        if let Some(a) = &r.aborted {
            self.probe_aborts
                .get_or_create(&ReasonLabels {
                    probe: r.probe.as_str().into(),
                    reason: a.reason.as_str().into(),
                })
                .inc();
        }
        if let Some(block) = &r.regression {
            self.record_regression(&r.probe, block);
        }
    }

    /// The baseline, the state and the shift of each judged figure. A figure still warming
    /// up has no baseline yet: its gauges are absent and `plimsoll_regression` is 0.
    fn record_regression(&self, probe: &str, block: &crate::report::RegressionBlock) {
        self.regression_figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(probe.to_string())
            .or_default()
            .extend(block.figures.keys().cloned());
        for (metric, f) in &block.figures {
            let l = MetricLabels {
                probe: probe.into(),
                metric: metric.as_str().into(),
            };
            self.regression
                .get_or_create(&l)
                .set(i64::from(f.state == "open"));
            match f.baseline {
                Some(b) => {
                    self.baseline_value.get_or_create(&l).set(b);
                }
                None => {
                    self.baseline_value.remove(&l);
                }
            }
            match f.shift_ratio {
                Some(s) => {
                    self.regression_shift.get_or_create(&l).set(s);
                }
                None => {
                    self.regression_shift.remove(&l);
                }
            }
        }
    }

    /// Runs waiting in the baseline store's spool.
    pub fn record_spooled(&self, n: usize) {
        let before = self.store_spooled.set(n as i64);
        if before != n as i64 {
            self.changed();
        }
    }

    /// Counts a result document that could not be written.
    pub fn record_result_write_failure(&self) {
        self.result_write_failures.inc();
        self.changed();
    }

    /// A number that changes whenever a recorded event changed the series (the OTLP drop
    /// counters excepted: they move on their own).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a scheduled run that did not start.
    pub fn record_skip(&self, probe: &str, reason: SkipReason) {
        self.probe_skipped
            .get_or_create(&ReasonLabels {
                probe: probe.into(),
                reason: reason.as_str().into(),
            })
            .inc();
        self.changed();
    }

    /// Drops the last-run gauges of a probe that left the configuration, its regression
    /// gauges included (counters stay, as Prometheus expects of counters).
    pub fn forget_probe(&self, probe: &str) {
        let l = ProbeLabels {
            probe: probe.into(),
        };
        for f in [
            &self.probe_duration,
            &self.probe_last_run,
            &self.throughput,
            &self.offered,
            &self.error_ratio,
        ] {
            f.remove(&l);
        }
        self.probe_success.remove(&l);
        self.probe_grade.remove(&l);
        self.latency.remove(probe);
        self.kinds.forget(probe);
        let figures = self
            .regression_figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(probe)
            .unwrap_or_default();
        for metric in figures {
            let l = MetricLabels {
                probe: probe.into(),
                metric: metric.as_str().into(),
            };
            self.regression.remove(&l);
            self.baseline_value.remove(&l);
            self.regression_shift.remove(&l);
        }
        self.changed();
    }

    /// Every family the registry holds, by its exposed name (`plimsoll_probe_duration_seconds`;
    /// a counter without its `_total`), written to or not: the exposition leaves out a family
    /// that has no series yet. The metric reference's test (`tests/docs.rs`) reads it.
    pub fn family_names(&self) -> Vec<String> {
        // prometheus_client keeps its descriptors private; their `Debug` is the one view.
        let all = format!("{:?}", self.registry);
        all.split("Descriptor { name: \"")
            .skip(1)
            .filter_map(|rest| {
                let name = &rest[..rest.find('"')?];
                let unit = rest.split_once(", unit: ")?.1;
                let unit = match unit.strip_prefix("Some(") {
                    Some(u) => {
                        let u = u.strip_prefix("Other(\"").unwrap_or(u);
                        let end = u.find(['"', ')'])?;
                        format!("_{}", u[..end].to_lowercase())
                    }
                    None => String::new(),
                };
                Some(format!("plimsoll_{name}{unit}"))
            })
            .collect()
    }

    /// The exposition in the OpenMetrics text format (what Prometheus asks for first).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        // The `SUMMARIES` carry client-computed quantiles of the last run: each is a summary
        // (quantile samples only), which the library has no type for. Declaring it a
        // gauge would make the `quantile` label illegal for linters and parsers.
        for name in SUMMARIES {
            out = out.replace(
                &format!("# TYPE {name} gauge\n"),
                &format!("# TYPE {name} summary\n"),
            );
        }
        out
    }

    /// The exposition in the classic Prometheus text format (0.0.4), for clients that do not
    /// ask for OpenMetrics (`curl`, `promtool check metrics`, older scrapers).
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode_openmetrics())
    }
}

/// The families of last-run quantiles ([`LastRunQuantiles`]): summaries of quantile samples.
const SUMMARIES: [&str; 3] = [
    "plimsoll_latency_seconds",
    "plimsoll_redis_operation_latency_seconds",
    "plimsoll_sql_query_latency_seconds",
];

/// The pub/sub probe's delivery figures.
/// A latency summary's quantiles ([`quantiles::QUANTILE_LABELS`]) in seconds.
fn quantile_seconds(l: &crate::report::LatencySummary) -> [f64; 6] {
    // Milliseconds with three decimals are whole microseconds: keep them exact.
    let secs = |ms: f64| (ms * 1000.0).round() / 1e6;
    [
        secs(l.p50),
        secs(l.p90),
        secs(l.p95),
        secs(l.p99),
        secs(l.p999),
        secs(l.max),
    ]
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: counter families take their `_total`
/// sample name in `HELP`/`TYPE`, and the OpenMetrics-only `UNIT` and `EOF` lines go.
fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Content type of [`Telemetry::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`Telemetry::encode_text`].
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `plimsoll_probe_grade`'s number for a grade.
pub fn grade_number(g: Grade) -> i64 {
    match g {
        Grade::Excellent => 0,
        Grade::Good => 1,
        Grade::Warning => 2,
        Grade::Critical => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counters_by_their_samples() {
        let om = "# HELP plimsoll_probe_runs Runs by grade.\n# TYPE plimsoll_probe_runs counter\n\
                  plimsoll_probe_runs_total{probe=\"a\",grade=\"good\"} 1\n\
                  # HELP plimsoll_probe_duration_seconds Length.\n\
                  # TYPE plimsoll_probe_duration_seconds gauge\n\
                  # UNIT plimsoll_probe_duration_seconds seconds\n\
                  plimsoll_probe_duration_seconds{probe=\"a\"} 1.5\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP plimsoll_probe_runs_total Runs by grade.\n\
             # TYPE plimsoll_probe_runs_total counter\n\
             plimsoll_probe_runs_total{probe=\"a\",grade=\"good\"} 1\n\
             # HELP plimsoll_probe_duration_seconds Length.\n\
             # TYPE plimsoll_probe_duration_seconds gauge\n\
             plimsoll_probe_duration_seconds{probe=\"a\"} 1.5\n"
        );
    }

    #[test]
    fn build_info_and_skips_are_exported() {
        let t = Telemetry::new();
        t.record_skip("p", SkipReason::Overlap);
        t.record_skip("p", SkipReason::Overlap);
        let text = t.encode_text();
        assert!(text.contains(&format!(
            "plimsoll_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("plimsoll_probe_skipped_total{probe=\"p\",reason=\"overlap\"} 2"));
        assert!(t.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn a_forgotten_probe_loses_its_regression_gauges() {
        use crate::report::{RegressionBlock, RegressionFigure};
        let t = Telemetry::new();
        let result = |probe: &str| {
            let figure = |state: &str| RegressionFigure {
                baseline: Some(20.0),
                current: 26.0,
                shift_ratio: Some(0.3),
                state: state.into(),
                runs: 12,
                ..Default::default()
            };
            crate::report::ProbeResult {
                schema: crate::report::SCHEMA.into(),
                probe: probe.into(),
                kind: crate::config::Kind::Load,
                started_at: "2026-11-26T00:00:00Z".into(),
                duration_s: 1.0,
                grade: Grade::Warning,
                grade_reason: String::new(),
                stats: None,
                aborted: None,
                refused: None,
                regression: Some(RegressionBlock {
                    mode: "detect".into(),
                    figures: [("p50".into(), figure("open")), ("rps".into(), figure("ok"))]
                        .into_iter()
                        .collect(),
                    min_runs: 5,
                }),
                block: None,
                thresholds: Vec::new(),
                notes: Vec::new(),
                detail: Default::default(),
            }
        };
        t.record_run(&result("gone"), 0.0);
        t.record_run(&result("kept"), 0.0);
        let series = |text: &str, probe: &str| {
            text.lines()
                .filter(|l| {
                    ["plimsoll_regression", "plimsoll_baseline_value"]
                        .iter()
                        .any(|f| l.starts_with(f))
                        && l.contains(&format!("probe=\"{probe}\""))
                })
                .count()
        };
        let text = t.encode_text();
        assert!(text.contains("plimsoll_regression{probe=\"gone\",metric=\"p50\"} 1"));
        // Two figures, three families each.
        assert_eq!(series(&text, "gone"), 6, "{text}");
        t.forget_probe("gone");
        let text = t.encode_text();
        assert_eq!(series(&text, "gone"), 0, "{text}");
        assert_eq!(series(&text, "kept"), 6, "{text}");
    }

    #[test]
    fn race_rounds_are_counted_by_outcome() {
        let t = Telemetry::new();
        let mut r = crate::report::ProbeResult {
            schema: crate::report::SCHEMA.into(),
            probe: "vendor-race".into(),
            kind: crate::config::Kind::Race,
            started_at: "2026-11-26T00:00:00Z".into(),
            duration_s: 1.0,
            grade: Grade::Critical,
            grade_reason: String::new(),
            stats: None,
            aborted: None,
            refused: None,
            regression: None,
            block: Some(crate::report::KindBlock::Race(crate::report::RaceStats {
                rounds: 10,
                single_winner: 7,
                multiple_winners: 2,
                no_winner: 1,
                ..Default::default()
            })),
            thresholds: Vec::new(),
            notes: Vec::new(),
            detail: Default::default(),
        };
        t.record_run(&r, 0.0);
        if let Some(crate::report::KindBlock::Race(race)) = r.block.as_mut() {
            race.multiple_winners = 3;
        }
        t.record_run(&r, 0.0);
        let text = t.encode_text();
        for (outcome, n) in [
            ("single_winner", 14),
            ("multiple_winners", 5),
            ("no_winner", 2),
        ] {
            let line = format!(
                "plimsoll_race_rounds_total{{probe=\"vendor-race\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(text.contains("plimsoll_probe_success{probe=\"vendor-race\"} 0"));
    }
}

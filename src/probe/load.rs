//! The `load` kind: HTTP load under the open or closed model, graded on throughput, latency
//! and errors (seed 000's webhook load test, seed 004's bursts, seed 002's phases).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{failed_result, ProbeKind, RunContext};
use crate::config::{Config, ProbeConfig, Problems};
use crate::engine::{self, ErrorKind, LoadOutcome, LoadSpec, Progress};
use crate::report::{
    error_rate_and_rps, rfc3339, round3, status_class_label, EndpointStats, IterationStats,
    LatencySummary, OutcomeSeries, ProbeResult, RunDetail, Stats, StepInfo, SCHEMA,
};
use crate::verdict::{self, Bands, Grade, ThresholdsConfig, Verdict};

pub struct LoadProbe;

impl ProbeKind for LoadProbe {
    fn name(&self) -> &'static str {
        "load"
    }

    fn validate(&self, probe: &mut ProbeConfig, path: &str, problems: &mut Problems) {
        match &mut probe.load {
            Some(l) => {
                l.validate(&format!("{path}.load"), problems);
                if probe.target.is_none() {
                    for (j, s) in l.step_configs().iter().enumerate() {
                        let at = if l.request.is_some() {
                            format!("{path}.load.request.url")
                        } else {
                            format!("{path}.load.steps[{j}].url")
                        };
                        super::require_absolute_url(&s.url, at, problems);
                    }
                    for (i, sc) in l.scenarios.iter().enumerate() {
                        for (j, st) in sc.steps.iter().enumerate() {
                            let at = format!("{path}.load.scenarios[{i}].steps[{j}].request.url");
                            super::require_absolute_url(&st.request.url, at, problems);
                        }
                    }
                }
            }
            None => problems.push(
                format!("{path}.load"),
                "missing: a `load` probe needs a [probe.load] table",
            ),
        }
    }

    fn run(&self, config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
        let Some(load) = &probe.load else {
            return failed_result(probe, "no [probe.load] section".into());
        };
        let spec = match LoadSpec::from_config(load, config.target_of(probe)) {
            Ok(mut s) => {
                s.trace = ctx.trace;
                Arc::new(s)
            }
            Err(e) => return failed_result(probe, e),
        };
        let progress = Arc::new(Progress::new(spec.workers));
        if let Some(f) = &ctx.on_start {
            f(progress.clone(), spec.expected_duration());
        }
        match engine::run(spec, progress, ctx.stop.clone()) {
            Ok(outcome) => grade_outcome(probe, &outcome),
            Err(e) => failed_result(probe, format!("the load engine could not start: {e}")),
        }
    }
}

/// Builds the result document of a load run and grades it.
pub fn grade_outcome(probe: &ProbeConfig, o: &LoadOutcome) -> ProbeResult {
    let stats = stats_of(o);
    let verdict = grade(&probe.thresholds, probe.target_rps, &stats);
    let mut notes: Vec<String> = verdict.forced.iter().map(|(_, w)| w.clone()).collect();
    if o.stopped_early {
        notes.push("stopped before the plan ended".into());
    }
    ProbeResult {
        schema: SCHEMA.to_string(),
        probe: probe.name.clone(),
        kind: probe.kind.clone(),
        started_at: rfc3339(o.started_at),
        duration_s: round3(o.elapsed.as_secs_f64()),
        grade: verdict.grade(),
        stats: Some(stats),
        race: None,
        pubsub: None,
        thresholds: verdict.results,
        notes,
        detail: detail_of(o),
    }
}

/// The run at the grain of the HTTP client conventions, for OTLP.
pub(crate) fn detail_of(o: &LoadOutcome) -> RunDetail {
    let steps = o
        .step_names
        .iter()
        .zip(&o.step_methods)
        .zip(&o.step_servers)
        .map(|((name, method), (host, port))| StepInfo {
            name: name.clone(),
            method: method.clone(),
            server_address: host.clone(),
            server_port: *port,
        })
        .collect();
    let requests = o
        .recorder
        .steps
        .iter()
        .enumerate()
        .flat_map(|(step, s)| {
            s.outcomes.iter().map(move |x| OutcomeSeries {
                step,
                status: x.status,
                error: x.error,
                buckets: x.buckets,
            })
        })
        .collect();
    RunDetail {
        started: Some(o.started_at),
        steps,
        requests,
        client_spans: o.client_spans.clone(),
    }
}

fn kinds_map(counts: &[u64]) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.as_str().to_string(), *n))
        .collect()
}

pub(crate) fn stats_of(o: &LoadOutcome) -> Stats {
    let rec = &o.recorder;
    let requests = rec.requests();
    let by_kind = rec.errors_by_kind();
    let errors: u64 = by_kind.iter().sum();
    let secs = o.elapsed.as_secs_f64();
    let mut status_classes = BTreeMap::new();
    for s in &rec.steps {
        for (i, n) in s.status_classes.iter().enumerate() {
            if *n > 0 {
                *status_classes
                    .entry(status_class_label(i).to_string())
                    .or_insert(0) += n;
            }
        }
    }
    let mut endpoints = BTreeMap::new();
    for (name, s) in o.step_names.iter().zip(&rec.steps) {
        // Two steps may share a name; their numbers then add up under it.
        let e: &mut EndpointStats = endpoints.entry(name.clone()).or_default();
        e.requests += s.requests;
        e.errors += s.error_count();
        e.latency_ms = LatencySummary::from_micros(&s.latency);
        for (k, n) in kinds_map(&s.errors) {
            *e.errors_by_kind.entry(k).or_insert(0) += n;
        }
    }
    let error_samples = ErrorKind::ALL
        .iter()
        .zip(&rec.error_samples)
        .filter_map(|(k, m)| m.as_ref().map(|m| (k.as_str().to_string(), m.clone())))
        .collect();
    let (error_rate, rps) = error_rate_and_rps(requests, errors, secs);
    Stats {
        requests,
        errors,
        error_rate,
        rps,
        offered_rps: o.planned.map(|(_, r)| round3(r)),
        latency_ms: LatencySummary::from_micros(&rec.total_latency()),
        service_time_ms: LatencySummary::from_micros(&rec.total_service()),
        errors_by_kind: kinds_map(&by_kind),
        error_samples,
        status_classes,
        iterations: IterationStats {
            started: rec.iterations_started,
            completed: rec.iterations_completed,
            failed: rec.iterations_failed,
            dropped: rec.dropped,
            planned: o.planned.map(|(n, _)| n),
        },
        send_lag_ms: o
            .planned
            .map(|_| LatencySummary::from_micros(&rec.send_lag)),
        bytes_received: rec.steps.iter().map(|s| s.bytes).sum(),
        endpoints,
    }
}

/// Default bands of the metrics every request-counting kind is graded on, where its
/// thresholds say nothing.
#[derive(Debug, Clone, Copy)]
pub struct StatDefaults {
    /// Throughput when the probe states no `target_rps` and has no planned rate.
    pub rps: Bands,
    pub p99_ms: Bands,
    /// Mean latency, graded only where a seed names it (Redis: 5 ms).
    pub mean_ms: Option<Bands>,
}

/// The seed table of DESIGN.md, for HTTP load.
pub const HTTP_DEFAULTS: StatDefaults = StatDefaults {
    rps: verdict::DEFAULT_RPS,
    p99_ms: verdict::DEFAULT_P99_MS,
    mean_ms: None,
};

/// Grades a run's statistics against the probe's thresholds and the seed defaults.
pub fn grade(t: &ThresholdsConfig, target_rps: Option<f64>, s: &Stats) -> Verdict {
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
    let rps_bands = t.rps.unwrap_or_else(|| match (target_rps, s.offered_rps) {
        (Some(target), _) => verdict::rps_bands_for_target(target),
        (None, Some(offered)) => verdict::rps_bands_for_plan(offered),
        (None, None) => defaults.rps,
    });
    v.higher_better("rps", s.rps, rps_bands);
    v.lower_better("p99", s.latency_ms.p99, t.p99_ms.unwrap_or(defaults.p99_ms));
    v.lower_better(
        "error_rate",
        s.error_rate,
        t.error_rate.unwrap_or(verdict::DEFAULT_ERROR_RATE),
    );
    let optional = [
        ("p50", t.p50_ms, s.latency_ms.p50),
        ("p95", t.p95_ms, s.latency_ms.p95),
        ("p999", t.p999_ms, s.latency_ms.p999),
        ("mean", t.mean_ms.or(defaults.mean_ms), s.latency_ms.mean),
    ];
    for (name, bands, value) in optional {
        if let Some(b) = bands {
            v.lower_better(name, value, b);
        }
    }
    if let Some(planned) = s.iterations.planned.filter(|n| *n > 0) {
        let ratio = s.iterations.dropped as f64 / planned as f64;
        v.lower_better(
            "dropped_ratio",
            ratio,
            t.dropped_ratio.unwrap_or(verdict::DEFAULT_DROPPED_RATIO),
        );
    }
    v
}

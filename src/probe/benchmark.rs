//! The `benchmark` kind (seed 002's `benchmark.ts`): named operations, each run `samples`
//! times one after another by a single user, with min, max, mean, median, p95 and p99 per
//! operation; each operation's p95 and mean decide the grade (seed defaults: p95 < 200 ms,
//! mean < 100 ms).
//!
//! Every operation is one closed-model run of the engine with one user, so the numbers come
//! from the same client, timers and histograms as every other probe.

use std::sync::Arc;
use std::time::Duration;

use super::{ProbeKind, RunContext, Sends};
use crate::config::{
    BenchmarkConfig, Config, GuardrailsConfig, HumanDuration, LoadConfig, ProbeConfig,
};
use crate::engine::{self, LoadOutcome, LoadSpec, Progress, Recorder};
use crate::report::outcome::{detail_of, stats_of};
use crate::report::{round3, ProbeResult};
use crate::verdict::{Bands, Grade, Verdict};

/// Seed 002's thresholds: an operation passes with p95 under 200 ms and mean under 100 ms.
pub const DEFAULT_P95_MS: Bands = Bands {
    excellent: None,
    good: Some(200.0),
    warning: None,
};
pub const DEFAULT_MEAN_MS: Bands = Bands {
    excellent: None,
    good: Some(100.0),
    warning: None,
};

pub struct BenchmarkProbe;

impl ProbeKind for BenchmarkProbe {
    type Config = BenchmarkConfig;

    fn urls(b: &BenchmarkConfig) -> Vec<&str> {
        b.operations
            .iter()
            .map(|o| o.request.url.as_str())
            .collect()
    }

    fn cap(g: &GuardrailsConfig, b: &mut BenchmarkConfig, notes: &mut Vec<String>) {
        if let Some(m) = g.max_rate {
            // One request at a time: a pause of 1 / m after each keeps it under m.
            let pace = HumanDuration(Duration::from_micros((1e6 / m).ceil() as u64));
            if b.pace.is_none_or(|p| p < pace) {
                b.pace = Some(pace);
                notes.push(format!(
                    "held to guardrails.max_rate: at most {m} requests/s (a pause of {pace} \
                     after each request)"
                ));
            }
        }
    }

    fn sends(b: &BenchmarkConfig) -> Sends {
        Sends {
            requests: Some(b.operations.iter().map(|o| o.samples).sum()),
            peak_rps: b.pace.map(|p| round3(1.0 / p.as_duration().as_secs_f64())),
            duration: None,
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        b: &BenchmarkConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let started_at = std::time::SystemTime::now();
        let mut outcomes = Vec::new();
        for op in &b.operations {
            if ctx.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let mut load = LoadConfig::closed(1, HumanDuration::from_secs(1));
            load.duration = None;
            load.iterations = Some(op.samples);
            load.workers = 1;
            load.timeout = b.timeout;
            load.max_body_bytes = b.max_body_bytes;
            load.vars = b.vars.clone();
            if let Some(p) = b.pace {
                load.think = p;
            }
            let mut request = op.request.clone();
            request.name = Some(op.name.clone());
            load.request = Some(request);
            let spec = match LoadSpec::from_config(&load, config.target_of(probe)) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    return ProbeResult::failed(probe, format!("operation {:?}: {e}", op.name))
                }
            };
            let progress = Arc::new(Progress::new(spec.workers));
            match engine::run(spec, progress, ctx.stop.clone()) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    return ProbeResult::failed(
                        probe,
                        format!("the load engine could not start: {e}"),
                    )
                }
            }
        }
        grade(probe, &combine(started_at, outcomes))
    }
}

/// One outcome with a step per operation, so the result document lists the operations as
/// endpoints and the exporter sees each as its own series.
fn combine(started_at: std::time::SystemTime, outcomes: Vec<LoadOutcome>) -> LoadOutcome {
    let mut recorder = Recorder::new(0);
    let mut all = LoadOutcome {
        recorder: Recorder::new(0),
        started_at,
        elapsed: Duration::ZERO,
        planned: None,
        step_names: Vec::new(),
        step_methods: Vec::new(),
        step_servers: Vec::new(),
        client_spans: Vec::new(),
        stopped_early: false,
    };
    for o in outcomes {
        let r = o.recorder;
        recorder.steps.extend(r.steps);
        recorder.iterations_started += r.iterations_started;
        recorder.iterations_completed += r.iterations_completed;
        recorder.iterations_failed += r.iterations_failed;
        recorder.abandoned += r.abandoned;
        for (a, b) in recorder.error_samples.iter_mut().zip(r.error_samples) {
            if a.is_none() {
                *a = b;
            }
        }
        all.elapsed += o.elapsed;
        all.step_names.extend(o.step_names);
        all.step_methods.extend(o.step_methods);
        all.step_servers.extend(o.step_servers);
        all.stopped_early |= o.stopped_early;
    }
    all.recorder = recorder;
    all
}

fn grade(probe: &ProbeConfig, o: &LoadOutcome) -> ProbeResult {
    let stats = stats_of(o);
    let t = &probe.thresholds;
    let mut v = Verdict::default();
    if stats.requests == 0 {
        v.force(Grade::Critical, "no request completed");
    }
    for (name, e) in &stats.endpoints {
        v.lower_better(
            &format!("p95[{name}]"),
            e.latency_ms.p95,
            t.p95_ms.unwrap_or(DEFAULT_P95_MS),
        );
        v.lower_better(
            &format!("mean[{name}]"),
            e.latency_ms.mean,
            t.mean_ms.unwrap_or(DEFAULT_MEAN_MS),
        );
    }
    if stats.requests > 0 {
        v.lower_better(
            "error_rate",
            stats.error_rate,
            t.error_rate.unwrap_or(crate::verdict::DEFAULT_ERROR_RATE),
        );
    }
    let mut notes = Vec::new();
    if o.stopped_early {
        notes.push("stopped before every operation ran".into());
    }
    notes.extend(super::ops::abandoned_note(o.recorder.abandoned));
    ProbeResult::graded(
        probe,
        o.started_at,
        o.elapsed,
        Some(stats),
        None,
        v,
        notes,
        detail_of(o),
    )
}

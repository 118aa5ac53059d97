//! The `load` kind: HTTP load under the open or closed model, graded on throughput, latency
//! and errors (a webhook load test at four levels, bursts, phases of arrival rates).
//!
//! This module only drives the engine and grades its outcome; it must not measure anything
//! itself (the engine does) nor name metrics (telemetry does).

use std::sync::Arc;

use super::{ProbeKind, RunContext};
use crate::config::{Config, LoadConfig, ProbeConfig};
use crate::engine::{self, LoadOutcome, LoadSpec, Progress};
use crate::report::outcome::{detail_of, stats_of};
use crate::report::ProbeResult;
use crate::verdict::grade_http;

pub struct LoadProbe;

impl ProbeKind for LoadProbe {
    type Config = LoadConfig;

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        load: &LoadConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let spec = match LoadSpec::from_config(load, config.target_of(probe)) {
            Ok(mut s) => {
                s.trace = ctx.trace;
                Arc::new(s)
            }
            Err(e) => return ProbeResult::failed(probe, e),
        };
        let progress = Arc::new(Progress::new(spec.workers));
        if let Some(f) = &ctx.on_start {
            f(progress.clone(), spec.expected_duration());
        }
        match engine::run(spec, progress, ctx.stop.clone()) {
            Ok(outcome) => grade_outcome(probe, &outcome),
            Err(e) => ProbeResult::failed(probe, format!("the load engine could not start: {e}")),
        }
    }
}

/// Builds the result document of a load run and grades it.
pub fn grade_outcome(probe: &ProbeConfig, o: &LoadOutcome) -> ProbeResult {
    let stats = stats_of(o);
    let verdict = grade_http(&probe.thresholds, probe.target_rps, &stats);
    let mut notes = Vec::new();
    if o.stopped_early {
        notes.push("stopped before the plan ended".into());
    }
    notes.extend(super::ops::abandoned_note(o.recorder.abandoned));
    ProbeResult::graded(
        probe,
        o.started_at,
        o.elapsed,
        Some(stats),
        None,
        verdict,
        notes,
        detail_of(o),
    )
}

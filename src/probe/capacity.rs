//! The `capacity` kind: finds the highest arrival rate a target sustains (its breaking point).
//!
//! Each step offers one rate under the open model (so a saturated target shows up as
//! latency, never as a slower sender): a warm-up run whose numbers are discarded, then the
//! measured run. A step fails when its p99 exceeds the limit, its error ratio exceeds the
//! limit, or it achieved less than a share of what it offered. The steps climb until one
//! fails; then the rate is bisected between the last good and the first bad step until they
//! are `resolution_rps` apart, and the search stops at once: it never pushes past a failure.
//!
//! This module drives the engine and judges steps; it must not measure anything itself (the
//! engine does), nor name metrics (telemetry does), nor print (the summary does).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::capacity_resources::{step_figures, ResourceReader};
use super::{ProbeKind, RunContext, Sends};
use crate::config::{
    CapacityConfig, Config, GuardrailsConfig, HumanDuration, LoadConfig, PhaseConfig, ProbeConfig,
};
use crate::engine::{self, LoadOutcome, LoadSpec, Progress};
use crate::report::outcome::{detail_of, stats_of};
use crate::report::{
    round3, CapacityLimits, CapacitySearch, CapacityStats, CapacityStep, KindBlock, ProbeResult,
};
use crate::verdict::{rps_bands_for_target, Grade, Verdict, DEFAULT_RPS};

pub struct CapacityProbe;

impl ProbeKind for CapacityProbe {
    type Config = CapacityConfig;

    fn urls(c: &CapacityConfig) -> Vec<&str> {
        vec![c.request.url.as_str()]
    }

    fn cap(g: &GuardrailsConfig, c: &mut CapacityConfig, notes: &mut Vec<String>) {
        if let Some(cap) = g.max_rate {
            let rates = c.rates();
            if rates.iter().any(|r| *r > cap) {
                let mut kept: Vec<f64> = rates.into_iter().filter(|r| *r < cap).collect();
                kept.push(cap);
                c.steps = Some(kept);
                c.ramp = None;
                notes.push(format!(
                    "held to guardrails.max_rate: the search stops at {cap} req/s; a breaking point \
                     there means at least {cap}"
                ));
            }
        }
        if let Some(m) = g.max_concurrency {
            if c.max_in_flight > m {
                c.max_in_flight = m;
                notes.push(format!(
                    "held to guardrails.max_concurrency: at most {m} requests in flight"
                ));
            }
        }
    }

    fn sends(c: &CapacityConfig) -> Sends {
        let (n, peak, d) = plan(c);
        Sends {
            requests: Some(n),
            peak_rps: Some(peak),
            duration: Some(d),
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        c: &CapacityConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let mut search = Search::new(config, probe, c, ctx);
        match search.run() {
            Ok(()) => search.result(),
            Err(e) => ProbeResult::failed(probe, e),
        }
    }
}

/// One capacity search in progress.
struct Search<'a> {
    config: &'a Config,
    probe: &'a ProbeConfig,
    c: &'a CapacityConfig,
    ctx: &'a RunContext,
    started_at: SystemTime,
    began: Instant,
    steps: Vec<CapacityStep>,
    /// Every request of the search (warm-ups included), merged, for the request series.
    all: Option<LoadOutcome>,
    /// The measured run of the highest passing step.
    best: Option<LoadOutcome>,
    requests: u64,
    stopped: bool,
    /// Reads the target's own CPU and memory around each measured window, when configured.
    resources: Option<ResourceReader>,
    /// Distinct failures of the resource reads, for the result's notes (a few at most).
    resource_errors: Vec<String>,
}

impl<'a> Search<'a> {
    fn new(
        config: &'a Config,
        probe: &'a ProbeConfig,
        c: &'a CapacityConfig,
        ctx: &'a RunContext,
    ) -> Self {
        Search {
            config,
            probe,
            c,
            ctx,
            started_at: SystemTime::now(),
            began: Instant::now(),
            steps: Vec::new(),
            all: None,
            best: None,
            requests: 0,
            stopped: false,
            resources: c.resources.as_ref().map(ResourceReader::new),
            resource_errors: Vec::new(),
        }
    }

    fn stop_requested(&self) -> bool {
        self.ctx.stop.load(Ordering::Relaxed)
    }

    /// Climbs the steps to the first failure, then bisects.
    fn run(&mut self) -> Result<(), String> {
        let mut last_good: Option<f64> = None;
        let mut first_bad: Option<f64> = None;
        for rate in self.c.rates() {
            match self.step(rate, "ramp")? {
                None => return Ok(()),
                Some(true) => last_good = Some(rate),
                Some(false) => {
                    first_bad = Some(rate);
                    break;
                }
            }
        }
        let Some(mut hi) = first_bad else {
            return Ok(());
        };
        let mut lo = last_good.unwrap_or(0.0);
        while hi - lo > self.c.resolution_rps {
            let mid = round3((lo + hi) / 2.0);
            if mid <= 0.0 {
                break;
            }
            match self.step(mid, "bisect")? {
                None => return Ok(()),
                Some(true) => lo = mid,
                Some(false) => hi = mid,
            }
        }
        Ok(())
    }

    /// Runs one step: warm-up (discarded), measured window, rest. `None` when the probe was
    /// stopped before the step could be judged.
    fn step(&mut self, rate: f64, phase: &str) -> Result<Option<bool>, String> {
        if self.stop_requested() {
            self.stopped = true;
            return Ok(None);
        }
        if !self.c.warm_up.is_zero() {
            let warm = self.engine_run(rate, self.c.warm_up)?;
            if warm.stopped_early {
                self.stopped = true;
                return Ok(None);
            }
        }
        let before = self.resources.as_ref().map(ResourceReader::sample);
        let o = self.engine_run(rate, self.c.hold)?;
        if o.stopped_early {
            self.stopped = true;
            return Ok(None);
        }
        let after = self.resources.as_ref().map(ResourceReader::sample);
        let s = stats_of(&o);
        let resources = before
            .zip(after)
            .map(|(b, a)| step_figures(&b, &a, s.requests));
        if let Some(e) = resources.as_ref().and_then(|r| r.error.as_ref()) {
            if !self.resource_errors.contains(e) && self.resource_errors.len() < 3 {
                tracing::warn!(probe = %self.probe.name, "the target's resource use: {e}");
                self.resource_errors.push(e.clone());
            }
        }
        let mut failed_on = Vec::new();
        if s.latency_ms.p99 > self.c.p99_ms {
            failed_on.push("p99".to_string());
        }
        if s.error_rate > self.c.error_rate {
            failed_on.push("error_rate".to_string());
        }
        if s.rps < self.c.min_throughput_ratio * rate {
            failed_on.push("throughput".to_string());
        }
        let passed = failed_on.is_empty();
        self.steps.push(CapacityStep {
            offered_rps: rate,
            achieved_rps: s.rps,
            latency_ms: s.latency_ms,
            error_rate: s.error_rate,
            requests: s.requests,
            errors: s.errors,
            dropped: s.iterations.dropped,
            passed,
            phase: phase.to_string(),
            failed_on,
            resources,
        });
        tracing::debug!(probe = %self.probe.name, rate, passed, p99_ms = s.latency_ms.p99, rps = s.rps, "capacity step");
        if passed && self.best_rate().is_none_or(|b| rate >= b) {
            self.best = Some(o);
        }
        self.rest();
        Ok(Some(passed))
    }

    /// The offered rate of the best passing step so far.
    fn best_rate(&self) -> Option<f64> {
        self.best.as_ref().and_then(|b| b.planned.map(|(_, r)| r))
    }

    /// Waits out the rest between steps, a stop cutting it short.
    fn rest(&mut self) {
        let end = Instant::now() + self.c.rest.as_duration();
        while Instant::now() < end {
            if self.stop_requested() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
    }

    /// One open-model engine run at `rate` for `length`; its requests join the search's.
    fn engine_run(&mut self, rate: f64, length: HumanDuration) -> Result<LoadOutcome, String> {
        let load = step_load(self.c, rate, length);
        let mut spec = LoadSpec::from_config(&load, self.config.target_of(self.probe))?;
        spec.trace = self.ctx.trace;
        let spec = Arc::new(spec);
        let progress = Arc::new(Progress::new(spec.workers));
        if let Some(f) = &self.ctx.on_start {
            f(progress.clone(), spec.expected_duration());
        }
        let o = engine::run(spec, progress, self.ctx.stop.clone())
            .map_err(|e| format!("the load engine could not start: {e}"))?;
        self.requests += o.recorder.requests();
        match &mut self.all {
            None => self.all = Some(o.clone()),
            Some(all) => {
                all.recorder.merge(&o.recorder);
                all.client_spans.extend(o.client_spans.iter().cloned());
            }
        }
        Ok(o)
    }

    /// The result document: the capacity block, the breaking-point step's statistics, the
    /// grade of the breaking point against the target.
    fn result(self) -> ProbeResult {
        let elapsed = self.began.elapsed();
        // What the target carried at the highest passing step: never more than was offered,
        // and never more than it served (a passing step may lag its offer by the allowed
        // share, which would otherwise overstate the capacity).
        let breaking_point = self
            .steps
            .iter()
            .filter(|s| s.passed)
            .max_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))
            .map_or(0.0, |s| s.achieved_rps.min(s.offered_rps));
        let first_failure = self
            .steps
            .iter()
            .filter(|s| !s.passed)
            .map(|s| s.offered_rps)
            .reduce(f64::min);
        let block = CapacityStats {
            breaking_point_rps: breaking_point,
            first_failure_rps: first_failure,
            knee_rps: knee(&self.steps),
            limits: CapacityLimits {
                p99_ms: self.c.p99_ms,
                error_rate: self.c.error_rate,
                min_throughput_ratio: self.c.min_throughput_ratio,
                resolution_rps: self.c.resolution_rps,
            },
            resources_source: self.resources.as_ref().map(ResourceReader::describe),
            search: CapacitySearch {
                requests: self.requests,
                duration_s: round3(elapsed.as_secs_f64()),
                steps: self.steps.len() as u32,
                stopped_early: self.stopped,
            },
            steps: self.steps,
        };
        let mut v = Verdict::default();
        let bands = self.probe.thresholds.rps.unwrap_or_else(|| {
            self.probe
                .target_rps
                .map(rps_bands_for_target)
                .unwrap_or(DEFAULT_RPS)
        });
        let mut notes = Vec::new();
        if block.steps.iter().any(|s| s.passed) {
            v.higher_better("breaking_point_rps", breaking_point, bands);
        } else if !block.steps.is_empty() {
            v.force(
                Grade::Critical,
                format!(
                    "no step was sustainable, not even {} req/s",
                    block.steps[0].offered_rps
                ),
            );
        }
        if self.stopped {
            notes.push("stopped before the search ended".to_string());
        } else if first_failure.is_none() && !block.steps.is_empty() {
            notes.push(format!(
                "every step passed: the breaking point is above {breaking_point} req/s"
            ));
        }
        for e in &self.resource_errors {
            notes.push(format!(
                "the target's resource use could not be read for every step: {e}"
            ));
        }
        let stats = self.best.as_ref().map(stats_of);
        let mut detail = self.all.as_ref().map(detail_of).unwrap_or_default();
        // The stored histogram goes with the headline percentiles: the best passing step's.
        detail.latency = self.best.as_ref().map(|o| o.recorder.total_latency());
        ProbeResult::graded(
            self.probe,
            self.started_at,
            elapsed,
            stats,
            Some(KindBlock::Capacity(block)),
            v,
            notes,
            detail,
        )
    }
}

/// The load of one step: the probe's request at `rate` for `length`, open model.
fn step_load(c: &CapacityConfig, rate: f64, length: HumanDuration) -> LoadConfig {
    let mut load = LoadConfig::closed(1, length);
    load.concurrency = None;
    load.duration = None;
    load.phases = vec![PhaseConfig {
        name: None,
        duration: Some(length),
        rate: Some(rate),
        ramp_to: None,
        burst: None,
    }];
    load.timeout = c.timeout;
    load.max_in_flight = c.max_in_flight;
    load.workers = c.workers;
    load.request = Some(c.request.clone());
    load
}

/// The highest rate measured before latency climbs: the step just below the lowest step
/// whose p99 is more than twice the lightest step's (with a 1 ms floor, so microsecond
/// noise on a fast target is no knee).
fn knee(steps: &[CapacityStep]) -> Option<f64> {
    let mut by_rate: Vec<&CapacityStep> = steps.iter().collect();
    by_rate.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    let base = by_rate.first()?.latency_ms.p99.max(1.0);
    let i = by_rate
        .iter()
        .position(|s| s.latency_ms.p99 > 2.0 * base || !s.passed)?;
    (i > 0).then(|| by_rate[i - 1].offered_rps)
}

/// The plan of a search that passes every step, for `once --dry-run`: arrivals (requests),
/// peak rate and duration. Bisection adds at most log2(range / resolution) steps.
pub fn plan(c: &CapacityConfig) -> (u64, f64, Duration) {
    let rates = c.rates();
    let per = (c.warm_up.as_duration() + c.hold.as_duration()).as_secs_f64();
    let requests = rates.iter().map(|r| (r * per).ceil() as u64).sum();
    let peak = rates.iter().copied().fold(0.0, f64::max);
    (requests, peak, c.longest_plan())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LatencySummary;

    fn step(rate: f64, p99: f64, passed: bool) -> CapacityStep {
        CapacityStep {
            offered_rps: rate,
            latency_ms: LatencySummary {
                p99,
                ..Default::default()
            },
            passed,
            ..Default::default()
        }
    }

    #[test]
    fn the_knee_is_the_last_flat_step() {
        let s = [
            step(100.0, 4.0, true),
            step(200.0, 5.0, true),
            step(400.0, 300.0, false),
            step(300.0, 12.0, true),
        ];
        assert_eq!(knee(&s), Some(200.0));
        assert_eq!(knee(&s[..2]), None);
        assert_eq!(knee(&[step(10.0, 900.0, false)]), None);
    }
}

//! The `load` kind's schema: the arrival model (open phases or closed users), the iteration
//! (one request, steps or flows) and the client's limits.
//!
//! This module describes and checks; the engine compiles it into an arrival plan.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::flow::{self, DataConfig, ScenarioConfig};
use crate::config::request::{GeneratorConfig, RequestConfig};
use crate::config::{Ceiling, HumanDuration, Limits, Problems};

/// Settings of a load probe: the arrival model, the iteration (request steps), the client.
///
/// Exactly one model is chosen: `phases` (open model), `concurrency` or `level` (closed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Open model: phases of planned arrivals, run one after another.
    #[serde(default)]
    pub phases: Vec<PhaseConfig>,
    /// Closed model: number of virtual users, each running iterations back to back.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Closed model preset from seed 000: `light` (10 users), `moderate` (50), `heavy` (200),
    /// `stress` (500).
    #[serde(default)]
    pub level: Option<Level>,
    /// Closed model: how long the users run. Default: 30 s, or no limit when `iterations` is
    /// set (each user then stops after its iterations).
    #[serde(default = "default_closed_duration")]
    pub duration: Option<HumanDuration>,
    /// Closed model: users start evenly spread over this time.
    #[serde(default = "default_zero_duration")]
    pub ramp_up: HumanDuration,
    /// Closed model: pause of each user between two iterations.
    #[serde(default = "default_zero_duration")]
    pub think: HumanDuration,
    /// Closed model: stop each user after this many iterations (no limit when absent).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Open model: most iterations in flight at once; an arrival beyond it is counted as
    /// dropped instead of silently delaying the plan.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Per-request timeout, from the moment the request is due to the end of its body.
    #[serde(default = "default_request_timeout")]
    pub timeout: HumanDuration,
    /// Largest response body read before the request counts as a `body` error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Worker threads, each with its own runtime and connections; 0 means one per core.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Run only shard `index` of `count` of the arrival plan (distributed mode).
    #[serde(default)]
    pub shard: Option<ShardConfig>,
    /// Named value generators usable as `{{name}}` in URLs, headers and bodies.
    #[serde(default)]
    pub vars: BTreeMap<String, GeneratorConfig>,
    /// The request of a one-step iteration (shorthand for a single entry in `steps`).
    #[serde(default)]
    pub request: Option<RequestConfig>,
    /// The requests of an iteration, sent in order by one virtual user.
    #[serde(default)]
    pub steps: Vec<RequestConfig>,
    /// Flows: scenarios picked per iteration by weight, with captures and expectations
    /// (the third way to describe an iteration, beside `request` and `steps`).
    #[serde(default)]
    pub scenarios: Vec<ScenarioConfig>,
    /// A data file whose rows feed `{{column}}` variables, one row per iteration.
    #[serde(default)]
    pub data: Option<DataConfig>,
}

fn default_closed_duration() -> Option<HumanDuration> {
    None
}

/// Closed-model run length when neither `duration` nor `iterations` is given (seed 000).
pub const DEFAULT_CLOSED_DURATION: HumanDuration = HumanDuration::from_secs(30);
fn default_zero_duration() -> HumanDuration {
    HumanDuration::default()
}
fn default_max_in_flight() -> u32 {
    10_000
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_workers() -> u32 {
    0
}

/// One phase of an open-model plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// Label of the phase in traces and logs (`warm-up`, `sustained`, …).
    #[serde(default)]
    pub name: Option<String>,
    /// Length of the phase. A burst phase may leave it out (it then lasts no time).
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Arrivals per second at the start of the phase.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Arrivals per second at the end; the rate changes linearly in between.
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// Release this many iterations at once at the start of the phase (seed 004's bursts).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Load level presets of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Light,
    Moderate,
    Heavy,
    Stress,
}

impl Level {
    /// Concurrent users of the level.
    pub fn concurrency(self) -> u32 {
        match self {
            Level::Light => 10,
            Level::Moderate => 50,
            Level::Heavy => 200,
            Level::Stress => 500,
        }
    }
}

/// Which slice of the arrival plan this process runs.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// This replica's number, from 0.
    pub index: u32,
    /// How many replicas share the plan.
    pub count: u32,
}

impl LoadConfig {
    /// A closed-model load config with every default, for the command line's `load`.
    pub fn closed(concurrency: u32, duration: HumanDuration) -> Self {
        LoadConfig {
            phases: Vec::new(),
            concurrency: Some(concurrency),
            level: None,
            duration: Some(duration),
            ramp_up: default_zero_duration(),
            think: default_zero_duration(),
            iterations: None,
            max_in_flight: default_max_in_flight(),
            timeout: default_request_timeout(),
            max_body_bytes: default_max_body_bytes(),
            workers: default_workers(),
            shard: None,
            vars: BTreeMap::new(),
            request: None,
            steps: Vec::new(),
            scenarios: Vec::new(),
            data: None,
        }
    }

    /// How long a closed-model run may last; `None` when only `iterations` bounds it.
    pub fn closed_duration(&self) -> Option<HumanDuration> {
        match (self.duration, self.iterations) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_CLOSED_DURATION),
        }
    }

    /// Validates the load settings (model, phases, steps, client limits).
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        let models = [
            !self.phases.is_empty(),
            self.concurrency.is_some(),
            self.level.is_some(),
        ];
        match models.iter().filter(|m| **m).count() {
            0 => problems.push(
                path,
                "choose a model: `phases` (open model), `concurrency` or `level` (closed model)",
            ),
            1 => {}
            _ => problems.push(
                path,
                "`phases`, `concurrency` and `level` exclude each other; keep one",
            ),
        }
        for (j, ph) in self.phases.iter().enumerate() {
            let pp = format!("{path}.phases[{j}]");
            if let Some(d) = ph.duration {
                limits.check_duration(format!("{pp}.duration"), d, problems);
            }
            match (ph.burst, ph.rate) {
                (Some(0), _) => problems.push(format!("{pp}.burst"), "must be greater than 0"),
                (Some(_), Some(_)) => {
                    problems.push(&pp, "a phase has either `burst` or `rate`, not both")
                }
                (None, None) => {
                    problems.push(&pp, "a phase needs `rate` (arrivals per second) or `burst`")
                }
                (None, Some(r)) => {
                    limits.check_rate(format!("{pp}.rate"), r, false, problems);
                    match ph.duration {
                        None => problems.push(
                            format!("{pp}.duration"),
                            "missing: a rate phase needs a duration",
                        ),
                        Some(d) if d.is_zero() => {
                            problems.push(format!("{pp}.duration"), "must be greater than 0")
                        }
                        _ => {}
                    }
                }
                (Some(n), None) => {
                    limits.check_count(format!("{pp}.burst"), n.into(), Ceiling::Burst, problems)
                }
            }
            if let Some(r) = ph.ramp_to {
                if ph.burst.is_some() {
                    problems.push(format!("{pp}.ramp_to"), "a burst phase cannot ramp");
                } else {
                    limits.check_rate(format!("{pp}.ramp_to"), r, true, problems);
                }
            }
        }
        for (name, v, ceiling) in [
            (
                "concurrency",
                self.concurrency.map(u64::from),
                Ceiling::Concurrency,
            ),
            ("iterations", self.iterations, Ceiling::Count),
            (
                "max_in_flight",
                Some(self.max_in_flight.into()),
                Ceiling::MaxInFlight,
            ),
            (
                "max_body_bytes",
                Some(self.max_body_bytes),
                Ceiling::BodyBytes,
            ),
            ("workers", Some(self.workers.into()), Ceiling::Workers),
            (
                "shard.count",
                self.shard.map(|s| s.count.into()),
                Ceiling::Count,
            ),
        ] {
            if let Some(v) = v {
                limits.check_count(format!("{path}.{name}"), v, ceiling, problems);
            }
        }
        for (name, d) in [
            ("duration", self.duration),
            ("ramp_up", Some(self.ramp_up)),
            ("think", Some(self.think)),
            ("timeout", Some(self.timeout)),
        ] {
            if let Some(d) = d {
                limits.check_duration(format!("{path}.{name}"), d, problems);
            }
        }
        for (i, sc) in self.scenarios.iter().enumerate() {
            for (j, st) in sc.steps.iter().enumerate() {
                let p = format!("{path}.scenarios[{i}].steps[{j}]");
                limits.check_count(
                    format!("{p}.loop"),
                    st.repeat.into(),
                    Ceiling::Count,
                    problems,
                );
                if let Some(t) = st.think {
                    limits.check_duration(format!("{p}.think"), t, problems);
                }
            }
        }
        if self.concurrency == Some(0) {
            problems.push(format!("{path}.concurrency"), "must be greater than 0");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            problems.push(format!("{path}.duration"), "must be greater than 0");
        }
        if self.iterations == Some(0) {
            problems.push(format!("{path}.iterations"), "must be greater than 0");
        }
        if self.max_in_flight == 0 {
            problems.push(format!("{path}.max_in_flight"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_body_bytes == 0 {
            problems.push(format!("{path}.max_body_bytes"), "must be greater than 0");
        }
        if let Some(s) = self.shard {
            if s.count == 0 {
                problems.push(format!("{path}.shard.count"), "must be greater than 0");
            } else if s.index >= s.count {
                problems.push(
                    format!("{path}.shard.index"),
                    format!("must be less than shard.count ({})", s.count),
                );
            }
        }
        let shapes = [
            self.request.is_some(),
            !self.steps.is_empty(),
            !self.scenarios.is_empty(),
        ];
        match shapes.iter().filter(|s| **s).count() {
            0 => problems.push(
                path,
                "missing: `request` (one request), `steps` (several) or `scenarios` (flows)",
            ),
            1 => {}
            _ => problems.push(
                path,
                "`request`, `steps` and `scenarios` exclude each other; keep one",
            ),
        }
        for (k, g) in &self.vars {
            g.validate(&format!("{path}.vars.{k}"), problems);
        }
        let mut vars: Vec<String> = self.vars.keys().cloned().collect();
        if let Some(d) = &self.data {
            match d.read_limited(limits.data_file_bytes) {
                Ok(rows) => vars.extend(rows.columns),
                Err(e) => problems.push(format!("{path}.data.file"), e),
            }
        }
        flow::validate_scenarios(&mut self.scenarios, path, &vars, problems);
        if let Some(r) = &mut self.request {
            r.validate(&format!("{path}.request"), &vars, problems);
        }
        for (j, s) in self.steps.iter_mut().enumerate() {
            s.validate(&format!("{path}.steps[{j}]"), &vars, problems);
        }
    }

    /// The iteration's steps, whichever way they were written.
    pub fn step_configs(&self) -> Vec<&RequestConfig> {
        match &self.request {
            Some(r) => vec![r],
            None => self.steps.iter().collect(),
        }
    }

    /// Every URL its requests go to, as written: its steps' and its scenarios'.
    pub fn urls(&self) -> Vec<&str> {
        let mut urls: Vec<&str> = self.step_configs().iter().map(|s| s.url.as_str()).collect();
        for sc in &self.scenarios {
            urls.extend(sc.steps.iter().map(|s| s.request.url.as_str()));
        }
        urls
    }

    /// Requests one iteration sends (its longest scenario, for flows).
    pub fn requests_per_iteration(&self) -> f64 {
        let steps = self.step_configs().len();
        let flow = self
            .scenarios
            .iter()
            .map(|s| s.steps.len())
            .max()
            .unwrap_or(0);
        steps.max(flow).max(1) as f64
    }
}

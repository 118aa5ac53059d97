//! Load generation: arrival plans, the HTTP hot path and latency recording.
//!
//! [`LoadSpec`] is a compiled, ready-to-run description of one load (model, steps, client
//! limits); [`run`] executes it on one current-thread runtime per worker thread and returns the
//! merged measurements. The engine knows nothing of probes, grades or metrics: it measures and
//! hands back numbers.

pub mod choice;
pub mod flow;
pub mod h1;
pub mod http;
mod pacer;
pub mod plan;
pub mod recorder;
mod rxstamp;
pub mod sign;
pub mod step;
pub mod template;
pub mod trace;
mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use choice::WeightedChoice;
pub use http::{ErrorKind, RequestError};
pub use plan::{ArrivalPlan, ClosedPlan, Shard};
pub use recorder::{
    live_bucket, live_bucket_bound_micros, live_quantile_ms, Progress, Recorder, SendWindowCounts,
    SendWindows, LIVE_LATENCY_BUCKETS, MAX_SEND_WINDOWS,
};
pub use step::PreparedStep;
pub use template::Generators;
pub use trace::{ClientSpan, TraceContext};

use crate::config::{LoadConfig, TargetConfig};

/// Arrivals per second one worker paces comfortably (bench/README.md: a plain GET to a fast
/// target costs it a few tens of microseconds of CPU at most): the open model's default worker
/// count is its peak rate over this, at most one per core.
const OPEN_RATE_PER_WORKER: f64 = 10_000.0;

/// How iterations are started.
#[derive(Debug, Clone)]
pub enum Model {
    /// Iterations start at planned times whatever the target does (arrival rate).
    Open { plan: ArrivalPlan, shard: Shard },
    /// A fixed number of users run iterations back to back.
    Closed(ClosedPlan),
}

/// A load ready to run.
#[derive(Debug)]
pub struct LoadSpec {
    pub model: Model,
    /// The steps of one iteration, in order.
    pub steps: Vec<PreparedStep>,
    /// Distinct scheme/host/port combinations the steps talk to.
    pub endpoints: Vec<http::Endpoint>,
    pub generators: Generators,
    /// Weighted scenarios with captures and checks, when the load is a flow; `steps` then
    /// holds every scenario's requests and the scenarios point into it.
    pub flow: Option<flow::Flow>,
    /// Rows of a data file, one per iteration.
    pub data: Option<flow::DataSet>,
    pub timeout: Duration,
    pub max_body: u64,
    pub max_in_flight: u32,
    pub workers: usize,
    /// The run's trace: sampled requests carry its `traceparent` and come back as client
    /// spans. `None` traces nothing (and costs nothing).
    pub trace: Option<TraceContext>,
}

impl LoadSpec {
    /// Compiles a validated load configuration.
    pub fn from_config(load: &LoadConfig, target: Option<&TargetConfig>) -> Result<Self, String> {
        let model = if load.phases.is_empty() {
            Model::Closed(ClosedPlan::from_config(load))
        } else {
            let shard = load
                .shard
                .map(|s| Shard {
                    index: u64::from(s.index),
                    count: u64::from(s.count),
                })
                .unwrap_or(Shard::WHOLE);
            Model::Open {
                plan: ArrivalPlan::from_phases(&load.phases),
                shard,
            }
        };
        let mut generators = Generators::new(&load.vars);
        let mut endpoints = Vec::new();
        let mut steps = Vec::new();
        // Data columns take their slots before any template that names them is compiled.
        let data = match &load.data {
            Some(d) => Some(flow::DataSet::load(d, &mut generators)?),
            None => None,
        };
        let flow = if load.scenarios.is_empty() {
            None
        } else {
            Some(flow::Flow::compile(
                load,
                target,
                &mut endpoints,
                &mut generators,
                &mut steps,
            )?)
        };
        for cfg in load.step_configs() {
            steps.push(PreparedStep::compile(
                cfg,
                target,
                &mut endpoints,
                &mut generators,
            )?);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut workers = if load.workers == 0 {
            cores
        } else {
            load.workers as usize
        };
        match &model {
            Model::Closed(c) => workers = workers.min(c.concurrency.max(1) as usize),
            // Unless told, an open model takes only the workers its peak rate needs: fewer
            // workers each see arrivals closer together, so more of them share a wake-up.
            Model::Open { plan, shard } if load.workers == 0 => {
                let per_process = plan.peak_rps() / shard.count as f64;
                let needed = (per_process / OPEN_RATE_PER_WORKER).ceil() as usize;
                workers = workers.min(needed.max(1));
            }
            Model::Open { .. } => {}
        }
        Ok(LoadSpec {
            model,
            steps,
            endpoints,
            generators,
            flow,
            data,
            timeout: load.timeout.as_duration(),
            max_body: load.max_body_bytes,
            max_in_flight: load.max_in_flight,
            workers: workers.max(1),
            trace: None,
        })
    }

    /// Planned arrivals of this process and their rate (open model only).
    pub fn planned(&self) -> Option<(u64, f64)> {
        match &self.model {
            Model::Open { plan, shard } => {
                let n = shard.len(plan.total);
                let d = plan.duration.as_secs_f64();
                Some((n, if d > 0.0 { n as f64 / d } else { n as f64 }))
            }
            Model::Closed(_) => None,
        }
    }

    /// Longest the run can last if nothing stalls (for progress displays).
    pub fn expected_duration(&self) -> Option<Duration> {
        match &self.model {
            Model::Open { plan, .. } => Some(plan.duration),
            Model::Closed(c) => c.duration,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    pub recorder: Recorder,
    pub started_at: SystemTime,
    /// From the start of the plan to the end of the last response.
    pub elapsed: Duration,
    /// Planned iterations and rate (open model).
    pub planned: Option<(u64, f64)>,
    pub step_names: Vec<String>,
    /// The HTTP method of each step, in the same order.
    pub step_methods: Vec<String>,
    /// The run was stopped before its plan ended.
    pub stopped_early: bool,
    /// The host and port each step talks to, in the same order (`server.address`/`port`).
    pub step_servers: Vec<(String, u16)>,
    /// Sampled requests (when the spec had a trace), in no particular order.
    pub client_spans: Vec<ClientSpan>,
}

/// Runs a load to its end (or until `stop` is set) and merges the workers' measurements.
/// Blocks the calling thread; the daemon calls it from a blocking task.
pub fn run(
    spec: Arc<LoadSpec>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<LoadOutcome> {
    worker::run(spec, progress, stop)
}

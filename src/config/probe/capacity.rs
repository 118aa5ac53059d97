//! Settings of the `capacity` probe kind: a search for the highest arrival rate a target
//! sustains (seed 004's load steps 10, 25, 50, 100, 200, 500; seed 002's ramp to 1,000 req/s).
//!
//! Steps (or a ramp) of arrival rate under the open model, each held after a discarded
//! warm-up; a step fails on its p99, its error rate or its achieved share of the offered
//! rate; after the first failure the rate is bisected to `resolution_rps`. Like the rest of
//! `config`, this module only reads and checks; it starts nothing.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::request::RequestConfig;
use crate::config::{parse_base_url, HumanDuration, Problems};

/// The `[probe.capacity]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// The request sent at every arrival.
    pub request: RequestConfig,
    /// Offered rates to try, in requests per second, in increasing order. Default: seed 004's
    /// `10, 25, 50, 100, 200, 500` (unless `ramp` is given).
    #[serde(default)]
    pub steps: Option<Vec<f64>>,
    /// A ramp instead of `steps`: `from`, `to` and either `by` (added) or `factor`
    /// (multiplied) per step.
    #[serde(default)]
    pub ramp: Option<RampConfig>,
    /// Traffic at a step's rate before its measured window; its requests are not counted.
    #[serde(default = "default_warm_up")]
    pub warm_up: HumanDuration,
    /// Length of a step's measured window (seed 004: 30 s).
    #[serde(default = "default_hold")]
    pub hold: HumanDuration,
    /// Pause between two steps, so that what queued in one does not spill into the next.
    #[serde(default = "default_rest")]
    pub rest: HumanDuration,
    /// A step fails when its p99 latency (from the planned send time) exceeds this, in ms.
    /// Default: the design's good bound, 500 ms.
    #[serde(default = "default_p99_ms")]
    pub p99_ms: f64,
    /// A step fails when its error ratio (0 to 1) exceeds this. Default: 1 %, the design's
    /// critical bound.
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
    /// A step fails when achieved throughput falls below this share of the offered rate
    /// (backpressure), 0 to 1.
    #[serde(default = "default_min_throughput_ratio")]
    pub min_throughput_ratio: f64,
    /// After the first failing step, bisect between the last good and the first bad rate
    /// until they are this close, in requests per second.
    #[serde(default = "default_resolution_rps")]
    pub resolution_rps: f64,
    /// Per-request timeout, from the planned send time.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Most requests in flight at once; an arrival beyond it is dropped (and counted).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Worker threads of the load engine; 0 means one per core.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Where to read the target's own CPU and memory at the start and end of each step's
    /// measured window (absent: not read).
    #[serde(default)]
    pub resources: Option<ResourcesConfig>,
}

/// The `[probe.capacity.resources]` table: the target's own resource use, per step. Exactly
/// one source: the target's Prometheus endpoint, a local process id, or a pid file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// An `http://` URL of the target's Prometheus text exposition (its `/metrics`).
    #[serde(default)]
    pub metrics_url: Option<String>,
    /// A process on this machine, read from `/proc/PID/stat` and `/proc/PID/status`.
    #[serde(default)]
    pub pid: Option<u32>,
    /// A file holding the process id (read at every sample, so a restart is noticed).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// The counter of CPU seconds in the exposition (all its series are added up).
    #[serde(default = "default_cpu_series")]
    pub cpu_series: String,
    /// The gauge of resident memory in bytes in the exposition (all its series added up).
    #[serde(default = "default_memory_series")]
    pub memory_series: String,
    /// How long one read of the endpoint may take.
    #[serde(default = "default_resources_timeout")]
    pub timeout: HumanDuration,
}

/// A ramp of offered rates.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampConfig {
    /// First rate, requests per second.
    pub from: f64,
    /// Last rate (included), requests per second.
    pub to: f64,
    /// Added to the rate at each step.
    #[serde(default)]
    pub by: Option<f64>,
    /// Multiplies the rate at each step (greater than 1).
    #[serde(default)]
    pub factor: Option<f64>,
}

/// Seed 004's `load_ramp_steps`.
pub const SEED_STEPS: [f64; 6] = [10.0, 25.0, 50.0, 100.0, 200.0, 500.0];
/// Most steps a ramp may expand to.
const MAX_STEPS: usize = 1000;

fn default_warm_up() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_hold() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_rest() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_p99_ms() -> f64 {
    500.0
}
fn default_error_rate() -> f64 {
    0.01
}
fn default_min_throughput_ratio() -> f64 {
    0.9
}
fn default_resolution_rps() -> f64 {
    10.0
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_max_in_flight() -> u32 {
    10_000
}
fn default_workers() -> u32 {
    0
}
fn default_cpu_series() -> String {
    "process_cpu_seconds_total".into()
}
fn default_memory_series() -> String {
    "process_resident_memory_bytes".into()
}
fn default_resources_timeout() -> HumanDuration {
    HumanDuration::from_millis(500)
}

/// Whether `name` is a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl ResourcesConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let given = [
            self.metrics_url.is_some(),
            self.pid.is_some(),
            self.pid_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            problems.push(
                path,
                "give exactly one of `metrics_url`, `pid` and `pid_file`",
            );
        }
        if let Some(u) = &self.metrics_url {
            match parse_base_url(u) {
                Err(e) => problems.push(format!("{path}.metrics_url"), e),
                Ok(b) if b.tls => problems.push(
                    format!("{path}.metrics_url"),
                    "must be an http:// URL (the resource reader speaks plain HTTP)",
                ),
                Ok(_) => {}
            }
        }
        if self.pid == Some(0) {
            problems.push(format!("{path}.pid"), "must be greater than 0");
        }
        if self
            .pid_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            problems.push(format!("{path}.pid_file"), "must not be empty");
        }
        for (field, name) in [
            ("cpu_series", &self.cpu_series),
            ("memory_series", &self.memory_series),
        ] {
            if !is_metric_name(name) {
                problems.push(
                    format!("{path}.{field}"),
                    format!("{name:?} is not a Prometheus metric name"),
                );
            }
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        } else if self.timeout.as_duration() > std::time::Duration::from_secs(5) {
            // A read sits between a step's traffic and the next: a long one would stretch
            // the search and the stop bound.
            problems.push(format!("{path}.timeout"), "must be at most 5s");
        }
    }
}

impl RampConfig {
    /// The ramp's rates, `from` to `to` included; empty when the ramp is invalid.
    fn rates(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut r = self.from;
        while r <= self.to * (1.0 + 1e-9) && out.len() < MAX_STEPS {
            out.push(r);
            r = match (self.by, self.factor) {
                (Some(b), None) if b > 0.0 => r + b,
                (None, Some(f)) if f > 1.0 => r * f,
                _ => return out,
            };
        }
        if out.last().is_some_and(|l| *l < self.to) && out.len() < MAX_STEPS {
            out.push(self.to);
        }
        out
    }
}

impl CapacityConfig {
    /// The rates to try in order: `steps`, the ramp's, or the seed's.
    pub fn rates(&self) -> Vec<f64> {
        match (&self.steps, &self.ramp) {
            (Some(s), _) => s.clone(),
            (None, Some(r)) => r.rates(),
            (None, None) => SEED_STEPS.to_vec(),
        }
    }

    /// The longest the search can take if every step passes (no bisection).
    pub fn longest_plan(&self) -> std::time::Duration {
        let per = self.warm_up.as_duration() + self.hold.as_duration() + self.rest.as_duration();
        per * self.rates().len() as u32
    }

    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        self.request
            .validate(&format!("{path}.request"), &[], problems);
        match (&self.steps, &self.ramp) {
            (Some(_), Some(_)) => problems.push(path, "`steps` and `ramp` exclude each other"),
            (Some(s), None) => {
                if s.is_empty() {
                    problems.push(format!("{path}.steps"), "must not be empty");
                }
                for (i, r) in s.iter().enumerate() {
                    if !(*r > 0.0 && r.is_finite()) {
                        problems.push(format!("{path}.steps[{i}]"), "must be greater than 0");
                    }
                }
                if s.windows(2).any(|w| w[1] <= w[0]) {
                    problems.push(format!("{path}.steps"), "rates must increase");
                }
            }
            (None, Some(r)) => {
                let at = format!("{path}.ramp");
                if !(r.from > 0.0 && r.from.is_finite()) {
                    problems.push(format!("{at}.from"), "must be greater than 0");
                }
                if !(r.to >= r.from && r.to.is_finite()) {
                    problems.push(format!("{at}.to"), "must be at least `from`");
                }
                match (r.by, r.factor) {
                    (Some(b), None) => {
                        if !(b > 0.0 && b.is_finite()) {
                            problems.push(format!("{at}.by"), "must be greater than 0");
                        }
                    }
                    (None, Some(f)) => {
                        if !(f > 1.0 && f.is_finite()) {
                            problems.push(format!("{at}.factor"), "must be greater than 1");
                        }
                    }
                    _ => problems.push(&at, "give exactly one of `by` and `factor`"),
                }
                if r.by.is_some_and(|b| b > 0.0)
                    && r.to.is_finite()
                    && (r.to - r.from) / r.by.unwrap_or(1.0) > MAX_STEPS as f64
                {
                    problems.push(&at, format!("expands to more than {MAX_STEPS} steps"));
                }
            }
            (None, None) => {}
        }
        if self.hold.is_zero() {
            problems.push(format!("{path}.hold"), "must be greater than 0");
        }
        if !(self.p99_ms > 0.0 && self.p99_ms.is_finite()) {
            problems.push(format!("{path}.p99_ms"), "must be greater than 0");
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            problems.push(format!("{path}.error_rate"), "must be from 0 to 1");
        }
        if !(self.min_throughput_ratio > 0.0 && self.min_throughput_ratio <= 1.0) {
            problems.push(
                format!("{path}.min_throughput_ratio"),
                "must be greater than 0 and at most 1",
            );
        }
        if !(self.resolution_rps > 0.0 && self.resolution_rps.is_finite()) {
            problems.push(format!("{path}.resolution_rps"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_in_flight == 0 {
            problems.push(format!("{path}.max_in_flight"), "must be greater than 0");
        }
        if let Some(r) = &self.resources {
            r.validate(&format!("{path}.resources"), problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_expand_to_their_rates() {
        let r = RampConfig {
            from: 50.0,
            to: 200.0,
            by: Some(50.0),
            factor: None,
        };
        assert_eq!(r.rates(), [50.0, 100.0, 150.0, 200.0]);
        let r = RampConfig {
            from: 100.0,
            to: 500.0,
            by: None,
            factor: Some(2.0),
        };
        assert_eq!(r.rates(), [100.0, 200.0, 400.0, 500.0]);
    }
}

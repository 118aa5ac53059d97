//! The `[probe.fault]` table: steady load through a fault (inject, hold, clear) measured in
//! short windows. The fault's actions and the proxy's toxics are read by `config/fault.rs`.
//!
//! Like the rest of `config`, this module only reads and checks.

use serde::Deserialize;

use crate::config::{
    Bands, FaultActionConfig, HumanDuration, Limits, LoadConfig, PhaseConfig, Problems,
    ProxyListenerConfig, Secret, ToxicConfig,
};

/// The `[probe.fault]` table: steady open-model load through a fault — `before`, inject,
/// `hold`, clear, `after` — measured in short windows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultProbeConfig {
    /// Name of the fault (the `fault` label of its metrics: `redis-down`).
    #[serde(default = "default_fault_name")]
    pub name: String,
    /// Arrivals per second, steady for the whole timeline (open model).
    pub rate: f64,
    /// The load (`[probe.fault.load]`): a `request`, `steps` or `scenarios`, and client
    /// limits, as in `[probe.load]` but without a model (`phases`, `concurrency`, `level`,
    /// `duration`): the fault probe sets one phase at `rate` over the whole timeline.
    pub load: LoadConfig,
    /// Steady load before the inject; its windows set the steady band.
    #[serde(default = "default_fault_before")]
    pub before: HumanDuration,
    /// How long the fault is held.
    #[serde(default = "default_fault_hold")]
    pub hold: HumanDuration,
    /// Load after the clear, to watch the recovery.
    #[serde(default = "default_fault_after")]
    pub after: HumanDuration,
    /// Length of one measuring window.
    #[serde(default = "default_fault_window")]
    pub window: HumanDuration,
    /// Recovered means: the first stretch this long whose every window is back in the
    /// steady band (success ratio and p99).
    #[serde(default = "default_fault_stretch")]
    pub recovery_stretch: HumanDuration,
    /// Least success ratio of a window in the steady band, however bad `before` was.
    #[serde(default = "default_fault_min_success")]
    pub min_success_ratio: f64,
    /// A window's p99 is in the steady band up to this many times the p99 of `before`
    /// (and at least `before`'s p99 plus 20 ms, so a fast target's jitter is no fault).
    #[serde(default = "default_fault_p99_factor")]
    pub p99_factor: f64,
    /// Proxy listeners the probe starts for its run (`[[probe.fault.proxy]]`); the load
    /// goes through them to the dependency.
    #[serde(default)]
    pub proxy: Vec<ProxyListenerConfig>,
    /// What is injected (`[probe.fault.inject]`).
    pub inject: FaultInjectConfig,
    /// Where the queue backlog is read during the fault (`[probe.fault.backlog]`).
    #[serde(default)]
    pub backlog: Option<BacklogConfig>,
    /// Outage error rate bands (error ratio during the fault, 0 to 1). Default: excellent
    /// when none, good < 1 %, warning ≤ 20 %.
    #[serde(default)]
    pub error_rate: Option<Bands>,
    /// Recovery time bands, seconds. Default: excellent < 5, good < 10, warning ≤ 30.
    #[serde(default)]
    pub recovery_s: Option<Bands>,
    /// Backlog peak bands. Default: good < 100, warning ≤ 1000.
    #[serde(default)]
    pub backlog_peak: Option<Bands>,
}

/// The fault: toxics on one of the probe's proxy listeners, or an action and its clear.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjectConfig {
    /// The proxy listener the toxics are set on.
    #[serde(default)]
    pub listener: Option<String>,
    /// Toxics set on `listener` for the hold (`[[probe.fault.inject.toxic]]`).
    #[serde(default)]
    pub toxic: Vec<ToxicConfig>,
    /// An external action instead of toxics (`[probe.fault.inject.action]`).
    #[serde(default)]
    pub action: Option<FaultActionConfig>,
    /// The action that clears it (`[probe.fault.inject.clear]`); recovery is counted from its
    /// return. None: the fault ends by itself (a restart).
    #[serde(default)]
    pub clear: Option<FaultActionConfig>,
}

/// A queue backlog source: a series scraped from a Prometheus `/metrics` URL, or the
/// length of a Redis list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogConfig {
    /// Prometheus text endpoint (`http://127.0.0.1:8080/metrics`).
    #[serde(default)]
    pub metrics_url: Option<String>,
    /// Series read from `metrics_url`: a metric name, optionally with its labels exactly as
    /// exposed (`queue_depth{queue="webhooks"}`); several matching lines are added.
    #[serde(default)]
    pub series: Option<String>,
    /// Redis URL (`redis://127.0.0.1:6379/0`; may be an `env:`/`file:` reference).
    #[serde(default)]
    pub redis_url: Option<Secret>,
    /// Redis list whose `LLEN` is the backlog.
    #[serde(default)]
    pub key: Option<String>,
    /// How often the backlog is read.
    #[serde(default = "default_fault_window")]
    pub interval: HumanDuration,
}

fn default_fault_name() -> String {
    "fault".to_string()
}
fn default_fault_before() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_fault_hold() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_fault_after() -> HumanDuration {
    HumanDuration::from_secs(15)
}
fn default_fault_window() -> HumanDuration {
    HumanDuration::from_millis(250)
}
fn default_fault_stretch() -> HumanDuration {
    HumanDuration::from_secs(2)
}
fn default_fault_min_success() -> f64 {
    0.99
}
fn default_fault_p99_factor() -> f64 {
    3.0
}

impl FaultProbeConfig {
    /// The whole timeline: before + hold + after.
    pub fn timeline(&self) -> std::time::Duration {
        self.before.as_duration() + self.hold.as_duration() + self.after.as_duration()
    }

    /// The load of the run: the configured load with one phase at `rate` over the timeline
    /// plus `extra` (slack for a clear action that takes time).
    pub fn timeline_load(&self, extra: std::time::Duration) -> LoadConfig {
        let mut load = self.load.clone();
        load.concurrency = None;
        load.level = None;
        load.duration = None;
        load.phases = vec![PhaseConfig {
            name: None,
            duration: Some(HumanDuration::from(self.timeline() + extra)),
            rate: Some(self.rate),
            ramp_to: None,
            burst: None,
        }];
        load
    }

    /// Checks the timeline, the load, the proxy and the fault; `path` is the table's.
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        if self.name.trim().is_empty() {
            problems.push(format!("{path}.name"), "must not be empty");
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            problems.push(format!("{path}.rate"), "must be greater than 0");
        }
        if !self.load.phases.is_empty()
            || self.load.concurrency.is_some()
            || self.load.level.is_some()
            || self.load.duration.is_some()
        {
            problems.push(
                format!("{path}.load"),
                "takes no model (`phases`, `concurrency`, `level`, `duration`): the fault \
                 probe runs `rate` over before + hold + after",
            );
        }
        if self.window.is_zero() {
            problems.push(format!("{path}.window"), "must be greater than 0");
        }
        if self.hold.is_zero() {
            problems.push(format!("{path}.hold"), "must be greater than 0");
        }
        if self.before < self.window {
            problems.push(
                format!("{path}.before"),
                "must be at least one window: it sets the steady band",
            );
        }
        if self.recovery_stretch < self.window {
            problems.push(
                format!("{path}.recovery_stretch"),
                "must be at least one window",
            );
        }
        if !(0.0..=1.0).contains(&self.min_success_ratio) {
            problems.push(
                format!("{path}.min_success_ratio"),
                "must be between 0 and 1",
            );
        }
        if self.p99_factor.is_nan() || self.p99_factor < 1.0 {
            problems.push(format!("{path}.p99_factor"), "must be at least 1");
        }
        let mut load = self.timeline_load(std::time::Duration::ZERO);
        load.validate(&format!("{path}.load"), limits, problems);
        self.load.request = load.request;
        self.load.steps = load.steps;
        self.load.scenarios = load.scenarios;
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.proxy.iter_mut().enumerate() {
            let p = format!("{path}.proxy[{i}]");
            if !names.insert(l.name.clone()) {
                problems.push(
                    format!("{p}.name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            l.validate(&p, problems);
        }
        let at = format!("{path}.inject");
        let i = &mut self.inject;
        match (&i.listener, i.toxic.is_empty(), &mut i.action) {
            (Some(name), false, None) => {
                if !names.contains(name) {
                    problems.push(
                        format!("{at}.listener"),
                        format!("no [[probe.fault.proxy]] listener named {name:?}"),
                    );
                }
                for (k, t) in i.toxic.iter().enumerate() {
                    t.validate(&format!("{at}.toxic[{k}]"), problems);
                }
                if i.clear.is_some() {
                    problems.push(
                        format!("{at}.clear"),
                        "toxics clear themselves; a clear action goes with `action`",
                    );
                }
            }
            (None, true, Some(a)) => {
                a.validate(&format!("{at}.action"), problems);
                if let Some(c) = &mut i.clear {
                    c.validate(&format!("{at}.clear"), problems);
                }
            }
            _ => problems.push(
                at,
                "give either `listener` with at least one `toxic`, or an `action` (and its \
                 `clear`)",
            ),
        }
        if let Some(b) = &mut self.backlog {
            let at = format!("{path}.backlog");
            match (&b.metrics_url, &b.series, &mut b.redis_url, &b.key) {
                (Some(u), Some(s), None, None) => {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        problems.push(format!("{at}.metrics_url"), "must start with http://");
                    }
                    if s.trim().is_empty() {
                        problems.push(format!("{at}.series"), "must not be empty");
                    }
                }
                (None, None, Some(u), Some(k)) => {
                    if let Err(m) = u.resolve() {
                        problems.push(format!("{at}.redis_url"), m);
                    }
                    if k.is_empty() {
                        problems.push(format!("{at}.key"), "must not be empty");
                    }
                }
                _ => problems.push(
                    at.clone(),
                    "give either `metrics_url` and `series`, or `redis_url` and `key`",
                ),
            }
            if b.interval.is_zero() {
                problems.push(format!("{at}.interval"), "must be greater than 0");
            }
        }
    }
}

//! Probe kinds: one module per kind behind the [`ProbeKind`] trait, picked by name from the
//! [`registry`].
//!
//! A probe turns its configuration into a [`ProbeResult`]. A probe that fails is data (grade
//! `critical`), never an error that stops the caller. Adding a kind is one file here, one line
//! in the registry, one config sub-struct and one test.

pub mod benchmark;
pub mod load;
pub mod ops;
pub mod pubsub;
pub mod race;
pub mod redis;
pub mod registry;
pub mod sql;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, ProbeConfig, Problems};
use crate::engine::Progress;
use crate::report::ProbeResult;

/// Called when a load starts, with its live progress counters and expected duration.
pub type OnStart = Arc<dyn Fn(Arc<Progress>, Option<std::time::Duration>) + Send + Sync>;

/// What a running probe may look at besides its configuration.
#[derive(Clone, Default)]
pub struct RunContext {
    /// Set to stop the probe early (shutdown, Ctrl-C); the probe returns what it measured.
    pub stop: Arc<AtomicBool>,
    /// Called once with the live progress counters and the expected duration, for displays.
    pub on_start: Option<OnStart>,
    /// The run's trace (the daemon's root span), when OTLP traces are on: load probes send
    /// sampled requests with its `traceparent`.
    pub trace: Option<crate::engine::TraceContext>,
}

/// One kind of probe.
pub trait ProbeKind: Send + Sync {
    /// The `kind` name in configuration files.
    fn name(&self) -> &'static str;
    /// Checks the kind's own configuration section, adding problems under `path`.
    fn validate(&self, probe: &mut ProbeConfig, path: &str, problems: &mut Problems);
    /// Runs the probe once to the end. Blocks the calling thread.
    fn run(&self, config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult;
}

/// Runs a probe by its kind; an unknown kind (impossible after validation) grades critical.
pub fn run_probe(config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
    match registry::kind(&probe.kind) {
        Some(k) => k.run(config, probe, ctx),
        None => failed_result(probe, format!("unknown probe kind {:?}", probe.kind)),
    }
}

/// A result for a probe that could not run at all.
pub fn failed_result(probe: &ProbeConfig, why: String) -> ProbeResult {
    ProbeResult {
        schema: crate::report::SCHEMA.to_string(),
        probe: probe.name.clone(),
        kind: probe.kind.clone(),
        started_at: crate::report::rfc3339(std::time::SystemTime::now()),
        duration_s: 0.0,
        grade: crate::verdict::Grade::Critical,
        stats: None,
        race: None,
        pubsub: None,
        thresholds: Vec::new(),
        notes: vec![why],
        detail: Default::default(),
    }
}

/// Reports a relative request URL of a probe that names no target to join it to.
pub(crate) fn require_absolute_url(url: &str, path: String, problems: &mut Problems) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(path, "relative URL, but the probe names no `target`");
    }
}

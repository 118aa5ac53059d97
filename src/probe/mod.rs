//! Probe kinds: one module per kind behind the [`ProbeKind`] trait, picked by the probe's
//! kind table in the [`registry`].
//!
//! A probe turns its configuration into a [`ProbeResult`]. A probe that fails is data (grade
//! `critical`), never an error that stops the caller. Kinds do not import each other: what
//! several share lives in [`ops`], `report::outcome` and `verdict`. Adding a kind is listed
//! in `docs/architecture.md`.

pub mod benchmark;
pub mod capacity;
pub mod capacity_resources;
pub mod fault;
pub mod guard;
pub mod load;
pub mod ops;
pub mod pubsub;
pub mod race;
pub mod redis;
pub mod redis_client;
pub mod registry;
pub mod sql;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, ProbeConfig};
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
    /// The process's guardrails (pause flag, blackouts); `None` builds them from the
    /// configuration for this run alone.
    pub guard: Option<Arc<guard::Guard>>,
}

/// One kind of probe. Every kind runs under the same stop contract: when `ctx.stop` is set it
/// returns what it measured so far, within a second, whatever its target does.
pub trait ProbeKind {
    /// The kind's own table (`[probe.<kind>]`).
    type Config;
    /// Runs the probe once to the end. Blocks the calling thread. A probe that fails is data
    /// (a critical result), never an error.
    fn run(
        config: &Config,
        probe: &ProbeConfig,
        cfg: &Self::Config,
        ctx: &RunContext,
    ) -> ProbeResult;
}

pub use registry::run_probe;

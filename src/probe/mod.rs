//! Probe kinds: one module per kind behind the [`ProbeKind`] trait, and the registry that picks
//! a probe's module by its kind table.
//!
//! A probe turns its configuration into a [`ProbeResult`]. A probe that fails is data (grade
//! `critical`), never an error that stops the caller. Kinds do not import each other: what
//! several share lives in [`ops`], [`guard`], `report::outcome` and `verdict`. This file is the
//! one list of kinds on the running side (the `mod` lines and [`each_kind!`]); adding a kind is
//! listed in `docs/architecture.md`.

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
pub mod scrape;
pub mod sql;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, GuardrailsConfig, ProbeConfig, ProbeSpec};
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

/// What a run of a kind would send if nothing fails, worked out without sending anything
/// (`once --dry-run`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sends {
    /// Requests the run sends (`None` when it depends on the target's speed).
    pub requests: Option<u64>,
    /// Highest offered rate, requests per second (`None` for a closed model without a cap).
    pub peak_rps: Option<f64>,
    /// Longest the run can last (`None` when it ends with its work, not a clock).
    pub duration: Option<Duration>,
}

/// One kind of probe. Every kind runs under the same stop contract: when `ctx.stop` is set it
/// returns what it measured so far, within a second, whatever its target does.
///
/// The guardrails ask each kind three things, and none has a default, so a new kind cannot
/// slip past the allowlist or the caps by forgetting one.
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
    /// Every URL its HTTP requests go to, as written (relative ones go to the target); empty
    /// for a kind that sends none. The host allowlist is checked against these.
    fn urls(cfg: &Self::Config) -> Vec<&str>;
    /// Holds its table to `guardrails.max_rate` and `max_concurrency`, saying in `notes` what
    /// it changed (the rate cap is named `guardrails.max_rate`).
    fn cap(g: &GuardrailsConfig, cfg: &mut Self::Config, notes: &mut Vec<String>);
    /// What a run would send, after the caps.
    fn sends(cfg: &Self::Config) -> Sends;
}

/// Runs `$body` with `$kind` naming the [`ProbeKind`] of `$spec` and `$cfg` bound to its
/// table (by reference, or mutably for a `&mut ProbeSpec`). The one `match` over the kinds on
/// the running side: it is exhaustive, so a new kind does not compile until it is listed here.
macro_rules! each_kind {
    ($spec:expr, |$kind:ident, $cfg:ident| $body:expr) => {
        match $spec {
            ProbeSpec::Load($cfg) => {
                type $kind = $crate::probe::load::LoadProbe;
                $body
            }
            ProbeSpec::Race($cfg) => {
                type $kind = $crate::probe::race::RaceProbe;
                $body
            }
            ProbeSpec::Benchmark($cfg) => {
                type $kind = $crate::probe::benchmark::BenchmarkProbe;
                $body
            }
            ProbeSpec::Redis($cfg) => {
                type $kind = $crate::probe::redis::RedisProbe;
                $body
            }
            ProbeSpec::Pubsub($cfg) => {
                type $kind = $crate::probe::pubsub::PubsubProbe;
                $body
            }
            ProbeSpec::Sql($cfg) => {
                type $kind = $crate::probe::sql::SqlProbe;
                $body
            }
            ProbeSpec::Capacity($cfg) => {
                type $kind = $crate::probe::capacity::CapacityProbe;
                $body
            }
            ProbeSpec::Fault($cfg) => {
                type $kind = $crate::probe::fault::FaultProbe;
                $body
            }
        }
    };
}

/// Runs a probe once to the end with its kind's module. Blocks the calling thread.
/// A load-generating kind runs inside the guardrails (`guard::guarded_run`).
/// Whatever the target echoed, no `env:`/`file:` secret leaves in the result (and so in the
/// result files, `/api/v1/probes` or the summary).
pub fn run_probe(config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
    redacted(guard::guarded_run(config, probe, ctx, |probe, ctx| {
        each_kind!(&probe.spec, |K, c| K::run(config, probe, c, ctx))
    }))
}

/// Every URL a probe's requests go to, as written.
pub fn urls_of(spec: &ProbeSpec) -> Vec<&str> {
    each_kind!(spec, |K, c| K::urls(c))
}

/// Holds a kind's table to the caps; returns what was changed, in words.
pub fn cap_spec(g: &GuardrailsConfig, spec: &mut ProbeSpec) -> Vec<String> {
    let mut notes = Vec::new();
    each_kind!(spec, |K, c| K::cap(g, c, &mut notes));
    notes
}

/// What a run of this table would send.
pub fn sends_of(spec: &ProbeSpec) -> Sends {
    each_kind!(spec, |K, c| K::sends(c))
}
/// The result with every resolved secret replaced by `***` in its messages (notes, the grade's
/// reason, error samples, …). The document round-trips through its JSON form so that every
/// text field is covered, including those of kinds still to come; the OTLP detail is kept.
fn redacted(mut r: ProbeResult) -> ProbeResult {
    let Ok(text) = serde_json::to_string(&r) else {
        return r;
    };
    let clean = crate::config::redact_secrets(&text);
    if clean == text {
        return r;
    }
    match serde_json::from_str::<ProbeResult>(&clean) {
        Ok(mut out) => {
            out.detail = std::mem::take(&mut r.detail);
            out
        }
        // A secret whose replacement broke the JSON (it held a quote): keep the figures and
        // drop the free text instead of leaking it.
        Err(_) => {
            r.notes = vec!["messages withheld: they quoted a secret".into()];
            r.grade_reason = crate::config::redact_secrets(&r.grade_reason);
            if let Some(s) = r.stats.as_mut() {
                s.error_samples.clear();
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a secret the target echoed back was stored in expectation messages.
    #[test]
    fn an_echoed_secret_never_reaches_the_result() {
        std::env::set_var("PLIMSOLL_TEST_ECHOED_SECRET", "hunter2-token");
        let mut s = crate::config::Secret::literal("env:PLIMSOLL_TEST_ECHOED_SECRET");
        // A literal built from a reference string is still resolved as a reference.
        let _ = s.resolve();
        let probe = crate::config::load_str(
            "[[probe]]\nname = \"p\"\nkind = \"load\"\n[probe.load]\nconcurrency = 1\n[probe.load.request]\nurl = \"http://127.0.0.1:9/\"\n",
            std::iter::empty(),
        )
        .unwrap()
        .probe
        .remove(0);
        let mut r = ProbeResult::failed(&probe, "expected 200, body was hunter2-token!");
        r.block = Some(crate::report::KindBlock::Race(Default::default()));
        let r = redacted(r);
        let doc = r.to_json_pretty();
        assert!(!doc.contains("hunter2-token"), "{doc}");
        assert!(doc.contains("***"), "{doc}");
        assert!(r.race().is_some(), "the kind block survives the round trip");
    }
}

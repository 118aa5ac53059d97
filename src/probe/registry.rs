//! The registry: a probe's kind table → the module that runs it. The `match` below is
//! exhaustive over [`ProbeSpec`], so a new kind does not compile until it is listed here.

use super::{benchmark, capacity, fault, load, pubsub, race, redis, sql, ProbeKind, RunContext};
use crate::config::{Config, ProbeConfig, ProbeSpec};
use crate::report::ProbeResult;

/// Runs a probe once to the end with its kind's module. Blocks the calling thread.
/// A load-generating kind runs inside the guardrails (`guard::guarded_run`).
pub fn run_probe(config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
    super::guard::guarded_run(config, probe, ctx, |probe, ctx| {
        run_kind(config, probe, ctx)
    })
}

fn run_kind(config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
    match &probe.spec {
        ProbeSpec::Load(c) => load::LoadProbe::run(config, probe, c, ctx),
        ProbeSpec::Race(c) => race::RaceProbe::run(config, probe, c, ctx),
        ProbeSpec::Benchmark(c) => benchmark::BenchmarkProbe::run(config, probe, c, ctx),
        ProbeSpec::Redis(c) => redis::RedisProbe::run(config, probe, c, ctx),
        ProbeSpec::Pubsub(c) => pubsub::PubsubProbe::run(config, probe, c, ctx),
        ProbeSpec::Sql(c) => sql::SqlProbe::run(config, probe, c, ctx),
        ProbeSpec::Capacity(c) => capacity::CapacityProbe::run(config, probe, c, ctx),
        ProbeSpec::Fault(c) => fault::FaultProbe::run(config, probe, c, ctx),
    }
}

//! The registry: a probe's kind table → the module that runs it. The `match` below is
//! exhaustive over [`ProbeSpec`], so a new kind does not compile until it is listed here.

use super::{benchmark, capacity, fault, load, pubsub, race, redis, sql, ProbeKind, RunContext};
use crate::config::{Config, ProbeConfig, ProbeSpec};
use crate::report::ProbeResult;

/// Runs a probe once to the end with its kind's module. Blocks the calling thread.
/// A load-generating kind runs inside the guardrails (`guard::guarded_run`).
/// Whatever the target echoed, no `env:`/`file:` secret leaves in the result (and so in the
/// result files, `/api/v1/probes` or the summary).
pub fn run_probe(config: &Config, probe: &ProbeConfig, ctx: &RunContext) -> ProbeResult {
    redacted(super::guard::guarded_run(
        config,
        probe,
        ctx,
        |probe, ctx| run_kind(config, probe, ctx),
    ))
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

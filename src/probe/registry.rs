//! The registry: kind name → probe kind. Adding a kind adds one line to [`KINDS`].

use super::ProbeKind;
use crate::config::{ProbeConfig, Problems};

/// Every probe kind.
pub static KINDS: &[&dyn ProbeKind] = &[
    &super::load::LoadProbe,
    &super::race::RaceProbe,
    &super::benchmark::BenchmarkProbe,
    &super::redis::RedisProbe,
    &super::pubsub::PubsubProbe,
    &super::sql::SqlProbe,
];

/// The kind of that name.
pub fn kind(name: &str) -> Option<&'static dyn ProbeKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Validates a probe's kind-specific section.
pub fn validate(p: &mut ProbeConfig, path: &str, problems: &mut Problems) {
    match kind(&p.kind) {
        Some(k) => k.validate(p, path, problems),
        None => {
            let known: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
            problems.push(
                format!("{path}.kind"),
                format!(
                    "unknown probe kind {:?} (known: {})",
                    p.kind,
                    known.join(", ")
                ),
            );
        }
    }
}

//! Settings of the `benchmark` probe kind (seed 002's `benchmark.ts`): named operations, each
//! run a number of times one after another, graded per operation on p95 and mean latency.
//!
//! Like the rest of `config`, this module only reads and checks; it starts nothing.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::request::{GeneratorConfig, RequestConfig};
use crate::config::{Ceiling, HumanDuration, Limits, Problems};

/// The `[probe.benchmark]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// The operations, run in this order, each `samples` times back to back by one user.
    pub operations: Vec<OperationConfig>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Largest response body read before the request counts as a `body` error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Named value generators usable as `{{name}}` in the operations' requests.
    #[serde(default)]
    pub vars: BTreeMap<String, GeneratorConfig>,
    /// Least time from one request's end to the next one's start; not read from the file:
    /// the guardrails set it to hold the benchmark to `guardrails.max_rate`.
    #[serde(skip)]
    pub pace: Option<HumanDuration>,
}

/// One named operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationConfig {
    /// Name of the operation: its row in the table and its `endpoint` label.
    pub name: String,
    /// How many times to run it.
    #[serde(default = "default_samples")]
    pub samples: u64,
    /// The request.
    pub request: RequestConfig,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_samples() -> u64 {
    100
}

/// Most samples of one operation: the operations run one request at a time, so more would
/// turn a benchmark into a load test.
pub const MAX_SAMPLES: u64 = 100_000;

impl BenchmarkConfig {
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        limits.check_duration(format!("{path}.timeout"), self.timeout, problems);
        limits.check_count(
            format!("{path}.max_body_bytes"),
            self.max_body_bytes,
            Ceiling::BodyBytes,
            problems,
        );
        if self.operations.is_empty() {
            problems.push(
                format!("{path}.operations"),
                "missing: at least one operation",
            );
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_body_bytes == 0 {
            problems.push(format!("{path}.max_body_bytes"), "must be greater than 0");
        }
        for (k, g) in &self.vars {
            g.validate(&format!("{path}.vars.{k}"), problems);
        }
        let vars: Vec<String> = self.vars.keys().cloned().collect();
        let mut names = std::collections::HashSet::new();
        for (i, op) in self.operations.iter_mut().enumerate() {
            let p = format!("{path}.operations[{i}]");
            if op.name.trim().is_empty() {
                problems.push(format!("{p}.name"), "must not be empty");
            } else if !names.insert(op.name.clone()) {
                problems.push(
                    format!("{p}.name"),
                    format!("duplicate operation name {:?}", op.name),
                );
            }
            if !(1..=MAX_SAMPLES).contains(&op.samples) {
                problems.push(
                    format!("{p}.samples"),
                    format!("must be between 1 and {MAX_SAMPLES}"),
                );
            }
            op.request
                .validate(&format!("{p}.request"), &vars, problems);
        }
    }
}

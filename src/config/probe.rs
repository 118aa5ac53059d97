//! A probe as configured: the settings every kind shares, and exactly one kind's own table.
//!
//! The kind is a closed set ([`Kind`], [`ProbeSpec`]): a probe's `kind = "race"` selects the
//! `[probe.race]` table and nothing else, so a new kind is a new variant and the compiler
//! names every `match` that must handle it (here, in `probe::each_kind!`, in the report's
//! kind blocks). Each kind's table is a submodule of this one (`config/probe/<kind>.rs`), so
//! the configuration side of a new kind is its own file and this one.
//! This module only reads and checks; running a kind is the `probe` module's business.

mod benchmark;
mod capacity;
mod fault;
mod load;
mod pubsub;
mod race;
mod stores;

use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::every_error::{deserialize_all, PathError};
use super::{Limits, Problems, ScheduleConfig, ThresholdsConfig};

pub use self::benchmark::{BenchmarkConfig, OperationConfig};
pub use self::capacity::{CapacityConfig, RampConfig, ResourcesConfig, SEED_STEPS};
pub use self::fault::{BacklogConfig, FaultInjectConfig, FaultProbeConfig};
pub use self::load::{Level, LoadConfig, PhaseConfig, ShardConfig, DEFAULT_CLOSED_DURATION};
pub use self::pubsub::{PublishVia, PubsubConfig};
pub use self::race::{RaceConfig, VerifyConfig, CLAIMANTS, CLAIMANT_VAR, ID_VAR};
pub use self::stores::{RedisConfig, RedisTlsConfig, SqlConfig, SqlQueryConfig};

/// The probe kinds. Each name is also the name of the kind's table (`[probe.load]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Load,
    Race,
    Benchmark,
    Redis,
    Pubsub,
    Sql,
    Capacity,
    Fault,
}

impl Kind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: &'static [Kind] = &[
        Kind::Load,
        Kind::Race,
        Kind::Benchmark,
        Kind::Redis,
        Kind::Pubsub,
        Kind::Sql,
        Kind::Capacity,
        Kind::Fault,
    ];

    /// The `kind` value and table name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Race => "race",
            Kind::Benchmark => "benchmark",
            Kind::Redis => "redis",
            Kind::Pubsub => "pubsub",
            Kind::Sql => "sql",
            Kind::Capacity => "capacity",
            Kind::Fault => "fault",
        }
    }

    /// The kind of that name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether a run of this kind sends HTTP requests to its target (and so takes turns with
    /// other probes of the same target, and is held by the target guardrails).
    pub fn loads_target(self) -> bool {
        match self {
            Kind::Load
            | Kind::Race
            | Kind::Benchmark
            | Kind::Pubsub
            | Kind::Capacity
            | Kind::Fault => true,
            Kind::Redis | Kind::Sql => false,
        }
    }

    /// Whether its runs draw on `guardrails.max_total_rate`, the rate budget the runs going on
    /// share. A race fires its claimants at once and is bounded by `max_concurrency` instead;
    /// the store kinds send no HTTP load.
    pub fn draws_rate_budget(self) -> bool {
        match self {
            Kind::Load | Kind::Benchmark | Kind::Pubsub | Kind::Capacity | Kind::Fault => true,
            Kind::Race | Kind::Redis | Kind::Sql => false,
        }
    }

    /// Whether every endpoint of a run is an operation graded on its own (the benchmark's key
    /// operations), so the summary shows an operations table with each one's figures instead
    /// of the endpoints of one load.
    pub fn grades_each_endpoint(self) -> bool {
        match self {
            Kind::Benchmark => true,
            Kind::Load
            | Kind::Race
            | Kind::Redis
            | Kind::Pubsub
            | Kind::Sql
            | Kind::Capacity
            | Kind::Fault => false,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind's own settings: the table named by `kind`.
// Built once per probe and read in place; boxing the bigger tables would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Load(LoadConfig),
    Race(RaceConfig),
    Benchmark(BenchmarkConfig),
    Redis(RedisConfig),
    Pubsub(PubsubConfig),
    Sql(SqlConfig),
    Capacity(CapacityConfig),
    Fault(FaultProbeConfig),
}

impl ProbeSpec {
    pub fn kind(&self) -> Kind {
        match self {
            ProbeSpec::Load(_) => Kind::Load,
            ProbeSpec::Race(_) => Kind::Race,
            ProbeSpec::Benchmark(_) => Kind::Benchmark,
            ProbeSpec::Redis(_) => Kind::Redis,
            ProbeSpec::Pubsub(_) => Kind::Pubsub,
            ProbeSpec::Sql(_) => Kind::Sql,
            ProbeSpec::Capacity(_) => Kind::Capacity,
            ProbeSpec::Fault(_) => Kind::Fault,
        }
    }

    /// Reads the kind's table. Errors carry the path inside the table; every unknown field and
    /// wrong type of the table comes back at once.
    fn from_value(kind: Kind, v: Value) -> Result<ProbeSpec, Vec<PathError>> {
        Ok(match kind {
            Kind::Load => ProbeSpec::Load(de(v)?),
            Kind::Race => ProbeSpec::Race(de(v)?),
            Kind::Benchmark => ProbeSpec::Benchmark(de(v)?),
            Kind::Redis => ProbeSpec::Redis(de(v)?),
            Kind::Pubsub => ProbeSpec::Pubsub(de(v)?),
            Kind::Sql => ProbeSpec::Sql(de(v)?),
            Kind::Capacity => ProbeSpec::Capacity(de(v)?),
            Kind::Fault => ProbeSpec::Fault(de(v)?),
        })
    }

    /// Checks the kind's table; `path` is the probe's (`probe[2]`).
    fn validate(&mut self, path: &str, has_target: bool, limits: &Limits, problems: &mut Problems) {
        let at = format!("{path}.{}", self.kind());
        match self {
            ProbeSpec::Load(l) => {
                l.validate(&at, limits, problems);
                if !has_target {
                    require_absolute_load_urls(l, &at, problems);
                }
            }
            ProbeSpec::Fault(f) => {
                f.validate(&at, limits, problems);
                if !has_target {
                    require_absolute_load_urls(&f.load, &format!("{at}.load"), problems);
                }
            }
            ProbeSpec::Race(r) => {
                r.validate(&at, limits, problems);
                if !has_target {
                    if let Some(s) = &r.setup {
                        require_absolute_url(&s.url, format!("{at}.setup.url"), problems);
                    }
                    require_absolute_url(&r.claim.url, format!("{at}.claim.url"), problems);
                }
            }
            ProbeSpec::Benchmark(b) => {
                b.validate(&at, limits, problems);
                if !has_target {
                    for (i, op) in b.operations.iter().enumerate() {
                        let p = format!("{at}.operations[{i}].request.url");
                        require_absolute_url(&op.request.url, p, problems);
                    }
                }
            }
            ProbeSpec::Redis(r) => r.validate(&at, limits, problems),
            ProbeSpec::Pubsub(p) => p.validate(&at, has_target, limits, problems),
            ProbeSpec::Sql(s) => s.validate(&at, limits, problems),
            ProbeSpec::Capacity(c) => {
                c.validate(&at, problems);
                if !has_target {
                    require_absolute_url(&c.request.url, format!("{at}.request.url"), problems);
                }
            }
        }
    }
}

/// Reports the relative request URLs of a load whose probe names no target.
fn require_absolute_load_urls(l: &LoadConfig, at: &str, problems: &mut Problems) {
    for (j, s) in l.step_configs().iter().enumerate() {
        let p = if l.request.is_some() {
            format!("{at}.request.url")
        } else {
            format!("{at}.steps[{j}].url")
        };
        require_absolute_url(&s.url, p, problems);
    }
    for (i, sc) in l.scenarios.iter().enumerate() {
        for (j, st) in sc.steps.iter().enumerate() {
            let p = format!("{at}.scenarios[{i}].steps[{j}].request.url");
            require_absolute_url(&st.request.url, p, problems);
        }
    }
}

/// Reports a relative request URL of a probe that names no target to join it to.
fn require_absolute_url(url: &str, path: String, problems: &mut Problems) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(path, "relative URL, but the probe names no `target`");
    }
}

/// One probe: what every kind shares, and the kind's own settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Unique name; it labels every metric and result of this probe.
    pub name: String,
    /// Name of a `[[target]]`; relative request URLs are joined to its URL.
    pub target: Option<String>,
    /// Throughput this probe must reach, in requests per second.
    pub target_rps: Option<f64>,
    /// Grade thresholds that replace the defaults for this probe.
    pub thresholds: ThresholdsConfig,
    /// When the daemon runs this probe; without it the daemon lists it but never runs it.
    pub schedule: Option<ScheduleConfig>,
    /// Let this probe run while another probe works the same target.
    pub share_target: bool,
    /// The kind and its table.
    pub spec: ProbeSpec,
}

/// The settings every kind shares, as written (`kind` included, the kind's table not).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFields {
    /// Unique name; it labels every metric and result of this probe.
    name: String,
    /// Probe kind: `load`, `race`, `benchmark`, `redis`, `pubsub`, `sql`, `capacity`
    /// or `fault`.
    #[allow(dead_code)]
    kind: String,
    /// Name of a `[[target]]`; relative request URLs are joined to its URL.
    #[serde(default)]
    target: Option<String>,
    /// Throughput this probe must reach, in requests per second. Without it, an open-model
    /// probe is held to its planned rate and a closed-model probe is not graded on throughput.
    #[serde(default)]
    target_rps: Option<f64>,
    /// Grade thresholds that replace the defaults for this probe.
    #[serde(default)]
    thresholds: ThresholdsConfig,
    /// When the daemon runs this probe. Without it the daemon lists the probe but never
    /// runs it (`plimsoll once` still can).
    #[serde(default)]
    schedule: Option<ScheduleConfig>,
    /// Let this probe run while another probe works the same target. By default the daemon
    /// runs the probes of one target one at a time, so that they do not distort each other's
    /// numbers or add up to more load than intended.
    #[serde(default = "default_false")]
    share_target: bool,
}

fn default_false() -> bool {
    false
}

fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Vec<PathError>> {
    deserialize_all(v)
}

impl ProbeConfig {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// Reads one `[[probe]]` entry: the shared fields, then only the table its `kind` names.
    /// Every problem found is returned, each with its path inside the entry.
    pub fn from_value(v: Value) -> Result<ProbeConfig, Vec<PathError>> {
        let Value::Object(mut map) = v else {
            return Err(vec![PathError {
                path: String::new(),
                message: "a probe must be a table".into(),
            }]);
        };
        let mut errors = Vec::new();
        let kind = match map.get("kind") {
            None => {
                errors.push(PathError {
                    path: "kind".into(),
                    message: format!("missing: one of {}", kind_list()),
                });
                None
            }
            Some(Value::String(s)) => match Kind::from_name(s) {
                Some(k) => Some(k),
                None => {
                    errors.push(PathError {
                        path: "kind".into(),
                        message: format!("unknown probe kind {s:?} (known: {})", kind_list()),
                    });
                    None
                }
            },
            Some(other) => {
                errors.push(PathError {
                    path: "kind".into(),
                    message: format!("must be a string, found {}", json_type(other)),
                });
                None
            }
        };
        // Take every kind table out, so the shared fields deserialize alone; a table that is
        // not the probe's kind is a mistake worth naming.
        let mut table = None;
        for k in Kind::ALL {
            if let Some(t) = map.remove(k.as_str()) {
                if Some(*k) == kind {
                    table = Some(t);
                } else if let Some(kind) = kind {
                    errors.push(PathError {
                        path: k.as_str().into(),
                        message: format!("a `{kind}` probe takes no [probe.{k}] table"),
                    });
                }
            }
        }
        let common = de::<CommonFields>(Value::Object(map));
        let spec = match (kind, table) {
            (Some(kind), Some(t)) => match ProbeSpec::from_value(kind, t) {
                Ok(s) => Some(s),
                Err(errs) => {
                    errors.extend(errs.into_iter().map(|mut e| {
                        e.path = if e.path.is_empty() {
                            kind.as_str().to_string()
                        } else {
                            format!("{kind}.{}", e.path)
                        };
                        e
                    }));
                    None
                }
            },
            (Some(kind), None) => {
                errors.push(PathError {
                    path: kind.as_str().into(),
                    message: format!("missing: a `{kind}` probe needs a [probe.{kind}] table"),
                });
                None
            }
            (None, _) => None,
        };
        match (common, spec) {
            (Ok(c), Some(spec)) if errors.is_empty() => Ok(ProbeConfig {
                name: c.name,
                target: c.target,
                target_rps: c.target_rps,
                thresholds: c.thresholds,
                schedule: c.schedule,
                share_target: c.share_target,
                spec,
            }),
            (common, _) => {
                if let Err(e) = common {
                    errors.splice(0..0, e);
                }
                Err(errors)
            }
        }
    }

    /// Checks what types alone cannot; `path` is the probe's (`probe[2]`).
    pub fn validate_spec(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        let has_target = self.target.is_some();
        self.spec.validate(path, has_target, limits, problems);
    }
}

impl<'de> Deserialize<'de> for ProbeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        ProbeConfig::from_value(v).map_err(|errs| {
            let text: Vec<String> = errs
                .iter()
                .map(|e| {
                    if e.path.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.path, e.message)
                    }
                })
                .collect();
            D::Error::custom(text.join("; "))
        })
    }
}

fn kind_list() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_kind_table_is_read() {
        let v = serde_json::json!({
            "name": "p", "kind": "redis",
            "redis": {"url": "redis://127.0.0.1:6379"},
            "sql": {"url": "postgres://x"},
        });
        let e = ProbeConfig::from_value(v).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "sql");
        assert!(e[0].message.contains("takes no [probe.sql]"), "{e:?}");
    }

    #[test]
    fn errors_in_shared_fields_and_the_kind_table_come_together() {
        let v = serde_json::json!({
            "name": "p", "kind": "load", "colour": "red",
            "load": {"concurrency": "ten"},
        });
        let e = ProbeConfig::from_value(v).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["colour", "load.concurrency"], "{e:?}");
        assert!(e[0].message.contains("colour"), "{e:?}");
    }

    #[test]
    fn a_missing_table_is_named() {
        let v = serde_json::json!({"name": "p", "kind": "race"});
        let e = ProbeConfig::from_value(v).unwrap_err();
        assert_eq!(e[0].path, "race");
        let v = serde_json::json!({"name": "p", "kind": "lod"});
        let e = ProbeConfig::from_value(v).unwrap_err();
        assert_eq!(e[0].path, "kind");
        assert!(e[0].message.contains("unknown probe kind"), "{e:?}");
    }
}

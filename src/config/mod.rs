//! Typed configuration: targets, probes and reporting, with defaults and validation.
//!
//! Every struct rejects unknown fields, every field has a doc comment and a named default,
//! and [`validate`](Config::validate) reports every problem with the exact path of the bad
//! value (`probe[2].load.phases[0].rate: must be greater than 0`). This module must not start
//! anything: it only reads, checks and describes.

mod baseline;
mod benchmark;
mod daemon;
mod duration;
mod flow;
mod load;
mod otlp;
mod pubsub;
mod race;
mod secret;
mod stores;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use baseline::{BaselineConfig, BaselineDetectorConfig};
pub use benchmark::{BenchmarkConfig, OperationConfig};
pub use daemon::{parse_cron, DaemonConfig, ScheduleConfig};
pub use duration::HumanDuration;
pub use flow::{
    parse_csv, parse_json_rows, CaptureConfig, DataConfig, DataOrder, DataRows, ExpectConfig,
    FlowStepConfig, JsonExpectConfig, ScenarioConfig,
};
pub use load::{load_file, load_str, ConfigError, ConfigErrors};
pub use otlp::{OtlpConfig, OtlpProtocol};
pub use pubsub::{PublishVia, PubsubConfig};
pub use race::{RaceConfig, VerifyConfig, CLAIMANTS, CLAIMANT_VAR, ID_VAR};
pub use secret::Secret;
pub use stores::{RedisConfig, SqlConfig, SqlQueryConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Systems under test, referred to by name from probes.
    #[serde(default)]
    pub target: Vec<TargetConfig>,
    /// Probes: what to measure, how, and how to grade it.
    #[serde(default)]
    pub probe: Vec<ProbeConfig>,
    /// Where and how result documents are written.
    #[serde(default)]
    pub report: ReportConfig,
    /// The daemon's endpoints and lifecycle (`plimsoll run`).
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// OTLP export of metrics and traces.
    #[serde(default)]
    pub otlp: OtlpConfig,
}

/// A system under test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Name that probes use in their `target` field.
    pub name: String,
    /// Base URL (`http://` or `https://`, host, optional port and path prefix). Relative
    /// request URLs of probes are joined to it.
    pub url: String,
    /// HTTP version: `"1.1"`, `"2"` (prior knowledge on cleartext, ALPN on TLS) or `"auto"`
    /// (ALPN on TLS, HTTP/1.1 on cleartext).
    #[serde(default = "default_http_version")]
    pub http: HttpVersion,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Headers sent with every request to this target; values may be `env:`/`file:` secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

/// HTTP protocol version to speak to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpVersion {
    #[serde(rename = "1.1")]
    Http1,
    #[serde(rename = "2")]
    Http2,
    #[serde(rename = "auto")]
    Auto,
}

fn default_http_version() -> HttpVersion {
    HttpVersion::Auto
}

/// TLS settings of a target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates to trust (beside the bundled web roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification. Only for test targets with throw-away certificates.
    #[serde(default = "default_false")]
    pub insecure_skip_verify: bool,
    /// Server name to verify and send in SNI, when it differs from the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_false() -> bool {
    false
}

/// Where result documents go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Directory that `plimsoll once` writes one JSON result document per probe run into
    /// (`--out FILE` replaces it). Empty string: write none.
    #[serde(default = "default_report_dir")]
    pub dir: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            dir: default_report_dir(),
        }
    }
}

fn default_report_dir() -> String {
    "plimsoll-results".to_string()
}

/// One probe: a kind, the kind's own settings, and how to grade the outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Unique name; it labels every metric and result of this probe.
    pub name: String,
    /// Probe kind, a name from the registry (`load`, `race`, `benchmark`, `redis`, `pubsub`,
    /// `sql`).
    pub kind: String,
    /// Name of a `[[target]]`; relative request URLs are joined to its URL.
    #[serde(default)]
    pub target: Option<String>,
    /// Throughput this probe must reach, in requests per second. Without it, an open-model
    /// probe is held to its planned rate and a closed-model probe to the default table.
    #[serde(default)]
    pub target_rps: Option<f64>,
    /// Grade thresholds that replace the defaults for this probe.
    #[serde(default)]
    pub thresholds: crate::verdict::ThresholdsConfig,
    /// When the daemon runs this probe. Without it the daemon lists the probe but never
    /// runs it (`plimsoll once` still can).
    #[serde(default)]
    pub schedule: Option<ScheduleConfig>,
    /// Let this probe run while another load probe works the same target. By default the
    /// daemon runs the load probes of one target one at a time, so that they do not distort
    /// each other's numbers or add up to more load than intended.
    #[serde(default = "default_false")]
    pub share_target: bool,
    /// Settings of the `load` kind.
    #[serde(default)]
    pub load: Option<LoadConfig>,
    /// Settings of the `benchmark` kind.
    #[serde(default)]
    pub benchmark: Option<BenchmarkConfig>,
    /// Settings of the `race` kind.
    #[serde(default)]
    pub race: Option<RaceConfig>,
    /// Settings of the `redis` kind.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Settings of the `pubsub` kind.
    #[serde(default)]
    pub pubsub: Option<PubsubConfig>,
    /// Settings of the `sql` kind.
    #[serde(default)]
    pub sql: Option<SqlConfig>,
}

/// Settings of a load probe: the arrival model, the iteration (request steps), the client.
///
/// Exactly one model is chosen: `phases` (open model), `concurrency` or `level` (closed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Open model: phases of planned arrivals, run one after another.
    #[serde(default)]
    pub phases: Vec<PhaseConfig>,
    /// Closed model: number of virtual users, each running iterations back to back.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Closed model preset from seed 000: `light` (10 users), `moderate` (50), `heavy` (200),
    /// `stress` (500).
    #[serde(default)]
    pub level: Option<Level>,
    /// Closed model: how long the users run. Default: 30 s, or no limit when `iterations` is
    /// set (each user then stops after its iterations).
    #[serde(default = "default_closed_duration")]
    pub duration: Option<HumanDuration>,
    /// Closed model: users start evenly spread over this time.
    #[serde(default = "default_zero_duration")]
    pub ramp_up: HumanDuration,
    /// Closed model: pause of each user between two iterations.
    #[serde(default = "default_zero_duration")]
    pub think: HumanDuration,
    /// Closed model: stop each user after this many iterations (no limit when absent).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Open model: most iterations in flight at once; an arrival beyond it is counted as
    /// dropped instead of silently delaying the plan.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Per-request timeout, from the moment the request is due to the end of its body.
    #[serde(default = "default_request_timeout")]
    pub timeout: HumanDuration,
    /// Largest response body read before the request counts as a `body` error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Worker threads, each with its own runtime and connections; 0 means one per core.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Run only shard `index` of `count` of the arrival plan (distributed mode).
    #[serde(default)]
    pub shard: Option<ShardConfig>,
    /// Named value generators usable as `{{name}}` in URLs, headers and bodies.
    #[serde(default)]
    pub vars: BTreeMap<String, crate::engine::template::GeneratorConfig>,
    /// The request of a one-step iteration (shorthand for a single entry in `steps`).
    #[serde(default)]
    pub request: Option<crate::engine::template::RequestConfig>,
    /// The requests of an iteration, sent in order by one virtual user.
    #[serde(default)]
    pub steps: Vec<crate::engine::template::RequestConfig>,
    /// Flows: scenarios picked per iteration by weight, with captures and expectations
    /// (the third way to describe an iteration, beside `request` and `steps`).
    #[serde(default)]
    pub scenarios: Vec<ScenarioConfig>,
    /// A data file whose rows feed `{{column}}` variables, one row per iteration.
    #[serde(default)]
    pub data: Option<DataConfig>,
}

fn default_closed_duration() -> Option<HumanDuration> {
    None
}

/// Closed-model run length when neither `duration` nor `iterations` is given (seed 000).
pub const DEFAULT_CLOSED_DURATION: HumanDuration = HumanDuration::from_secs(30);
fn default_zero_duration() -> HumanDuration {
    HumanDuration::default()
}
fn default_max_in_flight() -> u32 {
    10_000
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_workers() -> u32 {
    0
}

/// One phase of an open-model plan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    /// Label of the phase in traces and logs (`warm-up`, `sustained`, …).
    #[serde(default)]
    pub name: Option<String>,
    /// Length of the phase. A burst phase may leave it out (it then lasts no time).
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Arrivals per second at the start of the phase.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Arrivals per second at the end; the rate changes linearly in between.
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// Release this many iterations at once at the start of the phase (seed 004's bursts).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Load level presets of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Light,
    Moderate,
    Heavy,
    Stress,
}

impl Level {
    /// Concurrent users of the level.
    pub fn concurrency(self) -> u32 {
        match self {
            Level::Light => 10,
            Level::Moderate => 50,
            Level::Heavy => 200,
            Level::Stress => 500,
        }
    }
}

/// Which slice of the arrival plan this process runs.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// This replica's number, from 0.
    pub index: u32,
    /// How many replicas share the plan.
    pub count: u32,
}

/// Collects problems while walking a configuration; paths are built as it descends.
#[derive(Debug, Default)]
pub struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
            line: None,
        });
    }
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}

impl Config {
    /// Checks everything that types alone cannot, resolving secrets on the way.
    pub fn validate(&mut self, problems: &mut Problems) {
        self.daemon.validate(problems);
        self.otlp.validate(problems);
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.target.iter_mut().enumerate() {
            let path = format!("target[{i}]");
            if !names.insert(t.name.clone()) {
                problems.push(
                    format!("{path}.name"),
                    format!("duplicate target name {:?}", t.name),
                );
            }
            if let Err(e) = crate::engine::http::Endpoint::parse_base(&t.url) {
                problems.push(format!("{path}.url"), e);
            }
            if let Some(ca) = &t.tls.ca_file {
                if !ca.is_file() {
                    problems.push(
                        format!("{path}.tls.ca_file"),
                        format!("no such file: {}", ca.display()),
                    );
                }
            }
            for (k, v) in t.headers.iter_mut() {
                check_header(problems, &format!("{path}.headers.{k}"), k, v);
            }
        }
        let mut probe_names = std::collections::HashSet::new();
        for (i, p) in self.probe.iter_mut().enumerate() {
            let path = format!("probe[{i}]");
            if p.name.trim().is_empty() {
                problems.push(format!("{path}.name"), "must not be empty");
            } else if !probe_names.insert(p.name.clone()) {
                problems.push(
                    format!("{path}.name"),
                    format!("duplicate probe name {:?}", p.name),
                );
            }
            if let Some(t) = &p.target {
                if !self.target.iter().any(|x| &x.name == t) {
                    let known: Vec<&str> = self.target.iter().map(|x| x.name.as_str()).collect();
                    problems.push(
                        format!("{path}.target"),
                        format!("no target named {t:?} (known: {})", list_or_none(&known)),
                    );
                }
            }
            if let Some(r) = p.target_rps {
                if !(r > 0.0 && r.is_finite()) {
                    problems.push(format!("{path}.target_rps"), "must be greater than 0");
                }
            }
            p.thresholds
                .validate(&format!("{path}.thresholds"), problems);
            if let Some(s) = &p.schedule {
                s.validate(&format!("{path}.schedule"), problems);
            }
            crate::probe::registry::validate(p, &path, problems);
        }
    }

    /// The target a probe names, if any.
    pub fn target_of(&self, probe: &ProbeConfig) -> Option<&TargetConfig> {
        probe
            .target
            .as_ref()
            .and_then(|n| self.target.iter().find(|t| &t.name == n))
    }
}

/// Checks a header name and value and resolves a secret value.
pub(crate) fn check_header(problems: &mut Problems, path: &str, name: &str, value: &mut Secret) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        problems.push(path, format!("{name:?} is not a valid header name"));
    }
    if let Err(e) = value.resolve() {
        problems.push(path, e);
    } else if http::HeaderValue::from_str(value.expose()).is_err() {
        problems.push(
            path,
            "value is not a valid header value (control characters?)",
        );
    }
}

pub(crate) fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

impl LoadConfig {
    /// A closed-model load config with every default, for the command line's `load`.
    pub fn closed(concurrency: u32, duration: HumanDuration) -> Self {
        let mut c: LoadConfig =
            serde_json::from_value(serde_json::json!({})).expect("every field has a default");
        c.concurrency = Some(concurrency);
        c.duration = Some(duration);
        c
    }

    /// How long a closed-model run may last; `None` when only `iterations` bounds it.
    pub fn closed_duration(&self) -> Option<HumanDuration> {
        match (self.duration, self.iterations) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_CLOSED_DURATION),
        }
    }

    /// Validates the load settings (model, phases, steps, client limits).
    pub fn validate(&mut self, path: &str, problems: &mut Problems) {
        let models = [
            !self.phases.is_empty(),
            self.concurrency.is_some(),
            self.level.is_some(),
        ];
        match models.iter().filter(|m| **m).count() {
            0 => problems.push(
                path,
                "choose a model: `phases` (open model), `concurrency` or `level` (closed model)",
            ),
            1 => {}
            _ => problems.push(
                path,
                "`phases`, `concurrency` and `level` exclude each other; keep one",
            ),
        }
        for (j, ph) in self.phases.iter().enumerate() {
            let pp = format!("{path}.phases[{j}]");
            match (ph.burst, ph.rate) {
                (Some(0), _) => problems.push(format!("{pp}.burst"), "must be greater than 0"),
                (Some(_), Some(_)) => {
                    problems.push(&pp, "a phase has either `burst` or `rate`, not both")
                }
                (None, None) => {
                    problems.push(&pp, "a phase needs `rate` (arrivals per second) or `burst`")
                }
                (None, Some(r)) => {
                    if !(r > 0.0 && r.is_finite()) {
                        problems.push(format!("{pp}.rate"), "must be greater than 0");
                    }
                    match ph.duration {
                        None => problems.push(
                            format!("{pp}.duration"),
                            "missing: a rate phase needs a duration",
                        ),
                        Some(d) if d.is_zero() => {
                            problems.push(format!("{pp}.duration"), "must be greater than 0")
                        }
                        _ => {}
                    }
                }
                (Some(_), None) => {}
            }
            if let Some(r) = ph.ramp_to {
                if ph.burst.is_some() {
                    problems.push(format!("{pp}.ramp_to"), "a burst phase cannot ramp");
                } else if !(r >= 0.0 && r.is_finite()) {
                    problems.push(format!("{pp}.ramp_to"), "must be 0 or greater");
                }
            }
        }
        if self.concurrency == Some(0) {
            problems.push(format!("{path}.concurrency"), "must be greater than 0");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            problems.push(format!("{path}.duration"), "must be greater than 0");
        }
        if self.iterations == Some(0) {
            problems.push(format!("{path}.iterations"), "must be greater than 0");
        }
        if self.max_in_flight == 0 {
            problems.push(format!("{path}.max_in_flight"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_body_bytes == 0 {
            problems.push(format!("{path}.max_body_bytes"), "must be greater than 0");
        }
        if let Some(s) = self.shard {
            if s.count == 0 {
                problems.push(format!("{path}.shard.count"), "must be greater than 0");
            } else if s.index >= s.count {
                problems.push(
                    format!("{path}.shard.index"),
                    format!("must be less than shard.count ({})", s.count),
                );
            }
        }
        let shapes = [
            self.request.is_some(),
            !self.steps.is_empty(),
            !self.scenarios.is_empty(),
        ];
        match shapes.iter().filter(|s| **s).count() {
            0 => problems.push(
                path,
                "missing: `request` (one request), `steps` (several) or `scenarios` (flows)",
            ),
            1 => {}
            _ => problems.push(
                path,
                "`request`, `steps` and `scenarios` exclude each other; keep one",
            ),
        }
        for (k, g) in &self.vars {
            g.validate(&format!("{path}.vars.{k}"), problems);
        }
        let mut vars: Vec<String> = self.vars.keys().cloned().collect();
        if let Some(d) = &self.data {
            match d.read() {
                Ok(rows) => vars.extend(rows.columns),
                Err(e) => problems.push(format!("{path}.data.file"), e),
            }
        }
        flow::validate_scenarios(&mut self.scenarios, path, &vars, problems);
        if let Some(r) = &mut self.request {
            r.validate(&format!("{path}.request"), &vars, problems);
        }
        for (j, s) in self.steps.iter_mut().enumerate() {
            s.validate(&format!("{path}.steps[{j}]"), &vars, problems);
        }
    }

    /// The iteration's steps, whichever way they were written.
    pub fn step_configs(&self) -> Vec<&crate::engine::template::RequestConfig> {
        match &self.request {
            Some(r) => vec![r],
            None => self.steps.iter().collect(),
        }
    }
}

//! Typed configuration: targets, probes and reporting, with defaults and validation.
//!
//! Every struct rejects unknown fields, every field has a doc comment and a named default,
//! and [`validate`](Config::validate) reports every problem with the exact path of the bad
//! value (`probe[2].load.phases[0].rate: must be greater than 0`). This module must not start
//! anything: it only reads, checks and describes.

mod baseline;
mod daemon;
mod duration;
mod every_error;
mod fault;
mod flow;
mod guardrails;
mod limits;
mod otlp;
mod probe;
mod read;
mod request;
mod secret;
mod thresholds;
mod url;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use baseline::{BaselineConfig, BaselineDetectorConfig, ProbeBaselineConfig};
pub use daemon::{parse_cron, CronError, DaemonConfig, ScheduleConfig};
pub use duration::HumanDuration;
pub use every_error::PathError;
pub use fault::{
    load_proxy_file, load_proxy_str, CommandActionConfig, FaultActionConfig, HttpActionConfig,
    ProxyConfig, ProxyListenerConfig, ToxicConfig, ToxicDirection, ToxicKindName,
};
pub use flow::{
    parse_csv, parse_json_rows, CaptureConfig, DataConfig, DataOrder, DataRows, ExpectConfig,
    FlowStepConfig, JsonExpectConfig, ScenarioConfig,
};
pub use guardrails::{AbortConfig, GuardrailsConfig};
pub use limits::{Ceiling, Limits, HARD_MAX_DURATION, HARD_MAX_RATE, MAX_CONFIG_BYTES};
pub use otlp::{OtlpConfig, OtlpProtocol};
pub use probe::*;
pub use read::{
    load_file, load_file_without_secrets, load_str, read_bounded, ConfigError, ConfigErrors,
    ReadError,
};
pub use request::{
    placeholders, GeneratorConfig, RequestConfig, SignConfig, SignKind, TimestampFormat,
};
pub use secret::{redact_secrets, Secret, SecretError};
pub use thresholds::{Bands, Grade, Profile, ThresholdsConfig};
pub use url::{parse_base_url, redact_url, BaseUrl, UrlError, Userinfo};

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
    /// Ceilings of every rate, count, size and duration; raise one to allow more.
    #[serde(default)]
    pub limits: Limits,
    /// Safety limits of every load-generating probe: allowlist, caps, aborts, pause, blackout.
    #[serde(default)]
    pub guardrails: GuardrailsConfig,
    /// The rolling baseline: the store of every run and the regression detector.
    #[serde(default)]
    pub baseline: BaselineConfig,
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

/// Collects problems while walking a configuration; paths are built as it descends.
#[derive(Debug, Default)]
pub struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.to_string(),
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
        // A broken `[limits]` table is reported, and the rest is held to the defaults.
        let mut own = Problems::default();
        self.limits.validate(&mut own);
        let limits = if own.is_empty() {
            self.limits
        } else {
            problems.errors.extend(own.into_errors());
            Limits::default()
        };
        self.daemon.validate(&limits, problems);
        self.otlp.validate(&limits, problems);
        self.guardrails.validate(problems);
        self.baseline.validate("baseline", problems);
        for name in self.baseline.probes.keys() {
            if !self.probe.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.probe.iter().map(|p| p.name.as_str()).collect();
                problems.push(
                    format!("baseline.probes.{name}"),
                    format!("no probe named {name:?} (known: {})", list_or_none(&known)),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.target.iter_mut().enumerate() {
            let path = format!("target[{i}]");
            if !names.insert(t.name.clone()) {
                problems.push(
                    format!("{path}.name"),
                    format!("duplicate target name {:?}", t.name),
                );
            }
            if let Err(e) = parse_base_url(&t.url) {
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
                limits.check_rate(format!("{path}.target_rps"), r, false, problems);
            }
            p.thresholds.apply_profile();
            p.thresholds
                .validate(&format!("{path}.thresholds"), problems);
            if let Some(s) = &p.schedule {
                s.validate(&format!("{path}.schedule"), &limits, problems);
            }
            p.validate_spec(&path, &limits, problems);
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

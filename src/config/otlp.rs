//! Settings of OTLP export (`[otlp]`): where metrics and traces go, and how much of a run is
//! traced. When the table is silent the standard `OTEL_EXPORTER_OTLP_*` variables decide,
//! as every OpenTelemetry SDK does; with neither, OTLP is off.
//!
//! This module only reads and checks; the exporters live in `src/telemetry/otlp.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{check_header, Ceiling, HumanDuration, Limits, Problems, Secret};

/// The `[otlp]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector endpoint (`http://host:4317` for gRPC, `http://host:4318` for HTTP, where
    /// `/v1/traces` and `/v1/metrics` are added). Default: none, and then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) when set; otherwise OTLP is off.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `"grpc"` or `"http/protobuf"`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL` when set, else
    /// `"grpc"`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Headers sent with every export (authentication); values may be `env:`/`file:` secrets.
    /// They add to `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// PEM file of CA certificates to trust for an `https://` collector, beside the system
    /// roots and the bundled web roots. Default: `OTEL_EXPORTER_OTLP_CERTIFICATE` when set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate (chain) for collectors that ask for one (mutual
    /// TLS). Needs `client_key`. Default: `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` when set.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key. Default:
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY` when set.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Time limit of one export. Default: `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) when
    /// set, else 10 s.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// How often metrics are exported.
    #[serde(default = "default_metrics_interval")]
    pub metrics_interval: HumanDuration,
    /// Fraction of a run's requests that are traced (a client span, and a `traceparent`
    /// header sent to the target), 0 to 1.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Most client spans kept per run; requests beyond it are not traced.
    #[serde(default = "default_max_client_spans")]
    pub max_client_spans: u32,
    /// Spans waiting for export at most; beyond it new spans are dropped (and counted in
    /// `plimsoll_otlp_dropped_total`), so a slow collector never holds a probe up.
    #[serde(default = "default_span_queue_size")]
    pub span_queue_size: u32,
    /// On shutdown, how long to wait for the last export before exiting anyway.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: HumanDuration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout: None,
            metrics_interval: default_metrics_interval(),
            sample_ratio: default_sample_ratio(),
            max_client_spans: default_max_client_spans(),
            span_queue_size: default_span_queue_size(),
            flush_timeout: default_flush_timeout(),
        }
    }
}

fn default_metrics_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_sample_ratio() -> f64 {
    0.01
}
fn default_max_client_spans() -> u32 {
    1000
}
fn default_span_queue_size() -> u32 {
    8192
}
fn default_flush_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// The two OTLP transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Parses the standard protocol names.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

impl OtlpConfig {
    pub fn validate(&mut self, limits: &Limits, problems: &mut Problems) {
        for (name, d) in [
            ("timeout", self.timeout),
            ("metrics_interval", Some(self.metrics_interval)),
            ("flush_timeout", Some(self.flush_timeout)),
        ] {
            if let Some(d) = d {
                limits.check_duration(format!("otlp.{name}"), d, problems);
            }
        }
        for (name, v) in [
            ("span_queue_size", self.span_queue_size),
            ("max_client_spans", self.max_client_spans),
        ] {
            limits.check_count(format!("otlp.{name}"), v.into(), Ceiling::Queue, problems);
        }
        if let Some(e) = &self.endpoint {
            let ok = e
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
                .is_some_and(|u| u.host().is_some());
            if !ok {
                problems.push(
                    "otlp.endpoint",
                    format!("{e:?} is not an http:// or https:// URL with a host"),
                );
            }
        }
        if let Some(p) = &self.protocol {
            if OtlpProtocol::parse(p).is_none() {
                problems.push(
                    "otlp.protocol",
                    format!("expected \"grpc\" or \"http/protobuf\", found {p:?}"),
                );
            }
        }
        for (k, v) in self.headers.iter_mut() {
            check_header(problems, &format!("otlp.headers.{k}"), k, v);
        }
        for (name, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    problems.push(
                        format!("otlp.{name}"),
                        format!("no such file: {}", f.display()),
                    );
                } else if self
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
                {
                    // Silently unused TLS settings would hide a plain-text export.
                    problems.push(
                        format!("otlp.{name}"),
                        "TLS settings need an https:// endpoint (the endpoint given is http://)",
                    );
                }
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => problems.push(
                "otlp.client_key",
                "missing: `client_cert` needs the key that goes with it",
            ),
            (None, Some(_)) => problems.push(
                "otlp.client_cert",
                "missing: `client_key` needs the certificate that goes with it",
            ),
            _ => {}
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            problems.push("otlp.timeout", "must be greater than 0");
        }
        if self.metrics_interval.as_duration() < std::time::Duration::from_millis(100) {
            problems.push("otlp.metrics_interval", "must be at least 100ms");
        }
        if !self.sample_ratio.is_finite() {
            problems.push("otlp.sample_ratio", "must be a finite number");
        } else if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push("otlp.sample_ratio", "must be between 0 and 1");
        }
        if self.span_queue_size == 0 {
            problems.push("otlp.span_queue_size", "must be greater than 0");
        }
    }

    /// The protocol to use: the table's, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else gRPC. An
    /// unknown name in the environment is reported and gRPC used.
    pub fn resolved_protocol(&self, env: impl Fn(&str) -> Option<String>) -> OtlpProtocol {
        if let Some(p) = self.protocol.as_deref().and_then(OtlpProtocol::parse) {
            return p;
        }
        match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Some(v) => OtlpProtocol::parse(&v).unwrap_or_else(|| {
                tracing::warn!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={v:?} is not supported; using \"grpc\" \
                     (plimsoll speaks \"grpc\" and \"http/protobuf\")"
                );
                OtlpProtocol::Grpc
            }),
            None => OtlpProtocol::Grpc,
        }
    }

    /// Whether traces and metrics are exported: an endpoint in the table turns both on; else
    /// the standard variables turn on the signals they name. `OTEL_SDK_DISABLED=true` turns
    /// everything off.
    pub fn enabled_signals(&self, env: impl Fn(&str) -> Option<String>) -> (bool, bool) {
        let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return (false, false);
        }
        if self.endpoint.is_some() {
            return (true, true);
        }
        let all = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        (
            all || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            all || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn problems(text: &str) -> String {
        match load_str(text, std::iter::empty()) {
            Ok(_) => String::new(),
            Err(e) => {
                e.0.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }

    #[test]
    fn bad_otlp_settings_are_named_by_path() {
        let all = problems(
            r#"
[otlp]
endpoint = "collector:4317"
protocol = "http/json"
sample_ratio = 1.5
span_queue_size = 0
metrics_interval = "10ms"
headers = { "bad header" = "x" }
"#,
        );
        for expected in [
            "otlp.endpoint: \"collector:4317\" is not an http:// or https:// URL with a host",
            "otlp.protocol: expected \"grpc\" or \"http/protobuf\", found \"http/json\"",
            "otlp.sample_ratio: must be between 0 and 1",
            "otlp.span_queue_size: must be greater than 0",
            "otlp.metrics_interval: must be at least 100ms",
            "otlp.headers.bad header: \"bad header\" is not a valid header name",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(problems("[otlp]\nendpoint = \"http://127.0.0.1:4317\"\n").is_empty());
        assert!(
            problems("[otlp]\nsampling = 1\n").contains("otlp.sampling: unknown field `sampling`")
        );
    }

    #[test]
    fn tls_files_are_checked_and_refused_on_a_plain_endpoint() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let all = problems(&format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:4317\"\nca_file = \"{file}\"\n\
             client_key = \"/nonexistent/key.pem\"\n"
        ));
        for expected in [
            "otlp.ca_file: TLS settings need an https:// endpoint (the endpoint given is http://)",
            "otlp.client_key: no such file: /nonexistent/key.pem",
            "otlp.client_cert: missing: `client_key` needs the certificate that goes with it",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        let https = format!(
            "[otlp]\nendpoint = \"https://127.0.0.1:4317\"\nca_file = \"{file}\"\n\
             client_cert = \"{file}\"\nclient_key = \"{file}\"\n"
        );
        assert_eq!(problems(&https), "");
    }

    #[test]
    fn the_standard_variables_decide_when_the_table_is_silent() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = OtlpConfig::default();
        assert_eq!(c.enabled_signals(env(&[])), (false, false));
        assert_eq!(
            c.enabled_signals(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4317")])),
            (true, true)
        );
        assert_eq!(
            c.enabled_signals(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://h")])),
            (true, false)
        );
        assert_eq!(
            c.enabled_signals(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4317"),
                ("OTEL_SDK_DISABLED", "true")
            ])),
            (false, false)
        );
        assert_eq!(c.resolved_protocol(env(&[])), OtlpProtocol::Grpc);
        assert_eq!(
            c.resolved_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
            OtlpProtocol::HttpProtobuf
        );
        let mut c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318".into()),
            protocol: Some("grpc".into()),
            ..Default::default()
        };
        assert_eq!(c.enabled_signals(env(&[])), (true, true));
        assert_eq!(
            c.resolved_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
            OtlpProtocol::Grpc
        );
        c.protocol = None;
        assert_eq!(
            c.resolved_protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])),
            OtlpProtocol::HttpProtobuf
        );
    }
}

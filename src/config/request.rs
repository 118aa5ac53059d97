//! The request schema: what a step sends (method, URL, headers, body, signature), the value
//! generators its `{{name}}` placeholders draw from, and their validation.
//!
//! This module only describes and checks; the engine compiles these into templates
//! (`engine::template`) and must be the only place that renders them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_header, Problems, Secret};

/// One request step as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Step name, used as the `endpoint` label. Default: the URL's path without its query.
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute URL, or a path joined to the probe's target URL. May hold `{{placeholders}}`.
    pub url: String,
    /// Request headers; values may hold placeholders or be `env:`/`file:` secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Raw body text (placeholders allowed).
    #[serde(default)]
    pub body: Option<String>,
    /// JSON body; string values may hold placeholders.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Form body (`application/x-www-form-urlencoded`); values may hold placeholders.
    #[serde(default)]
    pub form: Option<BTreeMap<String, serde_json::Value>>,
    /// Signs the request (Twilio webhook signature).
    #[serde(default)]
    pub sign: Option<SignConfig>,
    /// Statuses that count as success. Default: any status below 400.
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
}

fn default_method() -> String {
    "GET".to_string()
}

/// How to sign a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// Signature scheme; only `twilio` exists.
    #[serde(default = "default_sign_kind")]
    pub kind: SignKind,
    /// The secret key (Twilio auth token); use an `env:` or `file:` reference.
    pub auth_token: Secret,
    /// URL the receiver verifies against, when it differs from the URL requested (behind a
    /// proxy). Default: the request's own URL.
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignKind {
    Twilio,
}

fn default_sign_kind() -> SignKind {
    SignKind::Twilio
}

/// A value generator for `{{name}}` placeholders. One value per iteration: a name used twice in
/// an iteration gets the same value both times.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GeneratorConfig {
    /// 0, 1, 2, … across the whole run (all workers share it).
    Sequence {
        /// First value.
        #[serde(default)]
        start: u64,
    },
    /// A random identifier: prefix plus hex digits (Twilio's `SM…` message ids).
    RandomId {
        /// Text before the random part.
        #[serde(default)]
        prefix: String,
        /// Number of random hex digits.
        #[serde(default = "default_id_length")]
        length: usize,
    },
    /// A random version-4 UUID.
    Uuid,
    /// The current time.
    Timestamp {
        /// `unix` (seconds), `unix_ms` or `rfc3339`.
        #[serde(default = "default_timestamp_format")]
        format: TimestampFormat,
    },
    /// One of the listed values, uniformly.
    Choice {
        /// Values to pick from.
        values: Vec<String>,
    },
    /// A random integer in `[min, max]`.
    RandomInt {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
}

fn default_id_length() -> usize {
    32
}
fn default_timestamp_format() -> TimestampFormat {
    TimestampFormat::Unix
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    Unix,
    UnixMs,
    Rfc3339,
}

impl GeneratorConfig {
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        match self {
            GeneratorConfig::RandomId { length, .. } if *length == 0 || *length > 256 => {
                problems.push(format!("{path}.length"), "must be between 1 and 256")
            }
            GeneratorConfig::Choice { values } if values.is_empty() => {
                problems.push(format!("{path}.values"), "must list at least one value")
            }
            GeneratorConfig::RandomInt { min, max } if min > max => problems.push(
                format!("{path}.min"),
                format!("must not exceed max ({max})"),
            ),
            _ => {}
        }
    }

    /// Generators available without declaring them.
    pub fn builtin(name: &str) -> Option<GeneratorConfig> {
        Some(match name {
            "seq" => GeneratorConfig::Sequence { start: 0 },
            "uuid" => GeneratorConfig::Uuid,
            "random_id" => GeneratorConfig::RandomId {
                prefix: String::new(),
                length: default_id_length(),
            },
            "timestamp" => GeneratorConfig::Timestamp {
                format: TimestampFormat::Unix,
            },
            "timestamp_ms" => GeneratorConfig::Timestamp {
                format: TimestampFormat::UnixMs,
            },
            _ => return None,
        })
    }
}

impl RequestConfig {
    /// A plain request (the command line's `load`).
    pub fn simple(method: &str, url: &str) -> Self {
        RequestConfig {
            name: None,
            method: method.to_string(),
            url: url.to_string(),
            headers: BTreeMap::new(),
            body: None,
            json: None,
            form: None,
            sign: None,
            expect_status: None,
        }
    }

    pub fn validate(&mut self, path: &str, vars: &[String], problems: &mut Problems) {
        if http::Method::from_bytes(self.method.as_bytes()).is_err() {
            problems.push(
                format!("{path}.method"),
                format!("{:?} is not an HTTP method", self.method),
            );
        }
        if self.url.trim().is_empty() {
            problems.push(format!("{path}.url"), "must not be empty");
        } else if let Err(e) = super::url::check_request_url(&self.url) {
            problems.push(format!("{path}.url"), e);
        }
        let bodies = [
            self.body.is_some(),
            self.json.is_some(),
            self.form.is_some(),
        ];
        if bodies.iter().filter(|b| **b).count() > 1 {
            problems.push(
                path,
                "`body`, `json` and `form` exclude each other; keep one",
            );
        }
        for (k, v) in self.headers.iter_mut() {
            check_header(problems, &format!("{path}.headers.{k}"), k, v);
        }
        if let Some(form) = &self.form {
            for (k, v) in form {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    problems.push(
                        format!("{path}.form.{k}"),
                        "form values must be strings, numbers or booleans",
                    );
                }
            }
        }
        if let Some(sign) = &mut self.sign {
            if let Err(e) = sign.auth_token.resolve() {
                problems.push(format!("{path}.sign.auth_token"), e);
            }
            if let Some(u) = &sign.url {
                if let Err(e) = super::url::check_request_url(u) {
                    problems.push(format!("{path}.sign.url"), e);
                }
            }
            if self.form.is_none() {
                problems.push(
                    format!("{path}.sign"),
                    "the twilio signature covers form parameters: give the body as `form`",
                );
            }
        }
        if let Some(codes) = &self.expect_status {
            if codes.is_empty() {
                problems.push(
                    format!("{path}.expect_status"),
                    "must list at least one status",
                );
            }
            for c in codes {
                if !(100..=599).contains(c) {
                    problems.push(
                        format!("{path}.expect_status"),
                        format!("{c} is not an HTTP status"),
                    );
                }
            }
        }
        // Every placeholder must name a declared or built-in generator.
        let mut texts: Vec<(String, &str)> = vec![(format!("{path}.url"), self.url.as_str())];
        if let Some(b) = &self.body {
            texts.push((format!("{path}.body"), b));
        }
        for (k, v) in &self.headers {
            texts.push((format!("{path}.headers.{k}"), v.expose()));
        }
        let mut json_strings = Vec::new();
        if let Some(j) = &self.json {
            collect_strings(j, &mut json_strings);
        }
        for s in &json_strings {
            texts.push((format!("{path}.json"), s));
        }
        if let Some(form) = &self.form {
            for (k, v) in form {
                if let Some(s) = v.as_str() {
                    texts.push((format!("{path}.form.{k}"), s));
                }
            }
        }
        for (p, text) in texts {
            match placeholders(text) {
                Err(e) => problems.push(p, e),
                Ok(names) => {
                    for n in names {
                        if !vars.iter().any(|v| v == n) && GeneratorConfig::builtin(n).is_none() {
                            problems.push(
                                p.clone(),
                                format!("unknown placeholder {{{{{n}}}}}: declare it under `vars` or use seq, uuid, random_id, timestamp, timestamp_ms"),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Names of the `{{placeholders}}` in a text.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "a `{{` has no matching `}}`".to_string())?;
        out.push(after[..close].trim());
        rest = &after[close + 2..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_placeholder_is_reported_with_its_path() {
        let mut r = RequestConfig::simple("GET", "/x/{{nope}}");
        let mut p = Problems::default();
        r.validate("probe[0].load.request", &[], &mut p);
        let e = p.into_errors();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "probe[0].load.request.url");
        assert!(e[0].message.contains("{{nope}}"), "{}", e[0].message);
    }
}

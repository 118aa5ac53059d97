//! `plimsoll import artillery FILE.yml`: an Artillery script as a Plimsoll load probe.
//!
//! What converts: `config.target`, `config.phases` (duration, arrivalRate, rampTo, name;
//! arrivalCount becomes the equivalent rate), `config.http.timeout`, `config.variables`
//! (lists become choice generators), `config.payload` (a CSV becomes the data file), and
//! scenarios with their weight and flow: requests (get/post/put/patch/delete/head/options
//! with url, qs, headers, json, body, form), `capture` (JSON path, header, regexp), `expect`
//! (statusCode, hasProperty, hasHeader, contentType, equals on a captured JSON value),
//! `ifTrue` on a variable, `think`, and loops with a count.
//!
//! What does not — JavaScript (processor functions, hooks), plugins, loops over arrays,
//! conditions that are expressions, other engines — is dropped and listed with its YAML
//! path. The output is meant to validate as it is: a variable the script uses but never sets
//! is declared empty (and listed), so `plimsoll validate` passes and the gap is visible.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

mod flow;
#[cfg(test)]
mod tests;

use super::toml_text::{inline, inline_pairs, key, string};
use super::{Conversion, Dropped, ImportError};
use crate::config::Limits;
pub use flow::json_path_to_pointer;

/// Methods Artillery's HTTP engine knows as flow actions.
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// Built-in placeholders of Plimsoll that need no declaration.
const BUILTINS: [&str; 5] = ["seq", "uuid", "random_id", "timestamp", "timestamp_ms"];

/// Converts the text of an Artillery script; `name` becomes the probe's name.
pub fn convert(text: &str, name: &str) -> Result<Conversion, ImportError> {
    let doc: Value = serde_norway::from_str(text)
        .map_err(|e| ImportError::NotAScript(format!("not a YAML document: {e}")))?;
    let Some(top) = doc.as_object() else {
        return Err(ImportError::NotAScript(
            "not an Artillery script: the document is not a mapping".into(),
        ));
    };
    let Some(scenarios) = top.get("scenarios").and_then(Value::as_array) else {
        return Err(ImportError::NotAScript(
            "not an Artillery script: it has no `scenarios` list".into(),
        ));
    };
    let mut c = Converter::default();
    let empty = Map::new();
    let config = top
        .get("config")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for k in top.keys() {
        if k != "config" && k != "scenarios" {
            c.drop(k, "top-level section not converted");
        }
    }
    c.config(config);
    for (i, sc) in scenarios.iter().enumerate() {
        c.scenario(&format!("scenarios[{i}]"), sc);
    }
    if !c.refused.is_empty() {
        return Err(ImportError::Refused(c.refused));
    }
    if c.scenarios.is_empty() {
        return Err(ImportError::NotAScript(
            "no scenario could be converted (see the list above)".into(),
        ));
    }
    let toml = c.render(name);
    // What is printed must validate: a conversion that would give `plimsoll validate` a
    // problem is refused here, with the problems. A data file is read relative to where the
    // configuration will run, not where it is converted, so only its absence is let through.
    if let Err(e) = crate::config::load_str(&toml, std::iter::empty()) {
        let problems: Vec<String> = e
            .0
            .iter()
            .filter(|p| !(p.path.ends_with(".data.file") && p.message.starts_with("cannot read")))
            .map(|p| p.to_string())
            .collect();
        if !problems.is_empty() {
            return Err(ImportError::Invalid(problems));
        }
    }
    Ok(Conversion {
        toml,
        dropped: c.dropped,
    })
}

/// An inline table's entries, in writing order.
type Pairs = Vec<(String, Value)>;

#[derive(Default)]
struct Converter {
    target: Option<String>,
    /// Phases as ordered key-value pairs.
    phases: Vec<Pairs>,
    timeout: Option<f64>,
    /// Declared generators, in order: name and inline TOML value.
    vars: Vec<(String, String)>,
    data: Option<(String, &'static str)>,
    /// Names every step may use: variables, payload fields, built-ins.
    globals: BTreeSet<String>,
    scenarios: Vec<Scenario>,
    dropped: Vec<Dropped>,
    /// Values refused outright (negative or absurd numbers), by source path.
    refused: Vec<Dropped>,
}

struct Scenario {
    name: Option<String>,
    weight: u64,
    steps: Vec<Step>,
}

#[derive(Clone, Default)]
struct Step {
    method: String,
    url: String,
    headers: Map<String, Value>,
    /// `json`, `body` or `form`, with its value.
    body: Option<(&'static str, Value)>,
    captures: Vec<Pairs>,
    status: Option<Vec<Value>>,
    json_rules: Vec<Value>,
    headers_expected: Vec<String>,
    when: Option<String>,
    repeat: u64,
    think_s: f64,
}

impl Converter {
    fn drop(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.dropped.push(Dropped {
            path: path.into(),
            message: message.into(),
        });
    }

    fn refuse(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.refused.push(Dropped {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Checks a number of the script against Plimsoll's ceilings (the defaults of `[limits]`):
    /// finite, not negative, at most `max`. Returns whether it passed.
    pub(super) fn check_number(&mut self, path: String, v: f64, max: f64, unit: &str) -> bool {
        if !v.is_finite() {
            self.refuse(path, "must be a finite number");
        } else if v < 0.0 {
            self.refuse(
                path,
                format!("must be 0 or greater (found {})", trim_float(v)),
            );
        } else if v > max {
            self.refuse(
                path,
                format!(
                    "must be at most {}{unit} (found {})",
                    trim_float(max),
                    trim_float(v)
                ),
            );
        } else {
            return true;
        }
        false
    }

    fn config(&mut self, config: &Map<String, Value>) {
        for (k, v) in config {
            let p = format!("config.{k}");
            match k.as_str() {
                "target" => self.target = v.as_str().map(str::to_string),
                "phases" => self.phases(&p, v),
                "http" => {
                    for (hk, hv) in v.as_object().into_iter().flatten() {
                        let max_s = Limits::default().duration.as_duration().as_secs_f64();
                        match (hk.as_str(), hv.as_f64()) {
                            ("timeout", Some(t))
                                if self.check_number(format!("{p}.{hk}"), t, max_s, " s") =>
                            {
                                if t > 0.0 {
                                    self.timeout = Some(t)
                                } else {
                                    self.drop(format!("{p}.{hk}"), "a timeout of 0 not converted")
                                }
                            }
                            ("timeout", Some(_)) => {}
                            _ => self.drop(format!("{p}.{hk}"), "HTTP setting not converted"),
                        }
                    }
                }
                "variables" => self.variables(&p, v),
                "payload" => self.payload(&p, v),
                "processor" => self.drop(
                    p,
                    format!(
                        "processor functions are JavaScript and were not converted ({})",
                        v.as_str().unwrap_or("?")
                    ),
                ),
                "plugins" => {
                    for name in v.as_object().into_iter().flatten().map(|(n, _)| n) {
                        let why = match name.as_str() {
                            "expect" => "plugin not needed: expectations are converted natively",
                            "metrics-by-endpoint" => {
                                "plugin not needed: Plimsoll labels every metric by step (endpoint)"
                            }
                            _ => "plugin not converted",
                        };
                        self.drop(format!("{p}.{name}"), why);
                    }
                }
                _ => self.drop(p, "setting not converted"),
            }
        }
    }

    fn phases(&mut self, p: &str, v: &Value) {
        for (j, ph) in v.as_array().into_iter().flatten().enumerate() {
            let pp = format!("{p}[{j}]");
            let Some(o) = ph.as_object() else { continue };
            let limits = Limits::default();
            let duration = o.get("duration").and_then(seconds);
            let rate = o.get("arrivalRate").and_then(Value::as_f64);
            let count = o.get("arrivalCount").and_then(Value::as_f64);
            let ramp = o.get("rampTo").and_then(Value::as_f64);
            // Negative, endless or absurd numbers are refused with their YAML path, never
            // turned into something else (a rate of -5 once became 0.1 silently).
            let mut ok = true;
            let max_s = limits.duration.as_duration().as_secs_f64();
            for (key, v, max, unit) in [
                ("duration", duration, max_s, " s"),
                ("arrivalRate", rate, limits.rate, " per second"),
                ("rampTo", ramp, limits.rate, " per second"),
                ("arrivalCount", count, f64::from(limits.burst) * max_s, ""),
            ] {
                if let Some(v) = v {
                    ok &= self.check_number(format!("{pp}.{key}"), v, max, unit);
                }
            }
            if !ok {
                continue;
            }
            let mut out = Pairs::new();
            if let Some(n) = o.get("name").and_then(Value::as_str) {
                out.push(("name".into(), n.into()));
            }
            let Some(d) = duration.filter(|d| *d > 0.0) else {
                let what = if o.contains_key("pause") {
                    "pause phases are not converted (a Plimsoll phase needs a rate)"
                } else {
                    "phase without a usable duration not converted"
                };
                self.drop(pp, what);
                continue;
            };
            out.push(("duration".into(), format!("{}s", trim_float(d)).into()));
            let start = match (rate, count) {
                (Some(r), _) => r,
                (None, Some(n)) => {
                    self.drop(
                        format!("{pp}.arrivalCount"),
                        format!(
                            "converted to an even rate of {} per second",
                            trim_float(n / d)
                        ),
                    );
                    n / d
                }
                (None, None) => 0.0,
            };
            // Plimsoll's rate must be positive; a ramp from 0 starts at a trickle instead.
            let start = if start <= 0.0 && ramp.is_some() {
                self.drop(
                    format!("{pp}.arrivalRate"),
                    "a ramp from 0 starts at 0.1 per second",
                );
                0.1
            } else {
                start
            };
            if start <= 0.0 {
                self.drop(pp, "phase without an arrival rate not converted");
                continue;
            }
            out.push(("rate".into(), number(start)));
            if let Some(r) = ramp {
                out.push(("ramp_to".into(), number(r)));
            }
            for k in o.keys() {
                if !matches!(
                    k.as_str(),
                    "name" | "duration" | "arrivalRate" | "arrivalCount" | "rampTo"
                ) {
                    self.drop(format!("{pp}.{k}"), "phase setting not converted");
                }
            }
            self.phases.push(out);
        }
    }

    fn variables(&mut self, p: &str, v: &Value) {
        for (name, val) in v.as_object().into_iter().flatten() {
            let values: Vec<Value> = match val {
                Value::Array(a) => a.iter().map(|x| Value::String(text_of(x))).collect(),
                Value::Null | Value::Object(_) => {
                    self.drop(format!("{p}.{name}"), "variable value not converted");
                    continue;
                }
                other => vec![Value::String(text_of(other))],
            };
            if values.is_empty() {
                self.drop(format!("{p}.{name}"), "empty list not converted");
                continue;
            }
            self.declare(name, values);
        }
    }

    fn declare(&mut self, name: &str, values: Vec<Value>) {
        let g = serde_json::json!({ "kind": "choice", "values": values });
        self.vars.push((name.to_string(), inline(&g)));
        self.globals.insert(name.to_string());
    }

    fn payload(&mut self, p: &str, v: &Value) {
        let list = one_or_many(v);
        for (j, pl) in list.into_iter().enumerate() {
            let pp = if v.is_array() {
                format!("{p}[{j}]")
            } else {
                p.to_string()
            };
            let Some(o) = pl.as_object() else { continue };
            if self.data.is_some() {
                self.drop(pp, "only the first payload file is converted");
                continue;
            }
            let Some(path) = o.get("path").and_then(Value::as_str) else {
                self.drop(pp, "payload without a path not converted");
                continue;
            };
            let order = match o.get("order").and_then(Value::as_str) {
                Some("sequence") => "sequential",
                _ => "random",
            };
            let fields: Vec<String> = o
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(text_of)
                .collect();
            let header = o.get("skipHeader").and_then(Value::as_bool) == Some(true);
            let message = if header {
                format!(
                    "Plimsoll names the columns from the file's header row, not from `fields` ({})",
                    fields.join(",")
                )
            } else {
                format!(
                    "Plimsoll reads a header row: make the first line of {path} `{}`",
                    fields.join(",")
                )
            };
            self.drop(format!("{pp}.fields"), message);
            for k in o.keys() {
                if !matches!(k.as_str(), "path" | "fields" | "order" | "skipHeader") {
                    self.drop(format!("{pp}.{k}"), "payload setting not converted");
                }
            }
            self.globals.extend(fields);
            self.data = Some((path.to_string(), order));
        }
    }
    fn render(&self, name: &str) -> String {
        let mut t = String::new();
        t.push_str("# Converted from an Artillery script by `plimsoll import artillery`.\n");
        if !self.dropped.is_empty() {
            t.push_str("# Not converted, or changed (also printed on stderr):\n");
            for d in &self.dropped {
                t.push_str(&format!("#   {d}\n"));
            }
        }
        let relative = self.target.is_some();
        if let Some(url) = &self.target {
            t.push_str(&format!(
                "\n[[target]]\nname = \"target\"\nurl = {}\n",
                string(url)
            ));
        }
        t.push_str(&format!(
            "\n[[probe]]\nname = {}\nkind = \"load\"\n",
            string(name)
        ));
        if relative {
            t.push_str("target = \"target\"\n");
        }
        t.push_str("\n[probe.load]\n");
        if self.phases.is_empty() {
            t.push_str("# The script has no usable phase: one arrival per second for a minute.\n");
            t.push_str("phases = [{ duration = \"60s\", rate = 1 }]\n");
        } else {
            t.push_str("phases = [\n");
            for ph in &self.phases {
                t.push_str(&format!("  {},\n", inline_pairs(ph)));
            }
            t.push_str("]\n");
        }
        if let Some(s) = self.timeout {
            t.push_str(&format!("timeout = \"{}s\"\n", trim_float(s)));
        }
        if let Some((file, order)) = &self.data {
            t.push_str(&format!(
                "\n[probe.load.data]\nfile = {}\norder = \"{order}\"\n",
                string(file)
            ));
        }
        if !self.vars.is_empty() {
            t.push_str("\n[probe.load.vars]\n");
            for (n, g) in &self.vars {
                t.push_str(&format!("{} = {g}\n", key(n)));
            }
        }
        for sc in &self.scenarios {
            t.push_str("\n[[probe.load.scenarios]]\n");
            if let Some(n) = &sc.name {
                t.push_str(&format!("name = {}\n", string(n)));
            }
            t.push_str(&format!("weight = {}\n", sc.weight));
            for st in &sc.steps {
                t.push_str(&st.render());
            }
        }
        t
    }
}

impl Step {
    fn render(&self) -> String {
        let mut t = String::from("\n[[probe.load.scenarios.steps]]\n");
        if let Some(w) = &self.when {
            t.push_str(&format!("if = {}\n", string(w)));
        }
        if self.repeat > 1 {
            t.push_str(&format!("loop = {}\n", self.repeat));
        }
        let mut req: Pairs = vec![
            ("method".into(), self.method.clone().into()),
            ("url".into(), self.url.clone().into()),
        ];
        if !self.headers.is_empty() {
            req.push(("headers".into(), Value::Object(self.headers.clone())));
        }
        if let Some((k, v)) = &self.body {
            req.push(((*k).into(), v.clone()));
        }
        t.push_str(&format!("request = {}\n", inline_pairs(&req)));
        if !self.captures.is_empty() {
            let list: Vec<String> = self.captures.iter().map(|c| inline_pairs(c)).collect();
            t.push_str(&format!("capture = [{}]\n", list.join(", ")));
        }
        let mut expect = Map::new();
        if let Some(s) = &self.status {
            expect.insert("status".into(), Value::Array(s.clone()));
        }
        if !self.json_rules.is_empty() {
            expect.insert("json".into(), Value::Array(self.json_rules.clone()));
        }
        if !self.headers_expected.is_empty() {
            let h: Vec<Value> = self
                .headers_expected
                .iter()
                .map(|h| h.as_str().into())
                .collect();
            expect.insert("header".into(), Value::Array(h));
        }
        if !expect.is_empty() {
            t.push_str(&format!("expect = {}\n", inline(&Value::Object(expect))));
        }
        if self.think_s > 0.0 {
            t.push_str(&format!(
                "think = \"{}ms\"\n",
                (self.think_s * 1000.0).round()
            ));
        }
        t
    }
}

/// Artillery often takes one item or a list of them.
fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

fn pair<'a>(pairs: &'a Pairs, k: &str) -> Option<&'a Value> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

/// Seconds from an Artillery duration: a number, or text like "5m" or "30".
fn seconds(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    humantime::parse_duration(s).ok().map(|d| d.as_secs_f64())
}

fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

fn trim_float(x: f64) -> String {
    number(x).to_string()
}

/// A scalar as text (numbers and booleans as written).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

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

use super::toml_text::{inline, inline_pairs, key, string};
use super::{Conversion, Dropped, ImportError};

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
    if c.scenarios.is_empty() {
        return Err(ImportError::NotAScript(
            "no scenario could be converted (see the list above)".into(),
        ));
    }
    let toml = c.render(name);
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
}

struct Scenario {
    name: Option<String>,
    weight: u64,
    steps: Vec<Step>,
}

#[derive(Default)]
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

    fn config(&mut self, config: &Map<String, Value>) {
        for (k, v) in config {
            let p = format!("config.{k}");
            match k.as_str() {
                "target" => self.target = v.as_str().map(str::to_string),
                "phases" => self.phases(&p, v),
                "http" => {
                    for (hk, hv) in v.as_object().into_iter().flatten() {
                        match (hk.as_str(), hv.as_f64()) {
                            ("timeout", Some(t)) if t > 0.0 => self.timeout = Some(t),
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
            let duration = o.get("duration").and_then(seconds);
            let rate = o.get("arrivalRate").and_then(Value::as_f64);
            let count = o.get("arrivalCount").and_then(Value::as_f64);
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
            let ramp = o.get("rampTo").and_then(Value::as_f64);
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

    fn scenario(&mut self, p: &str, sc: &Value) {
        let Some(o) = sc.as_object() else { return };
        if let Some(engine) = o.get("engine").and_then(Value::as_str) {
            if engine != "http" {
                self.drop(
                    format!("{p}.engine"),
                    format!("the {engine} engine is not converted; scenario left out"),
                );
                return;
            }
        }
        for k in o.keys() {
            if !matches!(k.as_str(), "name" | "weight" | "flow" | "engine") {
                let why = if k.starts_with("before") || k.starts_with("after") {
                    "hooks run JavaScript and were not converted"
                } else {
                    "scenario setting not converted"
                };
                self.drop(format!("{p}.{k}"), why);
            }
        }
        let mut known = self.globals.clone();
        let mut steps = Vec::new();
        let flow = o.get("flow").and_then(Value::as_array);
        for (j, entry) in flow.into_iter().flatten().enumerate() {
            self.flow_entry(&format!("{p}.flow[{j}]"), entry, &mut steps, &mut known);
        }
        if steps.is_empty() {
            self.drop(
                p,
                "no request in this scenario could be converted; scenario left out",
            );
            return;
        }
        self.scenarios.push(Scenario {
            name: o.get("name").and_then(Value::as_str).map(str::to_string),
            weight: o
                .get("weight")
                .and_then(Value::as_u64)
                .filter(|w| *w > 0)
                .unwrap_or(1),
            steps,
        });
    }

    fn flow_entry(
        &mut self,
        p: &str,
        entry: &Value,
        steps: &mut Vec<Step>,
        known: &mut BTreeSet<String>,
    ) {
        let Some(o) = entry.as_object() else { return };
        for (k, v) in o {
            let kp = format!("{p}.{k}");
            match k.as_str() {
                m if METHODS.contains(&m) => {
                    if let Some(s) = self.request(&kp, m, v, known) {
                        steps.push(s);
                    }
                }
                "think" => match (seconds(v), steps.last_mut()) {
                    (Some(t), Some(last)) => last.think_s += t,
                    _ => self.drop(kp, "a think before the first request is not converted"),
                },
                "loop" => self.flow_loop(p, o, steps, known),
                "count" | "over" | "whileTrue" if o.contains_key("loop") => {}
                "function" => self.drop(
                    kp,
                    "processor functions are JavaScript and were not converted",
                ),
                "log" => self.drop(kp, "log lines are not converted"),
                _ => self.drop(kp, "flow action not converted"),
            }
        }
    }

    fn flow_loop(
        &mut self,
        p: &str,
        o: &Map<String, Value>,
        steps: &mut Vec<Step>,
        known: &mut BTreeSet<String>,
    ) {
        if o.contains_key("over") || o.contains_key("whileTrue") {
            self.drop(
                format!("{p}.loop"),
                "loops over arrays or while a condition holds are not converted",
            );
            return;
        }
        let Some(count) = o.get("count").and_then(Value::as_u64).filter(|n| *n > 0) else {
            self.drop(
                format!("{p}.loop"),
                "a loop without a count is not converted",
            );
            return;
        };
        let mut inner = Vec::new();
        for (j, e) in o
            .get("loop")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.flow_entry(&format!("{p}.loop[{j}]"), e, &mut inner, known);
        }
        match inner.len() {
            0 => {}
            // One request repeated is exactly Plimsoll's `loop`.
            1 => {
                let mut s = inner.remove(0);
                s.repeat *= count;
                steps.push(s);
            }
            // Several requests in turn: written out, as long as that stays readable.
            n if n as u64 * count <= 50 => {
                for _ in 0..count {
                    steps.extend(inner.iter().map(Step::clone_step));
                }
            }
            n => self.drop(
                format!("{p}.loop"),
                format!(
                    "a loop of {n} requests {count} times is too long to write out; not converted"
                ),
            ),
        }
    }

    fn request(
        &mut self,
        p: &str,
        method: &str,
        v: &Value,
        known: &mut BTreeSet<String>,
    ) -> Option<Step> {
        let o = v.as_object()?;
        let Some(url) = o.get("url").and_then(Value::as_str) else {
            self.drop(p, "request without a url not converted");
            return None;
        };
        let mut used = BTreeSet::new();
        let mut s = Step {
            method: method.to_uppercase(),
            url: self.template(&format!("{p}.url"), url, &mut used),
            repeat: 1,
            ..Step::default()
        };
        for (k, val) in o {
            let kp = format!("{p}.{k}");
            match k.as_str() {
                "url" => {}
                "qs" => {
                    let mut pairs = Vec::new();
                    for (qk, qv) in val.as_object().into_iter().flatten() {
                        let t = self.template(&kp, &text_of(qv), &mut used);
                        pairs.push(format!("{qk}={t}"));
                    }
                    if !pairs.is_empty() {
                        let sep = if s.url.contains('?') { '&' } else { '?' };
                        s.url = format!("{}{sep}{}", s.url, pairs.join("&"));
                    }
                }
                "headers" => {
                    for (hk, hv) in val.as_object().into_iter().flatten() {
                        let t = self.template(&format!("{kp}.{hk}"), &text_of(hv), &mut used);
                        s.headers.insert(hk.clone(), t.into());
                    }
                }
                "json" => s.body = Some(("json", self.json_template(&kp, val, &mut used))),
                "body" => {
                    let t = self.template(&kp, &text_of(val), &mut used);
                    s.body = Some(("body", t.into()));
                }
                "form" => {
                    let mut form = Map::new();
                    for (fk, fv) in val.as_object().into_iter().flatten() {
                        form.insert(
                            fk.clone(),
                            self.template(&kp, &text_of(fv), &mut used).into(),
                        );
                    }
                    s.body = Some(("form", Value::Object(form)));
                }
                "capture" => self.captures(&kp, val, &mut s),
                "expect" => self.expects(&kp, val, &mut s),
                "ifTrue" => {
                    let cond = text_of(val);
                    let is_name = !cond.is_empty()
                        && cond.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if is_name {
                        used.insert(cond.clone());
                        s.when = Some(cond);
                    } else {
                        self.drop(
                            kp,
                            format!("condition {cond:?} is an expression; only a variable name converts, the step always runs"),
                        );
                    }
                }
                "beforeRequest" | "afterResponse" => {
                    self.drop(kp, "hooks run JavaScript and were not converted")
                }
                _ => self.drop(kp, "request setting not converted"),
            }
        }
        // A variable used before anything sets it would fail validation (and send an empty
        // value in Artillery): declare it empty so the file validates, and say so.
        for name in used {
            if !known.contains(&name) && !BUILTINS.contains(&name.as_str()) {
                self.drop(
                    p,
                    format!("variable {name:?} is used but never set before; declared empty"),
                );
                self.declare(&name, vec![Value::String(String::new())]);
                self.globals.insert(name.clone());
                known.insert(name);
            }
        }
        for c in &s.captures {
            if let Some(n) = pair(c, "as").and_then(Value::as_str) {
                known.insert(n.to_string());
            }
        }
        Some(s)
    }

    fn captures(&mut self, p: &str, v: &Value, s: &mut Step) {
        let list = one_or_many(v);
        for (j, c) in list.into_iter().enumerate() {
            let cp = format!("{p}[{j}]");
            let Some(o) = c.as_object() else { continue };
            let Some(var) = o.get("as").and_then(Value::as_str) else {
                self.drop(cp, "capture without `as` not converted");
                continue;
            };
            let mut out = Pairs::new();
            if let Some(path) = o.get("json").and_then(Value::as_str) {
                match json_path_to_pointer(path) {
                    Some(ptr) => out.push(("json".into(), ptr.into())),
                    None => {
                        self.drop(
                            format!("{cp}.json"),
                            format!("JSONPath {path:?} has filters or wildcards; only plain paths convert"),
                        );
                        continue;
                    }
                };
            } else if let Some(h) = o.get("header").and_then(Value::as_str) {
                out.push(("header".into(), h.into()));
            } else if let Some(r) = o.get("regexp").and_then(Value::as_str) {
                if regex_lite::Regex::new(r).is_err() {
                    self.drop(format!("{cp}.regexp"), "regular expression not supported");
                    continue;
                }
                out.push(("regex".into(), r.into()));
            } else {
                self.drop(cp, "capture kind not converted (only json, header, regexp)");
                continue;
            }
            for k in o.keys() {
                if !matches!(k.as_str(), "as" | "json" | "header" | "regexp" | "strict") {
                    self.drop(format!("{cp}.{k}"), "capture setting not converted");
                }
            }
            out.push(("as".into(), var.into()));
            s.captures.push(out);
        }
    }

    fn expects(&mut self, p: &str, v: &Value, s: &mut Step) {
        let list = one_or_many(v);
        for (j, e) in list.into_iter().enumerate() {
            let ep = format!("{p}[{j}]");
            for (k, val) in e.as_object().into_iter().flatten() {
                let kp = format!("{ep}.{k}");
                match k.as_str() {
                    "statusCode" => {
                        let codes: Vec<Value> = one_or_many(val)
                            .into_iter()
                            .filter_map(|c| text_of(c).parse::<u16>().ok())
                            .map(Value::from)
                            .collect();
                        if codes.is_empty() {
                            self.drop(kp, "status not converted");
                        } else {
                            s.status.get_or_insert_with(Vec::new).extend(codes);
                        }
                    }
                    "hasProperty" => {
                        let ptr = format!("/{}", text_of(val).replace('.', "/"));
                        s.json_rules.push(serde_json::json!({ "pointer": ptr }));
                    }
                    "hasHeader" => s.headers_expected.push(text_of(val)),
                    "contentType" => {
                        self.drop(
                            kp,
                            "converted to a check that a content-type header is present (its value is not compared)",
                        );
                        s.headers_expected.push("content-type".into());
                    }
                    "equals" => {
                        if let Some(rule) = equals_rule(val, &s.captures) {
                            s.json_rules.push(rule);
                        } else {
                            self.drop(
                                kp,
                                "only equals between a value captured by json in the same request and a literal converts",
                            );
                        }
                    }
                    _ => self.drop(kp, "expectation not converted"),
                }
            }
        }
    }

    /// Rewrites Artillery placeholders for Plimsoll, noting the variables used. Artillery's
    /// functions map to generators where one fits; the rest become empty text and are listed.
    fn template(&mut self, p: &str, text: &str, used: &mut BTreeSet<String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                out.push_str(&rest[open..]);
                return out;
            };
            let inner = after[..close].trim();
            rest = &after[close + 2..];
            if let Some(f) = inner.strip_prefix('$') {
                match self.function(f) {
                    Some(name) => out.push_str(&format!("{{{{{name}}}}}")),
                    None => self.drop(
                        p,
                        format!("{{{{ {inner} }}}} is an Artillery function without an equivalent; left empty"),
                    ),
                }
            } else {
                used.insert(inner.to_string());
                out.push_str(&format!("{{{{{inner}}}}}"));
            }
        }
        out.push_str(rest);
        out
    }

    /// The Plimsoll generator for an Artillery template function, declaring it if needed.
    fn function(&mut self, call: &str) -> Option<String> {
        let (fname, args) = call.split_once('(').unwrap_or((call, ")"));
        let args: Vec<&str> = args
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        match fname {
            "randomString" => Some("random_id".into()),
            "uuid" | "randomUUID" => Some("uuid".into()),
            "timestamp" => Some("timestamp_ms".into()),
            "randomNumber" => {
                let (lo, hi) = match args.as_slice() {
                    [a, b] => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
                    _ => (0, 1_000_000),
                };
                let name = format!("random_number_{}_{}", lo, hi).replace('-', "m");
                if !self.vars.iter().any(|(n, _)| *n == name) {
                    let g = serde_json::json!({ "kind": "random_int", "min": lo, "max": hi });
                    self.vars.push((name.clone(), inline(&g)));
                    self.globals.insert(name.clone());
                }
                Some(name)
            }
            _ => None,
        }
    }

    fn json_template(&mut self, p: &str, v: &Value, used: &mut BTreeSet<String>) -> Value {
        match v {
            Value::String(s) => Value::String(self.template(p, s, used)),
            Value::Array(a) => a.iter().map(|x| self.json_template(p, x, used)).collect(),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.json_template(p, x, used)))
                    .collect(),
            ),
            other => other.clone(),
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
    fn clone_step(&self) -> Step {
        Step {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            captures: self.captures.clone(),
            status: self.status.clone(),
            json_rules: self.json_rules.clone(),
            headers_expected: self.headers_expected.clone(),
            when: self.when.clone(),
            repeat: self.repeat,
            think_s: self.think_s,
        }
    }

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

/// `$.a.b[0]` → `/a/b/0`; `None` for filters, wildcards, recursive descent.
pub fn json_path_to_pointer(path: &str) -> Option<String> {
    let rest = path.trim().strip_prefix('$')?;
    if rest.contains(['*', '?', '(', '@']) || rest.contains("..") {
        return None;
    }
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => out.push('/'),
            '[' => {
                let mut seg = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    seg.push(d);
                }
                out.push('/');
                out.push_str(seg.trim_matches(['\'', '"']));
            }
            // JSON pointer escapes.
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    Some(out)
}

/// `equals: ["{{ state }}", "INITIATED"]` where `state` was captured by a JSON path in the
/// same request: a JSON rule on that pointer.
fn equals_rule(val: &Value, captures: &[Pairs]) -> Option<Value> {
    let items = val.as_array().filter(|a| a.len() == 2)?;
    let var_of = |v: &Value| -> Option<String> {
        let s = v.as_str()?.trim();
        let inner = s.strip_prefix("{{")?.strip_suffix("}}")?.trim();
        Some(inner.to_string())
    };
    let (var, literal) = match (var_of(&items[0]), var_of(&items[1])) {
        (Some(v), None) => (v, &items[1]),
        (None, Some(v)) => (v, &items[0]),
        _ => return None,
    };
    let ptr = captures.iter().find_map(|c| {
        (pair(c, "as")?.as_str()? == var).then(|| pair(c, "json")?.as_str().map(str::to_string))?
    })?;
    Some(serde_json::json!({ "pointer": ptr, "equals": literal }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_become_pointers() {
        assert_eq!(json_path_to_pointer("$.token").as_deref(), Some("/token"));
        assert_eq!(
            json_path_to_pointer("$.data.items[0].id").as_deref(),
            Some("/data/items/0/id")
        );
        assert_eq!(json_path_to_pointer("$['a b']").as_deref(), Some("/a b"));
        assert_eq!(json_path_to_pointer("$").as_deref(), Some(""));
        assert_eq!(json_path_to_pointer("$..id"), None);
        assert_eq!(json_path_to_pointer("$.items[*].id"), None);
    }

    #[test]
    fn a_small_script_converts_and_lists_what_it_drops() {
        let yaml = r#"
config:
  target: "http://127.0.0.1:9"
  phases:
    - { duration: 10, arrivalCount: 50, name: "count" }
    - { duration: "1m", arrivalRate: 0, rampTo: 5 }
    - { pause: 5 }
  processor: "./p.js"
scenarios:
  - flow:
      - post:
          url: "/calls"
          json: { to: "{{ $randomNumber(1, 9) }}" }
          capture: [ { json: "$.id", as: "id" }, { json: "$.state", as: "state" } ]
          expect: [ { statusCode: 201 }, { equals: ["{{ state }}", "INITIATED"] } ]
      - think: 2
      - loop:
          - get: { url: "/calls/{{ id }}?t={{ token }}" }
        count: 3
      - function: "doIt"
"#;
        let c = convert(yaml, "x").unwrap();
        let all: String = c.dropped.iter().map(|d| format!("{d}\n")).collect();
        for needle in [
            "config.processor:",
            "config.phases[0].arrivalCount: converted to an even rate of 5",
            "config.phases[2]: pause phases",
            "scenarios[0].flow[3].function:",
            "variable \"token\" is used but never set",
        ] {
            assert!(all.contains(needle), "{needle} missing from\n{all}");
        }
        let cfg = crate::config::load_str(&c.toml, std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
        let load = cfg.probe[0].load.as_ref().unwrap();
        let steps = &load.scenarios[0].steps;
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].think.unwrap().as_duration().as_secs(), 2);
        assert_eq!(steps[1].repeat, 3);
        let e = steps[0].expect.as_ref().unwrap();
        assert_eq!(e.json[0].pointer, "/state");
        assert_eq!(load.phases[0].rate, Some(5.0));
        assert!(c.toml.contains("{{random_number_1_9}}"), "{}", c.toml);
    }

    #[test]
    fn non_scripts_are_refused() {
        assert!(matches!(
            convert("- a\n- b\n", "x"),
            Err(ImportError::NotAScript(_))
        ));
        assert!(matches!(
            convert("config: {}\n", "x"),
            Err(ImportError::NotAScript(_))
        ));
        assert!(matches!(
            convert("a: [", "x"),
            Err(ImportError::NotAScript(_))
        ));
    }
}

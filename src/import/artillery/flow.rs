//! The flow half of the Artillery conversion: scenarios, their requests, captures,
//! expectations, loops and templates. Everything it cannot express is listed through
//! [`Converter::drop`](super::Converter) with its YAML path.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{
    one_or_many, pair, seconds, text_of, Converter, Pairs, Scenario, Step, BUILTINS, METHODS,
};
use crate::import::toml_text::inline;

impl Converter {
    pub(super) fn scenario(&mut self, p: &str, sc: &Value) {
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
                "think" => {
                    let max_s = crate::config::Limits::default()
                        .duration
                        .as_duration()
                        .as_secs_f64();
                    match (seconds(v), steps.last_mut()) {
                        (Some(t), Some(last)) if t.is_finite() && (0.0..=max_s).contains(&t) => {
                            last.think_s += t
                        }
                        (Some(t), _) => {
                            self.check_number(kp, t, max_s, " s");
                        }
                        _ => self.drop(kp, "a think before the first request is not converted"),
                    }
                }
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
                s.repeat = s.repeat.saturating_mul(count);
                steps.push(s);
            }
            // Several requests in turn: written out, as long as that stays readable.
            n if (n as u64).saturating_mul(count) <= 50 => {
                for _ in 0..count {
                    steps.extend(inner.iter().cloned());
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

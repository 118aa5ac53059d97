//! Request templates: what a step sends, with `{{name}}` placeholders filled per iteration from
//! value generators (sequence, random id, timestamp, choice, …), and an optional signer.
//!
//! Templates are compiled once; a step without placeholders is built from ready bytes, so the
//! hot path then clones reference-counted buffers instead of formatting anything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::config::{check_header, Problems, Secret};

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
    fn builtin(name: &str) -> Option<GeneratorConfig> {
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
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
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

/// A compiled text with placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Var(usize),
}

impl Template {
    /// Compiles a validated text against the run's generator table.
    pub fn compile(text: &str, vars: &mut Generators) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else { break };
            parts.push(Part::Var(vars.index_of(after[..close].trim())));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Template { parts }
    }

    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The text with placeholders filled from one iteration's values.
    pub fn render_into(&self, values: &[String], out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(i) => out.push_str(&values[*i]),
            }
        }
    }

    pub fn render(&self, values: &[String]) -> String {
        let mut s = String::new();
        self.render_into(values, &mut s);
        s
    }

    /// When the whole text is one placeholder, its generator index (a JSON value that is only
    /// `"{{seq}}"` becomes a number, not a string, when the generator yields numbers).
    fn sole_var(&self) -> Option<usize> {
        match self.parts.as_slice() {
            [Part::Var(i)] => Some(*i),
            _ => None,
        }
    }
}

/// The generators one run uses, shared by all workers; values are produced per iteration.
#[derive(Debug, Default)]
pub struct Generators {
    names: Vec<String>,
    gens: Vec<Generator>,
}

#[derive(Debug)]
enum Generator {
    Sequence(AtomicU64),
    RandomId {
        prefix: String,
        length: usize,
    },
    Uuid,
    Timestamp(TimestampFormat),
    Choice(Vec<String>),
    RandomInt(i64, i64),
    /// A value the run sets itself (a flow's capture, a data file's column); empty at the
    /// start of every iteration.
    Slot,
}

impl Generators {
    pub fn new(declared: &BTreeMap<String, GeneratorConfig>) -> Self {
        let mut g = Generators::default();
        for (name, cfg) in declared {
            g.add(name, cfg);
        }
        g
    }

    fn add(&mut self, name: &str, cfg: &GeneratorConfig) -> usize {
        self.names.push(name.to_string());
        self.gens.push(match cfg {
            GeneratorConfig::Sequence { start } => Generator::Sequence(AtomicU64::new(*start)),
            GeneratorConfig::RandomId { prefix, length } => Generator::RandomId {
                prefix: prefix.clone(),
                length: *length,
            },
            GeneratorConfig::Uuid => Generator::Uuid,
            GeneratorConfig::Timestamp { format } => Generator::Timestamp(*format),
            GeneratorConfig::Choice { values } => Generator::Choice(values.clone()),
            GeneratorConfig::RandomInt { min, max } => Generator::RandomInt(*min, *max),
        });
        self.names.len() - 1
    }

    fn index_of(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        // Validation guarantees an undeclared name is a built-in.
        let cfg = GeneratorConfig::builtin(name).unwrap_or(GeneratorConfig::Uuid);
        self.add(name, &cfg)
    }

    /// The slot of a variable the run fills itself (a capture, a data column), added empty if
    /// no generator has that name yet. Call it before compiling templates that use the name.
    pub fn slot(&mut self, name: &str) -> usize {
        match self.position(name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.gens.push(Generator::Slot);
                self.names.len() - 1
            }
        }
    }

    /// Slot of a named generator in an iteration's values, if the run has one by that name
    /// (a probe that supplies some values itself, such as a captured id, overwrites the slot).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn len(&self) -> usize {
        self.gens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gens.is_empty()
    }

    fn yields_number(&self, i: usize) -> bool {
        matches!(
            self.gens[i],
            Generator::Sequence(_)
                | Generator::RandomInt(..)
                | Generator::Timestamp(TimestampFormat::Unix | TimestampFormat::UnixMs)
        )
    }

    /// Fills `values` (one slot per generator, buffers reused) for a new iteration.
    pub fn fill(&self, values: &mut Vec<String>) {
        use std::fmt::Write as _;
        values.resize_with(self.gens.len(), String::new);
        for (g, v) in self.gens.iter().zip(values.iter_mut()) {
            v.clear();
            // Writing to a String cannot fail.
            let _ = match g {
                Generator::Sequence(n) => write!(v, "{}", n.fetch_add(1, Ordering::Relaxed)),
                Generator::RandomId { prefix, length } => {
                    v.push_str(prefix);
                    for _ in 0..*length {
                        v.push(char::from(b"0123456789abcdef"[fastrand::usize(..16)]));
                    }
                    Ok(())
                }
                Generator::Uuid => {
                    let b = fastrand::u128(..);
                    // Version 4, variant 1.
                    let b = (b & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
                    let h = format!("{b:032x}");
                    write!(
                        v,
                        "{}-{}-{}-{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..]
                    )
                }
                Generator::Timestamp(f) => {
                    let now = std::time::SystemTime::now();
                    let since = now
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    match f {
                        TimestampFormat::Unix => write!(v, "{}", since.as_secs()),
                        TimestampFormat::UnixMs => write!(v, "{}", since.as_millis()),
                        TimestampFormat::Rfc3339 => {
                            write!(v, "{}", humantime::format_rfc3339_millis(now))
                        }
                    }
                }
                Generator::Choice(vals) => {
                    v.push_str(&vals[fastrand::usize(..vals.len())]);
                    Ok(())
                }
                Generator::RandomInt(lo, hi) => write!(v, "{}", fastrand::i64(*lo..=*hi)),
                Generator::Slot => Ok(()),
            };
        }
    }
}

/// A JSON body template: a ready serialization when static, else a tree rendered per iteration.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    Leaf(serde_json::Value),
    Text(Template, Option<usize>),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    pub fn compile(v: &serde_json::Value, vars: &mut Generators) -> Self {
        match v {
            serde_json::Value::String(s) => {
                let t = Template::compile(s, vars);
                if t.is_static() {
                    JsonTemplate::Leaf(v.clone())
                } else {
                    let sole = t.sole_var().filter(|i| vars.yields_number(*i));
                    JsonTemplate::Text(t, sole)
                }
            }
            serde_json::Value::Array(a) => {
                JsonTemplate::Array(a.iter().map(|x| Self::compile(x, vars)).collect())
            }
            serde_json::Value::Object(o) => JsonTemplate::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), Self::compile(x, vars)))
                    .collect(),
            ),
            other => JsonTemplate::Leaf(other.clone()),
        }
    }

    pub fn is_static(&self) -> bool {
        match self {
            JsonTemplate::Leaf(_) => true,
            JsonTemplate::Text(..) => false,
            JsonTemplate::Array(a) => a.iter().all(Self::is_static),
            JsonTemplate::Object(o) => o.iter().all(|(_, x)| x.is_static()),
        }
    }

    pub fn render(&self, values: &[String]) -> serde_json::Value {
        match self {
            JsonTemplate::Leaf(v) => v.clone(),
            JsonTemplate::Text(_, Some(i)) => {
                let s = &values[*i];
                s.parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::String(s.clone()))
            }
            JsonTemplate::Text(t, None) => serde_json::Value::String(t.render(values)),
            JsonTemplate::Array(a) => a.iter().map(|x| x.render(values)).collect(),
            JsonTemplate::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), x.render(values)))
                    .collect(),
            ),
        }
    }
}

/// A body as the hot path builds it.
#[derive(Debug, Clone)]
pub enum BodyTemplate {
    Empty,
    /// Ready bytes: cloning is a reference-count increment.
    Static(Bytes),
    Text(Template),
    Json(JsonTemplate),
    Form(Vec<(String, Template)>),
}

impl BodyTemplate {
    pub fn compile(cfg: &RequestConfig, vars: &mut Generators) -> (Self, Option<&'static str>) {
        if let Some(text) = &cfg.body {
            let t = Template::compile(text, vars);
            let b = if t.is_static() {
                BodyTemplate::Static(Bytes::from(text.clone()))
            } else {
                BodyTemplate::Text(t)
            };
            (b, None)
        } else if let Some(j) = &cfg.json {
            let t = JsonTemplate::compile(j, vars);
            let b = if t.is_static() {
                BodyTemplate::Static(Bytes::from(j.to_string()))
            } else {
                BodyTemplate::Json(t)
            };
            (b, Some("application/json"))
        } else if let Some(form) = &cfg.form {
            let fields = form
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), Template::compile(&text, vars))
                })
                .collect();
            (
                BodyTemplate::Form(fields),
                Some("application/x-www-form-urlencoded"),
            )
        } else {
            (BodyTemplate::Empty, None)
        }
    }

    /// Renders the body; for a form, also hands back its decoded pairs (the signer needs them).
    pub fn render(&self, values: &[String], form_out: &mut Vec<(String, String)>) -> Bytes {
        match self {
            BodyTemplate::Empty => Bytes::new(),
            BodyTemplate::Static(b) => b.clone(),
            BodyTemplate::Text(t) => Bytes::from(t.render(values)),
            BodyTemplate::Json(t) => Bytes::from(t.render(values).to_string()),
            BodyTemplate::Form(fields) => {
                form_out.clear();
                let mut enc = form_urlencoded::Serializer::new(String::new());
                for (k, t) in fields {
                    let v = t.render(values);
                    enc.append_pair(k, &v);
                    form_out.push((k.clone(), v));
                }
                Bytes::from(enc.finish())
            }
        }
    }
}

/// A signer ready to use: the secret and the URL the receiver will verify against.
#[derive(Debug, Clone)]
pub struct Signer {
    pub token: Arc<[u8]>,
    /// Fixed verification URL, when configured; else the request's own URL is signed.
    pub url: Option<Template>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_share_one_value_per_iteration() {
        let mut declared = BTreeMap::new();
        declared.insert(
            "sid".to_string(),
            GeneratorConfig::RandomId {
                prefix: "SM".into(),
                length: 32,
            },
        );
        let mut g = Generators::new(&declared);
        let a = Template::compile("/m/{{sid}}?n={{seq}}", &mut g);
        let b = Template::compile("{{ sid }}", &mut g);
        let mut vals = Vec::new();
        g.fill(&mut vals);
        let (ra, rb) = (a.render(&vals), b.render(&vals));
        assert!(rb.starts_with("SM") && rb.len() == 34, "{rb}");
        assert_eq!(ra, format!("/m/{rb}?n=0"));
        g.fill(&mut vals);
        assert_eq!(a.render(&vals).rsplit('=').next(), Some("1"));
        assert_ne!(b.render(&vals), rb);
    }

    #[test]
    fn json_sole_numeric_placeholder_stays_a_number() {
        let mut g = Generators::default();
        let t = JsonTemplate::compile(
            &serde_json::json!({"n": "{{seq}}", "s": "id-{{seq}}", "k": 1}),
            &mut g,
        );
        let mut vals = Vec::new();
        g.fill(&mut vals);
        assert_eq!(
            t.render(&vals),
            serde_json::json!({"n": 0, "s": "id-0", "k": 1})
        );
    }

    #[test]
    fn uuid_is_version_4() {
        let mut g = Generators::default();
        let t = Template::compile("{{uuid}}", &mut g);
        let mut vals = Vec::new();
        g.fill(&mut vals);
        let u = t.render(&vals);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }

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

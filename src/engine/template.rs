//! Request templates: compiled forms of the configured requests (`config::RequestConfig`),
//! with `{{name}}` placeholders filled per iteration from value generators, and an optional
//! signer.
//!
//! Templates are compiled once; a step without placeholders is built from ready bytes, so the
//! hot path then clones reference-counted buffers instead of formatting anything. The schema
//! and its validation live in `config::request`; this module must not check configuration.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{GeneratorConfig, RequestConfig, TimestampFormat};

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
}

//! Reading a configuration: TOML file, then `PLIMSOLL__…` environment overrides, then typed
//! deserialization section by section, then validation.
//!
//! Each `[[target]]` and `[[probe]]` entry is deserialized on its own so that one bad entry does
//! not hide the problems of the others: `plimsoll validate` reports every problem at once.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Config, ProbeConfig, Problems};

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `probe[2].load.phases[0].rate`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// Line in the file, where the path can be found in it.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn single(message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: message.into(),
            line: None,
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Prefix of environment overrides: `PLIMSOLL__REPORT__DIR=/var/lib/plimsoll`.
pub const ENV_PREFIX: &str = "PLIMSOLL";
const ENV_SEPARATOR: &str = "__";

/// Reads, overrides from the process environment, and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(format!("cannot read {}: {e}", path.display())))?;
    load_str(&text, std::env::vars())
}

/// Same as [`load_file`] on text and an explicit environment (tests pass their own).
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    // The toml crate gives the clearest syntax errors, with line and column.
    if let Err(e) = toml::de::DeTable::parse(text) {
        let line = e.span().map(|s| line_of(text, s.start));
        return Err(ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("TOML syntax error: {}", e.message()),
            line,
        }]));
    }

    let (plain, indexed) = split_env(env);
    let merged = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(plain)),
        )
        .build()
        .map_err(|e| ConfigErrors::single(e.to_string()))?;
    let mut value: Value = merged
        .try_deserialize()
        .map_err(|e| ConfigErrors::single(e.to_string()))?;

    let mut errors = Vec::new();
    for (name, path, raw) in indexed {
        if let Err(message) = apply_indexed(&mut value, &path, &raw) {
            errors.push(ConfigError {
                path: String::new(),
                message: format!("{name}: {message}"),
                line: None,
            });
        }
    }

    let mut config = Config::default();
    // Original positions of the entries that deserialized, so that validation paths name the
    // entry as written even when an earlier one was dropped for a type error.
    let mut kept: HashMap<&'static str, Vec<usize>> = HashMap::new();
    let Value::Object(top) = value else {
        return Err(ConfigErrors::single(
            "the configuration must be a TOML table",
        ));
    };
    for (key, v) in top {
        match key.as_str() {
            "target" => {
                let (items, idx) = entries(v, "target", &mut errors);
                config.target = items;
                kept.insert("target", idx);
            }
            "probe" => {
                let (items, idx) = probe_entries(v, &mut errors);
                config.probe = items;
                kept.insert("probe", idx);
            }
            "report" => {
                if let Some(r) = typed(v, "report", &mut errors) {
                    config.report = r;
                }
            }
            "daemon" => {
                if let Some(d) = typed(v, "daemon", &mut errors) {
                    config.daemon = d;
                }
            }
            "otlp" => {
                if let Some(o) = typed(v, "otlp", &mut errors) {
                    config.otlp = o;
                }
            }
            "guardrails" => {
                if let Some(g) = typed(v, "guardrails", &mut errors) {
                    config.guardrails = g;
                }
            }
            other => errors.push(ConfigError {
                path: other.to_string(),
                message: "unknown section, expected one of `target`, `probe`, `report`, \
                          `daemon`, `otlp`, `guardrails`"
                    .into(),
                line: None,
            }),
        }
    }

    // Validation only makes sense on what deserialized; its findings add to the type errors.
    let mut problems = Problems::default();
    config.validate(&mut problems);
    for mut e in problems.into_errors() {
        e.path = renumber(&e.path, &kept);
        errors.push(e);
    }
    if errors.is_empty() {
        return Ok(config);
    }
    let locator = Locator::new(text);
    for e in &mut errors {
        if e.line.is_none() {
            e.line = locator.line(&e.path);
        }
    }
    // In file order, so a user can fix them top to bottom; unplaceable ones last.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Err(ConfigErrors(errors))
}

/// Rewrites `probe[i]` (position among the entries that deserialized) to the entry's position
/// in the file.
fn renumber(path: &str, kept: &HashMap<&'static str, Vec<usize>>) -> String {
    for (section, idx) in kept {
        let Some(rest) = path.strip_prefix(section).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some((n, tail)) = rest.split_once(']') else {
            continue;
        };
        if let Some(orig) = n.parse::<usize>().ok().and_then(|i| idx.get(i)) {
            return format!("{section}[{orig}]{tail}");
        }
    }
    path.to_string()
}

/// Deserializes an array of tables entry by entry (`[[probe]]`), collecting every failure.
/// Returns the entries that deserialized and their positions in the file.
fn entries<T: DeserializeOwned>(
    v: Value,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> (Vec<T>, Vec<usize>) {
    let items = match v {
        Value::Array(items) => items,
        // The config crate turns an environment-only section into a map; a lone table is a
        // user writing `[probe]` for `[[probe]]`.
        _ => {
            errors.push(ConfigError {
                path: name.to_string(),
                message: format!("must be an array of tables: write [[{name}]]"),
                line: None,
            });
            return (Vec::new(), Vec::new());
        }
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| typed(item, &format!("{name}[{i}]"), errors).map(|t| (t, i)))
        .unzip()
}

/// Reads the `[[probe]]` entries, each through [`ProbeConfig::from_value`] so that every
/// problem of an entry (shared fields and kind table) is reported at once.
fn probe_entries(v: Value, errors: &mut Vec<ConfigError>) -> (Vec<ProbeConfig>, Vec<usize>) {
    let Value::Array(items) = v else {
        errors.push(ConfigError {
            path: "probe".into(),
            message: "must be an array of tables: write [[probe]]".into(),
            line: None,
        });
        return (Vec::new(), Vec::new());
    };
    let mut out = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        match ProbeConfig::from_value(item) {
            Ok(p) => {
                out.0.push(p);
                out.1.push(i);
            }
            Err(errs) => errors.extend(errs.into_iter().map(|e| ConfigError {
                path: if e.path.is_empty() {
                    format!("probe[{i}]")
                } else {
                    format!("probe[{i}].{}", e.path)
                },
                message: e.message,
                line: None,
            })),
        }
    }
    out
}

/// Deserializes one value, recording the failure with the path of the offending field.
fn typed<T: DeserializeOwned>(v: Value, prefix: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{inner}")
            };
            errors.push(ConfigError {
                path,
                message: e.into_inner().to_string(),
                line: None,
            });
            None
        }
    }
}

type IndexedOverride = (String, Vec<String>, String);

/// Splits `PLIMSOLL__…` variables into those the config crate can merge and those that address
/// an array entry by index (`PLIMSOLL__PROBE__0__LOAD__CONCURRENCY`), which the config crate
/// would turn into a map and so lose the rest of the array; those are applied here instead.
fn split_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> (HashMap<String, String>, Vec<IndexedOverride>) {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let mut plain = HashMap::new();
    let mut indexed = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        let path: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(|s| s.to_lowercase())
            .collect();
        if path.iter().any(|s| s.parse::<usize>().is_ok()) {
            indexed.push((k, path, v));
        } else {
            plain.insert(k, v);
        }
    }
    indexed.sort();
    (plain, indexed)
}

fn apply_indexed(root: &mut Value, path: &[String], raw: &str) -> Result<(), String> {
    let mut node = root;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        node = match node {
            Value::Array(items) => {
                let idx: usize = seg
                    .parse()
                    .map_err(|_| format!("`{seg}` must be an index into the array"))?;
                let n = items.len();
                items
                    .get_mut(idx)
                    .ok_or_else(|| format!("index {idx} is out of range ({n} entries)"))?
            }
            Value::Object(map) => {
                if last {
                    map.insert(seg.clone(), parse_env_value(raw));
                    return Ok(());
                }
                map.entry(seg.clone())
                    .or_insert_with(|| Value::Object(Default::default()))
            }
            _ => return Err(format!("cannot descend into `{seg}`: not a table or array")),
        };
        if last {
            *node = parse_env_value(raw);
        }
    }
    Ok(())
}

/// Environment values are strings; numbers and booleans are recognised as the config crate does.
fn parse_env_value(raw: &str) -> Value {
    if let Ok(b) = raw.parse::<bool>() {
        Value::Bool(b)
    } else if let Ok(i) = raw.parse::<i64>() {
        Value::from(i)
    } else if let Ok(f) = raw.parse::<f64>() {
        Value::from(f)
    } else {
        Value::String(raw.to_string())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line of a path such as `probe[2].load.phases[0].rate` in the TOML text. When the
/// exact key is absent (a missing field), the line of the nearest enclosing table is given.
struct Locator<'t> {
    text: &'t str,
    doc: Option<toml::Spanned<toml::de::DeTable<'t>>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        Locator {
            text,
            doc: toml::de::DeTable::parse(text).ok(),
        }
    }

    fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut table = doc.get_ref();
        let mut array: Option<&toml::de::DeArray<'t>> = None;
        let mut best: Option<usize> = None;
        for seg in split_path(path) {
            let found = match (seg, array) {
                (Seg::Index(i), Some(a)) => a.get(i),
                (Seg::Key(k), None) => table
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == k)
                    .map(|(_, v)| v),
                _ => None,
            };
            let Some(v) = found else { break };
            best = Some(v.span().start);
            array = None;
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                toml::de::DeValue::Array(a) => array = Some(a),
                _ => {}
            }
        }
        best.map(|o| line_of(self.text, o))
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

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

use super::limits::MAX_CONFIG_BYTES;
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

/// Reads, overrides from the process environment, and validates a configuration file. A
/// relative data file path (`[probe.load.data] file`) is taken from the file's directory.
///
/// The file is read up to [`MAX_CONFIG_BYTES`]: `--config /dev/zero` is refused after 10 MiB
/// instead of exhausting memory.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_bounded(path, MAX_CONFIG_BYTES)
        .map_err(|e| ConfigErrors::single(format!("cannot read {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    load_str_in(&text, std::env::vars(), Some(dir))
}

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("larger than {max} bytes (is it the right file?)")]
    TooLarge { max: u64 },
    #[error("not UTF-8 text")]
    NotText,
}

/// Reads a text file of at most `max` bytes. Never reads more than `max + 1` bytes, so an
/// endless file (`/dev/zero`, a pipe) costs bounded memory and time.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge { max });
    }
    String::from_utf8(buf).map_err(|_| ReadError::NotText)
}

/// Like [`load_file`], checking structure only: `env:` and `file:` secrets are not resolved
/// (nor their values checked), for a CI lint on a machine without the secrets.
pub fn load_file_without_secrets(path: &Path) -> Result<Config, ConfigErrors> {
    super::secret::without_secrets(|| load_file(path))
}

/// Same as [`load_file`] on text and an explicit environment (tests pass their own); relative
/// data file paths are taken from the working directory.
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    load_str_in(text, env, None)
}

/// Takes relative data file paths from `dir` (the configuration file's directory).
fn rebase_data_files(config: &mut Config, dir: &Path) {
    for p in &mut config.probe {
        let load = match &mut p.spec {
            super::ProbeSpec::Load(l) => l,
            super::ProbeSpec::Fault(f) => &mut f.load,
            _ => continue,
        };
        if let Some(d) = &mut load.data {
            if d.file.is_relative() {
                d.file = dir.join(&d.file);
            }
        }
    }
}

fn load_str_in(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    base: Option<&Path>,
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

    let env: Vec<(String, String)> = env.into_iter().collect();
    // A NaN or an infinity cannot travel through the merge (it turns into "no value" and then
    // into a misleading "missing" message), so non-finite numbers are refused here, by path.
    let non_finite = non_finite_numbers(text, &env);
    if !non_finite.is_empty() {
        let locator = Locator::new(text);
        return Err(ConfigErrors(
            non_finite
                .into_iter()
                .map(|(path, from)| ConfigError {
                    line: locator.line(&path),
                    path,
                    message: match from {
                        Some(var) => format!("must be a finite number (set by {var})"),
                        None => "must be a finite number".into(),
                    },
                })
                .collect(),
        ));
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
            "limits" => {
                if let Some(l) = typed(v, "limits", &mut errors) {
                    config.limits = l;
                }
            }
            "guardrails" => {
                if let Some(g) = typed(v, "guardrails", &mut errors) {
                    config.guardrails = g;
                }
            }
            "baseline" => {
                if let Some(b) = typed(v, "baseline", &mut errors) {
                    config.baseline = b;
                }
            }
            other => errors.push(ConfigError {
                path: other.to_string(),
                message: "unknown section, expected one of `target`, `probe`, `report`, `daemon`, \
                     `otlp`, `limits`, `guardrails`, `baseline`"
                    .into(),
                line: None,
            }),
        }
    }

    if let Some(dir) = base {
        rebase_data_files(&mut config, dir);
    }
    // Validation only makes sense on what deserialized; its findings add to the type errors.
    let mut problems = Problems::default();
    config.validate(&mut problems);
    for mut e in problems.into_errors() {
        if e.message == super::secret::NOT_RESOLVED {
            continue;
        }
        e.path = renumber(&e.path, &kept);
        errors.push(e);
    }
    for e in &mut errors {
        e.message = for_people(&e.message);
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

/// Deserializes one value, recording every unknown field and wrong type in it, each with the
/// path of the offending field.
fn typed<T: DeserializeOwned>(v: Value, prefix: &str, errors: &mut Vec<ConfigError>) -> Option<T> {
    match super::every_error::deserialize_all::<T>(v) {
        Ok(t) => Some(t),
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| ConfigError {
                path: if e.path.is_empty() {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{}", e.path)
                },
                message: e.message,
                line: None,
            }));
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

/// Paths of the NaNs and infinities in the file and in `PLIMSOLL__…` overrides, with the
/// variable that set each one from the environment.
fn non_finite_numbers(text: &str, env: &[(String, String)]) -> Vec<(String, Option<String>)> {
    fn walk(v: &toml::Value, path: String, out: &mut Vec<(String, Option<String>)>) {
        match v {
            toml::Value::Float(f) if !f.is_finite() => out.push((path, None)),
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, p, out);
                }
            }
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(t) = toml::from_str::<toml::Table>(text) {
        walk(&toml::Value::Table(t), String::new(), &mut out);
    }
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        if v.trim().parse::<f64>().is_ok_and(|f| !f.is_finite()) {
            let mut path = String::new();
            for seg in rest.split(ENV_SEPARATOR).map(|s| s.to_lowercase()) {
                if seg.parse::<usize>().is_ok() {
                    path.push_str(&format!("[{seg}]"));
                } else {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&seg);
                }
            }
            out.push((path, Some(k.clone())));
        }
    }
    out
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

/// Rewords serde's messages for people: an unknown field gets the nearest known name
/// ("did you mean"), a type error says what was expected in words.
fn for_people(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, tail)) = rest.split_once('`') {
            let known: Vec<&str> = tail
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| !k.is_empty())
                .collect();
            let nearest = known
                .iter()
                .map(|k| (edit_distance(field, k), *k))
                .filter(|(d, k)| *d <= 2.max(k.len() / 3))
                .min();
            return match nearest {
                Some((_, k)) => format!("unknown field `{field}`: did you mean `{k}`?"),
                None if !known.is_empty() => format!(
                    "unknown field `{field}`; known fields: {}",
                    known.join(", ")
                ),
                None => format!("unknown field `{field}`"),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "expected {}, found {}",
                expected_in_words(expected),
                found_in_words(found)
            );
        }
    }
    message.to_string()
}

fn expected_in_words(e: &str) -> String {
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "text in quotes".into(),
        "a sequence" => "a list in [brackets]".into(),
        "a map" => "a table".into(),
        other if other.starts_with("struct ") => "a table".into(),
        other => other.to_string(),
    }
}

fn found_in_words(f: &str) -> String {
    if let Some(s) = f.strip_prefix("string ") {
        format!("the text {s}")
    } else if let Some(n) = f
        .strip_prefix("integer ")
        .or_else(|| f.strip_prefix("floating point "))
    {
        format!("the number {n}")
    } else if let Some(b) = f.strip_prefix("boolean ") {
        b.trim_matches('`').to_string()
    } else if f == "sequence" {
        "a list".into()
    } else if f == "map" {
        "a table".into()
    } else {
        f.to_string()
    }
}

/// Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod people_tests {
    use super::*;

    #[test]
    fn unknown_fields_get_the_nearest_name_and_types_read_as_words() {
        let m = "unknown field `concurency`, expected one of `phases`, `concurrency`, `level`";
        assert_eq!(
            for_people(m),
            "unknown field `concurency`: did you mean `concurrency`?"
        );
        let m = "unknown field `zzz`, expected `a` or `b`";
        assert_eq!(for_people(m), "unknown field `zzz`; known fields: a, b");
        assert_eq!(
            for_people("invalid type: string \"ten\", expected u32"),
            "expected a whole number of 0 or more, found the text \"ten\""
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn structure_only_skips_secrets_and_data_files_follow_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/users.csv"), "email\na@b\n").unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            r#"
[daemon]
bearer_token = "env:PLIMSOLL_TEST_NEVER_SET_TOKEN"

[[probe]]
name = "p"
kind = "load"
[probe.load]
concurrency = 1
[probe.load.data]
file = "data/users.csv"
[probe.load.request]
url = "http://127.0.0.1:9/{{email}}"
"#,
        )
        .unwrap();
        let err = load_file(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("PLIMSOLL_TEST_NEVER_SET_TOKEN is not set"),
            "{err}"
        );
        assert!(!err.contains("data.file"), "{err}");
        let c = load_file_without_secrets(&cfg).unwrap();
        match &c.probe[0].spec {
            crate::config::ProbeSpec::Load(l) => {
                assert_eq!(
                    l.data.as_ref().unwrap().file,
                    dir.path().join("data/users.csv")
                )
            }
            _ => unreachable!(),
        }
    }
}

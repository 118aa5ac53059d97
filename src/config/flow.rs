//! Configuration of flows: weighted scenarios of steps with captures, expectations,
//! conditions, loops and think time, and the data file whose rows feed their variables.
//!
//! Only reads and checks; the engine compiles a validated flow (`engine::flow`). Variables are
//! checked in order: a step may use what a declared generator, the data file, a built-in or
//! an *earlier* step's capture provides, so a typo or a capture used too early is reported at
//! load time with its exact path instead of sending `{{call_id}}` literally.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::request::RequestConfig;
use super::{HumanDuration, Problems};

/// One scenario: a named list of steps, picked per iteration in proportion to its weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Name of the scenario, for logs and the reference; endpoints are labelled by step.
    #[serde(default)]
    pub name: Option<String>,
    /// Relative weight: a scenario of weight 3 runs three times as often as one of weight 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The steps, run in order by one virtual user.
    pub steps: Vec<FlowStepConfig>,
}

fn default_weight() -> u32 {
    1
}

/// One step of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowStepConfig {
    /// The `endpoint` label. Default: the URL path, query stripped, ids collapsed to `{id}`.
    #[serde(default)]
    pub name: Option<String>,
    /// The request (same fields as `[probe.load.request]`).
    pub request: RequestConfig,
    /// Values taken from the response into variables for later steps.
    #[serde(default)]
    pub capture: Vec<CaptureConfig>,
    /// What the response must show; a failure is an `expect` error and ends the iteration.
    #[serde(default)]
    pub expect: Option<ExpectConfig>,
    /// Pause after the step (after each repetition of a loop).
    #[serde(default)]
    pub think: Option<HumanDuration>,
    /// Run the step only when this variable is set (non-empty).
    #[serde(default, rename = "if")]
    pub when: Option<String>,
    /// Send the step this many times in a row.
    #[serde(default = "default_loop", rename = "loop")]
    pub repeat: u32,
}

fn default_loop() -> u32 {
    1
}

/// Where a captured value comes from: exactly one of `json`, `header`, `regex`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// A JSON pointer into the response body (`/id`, `/items/0/name`).
    #[serde(default)]
    pub json: Option<String>,
    /// A response header name (case-insensitive).
    #[serde(default)]
    pub header: Option<String>,
    /// A regular expression over the body; its first group (or the whole match) is taken.
    #[serde(default)]
    pub regex: Option<String>,
    /// The variable the value goes into (`{{as}}` in later steps).
    #[serde(rename = "as")]
    pub var: String,
}

/// What a response must show. Every rule given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectConfig {
    /// Statuses that count as success (replaces the default "below 400"); a miss is a
    /// `status` error, like `expect_status` of a plain request.
    #[serde(default)]
    pub status: Option<Vec<u16>>,
    /// JSON values the body must hold.
    #[serde(default)]
    pub json: Vec<JsonExpectConfig>,
    /// Text the body must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// Headers the response must carry (one name or a list).
    #[serde(default)]
    pub header: Option<OneOrMany>,
}

/// A header name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A JSON rule: the value at `pointer` exists and, with `equals`, equals it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonExpectConfig {
    /// JSON pointer into the body.
    pub pointer: String,
    /// The value expected there; without it the value only has to exist.
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
}

/// A data file whose rows feed variables: each iteration takes one row.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// CSV with a header row (`.csv`), or a JSON array of objects (`.json`). A relative path
    /// is taken from the configuration file's directory.
    pub file: PathBuf,
    /// `sequential` (rows in file order, wrapping around, shared by all users) or `random`.
    #[serde(default)]
    pub order: DataOrder,
}

/// How iterations take rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataOrder {
    #[default]
    Sequential,
    Random,
}

/// Rows of a data file: column names and, per row, one value per column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl DataConfig {
    /// Reads and parses the file, up to the hard bound of `[limits] data_file_bytes` (the
    /// configured ceiling is checked at validation, with [`read_limited`](Self::read_limited)).
    pub fn read(&self) -> Result<DataRows, String> {
        self.read_limited(super::limits::HARD_MAX_DATA_FILE_BYTES)
    }

    /// Reads and parses the file if it holds at most `max` bytes.
    pub fn read_limited(&self, max: u64) -> Result<DataRows, String> {
        let text = super::read::read_bounded(&self.file, max).map_err(|e| match e {
            super::read::ReadError::TooLarge { max } => format!(
                "{} is larger than {max} bytes (raise `[limits] data_file_bytes` to allow more)",
                self.file.display()
            ),
            e => format!("cannot read {}: {e}", self.file.display()),
        })?;
        let rows = if is_json(&self.file) {
            parse_json_rows(&text)?
        } else {
            parse_csv(&text)?
        };
        if rows.rows.is_empty() {
            return Err(format!("{} has no data rows", self.file.display()));
        }
        Ok(rows)
    }
}

fn is_json(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Parses CSV (RFC 4180: quoted fields, `""` escapes, CRLF or LF) with a header row.
pub fn parse_csv(text: &str) -> Result<DataRows, String> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    // Whether the current line has anything at all: a line with nothing is no row, while a
    // line holding `""` is a row with one empty field.
    let mut seen = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                seen = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                seen = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if seen {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                seen = false;
            }
            _ => {
                field.push(c);
                seen = true;
            }
        }
    }
    if quoted {
        return Err("a quoted CSV field is not closed".into());
    }
    if seen {
        record.push(field);
        records.push(record);
    }
    let mut it = records.into_iter();
    let columns: Vec<String> = it
        .next()
        .ok_or("the CSV file is empty: it needs a header row")?
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, r) in it.enumerate() {
        if r.len() != columns.len() {
            return Err(format!(
                "CSV row {} has {} fields, the header has {}",
                i + 2,
                r.len(),
                columns.len()
            ));
        }
        rows.push(r);
    }
    Ok(DataRows { columns, rows })
}

/// Parses a JSON array of flat objects; non-string values become their JSON text.
pub fn parse_json_rows(text: &str) -> Result<DataRows, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = v
        .as_array()
        .ok_or("the JSON data must be an array of objects")?;
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        let o = item
            .as_object()
            .ok_or("the JSON data must be an array of objects")?;
        for k in o.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let rows = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| match item.get(c) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    Ok(DataRows { columns, rows })
}

/// Checks the scenarios of a load; `known` holds the names usable before any capture
/// (declared generators and data columns).
pub fn validate_scenarios(
    scenarios: &mut [ScenarioConfig],
    path: &str,
    known: &[String],
    problems: &mut Problems,
) {
    for (i, sc) in scenarios.iter_mut().enumerate() {
        let sp = format!("{path}.scenarios[{i}]");
        if sc.weight == 0 {
            problems.push(format!("{sp}.weight"), "must be greater than 0");
        }
        if sc.steps.is_empty() {
            problems.push(format!("{sp}.steps"), "must list at least one step");
        }
        let mut vars = known.to_vec();
        for (j, st) in sc.steps.iter_mut().enumerate() {
            let p = format!("{sp}.steps[{j}]");
            st.validate(&p, &vars, problems);
            for c in &st.capture {
                if !vars.contains(&c.var) {
                    vars.push(c.var.clone());
                }
            }
        }
    }
}

impl FlowStepConfig {
    fn validate(&mut self, p: &str, vars: &[String], problems: &mut Problems) {
        if self.name.is_some() && self.request.name.is_some() {
            problems.push(
                format!("{p}.request.name"),
                "the step already has a `name`; keep one",
            );
        }
        if self.repeat == 0 {
            problems.push(format!("{p}.loop"), "must be greater than 0");
        }
        if let Some(w) = &self.when {
            if !vars.contains(w) {
                problems.push(format!("{p}.if"), unknown_var(w));
            }
        }
        let status = self.expect.as_ref().and_then(|e| e.status.clone());
        if status.is_some() && self.request.expect_status.is_some() {
            problems.push(
                format!("{p}.expect.status"),
                "the request already has `expect_status`; keep one",
            );
        }
        // The request's own checks name unknown placeholders with the generators' wording;
        // captures of earlier steps and data columns count as declared.
        self.request
            .validate(&format!("{p}.request"), vars, problems);
        if let Some(codes) = &status {
            if codes.is_empty() {
                problems.push(
                    format!("{p}.expect.status"),
                    "must list at least one status",
                );
            }
            for c in codes.iter().filter(|c| !(100..=599).contains(*c)) {
                problems.push(
                    format!("{p}.expect.status"),
                    format!("{c} is not an HTTP status"),
                );
            }
        }
        for (k, c) in self.capture.iter().enumerate() {
            let cp = format!("{p}.capture[{k}]");
            let sources = [&c.json, &c.header, &c.regex];
            if sources.iter().filter(|s| s.is_some()).count() != 1 {
                problems.push(&cp, "give exactly one of `json`, `header`, `regex`");
            }
            if let Some(j) = &c.json {
                check_pointer(j, &format!("{cp}.json"), problems);
            }
            if let Some(h) = &c.header {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    problems.push(
                        format!("{cp}.header"),
                        format!("{h:?} is not a header name"),
                    );
                }
            }
            if let Some(r) = &c.regex {
                if let Err(e) = regex_lite::Regex::new(r) {
                    problems.push(format!("{cp}.regex"), format!("invalid regex: {e}"));
                }
            }
            let valid_name = !c.var.is_empty()
                && c.var
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.');
            if !valid_name {
                problems.push(
                    format!("{cp}.as"),
                    "must be a variable name (letters, digits, `_`, `-`, `.`)",
                );
            }
        }
        if let Some(e) = &self.expect {
            for (k, j) in e.json.iter().enumerate() {
                check_pointer(
                    &j.pointer,
                    &format!("{p}.expect.json[{k}].pointer"),
                    problems,
                );
            }
            if let Some(h) = &e.header {
                for name in h.items() {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        problems.push(
                            format!("{p}.expect.header"),
                            format!("{name:?} is not a header name"),
                        );
                    }
                }
            }
        }
    }
}

fn unknown_var(name: &str) -> String {
    format!(
        "unknown variable {name:?}: declare it under `vars`, give it a data column, or capture it in an earlier step"
    )
}

fn check_pointer(ptr: &str, path: &str, problems: &mut Problems) {
    if !ptr.is_empty() && !ptr.starts_with('/') {
        problems.push(
            path,
            "must start with \"/\" (a JSON pointer such as \"/id\")",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_crlf_and_blank_lines() {
        let d = parse_csv("name,phone\r\n\"Doe, Jane\",\"+1 \"\"5\"\"\"\r\n\nbob,2\n,\n").unwrap();
        assert_eq!(d.columns, ["name", "phone"]);
        assert_eq!(d.rows, [["Doe, Jane", "+1 \"5\""], ["bob", "2"], ["", ""]]);
        let one = parse_csv("t\nx\n\n\"\"\ny").unwrap();
        assert_eq!(one.rows, [["x"], [""], ["y"]]);
        assert!(parse_csv("a,b\n1\n").unwrap_err().contains("row 2"));
        assert!(parse_csv("a\n\"x\n").unwrap_err().contains("not closed"));
        assert!(parse_csv("").is_err());
    }

    #[test]
    fn json_rows_fill_missing_columns() {
        let d = parse_json_rows(r#"[{"a":"x","n":3},{"b":true}]"#).unwrap();
        assert_eq!(d.columns, ["a", "n", "b"]);
        assert_eq!(d.rows, [["x", "3", ""], ["", "", "true"]]);
        assert!(parse_json_rows("{}").is_err());
    }
}

//! Flows, compiled: weighted scenarios of steps that capture values from responses into
//! variables and check what responses show, plus the data file whose rows feed variables.
//!
//! Everything here is decided once per run (which step keeps which part of the response,
//! which slot a capture writes); the worker only asks a step to [`inspect`](FlowStep::inspect)
//! what it kept. Plain loads never reach this module, so they keep their allocation-free path:
//! only a flow step that captures or checks keeps its response body or head.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::choice::WeightedChoice;
use super::http::Endpoint;
use super::step::PreparedStep;
use super::template::Generators;
use crate::config::{
    CaptureConfig, DataConfig, DataOrder, ExpectConfig, LoadConfig, ScenarioConfig, TargetConfig,
};

/// The compiled scenarios of a load.
#[derive(Debug)]
pub struct Flow {
    pub scenarios: Vec<Scenario>,
    /// The weights of the scenarios, in order.
    choice: WeightedChoice,
}

/// One scenario: its steps, each pointing at a prepared request of the load.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub steps: Vec<FlowStep>,
}

/// One step of a scenario.
#[derive(Debug)]
pub struct FlowStep {
    /// Index of the prepared request in the load's steps (and of its `endpoint` record).
    pub step: usize,
    /// Run only when this slot holds a non-empty value.
    pub when: Option<usize>,
    pub repeat: u32,
    pub think: Duration,
    captures: Vec<Capture>,
    checks: Vec<Check>,
    /// Whether the response body / head must be kept for the captures and checks.
    pub keep_body: bool,
    pub keep_head: bool,
}

#[derive(Debug)]
struct Capture {
    source: Source,
    slot: usize,
}

#[derive(Debug)]
enum Source {
    Json(String),
    Header(String),
    Regex(regex_lite::Regex),
}

#[derive(Debug)]
enum Check {
    Json {
        pointer: String,
        equals: Option<serde_json::Value>,
    },
    Contains(String),
    Header(String),
}

/// What a flow step kept of its response; buffers reused by the virtual user.
#[derive(Debug, Default)]
pub struct Kept {
    pub body: Vec<u8>,
    pub head: Vec<u8>,
}

impl Flow {
    /// Compiles validated scenarios: their requests join `steps` (and `endpoints`), their
    /// captures get slots in `gens`. Slots are made before any template is compiled, so a
    /// template naming a capture reads that slot.
    pub fn compile(
        load: &LoadConfig,
        target: Option<&TargetConfig>,
        endpoints: &mut Vec<Endpoint>,
        gens: &mut Generators,
        steps: &mut Vec<PreparedStep>,
    ) -> Result<Flow, String> {
        for c in load
            .scenarios
            .iter()
            .flat_map(|s| &s.steps)
            .flat_map(|s| &s.capture)
        {
            gens.slot(&c.var);
        }
        let mut scenarios = Vec::new();
        let mut weights = Vec::new();
        for (i, sc) in load.scenarios.iter().enumerate() {
            weights.push(u64::from(sc.weight));
            scenarios.push(compile_scenario(i, sc, target, endpoints, gens, steps)?);
        }
        let choice = WeightedChoice::new(&weights)
            .ok_or_else(|| "every scenario has weight 0: nothing could run".to_string())?;
        Ok(Flow { scenarios, choice })
    }

    /// A scenario drawn in proportion to the weights.
    pub fn choose(&self) -> &Scenario {
        &self.scenarios[self.choice.pick_global()]
    }
}

fn compile_scenario(
    i: usize,
    sc: &ScenarioConfig,
    target: Option<&TargetConfig>,
    endpoints: &mut Vec<Endpoint>,
    gens: &mut Generators,
    steps: &mut Vec<PreparedStep>,
) -> Result<Scenario, String> {
    let mut out = Vec::new();
    for st in &sc.steps {
        let mut req = st.request.clone();
        req.name = Some(
            st.name
                .clone()
                .or_else(|| req.name.clone())
                .unwrap_or_else(|| endpoint_label(&req.url)),
        );
        if let Some(codes) = st.expect.as_ref().and_then(|e| e.status.clone()) {
            req.expect_status = Some(codes);
        }
        steps.push(PreparedStep::compile(&req, target, endpoints, gens)?);
        let captures = st
            .capture
            .iter()
            .map(|c| compile_capture(c, gens))
            .collect::<Result<Vec<_>, _>>()?;
        let checks = st.expect.as_ref().map(compile_checks).unwrap_or_default();
        let keep_head = captures
            .iter()
            .any(|c| matches!(c.source, Source::Header(_)))
            || checks.iter().any(|c| matches!(c, Check::Header(_)));
        let keep_body = captures
            .iter()
            .any(|c| !matches!(c.source, Source::Header(_)))
            || checks.iter().any(|c| !matches!(c, Check::Header(_)));
        out.push(FlowStep {
            step: steps.len() - 1,
            when: st.when.as_ref().map(|w| gens.slot(w)),
            repeat: st.repeat.max(1),
            think: st.think.map(|t| t.as_duration()).unwrap_or_default(),
            captures,
            checks,
            keep_body,
            keep_head,
        });
    }
    Ok(Scenario {
        name: sc.name.clone().unwrap_or_else(|| format!("scenario-{i}")),
        steps: out,
    })
}

fn compile_capture(c: &CaptureConfig, gens: &mut Generators) -> Result<Capture, String> {
    let source = match (&c.json, &c.header, &c.regex) {
        (Some(j), _, _) => Source::Json(j.clone()),
        (_, Some(h), _) => Source::Header(h.clone()),
        (_, _, Some(r)) => {
            Source::Regex(regex_lite::Regex::new(r).map_err(|e| format!("regex {r:?}: {e}"))?)
        }
        _ => return Err(format!("capture {:?} has no source", c.var)),
    };
    Ok(Capture {
        source,
        slot: gens.slot(&c.var),
    })
}

fn compile_checks(e: &ExpectConfig) -> Vec<Check> {
    let mut out: Vec<Check> = e
        .json
        .iter()
        .map(|j| Check::Json {
            pointer: j.pointer.clone(),
            equals: j.equals.clone(),
        })
        .collect();
    if let Some(c) = &e.contains {
        out.push(Check::Contains(c.clone()));
    }
    if let Some(h) = &e.header {
        out.extend(h.items().iter().map(|n| Check::Header(n.clone())));
    }
    out
}

impl FlowStep {
    /// Checks the kept response against the step's expectations, then captures its values
    /// into `values`. The error says what was expected and what came.
    pub fn inspect(&self, kept: &Kept, values: &mut [String]) -> Result<(), String> {
        // Parsed at most once, and only when a rule reads JSON.
        let mut json: Option<Result<serde_json::Value, String>> = None;
        for c in &self.checks {
            match c {
                Check::Json { pointer, equals } => {
                    let doc = parsed(&mut json, &kept.body)?;
                    match (doc.pointer(pointer), equals) {
                        (None, _) => {
                            return Err(format!(
                                "expected a value at {pointer}, the body has none: {}",
                                excerpt(&kept.body)
                            ))
                        }
                        (Some(v), Some(want)) if !json_equal(v, want) => {
                            return Err(format!("expected {pointer} = {want}, got {v}"))
                        }
                        _ => {}
                    }
                }
                Check::Contains(text) => {
                    let body = String::from_utf8_lossy(&kept.body);
                    if !body.contains(text.as_str()) {
                        return Err(format!(
                            "expected the body to contain {text:?}, got {}",
                            excerpt(&kept.body)
                        ));
                    }
                }
                Check::Header(name) => {
                    if header(&kept.head, name).is_none() {
                        return Err(format!("expected a {name} header, the response has none"));
                    }
                }
            }
        }
        for c in &self.captures {
            let value = match &c.source {
                Source::Json(pointer) => {
                    let doc = parsed(&mut json, &kept.body)?;
                    match doc.pointer(pointer) {
                        None | Some(serde_json::Value::Null) => {
                            return Err(format!(
                                "capture json {pointer}: nothing there in {}",
                                excerpt(&kept.body)
                            ))
                        }
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    }
                }
                Source::Header(name) => match header(&kept.head, name) {
                    Some(v) => v.to_string(),
                    None => {
                        return Err(format!(
                            "capture header {name}: the response has no such header"
                        ))
                    }
                },
                Source::Regex(re) => {
                    let body = String::from_utf8_lossy(&kept.body);
                    let found = re
                        .captures(&body)
                        .and_then(|m| m.get(1).or_else(|| m.get(0)))
                        .map(|m| m.as_str().to_string());
                    match found {
                        Some(v) => v,
                        None => {
                            return Err(format!(
                                "capture regex {}: no match in {}",
                                re.as_str(),
                                excerpt(&kept.body)
                            ))
                        }
                    }
                }
            };
            values[c.slot] = value;
        }
        Ok(())
    }
}

fn parsed<'a>(
    cache: &'a mut Option<Result<serde_json::Value, String>>,
    body: &[u8],
) -> Result<&'a serde_json::Value, String> {
    cache
        .get_or_insert_with(|| {
            serde_json::from_slice(body)
                .map_err(|e| format!("the body is not JSON ({e}): {}", excerpt(body)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The first 120 characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    if body.len() > 120 {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

/// The value of a header in a kept response head (status line first, CRLF lines).
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The `endpoint` label of an unnamed step: its URL's path, without the query, with ids
/// (numbers, UUIDs, long hex strings, `{{placeholders}}`) collapsed to `{id}` so that the
/// label stays one series however many resources a run touches.
pub fn endpoint_label(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|r| &r[r.find('/').unwrap_or(r.len())..])
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| if is_id(s) { "{id}" } else { s })
        .collect();
    let joined = segments.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

fn is_id(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.contains("{{") || s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid =
        s.len() == 36 && s.split('-').map(str::len).eq([8, 4, 4, 4, 12]) && s.split('-').all(hex);
    uuid || (s.len() >= 8 && hex(s) && s.bytes().any(|b| b.is_ascii_digit()))
}

/// The rows of a data file and the slots their columns fill.
#[derive(Debug)]
pub struct DataSet {
    slots: Vec<usize>,
    rows: Vec<Vec<String>>,
    order: DataOrder,
    /// Next row in sequential order, shared by every worker of the run.
    next: AtomicU64,
}

impl DataSet {
    /// Reads the file and gives each column a slot.
    pub fn load(cfg: &DataConfig, gens: &mut Generators) -> Result<DataSet, String> {
        let d = cfg.read()?;
        Ok(DataSet {
            slots: d.columns.iter().map(|c| gens.slot(c)).collect(),
            rows: d.rows,
            order: cfg.order,
            next: AtomicU64::new(0),
        })
    }

    /// Writes the next row's values into their slots (a new iteration).
    pub fn fill(&self, values: &mut [String]) {
        let n = self.rows.len() as u64;
        let i = match self.order {
            DataOrder::Sequential => self.next.fetch_add(1, Ordering::Relaxed) % n,
            DataOrder::Random => fastrand::u64(..n),
        };
        for (slot, v) in self.slots.iter().zip(&self.rows[i as usize]) {
            values[*slot].clone_from(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(cfg: serde_json::Value, gens: &mut Generators) -> FlowStep {
        let st: crate::config::FlowStepConfig = serde_json::from_value(cfg).unwrap();
        let (mut steps, mut eps) = (Vec::new(), Vec::new());
        let sc = ScenarioConfig {
            name: None,
            weight: 1,
            steps: vec![st],
        };
        for c in &sc.steps[0].capture {
            gens.slot(&c.var);
        }
        compile_scenario(0, &sc, None, &mut eps, gens, &mut steps)
            .unwrap()
            .steps
            .remove(0)
    }

    fn kept(head: &str, body: &str) -> Kept {
        Kept {
            head: head.as_bytes().to_vec(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn captures_by_pointer_header_and_regex() {
        let mut g = Generators::default();
        let s = step(
            serde_json::json!({
                "request": {"url": "http://127.0.0.1:1/api/calls", "method": "POST"},
                "capture": [
                    {"json": "/id", "as": "id"},
                    {"json": "/n/0", "as": "n"},
                    {"header": "Location", "as": "loc"},
                    {"regex": "state\":\"(\\w+)", "as": "state"}
                ]
            }),
            &mut g,
        );
        assert!(s.keep_body && s.keep_head);
        let mut values = vec![String::new(); g.len()];
        let k = kept(
            "HTTP/1.1 201 Created\r\nlocation: /api/calls/7\r\n\r\n",
            r#"{"id":"7","n":[42],"state":"INITIATED"}"#,
        );
        s.inspect(&k, &mut values).unwrap();
        let at = |n: &str| values[g.position(n).unwrap()].clone();
        assert_eq!(
            (at("id"), at("n"), at("loc"), at("state")),
            (
                "7".into(),
                "42".into(),
                "/api/calls/7".into(),
                "INITIATED".into()
            )
        );
        let e = s
            .inspect(&kept("HTTP/1.1 201 X\r\n\r\n", r#"{"x":1}"#), &mut values)
            .unwrap_err();
        assert!(e.contains("capture json /id"), "{e}");
    }

    #[test]
    fn expectations_say_what_was_expected_and_what_came() {
        let mut g = Generators::default();
        let s = step(
            serde_json::json!({
                "request": {"url": "http://127.0.0.1:1/x"},
                "expect": {"json": [{"pointer": "/state", "equals": "RINGING"}, {"pointer": "/n", "equals": 1.0}],
                           "contains": "RING", "header": "content-type"}
            }),
            &mut g,
        );
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n";
        let mut v = Vec::new();
        s.inspect(&kept(head, r#"{"state":"RINGING","n":1}"#), &mut v)
            .unwrap();
        let e = s
            .inspect(&kept(head, r#"{"state":"ANSWERED","n":1}"#), &mut v)
            .unwrap_err();
        assert_eq!(e, r#"expected /state = "RINGING", got "ANSWERED""#);
        let e = s
            .inspect(
                &kept("HTTP/1.1 200 OK\r\n\r\n", r#"{"state":"RINGING","n":1}"#),
                &mut v,
            )
            .unwrap_err();
        assert!(e.contains("content-type header"), "{e}");
        let e = s.inspect(&kept(head, "oops"), &mut v).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn ids_collapse_in_labels() {
        assert_eq!(
            endpoint_label("/api/calls/{{call_id}}/ring"),
            "/api/calls/{id}/ring"
        );
        assert_eq!(
            endpoint_label("http://h:1/api/items/17?x=2"),
            "/api/items/{id}"
        );
        assert_eq!(
            endpoint_label("/u/3f2504e0-4f89-41d3-9a0c-0305e82c3301/x"),
            "/u/{id}/x"
        );
        assert_eq!(endpoint_label("/blob/deadbeef42"), "/blob/{id}");
        assert_eq!(endpoint_label("/api/health"), "/api/health");
        assert_eq!(endpoint_label("/feed/cafe"), "/feed/cafe");
        assert_eq!(endpoint_label("https://h"), "/");
    }
}

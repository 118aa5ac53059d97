//! Deserializing a table so that every unknown field and every wrong type in it is reported in
//! one pass, not only the first one serde stops at.
//!
//! serde stops at its first error. Rather than describe every schema a second time (and let the
//! two drift), the value is repaired and deserialized again: an unknown field is taken out, a
//! value of the wrong type is taken out or replaced by a stand-in of a type the field accepts,
//! and the next error comes up. The stand-ins never reach a configuration: a table with any
//! error is refused as a whole, so they only let serde walk on to the fields after the bad one.
//! A repair that does not move serde past the bad value ends the walk (what was found so far is
//! still reported). This module must not decide what a field means; it only repeats serde.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

/// Most problems reported for one table; a file with more is not worth a longer list.
const MAX_ERRORS: usize = 64;

/// A deserialization error with the path of the bad value, relative to the table read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// `load.phases[0].rate`; empty for the table itself.
    pub path: String,
    pub message: String,
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

struct Failure {
    steps: Option<Vec<Step>>,
    path: String,
    message: String,
}

fn attempt<T: DeserializeOwned>(v: &Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize::<_, T>(v.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let steps = e
            .path()
            .iter()
            .map(|s| match s {
                Segment::Seq { index } => Some(Step::Index(*index)),
                Segment::Map { key } => Some(Step::Key(key.clone())),
                // An enum variant or a place serde could not name: no repair can aim there.
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        Failure {
            steps,
            path: if inner == "." { String::new() } else { inner },
            message: e.into_inner().to_string(),
        }
    })
}

/// Deserializes `v`, returning every error found (each with its path), or the value.
pub fn deserialize_all<T: DeserializeOwned>(v: Value) -> Result<T, Vec<PathError>> {
    let mut v = v;
    let mut errors: Vec<PathError> = Vec::new();
    // Values taken out so far, with the message that had them taken out: a required one comes
    // back as "missing field" once serde reaches the end of its table, and then needs a
    // stand-in instead (the missing field is not the user's mistake).
    let mut removed: Vec<(Vec<Step>, String)> = Vec::new();
    let mut failure = match attempt::<T>(&v) {
        Ok(t) => return Ok(t),
        Err(f) => f,
    };
    loop {
        let steps = failure.steps.take().unwrap_or_default();
        let taken_out = failure
            .message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
            .and_then(|k| {
                let mut at = steps.clone();
                at.push(Step::Key(k.to_string()));
                removed.iter().find(|(s, _)| *s == at).cloned()
            });
        let next = match taken_out {
            Some((at, why)) => repair::<T>(&mut v, &at, &why, false),
            None => {
                errors.push(PathError {
                    path: failure.path.clone(),
                    message: failure.message.clone(),
                });
                if errors.len() >= MAX_ERRORS || steps.is_empty() {
                    return Err(errors);
                }
                let next = repair::<T>(&mut v, &steps, &failure.message, true);
                if get(&v, &steps).is_none() {
                    removed.push((steps, failure.message.clone()));
                }
                next
            }
        };
        match next {
            // Every error was in the values repaired away: the table is still refused.
            Some(Ok(_)) | None => return Err(errors),
            Some(Err(f)) => failure = f,
        }
    }
}

/// Takes out (when `may_remove`) or replaces the value at `steps` so that serde walks past it.
/// Returns the outcome of the next attempt, or `None` when no repair moved serde past it.
fn repair<T: DeserializeOwned>(
    v: &mut Value,
    steps: &[Step],
    message: &str,
    may_remove: bool,
) -> Option<Result<T, Failure>> {
    let (last, parent) = steps.split_last()?;
    let original = get(v, parent)?.clone();
    let mut tries: Vec<Option<Value>> = Vec::new();
    if may_remove && matches!(last, Step::Key(_)) {
        // Taking the value out: right for an unknown field and for an optional one.
        tries.push(None);
    }
    if !message.starts_with("unknown field") {
        tries.extend(stand_ins(message).into_iter().map(Some));
    }
    for t in tries {
        let mut node = original.clone();
        match (&mut node, last, t) {
            (Value::Object(m), Step::Key(k), None) => {
                m.remove(k);
            }
            (Value::Object(m), Step::Key(k), Some(s)) => {
                m.insert(k.clone(), s);
            }
            (Value::Array(a), Step::Index(i), Some(s)) if *i < a.len() => a[*i] = s,
            _ => continue,
        }
        *get_mut(v, parent)? = node;
        match attempt::<T>(v) {
            Ok(t) => return Some(Ok(t)),
            Err(f)
                if f.steps
                    .as_deref()
                    .is_some_and(|s| stuck(s, steps, &f.message)) => {}
            Err(f) => return Some(Err(f)),
        }
    }
    *get_mut(v, parent)? = original;
    None
}

/// Whether a new failure is still about the value just repaired: the same place, or the
/// missing field its removal left behind.
fn stuck(new: &[Step], repaired: &[Step], message: &str) -> bool {
    if new == repaired {
        return true;
    }
    let (Some((Step::Key(k), parent)), Some(rest)) = (
        repaired.split_last(),
        message.strip_prefix("missing field `"),
    ) else {
        return false;
    };
    new == parent && rest.strip_suffix('`') == Some(k.as_str())
}

/// Values of the usual types, to stand in for a value of the wrong type. An enum's first
/// variant, when serde names them, comes first.
fn stand_ins(message: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some((_, names)) = message.split_once("expected one of `") {
        if let Some((first, _)) = names.split_once('`') {
            out.push(Value::String(first.to_string()));
        }
    }
    out.extend([
        Value::from(1),
        Value::String("1s".into()),
        Value::Bool(false),
        Value::Array(Vec::new()),
        Value::Object(Default::default()),
    ]);
    out
}

fn get<'v>(v: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(v, |node, s| match (node, s) {
        (Value::Object(m), Step::Key(k)) => m.get(k),
        (Value::Array(a), Step::Index(i)) => a.get(*i),
        _ => None,
    })
}

fn get_mut<'v>(v: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(v, |node, s| match (node, s) {
        (Value::Object(m), Step::Key(k)) => m.get_mut(k),
        (Value::Array(a), Step::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Phase {
        rate: f64,
        #[serde(default)]
        label: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Plan {
        concurrency: u32,
        #[serde(default)]
        phases: Vec<Phase>,
        #[serde(default)]
        method: Option<Method>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Method {
        Get,
        Post,
    }

    fn paths(e: &[PathError]) -> Vec<&str> {
        e.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn every_unknown_field_and_wrong_type_comes_back() {
        let v = serde_json::json!({
            "concurency": 3,
            "concurrency": "three",
            "method": "gett",
            "phases": [{"rate": "ten", "lable": "a"}, {"rate": 5}, {"rate": true}],
            "tags": ["a", 7, "b"],
        });
        let e = deserialize_all::<Plan>(v).unwrap_err();
        let mut p = paths(&e);
        p.sort();
        assert_eq!(
            p,
            [
                "concurency",
                "concurrency",
                "method",
                "phases[0].lable",
                "phases[0].rate",
                "phases[2].rate",
                "tags[1]",
            ],
            "{e:?}"
        );
        assert!(e.iter().all(|e| !e.message.starts_with("missing field")));
    }

    #[test]
    fn a_clean_table_deserializes_and_a_missing_field_is_reported_once() {
        let v = serde_json::json!({"concurrency": 2, "phases": [{"rate": 1.5}]});
        let p = deserialize_all::<Plan>(v).unwrap();
        assert_eq!(p.concurrency, 2);
        let v = serde_json::json!({"phases": [{}], "colour": 1});
        let e = deserialize_all::<Plan>(v).unwrap_err();
        let mut p = paths(&e);
        p.sort();
        assert_eq!(p, ["colour", "phases[0]"], "{e:?}");
    }

    #[test]
    fn the_walk_is_bounded() {
        let mut m = serde_json::Map::new();
        for i in 0..500 {
            m.insert(format!("x{i}"), Value::from(i));
        }
        let e = deserialize_all::<Plan>(Value::Object(m)).unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS);
    }
}

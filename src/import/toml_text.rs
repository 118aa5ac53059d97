//! Writing TOML values by hand: the converter lays out its tables itself (arrays of tables
//! for scenarios and steps, inline tables inside a step) so the output reads like the
//! examples a user would write, and only needs values rendered correctly.

use serde_json::Value;

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`, …) are all valid
/// TOML basic-string escapes, so JSON's encoder does the work.
pub fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// A key: bare when TOML allows it, quoted otherwise.
pub fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        string(k)
    }
}

/// A value on one line: inline tables for objects. JSON null has no TOML form; it becomes
/// an empty string (the converter only meets it in request bodies).
pub fn inline(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(o) => table(o.iter()),
    }
}

/// An inline table of the entries, in the order given.
fn table<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    let items: Vec<String> = entries
        .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
        .collect();
    if items.is_empty() {
        "{}".to_string()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// An inline table with its keys in the given order (`{ method = …, url = … }` reads better
/// than the alphabetical order of a JSON map).
pub fn inline_pairs(pairs: &[(String, Value)]) -> String {
    table(pairs.iter().map(|(k, v)| (k, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_the_toml_parser() {
        let v = serde_json::json!({
            "a b": "q\"uote\\ \n ünï {{x}}", "n": 1.5, "list": [1, "two", {"t": true}], "e": {}
        });
        let text = format!("x = {}\n", inline(&v));
        let back: toml::Table = toml::from_str(&text).unwrap();
        let x = &back["x"];
        assert_eq!(x["a b"].as_str(), Some("q\"uote\\ \n ünï {{x}}"));
        assert_eq!(x["n"].as_float(), Some(1.5));
        assert_eq!(x["list"][2]["t"].as_bool(), Some(true));
        assert_eq!(key("x-user"), "x-user");
        assert_eq!(key("Content Type"), "\"Content Type\"");
    }
}

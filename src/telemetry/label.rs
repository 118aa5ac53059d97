//! Label values as the exposition formats require them: `\`, `"` and line feed escaped.
//!
//! `prometheus-client` writes a `String` label value verbatim (its text encoder escapes
//! nothing), so a probe or step name holding a quote, a backslash or a newline used to make
//! the whole scrape unparseable. Every label of this crate's families is a [`LabelValue`],
//! which escapes itself while it is written; nothing here may hand the library a raw `String`
//! label.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A label value, escaped when encoded (same rules in the text 0.0.4 and OpenMetrics formats).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelValue(pub String);

impl From<&str> for LabelValue {
    fn from(s: &str) -> Self {
        LabelValue(s.to_string())
    }
}

impl From<String> for LabelValue {
    fn from(s: String) -> Self {
        LabelValue(s)
    }
}

impl From<&String> for LabelValue {
    fn from(s: &String) -> Self {
        LabelValue(s.clone())
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write_escaped(encoder, &self.0)
    }
}

/// A borrowed label value, escaped when encoded (for metrics that encode their own samples).
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write_escaped(encoder, self.0)
    }
}

/// Writes `s` with the exposition escapes: `\\`, `\"` and `\n`. Every other character,
/// control characters included, is legal inside a quoted label value and goes as is.
pub fn write_escaped(out: &mut impl Write, s: &str) -> std::fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.write_str(&rest[..i])?;
        out.write_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        })?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `s` escaped as [`write_escaped`] does.
    pub fn escaped(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let _ = write_escaped(&mut out, s);
        out
    }

    #[test]
    fn quote_backslash_and_newline_are_escaped_and_the_rest_kept() {
        assert_eq!(escaped("a\"b\\c\nd\té\u{1b}"), "a\\\"b\\\\c\\nd\té\u{1b}");
        assert_eq!(escaped(""), "");
    }
}

//! Text bound for a terminal: control characters (C0, DEL, C1 — terminal escapes among them)
//! never reach it raw. Probe and step names are configuration, and configuration may come
//! from anyone who can write a file; a name must not be able to move the cursor, clear the
//! screen or forge a log line. This module only rewrites text; it never prints.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character written as `\u{..}`, line feeds and tabs included: for a
/// name inside a line (a table cell, a progress line, a log field).
pub fn escape_name(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` with every control character but line feed and tab written as `\u00XX` (a JSON string
/// escape too, so a JSON document keeps its meaning): for whole blocks of output.
pub fn escape_block(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && !(keep_lines && (c == '\n' || c == '\t'));
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            if keep_lines {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                let _ = write!(out, "{}", c.escape_default());
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_in_names_are_escaped_before_the_terminal() {
        assert_eq!(
            escape_name("a\u{1b}[2Jb\nc\u{9b}"),
            "a\\u{1b}[2Jb\\nc\\u{9b}"
        );
        assert_eq!(escape_name("plain ünï"), "plain ünï");
        assert_eq!(
            escape_block("x\n\ty\u{1b}]0;t\u{7}"),
            "x\n\ty\\u001b]0;t\\u0007"
        );
        let json = serde_json::to_string("\u{9b}31m").unwrap();
        let v: String = serde_json::from_str(&escape_block(&json)).unwrap();
        assert_eq!(v, "\u{9b}31m");
    }
}

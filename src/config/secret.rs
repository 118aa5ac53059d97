//! Secret values: given inline, or as `env:NAME` / `file:PATH` references resolved at load.
//!
//! A secret never appears in `Debug` output, error messages or result documents.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer};

thread_local! {
    /// Set while a configuration is checked for structure only (`validate --no-secrets`).
    static STRUCTURE_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// What `resolve` answers for a reference while secrets are not resolved; the reader drops
/// problems with exactly this message.
pub const NOT_RESOLVED: &str = "secret reference left unresolved (structure-only check)";

/// Why a secret reference could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets are not being resolved (a structure-only check).
    #[error("{}", NOT_RESOLVED)]
    NotResolved,
    #[error("environment variable {0} is not set")]
    EnvNotSet(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: String,
        source: super::read::ReadError,
    },
}

/// Runs `f` with `env:` and `file:` references left unresolved: nothing is read from the
/// environment or from secret files, and checks of the resolved values are skipped.
pub fn without_secrets<T>(f: impl FnOnce() -> T) -> T {
    STRUCTURE_ONLY.with(|s| s.set(true));
    let out = f();
    STRUCTURE_ONLY.with(|s| s.set(false));
    out
}

/// Values resolved from `env:` and `file:` references in this process, so that a target that
/// echoes one back (in a body an expectation quotes, an error message) cannot carry it into a
/// result, a log or the API: see [`redact_secrets`].
static RESOLVED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Shortest value treated as a secret when redacting: shorter ones would mangle ordinary text.
const MIN_REDACTED_LEN: usize = 4;

fn remember(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut known = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
        // Longest first, so a secret that contains another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every value resolved from an `env:` or `file:` reference replaced by `***`.
pub fn redact_secrets(text: &str) -> String {
    let known = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), "***");
        }
    }
    out
}

/// A string that may be a reference to an environment variable or a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// What the configuration said (`env:NAME`, `file:PATH` or the literal value).
    spec: String,
    /// The resolved value; equal to `spec` for literals.
    value: String,
}

impl Secret {
    /// A literal secret (used when the command line builds a configuration).
    pub fn literal(v: impl Into<String>) -> Self {
        let v = v.into();
        Secret {
            spec: v.clone(),
            value: v,
        }
    }

    /// Resolves `env:` and `file:` references; literals resolve to themselves.
    pub fn resolve(&mut self) -> Result<(), SecretError> {
        if self.is_reference() && STRUCTURE_ONLY.with(Cell::get) {
            return Err(SecretError::NotResolved);
        }
        if let Some(name) = self.spec.strip_prefix("env:") {
            self.value =
                std::env::var(name).map_err(|_| SecretError::EnvNotSet(name.to_string()))?;
        } else if let Some(path) = self.spec.strip_prefix("file:") {
            let text = super::read::read_bounded(
                std::path::Path::new(path),
                super::limits::MAX_SECRET_BYTES,
            )
            .map_err(|source| SecretError::File {
                path: path.to_string(),
                source,
            })?;
            // Files written by editors and `echo` end in a newline that is not part of the secret.
            self.value = text.trim_end_matches(['\n', '\r']).to_string();
        }
        if self.is_reference() {
            remember(&self.value);
        }
        Ok(())
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether the value came from a reference (and so must not be echoed).
    pub fn is_reference(&self) -> bool {
        self.spec.starts_with("env:") || self.spec.starts_with("file:")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_reference() {
            write!(f, "Secret({})", self.spec)
        } else {
            f.write_str("Secret(<inline>)")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Secret {
            value: s.clone(),
            spec: s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_env_and_file_references() {
        std::env::set_var("PLIMSOLL_TEST_SECRET_A", "from-env");
        let mut s: Secret = serde_json::from_str("\"env:PLIMSOLL_TEST_SECRET_A\"").unwrap();
        s.resolve().unwrap();
        assert_eq!(s.expose(), "from-env");
        assert!(!format!("{s:?}").contains("from-env"));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "from-file\n").unwrap();
        let mut s: Secret =
            serde_json::from_value(serde_json::json!(format!("file:{}", p.display()))).unwrap();
        s.resolve().unwrap();
        assert_eq!(s.expose(), "from-file");

        let mut s: Secret = serde_json::from_str("\"env:PLIMSOLL_TEST_SECRET_UNSET\"").unwrap();
        let e = s.resolve().unwrap_err();
        assert!(
            matches!(&e, SecretError::EnvNotSet(name) if name == "PLIMSOLL_TEST_SECRET_UNSET"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "environment variable PLIMSOLL_TEST_SECRET_UNSET is not set"
        );
    }
}

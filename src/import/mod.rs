//! Conversions of other load tools' scripts into Plimsoll configurations.
//!
//! A conversion never fails halfway: whatever it cannot express is left out and listed as a
//! [`Dropped`] item with the source path of what was dropped, so a user knows exactly what the
//! converted file does not do. Only a file that cannot be read or is not a script of the tool
//! at all is an [`ImportError`]. Nothing here runs a probe or touches the network.

pub mod artillery;
mod toml_text;

use std::fmt;

/// Something of the source script that the converted configuration does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Where in the source (`scenarios[0].flow[2].post.beforeRequest`).
    pub path: String,
    /// What was dropped or changed, and why.
    pub message: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A converted script: the configuration text and what it leaves out.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// A Plimsoll configuration (TOML).
    pub toml: String,
    pub dropped: Vec<Dropped>,
}

/// Why a script could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    NotAScript(String),
    /// Values of the script that no probe should run with (a negative or absurd rate): the
    /// conversion refuses them, by source path, instead of quietly changing them.
    #[error("{} value(s) refused:\n  {}", .0.len(), list(.0))]
    Refused(Vec<Dropped>),
    /// The converted configuration does not validate; it is not printed.
    #[error("the converted configuration does not validate:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

fn list(items: &[Dropped]) -> String {
    items
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

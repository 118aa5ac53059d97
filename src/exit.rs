//! The one exit policy: every command ends in an [`Exit`], and only here does an exit become a
//! process code (`main() -> ExitCode`, ripgrep's way).
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | excellent or good (or a command that only succeeds) |
//! | 1 | warning |
//! | 2 | critical: a breaking point was crossed or the target could not be reached |
//! | 3 | usage or configuration error |
//! | 4 | could not start: address in use, permission, store unreachable at start |
//!
//! Verdicts and start failures never share a number, so a CI job can tell "the service got
//! worse" from "the monitor never ran". Library code returns typed errors; it never exits.

use std::process::ExitCode;

use crate::config::Grade;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// The command did what it was asked (validate, import, a daemon that stopped cleanly).
    Success,
    /// Probes ran; the worst grade decides.
    Verdict(Grade),
    /// The command line or the configuration is wrong.
    Usage,
    /// Plimsoll could not start (bind, permission, runtime, a store unreachable at start).
    CannotStart,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Verdict(Grade::Excellent | Grade::Good) => 0,
            Exit::Verdict(Grade::Warning) => 1,
            Exit::Verdict(Grade::Critical) => 2,
            Exit::Usage => 3,
            Exit::CannotStart => 4,
        }
    }

    /// The verdict of several probe runs: the worst grade; no run at all is critical.
    pub fn worst(grades: impl IntoIterator<Item = Grade>) -> Exit {
        Exit::Verdict(grades.into_iter().max().unwrap_or(Grade::Critical))
    }

    /// The more severe of two exits: a usage error or start failure outranks any verdict.
    pub fn max(self, other: Exit) -> Exit {
        std::cmp::max(self, other)
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_start_failures_never_share_a_code() {
        let verdicts: Vec<u8> = [
            Grade::Excellent,
            Grade::Good,
            Grade::Warning,
            Grade::Critical,
        ]
        .into_iter()
        .map(|g| Exit::Verdict(g).code())
        .collect();
        assert_eq!(verdicts, [0, 0, 1, 2]);
        assert!(!verdicts.contains(&Exit::Usage.code()));
        assert!(!verdicts.contains(&Exit::CannotStart.code()));
        assert_ne!(Exit::Usage.code(), Exit::CannotStart.code());
        assert_eq!(Exit::Verdict(Grade::Critical).max(Exit::Usage), Exit::Usage);
        assert_eq!(Exit::worst([]), Exit::Verdict(Grade::Critical));
    }
}

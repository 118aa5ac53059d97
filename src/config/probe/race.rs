//! Settings of the `race` probe kind (seed 000's vendor race): how many claimants race for one
//! resource, how many rounds, what they send, who won, and how a database confirms it.
//!
//! Like the rest of `config`, this module only reads and checks; it starts nothing and never
//! connects to the database it names.

use serde::Deserialize;

use crate::config::request::RequestConfig;
use crate::config::{Ceiling, HumanDuration, Level, Limits, Problems, Secret};

/// Fewest and most claimants of a round. One claimant cannot race; more than a hundred
/// connections released at once stop landing within a millisecond on a small machine.
pub const CLAIMANTS: std::ops::RangeInclusive<u32> = 2..=100;

/// Placeholder filled with the claimant's index (0 to claimants − 1) in the claim request.
pub const CLAIMANT_VAR: &str = "claimant";
/// Placeholder filled with the value captured from the setup response.
pub const ID_VAR: &str = "id";

/// Settings of a race probe: in every round, an optional setup request creates a fresh
/// resource, then `claimants` connections, opened beforehand, send the claim for it at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaceConfig {
    /// Preset of seed 000 that sets `claimants` and `rounds`: `light` (5 claimants, 20
    /// rounds), `moderate` (10, 50), `heavy` (25, 100), `stress` (100, 200).
    #[serde(default = "default_level")]
    pub level: Level,
    /// Claimants per round, 2 to 100. Default: the level's.
    #[serde(default)]
    pub claimants: Option<u32>,
    /// Rounds to run. Default: the level's.
    #[serde(default)]
    pub rounds: Option<u32>,
    /// Per-request timeout (setup, connect, claim). A claimant without a complete answer by
    /// then is counted as `timeout`, never as a loser.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Pause between two rounds.
    #[serde(default = "default_pause")]
    pub pause: HumanDuration,
    /// Largest response body read before the request counts as a `body` error.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Request that creates the resource of a round (`POST /orders`); its answer must be JSON.
    /// Without it every round claims the same thing.
    #[serde(default)]
    pub setup: Option<RequestConfig>,
    /// JSON pointer into the setup answer whose value fills `{{id}}`.
    #[serde(default = "default_capture")]
    pub capture: String,
    /// The claim every claimant sends; `{{id}}` is the captured id and `{{claimant}}` the
    /// claimant's index (handy for vendor ids: `"v{{claimant}}"`).
    pub claim: RequestConfig,
    /// Statuses of a claim that may win. Default: any 2xx.
    #[serde(default)]
    pub win_status: Option<Vec<u16>>,
    /// Statuses of a claim told it lost.
    #[serde(default = "default_lose_status")]
    pub lose_status: Vec<u16>,
    /// JSON pointer into a claim answer with a winning status; with `win_equals`, the claim
    /// won only when the value there equals it, and lost otherwise.
    #[serde(default)]
    pub win_pointer: Option<String>,
    /// The value at `win_pointer` that means "won" (any JSON value: `true`, `"ACCEPTED"`).
    #[serde(default)]
    pub win_equals: Option<serde_json::Value>,
    /// Check each round in the database: catches a double acceptance the API hid.
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
}

/// A query that counts, after each round, the accepted claims the database holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// PostgreSQL URL (`postgres://user:password@host:port/db`); use an `env:` or `file:`
    /// reference, since it holds a password.
    pub database_url: Secret,
    /// Query returning one integer (cast to `bigint`; `count(*)` is one): the accepted claims
    /// on the round's resource, with `$1` bound to the captured id (as a number when the
    /// setup answered a number).
    pub query: String,
    /// Timeout of the connection and of each query.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_level() -> Level {
    Level::Moderate
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_pause() -> HumanDuration {
    HumanDuration::default()
}
fn default_max_body_bytes() -> u64 {
    1024 * 1024
}
fn default_capture() -> String {
    "/id".to_string()
}
fn default_lose_status() -> Vec<u16> {
    vec![409]
}

impl Level {
    /// Claimants and rounds of a race at this level. Rounds grow with the level so that a
    /// 1 % race rate has a fair chance to show (50 rounds at `moderate`).
    pub fn race(self) -> (u32, u32) {
        match self {
            Level::Light => (5, 20),
            Level::Moderate => (10, 50),
            Level::Heavy => (25, 100),
            Level::Stress => (100, 200),
        }
    }
}

impl RaceConfig {
    /// Claimants per round, from the explicit value or the level.
    pub fn claimant_count(&self) -> u32 {
        self.claimants.unwrap_or(self.level.race().0)
    }

    /// Rounds to run, from the explicit value or the level.
    pub fn round_count(&self) -> u32 {
        self.rounds.unwrap_or(self.level.race().1)
    }

    /// Checks the race settings, resolving the database URL's secret.
    pub fn validate(&mut self, path: &str, limits: &Limits, problems: &mut Problems) {
        if let Some(r) = self.rounds {
            limits.check_count(format!("{path}.rounds"), r.into(), Ceiling::Count, problems);
        }
        limits.check_count(
            format!("{path}.max_body_bytes"),
            self.max_body_bytes,
            Ceiling::BodyBytes,
            problems,
        );
        for (name, d) in [("timeout", self.timeout), ("pause", self.pause)] {
            limits.check_duration(format!("{path}.{name}"), d, problems);
        }
        if let Some(v) = &self.verify {
            limits.check_duration(format!("{path}.verify.timeout"), v.timeout, problems);
        }
        let c = self.claimant_count();
        if !CLAIMANTS.contains(&c) {
            problems.push(
                format!("{path}.claimants"),
                format!(
                    "must be between {} and {}",
                    CLAIMANTS.start(),
                    CLAIMANTS.end()
                ),
            );
        }
        if self.round_count() == 0 {
            problems.push(format!("{path}.rounds"), "must be greater than 0");
        }
        if self.timeout.is_zero() {
            problems.push(format!("{path}.timeout"), "must be greater than 0");
        }
        if self.max_body_bytes == 0 {
            problems.push(format!("{path}.max_body_bytes"), "must be greater than 0");
        }
        if let Some(s) = &mut self.setup {
            s.validate(&format!("{path}.setup"), &[], problems);
        }
        if !(self.capture.is_empty() || self.capture.starts_with('/')) {
            problems.push(
                format!("{path}.capture"),
                "a JSON pointer is empty or starts with `/` (\"/id\", \"/order/id\")",
            );
        }
        let mut vars = vec![CLAIMANT_VAR.to_string()];
        if self.setup.is_some() {
            vars.push(ID_VAR.to_string());
        }
        let mut claim_problems = Problems::default();
        self.claim
            .validate(&format!("{path}.claim"), &vars, &mut claim_problems);
        for e in claim_problems.into_errors() {
            // The generic message would point at `vars`; the fix here is a setup request.
            let message = if e.message.contains("{{id}}") {
                "`{{id}}` is only known with a `setup` request that captures it".to_string()
            } else {
                e.message
            };
            problems.push(e.path, message);
        }
        if self.claim.expect_status.is_some() {
            problems.push(
                format!("{path}.claim.expect_status"),
                "a claim is judged by `win_status` and `lose_status`; remove it",
            );
        }
        for (name, codes) in [
            ("win_status", self.win_status.as_deref()),
            ("lose_status", Some(self.lose_status.as_slice())),
        ] {
            for code in codes.unwrap_or_default() {
                if !(100..=599).contains(code) {
                    problems.push(
                        format!("{path}.{name}"),
                        format!("{code} is not an HTTP status"),
                    );
                }
            }
        }
        if self.win_status.as_ref().is_some_and(|w| w.is_empty()) {
            problems.push(
                format!("{path}.win_status"),
                "must list at least one status",
            );
        }
        let overlap: Vec<u16> = self
            .lose_status
            .iter()
            .copied()
            .filter(|c| match &self.win_status {
                Some(w) => w.contains(c),
                None => (200..300).contains(c),
            })
            .collect();
        if !overlap.is_empty() {
            problems.push(
                format!("{path}.lose_status"),
                format!("{overlap:?} also win: a status either wins or loses"),
            );
        }
        match (&self.win_pointer, &self.win_equals) {
            (Some(p), Some(_)) if !(p.is_empty() || p.starts_with('/')) => problems.push(
                format!("{path}.win_pointer"),
                "a JSON pointer is empty or starts with `/`",
            ),
            (Some(_), None) => problems.push(
                format!("{path}.win_equals"),
                "missing: `win_pointer` needs the value that means \"won\"",
            ),
            (None, Some(_)) => problems.push(
                format!("{path}.win_pointer"),
                "missing: `win_equals` needs the pointer it compares",
            ),
            _ => {}
        }
        if let Some(v) = &mut self.verify {
            let vp = format!("{path}.verify");
            if self.setup.is_none() {
                problems.push(
                    &vp,
                    "needs a `setup` request: the query is bound to the captured id",
                );
            }
            match v.database_url.resolve() {
                Err(e) => problems.push(format!("{vp}.database_url"), e),
                Ok(()) => {
                    let url = v.database_url.expose();
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                        // The URL may hold a password: never echo it.
                        problems.push(
                            format!("{vp}.database_url"),
                            "must be a PostgreSQL URL (postgres://…)",
                        );
                    }
                }
            }
            if !v.query.contains("$1") {
                problems.push(
                    format!("{vp}.query"),
                    "must use `$1`, the captured id, to count this round's accepted claims",
                );
            }
            if v.timeout.is_zero() {
                problems.push(format!("{vp}.timeout"), "must be greater than 0");
            }
        }
    }
}

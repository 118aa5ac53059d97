//! The `race` block: a vendor race's rounds, winners and timing, and its summary line.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::LatencySummary;

/// Figures of a race probe run (seed 000's vendor race). The round counts are the
/// `outcome` values of `plimsoll_race_rounds_total`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RaceStats {
    /// Rounds whose claimants were released (a round whose setup failed is not one).
    pub rounds: u64,
    /// Claimants per round.
    pub claimants: u32,
    /// Rounds with exactly one winner.
    pub single_winner: u64,
    /// Rounds with several winners: the race the probe exists to catch.
    pub multiple_winners: u64,
    /// Rounds nobody won.
    pub no_winner: u64,
    /// `single_winner / rounds`, 0 to 1.
    pub win_rate: f64,
    /// `multiple_winners / rounds`, 0 to 1.
    pub race_rate: f64,
    /// Per round, first claim sent → last claim answered (or given up).
    pub race_time_ms: LatencySummary,
    /// Per round, first claim sent → last claim sent: how close together the claims left.
    pub send_spread_ms: LatencySummary,
    /// Claims by outcome: `won`, `lost`, `timeout`, or an error kind (`connect`, `status`,
    /// `expect`, …). A claimant that timed out is `timeout`, never `lost`.
    pub claims_by_outcome: BTreeMap<String, u64>,
    /// The first message seen of each error kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_samples: BTreeMap<String, String>,
    /// Rounds not run because the setup request failed.
    pub setup_failures: u64,
    /// With verification: rounds where the database count differed from the API's winners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_mismatches: Option<u64>,
    /// With verification: rounds whose query failed (graded on the API's answers alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_errors: Option<u64>,
    /// The first rounds with several winners or a mismatch, for the person on call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspect_rounds: Vec<RaceRound>,
}

/// One round worth a look: which resource, and who said how many won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaceRound {
    /// Round number, from 0.
    pub round: u64,
    /// The captured id, when there was a setup request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Claims the API answered as won.
    pub api_winners: u64,
    /// Accepted claims the verification query counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_winners: Option<u64>,
}

/// One line of a race's round counts and timing.
pub(super) fn summary(r: &RaceStats) -> String {
    let mut line = format!(
        "{} rounds of {} claimants: {} single winner, {} multiple winners, {} no winner; \
         send spread p50 {:.3} ms, p99 {:.3} ms; race time p99 {:.1} ms",
        r.rounds,
        r.claimants,
        r.single_winner,
        r.multiple_winners,
        r.no_winner,
        r.send_spread_ms.p50,
        r.send_spread_ms.p99,
        r.race_time_ms.p99
    );
    if let Some(m) = r.verify_mismatches {
        let _ = write!(
            line,
            "; {m} round(s) where the database disagreed with the API"
        );
    }
    for (kind, sample) in &r.error_samples {
        let n = r.claims_by_outcome.get(kind).copied().unwrap_or(0);
        let _ = write!(line, "\n  {kind} ({n} claim(s)): {sample}");
    }
    line
}

//! What a race's rounds add up to: the running tally, the `race` block of the result
//! document, and its grade against seed 000's thresholds. It counts; it sends nothing.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::{round_outcome, Claim, RoundOutcome, MAX_SUSPECT_ROUNDS};
use crate::config::ProbeConfig;
use crate::engine::recorder::new_histogram;
use crate::engine::ErrorKind;
use crate::report::{KindBlock, LatencySummary, ProbeResult, RaceRound, RaceStats};
use crate::verdict::{self, Grade, ThresholdsConfig, Verdict};

pub(super) fn record_micros(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
}

/// What the rounds measured, accumulated as they end.
pub(super) struct Tally {
    pub(super) stats: RaceStats,
    verify: bool,
    pub(super) verify_errors: u64,
    verify_mismatches: u64,
    pub(super) setup_failures: u64,
    pub(super) spread: Histogram<u64>,
    pub(super) race_time: Histogram<u64>,
    pub(super) stopped_early: bool,
    /// The run was stopped with a round in progress: its claims in flight were abandoned.
    pub(super) abandoned_round: bool,
}

impl Tally {
    pub(super) fn new(claimants: usize, verify: bool) -> Self {
        Tally {
            stats: RaceStats {
                claimants: claimants as u32,
                ..RaceStats::default()
            },
            verify,
            verify_errors: 0,
            verify_mismatches: 0,
            setup_failures: 0,
            spread: new_histogram(),
            race_time: new_histogram(),
            stopped_early: false,
            abandoned_round: false,
        }
    }

    pub(super) fn sample(&mut self, kind: ErrorKind, message: String) {
        self.stats
            .error_samples
            .entry(kind.as_str().to_string())
            .or_insert(message);
    }

    pub(super) fn claim(&mut self, claim: Claim, message: Option<String>) {
        *self
            .stats
            .claims_by_outcome
            .entry(claim.name().to_string())
            .or_insert(0) += 1;
        if let (Claim::Failed(kind), Some(m)) = (claim, message) {
            self.sample(kind, m);
        }
    }

    pub(super) fn round(&mut self, round: u64, id: Option<String>, api: u64, db: Option<u64>) {
        let s = &mut self.stats;
        s.rounds += 1;
        let outcome = round_outcome(api, db);
        match outcome {
            RoundOutcome::SingleWinner => s.single_winner += 1,
            RoundOutcome::MultipleWinners => s.multiple_winners += 1,
            RoundOutcome::NoWinner => s.no_winner += 1,
        }
        let mismatch = db.is_some_and(|d| d != api);
        if mismatch {
            self.verify_mismatches += 1;
        }
        if (outcome == RoundOutcome::MultipleWinners || mismatch)
            && s.suspect_rounds.len() < MAX_SUSPECT_ROUNDS
        {
            s.suspect_rounds.push(RaceRound {
                round,
                id,
                api_winners: api,
                db_winners: db,
            });
        }
    }

    pub(super) fn finish(mut self) -> RaceStats {
        let s = &mut self.stats;
        let ratio = |n: u64| {
            if s.rounds > 0 {
                n as f64 / s.rounds as f64
            } else {
                0.0
            }
        };
        s.win_rate = ratio(s.single_winner);
        s.race_rate = ratio(s.multiple_winners);
        s.race_time_ms = LatencySummary::from_micros(&self.race_time);
        s.send_spread_ms = LatencySummary::from_micros(&self.spread);
        s.setup_failures = self.setup_failures;
        if self.verify {
            s.verify_mismatches = Some(self.verify_mismatches);
            s.verify_errors = Some(self.verify_errors);
        }
        self.stats
    }
}

pub(super) fn grade_tally(
    probe: &ProbeConfig,
    tally: Tally,
    started: SystemTime,
    took: Duration,
) -> ProbeResult {
    let (stopped_early, abandoned_round) = (tally.stopped_early, tally.abandoned_round);
    let stats = tally.finish();
    let verdict = grade(&probe.thresholds, &stats);
    let mut notes = Vec::new();
    if stopped_early {
        notes.push("stopped before the last round".into());
    }
    if abandoned_round {
        notes.push("the round in progress at stop was abandoned".into());
    }
    ProbeResult::graded(
        probe,
        started,
        took,
        None,
        Some(KindBlock::Race(stats)),
        verdict,
        notes,
        Default::default(),
    )
}

/// Grades a race against the probe's thresholds and seed 000's defaults.
pub fn grade(t: &ThresholdsConfig, s: &RaceStats) -> Verdict {
    let mut v = Verdict::default();
    if s.rounds == 0 {
        v.force(
            Grade::Critical,
            "no round ran (every setup request failed?)",
        );
        return v;
    }
    let rate = |n: u64| n as f64 / s.rounds as f64;
    v.higher_better(
        "win_rate",
        s.win_rate,
        t.win_rate.unwrap_or(verdict::DEFAULT_WIN_RATE),
    );
    v.lower_better(
        "race_rate",
        s.race_rate,
        t.race_rate.unwrap_or(verdict::DEFAULT_RACE_RATE),
    );
    v.lower_better(
        "race_time_p99_ms",
        s.race_time_ms.p99,
        t.race_time_p99_ms
            .unwrap_or(verdict::DEFAULT_RACE_TIME_P99_MS),
    );
    if let Some(m) = s.verify_mismatches {
        v.lower_better(
            "verify_mismatch_rate",
            rate(m),
            t.verify_mismatch_rate.unwrap_or(verdict::DEFAULT_RACE_RATE),
        );
    }
    if s.setup_failures > 0 {
        let all = s.rounds + s.setup_failures;
        v.lower_better(
            "setup_error_rate",
            s.setup_failures as f64 / all as f64,
            t.error_rate.unwrap_or(verdict::DEFAULT_ERROR_RATE),
        );
    }
    v
}

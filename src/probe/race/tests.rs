//! Tests of the race probe's judgement: claims, rounds and grades, without a network.

use std::time::{Duration, Instant};

use super::tally::Tally;
use super::*;
use crate::report::{LatencySummary, RaceStats};
use crate::verdict::{Grade, ThresholdsConfig};

fn rule(win: Option<Vec<u16>>, pointer: Option<(&str, serde_json::Value)>) -> WinRule {
    WinRule {
        win_status: win,
        lose_status: vec![409],
        pointer: pointer.map(|(p, v)| (p.to_string(), v)),
    }
}

#[test]
fn claims_are_judged_by_status_then_json() {
    let r = rule(None, None);
    assert_eq!(r.judge(200, b""), Claim::Won);
    assert_eq!(r.judge(201, b""), Claim::Won);
    assert_eq!(r.judge(409, b""), Claim::Lost);
    // Neither a win nor a loss: the target failed, the claimant did not lose.
    assert_eq!(r.judge(500, b""), Claim::Failed(ErrorKind::Status));
    assert_eq!(r.judge(302, b""), Claim::Failed(ErrorKind::Status));

    let r = rule(
        Some(vec![200]),
        Some(("/accepted", serde_json::json!(true))),
    );
    assert_eq!(r.judge(200, br#"{"accepted":true}"#), Claim::Won);
    assert_eq!(r.judge(200, br#"{"accepted":false}"#), Claim::Lost);
    assert_eq!(
        r.judge(201, br#"{"accepted":true}"#),
        Claim::Failed(ErrorKind::Status)
    );
    assert_eq!(r.judge(200, b"not json"), Claim::Failed(ErrorKind::Expect));
    assert_eq!(
        r.judge(200, br#"{"other":1}"#),
        Claim::Failed(ErrorKind::Expect)
    );
    assert_eq!(Claim::Failed(ErrorKind::Timeout).name(), "timeout");
}

#[test]
fn the_database_decides_rounds_and_several_winners_always_count() {
    use RoundOutcome::*;
    assert_eq!(round_outcome(1, None), SingleWinner);
    assert_eq!(round_outcome(0, None), NoWinner);
    assert_eq!(round_outcome(3, None), MultipleWinners);
    // The API hid a double acceptance.
    assert_eq!(round_outcome(1, Some(2)), MultipleWinners);
    // Two were told they won though one row was kept: still a race for the vendors.
    assert_eq!(round_outcome(2, Some(1)), MultipleWinners);
    // The winner's answer was lost (a timeout), but the database has it.
    assert_eq!(round_outcome(0, Some(1)), SingleWinner);
    // The API said yes, and nothing was stored.
    assert_eq!(round_outcome(1, Some(0)), NoWinner);
}

#[test]
fn tally_counts_rounds_mismatches_and_timeouts_apart() {
    let mut t = Tally::new(3, true);
    t.claim(Claim::Won, None);
    t.claim(Claim::Lost, None);
    t.claim(Claim::Failed(ErrorKind::Timeout), Some("slow".into()));
    t.round(0, Some("7".into()), 1, Some(1));
    t.round(1, Some("8".into()), 1, Some(2));
    let s = t.finish();
    assert_eq!((s.rounds, s.single_winner, s.multiple_winners), (2, 1, 1));
    assert_eq!(s.verify_mismatches, Some(1));
    assert_eq!(s.claims_by_outcome["timeout"], 1);
    assert_eq!(s.claims_by_outcome["lost"], 1);
    assert_eq!(s.error_samples["timeout"], "slow");
    assert_eq!(s.suspect_rounds.len(), 1);
    assert_eq!(s.suspect_rounds[0].db_winners, Some(2));
    assert_eq!((s.win_rate, s.race_rate), (0.5, 0.5));
}

fn stats(rounds: u64, single: u64, multiple: u64, p99_ms: f64) -> RaceStats {
    RaceStats {
        rounds,
        single_winner: single,
        multiple_winners: multiple,
        no_winner: rounds - single - multiple,
        win_rate: single as f64 / rounds as f64,
        race_rate: multiple as f64 / rounds as f64,
        race_time_ms: LatencySummary {
            p99: p99_ms,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn grades_follow_seed_000_and_overrides() {
    let t = ThresholdsConfig::default();
    assert_eq!(grade(&t, &stats(500, 500, 0, 20.0)).grade(), Grade::Good);
    // One race in 500 rounds is a warning, one in 50 is critical.
    assert_eq!(grade(&t, &stats(500, 499, 1, 20.0)).grade(), Grade::Warning);
    assert_eq!(grade(&t, &stats(50, 49, 1, 20.0)).grade(), Grade::Critical);
    // Slow races: seed 000 puts race time above one second in critical.
    assert_eq!(
        grade(&t, &stats(100, 100, 0, 1500.0)).grade(),
        Grade::Critical
    );
    let mut no_winner = stats(100, 96, 0, 20.0);
    no_winner.no_winner = 4;
    assert_eq!(grade(&t, &no_winner).grade(), Grade::Warning);
    assert_eq!(
        grade(&t, &RaceStats::default()).grade(),
        Grade::Critical,
        "no round is no proof"
    );
    let lenient = ThresholdsConfig {
        race_rate: Some(crate::verdict::Bands::new(None, Some(0.05), Some(0.1))),
        ..Default::default()
    };
    assert_eq!(grade(&t, &stats(100, 99, 1, 20.0)).grade(), Grade::Warning);
    let v = grade(&lenient, &stats(100, 99, 1, 20.0));
    assert_eq!(v.grade(), Grade::Good);
    assert!(v.results.iter().any(|r| r.metric == "race_rate"));
}

#[test]
fn ids_are_captured_as_text_and_number() {
    let id = capture_id(br#"{"id": 42}"#, "/id").unwrap();
    assert_eq!((id.text.as_str(), id.number), ("42", Some(42)));
    let id = capture_id(br#"{"order": {"id": "ord_9"}}"#, "/order/id").unwrap();
    assert_eq!((id.text.as_str(), id.number), ("ord_9", None));
    assert!(capture_id(br#"{"id": null}"#, "/id").is_err());
    assert!(capture_id(b"<html>", "/id")
        .unwrap_err()
        .contains("not JSON"));
}

#[tokio::test]
async fn join_all_starts_every_future_in_the_first_pass() {
    // Each future records when it first runs, then waits; all must have started before any
    // timer fires, which is what lets a round's claims leave together.
    let started = std::cell::RefCell::new(Vec::new());
    let futs: Vec<_> = (0..20)
        .map(|i| {
            let started = &started;
            async move {
                started.borrow_mut().push(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
                i
            }
        })
        .collect();
    let t0 = Instant::now();
    let out = join_all(futs).await;
    assert_eq!(out, (0..20).collect::<Vec<_>>());
    assert_eq!(*started.borrow(), (0..20).collect::<Vec<_>>());
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "ran one after another"
    );
}

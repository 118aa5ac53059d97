//! Generated series for the regression detector: seeded, log-normal noise at 10 % CV, one
//! figure per run. Deterministic (fixed seeds), so a change of tuning shows as a changed
//! table, never as a flaky test.

use plimsoll::baseline::{
    DetectorSettings, Direction, FigureSpec, RegressionDetector, RegressionState, Transition,
};

/// Log-normal noise with a given coefficient of variation around a level (mean = level).
pub struct Noise {
    rng: fastrand::Rng,
    sigma: f64,
}

impl Noise {
    pub fn new(seed: u64, cv: f64) -> Noise {
        Noise {
            rng: fastrand::Rng::with_seed(seed),
            sigma: (1.0 + cv * cv).ln().sqrt(),
        }
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller; u in (0, 1].
        let u = 1.0 - self.rng.f64();
        let v = self.rng.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn sample(&mut self, level: f64) -> f64 {
        level * (self.sigma * self.normal() - self.sigma * self.sigma / 2.0).exp()
    }
}

const CV: f64 = 0.10;
const LEVEL: f64 = 40.0;
/// Steady runs before a shift begins.
const WARMUP: usize = 60;

fn latency() -> FigureSpec {
    FigureSpec {
        direction: Direction::HigherIsWorse,
        floor: 1e-9,
    }
}

/// Alerts opened over `series` steady series of `len` runs each (warm-up included).
pub fn false_alerts(series: u64, len: usize) -> (usize, usize) {
    let mut opened = 0;
    for i in 0..series {
        let mut noise = Noise::new(1_000 + i, CV);
        let mut d = RegressionDetector::new(DetectorSettings::default(), latency());
        for _ in 0..len {
            if d.observe(noise.sample(LEVEL)).transition == Some(Transition::Opened) {
                opened += 1;
            }
        }
    }
    (opened, series as usize * len)
}

/// For each trial, the run (counted from the first shifted one) at which the alert opened;
/// `None` when it did not within 200 runs or a false alert came before the shift (counted
/// as a miss).
pub fn delays(shift: f64, trials: u64, direction: Direction) -> Vec<Option<usize>> {
    let spec = FigureSpec {
        direction,
        floor: 1e-9,
    };
    let factor = match direction {
        Direction::HigherIsWorse => 1.0 + shift,
        Direction::LowerIsWorse => 1.0 / (1.0 + shift),
    };
    (0..trials)
        .map(|t| {
            let mut noise = Noise::new(500_000 + t, CV);
            let mut d = RegressionDetector::new(DetectorSettings::default(), spec);
            for _ in 0..WARMUP {
                if d.observe(noise.sample(LEVEL)).state == RegressionState::Open {
                    return None;
                }
            }
            (1..=200)
                .find(|_| d.observe(noise.sample(LEVEL * factor)).state == RegressionState::Open)
        })
        .collect()
}

/// Share of trials detected within `runs`.
pub fn within(delays: &[Option<usize>], runs: usize) -> f64 {
    delays
        .iter()
        .filter(|d| d.is_some_and(|d| d <= runs))
        .count() as f64
        / delays.len() as f64
}

fn median(delays: &[Option<usize>]) -> String {
    let mut d: Vec<usize> = delays.iter().map(|d| d.unwrap_or(usize::MAX)).collect();
    d.sort();
    match d[d.len() / 2] {
        usize::MAX => "> 200".into(),
        m => m.to_string(),
    }
}

#[test]
fn false_alerts_at_most_one_per_thousand_steady_runs() {
    let (opened, runs) = false_alerts(200, 1_000);
    let rate = opened as f64 * 1_000.0 / runs as f64;
    println!("false alerts: {opened} over {runs} steady runs = {rate:.2} per 1,000");
    assert!(runs >= 100_000);
    assert!(rate <= 1.0, "{rate:.2} false alerts per 1,000 runs");
}

#[test]
fn detection_delay_table() {
    const TRIALS: u64 = 1_000;
    println!("| shift | <= 3 runs | <= 6 runs | <= 12 runs | <= 20 runs | median delay |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    for shift in [0.10, 0.15, 0.25, 0.50] {
        let d = delays(shift, TRIALS, Direction::HigherIsWorse);
        println!(
            "| {:.0} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {} |",
            shift * 100.0,
            within(&d, 3) * 100.0,
            within(&d, 6) * 100.0,
            within(&d, 12) * 100.0,
            within(&d, 20) * 100.0,
            median(&d)
        );
        rows.push((shift, d));
    }
    let get = |s: f64| &rows.iter().find(|(x, _)| *x == s).unwrap().1;
    assert!(within(get(0.50), 3) >= 0.95, "50 % within 3 runs");
    assert!(within(get(0.25), 6) >= 0.85, "25 % within 6 runs");
    assert!(within(get(0.15), 12) >= 0.75, "15 % within 12 runs");
}

#[test]
fn throughput_is_judged_downwards() {
    // A 50 % fall of throughput (rps × 1/1.5) is found as fast as a 50 % rise of latency…
    let d = delays(0.50, 300, Direction::LowerIsWorse);
    assert!(within(&d, 3) >= 0.95);
    // …and a rise of throughput, like a fall of latency, is no regression.
    for (direction, factor) in [
        (Direction::LowerIsWorse, 2.0),
        (Direction::HigherIsWorse, 0.5),
    ] {
        let spec = FigureSpec {
            direction,
            floor: 1e-9,
        };
        for t in 0..100 {
            let mut noise = Noise::new(70_000 + t, CV);
            let mut d = RegressionDetector::new(DetectorSettings::default(), spec);
            for _ in 0..WARMUP {
                d.observe(noise.sample(LEVEL));
            }
            if d.is_open() {
                continue; // a false alert before the change, counted elsewhere
            }
            for i in 0..100 {
                let s = d.observe(noise.sample(LEVEL * factor));
                assert_ne!(s.state, RegressionState::Open, "trial {t}, run {i}: {s:?}");
            }
        }
    }
}

#[test]
fn a_single_three_fold_outlier_fires_nothing() {
    const TRIALS: u64 = 1_000;
    let (mut with, mut without) = (0, 0);
    for t in 0..TRIALS {
        let mut noise = Noise::new(900_000 + t, CV);
        let mut d = RegressionDetector::new(DetectorSettings::default(), latency());
        for _ in 0..WARMUP {
            d.observe(noise.sample(LEVEL));
        }
        if d.is_open() {
            continue;
        }
        let mut same_without = d.clone();
        let after: Vec<f64> = (0..20).map(|_| noise.sample(LEVEL)).collect();
        let outlier = d.observe(LEVEL * 3.0);
        assert_eq!(outlier.state, RegressionState::Ok, "trial {t}");
        let next = d.observe(after[0]);
        assert_eq!(
            next.state,
            RegressionState::Ok,
            "trial {t}: the run after the outlier"
        );
        with += after[1..]
            .iter()
            .filter(|&&v| d.observe(v).transition == Some(Transition::Opened))
            .count();
        without += after
            .iter()
            .filter(|&&v| same_without.observe(v).transition == Some(Transition::Opened))
            .count();
    }
    println!("alerts in the 20 runs after: with a 3x outlier {with}, without {without}");
    // An unconfirmed outlier is dropped, so what follows it is judged as if it had not
    // happened (up to the baseline holding one run less): the base rate, nothing more.
    assert!(with <= without + 2, "with {with}, without {without}");
}

#[test]
fn hysteresis_holds_an_open_alert_and_clears_after_the_return() {
    let mut noise = Noise::new(42, CV);
    let mut d = RegressionDetector::new(DetectorSettings::default(), latency());
    for _ in 0..WARMUP {
        assert_ne!(d.observe(noise.sample(LEVEL)).state, RegressionState::Open);
    }
    let mut opened_at = None;
    let mut frozen = None;
    for i in 0..100 {
        let s = d.observe(noise.sample(LEVEL * 1.3));
        if s.transition == Some(Transition::Opened) {
            opened_at = Some(i);
            frozen = s.baseline;
        }
        if opened_at.is_some() {
            // Held open through the whole regression, against a frozen baseline.
            assert_eq!(s.state, RegressionState::Open, "run {i}");
            assert_eq!(s.baseline, frozen);
            assert!(s.transition != Some(Transition::Cleared));
        }
    }
    let opened_at = opened_at.expect("a 30 % rise opens an alert");
    assert!(opened_at < 10, "opened after {opened_at} runs");
    let last = d.observe(noise.sample(LEVEL * 1.3));
    assert!((last.shift_ratio.unwrap() - 0.3).abs() < 0.08, "{last:?}");
    let cleared = (1..=30)
        .find(|_| d.observe(noise.sample(LEVEL)).transition == Some(Transition::Cleared))
        .expect("the return clears the alert");
    assert!(cleared >= 3, "cleared after one lucky run");
    println!(
        "a 30 % regression opened after {} runs, cleared {cleared} runs after the return",
        opened_at + 1
    );
}

#[test]
fn a_new_series_warms_up_before_judging() {
    let mut noise = Noise::new(7, CV);
    let settings = DetectorSettings::default();
    let values: Vec<f64> = (0..settings.min_reference - 1)
        .map(|_| noise.sample(LEVEL))
        .collect();
    let s = RegressionDetector::replay(&settings, latency(), values.iter().copied()).unwrap();
    assert_eq!(s.state, RegressionState::Warmup);
    assert_eq!(s.baseline, None);
    // Replaying a stored series gives the state an incremental detector reached.
    let more: Vec<f64> = (0..80).map(|_| noise.sample(LEVEL)).collect();
    let all: Vec<f64> = values.iter().chain(&more).copied().collect();
    let mut d = RegressionDetector::new(settings.clone(), latency());
    let last = all.iter().map(|v| d.observe(*v)).last().unwrap();
    assert_eq!(
        RegressionDetector::replay(&settings, latency(), all).unwrap(),
        last
    );
    assert_eq!(last.state, RegressionState::Ok);
    assert!((last.baseline.unwrap() / LEVEL - 1.0).abs() < 0.05);
}

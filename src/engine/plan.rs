//! Arrival plans: when each iteration is due (open model), how virtual users start (closed
//! model), and how a plan splits into disjoint shards for several replicas.
//!
//! A plan is a pure function from an arrival's index to its planned offset from the start, so
//! any replica or worker can compute its own arrivals without being sent them, and N shards
//! together deliver exactly the plan. Nothing here touches a clock.

use std::time::Duration;

use crate::config::{LoadConfig, PhaseConfig};

/// One phase of an open-model plan, in the units the maths needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Offset of the phase's start from the plan's start.
    pub start: Duration,
    pub duration: Duration,
    pub kind: PhaseKind,
    /// Index of the phase's first arrival in the whole plan.
    pub first: u64,
    /// Arrivals in the phase.
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseKind {
    /// Arrivals at a rate changing linearly from `from` to `to` per second.
    Rate { from: f64, to: f64 },
    /// All arrivals at the phase's start.
    Burst,
}

/// The planned arrivals of an open-model run.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalPlan {
    pub phases: Vec<Phase>,
    pub total: u64,
    pub duration: Duration,
}

impl ArrivalPlan {
    /// Builds a plan from validated phases.
    pub fn from_phases(phases: &[PhaseConfig]) -> Self {
        let mut out = Vec::with_capacity(phases.len());
        let mut start = Duration::ZERO;
        let mut first = 0u64;
        for (i, p) in phases.iter().enumerate() {
            let duration = p.duration.map(|d| d.as_duration()).unwrap_or_default();
            let (kind, count) = match (p.burst, p.rate) {
                (Some(n), _) => (PhaseKind::Burst, u64::from(n)),
                (None, rate) => {
                    let from = rate.unwrap_or(0.0);
                    let to = p.ramp_to.unwrap_or(from);
                    // Expected arrivals under a linear rate: the area of the trapezoid.
                    let n = (duration.as_secs_f64() * (from + to) / 2.0).round() as u64;
                    (PhaseKind::Rate { from, to }, n)
                }
            };
            out.push(Phase {
                name: p.name.clone().unwrap_or_else(|| format!("phase-{i}")),
                start,
                duration,
                kind,
                first,
                count,
            });
            start += duration;
            first += count;
        }
        ArrivalPlan {
            phases: out,
            total: first,
            duration: start,
        }
    }

    /// A constant rate for a duration (the command line's `--rate`).
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Self::from_phases(&[PhaseConfig {
            name: Some("constant".into()),
            duration: Some(duration.into()),
            rate: Some(rate),
            ramp_to: None,
            burst: None,
        }])
    }

    /// Planned offset from the plan's start of arrival `i` (`i < total`).
    pub fn offset_of(&self, i: u64) -> Duration {
        // Phases are few; a linear scan beats a binary search's branches here.
        let phase = self
            .phases
            .iter()
            .find(|p| i < p.first + p.count)
            .unwrap_or_else(|| self.phases.last().expect("a plan with arrivals has phases"));
        let j = (i - phase.first) as f64;
        let within = match phase.kind {
            PhaseKind::Burst => 0.0,
            PhaseKind::Rate { from, to } => {
                let d = phase.duration.as_secs_f64();
                // N(t) = from·t + (to − from)·t² / (2d); solve N(t) = j for t ≥ 0 in the form
                // that stays exact when the ramp is flat (a = 0) and never divides by zero.
                let a = (to - from) / (2.0 * d);
                let disc = (from * from + 4.0 * a * j).max(0.0);
                let denom = from + disc.sqrt();
                if denom > 0.0 {
                    (2.0 * j / denom).min(d)
                } else {
                    0.0
                }
            }
        };
        phase.start + Duration::from_secs_f64(within)
    }

    /// Highest planned rate of any phase, in arrivals per second; a burst counts as its whole
    /// count at once.
    pub fn peak_rps(&self) -> f64 {
        self.phases
            .iter()
            .map(|p| match p.kind {
                PhaseKind::Rate { from, to } => from.max(to),
                PhaseKind::Burst => p.count as f64 * 1000.0,
            })
            .fold(0.0, f64::max)
    }

    /// Planned arrivals per second over the whole plan.
    pub fn offered_rps(&self) -> f64 {
        let d = self.duration.as_secs_f64();
        if d > 0.0 {
            self.total as f64 / d
        } else {
            self.total as f64
        }
    }
}

/// Replica `index` of `count`: it owns arrivals `i` with `i % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Arrivals of `total` that fall to this shard.
    pub fn len(&self, total: u64) -> u64 {
        if total > self.index {
            (total - self.index).div_ceil(self.count)
        } else {
            0
        }
    }

    /// Plan index of this shard's `k`-th arrival.
    pub fn global(&self, k: u64) -> u64 {
        k * self.count + self.index
    }
}

/// The closed model: users that run iterations back to back.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedPlan {
    pub concurrency: u32,
    /// Users start evenly spread over this time.
    pub ramp_up: Duration,
    /// Stop starting iterations after this; `None` when only `iterations` bounds the run.
    pub duration: Option<Duration>,
    pub think: Duration,
    pub iterations: Option<u64>,
}

impl ClosedPlan {
    pub fn from_config(c: &LoadConfig) -> Self {
        ClosedPlan {
            concurrency: c
                .concurrency
                .or(c.level.map(|l| l.concurrency()))
                .unwrap_or(1),
            ramp_up: c.ramp_up.as_duration(),
            duration: c.closed_duration().map(|d| d.as_duration()),
            think: c.think.as_duration(),
            iterations: c.iterations,
        }
    }

    /// When user `v` starts, relative to the run's start.
    pub fn start_of(&self, v: u32) -> Duration {
        if self.concurrency <= 1 {
            return Duration::ZERO;
        }
        self.ramp_up
            .mul_f64(f64::from(v) / f64::from(self.concurrency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn phase(d: u64, rate: Option<f64>, ramp_to: Option<f64>, burst: Option<u32>) -> PhaseConfig {
        PhaseConfig {
            name: None,
            duration: Some(HumanDuration::from_secs(d)),
            rate,
            ramp_to,
            burst,
        }
    }

    #[test]
    fn constant_rate_spaces_arrivals_evenly() {
        let p = ArrivalPlan::constant(100.0, Duration::from_secs(2));
        assert_eq!(p.total, 200);
        assert_eq!(p.offset_of(0), Duration::ZERO);
        assert_eq!(p.offset_of(50), Duration::from_millis(500));
        assert!((p.offered_rps() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn seed_002_phases_warm_sustain_peak_cool() {
        // warm-up 5→50 over 10 s, sustained 50 for 20 s, peak 50→100 over 10 s, cool-down.
        let p = ArrivalPlan::from_phases(&[
            phase(10, Some(5.0), Some(50.0), None),
            phase(20, Some(50.0), None, None),
            phase(10, Some(50.0), Some(100.0), None),
            phase(10, Some(100.0), Some(5.0), None),
        ]);
        assert_eq!(p.phases[0].count, 275);
        assert_eq!(p.phases[1].count, 1000);
        assert_eq!(p.phases[2].count, 750);
        assert_eq!(p.phases[3].count, 525);
        assert_eq!(p.total, 2550);
        assert_eq!(p.duration, Duration::from_secs(50));
        // Offsets never go backwards and each stays inside its phase.
        let mut last = Duration::ZERO;
        for i in 0..p.total {
            let t = p.offset_of(i);
            assert!(t >= last, "arrival {i} at {t:?} before {last:?}");
            last = t;
        }
        assert!(last <= p.duration);
        // In a ramp, arrivals get denser: the first second of warm-up holds fewer than the last.
        let in_window = |from: f64, to: f64| {
            (0..p.total)
                .filter(|&i| {
                    let t = p.offset_of(i).as_secs_f64();
                    t >= from && t < to
                })
                .count()
        };
        assert!(in_window(0.0, 1.0) < in_window(9.0, 10.0));
        // Rate at t≈9.5 s is 5 + 45·0.95 ≈ 47.75/s.
        let n = in_window(9.0, 10.0) as f64;
        assert!((n - 47.75).abs() <= 2.0, "{n}");
    }

    #[test]
    fn peak_rate_is_the_busiest_phase() {
        let p = ArrivalPlan::from_phases(&[
            phase(10, Some(5.0), Some(50.0), None),
            phase(10, Some(80.0), Some(20.0), None),
        ]);
        assert!((p.peak_rps() - 80.0).abs() < 1e-9);
        let b = ArrivalPlan::from_phases(&[phase(1, None, None, Some(100))]);
        assert!(b.peak_rps() >= 100_000.0);
    }

    #[test]
    fn burst_releases_everything_at_the_phase_start() {
        let p = ArrivalPlan::from_phases(&[
            phase(1, Some(10.0), None, None),
            phase(2, None, None, Some(100)),
        ]);
        assert_eq!(p.total, 110);
        for i in 10..110 {
            assert_eq!(p.offset_of(i), Duration::from_secs(1));
        }
    }

    #[test]
    fn shards_deliver_exactly_the_plan() {
        let p = ArrivalPlan::constant(997.0, Duration::from_secs(3));
        for n in 1..=7u64 {
            let mut seen = vec![0u8; p.total as usize];
            let mut sum = 0;
            for s in 0..n {
                let shard = Shard { index: s, count: n };
                let len = shard.len(p.total);
                sum += len;
                for k in 0..len {
                    seen[shard.global(k) as usize] += 1;
                }
            }
            assert_eq!(sum, p.total, "{n} shards");
            assert!(
                seen.iter().all(|&c| c == 1),
                "{n} shards: an arrival run twice or never"
            );
        }
        assert_eq!(Shard { index: 5, count: 8 }.len(3), 0);
    }

    #[test]
    fn closed_users_spread_over_ramp() {
        let c = ClosedPlan {
            concurrency: 4,
            ramp_up: Duration::from_secs(4),
            duration: Some(Duration::from_secs(10)),
            think: Duration::ZERO,
            iterations: None,
        };
        assert_eq!(c.start_of(0), Duration::ZERO);
        assert_eq!(c.start_of(3), Duration::from_secs(3));
    }
}

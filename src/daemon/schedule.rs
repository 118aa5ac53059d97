//! When a probe runs next: fixed intervals or cron times, plus jitter.
//!
//! Missed ticks (the host slept, the daemon was paused, a run overran) are never replayed:
//! the next tick is always the first one after *now*, so a pause costs runs, not a burst.
//!
//! An interval schedule's first run comes soon after the daemon starts, not one interval
//! later (a probe `every = "1h"` would otherwise show nothing for an hour): at a random offset
//! within the first `min(every, 30 s)`, so that many probes do not all start at once, and its
//! later ticks count from that first run. A cron schedule keeps its wall-clock times.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::config::{parse_cron, CronError, ScheduleConfig};

/// A probe's schedule, compiled.
#[derive(Debug, Clone)]
pub struct Schedule {
    rule: Rule,
    jitter: Duration,
}

#[derive(Debug, Clone)]
enum Rule {
    /// Ticks at `anchor + k × every`.
    Every {
        every: Duration,
        anchor: SystemTime,
    },
    Cron(Box<cron::Schedule>),
}

/// Why a schedule could not be compiled (validation refuses both first).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error("a schedule needs `every` or `cron`")]
    Empty,
}

impl Schedule {
    /// Compiles a validated schedule; `anchor` is when interval counting starts.
    pub fn new(cfg: &ScheduleConfig, anchor: SystemTime) -> Result<Self, ScheduleError> {
        let rule = match (&cfg.every, &cfg.cron) {
            (Some(e), _) => Rule::Every {
                every: e.as_duration(),
                anchor,
            },
            (None, Some(c)) => Rule::Cron(Box::new(parse_cron(c)?)),
            (None, None) => return Err(ScheduleError::Empty),
        };
        Ok(Schedule {
            rule,
            jitter: cfg.jitter.as_duration(),
        })
    }

    /// Longest a first run waits after the daemon starts.
    pub const FIRST_RUN_WINDOW: Duration = Duration::from_secs(30);

    /// Compiles a schedule for a daemon starting at `now`, and says when its first run is:
    /// an interval schedule at a random offset within `min(every, FIRST_RUN_WINDOW)` of `now`
    /// (its ticks then count from there), a cron schedule at its next time.
    pub fn starting(
        cfg: &ScheduleConfig,
        now: SystemTime,
    ) -> Result<(Self, Option<SystemTime>), ScheduleError> {
        match &cfg.every {
            Some(e) => {
                let window = e.as_duration().min(Self::FIRST_RUN_WINDOW);
                let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
                let first = now + Duration::from_nanos(fastrand::u64(0..nanos.max(1)));
                Ok((Schedule::new(cfg, first)?, Some(first)))
            }
            None => {
                let s = Schedule::new(cfg, now)?;
                let first = s.next_tick(now).map(|t| t + s.jitter());
                Ok((s, first))
            }
        }
    }

    /// The first tick strictly after `now` (without jitter).
    pub fn next_tick(&self, now: SystemTime) -> Option<SystemTime> {
        match &self.rule {
            Rule::Every { every, anchor } => {
                let since = now.duration_since(*anchor).unwrap_or_default();
                let k = since.as_nanos() / every.as_nanos() + 1;
                let offset = every.as_nanos() * k;
                Some(*anchor + Duration::from_nanos(u64::try_from(offset).ok()?))
            }
            Rule::Cron(c) => {
                let now: DateTime<Utc> = now.into();
                c.after(&now).next().map(SystemTime::from)
            }
        }
    }

    /// A random delay in `[0, jitter)` to add to a tick.
    pub fn jitter(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_nanos(fastrand::u64(
            0..u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX),
        ))
    }

    /// How the schedule reads in listings.
    pub fn describe(cfg: &ScheduleConfig) -> String {
        let base = match (&cfg.every, &cfg.cron) {
            (Some(e), _) => format!("every {e}"),
            (None, Some(c)) => format!("cron {c}"),
            (None, None) => "never".into(),
        };
        if cfg.jitter.is_zero() {
            base
        } else {
            format!("{base} (jitter {})", cfg.jitter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(every: Option<&str>, cron: Option<&str>, jitter: &str) -> ScheduleConfig {
        serde_json::from_value(serde_json::json!({
            "every": every, "cron": cron, "jitter": jitter
        }))
        .unwrap()
    }

    #[test]
    fn every_skips_missed_ticks_instead_of_replaying_them() {
        let anchor = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = Schedule::new(&cfg(Some("10s"), None, "0s"), anchor).unwrap();
        assert_eq!(s.next_tick(anchor), Some(anchor + Duration::from_secs(10)));
        // A pause of 95 s: the next tick is the one after now, not the nine missed ones.
        let now = anchor + Duration::from_secs(95);
        assert_eq!(s.next_tick(now), Some(anchor + Duration::from_secs(100)));
        // Exactly on a tick: the next one, never the same instant twice.
        assert_eq!(
            s.next_tick(anchor + Duration::from_secs(100)),
            Some(anchor + Duration::from_secs(110))
        );
    }

    #[test]
    fn an_interval_runs_first_soon_after_the_start_then_keeps_its_pace() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for _ in 0..200 {
            let (s, first) = Schedule::starting(&cfg(Some("1h"), None, "0s"), now).unwrap();
            let first = first.unwrap();
            let wait = first.duration_since(now).unwrap();
            assert!(wait < Schedule::FIRST_RUN_WINDOW, "{wait:?}");
            assert_eq!(s.next_tick(first), Some(first + Duration::from_secs(3600)));
            let (_, first) = Schedule::starting(&cfg(Some("2s"), None, "0s"), now).unwrap();
            assert!(first.unwrap().duration_since(now).unwrap() < Duration::from_secs(2));
        }
    }

    #[test]
    fn cron_has_six_fields_with_seconds_in_utc() {
        let s = Schedule::new(
            &cfg(None, Some("30 */5 * * * *"), "0s"),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        // 1970-01-01T00:07:00Z → next is 00:10:30.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(7 * 60);
        assert_eq!(
            s.next_tick(now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 60 + 30))
        );
        let err = parse_cron("*/5 * * * *").unwrap_err();
        assert!(
            matches!(err, CronError::FieldCount { fields: 5, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("has 5 fields; expected 6"),
            "{err}"
        );
        assert!(parse_cron("0 0 25 * * *").is_err());
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        let s = Schedule::new(&cfg(Some("1m"), None, "2s"), SystemTime::now()).unwrap();
        let mut seen_nonzero = false;
        for _ in 0..1000 {
            let j = s.jitter();
            assert!(j < Duration::from_secs(2));
            seen_nonzero |= j > Duration::from_millis(10);
        }
        assert!(seen_nonzero);
        let none = Schedule::new(&cfg(Some("1m"), None, "0s"), SystemTime::now()).unwrap();
        assert_eq!(none.jitter(), Duration::ZERO);
    }
}

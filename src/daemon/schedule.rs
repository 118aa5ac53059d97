//! When a probe runs next: fixed intervals or cron times, plus jitter.
//!
//! Missed ticks (the host slept, the daemon was paused, a run overran) are never replayed:
//! the next tick is always the first one after *now*, so a pause costs runs, not a burst.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::config::{parse_cron, ScheduleConfig};

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

impl Schedule {
    /// Compiles a validated schedule; `anchor` is when interval counting starts.
    pub fn new(cfg: &ScheduleConfig, anchor: SystemTime) -> Result<Self, String> {
        let rule = match (&cfg.every, &cfg.cron) {
            (Some(e), _) => Rule::Every {
                every: e.as_duration(),
                anchor,
            },
            (None, Some(c)) => Rule::Cron(Box::new(parse_cron(c)?)),
            (None, None) => return Err("a schedule needs `every` or `cron`".into()),
        };
        Ok(Schedule {
            rule,
            jitter: cfg.jitter.as_duration(),
        })
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
        assert!(err.contains("has 5 fields; expected 6"), "{err}");
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

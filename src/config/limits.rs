//! Ceilings of every rate, count, size and duration a configuration may ask for (`[limits]`).
//!
//! A monitor that runs against production must refuse `rate = 1e12` at load time instead of
//! trying it. Every such value is checked against a ceiling here; the defaults cover any
//! realistic probe, and a user who really means more raises the ceiling deliberately in the
//! `[limits]` table (or `PLIMSOLL__LIMITS__RATE=…`), which then shows in review and in the file.
//!
//! The ceilings themselves have hard bounds (`HARD_MAX_*`) that no table can raise: beyond them
//! the arithmetic of the run (instants, counters) would overflow rather than merely be large.
//! Like the rest of `config`, this module only reads and checks.

use serde::Deserialize;

use super::{HumanDuration, Problems};

/// The `[limits]` table: the ceilings validation holds every probe to.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Highest rate of any probe, per second: load phases (`rate`, `ramp_to`), `sql.rate`,
    /// `pubsub.rate`, `target_rps`.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Largest `burst` of a load phase (iterations released at once).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Most concurrent users or sessions: `load.concurrency`, `sql.concurrency`,
    /// `sql.pool_size`, `pubsub.publishers`.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Most worker threads of a load probe (`load.workers`).
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Largest `max_in_flight` of a load or SQL probe.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Largest count of repetitions: `load.iterations`, `race.rounds`, `redis.operations`,
    /// `redis.key_space`, a flow step's `loop`, `shard.count`.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Longest duration anywhere in the file: run lengths, timeouts, pauses, schedules, TTLs.
    #[serde(default = "default_duration")]
    pub duration: HumanDuration,
    /// Largest response body a probe reads (`max_body_bytes`).
    #[serde(default = "default_body_bytes")]
    pub body_bytes: u64,
    /// Largest data file of a flow (`load.data.file`), in bytes.
    #[serde(default = "default_data_file_bytes")]
    pub data_file_bytes: u64,
    /// Largest OTLP queue or span count (`otlp.span_queue_size`, `otlp.max_client_spans`).
    #[serde(default = "default_queue")]
    pub queue: u32,
}

fn default_rate() -> f64 {
    100_000.0
}
fn default_burst() -> u32 {
    100_000
}
fn default_concurrency() -> u32 {
    10_000
}
fn default_workers() -> u32 {
    256
}
fn default_max_in_flight() -> u32 {
    100_000
}
fn default_count() -> u64 {
    1_000_000_000
}
fn default_duration() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_body_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_data_file_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_queue() -> u32 {
    1_000_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: default_rate(),
            burst: default_burst(),
            concurrency: default_concurrency(),
            workers: default_workers(),
            max_in_flight: default_max_in_flight(),
            count: default_count(),
            duration: default_duration(),
            body_bytes: default_body_bytes(),
            data_file_bytes: default_data_file_bytes(),
            queue: default_queue(),
        }
    }
}

/// No `[limits] duration` may exceed a year (365.25 days): instants a year away are still exact, and no
/// probe or schedule needs more.
pub const HARD_MAX_DURATION: HumanDuration = HumanDuration::from_secs(31_557_600);
/// No `[limits] rate` may exceed a billion per second: one arrival per nanosecond is the
/// resolution of the planner's clock.
pub const HARD_MAX_RATE: f64 = 1e9;
/// No `[limits] data_file_bytes` may exceed 4 GiB: the rows are held in memory.
pub const HARD_MAX_DATA_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Largest configuration file read, in bytes: anything bigger is not a configuration
/// (`--config /dev/zero`), and reading it whole would exhaust memory.
pub const MAX_CONFIG_BYTES: u64 = 10 * 1024 * 1024;
/// Largest `file:` secret read, in bytes.
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024;

impl Limits {
    /// Checks the table itself: every ceiling present, positive, and under its hard bound.
    pub fn validate(&self, problems: &mut Problems) {
        if !self.rate.is_finite() {
            problems.push("limits.rate", "must be a finite number");
        } else if !(self.rate > 0.0 && self.rate <= HARD_MAX_RATE) {
            problems.push(
                "limits.rate",
                format!("must be between 0 and {HARD_MAX_RATE} (excluded 0)"),
            );
        }
        for (name, v) in [
            ("burst", u64::from(self.burst)),
            ("concurrency", u64::from(self.concurrency)),
            ("workers", u64::from(self.workers)),
            ("max_in_flight", u64::from(self.max_in_flight)),
            ("count", self.count),
            ("body_bytes", self.body_bytes),
            ("data_file_bytes", self.data_file_bytes),
            ("queue", u64::from(self.queue)),
        ] {
            if v == 0 {
                problems.push(format!("limits.{name}"), "must be greater than 0");
            }
        }
        if self.data_file_bytes > HARD_MAX_DATA_FILE_BYTES {
            problems.push(
                "limits.data_file_bytes",
                format!("must be at most {HARD_MAX_DATA_FILE_BYTES}"),
            );
        }
        if self.duration.is_zero() {
            problems.push("limits.duration", "must be greater than 0");
        } else if self.duration > HARD_MAX_DURATION {
            problems.push(
                "limits.duration",
                format!("must be at most {HARD_MAX_DURATION}"),
            );
        }
    }

    /// A rate: finite, above 0 (or at least 0 when `zero_ok`), at most `limits.rate`.
    pub fn check_rate(&self, path: impl Into<String>, r: f64, zero_ok: bool, p: &mut Problems) {
        let path = path.into();
        if !r.is_finite() {
            p.push(path, "must be a finite number");
        } else if zero_ok && r < 0.0 {
            p.push(path, "must be 0 or greater");
        } else if !zero_ok && r <= 0.0 {
            p.push(path, "must be greater than 0");
        } else if r > self.rate {
            p.push(path, over("rate", format!("{} per second", self.rate)));
        }
    }

    /// A duration: at most `limits.duration`. Zero is each field's own business.
    pub fn check_duration(&self, path: impl Into<String>, d: HumanDuration, p: &mut Problems) {
        if d > self.duration {
            p.push(path, over("duration", self.duration.to_string()));
        }
    }

    /// A count against one of the ceilings, named by its `[limits]` field.
    pub fn check_count(&self, path: impl Into<String>, v: u64, ceiling: Ceiling, p: &mut Problems) {
        let (name, max) = match ceiling {
            Ceiling::Burst => ("burst", u64::from(self.burst)),
            Ceiling::Concurrency => ("concurrency", u64::from(self.concurrency)),
            Ceiling::Workers => ("workers", u64::from(self.workers)),
            Ceiling::MaxInFlight => ("max_in_flight", u64::from(self.max_in_flight)),
            Ceiling::Count => ("count", self.count),
            Ceiling::BodyBytes => ("body_bytes", self.body_bytes),
            Ceiling::Queue => ("queue", u64::from(self.queue)),
        };
        if v > max {
            p.push(path, over(name, max.to_string()));
        }
    }
}

/// The ceilings a count can be held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    Burst,
    Concurrency,
    Workers,
    MaxInFlight,
    Count,
    BodyBytes,
    Queue,
}

fn over(field: &str, max: String) -> String {
    format!("must be at most {max} (raise `[limits] {field}` to allow more)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_ceiling_to_raise() {
        let l = Limits::default();
        let mut p = Problems::default();
        l.check_rate("x", 1e12, false, &mut p);
        l.check_rate("y", f64::NAN, false, &mut p);
        l.check_rate("z", f64::INFINITY, true, &mut p);
        l.check_count("w", 100_000, Ceiling::Workers, &mut p);
        let e: Vec<String> = p.into_errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            e,
            [
                "x: must be at most 100000 per second (raise `[limits] rate` to allow more)",
                "y: must be a finite number",
                "z: must be a finite number",
                "w: must be at most 256 (raise `[limits] workers` to allow more)",
            ]
        );
    }
}

//! Settings of the daemon (`plimsoll run`): its HTTP endpoints, shutdown grace, and each
//! probe's schedule.

use serde::Deserialize;

use super::{HumanDuration, Limits, Problems, Secret};

/// The `[daemon]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`, `/api/v1/probes`,
    /// `/`). Port 0 picks a free port (the log says which).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// When set, `/metrics`, `/api/v1/probes` and `/` require `Authorization: Bearer <token>`.
    /// `/healthz` and `/readyz` stay open: they reveal nothing and orchestrators probe them.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// On SIGTERM, how long running probes may go on before they are stopped (they then
    /// return what they measured).
    #[serde(default = "default_grace_period")]
    pub grace_period: HumanDuration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: default_listen(),
            bearer_token: None,
            grace_period: default_grace_period(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}
fn default_grace_period() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl DaemonConfig {
    pub fn validate(&mut self, limits: &Limits, problems: &mut Problems) {
        limits.check_duration("daemon.grace_period", self.grace_period, problems);
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(
                "daemon.listen",
                format!("{:?} is not an IP:port address", self.listen),
            );
        }
        if let Some(t) = &mut self.bearer_token {
            if let Err(e) = t.resolve() {
                problems.push("daemon.bearer_token", e);
            } else if t.expose().is_empty() {
                problems.push("daemon.bearer_token", "must not be empty");
            }
        }
    }
}

/// When the daemon runs a probe: `every` or `cron`, plus a random delay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Run at this interval, counted from the daemon's start (`"30s"`, `"5m"`).
    #[serde(default)]
    pub every: Option<HumanDuration>,
    /// Run at the times of this cron expression, in UTC, with 6 fields
    /// (`sec min hour day-of-month month day-of-week`), e.g. `"0 */5 * * * *"`.
    #[serde(default)]
    pub cron: Option<String>,
    /// Each run starts after a random delay between 0 and this, so that many daemons or
    /// probes do not all fire on the same second.
    #[serde(default = "default_jitter")]
    pub jitter: HumanDuration,
}

fn default_jitter() -> HumanDuration {
    HumanDuration::default()
}

impl ScheduleConfig {
    pub fn validate(&self, path: &str, limits: &Limits, problems: &mut Problems) {
        limits.check_duration(format!("{path}.jitter"), self.jitter, problems);
        match (&self.every, &self.cron) {
            (None, None) => problems.push(path, "missing: `every` (an interval) or `cron`"),
            (Some(_), Some(_)) => problems.push(path, "`every` and `cron` exclude each other"),
            (Some(e), None) => {
                if e.as_duration() < std::time::Duration::from_millis(100) {
                    problems.push(format!("{path}.every"), "must be at least 100ms");
                } else if *e > limits.duration {
                    limits.check_duration(format!("{path}.every"), *e, problems);
                } else if self.jitter >= *e {
                    // A delay as long as the interval would let runs overlap or pile up.
                    problems.push(
                        format!("{path}.jitter"),
                        format!("must be shorter than the interval (`every` = {e})"),
                    );
                }
            }
            (None, Some(c)) => match parse_cron(c) {
                Err(e) => problems.push(format!("{path}.cron"), e),
                Ok(schedule) if schedule.upcoming(chrono::Utc).next().is_none() => problems.push(
                    format!("{path}.cron"),
                    format!("{c:?} never fires (no such date ahead)"),
                ),
                Ok(schedule) => {
                    if let Some(gap) = shortest_gap(&schedule) {
                        if !self.jitter.is_zero() && self.jitter.as_duration() >= gap {
                            problems.push(
                                format!("{path}.jitter"),
                                format!(
                                    "must be shorter than the time between two runs of the \
                                     cron expression ({})",
                                    HumanDuration(gap)
                                ),
                            );
                        }
                    }
                }
            },
        }
    }
}

/// The shortest time between two of the next few runs of a cron schedule.
fn shortest_gap(schedule: &cron::Schedule) -> Option<std::time::Duration> {
    let times: Vec<_> = schedule.upcoming(chrono::Utc).take(16).collect();
    times
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .min()
}

/// Why a cron expression was refused.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(
        "{text:?} has {fields} fields; expected 6 (sec min hour day-of-month month \
         day-of-week), e.g. \"0 */5 * * * *\""
    )]
    FieldCount { text: String, fields: usize },
    #[error("{text:?} is not a valid cron expression: {source}")]
    Invalid {
        text: String,
        source: cron::error::Error,
    },
}

/// Parses a 6-field (seconds first) cron expression; a 7th field (year) is allowed.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, CronError> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(CronError::FieldCount {
            text: text.to_string(),
            fields,
        });
    }
    text.parse::<cron::Schedule>()
        .map_err(|source| CronError::Invalid {
            text: text.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    fn problems(text: &str) -> Vec<String> {
        match load_str(text, std::iter::empty()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn bad_daemon_and_schedule_settings_are_named_by_path() {
        let p = problems(
            r#"
[daemon]
listen = "localhost"
grace_period = "soon"
[[probe]]
name = "a"
kind = "load"
schedule = { cron = "*/5 * * * *" }
[probe.load]
concurrency = 1
request = { url = "http://127.0.0.1:1/" }
[[probe]]
name = "b"
kind = "load"
schedule = { every = "1m", cron = "0 * * * * *" }
[probe.load]
concurrency = 1
request = { url = "http://127.0.0.1:1/" }
[[probe]]
name = "c"
kind = "load"
schedule = { jitter = "1s" }
[probe.load]
concurrency = 1
request = { url = "http://127.0.0.1:1/" }
"#,
        );
        let all = p.join("\n");
        for expected in [
            "daemon.grace_period",
            "probe[0].schedule.cron: \"*/5 * * * *\" has 5 fields; expected 6",
            "probe[1].schedule: `every` and `cron` exclude each other",
            "probe[2].schedule: missing: `every` (an interval) or `cron`",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn listen_must_be_an_address() {
        let all = problems("[daemon]\nlisten = \"localhost\"\n").join("\n");
        assert!(
            all.contains("daemon.listen: \"localhost\" is not an IP:port address"),
            "{all}"
        );
    }
}

//! Settings of the daemon (`plimsoll run`): its HTTP endpoints, shutdown grace, and each
//! probe's schedule.

use serde::Deserialize;

use super::{HumanDuration, Problems, Secret};

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
    pub fn validate(&mut self, problems: &mut Problems) {
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
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        match (&self.every, &self.cron) {
            (None, None) => problems.push(path, "missing: `every` (an interval) or `cron`"),
            (Some(_), Some(_)) => problems.push(path, "`every` and `cron` exclude each other"),
            (Some(e), None) => {
                if e.as_duration() < std::time::Duration::from_millis(100) {
                    problems.push(format!("{path}.every"), "must be at least 100ms");
                }
            }
            (None, Some(c)) => {
                if let Err(e) = parse_cron(c) {
                    problems.push(format!("{path}.cron"), e);
                }
            }
        }
    }
}

/// Parses a 6-field (seconds first) cron expression; a 7th field (year) is allowed.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "{text:?} has {fields} fields; expected 6 (sec min hour day-of-month month \
             day-of-week), e.g. \"0 */5 * * * *\""
        ));
    }
    text.parse::<cron::Schedule>()
        .map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))
}

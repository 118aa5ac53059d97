//! The `[guardrails]` table: what keeps a load probe from becoming the thing that takes a
//! production service down. A host allowlist, hard caps on rate and concurrency, abort
//! conditions watched during a run, a pause file (the kill switch beside `POST
//! /api/v1/pause`) and blackout windows in which no load probe starts.
//!
//! One table rather than fields of `[daemon]`: `plimsoll once` honours the same guardrails as
//! the daemon. Like the rest of `config`, this module only reads and checks; enforcing is
//! `probe::guard`'s business.

use std::path::PathBuf;

use serde::Deserialize;

use super::{parse_cron, HumanDuration, Problems};

/// The `[guardrails]` table. Every guard is off until configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsConfig {
    /// Hosts load probes may send to (`api.example.com`, `*.staging.example.com`,
    /// `127.0.0.1`). A probe with a request to any other host does not start. Empty: any host.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Most requests per second one probe run may offer; a probe asking for more is held to
    /// it (and the result says so). The daemon runs the load probes of one target one at a
    /// time, so this is also the cap per target unless probes set `share_target`.
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// Most requests per second all the load probes running at once may offer together,
    /// whatever their targets: a run is granted what the runs before it left (and held to
    /// it, noted in its result), and does not start when less than 1 req/s is left.
    #[serde(default)]
    pub max_total_rate: Option<f64>,
    /// Most requests in flight (open model) or users (closed model) of one probe run.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Stop a running probe when its target shows distress.
    #[serde(default)]
    pub abort: AbortConfig,
    /// While this file exists, no load probe starts and running ones stop within a second
    /// (the kill switch for those without the API's token).
    #[serde(default)]
    pub pause_file: Option<PathBuf>,
    /// Cron expressions (6 fields, UTC); during any second they match, no load probe starts
    /// (`"* * 8-17 * * Mon-Fri"`: office hours on weekdays).
    #[serde(default)]
    pub blackout: Vec<String>,
}

/// Abort conditions, evaluated several times a second on a sliding window of the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortConfig {
    /// Abort when the window's failed requests / requests exceed this (0 to 1).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Abort when the window's p99 latency (successful requests, from the planned send
    /// time, read from the engine's live histogram: to within a quarter) exceeds this, in ms.
    #[serde(default)]
    pub p99_ms: Option<f64>,
    /// Length of the sliding window.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// The error rate and p99 are judged only once the window holds this many requests.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// An `http://` URL of the target's own health check, fetched every second during a
    /// load run; a non-2xx answer or no answer within `health_timeout` aborts the run.
    #[serde(default)]
    pub health_url: Option<String>,
    /// How long the health check may take.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: HumanDuration,
}

impl Default for AbortConfig {
    fn default() -> Self {
        AbortConfig {
            error_rate: None,
            p99_ms: None,
            window: default_window(),
            min_requests: default_min_requests(),
            health_url: None,
            health_timeout: default_health_timeout(),
        }
    }
}

fn default_window() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_min_requests() -> u64 {
    10
}
fn default_health_timeout() -> HumanDuration {
    HumanDuration::from_secs(1)
}

impl GuardrailsConfig {
    pub fn validate(&self, problems: &mut Problems) {
        let at = "guardrails";
        for (i, h) in self.allow_hosts.iter().enumerate() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty()
                || (bare.contains(['/', ':', ' ']) && bare.parse::<std::net::IpAddr>().is_err())
            {
                problems.push(
                    format!("{at}.allow_hosts[{i}]"),
                    format!("{h:?} is not a host name, `*.domain` or IP address"),
                );
            }
        }
        if let Some(r) = self.max_rate {
            if !(r > 0.0 && r.is_finite()) {
                problems.push(format!("{at}.max_rate"), "must be greater than 0");
            }
        }
        if let Some(r) = self.max_total_rate {
            if !(r >= 1.0 && r.is_finite()) {
                problems.push(format!("{at}.max_total_rate"), "must be at least 1");
            }
        }
        if self.max_concurrency == Some(0) {
            problems.push(format!("{at}.max_concurrency"), "must be greater than 0");
        }
        if let Some(e) = self.abort.error_rate {
            if !(0.0..=1.0).contains(&e) {
                problems.push(format!("{at}.abort.error_rate"), "must be from 0 to 1");
            }
        }
        if let Some(p) = self.abort.p99_ms {
            if !(p > 0.0 && p.is_finite()) {
                problems.push(format!("{at}.abort.p99_ms"), "must be greater than 0");
            }
        }
        if self.abort.window.is_zero() {
            problems.push(format!("{at}.abort.window"), "must be greater than 0");
        }
        if self.abort.health_timeout.is_zero() {
            problems.push(
                format!("{at}.abort.health_timeout"),
                "must be greater than 0",
            );
        }
        if let Some(u) = &self.abort.health_url {
            if !u.starts_with("http://") {
                problems.push(
                    format!("{at}.abort.health_url"),
                    "must be an http:// URL (the health check speaks plain HTTP/1.1)",
                );
            }
        }
        for (i, b) in self.blackout.iter().enumerate() {
            if let Err(e) = parse_cron(b) {
                problems.push(format!("{at}.blackout[{i}]"), e);
            }
        }
    }
}

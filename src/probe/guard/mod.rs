//! Guardrails around every load-generating probe run (`[guardrails]`): the host allowlist,
//! hard caps on rate and concurrency, abort conditions watched while the run goes on, the
//! kill switch (pause flag and pause file) and blackout windows.
//!
//! [`guarded_run`] wraps a kind's run: it refuses a run that would send to a host not on the
//! list, holds the kind's table to the caps (saying so in the result's notes), and watches the
//! run from a monitor thread that stops it within a second of an abort condition or a pause.
//! This module decides and stops; it must not measure requests itself (it reads the engine's
//! live counters), name metrics (telemetry reads the result's `aborted`/`refused`), or know
//! about the daemon's endpoints (they call [`Guard::pause`]).

mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{RunContext, Sends};
use crate::config::{parse_cron, Config, GuardrailsConfig, ProbeConfig, ProbeSpec};
use crate::report::{round3, ProbeResult};
use crate::verdict::Grade;
use watch::Monitor;

/// The guardrails' live state: the configuration, the pause flag, the parsed blackouts.
/// One per process (the daemon's `Shared` and `once` each own an `Arc`); runs hold clones.
#[derive(Debug, Default)]
pub struct Guard {
    cfg: GuardrailsConfig,
    /// Shared with the guards that replace this one on reload, so a run started before a
    /// reload still sees the kill switch.
    paused: Arc<AtomicBool>,
    blackout: Vec<cron::Schedule>,
    /// Requests per second granted to the runs going on now, out of
    /// `guardrails.max_total_rate`; shared with the guards that replace this one on reload.
    granted: Arc<Mutex<f64>>,
}

/// Why runs may not start or must stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseSource {
    /// `POST /api/v1/pause`.
    Api,
    /// The pause file exists.
    File,
}

impl Guard {
    pub fn new(cfg: &GuardrailsConfig) -> Guard {
        Guard {
            cfg: cfg.clone(),
            paused: Arc::new(AtomicBool::new(false)),
            granted: Arc::new(Mutex::new(0.0)),
            // Validation has refused a bad expression; one that slips by is ignored.
            blackout: cfg
                .blackout
                .iter()
                .filter_map(|b| parse_cron(b).ok())
                .collect(),
        }
    }

    /// Replaces the configuration (reload), keeping the pause flag.
    pub fn reconfigured(&self, cfg: &GuardrailsConfig) -> Guard {
        Guard {
            paused: self.paused.clone(),
            granted: self.granted.clone(),
            ..Guard::new(cfg)
        }
    }

    pub fn config(&self) -> &GuardrailsConfig {
        &self.cfg
    }

    /// The kill switch: no load probe starts, running ones stop within a second.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Whether load is paused, and by what.
    pub fn paused(&self) -> Option<PauseSource> {
        if self.paused.load(Ordering::Relaxed) {
            Some(PauseSource::Api)
        } else if self.cfg.pause_file.as_ref().is_some_and(|f| f.exists()) {
            Some(PauseSource::File)
        } else {
            None
        }
    }

    /// The blackout expression `now` falls in, if any.
    pub fn blackout_at(&self, now: SystemTime) -> Option<&str> {
        let now: chrono::DateTime<chrono::Utc> = now.into();
        let second = now - chrono::Duration::seconds(1);
        self.blackout
            .iter()
            .zip(&self.cfg.blackout)
            .find(|(s, _)| s.after(&second).next().is_some_and(|t| t <= now))
            .map(|(_, text)| text.as_str())
    }

    /// Why a load run may not start now (pause or blackout), if it may not.
    pub fn hold_reason(&self, now: SystemTime) -> Option<String> {
        match self.paused() {
            Some(PauseSource::Api) => return Some("load is paused (POST /api/v1/pause)".into()),
            Some(PauseSource::File) => {
                let f = self
                    .cfg
                    .pause_file
                    .as_ref()
                    .map(|f| f.display().to_string());
                return Some(format!(
                    "load is paused: the pause file {} exists",
                    f.unwrap_or_default()
                ));
            }
            None => {}
        }
        self.blackout_at(now)
            .map(|b| format!("inside the blackout window {b:?} (guardrails.blackout)"))
    }
}

impl Guard {
    /// Takes a share of `guardrails.max_total_rate` for one run: what it asks (its peak rate
    /// after the caps; all that is left when its rate depends on the target, as a closed
    /// model's does) or what the runs going on left, holding the run to it. Race probes fire
    /// their claimants at once and are bounded by `max_concurrency` instead.
    fn grant(
        &self,
        capped: &mut ProbeConfig,
        notes: &mut Vec<String>,
    ) -> Result<Option<RateGrant>, String> {
        let Some(total) = self.cfg.max_total_rate else {
            return Ok(None);
        };
        if !capped.kind().draws_rate_budget() {
            return Ok(None);
        }
        // The table is already held to this guard's caps: what it asks for is what it sends.
        let asked = super::sends_of(&capped.spec).peak_rps;
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        let left = (total - *granted).max(0.0);
        let grant = asked.map_or(left, |a| a.min(left));
        if grant < 1.0 {
            return Err(format!(
                "the overall rate budget (guardrails.max_total_rate = {total} req/s) is taken \
                 by the probes running now"
            ));
        }
        if asked.is_none_or(|a| a > grant) {
            let held = GuardrailsConfig {
                max_rate: Some(round3(grant)),
                ..Default::default()
            };
            notes.extend(
                cap_spec_as(&held, &mut capped.spec, "guardrails.max_total_rate")
                    .into_iter()
                    .map(|n| format!("{n} (what the running probes left of {total} req/s)")),
            );
        }
        *granted += grant;
        Ok(Some(RateGrant {
            granted: self.granted.clone(),
            rate: grant,
        }))
    }
}

/// A run's share of the overall rate budget, given back when the run ends.
struct RateGrant {
    granted: Arc<Mutex<f64>>,
    rate: f64,
}

impl Drop for RateGrant {
    fn drop(&mut self) {
        let mut g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        *g = (*g - self.rate).max(0.0);
    }
}

/// Runs a probe inside the guardrails. `run` is the kind's run, given the capped probe.
pub fn guarded_run(
    config: &Config,
    probe: &ProbeConfig,
    ctx: &RunContext,
    run: impl FnOnce(&ProbeConfig, &RunContext) -> ProbeResult,
) -> ProbeResult {
    if !probe.kind().loads_target() {
        return run(probe, ctx);
    }
    let fallback;
    let guard = match &ctx.guard {
        Some(g) => g.as_ref(),
        None => {
            fallback = Guard::new(&config.guardrails);
            &fallback
        }
    };
    let refuse = |why: String| {
        tracing::warn!(probe = %probe.name, "not started: {why}");
        let mut r = ProbeResult::failed(probe, format!("not started: {why}"));
        r.refused = Some(why);
        r
    };
    if let Some(why) = disallowed_host(config, probe, &guard.cfg.allow_hosts) {
        return refuse(why);
    }
    if let Some(why) = guard.hold_reason(SystemTime::now()) {
        return refuse(why);
    }
    let mut capped = probe.clone();
    let mut notes = cap_spec(&guard.cfg, &mut capped.spec);
    let _grant = match guard.grant(&mut capped, &mut notes) {
        Ok(g) => g,
        Err(why) => return refuse(why),
    };
    let monitor = Monitor::start(guard, ctx);
    let mut r = run(&capped, &monitor.ctx);
    let aborted = monitor.finish();
    r.notes.extend(notes);
    if let Some(a) = aborted {
        tracing::warn!(probe = %probe.name, reason = %a.reason, after_s = a.after_s, "run aborted: {}", a.detail);
        r.notes.push(format!(
            "aborted by a guardrail after {:.2} s: {}",
            a.after_s, a.detail
        ));
        if a.reason != "paused" {
            r.grade = Grade::Critical;
        }
        r.aborted = Some(a);
    }
    r
}

/// The host of a URL (`http://user@h:80/x` → `h`); `None` for a relative URL.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

/// Every host a probe's requests go to (templated hosts are named as written).
pub fn hosts_of(config: &Config, probe: &ProbeConfig) -> Vec<String> {
    let urls = super::urls_of(&probe.spec);
    let target_host = config.target_of(probe).and_then(|t| host_of(&t.url));
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| host_of(u).or_else(|| target_host.clone()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn host_allowed(host: &str, allow: &[String]) -> bool {
    allow.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => a == "*" || a == host,
        }
    })
}

/// Why a probe may not send to its hosts, when the allowlist says so.
pub fn disallowed_host(config: &Config, probe: &ProbeConfig, allow: &[String]) -> Option<String> {
    if allow.is_empty() {
        return None;
    }
    let bad: Vec<String> = hosts_of(config, probe)
        .into_iter()
        .filter(|h| !host_allowed(h, allow))
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "host {} is not in guardrails.allow_hosts ({})",
            bad.join(", "),
            allow.join(", ")
        )
    })
}

/// Holds a kind's table to the caps; returns what was changed, in words.
pub fn cap_spec(g: &GuardrailsConfig, spec: &mut ProbeSpec) -> Vec<String> {
    cap_spec_as(g, spec, "guardrails.max_rate")
}

/// [`cap_spec`], naming the rate cap `rate_field` in the notes (the per-run cap or the share
/// of the overall budget a run was granted).
fn cap_spec_as(g: &GuardrailsConfig, spec: &mut ProbeSpec, rate_field: &str) -> Vec<String> {
    let mut notes = super::cap_spec(g, spec);
    for n in &mut notes {
        *n = n.replace("guardrails.max_rate", rate_field);
    }
    notes
}

/// A probe's plan for `once --dry-run`: nothing is sent.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// What it would send, after the caps.
    pub sends: Sends,
    pub hosts: Vec<String>,
    /// What the guardrails change or refuse.
    pub guardrails: Vec<String>,
}

/// Works out what a run would do, after the caps, without sending anything.
pub fn plan(config: &Config, probe: &ProbeConfig) -> RunPlan {
    let mut capped = probe.clone();
    let mut out = RunPlan {
        hosts: hosts_of(config, probe),
        ..Default::default()
    };
    if probe.kind().loads_target() {
        if let Some(why) = disallowed_host(config, probe, &config.guardrails.allow_hosts) {
            out.guardrails.push(format!("refused: {why}"));
        }
        out.guardrails
            .extend(cap_spec(&config.guardrails, &mut capped.spec));
    }
    out.sends = super::sends_of(&capped.spec);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_exactly_or_by_domain() {
        let allow = vec!["127.0.0.1".to_string(), "*.staging.example.com".to_string()];
        assert!(host_allowed("127.0.0.1", &allow));
        assert!(host_allowed("api.staging.example.com", &allow));
        assert!(!host_allowed("staging.example.com.evil.net", &allow));
        assert!(!host_allowed("localhost", &allow));
        assert_eq!(
            host_of("http://u:p@Example.com:8080/x"),
            Some("example.com".into())
        );
        assert_eq!(host_of("http://[::1]:80/"), Some("::1".into()));
        assert_eq!(host_of("/relative"), None);
    }

    #[test]
    fn blackout_windows_match_the_seconds_they_name() {
        let g = Guard::new(&GuardrailsConfig {
            blackout: vec!["* * 3 * * *".into()],
            ..Default::default()
        });
        let at = |h: u32| {
            let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 5)
                .and_then(|d| d.and_hms_opt(h, 30, 0))
                .map(|t| t.and_utc())
                .map(SystemTime::from);
            t.unwrap_or(SystemTime::UNIX_EPOCH)
        };
        assert!(g.blackout_at(at(3)).is_some());
        assert!(g.blackout_at(at(4)).is_none());
    }
}

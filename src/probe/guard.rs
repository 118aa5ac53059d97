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

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{OnStart, RunContext};
use crate::config::{parse_cron, Config, GuardrailsConfig, ProbeConfig, ProbeSpec};
use crate::engine::{live_bucket_bound_micros, Progress, LIVE_LATENCY_BUCKETS};
use crate::report::{round3, Abort, ProbeResult};
use crate::verdict::Grade;

/// How often the monitor looks at the run: well inside the one-second stop bound.
const TICK: Duration = Duration::from_millis(100);

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
        config: &Config,
        capped: &mut ProbeConfig,
        notes: &mut Vec<String>,
    ) -> Result<Option<RateGrant>, String> {
        let Some(total) = self.cfg.max_total_rate else {
            return Ok(None);
        };
        if !capped.kind().draws_rate_budget() {
            return Ok(None);
        }
        let asked = plan(config, capped).peak_rps;
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
    let _grant = match guard.grant(config, &mut capped, &mut notes) {
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

/// The watcher of one run: a thread that stops the run on an abort condition or a pause.
struct Monitor {
    /// The context the run gets: its own stop flag, and an `on_start` that hands the monitor
    /// the engine's live counters.
    ctx: RunContext,
    done: Arc<AtomicBool>,
    aborted: Arc<Mutex<Option<Abort>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(guard: &Guard, outer: &RunContext) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let aborted = Arc::new(Mutex::new(None));
        let progress: Arc<Mutex<Option<Arc<Progress>>>> = Arc::default();
        let inner_on_start = outer.on_start.clone();
        let slot = progress.clone();
        let on_start: OnStart = Arc::new(move |p: Arc<Progress>, d| {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
            if let Some(f) = &inner_on_start {
                f(p, d);
            }
        });
        let health = guard.cfg.abort.health_url.clone().map(|url| {
            Health::start(
                url,
                guard.cfg.abort.health_timeout.as_duration(),
                done.clone(),
            )
        });
        let watch = Watch {
            pause_file: guard.cfg.pause_file.clone(),
            guard_paused: outer.guard.clone(),
            cfg: guard.cfg.abort.clone(),
            outer_stop: outer.stop.clone(),
            stop: stop.clone(),
            done: done.clone(),
            aborted: aborted.clone(),
            progress,
            health,
        };
        let thread = std::thread::Builder::new()
            .name("guard-monitor".into())
            .spawn(move || watch.run())
            .ok();
        let ctx = RunContext {
            stop,
            on_start: Some(on_start),
            trace: outer.trace,
            guard: outer.guard.clone(),
        };
        Monitor {
            ctx,
            done,
            aborted,
            thread,
        }
    }

    fn finish(mut self) -> Option<Abort> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.aborted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// What the monitor thread owns.
struct Watch {
    pause_file: Option<std::path::PathBuf>,
    /// The process's guard, for the API's pause flag (`None` in tests without one).
    guard_paused: Option<Arc<Guard>>,
    cfg: crate::config::AbortConfig,
    outer_stop: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    aborted: Arc<Mutex<Option<Abort>>>,
    progress: Arc<Mutex<Option<Arc<Progress>>>>,
    health: Option<Health>,
}

/// Cumulative counts over every engine run of one probe run: a capacity search starts a
/// fresh engine (and fresh live counters) per step, and the window must span them.
#[derive(Clone)]
struct Tally {
    requests: u64,
    errors: u64,
    /// Successful requests per live latency bucket.
    latency: [u64; LIVE_LATENCY_BUCKETS],
}

impl Tally {
    fn zero() -> Tally {
        Tally {
            requests: 0,
            errors: 0,
            latency: [0; LIVE_LATENCY_BUCKETS],
        }
    }

    fn read(p: &Progress) -> Tally {
        let (requests, errors) = p.totals();
        Tally {
            requests,
            errors,
            latency: p.latency_buckets(),
        }
    }

    /// Adds what happened between `before` and `now` (two reads of one engine run).
    fn add_difference(&mut self, now: &Tally, before: &Tally) {
        self.requests += now.requests.saturating_sub(before.requests);
        self.errors += now.errors.saturating_sub(before.errors);
        for (t, (n, b)) in self
            .latency
            .iter_mut()
            .zip(now.latency.iter().zip(&before.latency))
        {
            *t += n.saturating_sub(*b);
        }
    }
}

/// The p99 of the successful requests between two tallies, in ms (the upper bound of the
/// live bucket it falls in); `None` when none succeeded.
fn window_p99_ms(now: &Tally, before: &Tally) -> Option<f64> {
    let counts: Vec<u64> = now
        .latency
        .iter()
        .zip(&before.latency)
        .map(|(n, b)| n.saturating_sub(*b))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(live_bucket_bound_micros(i) / 1000.0);
        }
    }
    None
}

impl Watch {
    fn run(self) {
        let began = Instant::now();
        // Cumulative tallies over every engine run of this probe run, sampled each tick.
        let mut window: VecDeque<(Instant, Tally)> = VecDeque::new();
        let mut seen: Option<(*const Progress, Tally)> = None;
        let mut total = Tally::zero();
        while !self.done.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            if self.outer_stop.load(Ordering::Relaxed) {
                self.stop.store(true, Ordering::Relaxed);
            }
            let paused = self
                .guard_paused
                .as_ref()
                .is_some_and(|g| g.paused.load(Ordering::Relaxed))
                || self.pause_file.as_ref().is_some_and(|f| f.exists());
            if paused {
                self.abort(began, "paused", "load was paused (kill switch)".into());
                continue;
            }
            if let Some(h) = &self.health {
                if let Some(why) = h.failure() {
                    self.abort(
                        began,
                        "health",
                        format!("the target's health check failed: {why}"),
                    );
                    continue;
                }
            }
            // The engine's live counters; a new engine run (a capacity step) starts from 0.
            let current = self
                .progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(p) = current {
                let now = Tally::read(&p);
                let ptr = Arc::as_ptr(&p);
                match &seen {
                    Some((q, before)) if *q == ptr => total.add_difference(&now, before),
                    _ => total.add_difference(&now, &Tally::zero()),
                }
                seen = Some((ptr, now));
            }
            let now = Instant::now();
            window.push_back((now, total.clone()));
            let span = self.cfg.window.as_duration();
            while window
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > span)
            {
                window.pop_front();
            }
            let Some((_, first)) = window.front() else {
                continue;
            };
            let requests = total.requests - first.requests;
            if requests < self.cfg.min_requests || requests == 0 {
                continue;
            }
            if let Some(limit) = self.cfg.error_rate {
                let rate = (total.errors - first.errors) as f64 / requests as f64;
                if rate > limit {
                    self.abort(
                        began,
                        "error_rate",
                        format!(
                            "error rate {:.1} % over the last {} exceeds the abort limit {:.1} %",
                            rate * 100.0,
                            self.cfg.window,
                            limit * 100.0
                        ),
                    );
                }
            }
            if let Some(limit) = self.cfg.p99_ms {
                if let Some(p99) = window_p99_ms(&total, first).filter(|p| *p > limit) {
                    self.abort(
                        began,
                        "p99",
                        format!(
                            "p99 {p99:.1} ms over the last {} exceeds the abort limit {limit} ms",
                            self.cfg.window
                        ),
                    );
                }
            }
        }
    }

    /// Records the first abort and stops the run.
    fn abort(&self, began: Instant, reason: &str, detail: String) {
        let mut a = self.aborted.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() {
            *a = Some(Abort {
                reason: reason.to_string(),
                detail,
                after_s: round3(began.elapsed().as_secs_f64()),
            });
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A once-a-second health check of the target on its own thread (a slow answer must not
/// hold up the monitor's ticks). It ends when the run does.
struct Health {
    failure: Arc<Mutex<Option<String>>>,
}

impl Health {
    fn start(url: String, timeout: Duration, done: Arc<AtomicBool>) -> Health {
        let failure = Arc::new(Mutex::new(None));
        let f = failure.clone();
        let _ = std::thread::Builder::new()
            .name("guard-health".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let next = Instant::now() + Duration::from_secs(1);
                    if let Err(e) = http_get_status(&url, timeout) {
                        *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        return;
                    }
                    while Instant::now() < next && !done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        Health { failure }
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The health check's GET: `Ok` on a 2xx answer within `timeout`.
fn http_get_status(url: &str, timeout: Duration) -> Result<(), String> {
    let (status, _) = http_get(url, timeout, 0)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// One plain HTTP GET within `timeout`: the status, and up to `max_body` bytes of the body
/// (none when `max_body` is 0, and then only the status line is waited for). Asked as
/// HTTP/1.0 so that the answer is never chunked: the body is whatever comes before the close.
/// Shared by the health check and the capacity probe's resource reader; not for load.
pub(super) fn http_get(
    url: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "not an http:// URL".to_string())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_text = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + timeout;
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).ok();
    s.set_write_timeout(Some(left)).ok();
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: plimsoll-guard\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if max_body == 0 && buf.len() >= 12 {
            break None;
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if Instant::now() >= deadline || buf.len() > 64 * 1024 {
            return Err(format!("no answer within {timeout:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.len() >= 12 => break None,
            Ok(0) => return Err("the connection closed before an answer".into()),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("no answer within {timeout:?}: {e}")),
        }
    };
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())?;
    let Some(head_end) = head_end.filter(|_| max_body > 0) else {
        return Ok((status, Vec::new()));
    };
    let mut body = buf.split_off(head_end);
    loop {
        if body.len() > max_body {
            return Err(format!("the answer is larger than {max_body} bytes"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the answer did not end within {timeout:?}"));
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut chunk) {
            Ok(0) => return Ok((status, body)),
            Ok(k) => body.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("the answer did not end within {timeout:?}: {e}")),
        }
    }
}

/// A probe's plan for `once --dry-run`: nothing is sent.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// Requests the run sends if nothing fails (`None` when it depends on the target's speed).
    pub requests: Option<u64>,
    /// Highest offered rate, requests per second (`None` for a closed model without a cap).
    pub peak_rps: Option<f64>,
    /// Longest the run can last.
    pub duration: Option<Duration>,
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
    let sends = super::sends_of(&capped.spec);
    out.requests = sends.requests;
    out.peak_rps = sends.peak_rps;
    out.duration = sends.duration;
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
    fn the_window_p99_is_taken_between_two_tallies() {
        let mut before = Tally::zero();
        before.latency[crate::engine::live_bucket(400_000)] = 50;
        let mut now = before.clone();
        now.latency[crate::engine::live_bucket(2_000)] += 99;
        now.latency[crate::engine::live_bucket(300_000)] += 1;
        let p99 = window_p99_ms(&now, &before).unwrap();
        assert!((2.0..2.6).contains(&p99), "{p99}");
        now.latency[crate::engine::live_bucket(300_000)] += 5;
        let p99 = window_p99_ms(&now, &before).unwrap();
        assert!((300.0..376.0).contains(&p99), "{p99}");
        assert_eq!(window_p99_ms(&before, &before), None);
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

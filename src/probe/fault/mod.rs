//! The `fault` kind: steady open-model load through a fault — `before`, inject, `hold`,
//! clear, `after` — measured in short windows (seeds 000, 001, 004: what a Redis or
//! PostgreSQL outage does to the service, and how fast it comes back).
//!
//! **Windows.** One engine run carries the load over the whole timeline, and the engine's
//! live [`Progress`] counts each finished request in the window of its *planned* send time
//! (`(planned − t0) / window`, from the run's start instant, so the windows do not drift):
//! requests, errors and the successful requests' latency in log-spaced buckets
//! ([`LIVE_LATENCY_BUCKETS`]), per worker, allocated before the run. A request counts in the
//! window of its planned send, not in the one where it ends: the requests a fault hangs
//! (a crashed database, a blackhole) end only at their timeout, often after the clear, and
//! counted where they end they would leave the fault's windows empty and spoil the recovery
//! after it. They belong to the fault. So the windows are read once the engine has finished:
//! the load runs on for one request timeout after the timeline, by when every request sent
//! in a window has completed or timed out, and only the whole windows before the end of the
//! timeline count (a stop does not wait: its last windows lack what it abandoned). One engine
//! run per window was the alternative: it would reopen every connection each window (a
//! `down` fault closes them anyway, but the steady windows would carry connect costs), leave
//! a gap between runs while threads start and the last response of a window is awaited, and
//! stretch the timeline whenever a window waits for timeouts. The live buckets cost one
//! uncontended atomic add per request and read a p99 within 25 % (bucket bounds grow by
//! 1.25): ample to tell a steady window from a faulty one.
//!
//! **Figures.** The steady band comes from `before` (its first window, which opens the
//! connections, is left out when there are others, and its last when two others remain: the
//! requests still in flight at the inject belong to it): a window is steady when its success
//! ratio is at least the lower of `min_success_ratio` and `before`'s, and its p99 at most
//! `p99_factor` × `before`'s p99 (and at least `before`'s + 20 ms). Time to detect: inject
//! → start of the first unsteady window that ends after the inject. Recovery: clear (the
//! clear action's return) → start of the first run of `recovery_stretch` of steady windows
//! among those that end after the clear (0 when the window holding the clear is already
//! steady). Backlog drain: clear → first reading at or below the median of the readings
//! before the inject. Grades: outage error rate (errors / requests while the fault was on),
//! recovery time, backlog peak (DESIGN.md's table; each band configurable in the table).
//!
//! **Safety.** The fault is injected through a [`FaultGuard`]: it is cleared when the hold
//! ends, when the run fails (the engine stopped early), when it is stopped (`ctx.stop`), and
//! from `Drop` when the run unwinds. The probe logs what it is about to inject first. Its
//! proxy listeners live only for the run.
//!
//! This module drives the engine and the fault; it names no metrics (telemetry does) and
//! prints nothing (the summary does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod windows;

use super::scrape::{http_get, series_sum};
use super::{ProbeKind, RunContext, Sends};
use crate::config::{
    BacklogConfig, Bands, Config, FaultProbeConfig, GuardrailsConfig, ProbeConfig,
};
use crate::engine::{self, LoadOutcome, LoadSpec, Progress, MAX_SEND_WINDOWS};
use crate::fault::{
    ClearReason, Fault, FaultAction, FaultGuard, FaultProxy, FaultRecord, ListenerSpec, Toxic,
};
use crate::report::outcome::{detail_of, stats_of};
use crate::report::{
    round3, BacklogSample, FaultActionSpan, FaultFigures, FaultStats, KindBlock, ProbeResult,
};
use crate::verdict::{Grade, Verdict};
use windows::{figures, reads_of};

/// DESIGN.md: dependency outage error rate — excellent 0 %, warning 1–20 %, critical above.
pub const DEFAULT_OUTAGE_ERROR_RATE: Bands = Bands::new(Some(1e-9), Some(0.01), Some(0.20));
/// DESIGN.md: recovery time — excellent < 5 s, good 5–10 s, warning 10–30 s.
pub const DEFAULT_RECOVERY_S: Bands = Bands::new(Some(5.0), Some(10.0), Some(30.0));
/// DESIGN.md: queue backlog — good < 100, warning 100–1000.
pub const DEFAULT_BACKLOG: Bands = Bands::new(None, Some(100.0), Some(1000.0));

/// How often the timeline looks at the stop flag and the engine.
const POLL: Duration = Duration::from_millis(10);
/// Slack added to the engine's plan beyond the timeline for a toxic fault (the engine is
/// stopped at the end of `after` anyway).
const PLAN_SLACK: Duration = Duration::from_secs(2);
/// Least p99 headroom of the steady band over `before`'s p99.
const P99_FLOOR_MS: f64 = 20.0;
/// Wait beyond the request timeout after the timeline before the load is stopped.
const DRAIN_MARGIN: Duration = Duration::from_millis(100);
/// Longest wait for one backlog reading.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest exposition read for a backlog series.
const MAX_EXPOSITION: usize = 16 << 20;

pub struct FaultProbe;

impl ProbeKind for FaultProbe {
    type Config = FaultProbeConfig;

    fn urls(f: &FaultProbeConfig) -> Vec<&str> {
        f.load.urls()
    }

    fn cap(g: &GuardrailsConfig, f: &mut FaultProbeConfig, notes: &mut Vec<String>) {
        if let Some(m) = g.max_rate {
            let cap = m / f.load.requests_per_iteration();
            if f.rate > cap {
                notes.push(format!(
                    "held to guardrails.max_rate: {} arrivals/s instead of {}",
                    round3(cap),
                    f.rate
                ));
                f.rate = cap;
            }
        }
    }

    fn sends(f: &FaultProbeConfig) -> Sends {
        let per = f.load.requests_per_iteration();
        let d = f.timeline();
        Sends {
            requests: Some((f.rate * d.as_secs_f64() * per).ceil() as u64),
            peak_rps: Some(round3(f.rate * per)),
            duration: Some(d),
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        c: &FaultProbeConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plimsoll-fault")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return ProbeResult::failed(probe, format!("cannot start: {e}")),
        };
        run_timeline(&rt, config, probe, c, ctx)
    }
}

fn run_timeline(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    probe: &ProbeConfig,
    c: &FaultProbeConfig,
    ctx: &RunContext,
) -> ProbeResult {
    // The proxy first: the load's URLs point at its listeners.
    let proxy = if c.proxy.is_empty() {
        None
    } else {
        let specs: Result<Vec<ListenerSpec>, _> =
            c.proxy.iter().map(ListenerSpec::from_config).collect();
        match specs.and_then(|s| rt.block_on(FaultProxy::start(s))) {
            Ok(p) => Some(p),
            Err(e) => return ProbeResult::failed(probe, format!("fault proxy: {e}")),
        }
    };
    let fault = match build_fault(c, proxy.as_ref()) {
        Ok(f) => f,
        Err(e) => {
            shutdown(rt, proxy);
            return ProbeResult::failed(probe, e);
        }
    };
    let extra = match &fault {
        Fault::Toxics { .. } => PLAN_SLACK,
        Fault::Action { inject, clear } => {
            PLAN_SLACK
                + action_timeout(inject)
                + clear.as_ref().map_or(Duration::ZERO, action_timeout)
        }
    };
    let load = c.timeline_load(extra);
    let spec = match LoadSpec::from_config(&load, config.target_of(probe)) {
        Ok(mut s) => {
            s.trace = ctx.trace;
            Arc::new(s)
        }
        Err(e) => {
            shutdown(rt, proxy);
            return ProbeResult::failed(probe, e);
        }
    };
    // Windows by planned send time over the whole plan (the engine sends nothing later).
    let window = c.window.as_duration();
    let plan = c.timeline() + extra;
    let count = (plan.as_nanos().div_ceil(window.as_nanos().max(1)) + 1) as usize;
    if count > MAX_SEND_WINDOWS {
        shutdown(rt, proxy);
        return ProbeResult::failed(
            probe,
            format!(
                "{count} windows of {} over the timeline and the actions' timeouts: at most \
                 {MAX_SEND_WINDOWS} (a longer window or a shorter timeline)",
                c.window
            ),
        );
    }
    let started_at = SystemTime::now();
    let engine_stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let progress = Arc::new(Progress::with_send_windows(spec.workers, t0, window, count));
    if let Some(f) = &ctx.on_start {
        f(progress.clone(), Some(c.timeline()));
    }
    let engine_thread = {
        let (spec, progress, stop) = (spec.clone(), progress.clone(), engine_stop.clone());
        std::thread::Builder::new()
            .name("plimsoll-fault-load".into())
            .spawn(move || engine::run(spec, progress, stop))
    };
    let engine_thread = match engine_thread {
        Ok(t) => t,
        Err(e) => {
            shutdown(rt, proxy);
            return ProbeResult::failed(probe, format!("cannot start the load: {e}"));
        }
    };
    // The backlog is sampled on its own timer until the timeline ends.
    let sampling = Arc::new(AtomicBool::new(true));
    let backlog = Arc::new(Mutex::new(Vec::<BacklogSample>::new()));
    let backlog_task = c.backlog.clone().map(|b| {
        let (samples, sampling) = (backlog.clone(), sampling.clone());
        rt.spawn(sample_backlog(b, t0, samples, sampling))
    });

    let mut timeline = Timeline {
        stop: &ctx.stop,
        engine: &engine_thread,
    };
    let mut notes = Vec::new();
    let mut inject_at = None;
    let mut clear_at = None;
    let mut record: Option<FaultRecord> = None;
    let mut stopped = false;
    let mut failed = None;
    match timeline.wait_until(t0 + c.before.as_duration()) {
        Wait::Stopped => stopped = true,
        Wait::EngineEnded => failed = Some("the load ended before the inject".to_string()),
        Wait::Reached => {
            let what = describe(&fault);
            tracing::info!(probe = %probe.name, fault = %c.name, "about to inject {what}");
            // The fault is on from the moment its inject starts: a restart command's
            // outage lies between its start and its return.
            inject_at = Some(Instant::now());
            let guard = rt.block_on(FaultGuard::inject(&c.name, fault, Some(&ctx.stop)));
            let reason = if !guard.injected() {
                notes.push("the inject failed: the fault was cleared at once".to_string());
                ClearReason::Failed
            } else {
                match timeline.wait_until(Instant::now() + c.hold.as_duration()) {
                    Wait::Reached => ClearReason::Ended,
                    Wait::Stopped => {
                        stopped = true;
                        ClearReason::Stopped
                    }
                    Wait::EngineEnded => {
                        failed = Some("the load ended during the fault".to_string());
                        ClearReason::Failed
                    }
                }
            };
            tracing::info!(probe = %probe.name, fault = %c.name, "clearing the fault ({reason:?})");
            record = Some(rt.block_on(guard.clear(reason, None)));
            clear_at = Some(Instant::now());
            if !stopped && failed.is_none() {
                match timeline.wait_until(Instant::now() + c.after.as_duration()) {
                    Wait::Reached => {}
                    Wait::Stopped => stopped = true,
                    Wait::EngineEnded => failed = Some("the load ended after the clear".into()),
                }
            }
        }
    }
    // Only whole windows before the end of the timeline count. The load runs on for one
    // request timeout (plus a margin) so that every request sent in them has completed or
    // timed out; a stop does not wait (its last windows may miss the requests it abandons).
    let ended_at = Instant::now();
    sampling.store(false, Ordering::Relaxed);
    if !stopped && failed.is_none() {
        let drained = ended_at + spec.timeout + DRAIN_MARGIN;
        if let Wait::Stopped = timeline.wait_until(drained) {
            stopped = true;
        }
    }
    engine_stop.store(true, Ordering::Relaxed);
    if let Some(t) = backlog_task {
        let _ = rt.block_on(t);
    }
    let outcome = engine_thread.join();
    shutdown(rt, proxy);
    let outcome: Option<LoadOutcome> = match outcome {
        Ok(Ok(mut o)) => {
            let secs = o.elapsed.as_secs_f64();
            let n = (c.rate * secs).round() as u64;
            o.planned = Some((n, c.rate));
            Some(o)
        }
        Ok(Err(e)) => {
            failed = Some(format!("the load engine could not start: {e}"));
            None
        }
        Err(_) => {
            failed = Some("the load engine panicked".into());
            None
        }
    };
    // Every request has now ended: the windows by planned send time are final.
    let window_s = window.as_secs_f64();
    let whole = ((ended_at.duration_since(t0).as_secs_f64() / window_s) + 1e-9).floor() as usize;
    let mut windows = progress
        .by_send
        .as_ref()
        .map(|w| w.counts())
        .unwrap_or_default();
    windows.truncate(whole);
    let reads = reads_of(&windows, window_s);
    let backlog = std::mem::take(&mut *backlog.lock().unwrap_or_else(|e| e.into_inner()));
    let actions = action_spans(&c.name, started_at, t0, record.as_ref());
    let figures = figures(
        c, started_at, t0, &reads, inject_at, clear_at, record, backlog,
    );
    if stopped {
        notes.push("stopped before the timeline ended".into());
    }
    let mut result = grade(
        probe,
        c,
        started_at,
        t0.elapsed(),
        outcome,
        figures,
        failed,
        notes,
    );
    result.detail.fault_actions = actions;
    result
}

/// The inject and the clear of a fault as spans, on the wall clock of the run's start.
fn action_spans(
    fault: &str,
    started_at: SystemTime,
    t0: Instant,
    record: Option<&FaultRecord>,
) -> Vec<FaultActionSpan> {
    let wall = |i: Instant| started_at + i.saturating_duration_since(t0);
    let Some(record) = record else {
        return Vec::new();
    };
    let reason = record
        .clear_reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(String::from));
    [("inject", &record.inject), ("clear", &record.clear)]
        .into_iter()
        .filter_map(|(step, a)| {
            a.as_ref().map(|a| FaultActionSpan {
                fault: fault.to_string(),
                step,
                action: a.action.clone(),
                start: wall(a.started),
                end: wall(a.ended.max(a.started)),
                ok: a.ok,
                clear_reason: (step == "clear").then(|| reason.clone()).flatten(),
            })
        })
        .collect()
}

/// Stops the run's proxy, if it has one.
fn shutdown(rt: &tokio::runtime::Runtime, proxy: Option<FaultProxy>) {
    if let Some(p) = proxy {
        rt.block_on(p.shutdown(Duration::from_millis(200)));
    }
}

fn action_timeout(a: &FaultAction) -> Duration {
    match a {
        FaultAction::Command(c) => c.timeout,
        FaultAction::Http(h) => h.timeout,
    }
}

fn describe(f: &Fault) -> String {
    match f {
        Fault::Toxics {
            listener, toxics, ..
        } => format!(
            "toxics on proxy listener {listener}: {}",
            toxics
                .iter()
                .map(Toxic::describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Fault::Action { inject, clear } => format!(
            "{} (clear: {})",
            inject.describe(),
            clear
                .as_ref()
                .map_or_else(|| "none".into(), |c| c.describe())
        ),
    }
}

/// The fault of the configuration, on the run's proxy.
fn build_fault(c: &FaultProbeConfig, proxy: Option<&FaultProxy>) -> Result<Fault, String> {
    let i = &c.inject;
    if let Some(a) = &i.action {
        let inject = FaultAction::from_config(a).map_err(|e| e.to_string())?;
        let clear = match &i.clear {
            Some(a) => Some(FaultAction::from_config(a).map_err(|e| e.to_string())?),
            None => None,
        };
        return Ok(Fault::Action { inject, clear });
    }
    let listener = i.listener.clone().ok_or("inject: no listener")?;
    let proxy = proxy.ok_or("inject: the probe has no proxy listener")?;
    Ok(Fault::Toxics {
        proxy: proxy.handle(),
        listener,
        toxics: i.toxic.iter().map(Toxic::from_config).collect(),
    })
}

enum Wait {
    Reached,
    Stopped,
    EngineEnded,
}

struct Timeline<'a, T> {
    stop: &'a AtomicBool,
    engine: &'a std::thread::JoinHandle<T>,
}

impl<T> Timeline<'_, T> {
    /// Waits until `until`, the stop flag or the end of the load, whichever comes first.
    fn wait_until(&mut self, until: Instant) -> Wait {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Wait::Stopped;
            }
            if self.engine.is_finished() {
                return Wait::EngineEnded;
            }
            let now = Instant::now();
            if now >= until {
                return Wait::Reached;
            }
            std::thread::sleep((until - now).min(POLL));
        }
    }
}

/// Reads the backlog every `interval` until sampling ends.
async fn sample_backlog(
    b: BacklogConfig,
    t0: Instant,
    out: Arc<Mutex<Vec<BacklogSample>>>,
    sampling: Arc<AtomicBool>,
) {
    let mut redis = None;
    let mut warned = false;
    while sampling.load(Ordering::Relaxed) {
        let at = Instant::now();
        let value = tokio::time::timeout(BACKLOG_TIMEOUT, read_backlog(&b, &mut redis)).await;
        match value {
            Ok(Ok(v)) => out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(BacklogSample {
                    at_s: round3(at.duration_since(t0).as_secs_f64()),
                    value: v,
                }),
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!("backlog: {e}");
            }
            Err(_) if !warned => {
                warned = true;
                tracing::warn!("backlog: no answer within {BACKLOG_TIMEOUT:?}");
            }
            _ => {}
        }
        let next = at + b.interval.as_duration();
        while sampling.load(Ordering::Relaxed) && Instant::now() < next {
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn read_backlog(
    b: &BacklogConfig,
    redis: &mut Option<::redis::aio::MultiplexedConnection>,
) -> Result<f64, String> {
    if let (Some(url), Some(series)) = (&b.metrics_url, &b.series) {
        let shown = crate::config::redact_url(url);
        let scrape = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || http_get(&url, BACKLOG_TIMEOUT, MAX_EXPOSITION))
        };
        let (status, body) = scrape
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{shown}: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("{shown} answered status {status}"));
        }
        let text = String::from_utf8_lossy(&body);
        return series_sum(&text, series).ok_or_else(|| format!("no series {series} at {shown}"));
    }
    let (Some(url), Some(key)) = (&b.redis_url, &b.key) else {
        return Err("no backlog source".into());
    };
    if redis.is_none() {
        let client = ::redis::Client::open(url.expose()).map_err(|e| e.to_string())?;
        *redis = Some(
            client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let conn = redis.as_mut().expect("connected above");
    match ::redis::cmd("LLEN").arg(key).query_async::<u64>(conn).await {
        Ok(n) => Ok(n as f64),
        Err(e) => {
            *redis = None;
            Err(e.to_string())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn grade(
    probe: &ProbeConfig,
    c: &FaultProbeConfig,
    started_at: SystemTime,
    elapsed: Duration,
    outcome: Option<LoadOutcome>,
    f: FaultFigures,
    failed: Option<String>,
    mut notes: Vec<String>,
) -> ProbeResult {
    let mut v = Verdict::default();
    if let Some(why) = failed {
        v.force(Grade::Critical, why);
    }
    if f.inject_s.is_some() {
        if !f.inject_ok {
            v.force(
                Grade::Critical,
                format!("the fault could not be injected: {}", f.inject_action),
            );
        }
        if !f.clear_ok {
            v.force(Grade::Critical, "the fault's clear failed");
        }
        v.lower_better(
            "outage_error_rate",
            f.error_rate.during,
            c.error_rate.unwrap_or(DEFAULT_OUTAGE_ERROR_RATE),
        );
        let stopped = f.clear_reason.as_deref() != Some("ended");
        match f.recovery_s {
            Some(r) => v.lower_better("recovery_s", r, c.recovery_s.unwrap_or(DEFAULT_RECOVERY_S)),
            None if !stopped => v.force(
                Grade::Critical,
                format!("did not recover within {} after the clear", c.after),
            ),
            None => {}
        }
        if let Some(p) = f.backlog_peak {
            v.lower_better("backlog_peak", p, c.backlog_peak.unwrap_or(DEFAULT_BACKLOG));
        }
    } else if v.forced.is_empty() {
        notes.push("stopped before the inject: nothing to grade".into());
    }
    let stats = outcome.as_ref().map(stats_of);
    let detail = outcome.as_ref().map(detail_of).unwrap_or_default();
    ProbeResult::graded(
        probe,
        started_at,
        elapsed,
        stats,
        Some(KindBlock::Fault(FaultStats { faults: vec![f] })),
        v,
        notes,
        detail,
    )
}

//! The scheduler loop: starts probe runs on their ticks, never lets a probe overlap itself,
//! runs the load probes of one target one at a time, and records every finished run.
//!
//! The loop wakes at least once a second (and at least twice per watchdog interval), so its
//! heartbeat is what `/healthz` and systemd's watchdog watch. It never waits on a probe: runs
//! go on blocking threads and report back through a channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::schedule::Schedule;
use super::{notify, ProbeStatus, Shared};
use crate::config::{Config, ProbeConfig};
use crate::probe::{run_probe, RunContext};
use crate::report::{rfc3339, ProbeResult};
use crate::telemetry::SkipReason;

/// How long a stopped run may take to return what it measured: the stop contract's bound.
pub const STOP_BOUND: Duration = Duration::from_secs(1);

/// What the rest of the daemon tells the scheduler.
#[derive(Debug)]
pub enum Control {
    /// A new, validated configuration.
    Reload(Box<Config>),
    /// Stop scheduling, let running probes finish within the grace period, then stop them.
    Shutdown,
}

/// A finished (or never started) run, reported by its task.
struct Done {
    probe: String,
    result: Option<ProbeResult>,
    start_delay: Option<Duration>,
}

/// A probe in the current configuration and its next tick.
struct Entry {
    probe: Arc<ProbeConfig>,
    schedule: Option<Schedule>,
    /// Planned start of the next run: tick plus jitter.
    next_at: Option<SystemTime>,
}

/// Runs the scheduler until [`Control::Shutdown`] and every run has ended.
/// Lists the configured probes on the board at once (so the API never shows an empty list
/// while the daemon is ready) and returns the scheduling loop to spawn.
pub fn start(
    config: Config,
    shared: Arc<Shared>,
    control: mpsc::Receiver<Control>,
) -> impl std::future::Future<Output = ()> {
    let anchor = SystemTime::now();
    let entries = build_entries(&config, anchor, &shared, true);
    run(config, anchor, entries, shared, control)
}

async fn run(
    config: Config,
    anchor: SystemTime,
    mut entries: Vec<Entry>,
    shared: Arc<Shared>,
    mut control: mpsc::Receiver<Control>,
) {
    let mut config = Arc::new(config);
    let mut running: HashMap<String, Arc<AtomicBool>> = HashMap::new();
    let mut target_locks: HashMap<String, Arc<tokio::sync::Mutex<()>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let watchdog = notify::watchdog_interval();
    let mut last_ping = tokio::time::Instant::now();
    let max_sleep = watchdog
        .map(|w| (w / 2).min(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(1));
    loop {
        shared.beat();
        if let Some(w) = watchdog {
            if last_ping.elapsed() >= w {
                notify::notify("WATCHDOG=1");
                last_ping = tokio::time::Instant::now();
            }
        }
        let now = SystemTime::now();
        for e in entries.iter_mut() {
            let Some(at) = e.next_at.filter(|at| *at <= now) else {
                continue;
            };
            let name = e.probe.name.clone();
            let held = if e.probe.kind().loads_target() {
                super::guard::hold_reason(&shared, now)
            } else {
                None
            };
            if let Some((reason, why)) = held {
                shared.telemetry.record_skip(&name, reason);
                shared.update(&name, |s| s.skipped += 1);
                tracing::warn!(probe = %name, "skipped a run: {why}");
            } else if running.contains_key(&name) {
                shared.telemetry.record_skip(&name, SkipReason::Overlap);
                shared.update(&name, |s| s.skipped += 1);
                tracing::warn!(probe = %name, "skipped a run: the previous one is still going");
            } else {
                let stop = Arc::new(AtomicBool::new(false));
                running.insert(name.clone(), stop.clone());
                let lock = lock_for(&config, &e.probe, &mut target_locks);
                shared.update(&name, |s| s.running = true);
                tokio::spawn(start_run(
                    shared.clone(),
                    config.clone(),
                    e.probe.clone(),
                    at,
                    stop,
                    lock,
                    done_tx.clone(),
                ));
            }
            e.next_at = next_start(e.schedule.as_ref(), now);
            shared.update(&name, |s| s.next_run = e.next_at.map(rfc3339));
        }
        let wait = entries
            .iter()
            .filter_map(|e| e.next_at)
            .min()
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(max_sleep)
            .min(max_sleep);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some(done) = done_rx.recv() => finish(done, &mut running, &shared, &config),
            c = control.recv() => match c {
                Some(Control::Reload(new)) => {
                    config = Arc::new(*new);
                    let names: Vec<String> = config.probe.iter().map(|p| p.name.clone()).collect();
                    for old in &entries {
                        if !names.contains(&old.probe.name) {
                            shared.telemetry.forget_probe(&old.probe.name);
                        }
                    }
                    entries = build_entries(&config, anchor, &shared, false);
                    shared.reconfigure_guard(&config.guardrails);
                    for name in running.keys() {
                        shared.update(name, |s| s.running = true);
                    }
                    tracing::info!(probes = entries.len(), "configuration reloaded");
                }
                Some(Control::Shutdown) | None => break,
            },
        }
    }
    drain(running, done_rx, &shared, &config).await;
}

/// After shutdown: waits for running probes up to the grace period, then stops them and
/// waits for what they measured.
async fn drain(
    mut running: HashMap<String, Arc<AtomicBool>>,
    mut done_rx: mpsc::UnboundedReceiver<Done>,
    shared: &Shared,
    config: &Config,
) {
    if running.is_empty() {
        return;
    }
    let grace = config.daemon.grace_period.as_duration();
    tracing::info!(
        running = running.len(),
        "waiting up to {} for running probes",
        config.daemon.grace_period
    );
    let deadline = tokio::time::Instant::now() + grace;
    while !running.is_empty() {
        shared.beat();
        tokio::select! {
            Some(done) = done_rx.recv() => finish(done, &mut running, shared, config),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if running.is_empty() {
        return;
    }
    for (name, stop) in &running {
        tracing::warn!(probe = %name, "grace period over: stopping the run and keeping what it measured");
        stop.store(true, Ordering::Relaxed);
    }
    // The stop contract (`probe::ProbeKind`): a stopped run abandons its exchanges in flight
    // and returns within a second, whatever its target does. No request timeout is waited for.
    let deadline = tokio::time::Instant::now() + STOP_BOUND;
    while !running.is_empty() {
        shared.beat();
        tokio::select! {
            Some(done) = done_rx.recv() => finish(done, &mut running, shared, config),
            _ = tokio::time::sleep_until(deadline) => {
                for name in running.keys() {
                    tracing::error!(probe = %name, "the run broke the stop contract (no result {STOP_BOUND:?} after its stop); its result is lost");
                }
                return;
            }
        }
    }
}

/// The scheduler's entries and the status board of `config`. At the daemon's start
/// (`starting`) each probe's first run comes soon (see `Schedule::starting`); after a reload
/// the ticks continue from the daemon's `anchor`.
fn build_entries(
    config: &Config,
    anchor: SystemTime,
    shared: &Shared,
    starting: bool,
) -> Vec<Entry> {
    let now = SystemTime::now();
    let mut entries = Vec::new();
    let mut board = Vec::new();
    for p in &config.probe {
        let compiled = p.schedule.as_ref().and_then(|s| {
            let made = if starting {
                Schedule::starting(s, now)
            } else {
                Schedule::new(s, anchor).map(|sch| {
                    let first = next_start(Some(&sch), now);
                    (sch, first)
                })
            };
            match made {
                Ok(x) => Some(x),
                Err(e) => {
                    // Validation has already refused a bad schedule; say so if one slips by.
                    tracing::error!(probe = %p.name, "schedule ignored: {e}");
                    None
                }
            }
        });
        let (schedule, next_at) = match compiled {
            Some((s, first)) => (Some(s), first),
            None => (None, None),
        };
        if schedule.is_none() {
            tracing::info!(probe = %p.name, "no schedule: listed, never run by the daemon");
        }
        board.push(ProbeStatus {
            name: p.name.clone(),
            kind: p.kind().to_string(),
            target: p.target.clone(),
            schedule: p
                .schedule
                .as_ref()
                .map(Schedule::describe)
                .unwrap_or_else(|| "none".into()),
            next_run: next_at.map(rfc3339),
            ..Default::default()
        });
        entries.push(Entry {
            probe: Arc::new(p.clone()),
            schedule,
            next_at,
        });
    }
    shared.replace_probes(board);
    entries
}

fn next_start(schedule: Option<&Schedule>, now: SystemTime) -> Option<SystemTime> {
    let s = schedule?;
    Some(s.next_tick(now)? + s.jitter())
}

/// The lock that keeps the probes that send requests to one target from running at once,
/// unless the probe shares its target (`Kind::loads_target`).
fn lock_for(
    config: &Config,
    probe: &ProbeConfig,
    locks: &mut HashMap<String, Arc<tokio::sync::Mutex<()>>>,
) -> Option<Arc<tokio::sync::Mutex<()>>> {
    if probe.share_target || !probe.kind().loads_target() {
        return None;
    }
    let target = config.target_of(probe)?;
    Some(locks.entry(target.name.clone()).or_default().clone())
}

async fn start_run(
    shared: Arc<Shared>,
    config: Arc<Config>,
    probe: Arc<ProbeConfig>,
    planned: SystemTime,
    stop: Arc<AtomicBool>,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    done: mpsc::UnboundedSender<Done>,
) {
    let _turn = match lock {
        Some(l) => Some(l.lock_owned().await),
        None => None,
    };
    let name = probe.name.clone();
    if stop.load(Ordering::Relaxed) {
        let _ = done.send(Done {
            probe: name,
            result: None,
            start_delay: None,
        });
        return;
    }
    let start_delay = SystemTime::now()
        .duration_since(planned)
        .unwrap_or_default();
    tracing::info!(probe = %name, start_delay_ms = start_delay.as_secs_f64() * 1000.0, "run started");
    let ctx = RunContext {
        stop,
        on_start: None,
        trace: shared.telemetry.begin_run(),
        guard: Some(shared.guard()),
    };
    let (p, c) = (probe.clone(), config.clone());
    let (mut result, trace) = tokio::task::spawn_blocking(move || {
        let r = run_probe(&c, &p, &ctx);
        (r, ctx.trace)
    })
    .await
    .unwrap_or_else(|e| {
        let r = ProbeResult::failed(&probe, format!("the probe crashed: {e}"));
        (r, None)
    });
    // The run is over: the target's next probe need not wait for the store or the export.
    drop(_turn);
    // Recorded and judged in this run's own task, each store operation bounded by
    // `baseline.timeout`: the scheduler loop never waits on the store.
    if let Some(store) = shared.store() {
        let judged = crate::baseline::judge_run(&store, &config, &probe, &mut result).await;
        let problem = match judged {
            crate::baseline::Judged::Spooled { cause } => Some(cause),
            crate::baseline::Judged::Lost { cause } => Some(format!("a run was lost: {cause}")),
            _ => None,
        };
        shared.store_checked(problem);
    }
    // OTLP is fed on a blocking thread once the run has ended: its cost grows with the run's
    // requests and must not hold up the scheduler loop.
    let exporter = (shared.clone(), probe.clone());
    let result = tokio::task::spawn_blocking(move || {
        exporter
            .0
            .telemetry
            .export_run(&exporter.1, &result, trace.as_ref());
        result
    })
    .await
    .unwrap_or_else(|e| ProbeResult::failed(&probe, format!("the OTLP export crashed: {e}")));
    let _ = done.send(Done {
        probe: name,
        result: Some(result),
        start_delay: Some(start_delay),
    });
}

fn finish(
    done: Done,
    running: &mut HashMap<String, Arc<AtomicBool>>,
    shared: &Shared,
    config: &Config,
) {
    running.remove(&done.probe);
    let Some(r) = done.result else {
        shared
            .telemetry
            .record_skip(&done.probe, SkipReason::Paused);
        shared.update(&done.probe, |s| {
            s.running = false;
            s.skipped += 1;
        });
        return;
    };
    let ended = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    shared.telemetry.record_run(&r, ended);
    let (requests, errors, p99, rps) = r
        .stats
        .as_ref()
        .map(|s| (s.requests, s.errors, s.latency_ms.p99, s.rps))
        .unwrap_or_default();
    tracing::info!(
        probe = %r.probe,
        grade = r.grade.as_str(),
        requests,
        errors,
        p99_ms = p99,
        rps,
        notes = %r.notes.join("; "),
        "run finished"
    );
    if !config.report.dir.is_empty() {
        let dir = std::path::Path::new(&config.report.dir);
        if let Err(e) = crate::report::write_into_dir(dir, std::slice::from_ref(&r)) {
            shared.telemetry.record_result_write_failure();
            tracing::error!(probe = %r.probe, "could not write the result document (counted in plimsoll_result_write_failures_total): {e}");
        }
    }
    shared.update(&done.probe, |s| {
        s.running = false;
        s.runs += 1;
        s.last_start_delay_ms = done.start_delay.map(|d| d.as_secs_f64() * 1000.0);
        s.last = Some(r);
    });
}

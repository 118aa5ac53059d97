//! The `load` kind: HTTP load under the open or closed model, graded on throughput, latency
//! and errors (a webhook load test at four levels, bursts, phases of arrival rates).
//!
//! This module drives the engine, watches the first seconds of a run for a target that is not
//! there (refused or unresolvable: the run ends early with a hint instead of hammering a dead
//! port for its whole plan), and grades the outcome. It must not measure anything itself (the
//! engine does) nor name metrics (telemetry does).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ProbeKind, RunContext, Sends};
use crate::config::{Config, Grade, GuardrailsConfig, LoadConfig, ProbeConfig};
use crate::engine::{self, ArrivalPlan, LoadOutcome, LoadSpec, Model, Progress};
use crate::report::outcome::{detail_of, stats_of};
use crate::report::{round3, ProbeResult};
use crate::verdict::grade_http;

/// How long after the start a run whose every request failed is checked for a dead target.
/// After this window a failing target is graded like any other: it answered once, or the
/// failures are not of the kind a missing service gives.
const DEAD_TARGET_WINDOW: Duration = Duration::from_millis(2500);
/// The earliest such a check happens: a service that is still binding its port gets a second.
const DEAD_TARGET_GRACE: Duration = Duration::from_millis(1000);
/// How long the watcher's own connection attempt may take.
const DEAD_TARGET_CONNECT: Duration = Duration::from_millis(500);

pub struct LoadProbe;

impl ProbeKind for LoadProbe {
    type Config = LoadConfig;

    fn urls(l: &LoadConfig) -> Vec<&str> {
        l.urls()
    }

    fn cap(g: &GuardrailsConfig, l: &mut LoadConfig, notes: &mut Vec<String>) {
        let per_iteration = l.requests_per_iteration();
        if let Some(max_rate) = g.max_rate {
            let cap = max_rate / per_iteration;
            let mut held = false;
            for ph in l.phases.iter_mut() {
                for r in [&mut ph.rate, &mut ph.ramp_to].into_iter().flatten() {
                    if *r > cap {
                        *r = cap;
                        held = true;
                    }
                }
                if let Some(b) = ph.burst {
                    // A burst releases its iterations at once: at most one second's worth.
                    let most = (cap.floor() as u32).max(1);
                    if b > most {
                        ph.burst = Some(most);
                        held = true;
                    }
                }
            }
            if held {
                notes.push(format!(
                    "held to guardrails.max_rate: arrivals capped at {max_rate} requests/s"
                ));
            }
            if l.phases.is_empty() {
                // Closed model: a user waits `think` after each iteration, so users / think bounds
                // the rate whatever the target's speed.
                let users = f64::from(
                    l.concurrency
                        .or(l.level.map(|v| v.concurrency()))
                        .unwrap_or(1),
                );
                let min_think = Duration::from_secs_f64(users / cap);
                if l.think.as_duration() < min_think {
                    l.think = crate::config::HumanDuration::from_millis(
                        min_think.as_millis().min(u128::from(u64::MAX)) as u64 + 1,
                    );
                    notes.push(format!(
                        "held to guardrails.max_rate: each of {users} users thinks {} between \
                         iterations, so at most {max_rate} requests/s",
                        l.think
                    ));
                }
            }
        }
        if let Some(m) = g.max_concurrency {
            if l.phases.is_empty() {
                let users = l
                    .concurrency
                    .or(l.level.map(|v| v.concurrency()))
                    .unwrap_or(1);
                if users > m {
                    l.concurrency = Some(m);
                    l.level = None;
                    notes.push(format!(
                        "held to guardrails.max_concurrency: {m} users instead of {users}"
                    ));
                }
            } else if l.max_in_flight > m {
                l.max_in_flight = m;
                notes.push(format!(
                    "held to guardrails.max_concurrency: at most {m} requests in flight; later \
                     arrivals are dropped"
                ));
            }
        }
    }

    fn sends(l: &LoadConfig) -> Sends {
        let per = l.requests_per_iteration();
        if l.phases.is_empty() {
            let users = f64::from(
                l.concurrency
                    .or(l.level.map(|v| v.concurrency()))
                    .unwrap_or(1),
            );
            Sends {
                requests: l.iterations.map(|n| (users * n as f64 * per) as u64),
                peak_rps: (!l.think.is_zero())
                    .then(|| round3(users / l.think.as_duration().as_secs_f64() * per)),
                duration: l.closed_duration().map(|d| d.as_duration()),
            }
        } else {
            let plan = ArrivalPlan::from_phases(&l.phases);
            let peak = l
                .phases
                .iter()
                .flat_map(|p| [p.rate, p.ramp_to])
                .flatten()
                .fold(0.0, f64::max);
            Sends {
                requests: Some((plan.total as f64 * per) as u64),
                peak_rps: Some(round3(peak * per)),
                duration: Some(plan.duration),
            }
        }
    }

    fn run(
        config: &Config,
        probe: &ProbeConfig,
        load: &LoadConfig,
        ctx: &RunContext,
    ) -> ProbeResult {
        let spec = match LoadSpec::from_config(load, config.target_of(probe)) {
            Ok(mut s) => {
                s.trace = ctx.trace;
                Arc::new(s)
            }
            Err(e) => return ProbeResult::failed(probe, e),
        };
        let progress = Arc::new(Progress::new(spec.workers));
        if let Some(f) = &ctx.on_start {
            f(progress.clone(), spec.expected_duration());
        }
        // The engine gets its own stop flag: the caller's (shutdown, Ctrl-C) is mirrored into
        // it, and the dead-target watcher may set it too without stopping the caller.
        let stop = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let dead = Arc::new(Mutex::new(None::<String>));
        let targets: Vec<(String, u16)> = spec
            .endpoints
            .iter()
            .map(|e| (e.base.host.clone(), e.base.port))
            .collect();
        let watcher = {
            let (outer, stop, finished, dead, progress) = (
                ctx.stop.clone(),
                stop.clone(),
                finished.clone(),
                dead.clone(),
                progress.clone(),
            );
            std::thread::Builder::new()
                .name("plimsoll-watch".into())
                .spawn(move || watch(&outer, &stop, &finished, &dead, &progress, &targets))
                .ok()
        };
        let outcome = engine::run(spec.clone(), progress, stop);
        finished.store(true, Ordering::Relaxed);
        if let Some(w) = watcher {
            let _ = w.join();
        }
        let hint = dead.lock().ok().and_then(|mut d| d.take());
        match outcome {
            Ok(mut outcome) => {
                if outcome.stopped_early {
                    planned_until_stop(&spec.model, &mut outcome);
                }
                grade_outcome(probe, &outcome, hint)
            }
            Err(e) => ProbeResult::failed(probe, format!("the load engine could not start: {e}")),
        }
    }
}

/// Mirrors the caller's stop into the engine's and, in the first seconds, ends a run whose
/// every request failed when a connection of its own confirms that the target refuses or
/// cannot be resolved. Returns when the run has finished.
fn watch(
    outer: &AtomicBool,
    stop: &AtomicBool,
    finished: &AtomicBool,
    dead: &Mutex<Option<String>>,
    progress: &Progress,
    targets: &[(String, u16)],
) {
    let t0 = Instant::now();
    let mut checked = false;
    while !finished.load(Ordering::Relaxed) {
        if outer.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        let since = t0.elapsed();
        if !checked && since >= DEAD_TARGET_GRACE && since < DEAD_TARGET_WINDOW {
            let (requests, errors) = progress.totals();
            if requests > 0 && errors == requests {
                checked = true;
                if let Some(hint) = targets.iter().find_map(|(h, p)| unreachable(h, *p)) {
                    if let Ok(mut d) = dead.lock() {
                        *d = Some(hint);
                    }
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Why nothing can be sent to `host:port`, in words for the person at the terminal; `None`
/// when a connection opens (or fails in a way a running service can cause, like a timeout).
pub fn unreachable(host: &str, port: u16) -> Option<String> {
    let addrs: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return Some(format!(
                "cannot resolve {host} ({e}) — is the host name right?"
            ))
        }
    };
    if addrs.is_empty() {
        return Some(format!(
            "{host} resolves to no address — is the host name right?"
        ));
    }
    let mut refused = false;
    for a in &addrs {
        match TcpStream::connect_timeout(a, DEAD_TARGET_CONNECT) {
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Err(_) => return None,
        }
    }
    refused.then(|| format!("nothing listens on {host}:{port} — is the service running?"))
}

/// A stopped open-model run is held to what its plan asked for up to the stop, not to the
/// whole plan: the planned arrivals (of this shard) due by the elapsed time.
fn planned_until_stop(model: &Model, o: &mut LoadOutcome) {
    let Model::Open { plan, shard } = model else {
        return;
    };
    let due = arrivals_due(plan, o.elapsed);
    let n = shard.len(due);
    let secs = o.elapsed.as_secs_f64();
    o.planned = Some((
        n,
        if secs > 0.0 {
            n as f64 / secs
        } else {
            n as f64
        },
    ));
}

/// Arrivals of the plan whose planned offset is at or before `t` (offsets never decrease).
fn arrivals_due(plan: &ArrivalPlan, t: Duration) -> u64 {
    let (mut lo, mut hi) = (0u64, plan.total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if plan.offset_of(mid) <= t {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Builds the result document of a load run and grades it; `dead_target` is the watcher's
/// hint when it ended the run because nothing could be reached.
pub fn grade_outcome(
    probe: &ProbeConfig,
    o: &LoadOutcome,
    dead_target: Option<String>,
) -> ProbeResult {
    let stats = stats_of(o);
    let mut verdict = grade_http(&probe.thresholds, probe.target_rps, &stats);
    let mut notes = Vec::new();
    match dead_target {
        Some(hint) => verdict.force(Grade::Critical, hint),
        None if o.stopped_early => notes.push(
            "stopped before the plan ended: graded on what was planned up to the stop".into(),
        ),
        None => {}
    }
    notes.extend(super::ops::abandoned_note(o.recorder.abandoned));
    ProbeResult::graded(
        probe,
        o.started_at,
        o.elapsed,
        Some(stats),
        None,
        verdict,
        notes,
        detail_of(o),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PhaseConfig;

    #[test]
    fn arrivals_due_counts_the_plan_up_to_a_time() {
        let plan = ArrivalPlan::from_phases(&[
            PhaseConfig {
                name: None,
                duration: Some(Duration::from_secs(10).into()),
                rate: Some(10.0),
                ramp_to: None,
                burst: None,
            },
            PhaseConfig {
                name: None,
                duration: Some(Duration::from_secs(10).into()),
                rate: Some(100.0),
                ramp_to: None,
                burst: None,
            },
        ]);
        // Stopped after 5 s of a 10/s then 100/s plan: about 50 arrivals were due, not 1100.
        let due = arrivals_due(&plan, Duration::from_secs(5));
        assert!((50..=52).contains(&due), "{due}");
        assert_eq!(arrivals_due(&plan, Duration::from_secs(60)), plan.total);
    }

    #[test]
    fn a_closed_port_is_named_with_a_hint() {
        // Bind, learn the port, close: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hint = unreachable("127.0.0.1", port).expect("refused");
        assert_eq!(
            hint,
            format!("nothing listens on 127.0.0.1:{port} — is the service running?")
        );
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        assert_eq!(unreachable("127.0.0.1", port), None);
    }
}

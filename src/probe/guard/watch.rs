//! The watcher of one guarded run: a thread that reads the engine's live counters every tick
//! and stops the run on an abort condition (error rate, p99 over a sliding window, a failing
//! health check) or a pause. It decides and stops; it measures nothing itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Guard;
use crate::engine::{live_quantile_ms, Progress, LIVE_LATENCY_BUCKETS};
use crate::probe::scrape::http_get;
use crate::probe::{OnStart, RunContext};
use crate::report::{round3, Abort};

/// How often the monitor looks at the run: well inside the one-second stop bound.
const TICK: Duration = Duration::from_millis(100);

/// The watcher of one run: a thread that stops the run on an abort condition or a pause.
pub(super) struct Monitor {
    /// The context the run gets: its own stop flag, and an `on_start` that hands the monitor
    /// the engine's live counters.
    pub(super) ctx: RunContext,
    done: Arc<AtomicBool>,
    aborted: Arc<Mutex<Option<Abort>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    pub(super) fn start(guard: &Guard, outer: &RunContext) -> Monitor {
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

    pub(super) fn finish(mut self) -> Option<Abort> {
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
    live_quantile_ms(&counts, 0.99)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

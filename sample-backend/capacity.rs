//! `/capacity`: services with a known capacity, for the capacity probe's tests and demo, and
//! the counters that let a test see at the target what a load generator really sent.
//!
//! - `GET /capacity?rps=R`: one queue served at a fixed rate of R requests per second. Each
//!   request takes the next free service slot (1/R long) and is answered when its slot ends,
//!   so below R nothing waits, and past R requests queue and latency grows without bound.
//! - `GET /capacity?workers=W&ms=M`: W workers, each busy M ms per request (a semaphore of W):
//!   capacity W × 1000 / M requests per second, limited by concurrency rather than rate.
//! - `GET /capacity?ms=M`: M ms of work with no limit (a plain delay that is counted).
//! - `work_us=U` on any of them: U microseconds of CPU spent on the request before it is
//!   served (a service whose CPU use grows with the rate, for the per-step resource figures).
//! - `fail_after=N` on any of them: once the route has answered N requests, it answers 503
//!   (a target that starts failing mid-run).
//! - `slow_after=N&slow_ms=M` on any of them: once the route has answered N requests, each
//!   answer takes M ms more (a target that becomes slow mid-run; M defaults to 500).
//! - `GET /capacity/stats`: requests received, the most in flight at once, and the most
//!   received within one wall-clock second.
//!
//! Queues and semaphores are kept per parameter set in small maps (a handful of keys in any
//! test); nothing here logs. This module must not know anything about Plimsoll's probes.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Response;
use hyper::StatusCode;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::reply::{self, ReplyBody};
use crate::timing::PreciseTimer;

/// The route's own path prefix.
pub const PATH: &str = "/capacity";
/// The route's counters.
pub const STATS_PATH: &str = "/capacity/stats";

/// Most distinct parameter sets kept (each a queue or a semaphore); beyond it the oldest
/// state is not kept and a new one starts, which only a misuse of the route reaches.
const MAX_KEYS: usize = 64;
/// Highest rate and most workers accepted.
const MAX_RPS: u64 = 1_000_000;
const MAX_WORKERS: u64 = 100_000;
const MAX_MS: u64 = 60_000;
/// Most CPU a request may ask to burn: it holds a runtime worker while it does.
const MAX_WORK_US: u64 = 100_000;

/// State of the capacity routes, owned by the app for the server's lifetime.
#[derive(Debug)]
pub struct Capacity {
    /// Per service rate: the instant the queue's server is next free.
    queues: Mutex<HashMap<u64, Instant>>,
    /// Per (workers, ms): the workers.
    pools: Mutex<HashMap<(u64, u64), Arc<Semaphore>>>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    /// (wall-clock second since start, requests in it), and the highest count of a second.
    second: Mutex<(u64, u64)>,
    peak_per_second: AtomicU64,
    /// When `fail_after` first turned an answer into a 503.
    failing_since: Mutex<Option<Instant>>,
    /// When `slow_after` first slowed an answer down.
    slow_since: Mutex<Option<Instant>>,
    started: Instant,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            queues: Mutex::default(),
            pools: Mutex::default(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            second: Mutex::new((0, 0)),
            peak_per_second: AtomicU64::new(0),
            failing_since: Mutex::new(None),
            slow_since: Mutex::new(None),
            started: Instant::now(),
        }
    }
}

/// The `/capacity/stats` document.
#[derive(Debug, Serialize)]
struct CapacityStats {
    /// Requests received by `/capacity` since start.
    requests: u64,
    /// Requests being served right now.
    in_flight: u64,
    /// The most requests in flight at once.
    peak_in_flight: u64,
    /// The most requests received within one second (seconds counted from start).
    peak_per_second: u64,
    /// Milliseconds since `fail_after` first answered 503 (absent while it has not).
    failing_since_ms: Option<f64>,
    /// Milliseconds since `slow_after` first slowed an answer (absent while it has not).
    slow_since_ms: Option<f64>,
}

/// Decrements the in-flight count when the request ends, however it ends (the client may
/// hang up and the task be dropped).
struct InFlight<'a>(&'a AtomicU64);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Whether the path is this module's.
pub fn owns(path: &str) -> bool {
    path == PATH || path == STATS_PATH
}

/// Answers `/capacity` and `/capacity/stats`.
pub async fn respond(
    c: &Capacity,
    timer: &PreciseTimer,
    path: &str,
    query: Option<&str>,
) -> Response<ReplyBody> {
    if path == STATS_PATH {
        return reply::json(
            StatusCode::OK,
            &CapacityStats {
                requests: c.requests.load(Relaxed),
                in_flight: c.in_flight.load(Relaxed),
                peak_in_flight: c.peak_in_flight.load(Relaxed),
                peak_per_second: c.peak_per_second.load(Relaxed),
                failing_since_ms: c
                    .failing_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .map(|t| t.elapsed().as_secs_f64() * 1000.0),
                slow_since_ms: c
                    .slow_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .map(|t| t.elapsed().as_secs_f64() * 1000.0),
            },
        );
    }
    let arrived = Instant::now();
    let n = c.requests.fetch_add(1, Relaxed) + 1;
    let now_in = c.in_flight.fetch_add(1, Relaxed) + 1;
    let _guard = InFlight(&c.in_flight);
    c.peak_in_flight.fetch_max(now_in, Relaxed);
    {
        let sec = arrived.duration_since(c.started).as_secs();
        let mut s = c.second.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 != sec {
            *s = (sec, 0);
        }
        s.1 += 1;
        c.peak_per_second.fetch_max(s.1, Relaxed);
    }
    let params = match Params::parse(query) {
        Ok(p) => p,
        Err(m) => return reply::error(StatusCode::BAD_REQUEST, &m),
    };
    if params.fail_after.is_some_and(|f| n > f) {
        c.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(arrived);
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, "failing on purpose");
    }
    if let Some(us) = params.work_us {
        burn_cpu(Duration::from_micros(us));
    }
    // Slowness is added before the service: the slot or worker is taken after the wait,
    // so a slowed queue does not also shift every later slot.
    let arrived = if params.slow_after.is_some_and(|s| n > s) {
        c.slow_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(arrived);
        let until = arrived + Duration::from_millis(params.slow_ms.unwrap_or(500));
        timer.sleep_until(until).await;
        until
    } else {
        arrived
    };
    match (params.rps, params.workers) {
        (Some(_), Some(_)) => reply::error(
            StatusCode::BAD_REQUEST,
            "rps and workers exclude each other",
        ),
        (Some(rps), None) => {
            let slot = Duration::from_secs_f64(1.0 / rps as f64);
            let done = {
                let mut q = c.queues.lock().unwrap_or_else(|e| e.into_inner());
                if q.len() >= MAX_KEYS && !q.contains_key(&rps) {
                    q.clear();
                }
                let free = q.entry(rps).or_insert(arrived);
                let start = (*free).max(arrived);
                *free = start + slot;
                *free
            };
            timer.sleep_until(done).await;
            reply::json(StatusCode::OK, &serde_json::json!({ "rps": rps }))
        }
        (None, Some(workers)) => {
            let ms = params.ms.unwrap_or(10);
            let pool = {
                let mut p = c.pools.lock().unwrap_or_else(|e| e.into_inner());
                if p.len() >= MAX_KEYS && !p.contains_key(&(workers, ms)) {
                    p.clear();
                }
                p.entry((workers, ms))
                    .or_insert_with(|| Arc::new(Semaphore::new(workers as usize)))
                    .clone()
            };
            let Ok(_permit) = pool.acquire().await else {
                return reply::error(StatusCode::SERVICE_UNAVAILABLE, "pool closed");
            };
            let began = Instant::now();
            timer.sleep_until(began + Duration::from_millis(ms)).await;
            reply::json(
                StatusCode::OK,
                &serde_json::json!({ "workers": workers, "ms": ms }),
            )
        }
        (None, None) => {
            let ms = params.ms.unwrap_or(0);
            timer.sleep_until(arrived + Duration::from_millis(ms)).await;
            reply::json(StatusCode::OK, &serde_json::json!({ "ms": ms }))
        }
    }
}

/// The query's parameters.
#[derive(Debug, Default, PartialEq)]
struct Params {
    rps: Option<u64>,
    workers: Option<u64>,
    ms: Option<u64>,
    fail_after: Option<u64>,
    work_us: Option<u64>,
    slow_after: Option<u64>,
    slow_ms: Option<u64>,
}

/// Keeps this thread busy for `d` of wall-clock time (CPU time when the thread is not
/// preempted, which is what the per-step CPU figures are meant to see).
fn burn_cpu(d: Duration) {
    let began = Instant::now();
    let mut x = 1u64;
    while began.elapsed() < d {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

impl Params {
    fn parse(query: Option<&str>) -> Result<Params, String> {
        let mut p = Params::default();
        let Some(q) = query else {
            return Ok(p);
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let (slot, max) = match &*k {
                "rps" => (&mut p.rps, MAX_RPS),
                "workers" => (&mut p.workers, MAX_WORKERS),
                "ms" => (&mut p.ms, MAX_MS),
                "fail_after" => (&mut p.fail_after, u64::MAX),
                "work_us" => (&mut p.work_us, MAX_WORK_US),
                "slow_after" => (&mut p.slow_after, u64::MAX),
                "slow_ms" => (&mut p.slow_ms, MAX_MS),
                _ => continue,
            };
            let n: u64 = v
                .parse()
                .map_err(|_| format!("{k} must be a non-negative integer"))?;
            if n > max {
                return Err(format!("{k} must be at most {max}"));
            }
            *slot = Some(n);
        }
        if p.rps == Some(0) || p.workers == Some(0) {
            return Err("rps and workers must be greater than 0".into());
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert_eq!(
            Params::parse(Some("rps=300")),
            Ok(Params {
                rps: Some(300),
                ..Default::default()
            })
        );
        assert!(Params::parse(Some("rps=0")).is_err());
        assert!(Params::parse(Some("workers=x")).is_err());
        assert!(Params::parse(Some("ms=99999999")).is_err());
        assert_eq!(Params::parse(None), Ok(Params::default()));
    }
}

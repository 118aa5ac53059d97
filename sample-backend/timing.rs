//! Precise waits for `/delay` and `/stall`.
//!
//! Tokio's timer wheel rounds every deadline up to the next whole millisecond, so a 20 ms
//! sleep answers after 20–22 ms and a load generator's p50 against `/delay?ms=20` would be off
//! by about a millisecond. The test suite wants it within 0.5 ms. `PreciseTimer` instead keeps
//! the deadlines on one dedicated OS thread that parks until the earliest one (the kernel's
//! high-resolution timers wake it within about 0.1 ms), rings a little early, and lets the task
//! finish the last fraction of a millisecond by yielding to the runtime. One thread serves
//! every waiting request, so the cost is one channel message per wait, unlike a blocking-pool
//! thread per request (tokio caps that pool at 512 threads, which would cap `/delay`'s
//! throughput).
//!
//! `StallSchedule` is the arithmetic of `/stall`'s freeze windows, kept free of clocks so it
//! can be tested exactly. Nothing in this module knows about HTTP.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Wakes async tasks at precise instants from one dedicated thread.
///
/// Cloning is not needed: the owner (the app state) is shared behind an `Arc`. When the last
/// handle is dropped the channel closes and the thread ends.
#[derive(Debug)]
pub struct PreciseTimer {
    alarms: mpsc::Sender<Alarm>,
}

/// One pending wake-up: the instant and the task waiting for it.
#[derive(Debug)]
struct Alarm {
    at: Instant,
    wake: oneshot::Sender<()>,
}

// `BinaryHeap` is a max-heap; alarms compare by reversed deadline so the earliest is on top.
// Equality ignores the sender on purpose: two alarms for the same instant are interchangeable.
impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl PreciseTimer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Self> {
        let (alarms, pending) = mpsc::channel();
        std::thread::Builder::new()
            .name("precise-timer".into())
            .spawn(move || run_alarms(&pending))?;
        Ok(Self { alarms })
    }

    /// Completes at `at` (or right away if it has passed), to within a few microseconds of
    /// it when the runtime is idle, and never before it.
    pub async fn sleep_until(&self, at: Instant) {
        // Waking a parked thread is not free: the timer thread's futex wait overshoots by about
        // 0.1 ms and the tokio worker that resumes the task needs about as much again. So the
        // alarm is set `WAKE_LEAD` early and the last stretch is finished below.
        if let Some(wake_at) = at.checked_sub(WAKE_LEAD).filter(|w| *w > Instant::now()) {
            let (wake, woken) = oneshot::channel();
            let rang = self.alarms.send(Alarm { at: wake_at, wake }).is_ok() && woken.await.is_ok();
            if !rang {
                // The timer thread is gone (it only ends when the process is shutting down): a
                // coarse wait is still better than answering early.
                tokio::time::sleep_until(at.into()).await;
            }
        }
        // The last stretch (at most `WAKE_LEAD`): yield to the runtime until the instant comes.
        // This only spins while the worker has nothing else to do; under load, other tasks run
        // between the checks, so a busy server pays little for the precision.
        while Instant::now() < at {
            tokio::task::yield_now().await;
        }
    }
}

/// How early an alarm rings before the instant it is for. It covers the two thread wake-ups
/// between the kernel's timer and the task resuming (about 0.1 ms each on an idle machine,
/// more in a VM); what is left of it is spent in the final yield loop.
const WAKE_LEAD: Duration = Duration::from_micros(500);

/// The timer thread: fires every due alarm, then parks until the next deadline or the next new
/// alarm, whichever comes first.
fn run_alarms(pending: &mpsc::Receiver<Alarm>) {
    let mut heap: BinaryHeap<Alarm> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|alarm| alarm.at <= now) {
            if let Some(alarm) = heap.pop() {
                // The waiting request may have been dropped (client hung up): nothing to do.
                let _ = alarm.wake.send(());
            }
        }
        // `recv_timeout` parks the thread on a futex with the remaining time, which the kernel
        // honours with high-resolution timers; that is where the precision comes from.
        let received = match heap.peek() {
            None => pending.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(next) => pending.recv_timeout(next.at.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(alarm) => heap.push(alarm),
            Err(RecvTimeoutError::Timeout) => {}
            // Every handle is gone: the server is shutting down. Dropping the heap wakes the
            // remaining waiters with an error and they fall back to tokio's timer.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Longest freeze `/stall` accepts, so no request is held longer than `/delay`'s cap.
pub const MAX_FREEZE: Duration = Duration::from_secs(60);

/// `/stall`'s schedule: the service freezes for `freeze` at the start of every `period`,
/// counted from the server's start instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallSchedule {
    period: Duration,
    freeze: Duration,
}

impl StallSchedule {
    /// Validates a schedule given in milliseconds; the error is the message for the client.
    pub fn from_millis(period_ms: u64, freeze_ms: u64) -> Result<Self, &'static str> {
        if period_ms == 0 || freeze_ms == 0 {
            return Err("period_ms and freeze_ms must be greater than 0");
        }
        if freeze_ms >= period_ms {
            return Err("freeze_ms must be less than period_ms");
        }
        let freeze = Duration::from_millis(freeze_ms);
        if freeze > MAX_FREEZE {
            return Err("freeze_ms must be at most 60000");
        }
        Ok(Self {
            period: Duration::from_millis(period_ms),
            freeze,
        })
    }

    /// How long a request arriving `elapsed` after the start must wait: until the end of the
    /// freeze window it fell into, or zero outside every window.
    pub fn wait_at(&self, elapsed: Duration) -> Duration {
        // Nanosecond arithmetic in u128 cannot overflow for any `Duration`, and the remainder
        // is below `freeze` (at most a minute), so it always fits back into a `Duration`.
        let phase = elapsed.as_nanos() % self.period.as_nanos();
        let freeze = self.freeze.as_nanos();
        if phase < freeze {
            Duration::from_nanos(u64::try_from(freeze - phase).unwrap_or(u64::MAX))
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn stall_waits_until_the_window_ends() {
        let schedule = StallSchedule::from_millis(2000, 200).expect("valid schedule");
        assert_eq!(schedule.wait_at(ms(0)), ms(200));
        assert_eq!(schedule.wait_at(ms(150)), ms(50));
        assert_eq!(schedule.wait_at(ms(200)), Duration::ZERO);
        assert_eq!(schedule.wait_at(ms(1999)), Duration::ZERO);
        assert_eq!(schedule.wait_at(ms(2000)), ms(200));
        assert_eq!(schedule.wait_at(ms(4100)), ms(100));
    }

    #[test]
    fn stall_rejects_impossible_schedules() {
        assert!(StallSchedule::from_millis(0, 0).is_err());
        assert!(StallSchedule::from_millis(100, 0).is_err());
        assert!(StallSchedule::from_millis(100, 100).is_err());
        assert!(StallSchedule::from_millis(100, 200).is_err());
        assert!(StallSchedule::from_millis(u64::MAX, 60_001).is_err());
        assert!(StallSchedule::from_millis(u64::MAX, 60_000).is_ok());
    }

    /// The point of the thread: a 20 ms wait must not come back a whole millisecond late.
    #[tokio::test]
    async fn precise_timer_is_sub_millisecond() {
        let timer = PreciseTimer::start().expect("timer thread starts");
        let mut late = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            timer.sleep_until(start + ms(20)).await;
            late.push(start.elapsed().saturating_sub(ms(20)));
            assert!(start.elapsed() >= ms(20), "woke early");
        }
        late.sort();
        // The median, so one scheduling hiccup on a busy machine does not fail the test.
        assert!(
            late[5] < Duration::from_micros(500),
            "median lateness {:?}",
            late[5]
        );
    }

    #[tokio::test]
    async fn precise_timer_orders_deadlines() {
        let timer = std::sync::Arc::new(PreciseTimer::start().expect("timer thread starts"));
        let start = Instant::now();
        let later = {
            let timer = std::sync::Arc::clone(&timer);
            tokio::spawn(async move { timer.sleep_until(start + ms(30)).await })
        };
        timer.sleep_until(start + ms(10)).await;
        let first = start.elapsed();
        later.await.expect("task completes");
        assert!(
            first >= ms(10) && first < ms(30),
            "first wake after {first:?}"
        );
        assert!(start.elapsed() >= ms(30));
    }
}

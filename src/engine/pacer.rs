//! Open-model pacing inside one worker's own runtime: which arrivals are the worker's, when
//! each is due, a timer precise enough to send them on time, and the pool of users that send
//! them.
//!
//! Each worker paces its own share of the plan — arrival `k` of the process's shard belongs to
//! worker `k % workers` — and computes planned times itself with [`ArrivalPlan::offset_of`], so
//! no thread wakes another per arrival. One wake-up releases every arrival already due, each
//! still timed from its own planned time, and wake-ups are at least [`BATCH_WINDOW`] apart so
//! a high rate does not cost a wake-up per arrival. tokio's timer rounds deadlines up to whole
//! milliseconds (up to 2 ms of send lag), so the worker sleeps on [`PreciseTimer`] instead: a
//! timerfd in the worker's own event loop, armed once per sleep, not per arrival. The last
//! microseconds before an arrival are spun instead of slept: a sleep that short wakes later
//! than the arrival is due and costs more than it saves.
//!
//! What it must not do: release an arrival before its planned time (latency is measured from
//! it), make a syscall per arrival other than the one arming the timer when the thread has to
//! sleep, allocate per arrival (users and their mailboxes are made once and reused), or block
//! the runtime's thread.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::plan::{ArrivalPlan, Shard};

/// Below this, waiting for an arrival spins (yielding to the runtime's other tasks) instead of
/// sleeping: a timer wake-up costs, and is late by, about this much itself.
pub(super) const SPIN: Duration = Duration::from_micros(10);

/// At most one wake-up per this much time: at high rates the arrivals that fall due meanwhile
/// go out together, one wake-up instead of one each. It bounds the send lag this adds, far
/// under the millisecond that tokio's timer alone would.
pub(super) const BATCH_WINDOW: Duration = Duration::from_micros(400);

/// [`BATCH_WINDOW`] where responses wait for the tick ([`sleep_past_replies`]): then a wake-up
/// is all the worker's sleeping costs, and on a virtual machine a wake-up (the timer's
/// interrupt, and the target's own wake-up by the batch's first request, which the sender
/// pays for) costs more CPU than a request, so fewer and fuller batches are most of the
/// saving. Bounded so send lag stays under a millisecond.
pub(super) const DEFERRED_BATCH_WINDOW: Duration = Duration::from_micros(700);

/// Longest time a response may wait unread in its socket while the worker sleeps towards its
/// next tick (see [`sleep_past_replies`]).
pub(super) const DEFER_REPLIES: Duration = Duration::from_millis(1);

/// Longest single sleep, so a stop request is noticed promptly.
pub(super) const STOP_POLL: Duration = Duration::from_millis(50);

/// One worker's arrivals in plan order, with their planned times.
pub(super) struct Arrivals<'a> {
    plan: &'a ArrivalPlan,
    shard: Shard,
    start: Instant,
    /// The worker's next arrival, as an index into the process's shard.
    k: u64,
    step: u64,
    end: u64,
    /// Planned time of arrival `k`, computed once.
    next: Option<Instant>,
}

impl<'a> Arrivals<'a> {
    /// Arrivals `worker`, `worker + workers`, … of the process's `shard` of `plan`.
    pub fn new(
        plan: &'a ArrivalPlan,
        shard: Shard,
        worker: usize,
        workers: usize,
        start: Instant,
    ) -> Self {
        let mut a = Arrivals {
            plan,
            shard,
            start,
            k: worker as u64,
            step: workers.max(1) as u64,
            end: shard.len(plan.total),
            next: None,
        };
        a.next = a.planned(a.k);
        a
    }

    fn planned(&self, k: u64) -> Option<Instant> {
        (k < self.end).then(|| self.start + self.plan.offset_of(self.shard.global(k)))
    }

    /// Planned time of the next arrival; `None` when the worker's share is done.
    pub fn peek(&self) -> Option<Instant> {
        self.next
    }

    /// Takes the next arrival if it is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        let t = self.next.filter(|t| *t <= now)?;
        self.k += self.step;
        self.next = self.planned(self.k);
        Some(t)
    }
}

/// Where an idle user waits for its next arrival: the pacer drops the planned time in and
/// wakes the user, on the same thread (a run-queue push, no syscall).
#[derive(Default)]
pub(super) struct Mailbox {
    planned: Cell<Option<Instant>>,
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Mailbox {
    pub fn deliver(&self, planned: Instant) {
        self.planned.set(Some(planned));
        self.wake();
    }

    /// No more arrivals: the user ends once it has finished what it was given.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// The next arrival's planned time, or `None` when the mailbox is closed.
    pub async fn next(&self) -> Option<Instant> {
        poll_fn(|cx| {
            if let Some(t) = self.planned.take() {
                return Poll::Ready(Some(t));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            let mut slot = self.waker.borrow_mut();
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                // Cloning a tokio waker bumps a reference count; it does not allocate.
                _ => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

/// Lets the runtime's other ready tasks (and, every few dozen polls, its I/O) run once, then
/// continues. tokio's own `yield_now` defers the task until the runtime next polls its event
/// loop, a syscall; a self-wake only goes to the back of the local run queue.
pub(super) async fn yield_local() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A sleep precise to the kernel's high-resolution timers, inside a tokio runtime: a timerfd
/// registered with the runtime's event loop, so sleeping on it does not block the thread and
/// responses keep being read meanwhile.
pub(super) struct PreciseTimer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl PreciseTimer {
    /// A timer, or `None` where the system has no timerfd (callers then use tokio's timer).
    /// Must be called inside the runtime that will await it.
    pub fn new() -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: a plain syscall; it returns a new descriptor we own, or -1.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return None;
            }
            // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
            // SAFETY: the AsyncFd takes the descriptor by value and nothing else closes or
            // replaces it while registered.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .ok()?;
            Some(PreciseTimer { fd })
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Sleeps about `d` (never less, unless woken spuriously: callers check the clock).
    #[cfg(target_os = "linux")]
    pub async fn sleep(&self, d: Duration) {
        use std::os::fd::AsRawFd;
        if d.is_zero() {
            // A zero expiry would disarm the timer, not fire it.
            return;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid descriptor and a fully initialised itimerspec; the old value is not
        // asked for. Arming also resets the expiry count, so the next expiry is a new edge for
        // the edge-triggered event loop and the count never needs a read() to clear it.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            tokio::time::sleep(d).await;
            return;
        }
        match self.fd.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => tokio::time::sleep(d).await,
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// Sleeps the worker's thread until `until` (at most [`DEFER_REPLIES`] away) without waking
/// for each response that arrives meanwhile, then lets the runtime read them all at once.
///
/// A worker waiting in its event loop wakes for every response, which at a few thousand
/// requests a second is a wake-up per request on top of the pacer's own. Sleeping outside
/// the event loop instead leaves the responses in their sockets until the tick; the kernel
/// stamps each with its arrival ([`super::rxstamp`]), so their latency is what it would have
/// been. Only for connections that stamp: elsewhere the wait would be counted as latency.
/// The runtime is blocked for the sleep, which is why it is bounded: nothing on this worker
/// (a timeout, a connection being opened) is held back by more than a tick.
pub(super) async fn sleep_past_replies(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return;
    }
    if left <= SPIN {
        yield_local().await;
        return;
    }
    std::thread::sleep(left.min(DEFER_REPLIES));
    // tokio's `yield_now` runs the task again only after the runtime has polled its event
    // loop (without blocking, as a task is ready): every response now waiting is read first.
    tokio::task::yield_now().await;
}

/// Makes the calling thread's sleeps end when asked, not up to the default 50 µs later that
/// Linux allows itself to batch timers: the sleep in [`sleep_past_replies`] is the pacer's.
pub(super) fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain prctl on the calling thread with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Waits until `until` (a planned arrival, or sooner to look at the stop flag): on the
/// precise timer when there is one, else on tokio's; the last [`SPIN`] by yielding.
pub(super) async fn wait_until(timer: Option<&PreciseTimer>, until: Instant) {
    let now = Instant::now();
    let Some(left) = until.checked_duration_since(now).filter(|d| !d.is_zero()) else {
        return;
    };
    if left <= SPIN {
        yield_local().await;
        return;
    }
    match timer {
        Some(t) => t.sleep(left).await,
        None => tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_split_the_plan_and_never_release_early() {
        let plan = ArrivalPlan::constant(1000.0, Duration::from_millis(100));
        let start = Instant::now();
        let mut seen = Vec::new();
        for w in 0..3 {
            let mut a = Arrivals::new(&plan, Shard::WHOLE, w, 3, start);
            let first = a.peek().unwrap();
            assert_eq!(first, start + plan.offset_of(w as u64));
            // Nothing is due before its time.
            assert!(a.take_due(first - Duration::from_nanos(1)).is_none());
            let far = start + Duration::from_secs(1);
            while let Some(t) = a.take_due(far) {
                seen.push(t);
            }
            assert!(a.peek().is_none());
        }
        assert_eq!(seen.len() as u64, plan.total);
        seen.sort();
        for (i, t) in seen.iter().enumerate() {
            assert_eq!(*t, start + plan.offset_of(i as u64));
        }
    }

    #[test]
    fn a_mailbox_hands_over_arrivals_then_closes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mb = std::rc::Rc::new(Mailbox::default());
            let t = Instant::now();
            mb.deliver(t);
            assert_eq!(mb.next().await, Some(t));
            mb.close();
            assert_eq!(mb.next().await, None);
        });
    }

    #[test]
    fn the_precise_timer_is_never_early_and_rarely_late() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let timer = PreciseTimer::new();
            for _ in 0..20 {
                let until = Instant::now() + Duration::from_micros(700);
                while Instant::now() < until {
                    wait_until(timer.as_ref(), until).await;
                }
                let late = Instant::now() - until;
                // Generous: the test machine is busy; tokio's timer alone is up to 2 ms late.
                assert!(late < Duration::from_millis(50), "{late:?}");
            }
        });
    }
}

//! Worker threads: one current-thread runtime each, running the open or the closed model.
//!
//! In the open model each worker paces its own share of the arrival plan on its own runtime
//! ([`super::pacer`]): nothing crosses threads per arrival. A user from the worker's pool sends
//! each arrival, and latency is measured from the arrival's planned time, so a stalled target
//! shows up instead of silently slowing the plan (coordinated omission).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

use super::flow::{Flow, FlowStep, Kept};
use super::http::{Conn, ErrorKind, RequestError};
use super::pacer::{
    precise_sleeps, sleep_past_replies, wait_until, yield_local, Arrivals, Mailbox, PreciseTimer,
    BATCH_WINDOW, DEFERRED_BATCH_WINDOW, DEFER_REPLIES, STOP_POLL,
};
use super::plan::{ArrivalPlan, ClosedPlan, Shard};
use super::recorder::{Progress, Recorder};
use super::step::Scratch;
use super::trace::{ClientSpan, Sampled, Sampler};
use super::{LoadOutcome, LoadSpec, Model};

/// Pause of a closed-model user after a failed connection, so a dead target is not hammered
/// with connection attempts in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How late the open model's worker must be for an arrival before it stops opening a new
/// connection for it when no user is idle (see `open_loop`). Far above scheduling noise, far
/// below what it takes to pile up thousands of connections.
const OVERDUE: Duration = Duration::from_millis(10);

/// Most new users (each a new connection) the open model's pacer makes between two of its
/// sleeps; the arrivals past it wait for the next user to finish (see `open_loop`). A
/// wake-up every 0.7 ms at 50,000 req/s releases 35 arrivals.
const NEW_USERS_PER_WAKE: u32 = 64;

/// Shortest period of the open model's sentinel timer (see `open_loop`), so a tiny request
/// timeout does not make it fire often.
const SENTINEL_MIN: Duration = Duration::from_millis(10);

pub(super) fn run(
    spec: Arc<LoadSpec>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<LoadOutcome> {
    let workers = spec.workers;
    // A short head start lets every thread build its runtime before the first arrival is due.
    let start = Instant::now() + Duration::from_millis(5);
    let started_at = SystemTime::now() + Duration::from_millis(5);

    let mut handles = Vec::with_capacity(workers);
    for id in 0..workers {
        let (spec, progress, stop) = (spec.clone(), progress.clone(), stop.clone());
        let h = std::thread::Builder::new()
            .name(format!("plimsoll-worker-{id}"))
            .spawn(
                move || -> std::io::Result<(Recorder, Option<Instant>, Vec<ClientSpan>)> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let local = tokio::task::LocalSet::new();
                    let worker = Rc::new(Worker::new(id, spec, progress, stop));
                    let w = worker.clone();
                    let watch = worker.clone();
                    local.spawn_local(async move { watch.stop_watch().await });
                    local.block_on(&rt, async move {
                        match &w.spec.model {
                            Model::Open { plan, shard } => open_loop(&w, plan, *shard, start).await,
                            Model::Closed(c) => closed_loop(&w, c, start).await,
                        }
                    });
                    let last = worker.last_end.get();
                    let rec = worker.recorder.replace(Recorder::new(0));
                    let spans = match worker.sampler.take() {
                        Some(s) => s.finish(start, started_at),
                        None => Vec::new(),
                    };
                    Ok((rec, last, spans))
                },
            )?;
        handles.push(h);
    }

    let mut total = Recorder::new(spec.steps.len());
    let mut last_end = start;
    let mut failure = None;
    let mut client_spans = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((rec, last, spans))) => {
                total.merge(&rec);
                client_spans.extend(spans);
                if let Some(l) = last {
                    last_end = last_end.max(l);
                }
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(std::io::Error::other("a load worker panicked")),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let mut elapsed = last_end.saturating_duration_since(start);
    // An open-model run lasts at least its plan, even when every request failed at once.
    if let Model::Open { plan, .. } = &spec.model {
        if !stop.load(Ordering::Relaxed) {
            elapsed = elapsed.max(plan.duration);
        }
    }
    Ok(LoadOutcome {
        recorder: total,
        started_at,
        elapsed,
        planned: spec.planned(),
        step_names: spec.steps.iter().map(|s| s.name.clone()).collect(),
        step_methods: spec.steps.iter().map(|s| s.method.to_string()).collect(),
        stopped_early: stop.load(Ordering::Relaxed),
        step_servers: spec
            .steps
            .iter()
            .map(|s| {
                let b = &spec.endpoints[s.endpoint].base;
                (b.host.clone(), b.port)
            })
            .collect(),
        client_spans,
    })
}

/// One virtual user's state: its connections (one slot per endpoint) and reusable buffers.
#[derive(Default)]
struct Vu {
    conns: Vec<Option<Conn>>,
    values: Vec<String>,
    scratch: Scratch,
    /// Serialized HTTP/1.1 requests of steps that vary per iteration.
    request: Vec<u8>,
    /// What flow steps keep of their responses (empty, never allocated, in plain loads).
    kept: Kept,
}

/// Where an exchange keeps the response's body and head; plain loads keep neither.
struct Keep<'a> {
    body: Option<&'a mut Vec<u8>>,
    head: Option<&'a mut Vec<u8>>,
}

impl Keep<'_> {
    const NONE: Keep<'static> = Keep {
        body: None,
        head: None,
    };
}

/// Everything a worker owns. Single-threaded: `Cell`/`RefCell`, never locks.
struct Worker {
    id: usize,
    spec: Arc<LoadSpec>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    recorder: RefCell<Recorder>,
    /// Resolved addresses per endpoint, looked up once per run.
    addrs: RefCell<Vec<Option<Arc<[SocketAddr]>>>>,
    /// The worker's shared HTTP/2 connection per endpoint.
    h2: RefCell<Vec<Option<Conn>>>,
    /// Open-model arrivals being sent or answered.
    in_flight: Cell<u32>,
    /// Woken once the stop flag is set (by the worker's stop watch): every iteration in
    /// flight races it, so a stopped run never waits for a target's answer.
    halt: Notify,
    last_end: Cell<Option<Instant>>,
    /// Picks the requests that carry a `traceparent` and keeps their records.
    sampler: RefCell<Option<Sampler>>,
    /// Whether the last response came with the kernel's receive stamp. The kernel turns
    /// stamping on some time after the first socket asks for it (and some systems never do),
    /// so the open model leaves responses waiting for a tick only once they are stamped.
    stamped: Cell<bool>,
    /// Whether new connections ask the kernel for receive stamps: only where the open model
    /// leaves responses waiting for a tick. Stamping costs a little on every read (and turns
    /// on receive timestamps for the whole host), so the closed model, which reads each
    /// response as it comes, does without.
    stamp_replies: Cell<bool>,
}

impl Worker {
    fn new(id: usize, spec: Arc<LoadSpec>, progress: Arc<Progress>, stop: Arc<AtomicBool>) -> Self {
        let n = spec.endpoints.len();
        Worker {
            id,
            recorder: RefCell::new(Recorder::new(spec.steps.len())),
            addrs: RefCell::new(vec![None; n]),
            h2: RefCell::new((0..n).map(|_| None).collect()),
            in_flight: Cell::new(0),
            stamped: Cell::new(false),
            stamp_replies: Cell::new(false),
            halt: Notify::new(),
            last_end: Cell::new(None),
            sampler: RefCell::new(
                spec.trace
                    .as_ref()
                    .and_then(|t| Sampler::new(t, id, spec.workers)),
            ),
            spec,
            progress,
            stop,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Polls the stop flag and wakes every iteration in flight once it is set. One timer per
    /// worker thread, not one per request: the hot path only registers on `halt`.
    async fn stop_watch(&self) {
        while !self.stopped() {
            tokio::time::sleep(STOP_POLL).await;
        }
        self.halt.notify_waiters();
    }

    /// Runs `work` unless the run is stopped first: `None` means it was abandoned (an
    /// iteration's connection is dropped with it, never reused).
    async fn unless_stopped<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        // Registered before the flag is read, so a stop between the two is not missed.
        let halted = self.halt.notified();
        if self.stopped() {
            return None;
        }
        tokio::select! {
            biased;
            r = work => Some(r),
            () = halted => None,
        }
    }

    fn new_vu(&self) -> Vu {
        Vu {
            conns: (0..self.spec.endpoints.len()).map(|_| None).collect(),
            ..Vu::default()
        }
    }

    async fn connect(&self, ep: usize) -> Result<Conn, RequestError> {
        if let Some(c) = self.h2.borrow_mut().get_mut(ep).and_then(|c| c.as_mut()) {
            if c.is_usable() {
                if let Some(shared) = c.share() {
                    return Ok(shared);
                }
            }
        }
        let endpoint = &self.spec.endpoints[ep];
        let cached = self.addrs.borrow()[ep].clone();
        let addrs = match cached {
            Some(a) => a,
            None => {
                let a: Arc<[SocketAddr]> = endpoint.resolve().await?.into();
                self.addrs.borrow_mut()[ep] = Some(a.clone());
                a
            }
        };
        let conn = if self.stamp_replies.get() {
            endpoint.connect_stamped(&addrs).await?
        } else {
            endpoint.connect(&addrs).await?
        };
        if let Some(shared) = conn.share() {
            self.h2.borrow_mut()[ep] = Some(shared);
        }
        Ok(conn)
    }

    /// Runs one iteration: its steps in order, stopping at the first failure. `planned` is the
    /// arrival's planned time in the open model; the first step's latency counts from it.
    async fn iteration(&self, vu: &mut Vu, planned: Option<Instant>) -> Result<(), ErrorKind> {
        let spec = &*self.spec;
        spec.generators.fill(&mut vu.values);
        if let Some(d) = &spec.data {
            d.fill(&mut vu.values);
        }
        if let Some(flow) = &spec.flow {
            return self.flow_iteration(vu, planned, flow).await;
        }
        for i in 0..spec.steps.len() {
            let due = if i == 0 { planned } else { None };
            self.request(vu, i, due, None).await?;
        }
        Ok(())
    }

    /// One iteration of a flow: a scenario drawn by weight, its steps in order (skipped when
    /// their `if` variable is empty, repeated by `loop`, followed by their think time).
    async fn flow_iteration(
        &self,
        vu: &mut Vu,
        mut planned: Option<Instant>,
        flow: &Flow,
    ) -> Result<(), ErrorKind> {
        for fs in &flow.choose().steps {
            if fs.when.is_some_and(|slot| vu.values[slot].is_empty()) {
                continue;
            }
            for _ in 0..fs.repeat {
                // The first request sent, whichever step it is, is the one the plan timed.
                self.request(vu, fs.step, planned.take(), Some(fs)).await?;
                if !fs.think.is_zero() {
                    tokio::time::sleep(fs.think).await;
                }
            }
        }
        Ok(())
    }

    /// Sends step `i`'s request, records it, and returns the error that ends the iteration.
    /// `planned` (the arrival's planned time) makes latency count from it. A flow step keeps
    /// what its rules read of the response and inspects it: a broken rule is an `expect` error.
    async fn request(
        &self,
        vu: &mut Vu,
        i: usize,
        planned: Option<Instant>,
        flow_step: Option<&FlowStep>,
    ) -> Result<(), ErrorKind> {
        let spec = &*self.spec;
        let step = &spec.steps[i];
        let sent = Instant::now();
        let due = match planned {
            Some(p) => {
                self.recorder
                    .borrow_mut()
                    .record_send_lag(sent.saturating_duration_since(p));
                p
            }
            None => sent,
        };
        let deadline = tokio::time::Instant::from_std(due + spec.timeout);
        let sampled = match self.sampler.borrow_mut().as_mut() {
            Some(s) => s.sample(),
            None => None,
        };
        // The kept buffers leave the user for the exchange, which borrows it whole.
        let mut kept = flow_step.map(|_| std::mem::take(&mut vu.kept));
        let keep = match (flow_step, kept.as_mut()) {
            (Some(fs), Some(k)) => Keep {
                body: fs.keep_body.then_some(&mut k.body),
                head: fs.keep_head.then_some(&mut k.head),
            },
            _ => Keep::NONE,
        };
        let result =
            tokio::time::timeout_at(deadline, self.exchange(vu, i, sampled.as_ref(), keep, sent))
                .await;
        // The response's end is when its last bytes arrived, by the kernel's stamp where the
        // connection has one: the open model may read it up to a pacer tick later.
        let end = match &result {
            Ok(Ok((_, _, Some(rx)))) => *rx,
            _ => Instant::now(),
        };
        if let Ok(Ok((_, _, rx))) = &result {
            self.stamped.set(rx.is_some());
        }
        let mut bytes = 0;
        let (status, error) = match result {
            Err(_) => {
                // The exchange future owned the connection and is gone with it: a
                // connection with a request still in flight is never reused.
                (None, Some(ErrorKind::Timeout))
            }
            Ok(Err(e)) => {
                self.note_error(e.kind, || e.message.clone());
                (None, Some(e.kind))
            }
            Ok(Ok((code, n, _))) => {
                bytes = n;
                if !step.accepts(code) {
                    (Some(code), Some(ErrorKind::Status))
                } else if let (Some(fs), Some(k)) = (flow_step, kept.as_ref()) {
                    match fs.inspect(k, &mut vu.values) {
                        Ok(()) => (Some(code), None),
                        Err(m) => {
                            self.note_error(ErrorKind::Expect, || format!("{}: {m}", step.name));
                            (Some(code), Some(ErrorKind::Expect))
                        }
                    }
                } else {
                    (Some(code), None)
                }
            }
        };
        if let Some(k) = kept {
            vu.kept = k;
        }
        match error {
            Some(ErrorKind::Timeout) => self.note_error(ErrorKind::Timeout, || {
                format!("no complete response within {:?} (timeout)", spec.timeout)
            }),
            Some(ErrorKind::Status) => self.note_error(ErrorKind::Status, || {
                format!("unexpected status {}", status.unwrap_or(0))
            }),
            _ => {}
        }
        self.recorder.borrow_mut().request(
            i,
            end.saturating_duration_since(due),
            end.saturating_duration_since(sent),
            status,
            error.map(|k| (k, "")),
            bytes,
        );
        // Unsampled requests skip even the sampler's borrow.
        if let Some(x) = &sampled {
            if let Some(s) = self.sampler.borrow_mut().as_mut() {
                s.record(
                    sent,
                    end,
                    ClientSpan {
                        span_id: x.span_id,
                        step: i,
                        // Set from the instants when the run ends.
                        start: SystemTime::UNIX_EPOCH,
                        end: SystemTime::UNIX_EPOCH,
                        status,
                        error,
                    },
                );
            }
        }
        self.last_end.set(Some(end));
        // Live counters, and the window of the planned send (the send itself for a step
        // the plan did not time) when the reader asked for windows.
        self.progress.record(
            self.id,
            due,
            end.saturating_duration_since(due),
            error.is_some(),
        );
        match error {
            Some(kind) => Err(kind),
            None => Ok(()),
        }
    }

    /// Keeps the first message of each error kind; builds it only when it will be kept.
    fn note_error(&self, kind: ErrorKind, message: impl FnOnce() -> String) {
        let mut rec = self.recorder.borrow_mut();
        let slot = &mut rec.error_samples[kind.index()];
        if slot.is_none() {
            *slot = Some(message());
        }
    }

    /// One request-response exchange of step `i` on the user's connection.
    /// A sampled request carries its `traceparent`; the others take the plain path.
    async fn exchange(
        &self,
        vu: &mut Vu,
        i: usize,
        sampled: Option<&Sampled>,
        keep: Keep<'_>,
        sent: Instant,
    ) -> Result<(u16, u64, Option<Instant>), RequestError> {
        let step = &self.spec.steps[i];
        let ep = step.endpoint;
        let mut conn = match vu.conns[ep].take() {
            Some(mut c) => {
                if c.is_usable() {
                    c
                } else {
                    self.connect(ep).await?
                }
            }
            None => self.connect(ep).await?,
        };
        let resp = if conn.is_h2() {
            let mut req = step.build(true, &vu.values, &mut vu.scratch)?;
            if let Some(x) = sampled {
                if let Ok(v) = http::HeaderValue::from_bytes(&x.traceparent) {
                    req.headers_mut().insert("traceparent", v);
                }
            }
            conn.exchange_h2(req, self.spec.max_body, keep.body, keep.head)
                .await?
        } else {
            let bytes = match sampled {
                None => step.h1_bytes(&vu.values, &mut vu.scratch, &mut vu.request)?,
                Some(x) => step.h1_bytes_traced(
                    &vu.values,
                    &mut vu.scratch,
                    &mut vu.request,
                    &x.traceparent,
                )?,
            };
            conn.exchange_h1(
                bytes,
                step.is_head,
                self.spec.max_body,
                keep.body,
                keep.head,
            )
            .await?
        };
        // Only a connection that finished its exchange cleanly, and that the response allows
        // to be reused, goes back to the user.
        let received = conn.received_at(sent);
        if resp.reusable {
            vu.conns[ep] = Some(conn);
        }
        Ok((resp.status, resp.body_bytes, received))
    }

    fn finish_iteration(&self, r: &Result<(), ErrorKind>) {
        let mut rec = self.recorder.borrow_mut();
        match r {
            Ok(()) => rec.iterations_completed += 1,
            Err(_) => rec.iterations_failed += 1,
        }
    }
}

async fn open_loop(w: &Rc<Worker>, plan: &ArrivalPlan, shard: Shard, start: Instant) {
    let cap = w.spec.max_in_flight.div_ceil(w.spec.workers as u32).max(1);
    let mut arrivals = Arrivals::new(plan, shard, w.id, w.spec.workers, start);
    let timer = PreciseTimer::new();
    // Users are made only when none is idle, so the pool and `users` stop growing once they
    // cover the peak in flight (at most `cap`); nothing per arrival is allocated after that.
    let pool: Rc<UserPool> = Rc::default();
    let mut users = Vec::new();
    // tokio's timer wakes its own event loop (a write to an eventfd) whenever a timer is
    // added that is due before every timer it holds, which each request's timeout is when
    // nothing else is in flight: a syscall per arrival at low rates. This timer is always due
    // sooner than any new timeout, so adding one never needs that wake-up.
    let sentinel_period = (w.spec.timeout / 2).max(SENTINEL_MIN);
    let sentinel = tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(sentinel_period).await;
        }
    });
    // Responses may wait in their sockets until the next tick (see `pacer::sleep_past_replies`)
    // only where their arrival is stamped, so latency does not grow by the wait, and where
    // an iteration is one request, so no step waits a tick to go out after the one before.
    let defer_replies = timer.is_some()
        && w.spec.flow.is_none()
        && w.spec.steps.len() == 1
        && w.spec.endpoints.iter().all(|e| e.stamps_responses());
    let window = if defer_replies {
        DEFERRED_BATCH_WINDOW
    } else {
        BATCH_WINDOW
    };
    // When the last wake-up released arrivals; the first may go out at once.
    let mut released = start.checked_sub(window).unwrap_or(start);
    let mut let_users_finish = false;
    if defer_replies {
        w.stamp_replies.set(true);
        precise_sleeps();
    }
    // Whether the users given arrivals since the last sleep have run (and sent them).
    let mut sends_out = true;
    // New users made since the pacer last slept: while it is behind it never sleeps, so
    // this bounds the connections a backlog opens, however many turns it takes to clear.
    let mut opened = 0;
    'pace: while let Some(next) = arrivals.peek() {
        let now = Instant::now();
        if next > now {
            if w.stopped() {
                break;
            }
            let wake = next.max(released + window).min(now + STOP_POLL);
            if defer_replies
                && w.stamped.get()
                && w.in_flight.get() > 0
                && wake.saturating_duration_since(now) <= DEFER_REPLIES
            {
                if !sends_out {
                    // The users just given arrivals run first and send them.
                    sends_out = true;
                    yield_local().await;
                    continue;
                }
                opened = 0;
                sleep_past_replies(wake).await;
                continue;
            }
            opened = 0;
            wait_until(timer.as_ref(), wake).await;
            continue;
        }
        sends_out = false;
        if pool.idle.borrow().is_empty() && w.in_flight.get() > 0 && !let_users_finish {
            // Users whose responses came in with this wake-up run after the pacer: let them
            // finish first, so they take these arrivals on their open connections instead of
            // new users opening new ones (a spiral of connections when the worker falls behind).
            let_users_finish = true;
            yield_local().await;
            continue;
        }
        let_users_finish = false;
        released = now;
        // Everything due by now goes out from this one wake-up, each timed from its own plan.
        while let Some(planned) = arrivals.take_due(now) {
            if w.stopped() {
                break 'pace;
            }
            if w.in_flight.get() >= cap {
                w.recorder.borrow_mut().dropped += 1;
                continue;
            }
            let busy = w.in_flight.get();
            w.in_flight.set(busy + 1);
            w.recorder.borrow_mut().iterations_started += 1;
            let user = pool.idle.borrow_mut().pop();
            match user {
                Some(mailbox) => mailbox.deliver(planned),
                // The worker itself has fallen behind (starved of CPU, not slowed by the
                // target): a new user per overdue arrival would open a connection each, and
                // connecting costs more CPU, so the worker falls further behind and the target
                // ends up refusing connections. Overdue arrivals wait for the next user to
                // finish instead; their latency still counts from their planned time.
                // Likewise when this wake-up has already opened its share of new connections:
                // many arrivals due at once means the worker was held up, not that the target
                // needs more connections (a wake-up releases far fewer at any rate a worker
                // keeps up with, so pacing stays exact).
                None if busy > 0
                    && (opened >= NEW_USERS_PER_WAKE
                        || now.saturating_duration_since(planned) > OVERDUE) =>
                {
                    pool.overdue.borrow_mut().push_back(planned);
                }
                None => {
                    opened += 1;
                    let mailbox = Rc::new(Mailbox::default());
                    mailbox.deliver(planned);
                    let task = open_user(w.clone(), mailbox.clone(), pool.clone());
                    users.push((mailbox, tokio::task::spawn_local(task)));
                }
            }
        }
    }
    if w.stopped() {
        // Stopped: overdue arrivals that no user took never start.
        let n = pool.overdue.borrow_mut().drain(..).count();
        w.in_flight.set(w.in_flight.get() - n as u32);
        w.recorder.borrow_mut().iterations_started -= n as u64;
    }
    // Users finish what they were given (and what is overdue), then see the closed mailbox
    // and end, dropping their connections before the runtime goes away.
    for (mailbox, _) in &users {
        mailbox.close();
    }
    for (_, task) in users {
        let _ = task.await;
    }
    sentinel.abort();
}

/// One user of the open model: sends each arrival its mailbox gets, on its own connections.
/// The open model's users of one worker.
#[derive(Default)]
struct UserPool {
    /// Idle users, most recently finished last: reusing it first keeps the fewest connections
    /// open and the warmest one in use.
    idle: RefCell<Vec<Rc<Mailbox>>>,
    /// Planned times of arrivals released when the worker was already [`OVERDUE`] for them and
    /// no user was idle: the next user to finish takes them, oldest first.
    overdue: RefCell<VecDeque<Instant>>,
}

/// One user of the open model: sends each arrival its mailbox gets, then any overdue ones,
/// on its own connections.
async fn open_user(w: Rc<Worker>, mailbox: Rc<Mailbox>, pool: Rc<UserPool>) {
    let mut vu = w.new_vu();
    let mut next = mailbox.next().await;
    while let Some(planned) = next {
        let Some(r) = w.unless_stopped(w.iteration(&mut vu, Some(planned))).await else {
            // Stopped mid-exchange: the exchange is abandoned and counted, the user (and its
            // connection) goes away.
            w.recorder.borrow_mut().abandoned += 1;
            w.in_flight.set(w.in_flight.get() - 1);
            return;
        };
        w.finish_iteration(&r);
        w.in_flight.set(w.in_flight.get() - 1);
        // Bound first: a borrow held across the await below would still be held when the
        // pacer next queues an arrival.
        let overdue = pool.overdue.borrow_mut().pop_front();
        next = match overdue {
            Some(p) => Some(p),
            None => {
                pool.idle.borrow_mut().push(mailbox.clone());
                mailbox.next().await
            }
        };
    }
}

async fn closed_loop(w: &Rc<Worker>, plan: &ClosedPlan, start: Instant) {
    let workers = w.spec.workers as u32;
    let mut users = Vec::new();
    for v in (w.id as u32..plan.concurrency).step_by(workers as usize) {
        let (wk, plan) = (w.clone(), plan.clone());
        users.push(tokio::task::spawn_local(async move {
            let ramp =
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + plan.start_of(v)));
            if wk.unless_stopped(ramp).await.is_none() {
                return;
            }
            let deadline = plan.duration.map(|d| start + d);
            let mut vu = wk.new_vu();
            let mut done = 0u64;
            loop {
                if wk.stopped()
                    || deadline.is_some_and(|d| Instant::now() >= d)
                    || plan.iterations.is_some_and(|m| done >= m)
                {
                    break;
                }
                wk.recorder.borrow_mut().iterations_started += 1;
                let Some(r) = wk.unless_stopped(wk.iteration(&mut vu, None)).await else {
                    wk.recorder.borrow_mut().abandoned += 1;
                    break;
                };
                wk.finish_iteration(&r);
                done += 1;
                if matches!(r, Err(ErrorKind::Connect | ErrorKind::Tls)) {
                    tokio::time::sleep(CONNECT_BACKOFF.max(plan.think)).await;
                } else if !plan.think.is_zero() {
                    tokio::time::sleep(plan.think).await;
                }
            }
        }));
    }
    for u in users {
        let _ = u.await;
    }
}

//! Seed 001's webhook job queue with a real dependency story, for the fault probe: jobs go to
//! a Redis list; when Redis fails, a circuit breaker opens and jobs go to a fallback queue
//! (a PostgreSQL table with `--database-url`, else memory) until Redis answers again, and a
//! background task moves the fallback's jobs back to Redis and works the list off.
//!
//! - `POST /queue/jobs`: enqueue the body (any text up to 64 KiB): `202 {"queued":"redis"}`,
//!   `202 {"queued":"fallback"}`, or `503` when neither store takes it.
//! - `POST /queue/direct`: the same without breaker or fallback: a Redis failure is a `503`
//!   (the route that must grade critical during a Redis outage).
//! - `GET /queue/stats`: backlog per store, breaker state and counters, as JSON.
//! - `GET /metrics`: the same as Prometheus text (`sample_queue_backlog{store}`, …), for
//!   the fault probe's backlog source.
//!
//! **Breaker.** Closed: every job tries Redis; `BREAKER_THRESHOLD` failures in a row open it.
//! Open: jobs skip Redis for `--breaker-open-ms`. Then half-open: up to
//! `HALF_OPEN_PROBES` jobs try Redis at once; that many successes close it, one failure
//! opens it again. Seed 001 names 5 failures, 30 s and 3 probes; the open time is shorter
//! here by default so a test's outage of a few seconds shows its recovery.
//!
//! Every Redis exchange (connecting included) is bounded by `--queue-redis-timeout-ms`; a
//! connection that errs or times out is dropped and the next exchange opens a new one, so the
//! queue comes back by itself after a restart, a reset or a hung link. Nothing is logged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use sqlx::postgres::PgPool;

use crate::reply::{self, ReplyBody};

/// Largest job accepted.
const MAX_JOB_BYTES: usize = 64 * 1024;
/// Failures in a row that open the breaker (seed 001: `CIRCUIT_BREAKER_THRESHOLD=5`).
const BREAKER_THRESHOLD: u32 = 5;
/// Jobs let through at once when half-open, and successes that close it (seed 001: 3).
const HALF_OPEN_PROBES: u32 = 3;
/// Most jobs the memory fallback holds; beyond it the route answers 503.
const MEMORY_FALLBACK_CAPACITY: usize = 1_000_000;
/// How often the background task drains the fallback and works the list off.
const TICK: Duration = Duration::from_millis(100);
/// Most fallback jobs moved back to Redis per tick.
const DRAIN_BATCH: i64 = 500;
/// Created on start when missing (the same advisory lock as the order tables').
const SCHEMA: &[&str] = &[
    "SELECT pg_advisory_xact_lock(74111)",
    "CREATE TABLE IF NOT EXISTS sample_queue_fallback (
        id BIGSERIAL PRIMARY KEY,
        payload TEXT NOT NULL,
        queued_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
];

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub redis_url: String,
    pub key: String,
    pub redis_timeout: Duration,
    pub breaker_open: Duration,
    /// Jobs the workers take off the Redis list per second.
    pub work_rate: u64,
}

/// Where jobs wait while Redis is away.
#[derive(Debug)]
enum Fallback {
    Postgres(PgPool),
    Memory(Mutex<VecDeque<String>>),
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Breaker {
    state: State,
    open_for: Duration,
    opened: u64,
}

impl Breaker {
    fn new(open_for: Duration) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            open_for,
            opened: 0,
        }
    }

    /// Whether a job may try Redis now (a half-open probe counts as in flight until its
    /// `success` or `failure`).
    fn allow(&mut self, now: Instant) -> bool {
        match &mut self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= *until => {
                self.state = State::HalfOpen {
                    in_flight: 1,
                    successes: 0,
                };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { in_flight, .. } if *in_flight < HALF_OPEN_PROBES => {
                *in_flight += 1;
                true
            }
            State::HalfOpen { .. } => false,
        }
    }

    fn success(&mut self) {
        match &mut self.state {
            State::Closed { failures } => *failures = 0,
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= HALF_OPEN_PROBES {
                    self.state = State::Closed { failures: 0 };
                }
            }
            State::Open { .. } => {}
        }
    }

    fn failure(&mut self, now: Instant) {
        let open = match &mut self.state {
            State::Closed { failures } => {
                *failures += 1;
                *failures >= BREAKER_THRESHOLD
            }
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            self.opened += 1;
            self.state = State::Open {
                until: now + self.open_for,
            };
        }
    }

    fn name(&self) -> &'static str {
        match self.state {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// The queue, shared by every connection task and the background task.
#[derive(Debug)]
pub struct Queue {
    settings: QueueSettings,
    client: ::redis::Client,
    conn: tokio::sync::Mutex<Option<::redis::aio::MultiplexedConnection>>,
    breaker: Mutex<Breaker>,
    fallback: Fallback,
    fallback_len: AtomicU64,
    /// The list's length when last read (kept while Redis is away).
    redis_len: AtomicU64,
    to_redis: AtomicU64,
    to_fallback: AtomicU64,
    refused: AtomicU64,
    drained: AtomicU64,
    worked: AtomicU64,
}

/// The `/queue/stats` document.
#[derive(Debug, Serialize)]
struct StatsDocument {
    breaker: &'static str,
    breaker_opened: u64,
    backlog_redis: u64,
    backlog_fallback: u64,
    fallback_store: &'static str,
    jobs_to_redis: u64,
    jobs_to_fallback: u64,
    jobs_refused: u64,
    jobs_drained_from_fallback: u64,
    jobs_worked: u64,
}

/// Why a Redis exchange failed.
type RedisResult<T> = Result<T, String>;

impl Queue {
    /// The queue on `settings.redis_url`, which need not be up yet, with its fallback in
    /// PostgreSQL (`database_url`, whose table is created now) or in memory.
    pub async fn start(
        settings: QueueSettings,
        database_url: Option<&str>,
    ) -> anyhow::Result<std::sync::Arc<Self>> {
        let client = ::redis::Client::open(settings.redis_url.as_str())?;
        let (fallback, len) = match database_url {
            Some(url) => {
                let pool = crate::db::connect(url, 8, Duration::from_secs(2), SCHEMA).await?;
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sample_queue_fallback")
                    .fetch_one(&pool)
                    .await?;
                (Fallback::Postgres(pool), n.max(0) as u64)
            }
            None => (Fallback::Memory(Mutex::new(VecDeque::new())), 0),
        };
        let open_for = settings.breaker_open;
        let queue = std::sync::Arc::new(Queue {
            settings,
            client,
            conn: tokio::sync::Mutex::new(None),
            breaker: Mutex::new(Breaker::new(open_for)),
            fallback,
            fallback_len: AtomicU64::new(len),
            redis_len: AtomicU64::new(0),
            to_redis: AtomicU64::new(0),
            to_fallback: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            worked: AtomicU64::new(0),
        });
        let background = std::sync::Arc::clone(&queue);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                background.tick().await;
            }
        });
        Ok(queue)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one exchange with Redis within the timeout, opening a connection when there is
    /// none; an error or a timeout drops the connection.
    async fn redis<T: ::redis::FromRedisValue + Send>(&self, cmd: ::redis::Cmd) -> RedisResult<T> {
        let limit = self.settings.redis_timeout;
        let exchange = async {
            let mut conn = {
                let mut slot = self.conn.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => {
                        let c = self
                            .client
                            .get_multiplexed_async_connection()
                            .await
                            .map_err(|e| format!("connect: {e}"))?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        let result = match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        };
        if result.is_err() {
            // A connection that failed once is not trusted again. `try_lock`: a connect in
            // progress holds the slot and will replace it anyway.
            if let Ok(mut slot) = self.conn.try_lock() {
                *slot = None;
            }
        }
        result
    }

    /// `LPUSH` of one job, as one attempt.
    async fn push(&self, job: &str) -> RedisResult<()> {
        let mut cmd = ::redis::cmd("LPUSH");
        cmd.arg(&self.settings.key).arg(job);
        self.redis::<u64>(cmd).await.map(|n| {
            self.redis_len.store(n, Relaxed);
        })
    }

    /// Enqueues through the breaker, into the fallback when Redis is away.
    async fn enqueue(&self, job: String) -> Response<ReplyBody> {
        let allowed = self.breaker().allow(Instant::now());
        if allowed {
            match self.push(&job).await {
                Ok(()) => {
                    self.breaker().success();
                    self.to_redis.fetch_add(1, Relaxed);
                    return queued("redis");
                }
                Err(_) => self.breaker().failure(Instant::now()),
            }
        }
        match self.to_fallback(job).await {
            Ok(()) => {
                self.to_fallback.fetch_add(1, Relaxed);
                queued("fallback")
            }
            Err(e) => {
                self.refused.fetch_add(1, Relaxed);
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("queue unavailable: Redis is failing and the fallback too: {e}"),
                )
            }
        }
    }

    /// Enqueues in Redis only.
    async fn enqueue_direct(&self, job: String) -> Response<ReplyBody> {
        match self.push(&job).await {
            Ok(()) => {
                self.to_redis.fetch_add(1, Relaxed);
                queued("redis")
            }
            Err(e) => {
                self.refused.fetch_add(1, Relaxed);
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("queue unavailable: {e}"),
                )
            }
        }
    }

    async fn to_fallback(&self, job: String) -> Result<(), String> {
        match &self.fallback {
            Fallback::Memory(m) => {
                let mut q = m.lock().unwrap_or_else(|e| e.into_inner());
                if q.len() >= MEMORY_FALLBACK_CAPACITY {
                    return Err("the memory fallback is full".into());
                }
                q.push_back(job);
            }
            Fallback::Postgres(pool) => {
                sqlx::query("INSERT INTO sample_queue_fallback (payload) VALUES ($1)")
                    .bind(job)
                    .execute(pool)
                    .await
                    .map_err(|e| format!("database: {e}"))?;
            }
        }
        self.fallback_len.fetch_add(1, Relaxed);
        Ok(())
    }

    /// One pass of the background task, through the breaker like a job (so it is also what
    /// probes Redis when no job comes): the workers take their share off the list, then,
    /// while the breaker is closed, a batch of the fallback moves back to Redis.
    async fn tick(&self) {
        if !self.breaker().allow(Instant::now()) {
            return;
        }
        let share = (self.settings.work_rate * TICK.as_millis() as u64 / 1000).max(1);
        let mut pop = ::redis::cmd("RPOP");
        pop.arg(&self.settings.key).arg(share);
        match self.redis::<Option<Vec<String>>>(pop).await {
            Ok(jobs) => {
                self.breaker().success();
                self.worked
                    .fetch_add(jobs.map_or(0, |j| j.len() as u64), Relaxed);
                let mut len = ::redis::cmd("LLEN");
                len.arg(&self.settings.key);
                if let Ok(n) = self.redis::<u64>(len).await {
                    self.redis_len.store(n, Relaxed);
                }
            }
            Err(_) => {
                self.breaker().failure(Instant::now());
                return;
            }
        }
        let closed = matches!(self.breaker().state, State::Closed { .. });
        if closed && self.fallback_len.load(Relaxed) > 0 {
            match self.drain_batch().await {
                Ok(n) => {
                    self.drained.fetch_add(n, Relaxed);
                }
                Err(_) => self.breaker().failure(Instant::now()),
            }
        }
    }

    /// Moves up to `DRAIN_BATCH` jobs, oldest first, from the fallback to the list; a job
    /// leaves the fallback only once Redis holds it.
    async fn drain_batch(&self) -> Result<u64, String> {
        match &self.fallback {
            Fallback::Memory(m) => {
                let batch: Vec<String> = {
                    let q = m.lock().unwrap_or_else(|e| e.into_inner());
                    q.iter().take(DRAIN_BATCH as usize).cloned().collect()
                };
                if batch.is_empty() {
                    return Ok(0);
                }
                let mut cmd = ::redis::cmd("LPUSH");
                cmd.arg(&self.settings.key).arg(&batch);
                let n = self.redis::<u64>(cmd).await?;
                self.redis_len.store(n, Relaxed);
                let mut q = m.lock().unwrap_or_else(|e| e.into_inner());
                let k = batch.len().min(q.len());
                q.drain(..k);
                self.fallback_len.store(q.len() as u64, Relaxed);
                Ok(k as u64)
            }
            Fallback::Postgres(pool) => {
                let db = |e: sqlx::Error| format!("database: {e}");
                let mut tx = pool.begin().await.map_err(db)?;
                let batch: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM sample_queue_fallback WHERE id IN (
                        SELECT id FROM sample_queue_fallback ORDER BY id LIMIT $1
                        FOR UPDATE SKIP LOCKED)
                     RETURNING payload",
                )
                .bind(DRAIN_BATCH)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                if batch.is_empty() {
                    self.fallback_len.store(0, Relaxed);
                    return Ok(0);
                }
                let mut cmd = ::redis::cmd("LPUSH");
                cmd.arg(&self.settings.key).arg(&batch);
                // On a Redis failure the transaction rolls back when dropped: the jobs stay.
                let n = self.redis::<u64>(cmd).await?;
                self.redis_len.store(n, Relaxed);
                tx.commit().await.map_err(db)?;
                let k = batch.len() as u64;
                let _ = self
                    .fallback_len
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(k)));
                Ok(k)
            }
        }
    }

    fn stats(&self) -> StatsDocument {
        let b = self.breaker();
        StatsDocument {
            breaker: b.name(),
            breaker_opened: b.opened,
            backlog_redis: self.redis_len.load(Relaxed),
            backlog_fallback: self.fallback_len.load(Relaxed),
            fallback_store: match self.fallback {
                Fallback::Postgres(_) => "postgres",
                Fallback::Memory(_) => "memory",
            },
            jobs_to_redis: self.to_redis.load(Relaxed),
            jobs_to_fallback: self.to_fallback.load(Relaxed),
            jobs_refused: self.refused.load(Relaxed),
            jobs_drained_from_fallback: self.drained.load(Relaxed),
            jobs_worked: self.worked.load(Relaxed),
        }
    }
}

fn queued(store: &str) -> Response<ReplyBody> {
    reply::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "queued": store }),
    )
}

/// The queue's routes (its series on `/metrics` come from [`metrics_text`]).
pub fn owns(path: &str) -> bool {
    path.starts_with("/queue/")
}

/// The queue's series for the backend's `/metrics`.
pub fn metrics_text(queue: &Queue) -> String {
    exposition(&queue.stats())
}

/// Answers one request on the queue's routes; without a queue, says how to get one.
pub async fn respond(
    queue: Option<&Queue>,
    method: &Method,
    path: &str,
    body: Incoming,
) -> Response<ReplyBody> {
    let Some(queue) = queue else {
        return reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no queue: start the backend with --queue-redis-url",
        );
    };
    match (path, method) {
        ("/queue/jobs" | "/queue/direct", &Method::POST) => {
            let job = match Limited::new(body, MAX_JOB_BYTES).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "body unreadable or larger than 64 KiB",
                    )
                }
            };
            let job = String::from_utf8_lossy(&job).into_owned();
            if path == "/queue/jobs" {
                queue.enqueue(job).await
            } else {
                queue.enqueue_direct(job).await
            }
        }
        ("/queue/jobs" | "/queue/direct", _) => reply::method_not_allowed("POST"),
        ("/queue/stats", &Method::GET | &Method::HEAD) => {
            reply::json(StatusCode::OK, &queue.stats())
        }
        ("/queue/stats", _) => reply::method_not_allowed("GET, HEAD"),
        _ => reply::not_found(),
    }
}

/// The stats as Prometheus text.
fn exposition(s: &StatsDocument) -> String {
    let open = u8::from(s.breaker != "closed");
    format!(
        "# HELP sample_queue_backlog Jobs waiting, per store.\n\
         # TYPE sample_queue_backlog gauge\n\
         sample_queue_backlog{{store=\"redis\"}} {}\n\
         sample_queue_backlog{{store=\"fallback\"}} {}\n\
         # HELP sample_queue_breaker_open 1 while the Redis circuit breaker is open or half-open.\n\
         # TYPE sample_queue_breaker_open gauge\n\
         sample_queue_breaker_open {open}\n\
         # HELP sample_queue_jobs_total Jobs received, by where they went.\n\
         # TYPE sample_queue_jobs_total counter\n\
         sample_queue_jobs_total{{outcome=\"redis\"}} {}\n\
         sample_queue_jobs_total{{outcome=\"fallback\"}} {}\n\
         sample_queue_jobs_total{{outcome=\"refused\"}} {}\n",
        s.backlog_redis, s.backlog_fallback, s.jobs_to_redis, s.jobs_to_fallback, s.jobs_refused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_closes_after_the_probes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(1));
        for _ in 0..BREAKER_THRESHOLD - 1 {
            assert!(b.allow(t0));
            b.failure(t0);
        }
        assert_eq!(b.name(), "closed");
        b.failure(t0);
        assert_eq!(b.name(), "open");
        assert!(!b.allow(t0 + Duration::from_millis(999)));
        // Half-open: three probes at most, a failure reopens.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.allow(t1) && b.allow(t1) && b.allow(t1));
        assert!(!b.allow(t1));
        b.failure(t1);
        assert_eq!(b.name(), "open");
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..HALF_OPEN_PROBES {
            assert!(b.allow(t2));
        }
        for _ in 0..HALF_OPEN_PROBES {
            b.success();
        }
        assert_eq!(b.name(), "closed");
        assert_eq!(b.opened, 2);
    }
}

//! The sample backend's routes and the state they share.
//!
//! `respond` maps one request to one response and never fails: bad input is a 4xx answer
//! with a short JSON error, never a panic or a dropped connection. Routes do no logging, since
//! a load run would flood the output, and they only read what they need from the request.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::calls::{self, Calls};
use crate::capacity::{self, Capacity};
use crate::catalog::Catalog;
use crate::events::{self, Events};
use crate::orders::{self, Orders};
use crate::process;
use crate::queue::{self, Queue};
use crate::reply::{self, ReplyBody};
use crate::reports;
use crate::timing::{PreciseTimer, StallSchedule};
use crate::webhook::{self, MessageLedger, LEDGER_CAPACITY};

/// Longest `/delay` accepted.
const MAX_DELAY_MS: u64 = 60_000;

/// Largest `/bytes` body: 200 MiB, enough to trip any sane body-size limit.
const MAX_BYTES: u64 = 200 * 1024 * 1024;

/// Size of one `/bytes` frame; large enough to keep per-frame overhead negligible, small
/// enough that the connection's write buffer paces the stream.
const PATTERN_CHUNK: usize = 64 * 1024;

const HEALTH_BODY: &[u8] = br#"{"status":"ok"}"#;

/// Everything the routes share. Owned by `main` behind one `Arc` for the server's lifetime;
/// every connection task holds a clone, and the state dies when the last one ends.
#[derive(Debug)]
pub struct App {
    /// Secret the webhook's signatures are checked against.
    pub twilio_token: String,
    /// Recently seen `MessageSid`s, for idempotent retries.
    pub ledger: MessageLedger,
    /// Counters behind `/api/stats`.
    pub stats: Stats,
    /// Waits for `/delay` and `/stall`.
    timer: PreciseTimer,
    /// Origin of `/stall`'s freeze windows.
    started: Instant,
    catalog: Catalog,
    /// The bytes `/bytes` repeats, allocated once.
    pattern: Bytes,
    /// The order API's store, when the backend was given a database.
    orders: Orders,
    /// The call-state API's calls (seed 003), in memory.
    calls: Calls,
    /// The event fan-out behind `/ws/events` and `/events`.
    events: Events,
    /// Services of known capacity behind `/capacity`, and their counters.
    capacity: Capacity,
    /// The Redis-backed job queue behind `/queue/…` (and its series on `/metrics`), when configured.
    queue: Option<std::sync::Arc<Queue>>,
}

/// Counters since start. Relaxed atomics: each is an independent tally, read only for display.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected_signature: AtomicU64,
    pub bad_request: AtomicU64,
}

/// The `/api/stats` document.
#[derive(Debug, Serialize)]
struct StatsDocument {
    /// Every request received, this one included.
    requests: u64,
    /// Webhook deliveries with a valid signature and a `MessageSid` not seen before.
    webhooks_accepted: u64,
    /// Valid deliveries whose `MessageSid` had been seen (answered 200, not processed again).
    duplicates: u64,
    /// Webhook deliveries answered 403 for a missing or wrong signature.
    rejected_signature: u64,
    /// Requests answered 400 or 413 for malformed input, on any route.
    bad_request: u64,
    /// Events accepted by `POST /events?drop=1` and deliberately not forwarded.
    events_dropped: u64,
}

impl App {
    /// Builds the state and starts the timer thread.
    pub fn new(
        twilio_token: String,
        orders: Orders,
        events: Events,
        queue: Option<std::sync::Arc<Queue>>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            twilio_token,
            ledger: MessageLedger::new(LEDGER_CAPACITY),
            stats: Stats::default(),
            timer: PreciseTimer::start()?,
            started: Instant::now(),
            catalog: Catalog::build(),
            pattern: Bytes::from(pattern_chunk()),
            orders,
            calls: Calls::default(),
            events,
            capacity: Capacity::default(),
            queue,
        })
    }

    /// A 400 answer, counted.
    pub fn bad_request(&self, message: &str) -> Response<ReplyBody> {
        self.stats.bad_request.fetch_add(1, Relaxed);
        reply::error(StatusCode::BAD_REQUEST, message)
    }
}

/// Answers one request.
pub async fn respond(app: &App, request: Request<Incoming>) -> Response<ReplyBody> {
    app.stats.requests.fetch_add(1, Relaxed);
    // The event routes need the whole request: the WebSocket upgrade lives in it.
    if events::owns(request.uri().path()) {
        return events::respond(&app.events, request).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query();
    // HEAD is served like GET; hyper drops the body and keeps the headers.
    let read = matches!(parts.method, Method::GET | Method::HEAD);

    if path == "/webhooks/whatsapp" {
        return if parts.method == Method::POST {
            webhook::receive(app, &parts, body).await
        } else {
            reply::method_not_allowed("POST")
        };
    }
    if orders::owns(path) {
        return orders::respond(&app.orders, &parts.method, path, body).await;
    }
    if queue::owns(path) {
        return queue::respond(app.queue.as_deref(), &parts.method, path, body).await;
    }
    if calls::owns(path) {
        return calls::respond(&app.calls, &parts.method, path, body).await;
    }
    if capacity::owns(path) {
        return if read {
            capacity::respond(&app.capacity, &app.timer, path, query).await
        } else {
            reply::method_not_allowed("GET, HEAD")
        };
    }
    if path == "/flaky" {
        return flaky(app, &parts.method, query);
    }
    if path == process::PATH {
        return if read {
            let queue = app.queue.as_deref().map(queue::metrics_text);
            process::respond(queue.as_deref().unwrap_or(""))
        } else {
            reply::method_not_allowed("GET, HEAD")
        };
    }
    let known = matches!(
        path,
        "/health"
            | "/api/stats"
            | "/api/items"
            | "/delay"
            | "/stall"
            | "/bytes"
            | reports::ORDERS_PER_VENDOR
    ) || path.starts_with("/api/items/")
        || path.starts_with("/status/");
    if !known {
        return reply::not_found();
    }
    if !read {
        return reply::method_not_allowed("GET, HEAD");
    }

    match path {
        "/health" => reply::json_bytes(StatusCode::OK, Bytes::from_static(HEALTH_BODY)),
        "/api/stats" => reply::json(StatusCode::OK, &stats_document(app)),
        "/api/items" => reply::json_bytes(StatusCode::OK, app.catalog.list()),
        "/delay" => delay(app, query).await,
        "/stall" => stall(app, query).await,
        "/bytes" => bytes(app, query),
        reports::ORDERS_PER_VENDOR => reports::orders_per_vendor(&app.orders).await,
        _ => {
            if let Some(id) = path.strip_prefix("/api/items/") {
                match app.catalog.item(id) {
                    Some(item) => reply::json_bytes(StatusCode::OK, item),
                    None => reply::error(StatusCode::NOT_FOUND, "no such item"),
                }
            } else if let Some(code) = path.strip_prefix("/status/") {
                status(app, code)
            } else {
                reply::not_found()
            }
        }
    }
}

/// Until when `GET /flaky` fails (the fault probe's tests: a target that keeps failing for a
/// known time after its dependency came back).
static FLAKY_UNTIL: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// `POST /flaky?ms=N`: `GET /flaky` answers 503 for the next N milliseconds, then 200 again.
fn flaky(app: &App, method: &Method, query: Option<&str>) -> Response<ReplyBody> {
    let mut until = FLAKY_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
    match *method {
        Method::POST => match query_u64(query, "ms") {
            Ok(Some(ms)) if ms <= MAX_DELAY_MS => {
                *until = Some(Instant::now() + Duration::from_millis(ms));
                reply::json_bytes(StatusCode::OK, Bytes::from_static(b"{\"armed\":true}"))
            }
            Ok(_) => app.bad_request("give ms, at most 60000"),
            Err(message) => app.bad_request(&message),
        },
        Method::GET | Method::HEAD => {
            if until.is_some_and(|u| Instant::now() < u) {
                reply::error(StatusCode::SERVICE_UNAVAILABLE, "flaky: failing on purpose")
            } else {
                reply::json_bytes(StatusCode::OK, Bytes::from_static(HEALTH_BODY))
            }
        }
        _ => reply::method_not_allowed("GET, HEAD, POST"),
    }
}

fn stats_document(app: &App) -> StatsDocument {
    let stats = &app.stats;
    StatsDocument {
        events_dropped: app.events.dropped.load(Relaxed),
        requests: stats.requests.load(Relaxed),
        webhooks_accepted: stats.webhooks_accepted.load(Relaxed),
        duplicates: stats.duplicates.load(Relaxed),
        rejected_signature: stats.rejected_signature.load(Relaxed),
        bad_request: stats.bad_request.load(Relaxed),
    }
}

/// `GET /delay?ms=N`: answers after exactly N milliseconds (see `timing` for why exactly).
async fn delay(app: &App, query: Option<&str>) -> Response<ReplyBody> {
    // The clock starts before parsing so the wait covers the whole time spent here.
    let arrived = Instant::now();
    let ms = match query_u64(query, "ms") {
        Ok(Some(ms)) if ms <= MAX_DELAY_MS => ms,
        Ok(Some(_)) => return app.bad_request("ms must be at most 60000"),
        Ok(None) => return app.bad_request("missing ms"),
        Err(message) => return app.bad_request(&message),
    };
    app.timer
        .sleep_until(arrived + Duration::from_millis(ms))
        .await;
    reply::json(StatusCode::OK, &serde_json::json!({ "delayed_ms": ms }))
}

/// `GET /stall?period_ms=P&freeze_ms=F`: a service that freezes for F ms out of every P ms.
async fn stall(app: &App, query: Option<&str>) -> Response<ReplyBody> {
    let arrived = Instant::now();
    let period_ms = match query_u64(query, "period_ms") {
        Ok(value) => value.unwrap_or(2000),
        Err(message) => return app.bad_request(&message),
    };
    let freeze_ms = match query_u64(query, "freeze_ms") {
        Ok(value) => value.unwrap_or(200),
        Err(message) => return app.bad_request(&message),
    };
    let schedule = match StallSchedule::from_millis(period_ms, freeze_ms) {
        Ok(schedule) => schedule,
        Err(message) => return app.bad_request(message),
    };
    let wait = schedule.wait_at(arrived.saturating_duration_since(app.started));
    if !wait.is_zero() {
        app.timer.sleep_until(arrived + wait).await;
    }
    let waited_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    reply::json(
        StatusCode::OK,
        &serde_json::json!({ "stalled_ms": waited_ms }),
    )
}

/// `GET /bytes?n=N`: N bytes of a repeating pattern, streamed.
fn bytes(app: &App, query: Option<&str>) -> Response<ReplyBody> {
    let n = match query_u64(query, "n") {
        Ok(Some(n)) if n <= MAX_BYTES => n,
        Ok(Some(_)) => return app.bad_request("n must be at most 209715200 (200 MiB)"),
        Ok(None) => return app.bad_request("missing n"),
        Err(message) => return app.bad_request(&message),
    };
    let body = ReplyBody::Pattern {
        chunk: app.pattern.clone(),
        remaining: n,
    };
    reply::with_type(StatusCode::OK, reply::OCTET_STREAM, body)
}

/// `GET /status/{code}`: answers with that status.
fn status(app: &App, code: &str) -> Response<ReplyBody> {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return app.bad_request("status must be a number from 100 to 599");
    };
    if status.is_informational() {
        // HTTP allows 1xx only before a final response; hyper would turn it into a 500 and
        // break the connection, so say plainly why it cannot be served.
        return app.bad_request("1xx statuses cannot be a final response");
    }
    if matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        // These two must not carry a body.
        let mut response = Response::new(ReplyBody::empty());
        *response.status_mut() = status;
        return response;
    }
    reply::json(status, &serde_json::json!({ "status": status.as_u16() }))
}

/// Reads the first `name` parameter of the query as an unsigned integer.
fn query_u64(query: Option<&str>, name: &str) -> Result<Option<u64>, String> {
    let Some(query) = query else {
        return Ok(None);
    };
    let Some((_, value)) = form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name)
    else {
        return Ok(None);
    };
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{name} must be a non-negative integer"))
}

/// The repeated `/bytes` content: printable, so a truncated body is easy to eyeball.
fn pattern_chunk() -> Vec<u8> {
    b"plimsoll-sample-backend\n"
        .iter()
        .copied()
        .cycle()
        .take(PATTERN_CHUNK)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(query_u64(None, "ms"), Ok(None));
        assert_eq!(query_u64(Some("x=1"), "ms"), Ok(None));
        assert_eq!(query_u64(Some("ms=20"), "ms"), Ok(Some(20)));
        assert_eq!(query_u64(Some("a=b&ms=7&ms=9"), "ms"), Ok(Some(7)));
        assert!(query_u64(Some("ms=-1"), "ms").is_err());
        assert!(query_u64(Some("ms=abc"), "ms").is_err());
        assert!(query_u64(Some("ms="), "ms").is_err());
        assert!(query_u64(Some("ms=99999999999999999999999"), "ms").is_err());
    }

    #[test]
    fn pattern_is_one_chunk() {
        assert_eq!(pattern_chunk().len(), PATTERN_CHUNK);
    }
}

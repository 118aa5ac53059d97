//! The order-acceptance API of seed 000's vendor race, backed by PostgreSQL: vendors accept
//! orders, and exactly one may win each. Two acceptance routes give the race probe something
//! real to catch:
//!
//! - `POST /orders/{id}/accept-racy` reads "is there an ACCEPTED response?" and then writes
//!   one, with a deliberate gap between the two (as a slow application would have), and no
//!   constraint behind it: two vendors can both win.
//! - `POST /orders/{id}/accept` claims the order in one conditional statement, so the
//!   database's row lock lets exactly one vendor through.
//!
//! `POST /orders` creates an order and answers `201 {"id": N}`. Without a database URL the
//! orders live in memory with the same two behaviours (the racy route's gap sits between two
//! separately locked steps; the safe route checks and claims under one lock), so the demo has
//! a race to catch without PostgreSQL. The routes log nothing.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use sqlx::postgres::PgPool;

use crate::reply::{self, ReplyBody};

/// The gap between the racy route's read and its write. A real application spends it on
/// lookups and logging; here it widens the window so races show within a few hundred rounds.
const RACY_GAP: Duration = Duration::from_millis(2);

/// Database connections. A round of the race probe sends up to 100 claims at once; each
/// claim holds a connection for its statements, so the pool must not be what serializes them.
const POOL_SIZE: u32 = 32;

/// Largest acceptance body: `{"vendor": "…"}` is a few bytes.
const MAX_BODY_BYTES: usize = 4 * 1024;

/// Created on start when missing. A session-level lock keeps two backends that share a
/// database from racing on `CREATE TABLE IF NOT EXISTS`, which PostgreSQL does not make safe.
const SCHEMA: &[&str] = &[
    "SELECT pg_advisory_xact_lock(74110)",
    "CREATE TABLE IF NOT EXISTS orders (
        id BIGSERIAL PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        accepted_by TEXT
    )",
    "CREATE TABLE IF NOT EXISTS vendor_routing_responses (
        id BIGSERIAL PRIMARY KEY,
        routing_id BIGINT NOT NULL REFERENCES orders (id),
        vendor TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS vendor_routing_responses_routing
        ON vendor_routing_responses (routing_id)",
];

/// The orders store, shared by every connection task: PostgreSQL, or memory without one.
#[derive(Debug)]
pub enum Orders {
    Postgres(PgPool),
    Memory(std::sync::Mutex<MemoryOrders>),
}

/// In-memory orders: per order, who holds it and how many ACCEPTED responses were written.
#[derive(Debug, Default)]
pub struct MemoryOrders {
    accepted_by: Vec<Option<String>>,
    responses: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct Acceptance {
    vendor: String,
}

impl Orders {
    /// Connects and creates the tables.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = crate::db::connect(url, POOL_SIZE, Duration::from_secs(10), SCHEMA).await?;
        Ok(Orders::Postgres(pool))
    }

    /// Orders kept in this process only.
    pub fn in_memory() -> Self {
        Orders::Memory(Default::default())
    }
}

impl Orders {
    /// In memory: accepted orders per vendor, most first (then by name). Empty for the
    /// database store, which the reporting route queries itself.
    pub fn accepted_vendors(&self) -> Vec<(String, i64)> {
        let Orders::Memory(m) = self else {
            return Vec::new();
        };
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for v in memory(m).accepted_by.iter().flatten() {
            *counts.entry(v.clone()).or_insert(0) += 1;
        }
        let mut rows: Vec<(String, i64)> = counts.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }
}

impl MemoryOrders {
    fn create(&mut self) -> i64 {
        self.accepted_by.push(None);
        self.responses.push(0);
        self.accepted_by.len() as i64
    }

    /// Index of order `id`, if it exists (ids start at 1, like BIGSERIAL).
    fn index(&self, id: i64) -> Option<usize> {
        usize::try_from(id - 1)
            .ok()
            .filter(|i| *i < self.accepted_by.len())
    }
}

fn memory(m: &std::sync::Mutex<MemoryOrders>) -> std::sync::MutexGuard<'_, MemoryOrders> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_such_order() -> Response<ReplyBody> {
    reply::error(StatusCode::NOT_FOUND, "no such order")
}

/// The in-memory order API: same routes and answers as the PostgreSQL one.
async fn respond_memory(
    m: &std::sync::Mutex<MemoryOrders>,
    route: Option<(i64, bool)>,
    vendor: &str,
) -> Response<ReplyBody> {
    let Some((id, safe)) = route else {
        let id = memory(m).create();
        return reply::json(StatusCode::CREATED, &serde_json::json!({ "id": id }));
    };
    if safe {
        // Check and claim under one lock: exactly one vendor gets through.
        let mut o = memory(m);
        let Some(i) = o.index(id) else {
            return no_such_order();
        };
        if o.accepted_by[i].is_some() {
            return taken();
        }
        o.accepted_by[i] = Some(vendor.to_string());
        o.responses[i] += 1;
        return accepted(vendor);
    }
    // Check, let go, wait, write: the racy route's gap, with nothing re-checked.
    let already = {
        let o = memory(m);
        match o.index(id) {
            Some(i) => o.responses[i] > 0,
            None => return no_such_order(),
        }
    };
    if already {
        return taken();
    }
    tokio::time::sleep(RACY_GAP).await;
    let mut o = memory(m);
    if let Some(i) = o.index(id) {
        o.responses[i] += 1;
        o.accepted_by[i].get_or_insert_with(|| vendor.to_string());
    }
    accepted(vendor)
}

/// Whether a path belongs to this API.
pub fn owns(path: &str) -> bool {
    path == "/orders" || path.starts_with("/orders/")
}

/// Answers one request under `/orders`.
pub async fn respond(
    orders: &Orders,
    method: &Method,
    path: &str,
    body: Incoming,
) -> Response<ReplyBody> {
    if *method != Method::POST {
        return reply::method_not_allowed("POST");
    }
    let pool = match orders {
        Orders::Postgres(pool) => pool,
        Orders::Memory(m) => {
            if path == "/orders" {
                return respond_memory(m, None, "").await;
            }
            let rest = path.trim_start_matches("/orders/");
            return match rest.split_once('/') {
                Some((id, route @ ("accept" | "accept-racy"))) => match id.parse::<i64>() {
                    Ok(id) => match read_vendor(body).await {
                        Ok(vendor) => {
                            respond_memory(m, Some((id, route == "accept")), &vendor).await
                        }
                        Err(answer) => answer,
                    },
                    Err(_) => no_such_order(),
                },
                _ => reply::not_found(),
            };
        }
    };
    let result = if path == "/orders" {
        create(pool).await
    } else {
        let rest = path.trim_start_matches("/orders/");
        match rest.split_once('/') {
            Some((id, route @ ("accept" | "accept-racy"))) => match id.parse::<i64>() {
                Ok(id) => match read_vendor(body).await {
                    Ok(vendor) if route == "accept" => accept_safe(pool, id, &vendor).await,
                    Ok(vendor) => accept_racy(pool, id, &vendor).await,
                    Err(answer) => Ok(answer),
                },
                Err(_) => Ok(no_such_order()),
            },
            _ => Ok(reply::not_found()),
        }
    };
    result.unwrap_or_else(|e| {
        reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("database error: {e}"),
        )
    })
}

async fn read_vendor(body: Incoming) -> Result<String, Response<ReplyBody>> {
    let bytes: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(reply::error(
                StatusCode::BAD_REQUEST,
                "body unreadable or larger than 4 KiB",
            ))
        }
    };
    match serde_json::from_slice::<Acceptance>(&bytes) {
        Ok(a) if !a.vendor.is_empty() => Ok(a.vendor),
        _ => Err(reply::error(
            StatusCode::BAD_REQUEST,
            r#"expected a JSON body {"vendor": "…"}"#,
        )),
    }
}

async fn create(pool: &PgPool) -> sqlx::Result<Response<ReplyBody>> {
    let id: i64 = sqlx::query_scalar("INSERT INTO orders DEFAULT VALUES RETURNING id")
        .fetch_one(pool)
        .await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &serde_json::json!({ "id": id }),
    ))
}

fn accepted(vendor: &str) -> Response<ReplyBody> {
    reply::json(
        StatusCode::OK,
        &serde_json::json!({ "accepted": true, "vendor": vendor }),
    )
}

fn taken() -> Response<ReplyBody> {
    reply::error(StatusCode::CONFLICT, "the order was already accepted")
}

/// Read, wait, write: the classic check-then-act race, on purpose.
async fn accept_racy(pool: &PgPool, id: i64, vendor: &str) -> sqlx::Result<Response<ReplyBody>> {
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM vendor_routing_responses
                        WHERE routing_id = $1 AND response = 'ACCEPTED')",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    if already {
        return Ok(taken());
    }
    tokio::time::sleep(RACY_GAP).await;
    let inserted = sqlx::query(
        "INSERT INTO vendor_routing_responses (routing_id, vendor, response)
         VALUES ($1, $2, 'ACCEPTED')",
    )
    .bind(id)
    .bind(vendor)
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(accepted(vendor)),
        Err(e) if is_missing_order(&e) => Ok(no_such_order()),
        Err(e) => Err(e),
    }
}

/// One statement: the UPDATE takes the order's row lock and re-checks `accepted_by IS NULL`
/// after any concurrent claim commits, so only one vendor's UPDATE returns a row, and the
/// response row is written only for it.
async fn accept_safe(pool: &PgPool, id: i64, vendor: &str) -> sqlx::Result<Response<ReplyBody>> {
    let won: Option<i64> = sqlx::query_scalar(
        "WITH claimed AS (
             UPDATE orders SET accepted_by = $2
             WHERE id = $1 AND accepted_by IS NULL
             RETURNING id
         )
         INSERT INTO vendor_routing_responses (routing_id, vendor, response)
         SELECT id, $2, 'ACCEPTED' FROM claimed
         RETURNING routing_id",
    )
    .bind(id)
    .bind(vendor)
    .fetch_optional(pool)
    .await?;
    if won.is_some() {
        return Ok(accepted(vendor));
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(if exists { taken() } else { no_such_order() })
}

fn is_missing_order(e: &sqlx::Error) -> bool {
    // 23503: foreign_key_violation, the order does not exist.
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"))
}

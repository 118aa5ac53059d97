//! The reporting endpoint of seed 003's reporting checks, on the order data of the vendor
//! race: `GET /api/reports/orders-per-vendor` answers
//! `[{"vendor": "v1", "accepted": 12}, …]`, most accepted first. With a database it is a real
//! aggregate query (what the SQL probe and a load probe measure); without one it counts the
//! in-memory orders. It logs nothing.

use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::orders::Orders;
use crate::reply::{self, ReplyBody};

/// The route's path.
pub const ORDERS_PER_VENDOR: &str = "/api/reports/orders-per-vendor";

/// The aggregate: accepted responses per vendor.
pub const ORDERS_PER_VENDOR_SQL: &str = "SELECT vendor, count(*) AS accepted \
     FROM vendor_routing_responses WHERE response = 'ACCEPTED' \
     GROUP BY vendor ORDER BY accepted DESC, vendor";

#[derive(Debug, Serialize)]
struct VendorCount {
    vendor: String,
    accepted: i64,
}

/// Answers `GET /api/reports/orders-per-vendor`.
pub async fn orders_per_vendor(orders: &Orders) -> Response<ReplyBody> {
    let rows: Vec<VendorCount> = match orders {
        Orders::Postgres(pool) => {
            match sqlx::query_as::<_, (String, i64)>(ORDERS_PER_VENDOR_SQL)
                .fetch_all(pool)
                .await
            {
                Ok(rows) => rows
                    .into_iter()
                    .map(|(vendor, accepted)| VendorCount { vendor, accepted })
                    .collect(),
                Err(e) => {
                    return reply::error(StatusCode::SERVICE_UNAVAILABLE, &format!("database: {e}"))
                }
            }
        }
        Orders::Memory(_) => orders
            .accepted_vendors()
            .into_iter()
            .map(|(vendor, accepted)| VendorCount { vendor, accepted })
            .collect(),
    };
    reply::json(StatusCode::OK, &rows)
}

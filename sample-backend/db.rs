//! The PostgreSQL connection the orders and the queue's fallback share the shape of: a pool,
//! then the part's own tables created in one transaction.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connects a pool of `size` to `url` and runs `schema` (idempotent statements) in one
/// transaction.
pub async fn connect(
    url: &str,
    size: u32,
    acquire_timeout: Duration,
    schema: &[&str],
) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .connect(url)
        .await?;
    let mut tx = pool.begin().await?;
    for statement in schema {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(pool)
}

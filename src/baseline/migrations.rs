//! The store's schema, embedded in the binary and applied at open: one SQL file per version
//! and backend (the two differ only in column types), recorded in `plimsoll_migrations`.
//!
//! A store written by a newer Plimsoll (a version this binary does not know) is refused
//! rather than used half-understood.

/// One schema version.
pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every version, in order. Append only: a released migration never changes.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "runs",
    sqlite: include_str!("migrations/0001_runs.sqlite.sql"),
    postgres: include_str!("migrations/0001_runs.postgres.sql"),
}];

/// The bookkeeping table; the same text works on both backends.
pub(super) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS plimsoll_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_us BIGINT NOT NULL
)";

/// The newest version this binary knows.
pub(super) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

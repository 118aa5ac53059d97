//! The run store: SQLite (a file, WAL, synchronous commits) or PostgreSQL, one schema,
//! migrations applied at open, retention per probe, and a spool for the runs the database
//! could not take.
//!
//! Both backends run the same SQL text (`$1` placeholders work in SQLite too); the
//! [`with_pool!`] macro expands each query once per backend, so there is no dynamic
//! `Any` driver and every type is checked against both. Times are stored as microseconds
//! since the epoch (`*_us`), documents as JSON text.
//!
//! This module must not judge runs (that is [`RegressionDetector`](super::RegressionDetector))
//! nor emit telemetry: callers read [`Store::spooled`] for the gauge.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::migrations::{self, MIGRATIONS};
use super::spool::Spool;
use super::RunRecord;

/// Everything that can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend this build knows.
    #[error("baseline store {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The database could not be opened or reached.
    #[error("baseline store {url}: cannot open: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed.
    #[error("baseline store {url}: migration {version} failed: {source}")]
    Migrate {
        url: String,
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer Plimsoll.
    #[error("baseline store {url}: schema version {found} is newer than this binary's {known}")]
    SchemaTooNew { url: String, found: i64, known: i64 },
    /// A query failed.
    #[error("baseline store: {0}")]
    Database(#[from] sqlx::Error),
    /// A query took longer than the store's operation timeout.
    #[error("baseline store: no answer within {0:?}")]
    Timeout(Duration),
    /// A stored document is not JSON.
    #[error("baseline store: run {run_id}: stored document is not JSON: {source}")]
    Document {
        run_id: i64,
        #[source]
        source: serde_json::Error,
    },
    /// The spool directory cannot be used: then a run is really lost, so this is an error.
    #[error("baseline spool {}: {source}", path.display())]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How many runs a probe keeps: a run goes when either limit is passed (runs pinned by an
/// accept stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Newest runs kept per probe.
    pub max_runs: u32,
    /// Runs older than this go.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_runs: 500,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where runs wait when the database cannot take them. Default: beside the SQLite file
    /// (`<file>.spool`), or `plimsoll-spool` in the current directory for PostgreSQL.
    pub spool_dir: Option<PathBuf>,
    /// Retention per probe.
    pub retention: Retention,
    /// Bound of every database operation (and of SQLite's wait for a lock): past it the
    /// run is spooled, so a slow store never delays the schedule.
    pub timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            spool_dir: None,
            retention: Retention::default(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What became of a recorded run.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// In the database, with its id (the existing id when the run was already stored).
    Stored { run_id: i64 },
    /// In the spool, to be written when the database takes it.
    Spooled { path: PathBuf, cause: String },
}

/// One stored run, without its document.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub id: i64,
    pub probe: String,
    pub started_at: DateTime<Utc>,
    pub fingerprint: String,
    pub grade: String,
}

/// One stored run, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    pub summary: RunSummary,
    pub document: serde_json::Value,
    /// Headline figures by name, sorted.
    pub figures: Vec<(String, f64)>,
    pub histogram: Option<Vec<u8>>,
}

/// What the store holds of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSummary {
    pub probe: String,
    pub runs: i64,
    pub first_started_at: DateTime<Utc>,
    pub last: RunSummary,
}

/// One value of a figure's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FigurePoint {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub value: f64,
}

/// An accept marker: the probe's series starts again at `from`, and `pinned_run` is the
/// percentage mode's baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Acceptance {
    pub probe: String,
    /// Runs started at or after this form the new series.
    pub from: DateTime<Utc>,
    /// The run pinned as the baseline (the probe's latest run when accepted).
    pub pinned_run: Option<i64>,
    pub accepted_at: DateTime<Utc>,
    pub note: String,
}

/// The baseline run of the percentage mode and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PinnedRun {
    pub summary: RunSummary,
    pub figures: Vec<(String, f64)>,
}

#[derive(Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// The run store. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Store {
    pool: Pool,
    /// The URL with any password removed, for messages.
    url: String,
    spool: Spool,
    options: StoreOptions,
    /// One drain at a time.
    draining: tokio::sync::Mutex<()>,
}

impl Store {
    /// Opens the store: `postgres://…` (or `postgresql://`) is PostgreSQL, `sqlite:PATH` or a
    /// plain path is an SQLite file (created when missing). Applies the migrations, opens the
    /// spool, and fails when the database cannot be reached (the caller decides whether
    /// that stops it, e.g. exit code 4 at start).
    pub async fn open(url_or_path: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let (pool, url, default_spool) =
            if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
                let url = redact(url_or_path);
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(options.timeout)
                    .connect(url_or_path)
                    .await
                    .map_err(|source| StoreError::Open {
                        url: url.clone(),
                        source,
                    })?;
                (Pool::Postgres(pool), url, PathBuf::from("plimsoll-spool"))
            } else {
                let path = sqlite_path(url_or_path)?;
                let url = path.display().to_string();
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                        url: url.clone(),
                        source: sqlx::Error::Io(e),
                    })?;
                }
                // FULL: a commit is on disk before `record` returns, so a crash or power loss
                // after it loses nothing; at one commit per run the cost is nothing.
                let connect = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(options.timeout);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(options.timeout)
                    .connect_with(connect)
                    .await
                    .map_err(|source| StoreError::Open {
                        url: url.clone(),
                        source,
                    })?;
                let mut spool = path.as_os_str().to_owned();
                spool.push(".spool");
                (Pool::Sqlite(pool), url, PathBuf::from(spool))
            };
        let spool_dir = options.spool_dir.clone().unwrap_or(default_spool);
        let spool = Spool::open(&spool_dir).map_err(|source| StoreError::Spool {
            path: spool_dir,
            source,
        })?;
        let store = Store {
            pool,
            url,
            spool,
            options,
            draining: tokio::sync::Mutex::new(()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The store's location for messages (no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The spool of runs waiting for the database.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// How many runs wait in the spool (the `plimsoll_store_spooled_results` gauge).
    pub fn spooled(&self) -> usize {
        self.spool.len()
    }

    /// Closes the pool (waits for connections to finish).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let url = self.url.clone();
        let fail = |version: i64| {
            let url = url.clone();
            move |source: sqlx::Error| StoreError::Migrate {
                url,
                version,
                source,
            }
        };
        with_pool!(self, pool => {
            sqlx::raw_sql(migrations::CREATE_TABLE)
                .execute(pool)
                .await
                .map_err(fail(0))?;
            for m in MIGRATIONS {
                // One transaction per version, holding the database's write lock (SQLite's
                // IMMEDIATE, PostgreSQL's advisory lock), so two processes opening the same
                // store at once apply each version exactly once.
                let mut tx = match self.backend() {
                    Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                    Backend::Postgres => pool.begin().await,
                }
                .map_err(fail(m.version))?;
                if self.backend() == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock(7219553716000531)")
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(m.version))?;
                }
                let found: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM plimsoll_migrations")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(fail(m.version))?;
                if found > migrations::latest() {
                    return Err(StoreError::SchemaTooNew {
                        url: self.url.clone(),
                        found,
                        known: migrations::latest(),
                    });
                }
                if found >= m.version {
                    tx.rollback().await.map_err(fail(m.version))?;
                    continue;
                }
                let sql = match self.backend() {
                    Backend::Sqlite => m.sqlite,
                    Backend::Postgres => m.postgres,
                };
                sqlx::raw_sql(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(m.version))?;
                sqlx::query(
                    "INSERT INTO plimsoll_migrations (version, name, applied_at_us) VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(Utc::now().timestamp_micros())
                .execute(&mut *tx)
                .await
                .map_err(fail(m.version))?;
                tx.commit().await.map_err(fail(m.version))?;
            }
            Ok(())
        })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.bounded(async {
            Ok(with_pool!(self, pool => {
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM plimsoll_migrations")
                    .fetch_one(pool)
                    .await?
            }))
        })
        .await
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            with_pool!(self, pool => {
                sqlx::query("SELECT 1").execute(pool).await?;
            });
            Ok(())
        })
        .await
    }

    /// Records a run: into the database when it answers, otherwise into the spool. Runs
    /// already waiting in the spool are written first, so the database sees them in order.
    /// Fails only when the spool cannot be written either.
    pub async fn record(&self, run: &RunRecord) -> Result<Recorded, StoreError> {
        let outcome = if !self.spool.is_empty() {
            // While older runs wait, the new one must not overtake them.
            match self.drain_spool().await {
                Ok(_) if self.spool.is_empty() => self.insert(run).await,
                Ok(_) => Err(StoreError::Timeout(self.options.timeout)),
                Err(e) => Err(e),
            }
        } else {
            self.insert(run).await
        };
        match outcome {
            Ok(run_id) => Ok(Recorded::Stored { run_id }),
            Err(cause) => {
                let path = self.spool.put(run).map_err(|source| StoreError::Spool {
                    path: self.spool.dir().to_path_buf(),
                    source,
                })?;
                Ok(Recorded::Spooled {
                    path,
                    cause: cause.to_string(),
                })
            }
        }
    }

    /// Writes spooled runs into the database, oldest first, until the spool is empty or the
    /// database refuses one; returns how many were written. Call it on a timer.
    pub async fn drain_spool(&self) -> Result<usize, StoreError> {
        let _one = self.draining.lock().await;
        let spool_err = |source| StoreError::Spool {
            path: self.spool.dir().to_path_buf(),
            source,
        };
        let mut written = 0;
        for path in self.spool.pending().map_err(spool_err)? {
            let run = match self.spool.read(&path) {
                Ok(Some(run)) => run,
                // Set aside as unreadable, or taken by another drainer meanwhile.
                Ok(None) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(spool_err(e)),
            };
            self.insert(&run).await?;
            self.spool.remove(&path).map_err(spool_err)?;
            written += 1;
        }
        Ok(written)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.options.timeout, f)
            .await
            .map_err(|_| StoreError::Timeout(self.options.timeout))?
    }

    /// Inserts a run (idempotent on probe and start) with its figures, then trims the
    /// probe's runs to the retention, all in one transaction.
    async fn insert(&self, run: &RunRecord) -> Result<i64, StoreError> {
        let started_at_us = run.started_at.timestamp_micros();
        let document = run.document.to_string();
        let now_us = Utc::now().timestamp_micros();
        let oldest_us = now_us.saturating_sub(
            i64::try_from(self.options.retention.max_age.as_micros()).unwrap_or(i64::MAX),
        );
        let max_runs = i64::from(self.options.retention.max_runs.max(1));
        self.bounded(async {
            with_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO runs (probe, started_at_us, fingerprint, grade, document, histogram, recorded_at_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (probe, started_at_us) DO NOTHING
                     RETURNING id",
                )
                .bind(&run.probe)
                .bind(started_at_us)
                .bind(&run.fingerprint)
                .bind(&run.grade)
                .bind(&document)
                .bind(run.histogram.as_deref())
                .bind(now_us)
                .fetch_optional(&mut *tx)
                .await?;
                let run_id = match inserted {
                    Some(id) => id,
                    None => {
                        // Already stored (a spooled run replayed after its first write
                        // committed but before its file was removed).
                        let id: i64 = sqlx::query_scalar(
                            "SELECT id FROM runs WHERE probe = $1 AND started_at_us = $2",
                        )
                        .bind(&run.probe)
                        .bind(started_at_us)
                        .fetch_one(&mut *tx)
                        .await?;
                        tx.rollback().await?;
                        return Ok(id);
                    }
                };
                for (name, value) in run.figures.iter().filter(|(_, v)| v.is_finite()) {
                    sqlx::query(
                        "INSERT INTO figures (run_id, name, value) VALUES ($1, $2, $3)
                         ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
                    )
                    .bind(run_id)
                    .bind(name)
                    .bind(*value)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "DELETE FROM runs WHERE probe = $1
                       AND (started_at_us < $2
                            OR id NOT IN (SELECT id FROM runs WHERE probe = $1
                                          ORDER BY started_at_us DESC LIMIT $3))
                       AND id NOT IN (SELECT pinned_run_id FROM accepts
                                      WHERE pinned_run_id IS NOT NULL)",
                )
                .bind(&run.probe)
                .bind(oldest_us)
                .bind(max_runs)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(run_id)
            })
        })
        .await
    }

    /// Every probe the store holds, by name, with its latest run.
    pub async fn probes(&self) -> Result<Vec<ProbeSummary>, StoreError> {
        self.bounded(async {
            with_pool!(self, pool => {
                let rows = sqlx::query(
                    "SELECT r.id, r.probe, r.started_at_us, r.fingerprint, r.grade, s.runs, s.first_us
                     FROM runs r
                     JOIN (SELECT probe, COUNT(*) AS runs, MIN(started_at_us) AS first_us,
                                  MAX(started_at_us) AS last_us
                           FROM runs GROUP BY probe) s
                       ON s.probe = r.probe AND s.last_us = r.started_at_us
                     ORDER BY r.probe",
                )
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ProbeSummary {
                            probe: row.try_get("probe")?,
                            runs: row.try_get("runs")?,
                            first_started_at: from_us(row.try_get("first_us")?),
                            last: summary(row)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// A probe's runs, newest first, at most `limit`.
    pub async fn runs(&self, probe: &str, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        self.bounded(async {
            with_pool!(self, pool => {
                let rows = sqlx::query(
                    "SELECT id, probe, started_at_us, fingerprint, grade FROM runs
                     WHERE probe = $1 ORDER BY started_at_us DESC LIMIT $2",
                )
                .bind(probe)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                rows.iter().map(|r| Ok(summary(r)?)).collect()
            })
        })
        .await
    }

    /// One run, whole.
    pub async fn run(&self, id: i64) -> Result<Option<StoredRun>, StoreError> {
        self.bounded(async {
            with_pool!(self, pool => {
                let Some(row) = sqlx::query(
                    "SELECT id, probe, started_at_us, fingerprint, grade, document, histogram
                     FROM runs WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?
                else {
                    return Ok(None);
                };
                let text: String = row.try_get("document")?;
                let document = serde_json::from_str(&text)
                    .map_err(|source| StoreError::Document { run_id: id, source })?;
                let figures = sqlx::query(
                    "SELECT name, value FROM figures WHERE run_id = $1 ORDER BY name",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
                .collect::<Result<Vec<(String, f64)>, sqlx::Error>>()?;
                Ok(Some(StoredRun {
                    summary: summary(&row)?,
                    document,
                    figures,
                    histogram: row.try_get("histogram")?,
                }))
            })
        })
        .await
    }

    /// The names of the figures recorded for a probe's fingerprint, sorted.
    pub async fn figure_names(
        &self,
        probe: &str,
        fingerprint: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.bounded(async {
            Ok(with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT DISTINCT f.name FROM figures f JOIN runs r ON r.id = f.run_id
                     WHERE r.probe = $1 AND r.fingerprint = $2 ORDER BY f.name",
                )
                .bind(probe)
                .bind(fingerprint)
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }

    /// The series the detector judges: one figure of one probe and fingerprint, from the
    /// probe's latest accept on, the newest `limit` runs, oldest first.
    pub async fn figures(
        &self,
        probe: &str,
        figure: &str,
        fingerprint: &str,
        limit: u32,
    ) -> Result<Vec<FigurePoint>, StoreError> {
        let since_us = self
            .acceptance(probe)
            .await?
            .map_or(i64::MIN, |a| a.from.timestamp_micros());
        self.bounded(async {
            with_pool!(self, pool => {
                let rows = sqlx::query(
                    "SELECT r.id, r.started_at_us, f.value FROM runs r
                     JOIN figures f ON f.run_id = r.id
                     WHERE r.probe = $1 AND r.fingerprint = $2 AND f.name = $3
                       AND r.started_at_us >= $4
                     ORDER BY r.started_at_us DESC LIMIT $5",
                )
                .bind(probe)
                .bind(fingerprint)
                .bind(figure)
                .bind(since_us)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                let mut points = rows
                    .iter()
                    .map(|r| {
                        Ok(FigurePoint {
                            run_id: r.try_get("id")?,
                            started_at: from_us(r.try_get("started_at_us")?),
                            value: r.try_get("value")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                points.reverse();
                Ok(points)
            })
        })
        .await
    }

    /// The stored histograms of the series the detector judges (one probe and fingerprint,
    /// from the probe's latest accept on), newest `limit` runs first, for
    /// [`histogram::merge`](super::histogram::merge).
    pub async fn histograms(
        &self,
        probe: &str,
        fingerprint: &str,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let since_us = self
            .acceptance(probe)
            .await?
            .map_or(i64::MIN, |a| a.from.timestamp_micros());
        self.bounded(async {
            Ok(with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT histogram FROM runs
                     WHERE probe = $1 AND fingerprint = $2 AND histogram IS NOT NULL
                       AND started_at_us >= $3
                     ORDER BY started_at_us DESC LIMIT $4",
                )
                .bind(probe)
                .bind(fingerprint)
                .bind(since_us)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
            }))
        })
        .await
    }

    /// Accepts the probe's current level after an intended change: its series starts again
    /// at `from` (default: now), and its latest run becomes the pinned baseline of the
    /// percentage mode.
    pub async fn accept(
        &self,
        probe: &str,
        from: Option<DateTime<Utc>>,
        note: &str,
    ) -> Result<Acceptance, StoreError> {
        let now = Utc::now();
        let from = from.unwrap_or(now);
        let pinned = self.runs(probe, 1).await?.first().map(|r| r.id);
        self.bounded(async {
            with_pool!(self, pool => {
                sqlx::query(
                    "INSERT INTO accepts (probe, from_us, pinned_run_id, accepted_at_us, note)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(probe)
                .bind(from.timestamp_micros())
                .bind(pinned)
                .bind(now.timestamp_micros())
                .bind(note)
                .execute(pool)
                .await?;
            });
            Ok(())
        })
        .await?;
        Ok(Acceptance {
            probe: probe.to_string(),
            from: from_us(from.timestamp_micros()),
            pinned_run: pinned,
            accepted_at: from_us(now.timestamp_micros()),
            note: note.to_string(),
        })
    }

    /// The probe's latest accept, if any.
    pub async fn acceptance(&self, probe: &str) -> Result<Option<Acceptance>, StoreError> {
        self.bounded(async {
            with_pool!(self, pool => {
                let row = sqlx::query(
                    "SELECT probe, from_us, pinned_run_id, accepted_at_us, note FROM accepts
                     WHERE probe = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(probe)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(Acceptance {
                        probe: r.try_get("probe")?,
                        from: from_us(r.try_get("from_us")?),
                        pinned_run: r.try_get("pinned_run_id")?,
                        accepted_at: from_us(r.try_get("accepted_at_us")?),
                        note: r.try_get("note")?,
                    })
                })
                .transpose()
            })
        })
        .await
    }

    /// The percentage mode's baseline: the run pinned by the latest accept, or else the
    /// oldest stored run of the fingerprint (so the first run becomes the baseline, as in
    /// seed 000's baseline file).
    pub async fn pinned(
        &self,
        probe: &str,
        fingerprint: &str,
    ) -> Result<Option<PinnedRun>, StoreError> {
        let pinned = self.acceptance(probe).await?.and_then(|a| a.pinned_run);
        let id = match pinned {
            Some(id) => Some(id),
            None => {
                self.bounded(async {
                    Ok(with_pool!(self, pool => {
                        sqlx::query_scalar(
                            "SELECT id FROM runs WHERE probe = $1 AND fingerprint = $2
                             ORDER BY started_at_us LIMIT 1",
                        )
                        .bind(probe)
                        .bind(fingerprint)
                        .fetch_optional(pool)
                        .await?
                    }))
                })
                .await?
            }
        };
        let Some(id) = id else { return Ok(None) };
        Ok(self.run(id).await?.map(|r| PinnedRun {
            summary: r.summary,
            figures: r.figures,
        }))
    }
}

fn summary<R: Row>(row: &R) -> Result<RunSummary, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    i64: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database> + for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok(RunSummary {
        id: row.try_get("id")?,
        probe: row.try_get("probe")?,
        started_at: from_us(row.try_get("started_at_us")?),
        fingerprint: row.try_get("fingerprint")?,
        grade: row.try_get("grade")?,
    })
}

fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The SQLite file of `sqlite:PATH`, `sqlite://PATH` or a plain path.
fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains("://") || path == ":memory:" {
        return Err(StoreError::InvalidUrl {
            url: url.to_string(),
            reason: "expected postgres://…, sqlite:PATH or a file path".into(),
        });
    }
    Ok(Path::new(path).to_path_buf())
}

/// The URL without the password of its user info.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            sqlite_path(url).map(|_| Backend::Sqlite)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            sqlite_path("sqlite:///var/lib/p.db").unwrap(),
            PathBuf::from("/var/lib/p.db")
        );
        assert_eq!(
            sqlite_path("sqlite:p.db?mode=rwc").unwrap(),
            PathBuf::from("p.db")
        );
        assert_eq!(
            sqlite_path("state/p.db").unwrap(),
            PathBuf::from("state/p.db")
        );
        assert!(sqlite_path("mysql://x").is_err());
        assert_eq!(
            "postgresql://x/y".parse::<Backend>().unwrap(),
            Backend::Postgres
        );
        assert_eq!("a.db".parse::<Backend>().unwrap(), Backend::Sqlite);
    }
}

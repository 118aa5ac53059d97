//! The rolling baseline: a store of every probe run and the regression detector that judges
//! each new run against the runs before it.
//!
//! - [`Store`] keeps every run (probe, start, configuration fingerprint, grade, the result
//!   document, its headline figures, its merged latency histogram) in SQLite by default (one
//!   file, WAL, migrations applied at open) or PostgreSQL when the URL says `postgres://`
//!   (the same schema). Retention is per probe. A store that is down, locked or full never
//!   loses a result: the run goes to a [`Spool`] directory and is written later.
//! - [`RegressionDetector`] turns one figure's series into a [`FigureState`] (baseline,
//!   current, shift, statistic, state); [`PercentageComparison`] is the simple mode against
//!   a pinned run.
//! - [`histogram`] is the stored histogram format (HDR V2, deflated).
//! - [`judge_run`] is what `once` and the daemon call per finished run: it records the run,
//!   judges its headline figures, writes the result's `regression` block and raises its
//!   grade as `[baseline].grade_on_regression` says.
//!
//! What this module must not do: decide grades beyond that one configured raise, name or emit metrics and spans (telemetry does, from
//! [`Store::spooled`] and [`FigureState`]), read the configuration file, or block a
//! probe's schedule — every store operation is bounded by a timeout and failure to write
//! means spooling, not an error.

mod detector;
pub mod histogram;
mod judge;
mod migrations;
mod spool;
mod store;

use chrono::{DateTime, Utc};

pub use detector::{
    DetectorSettings, Direction, FigureSpec, FigureState, PercentageComparison, RegressionDetector,
    RegressionState, Transition,
};
pub use judge::{
    detector_settings, fingerprint, headline_figures, judge_run, open_bound, open_store, record_of,
    state_dir, store_location, store_options, Judged,
};
pub use spool::Spool;
pub use store::{
    Acceptance, Backend, FigurePoint, PinnedRun, ProbeSummary, Recorded, Retention, RunSummary,
    Store, StoreError, StoreOptions, StoredRun,
};

/// The file name of the default SQLite store inside the state directory.
pub const DEFAULT_FILE: &str = "plimsoll.db";

/// One finished probe run, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The probe's name.
    pub probe: String,
    /// When the run started; with `probe` it identifies the run (recording the same run
    /// twice stores it once).
    pub started_at: DateTime<Utc>,
    /// A digest of the probe's configuration: runs of one fingerprint form one series, and a
    /// new fingerprint starts a new baseline.
    pub fingerprint: String,
    /// The run's grade (`excellent`, `good`, `warning`, `critical`).
    pub grade: String,
    /// The whole result document.
    pub document: serde_json::Value,
    /// Headline figures (`p99` → 41.0, `rps` → 49.9, …). Values that are not finite are not
    /// stored.
    pub figures: Vec<(String, f64)>,
    /// The run's merged latency histogram, in [`histogram::encode`]'s format.
    pub histogram: Option<Vec<u8>>,
}
